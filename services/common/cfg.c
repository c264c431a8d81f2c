/* cfg: parsing and validation of the variable table (see cfg.h).
 *
 * Each variable gets at most one problem (the first thing wrong with it), kept with the value
 * so that cfg_load_or_exit() can print the variable's help next to it; cfg_problems() is the
 * same lines joined. A problem line is built by problem(), the only place that decides whether
 * the value may be quoted: never for a secret. */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct cfg_value {
    char *text; /* NULL when unset */
    long number;
    int flag;
    char *problem; /* NULL, or one line without its newline */
} cfg_value_t;

struct cfg {
    cfg_var_t *vars;
    cfg_value_t *values;
    size_t n;
    char *problems; /* every problem joined, each ending in '\n' */
};

/* Records what is wrong with v, quoting value unless v is secret (or value is NULL). */
static int problem(cfg_value_t *val, const cfg_var_t *v, const char *what, const char *value)
{
    char line[512];
    if (value != NULL && !v->secret)
        snprintf(line, sizeof(line), "%s: \"%.200s\" %s", v->name, value, what);
    else
        snprintf(line, sizeof(line), "%s: %s", v->name, what);
    free(val->problem);
    val->problem = strdup(line);
    return val->problem != NULL ? 0 : ERR_NOMEM;
}

/* Plain decimal: an optional '-' and at least one digit, nothing else, within long. */
static int parse_long(const char *s, long *out)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (*d == '\0')
        return -1;
    for (const char *p = d; *p != '\0'; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno != 0)
        return -1;
    *out = v;
    return 0;
}

static int is_true(const char *s)
{
    return !strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") ||
           !strcasecmp(s, "on");
}

static int is_false(const char *s)
{
    return !strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") ||
           !strcasecmp(s, "off");
}

/* A libpq URI, or "key=value ..." whose first key is an identifier. A full parse is libpq's
 * business (and libpq calls belong in db*.c): this catches a value that is plainly something
 * else, such as an amqp:// URL or a bare host name. */
static int conninfo_shaped(const char *s)
{
    if (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0)
        return 1;
    while (isspace((unsigned char)*s))
        s++;
    const char *k = s;
    while (isalnum((unsigned char)*s) || *s == '_')
        s++;
    while (isspace((unsigned char)*s))
        s++;
    return s > k && *s == '=';
}

static int check_number(cfg_value_t *val, const cfg_var_t *v, const char *s)
{
    if (parse_long(s, &val->number) != 0)
        return problem(val, v, "is not an integer", s);
    long lo = v->kind == CFG_MS ? 0 : INT_MIN, hi = INT_MAX;
    if (v->max > v->min) {
        lo = v->min;
        hi = v->max;
    }
    if (val->number < lo || val->number > hi) {
        char what[96];
        snprintf(what, sizeof(what), "is out of range %ld..%ld", lo, hi);
        return problem(val, v, what, s);
    }
    return 0;
}

static int check(cfg_value_t *val, const cfg_var_t *v)
{
    const char *s = val->text;
    switch (v->kind) {
    case CFG_STRING:
        return 0;
    case CFG_INT:
    case CFG_MS:
        return check_number(val, v, s);
    case CFG_PORT:
        if (parse_long(s, &val->number) != 0 || val->number < 1 || val->number > 65535)
            return problem(val, v, "is not a TCP port (1..65535)", s);
        return 0;
    case CFG_BOOL:
        if (is_true(s))
            val->flag = 1;
        else if (is_false(s))
            val->flag = 0;
        else
            return problem(val, v, "is not a boolean (true or false)", s);
        return 0;
    case CFG_URL_AMQP:
        if (strncmp(s, "amqp://", 7) != 0 && strncmp(s, "amqps://", 8) != 0)
            return problem(val, v, "is not an amqp:// URL", s);
        return 0;
    case CFG_CONNINFO:
        if (!conninfo_shaped(s))
            return problem(
                val, v, "is not a libpq connection string (key=value ... or postgresql://...)", s);
        return 0;
    case CFG_ENUM: {
        for (const char *const *e = v->enum_values; e != NULL && *e != NULL; e++)
            if (strcmp(*e, s) == 0)
                return 0;
        char what[256] = "is not one of";
        for (const char *const *e = v->enum_values; e != NULL && *e != NULL; e++) {
            size_t len = strlen(what);
            snprintf(what + len, sizeof(what) - len, " %s", *e);
        }
        return problem(val, v, what, s);
    }
    }
    return problem(val, v, "has an unknown kind in the configuration table", NULL);
}

/* Joins the problems into cfg->problems and returns how many there are. */
static int join_problems(cfg_t *c, size_t *count)
{
    size_t total = 1;
    *count = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->values[i].problem != NULL)
            total += strlen(c->values[i].problem) + 1;
    c->problems = malloc(total);
    if (c->problems == NULL)
        return ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < c->n; i++) {
        const char *p = c->values[i].problem;
        if (p == NULL)
            continue;
        size_t len = strlen(p);
        memcpy(c->problems + o, p, len);
        c->problems[o + len] = '\n';
        o += len + 1;
        (*count)++;
    }
    c->problems[o] = '\0';
    return 0;
}

int cfg_load_from(const cfg_var_t *vars, size_t n, const char *(*getenv_fn)(const char *),
                  cfg_t **out, err_t *e)
{
    int rc = 0;
    size_t count = 0;
    cfg_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto nomem;
    c->vars = calloc(n ? n : 1, sizeof(*c->vars));
    c->values = calloc(n ? n : 1, sizeof(*c->values));
    if (c->vars == NULL || c->values == NULL)
        goto nomem;
    if (n > 0)
        memcpy(c->vars, vars, n * sizeof(*vars));
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        const cfg_var_t *v = &c->vars[i];
        cfg_value_t *val = &c->values[i];
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->vars[j].name, v->name) == 0) {
                rc = problem(val, v, "is listed twice in the configuration table", NULL);
                break;
            }
        }
        if (rc != 0)
            goto nomem;
        if (val->problem != NULL)
            continue;
        const char *raw = getenv_fn ? getenv_fn(v->name) : getenv(v->name);
        if (raw != NULL && raw[0] == '\0')
            raw = NULL; /* an empty variable counts as unset */
        if (raw == NULL)
            raw = v->default_value;
        if (raw == NULL) {
            if (v->required && problem(val, v, "required but not set", NULL) != 0)
                goto nomem;
            continue;
        }
        val->text = strdup(raw);
        if (val->text == NULL || check(val, v) != 0)
            goto nomem;
    }
    if (join_problems(c, &count) != 0)
        goto nomem;
    *out = c;
    if (count > 0)
        return err_set(e, ERR_CONFIG, "%zu configuration problem%s", count, count == 1 ? "" : "s");
    return 0;
nomem:
    cfg_free(c);
    return err_set(e, ERR_NOMEM, "out of memory loading configuration");
}

static const char *plain_getenv(const char *name) { return getenv(name); }

int cfg_load(const cfg_var_t *vars, size_t n, cfg_t **out, err_t *e)
{
    return cfg_load_from(vars, n, plain_getenv, out, e);
}

const char *cfg_problems(const cfg_t *cfg)
{
    return cfg != NULL && cfg->problems != NULL ? cfg->problems : "";
}

void cfg_load_or_exit(const char *service, const cfg_var_t *vars, size_t n, cfg_t **out)
{
    err_t e;
    cfg_t *c = NULL;
    if (cfg_load(vars, n, &c, &e) == 0) {
        *out = c;
        return;
    }
    fprintf(stderr, "%s: configuration error: %s\n", service, e.msg);
    for (size_t i = 0; c != NULL && i < c->n; i++) {
        if (c->values[i].problem == NULL)
            continue;
        fprintf(stderr, "%s:   %s\n", service, c->values[i].problem);
        if (c->vars[i].help != NULL)
            fprintf(stderr, "%s:     (%s: %s)\n", service, c->vars[i].name, c->vars[i].help);
    }
    cfg_free(c);
    exit(78);
}

static const cfg_value_t *find(const cfg_t *cfg, const char *name, const cfg_var_t **var)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if (strcmp(cfg->vars[i].name, name) == 0) {
            if (var != NULL)
                *var = &cfg->vars[i];
            return &cfg->values[i];
        }
    }
    fprintf(stderr, "cfg: %s is not in the configuration table\n", name);
    abort();
}

static const cfg_value_t *find_number(const cfg_t *cfg, const char *name)
{
    const cfg_var_t *v = NULL;
    const cfg_value_t *val = find(cfg, name, &v);
    if (v->kind != CFG_INT && v->kind != CFG_MS && v->kind != CFG_PORT) {
        fprintf(stderr, "cfg: %s is not a number in the configuration table\n", name);
        abort();
    }
    return val;
}

const char *cfg_str(const cfg_t *cfg, const char *name) { return find(cfg, name, NULL)->text; }

long cfg_long(const cfg_t *cfg, const char *name) { return find_number(cfg, name)->number; }

int cfg_int(const cfg_t *cfg, const char *name)
{
    long v = find_number(cfg, name)->number;
    return v < INT_MIN ? INT_MIN : v > INT_MAX ? INT_MAX : (int)v;
}

int cfg_bool(const cfg_t *cfg, const char *name)
{
    const cfg_var_t *v = NULL;
    const cfg_value_t *val = find(cfg, name, &v);
    if (v->kind != CFG_BOOL) {
        fprintf(stderr, "cfg: %s is not a boolean in the configuration table\n", name);
        abort();
    }
    return val->flag;
}

int cfg_is_set(const cfg_t *cfg, const char *name) { return find(cfg, name, NULL)->text != NULL; }

void cfg_free(cfg_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; cfg->values != NULL && i < cfg->n; i++) {
        free(cfg->values[i].text);
        free(cfg->values[i].problem);
    }
    free(cfg->values);
    free(cfg->vars);
    free(cfg->problems);
    free(cfg);
}
