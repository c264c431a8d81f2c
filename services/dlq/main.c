/* dlq: the dead-letter tool. Finds, explains, re-drives and retires the messages in the .dlq
 * queues, losing and duplicating none (dlq.h says how). One command table; one file per verb.
 *
 *   dlq VERB [ARGS]      (dlq help lists the verbs; ./petstore dlq runs it with its settings)
 *   dlq --migrate        creates or updates its database (./petstore up does)
 *
 * Settings from the environment, as `./petstore env` exports them: DLQ_AMQP_URL (its own broker
 * user), DLQ_DATABASE_URL (its own database), RABBITMQ_MGMT_URL (the management API, used with
 * DLQ_AMQP_URL's credentials to list queues), TLS_CA_FILE (the authorities that sign the broker's
 * certificates, for an https:// management URL; unset: the system's store), DLQ_OPERATOR (who
 * acts; default the login name).
 * Exit status: 0 done, 1 partly done, 2 usage error, 3 cannot connect. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "dlq.h"
#include "log.h"

static const cfg_var_t vars[] = {
    {.name = "DLQ_AMQP_URL",
     .kind = CFG_URL_AMQP,
     .required = 1,
     .secret = 1,
     .help = "the dlq broker user's URL; run eval \"$(./petstore env)\" or use ./petstore dlq"},
    {.name = "DLQ_DATABASE_URL",
     .kind = CFG_CONNINFO,
     .required = 1,
     .secret = 1,
     .help = "the dlq database; run eval \"$(./petstore env)\" or use ./petstore dlq"},
    {.name = "RABBITMQ_MGMT_URL",
     .kind = CFG_STRING,
     .required = 1,
     .help = "RabbitMQ management API, http://host:port or https://host:port; run eval "
             "\"$(./petstore env)\""},
    {.name = "TLS_CA_FILE",
     .kind = CFG_STRING,
     .help = "PEM certificates of the authorities that sign the broker's certificates (amqps:// "
             "and https:// management API); unset: the system's store"},
    {.name = "DLQ_OPERATOR", .kind = CFG_STRING, .help = "who acts, for dlq history"},
};

typedef struct command {
    const char *name, *args, *help;
    dlq_cmd_fn fn;
} command_t;

static const command_t commands[] = {
    {"list", "", "every dead-letter queue: depth, oldest message age, groups", dlq_cmd_list},
    {"groups", "[QUEUE]", "dead letters grouped by failure, with counts, times and notes",
     dlq_cmd_groups},
    {"show", "QUEUE [SEL] [--limit N]", "each message: failure, origin, trace, masked body",
     dlq_cmd_show},
    {"plan", "QUEUE [SEL] -o FILE", "freeze a selection to a manifest; print what replay would do",
     dlq_cmd_plan},
    {"replay", "QUEUE SEL [--to EXCHANGE:KEY] [--rate N] [--canary K] [--canary-wait DUR]",
     "publish each selected message again, then remove it from the .dlq", dlq_cmd_replay},
    {"move", "QUEUE --to QUEUE SEL", "move selected messages to another queue", dlq_cmd_move},
    {"purge", "QUEUE SEL [--older-than DUR] --yes", "remove selected messages for good",
     dlq_cmd_purge},
    {"history", "[--limit N]", "every action of this tool: who, when, what, outcome",
     dlq_cmd_history},
    {"note", "GROUP [--status open|investigating|resolved] TEXT", "the ticket of a group",
     dlq_cmd_note},
};

static void help(FILE *f)
{
    fprintf(f, "dlq: find, understand, re-drive and retire dead letters.\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  dlq %-8s %s\n      %s\n", commands[i].name, commands[i].args,
                commands[i].help);
    fprintf(f, "\nSEL (selectors, combined with AND): --id ID[,ID...] --group FP --type T\n"
               "  --since TIME --until TIME (RFC 3339 or a duration ago: 30m, 2h, 1d)\n"
               "  --all --manifest FILE (from plan). Every verb takes --json.\n"
               "QUEUE: saga.events.dlq, or saga.events.\n"
               "Exit status: 0 done, 1 partly done, 2 usage error, 3 cannot connect.\n");
}

/* One verb's usage, for "dlq VERB --help" and "dlq help VERB". */
static void verb_help(FILE *f, const command_t *cmd)
{
    fprintf(f, "usage: dlq %s %s\n  %s\n", cmd->name, cmd->args, cmd->help);
    fprintf(f, "SEL (selectors, combined with AND): --id ID[,ID...] --group FP --type T\n"
               "  --since TIME --until TIME --all --manifest FILE; --json for JSON output.\n"
               "Exit status: 0 done, 1 partly done, 2 usage error, 3 cannot connect.\n");
}

static int asks_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

static int migrate(dlq_ctx_t *c)
{
    err_t e;
    err_clear(&e);
    if (dlq_store_migrate(c, &e) != 0)
        return dlq_fail("migrating the dlq database", &e);
    fprintf(stderr, "dlq: database migrated\n");
    return DLQ_EXIT_DONE;
}

int main(int argc, char **argv)
{
    log_init("dlq", LOG_WARN, STDERR_FILENO);
    const char *verb = argc > 1 ? argv[1] : "help";
    int help_verb = 0;
    if (strcmp(verb, "help") == 0 && argc > 2) {
        verb = argv[2];
        help_verb = 1;
    } else if (strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 ||
               strcmp(verb, "-h") == 0) {
        help(stdout);
        return DLQ_EXIT_DONE;
    }
    const command_t *cmd = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, verb) == 0)
            cmd = &commands[i];
    if (cmd == NULL && strcmp(verb, "--migrate") != 0)
        return dlq_usage("unknown verb \"%s\"", verb);
    if (cmd != NULL && (help_verb || asks_help(argc, argv))) {
        verb_help(stdout, cmd);
        return DLQ_EXIT_DONE;
    }

    cfg_t *cfg = NULL;
    err_t e;
    err_clear(&e);
    if (cfg_load(vars, sizeof(vars) / sizeof(vars[0]), &cfg, &e) != 0) {
        fprintf(stderr, "dlq: configuration: %s%s", cfg ? "\n" : e.msg,
                cfg ? cfg_problems(cfg) : "\n");
        fprintf(stderr, "  run eval \"$(./petstore env)\" first, or use ./petstore dlq %s\n", verb);
        cfg_free(cfg);
        return DLQ_EXIT_USAGE;
    }
    dlq_ctx_t c = {
        .amqp_url = cfg_str(cfg, "DLQ_AMQP_URL"),
        .db_url = cfg_str(cfg, "DLQ_DATABASE_URL"),
        .mgmt_url = cfg_str(cfg, "RABBITMQ_MGMT_URL"),
        .ca_file = cfg_str(cfg, "TLS_CA_FILE"),
        .operator_name = cfg_str(cfg, "DLQ_OPERATOR"),
    };
    if (c.operator_name == NULL) {
        const char *sudo = getenv("SUDO_USER");
        struct passwd *pw = getpwuid(getuid());
        c.operator_name = sudo && sudo[0] ? sudo : pw && pw->pw_name ? pw->pw_name : "unknown";
    }
    if (gethostname(c.host, sizeof(c.host)) != 0)
        snprintf(c.host, sizeof(c.host), "unknown");
    c.host[sizeof(c.host) - 1] = '\0';
    interrupt_install();

    int status;
    if (cmd == NULL) {
        status = migrate(&c);
    } else {
        dlq_args_t a;
        memset(&a, 0, sizeof(a));
        if (dlq_args_parse(argc, argv, 2, &a, &e) != 0) {
            status = dlq_usage("%s: %s", verb, e.msg);
        } else {
            c.json = a.json;
            status = cmd->fn(&c, &a);
        }
        dlq_args_free(&a);
    }
    db_close(c.db);
    cfg_free(cfg);
    return status;
}
