/* petstore-saga: the saga tool. Lists stuck sagas, shows one as a timeline, and retries,
 * compensates or resumes sagas the way the orchestrator would (sagatool.h says how). One
 * command table; one file per verb.
 *
 *   petstore-saga VERB [ARGS]   (petstore-saga help; ./petstore saga runs it with its settings)
 *
 * Settings from the environment, as `./petstore env` exports them (or `./petstore saga` sets
 * them): SAGA_DATABASE_URL (the orchestrator's own database and role), SAGA_OPERATOR (who acts;
 * default the login name), and the orchestrator's SAGA_* limits (saga_cfg_vars), so that a
 * re-armed timer gets the timeout the orchestrator would give it.
 * Exit status: 0 done, 1 partly done or not confirmed, 2 usage error, 3 cannot connect. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "handlers.h"
#include "log.h"
#include "sagatool.h"

static const cfg_var_t tool_vars[] = {
    {.name = "SAGA_DATABASE_URL",
     .kind = CFG_CONNINFO,
     .required = 1,
     .secret = 1,
     .help = "the saga database; run eval \"$(./petstore env)\" or use ./petstore saga"},
    {.name = "SAGA_OPERATOR", .kind = CFG_STRING, .help = "who acts, for the saga tool's audit"},
};

#define WRITE_OPTS                                                                                 \
    "  --reason TEXT     required: why (goes in the audit and the step log)\n"                     \
    "  --dry-run         print what would be done; change no saga (an audit row says it)\n"        \
    "  --yes             required when more than one saga is selected\n"                           \
    "  --rate N          at most N sagas per second\n"                                             \
    "  --wait SECONDS    how long to check that the step happened (default 30)\n"                  \
    "  ORDER...          order ids, or a selection instead: --state S, --stuck-for D,\n"           \
    "                    --needs-operator, --limit N (as list)\n"                                  \
    "Success (exit 0) only once the commands were published by relay-saga and the saga moved\n"    \
    "on; otherwise exit 1: \"sent, not confirmed within Ns: saga is X, waiting for Y\".\n"

typedef struct command {
    const char *name, *args, *summary, *more;
    sagatool_cmd_fn fn;
} command_t;

static const command_t commands[] = {
    {"list", "[--state S] [--stuck-for DURATION] [--needs-operator] [--limit N]",
     "sagas not finished, most stuck first: status, reason, time in state, what they wait for "
     "and until when, attempts, parked timers",
     "  --state S          only sagas in status S (COMPLETED and CANCELLED included)\n"
     "  --stuck-for D      only unfinished sagas in their status for D or longer (30s, 5m, 2h)\n"
     "  --needs-operator   only sagas in NEEDS_OPERATOR or with a parked timer\n"
     "  --limit N          at most N (default 100)\n",
     sagatool_cmd_list},
    {"show", "ORDER",
     "one saga as a timeline: steps, messages sent and received, timer, trace, "
     "and what it waits for",
     "The last line says what happens next: \"waiting for X until T\", \"finished: STATUS at "
     "T\"\nor \"parked: needs an operator since T — try: ...\".\n",
     sagatool_cmd_show},
    {"retry", "ORDER...|SEL --reason TEXT",
     "send the current step's command again (reserve, charge, confirm, or the pending "
     "compensations), timer re-armed",
     WRITE_OPTS, sagatool_cmd_retry},
    {"compensate", "ORDER...|SEL --reason TEXT",
     "give up on RESERVING or PAYING sagas (or one parked unconfirmed): release, refund; "
     "CANCELLED with reason TIMEOUT",
     WRITE_OPTS, sagatool_cmd_compensate},
    {"resume", "ORDER...|SEL --reason TEXT",
     "take a NEEDS_OPERATOR saga up again: its compensations resent, or its confirmation",
     WRITE_OPTS, sagatool_cmd_resume},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void help(FILE *f)
{
    fprintf(f, "petstore-saga: see, retry, compensate and resume order sagas.\n\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  petstore-saga %-10s %s\n      %s\n", commands[i].name, commands[i].args,
                commands[i].summary);
    fprintf(f, "\nEvery verb takes --json and --help. The write verbs (retry, compensate, resume)\n"
               "take --dry-run, --yes, --rate N and --wait SECONDS, and require --reason TEXT.\n"
               "Settings: SAGA_DATABASE_URL (required), SAGA_OPERATOR (default: login name).\n"
               "Exit status: 0 done, 1 partly done or not confirmed, 2 usage error, 3 cannot "
               "connect.\n");
}

static void verb_help(const command_t *cmd)
{
    printf("petstore-saga %s %s\n  %s\n\n%s  --json            machine-readable output\n",
           cmd->name, cmd->args, cmd->summary, cmd->more);
}

static const char *login_name(void)
{
    const char *sudo = getenv("SUDO_USER");
    struct passwd *pw = getpwuid(getuid());
    return sudo && sudo[0] ? sudo : pw && pw->pw_name ? pw->pw_name : "unknown";
}

/* Loads the tool's variables and the saga's limits in one table, every problem at once. */
static int load_config(cfg_t **cfg, err_t *e)
{
    size_t n = sizeof(tool_vars) / sizeof(tool_vars[0]) + saga_n_cfg_vars;
    cfg_var_t *vars = calloc(n, sizeof(*vars));
    if (vars == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    memcpy(vars, tool_vars, sizeof(tool_vars));
    memcpy(vars + sizeof(tool_vars) / sizeof(tool_vars[0]), saga_cfg_vars,
           saga_n_cfg_vars * sizeof(*vars));
    int rc = cfg_load(vars, n, cfg, e);
    free(vars); /* cfg_load copied the table; its strings are static */
    return rc;
}

int main(int argc, char **argv)
{
    log_init("petstore-saga", LOG_WARN, STDERR_FILENO);
    const char *verb = argc > 1 ? argv[1] : "help";
    if (strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
        const char *about = argc > 2 && strcmp(verb, "help") == 0 ? argv[2] : NULL;
        for (size_t i = 0; about && i < N_COMMANDS; i++)
            if (strcmp(commands[i].name, about) == 0) {
                verb_help(&commands[i]);
                return SAGATOOL_EXIT_DONE;
            }
        help(stdout);
        return SAGATOOL_EXIT_DONE;
    }
    const command_t *cmd = NULL;
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, verb) == 0)
            cmd = &commands[i];
    if (cmd == NULL)
        return sagatool_usage("unknown verb \"%s\"", verb);

    err_t e;
    err_clear(&e);
    sagatool_args_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return SAGATOOL_EXIT_PARTIAL;
    if (sagatool_args_parse(verb, argc, argv, 2, a, &e) != 0) {
        free(a);
        return sagatool_usage("%s: %s", verb, e.msg);
    }
    if (a->help) {
        verb_help(cmd);
        free(a);
        return SAGATOOL_EXIT_DONE;
    }

    cfg_t *cfg = NULL;
    if (load_config(&cfg, &e) != 0) {
        fprintf(stderr, "petstore-saga: configuration: %s%s", cfg ? "\n" : e.msg,
                cfg ? cfg_problems(cfg) : "\n");
        fprintf(stderr, "  run eval \"$(./petstore env)\" first, or use ./petstore saga %s\n",
                verb);
        cfg_free(cfg);
        free(a);
        return SAGATOOL_EXIT_USAGE;
    }
    sagatool_ctx_t c = {
        .db_url = cfg_str(cfg, "SAGA_DATABASE_URL"),
        .operator_name = cfg_str(cfg, "SAGA_OPERATOR"),
        .json = a->json,
    };
    if (c.operator_name == NULL)
        c.operator_name = login_name();
    if (gethostname(c.host, sizeof(c.host)) != 0)
        snprintf(c.host, sizeof(c.host), "unknown");
    c.host[sizeof(c.host) - 1] = '\0';
    interrupt_install();

    int status;
    if (saga_app_new(cfg, &c.app, &e) != 0) {
        status = sagatool_fail("reading the saga's limits", &e);
    } else if (sagatool_db_open(&c, &e) != 0) {
        status = sagatool_fail("connecting to the saga database", &e);
    } else {
        status = cmd->fn(&c, a);
    }
    db_close(c.db);
    saga_app_free(c.app);
    cfg_free(cfg);
    free(a);
    return status;
}
