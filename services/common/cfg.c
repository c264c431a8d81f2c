/* cfg: parsing and validation of the variable table (see cfg.h). */
#include "cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct cfg_value {
    char *text; /* NULL when unset */
    long number;
    int flag;
} cfg_value_t;

struct cfg {
    cfg_var_t *vars;
    cfg_value_t *values;
    size_t n;
    char *problems;
    size_t problems_len;
};

static void problem(cfg_t *c, const cfg_var_t *v, const char *fmt, const char *value)
{
    char line[512];
    int w;
    if (value != NULL && !v->secret)
        w = snprintf(line, sizeof(line), "%s: \"%.200s\" %s\n", v->name, value, fmt);
    else
        w = snprintf(line, sizeof(line), "%s: %s\n", v->name, fmt);
    if (w < 0)
        return;
    size_t add = strlen(line);
    char *grown = realloc(c->problems, c->problems_len + add + 1);
    if (grown == NULL)
        return;
    memcpy(grown + c->problems_len, line, add + 1);
    c->problems = grown;
    c->problems_len += add;
}

static int parse_long(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static void check(cfg_t *c, const cfg_var_t *v, cfg_value_t *val)
{
    const char *s = val->text;
    switch (v->kind) {
    case CFG_STRING:
        break;
    case CFG_INT:
    case CFG_MS:
        if (parse_long(s, &val->number) != 0) {
            problem(c, v, "is not an integer", s);
        } else if (v->max > v->min && (val->number < v->min || val->number > v->max)) {
            char msg[96];
            snprintf(msg, sizeof(msg), "is out of range %ld..%ld", v->min, v->max);
            problem(c, v, msg, s);
        }
        break;
    case CFG_PORT:
        if (parse_long(s, &val->number) != 0 || val->number < 1 || val->number > 65535)
            problem(c, v, "is not a TCP port (1..65535)", s);
        break;
    case CFG_BOOL:
        if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") ||
            !strcasecmp(s, "on"))
            val->flag = 1;
        else if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") ||
                 !strcasecmp(s, "off"))
            val->flag = 0;
        else
            problem(c, v, "is not a boolean (true or false)", s);
        break;
    case CFG_URL_AMQP:
        if (strncmp(s, "amqp://", 7) != 0)
            problem(c, v, "is not an amqp:// URL", v->secret ? NULL : s);
        break;
    case CFG_CONNINFO:
        if (s[0] == '\0')
            problem(c, v, "is empty", NULL);
        break;
    case CFG_ENUM: {
        int ok = 0;
        for (const char *const *e = v->enum_values; e != NULL && *e != NULL; e++)
            ok |= strcmp(*e, s) == 0;
        if (!ok) {
            char msg[256] = "is not one of";
            for (const char *const *e = v->enum_values; e != NULL && *e != NULL; e++) {
                size_t len = strlen(msg);
                snprintf(msg + len, sizeof(msg) - len, " %s", *e);
            }
            problem(c, v, msg, s);
        }
        break;
    }
    }
}

int cfg_load_from(const cfg_var_t *vars, size_t n, const char *(*getenv_fn)(const char *),
                  cfg_t **out, err_t *e)
{
    cfg_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return err_set(e, ERR_NOMEM, "out of memory loading configuration");
    c->vars = calloc(n ? n : 1, sizeof(*c->vars));
    c->values = calloc(n ? n : 1, sizeof(*c->values));
    if (c->vars == NULL || c->values == NULL) {
        cfg_free(c);
        return err_set(e, ERR_NOMEM, "out of memory loading configuration");
    }
    memcpy(c->vars, vars, n * sizeof(*vars));
    c->n = n;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        const cfg_var_t *v = &c->vars[i];
        const char *raw = getenv_fn ? getenv_fn(v->name) : getenv(v->name);
        if (raw != NULL && raw[0] == '\0')
            raw = NULL; /* an empty variable counts as unset */
        if (raw == NULL)
            raw = v->default_value;
        if (raw == NULL) {
            if (v->required) {
                problem(c, v, "required but not set", NULL);
                count++;
            }
            continue;
        }
        c->values[i].text = strdup(raw);
        if (c->values[i].text == NULL) {
            cfg_free(c);
            return err_set(e, ERR_NOMEM, "out of memory loading configuration");
        }
        size_t before = c->problems_len;
        check(c, v, &c->values[i]);
        count += c->problems_len != before;
    }
    *out = c;
    if (count > 0)
        return err_set(e, ERR_CONFIG, "%zu configuration problem%s", count, count == 1 ? "" : "s");
    return 0;
}

static const char *plain_getenv(const char *name)
{
    return getenv(name);
}

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
    const char *p = cfg_problems(c);
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(stderr, "%s:   %.*s\n", service, (int)len, p);
        p += len + (nl != NULL);
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

const char *cfg_str(const cfg_t *cfg, const char *name)
{
    return find(cfg, name, NULL)->text;
}

long cfg_long(const cfg_t *cfg, const char *name)
{
    return find(cfg, name, NULL)->number;
}

int cfg_int(const cfg_t *cfg, const char *name)
{
    return (int)find(cfg, name, NULL)->number;
}

int cfg_bool(const cfg_t *cfg, const char *name)
{
    return find(cfg, name, NULL)->flag;
}

void cfg_free(cfg_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; cfg->values != NULL && i < cfg->n; i++)
        free(cfg->values[i].text);
    free(cfg->values);
    free(cfg->vars);
    free(cfg->problems);
    free(cfg);
}
