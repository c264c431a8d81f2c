/* sagatool: what the saga tool's files share (petstore-saga, see main.c).
 *
 * The tool works on the orchestrator's own database (SAGA_DATABASE_URL, the saga's role) and
 * nothing else: it reads the sagas, their step log, timers, outbox and inbox, and it changes a
 * saga only the way the orchestrator does. A write verb is an input of the saga's machine
 * (SAGA_EV_OPERATOR_RETRY, _COMPENSATE, _RESUME; machine.h has their rows) applied with
 * saga_apply (handlers.c) inside one transaction that also appends the audit row: the step log
 * row, the optimistic version check, the commands in the saga's outbox (which the relay of the
 * saga database publishes, as it does the orchestrator's) and saga.order_status_changed when
 * the status changes. Nothing is published by the tool itself.
 *
 * The audit (saga/migrations/003_operator_actions.sql, table saga_operator_actions) is
 * append-only. One operator action on one saga has an action id (a UUIDv7) shared by its rows;
 * it is also the step's message_id in saga_steps and the causation_id of the commands it wrote,
 * so the step log, the outbox and the audit point at each other. Rows, by outcome:
 *   dry-run        --dry-run: what the machine would do; nothing else is written
 *   refused        the machine ignores the input in the saga's state (its why in detail)
 *   failed         the transaction could not be committed (the error in detail)
 *   sent           written in the step's own transaction: from, to, the new version
 *   confirmed      a second row once the check below passed
 *   not-confirmed  a second row when --wait ran out first (what the saga is and waits for)
 * A tool killed between sent and its second row leaves a sent row alone: the step happened,
 * nobody checked it.
 *
 * "Confirmed" means: every outbox row the action wrote was published by the relay (sent_at set,
 * or the row already deleted by the relay's retention, which only deletes sent rows) and the
 * saga moved on as expected: for compensate and resume a finished saga (CANCELLED, or
 * COMPLETED for a resumed confirmation: every re-sent command acknowledged, not only the first);
 * for retry a later step caused by a reply to the re-sent step, or a finished saga (a command
 * that is out with the timer armed has not yet happened). sagatool_confirmed says it.
 *
 * Files: main.c (the command table, configuration), opts.c and describe.c (pure: the command
 * line, durations, what a saga waits for, the last line of show; unit-tested), common.c (exit
 * statuses with what to do, JSON output), query.c (the tool's SQL), act.c (the write verbs'
 * engine: select, dry-run, apply, audit, confirm), and one cmd_*.c per verb. */
#ifndef PETSTORE_SAGATOOL_H
#define PETSTORE_SAGATOOL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "err.h"
#include "interrupt.h"
#include "machine.h"

/* Exit statuses. */
enum {
    SAGATOOL_EXIT_DONE = 0,
    SAGATOOL_EXIT_PARTIAL = 1, /* partly done, refused, or not confirmed */
    SAGATOOL_EXIT_USAGE = 2,
    SAGATOOL_EXIT_CONNECT = 3,
};

#define SAGATOOL_MAX_ORDERS 1000
#define SAGATOOL_DEFAULT_WAIT_S 30
#define SAGATOOL_DEFAULT_LIMIT 100

/* ---- opts.c: the command line (pure) ------------------------------------------------------ */

typedef struct sagatool_args {
    const char *verb;
    const char *orders[SAGATOOL_MAX_ORDERS]; /* ORDER arguments (borrowed from argv) */
    size_t n_orders;
    int has_state; /* --state S */
    saga_status_t state;
    long long stuck_for_ms; /* --stuck-for D (-1: not given) */
    int needs_operator;     /* --needs-operator */
    long limit;             /* --limit N (0: the verb's default) */
    const char *reason;     /* --reason TEXT */
    int dry_run, yes, json, help;
    double rate; /* --rate N sagas per second (0: no pacing) */
    int wait_s;  /* --wait SECONDS */
} sagatool_args_t;

/* Parses argv[first..argc) for verb into a (zeroed first) and checks what the verb needs:
 * list takes selectors only, show exactly one ORDER, the write verbs (retry, compensate,
 * resume) ORDER ids or selectors (not both) and --reason. ORDER ids must be uuids. On a usage
 * error returns ERR_INVALID with a message for the operator; --help sets a->help and skips the
 * checks. */
int sagatool_args_parse(const char *verb, int argc, char **argv, int first, sagatool_args_t *a,
                        err_t *e);

/* Whether verb changes sagas (retry, compensate, resume). */
int sagatool_verb_writes(const char *verb);

/* ms as a short text: "850 ms", "12 s", "5 min", "3 h", "2 d". */
void sagatool_format_duration(long long ms, char *out, size_t n);

/* ---- describe.c: what a saga is doing (pure) --------------------------------------------- */

/* The machine input of a write verb: 0 and *out, or -1 for another verb. */
int sagatool_verb_event(const char *verb, saga_event_t *out);

/* What a saga in state s waits for, for operators: "inventory.reserved", "inventory.released
 * and payment.refunded (or voided)", "an operator", or "nothing" once finished. */
void sagatool_waiting_for(const saga_state_t *s, char *out, size_t n);

/* One saga as show and list see it. Times are RFC 3339 strings or NULL. */
typedef struct sagatool_view {
    const char *order_id;
    saga_state_t state;
    const char *since;    /* when it entered its status */
    const char *deadline; /* its timer, or NULL when none */
    const char *timer_parked_at;
} sagatool_view_t;

/* The last line of show: "waiting for X until T", "finished: STATUS at T", or "parked: needs an
 * operator since T — try: petstore-saga resume ORDER --reason ..." (and the like for a parked
 * timer or a saga with no timer). */
void sagatool_last_line(const sagatool_view_t *v, char *out, size_t n);

/* Where a saga is after an operator's action, as read back by the confirmation check. */
typedef struct sagatool_progress {
    int unsent;         /* outbox rows of the action not yet published */
    int parked;         /* of those, rows the relay gave up on */
    int version;        /* the saga's version now */
    saga_state_t state; /* the saga now */
    int reply_after;    /* a step after the action caused by a message */
    int timer_armed;    /* a timer is set and not parked */
    char deadline[40];  /* its deadline, "" when none */
} sagatool_progress_t;

/* Whether the action of event ev (an operator input) has really happened (see the top). */
int sagatool_confirmed(saga_event_t ev, const sagatool_progress_t *p);

/* Why not yet, for the operator: "saga is COMPENSATING, waiting for inventory.released" plus
 * what the relay has not published. */
void sagatool_pending_text(const sagatool_progress_t *p, char *out, size_t n);

/* ---- common.c, query.c: the context and the database -------------------------------------- */

typedef struct saga_app saga_app_t;

typedef struct sagatool_ctx {
    const char *db_url, *operator_name;
    char host[128];
    db_conn_t *db;   /* opened on first use */
    saga_app_t *app; /* the saga's limits, as the orchestrator's */
    int json;
} sagatool_ctx_t;

/* Opens the database if needed; a failure is ERR_RETRY (exit status 3). */
int sagatool_db_open(sagatool_ctx_t *c, err_t *e);

/* Selectors of list and of a write verb's selection. */
typedef struct sagatool_filter {
    const char *state;      /* a status name, or NULL */
    long long stuck_for_ms; /* -1: any */
    int needs_operator;
    long limit;
} sagatool_filter_t;

/* The sagas f selects, most stuck first, as an array of objects (new reference): order_id,
 * status, reason, version, pending, attempts, since, age_ms, deadline, timer_failures,
 * timer_last_error, timer_parked_at, updated_at. Without a state, finished sagas are left out. */
int sagatool_query_list(sagatool_ctx_t *c, const sagatool_filter_t *f, json_t **out, err_t *e);

/* Everything about one order (new reference): saga, steps (with received_at from the inbox),
 * sent (the saga's outbox rows for it), actions (the audit). ERR_NOTFOUND without a saga. */
int sagatool_query_show(sagatool_ctx_t *c, const char *order_id, json_t **out, err_t *e);

/* The order's trace: the traceparent of its first outbox row (a child of order.placed's) into
 * out ("" when none). Timer steps start traces of their own; an operator's step continues the
 * order's. */
int sagatool_query_traceparent(sagatool_ctx_t *c, const char *order_id, char *out, size_t n,
                               err_t *e);

/* The outbox rows the action wrote (array of {message_id, type, routing_key}, new reference). */
int sagatool_query_action_rows(sagatool_ctx_t *c, const char *action_id, json_t **out, err_t *e);

/* Reads p for the action (order, action id, the version its step saved). */
int sagatool_query_progress(sagatool_ctx_t *c, const char *order_id, const char *action_id,
                            int version, sagatool_progress_t *p, err_t *e);

/* One audit row (saga_operator_actions). Strings borrowed; from, to, detail may be NULL;
 * version <= 0 is NULL. */
typedef struct sagatool_audit {
    const char *action_id, *verb, *order_id, *reason;
    int dry_run;
    const char *from_status, *to_status;
    int version;
    const char *outcome, *detail;
} sagatool_audit_t;

int sagatool_audit_add(sagatool_ctx_t *c, const sagatool_audit_t *a, err_t *e);

/* ---- common.c ------------------------------------------------------------------------------ */

/* Prints "petstore-saga: MESSAGE" and what to do for e; returns the exit status for e's class
 * (3 for a failure to connect, else 1). */
int sagatool_fail(const char *doing, const err_t *e);
int sagatool_usage(const char *fmt, ...) PETSTORE_PRINTF(1, 2);
void sagatool_print_json(const json_t *j);
int64_t sagatool_now_ms(void);
void sagatool_sleep_ms(int64_t ms);
/* SIGINT/SIGTERM set interrupt_requested (interrupt.h): a write verb stops before its next
 * saga. */

/* ---- the verbs ----------------------------------------------------------------------------- */

typedef int (*sagatool_cmd_fn)(sagatool_ctx_t *c, sagatool_args_t *a);
int sagatool_cmd_list(sagatool_ctx_t *c, sagatool_args_t *a);
int sagatool_cmd_show(sagatool_ctx_t *c, sagatool_args_t *a);
int sagatool_cmd_retry(sagatool_ctx_t *c, sagatool_args_t *a);
int sagatool_cmd_compensate(sagatool_ctx_t *c, sagatool_args_t *a);
int sagatool_cmd_resume(sagatool_ctx_t *c, sagatool_args_t *a);

/* act.c: a write verb from selection to report. */
int sagatool_act(sagatool_ctx_t *c, sagatool_args_t *a);

#endif
