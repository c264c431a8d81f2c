/* dlq: what the dead-letter tool's files share.
 *
 * The tool walks a dead-letter queue with basic.get on its own connection and keeps every
 * message it took checked out (unacknowledged) until it is done: a message leaves the queue only
 * when it is acknowledged, which happens after its copy was confirmed at its destination
 * (replay, move) or after the operator said --yes (purge). Everything still checked out goes
 * back with one requeue per message in the order it was taken, so the messages not selected
 * keep their order; a killed tool's connection drops and the broker returns them by itself.
 * The walk takes as many messages as the queue held when it started, so messages that arrive
 * meanwhile are not part of the selection.
 *
 * Files: main.c (the command table and the shared options), opts.c and select.c (parsing and
 * selection, pure), message.c (what a dead letter says: class, fingerprint, authenticity;
 * pure), walk.c (taking and returning messages), send.c (publishing copies with confirms, the
 * rate limit and the progress line), store.c (the tool's database: history and notes), and
 * one cmd_*.c per verb. */
#ifndef PETSTORE_DLQ_H
#define PETSTORE_DLQ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "db.h"
#include "err.h"
#include "interrupt.h"
#include "mq.h"
#include "mq_consume.h"
#include "mq_publish.h"

/* Exit statuses. */
enum { DLQ_EXIT_DONE = 0, DLQ_EXIT_PARTIAL = 1, DLQ_EXIT_USAGE = 2, DLQ_EXIT_CONNECT = 3 };

#define DLQ_MAX_IDS 4096
/* At most this many messages are taken from one queue in one run (they are held in memory and
 * checked out until the run ends); a deeper queue is worked on from its head, and the tool says
 * so. */
#define DLQ_WALK_MAX 50000

/* ---- opts.c: the command line ------------------------------------------------------------ */

/* The shared selectors. A message is selected when it matches every selector given. */
typedef struct dlq_sel {
    const char **ids; /* message ids (--id, repeatable or comma-separated; or a manifest's) */
    size_t n_ids;
    const char *group;   /* --group FP */
    const char *type;    /* --type T */
    time_t since, until; /* --since / --until (0: not given); dead-lettered within [since, until] */
    int all;             /* --all */
    const char *manifest;    /* --manifest FILE (its ids are loaded into ids) */
    long long older_than_ms; /* purge --older-than (0: not given) */
} dlq_sel_t;

typedef struct dlq_args {
    const char *verb;
    const char *pos[3]; /* positional arguments */
    int n_pos;
    dlq_sel_t sel;
    const char *to;     /* --to */
    const char *out;    /* -o FILE */
    const char *status; /* --status */
    double rate;        /* --rate (0: unlimited) */
    long canary;        /* --canary K (0: none) */
    long long canary_wait_ms;
    long limit;               /* --limit (0: none) */
    int yes;                  /* --yes */
    int json;                 /* --json */
    char *owned[DLQ_MAX_IDS]; /* strings the parser allocated (split id lists, manifest) */
    size_t n_owned;
} dlq_args_t;

/* Parses argv[first..argc) into a (zeroed first). On a usage error returns ERR_INVALID with a
 * message for the operator. Pure apart from reading a --manifest file. */
int dlq_args_parse(int argc, char **argv, int first, dlq_args_t *a, err_t *e);
void dlq_args_free(dlq_args_t *a);

/* RFC 3339 ("2026-12-05T01:00:00Z", fractions and +hh:mm offsets allowed) or a duration ago
 * relative to now -> seconds since the epoch. ERR_INVALID otherwise. */
int dlq_parse_time(const char *s, time_t now, time_t *out, err_t *e);
/* The same in milliseconds (a fraction's first three digits count). */
int dlq_parse_time_ms(const char *s, int64_t now_ms, int64_t *out, err_t *e);
/* Formats t as RFC 3339 UTC into out (>= 21 bytes). */
void dlq_format_time(time_t t, char *out, size_t n);

/* ---- message.c: what a dead letter says ---------------------------------------------------- */

typedef struct dlq_msg {
    mq_delivery_t *d; /* owned */
    size_t position;  /* 0-based index in the queue when it was taken */
    const char *id, *type;
    const char *klass; /* failure class; "delivery-limit" for RabbitMQ's own dead letters */
    const char *code, *error, *handler, *original_queue;
    const char *exchange, *routing_key; /* the original destination ("" unknown) */
    const char *sender;                 /* the original sender as recorded ("" unknown) */
    const char *producer;               /* who may produce type (NULL: unknown type) */
    long attempts, replay_count;
    time_t dead_at, first_death;
    int64_t dead_at_ms; /* dead_at to the millisecond, when the dead letter says so */
    char trace_id[33];
    char fingerprint[17];
    char refusal[200]; /* why it cannot be replayed; "" when it can */
} dlq_msg_t;

/* Reads m->d (set by the caller) into the other fields; dlq_queue is the queue it came from.
 * Pure. */
void dlq_msg_parse(dlq_msg_t *m, const char *dlq_queue);
/* The fingerprint of a group: 16 hex digits of a hash over class, code, type, handler and
 * original queue. Pure. */
void dlq_fingerprint(const char *klass, const char *code, const char *type, const char *handler,
                     const char *original_queue, char out[17]);
/* The body as text with card-like digit runs masked and bytes that are not printable UTF-8
 * escaped; caller frees. */
char *dlq_masked_body(const mq_delivery_t *d);
/* m as a JSON object for show --json (new reference). */
json_t *dlq_msg_json(const dlq_msg_t *m);
/* The work queue a dead-letter queue belongs to ("saga.events" for "saga.events.dlq"). */
void dlq_base_queue(const char *dlq_queue, char *out, size_t n);
/* Whether m matches every selector of s at time now. */
int dlq_sel_match(const dlq_sel_t *s, const dlq_msg_t *m, time_t now);
/* Whether s selects anything on its own (some selector besides --limit). */
int dlq_sel_given(const dlq_sel_t *s);
/* s as a JSON object for the history (new reference). */
json_t *dlq_sel_json(const dlq_sel_t *s);

/* ---- walk.c: taking messages from a queue and giving them back ----------------------------- */

typedef struct dlq_walk {
    mq_conn_t *conn;
    char queue[256];
    dlq_msg_t *msgs;
    size_t n, cap;
    unsigned char *settled; /* per message: acknowledged (gone) */
    unsigned unsynced;      /* acks sent since the broker last proved it applied them */
} dlq_walk_t;

/* Opens a connection (ca_file: TLS_CA_FILE for amqps://, NULL: the system's store) and takes up
 * to max messages (0: as many as the queue holds now) from queue, keeping them checked out.
 * ERR_CONFIG when the queue does not exist or is not readable. */
int dlq_walk_open(const char *amqp_url, const char *ca_file, const char *queue, size_t max,
                  dlq_walk_t *w, err_t *e);
/* Takes messages that arrived since (for the canary watch): appends them to w. */
int dlq_walk_more(dlq_walk_t *w, size_t *added, err_t *e);
/* Removes message i from the queue (acknowledges it). Every DLQ_ACK_SYNC_EVERY acks it waits
 * until the broker has applied the earlier ones (see walk.c: a quorum queue may forget acks
 * otherwise); a message that arrived meanwhile may be taken then, and is appended to w. */
int dlq_walk_ack(dlq_walk_t *w, size_t i, err_t *e);
/* Gives every message not acknowledged back, in the order taken, and closes. NULL-safe. */
void dlq_walk_close(dlq_walk_t *w);
/* Keeps the connection alive while the tool waits. */
void dlq_walk_keepalive(dlq_walk_t *w);

/* ---- send.c: publishing copies, rate limit, progress --------------------------------------- */

typedef struct dlq_progress {
    const char *what;
    size_t total, done;
    int64_t started_ms, shown_ms;
    int tty;
} dlq_progress_t;

void dlq_progress_start(dlq_progress_t *p, const char *what, size_t total);
void dlq_progress_step(dlq_progress_t *p, size_t done);
void dlq_progress_end(dlq_progress_t *p);
int64_t dlq_now_ms(void);
/* Sleeps until ms (monotonic, dlq_now_ms), keeping w alive; returns early on SIGINT/SIGTERM. */
void dlq_sleep_until(int64_t ms, dlq_walk_t *w);
/* SIGINT/SIGTERM set interrupt_requested (interrupt.h): the run stops after the batch in hand. */

/* ---- run.c: a verb's selection and sending ------------------------------------------------- */

struct dlq_ctx;

/* A verb at work on one queue: the messages taken, which of them are selected. */
typedef struct dlq_run {
    char queue[256];
    dlq_walk_t w;
    size_t *selected; /* indexes into w.msgs, in queue order */
    size_t n_selected;
    time_t now;
    char id[37]; /* the run's uuid */
} dlq_run_t;

/* Checks QUEUE (a->pos[0]) and the selectors (need_selector: the verb changes things, so an
 * empty selection must be said with --all), takes the queue's messages and selects. Returns 0,
 * or the exit status after printing what to do. */
int dlq_run_open(struct dlq_ctx *c, dlq_args_t *a, int need_selector, dlq_run_t *r);
void dlq_run_close(dlq_run_t *r);

typedef struct dlq_tally {
    size_t selected, done, refused, unroutable, failed;
    const char *canary; /* "none", "passed", "failed" */
    char detail[512];   /* the first problem, for the operator and the history */
} dlq_tally_t;

/* What to send for message m: fills *out (exchange, routing key, headers as a new object in
 * *headers) and returns 0, or returns -1 with why (refused: left in place). */
typedef int (*dlq_build_fn)(void *arg, const dlq_run_t *r, const dlq_msg_t *m, mq_message_t *out,
                            json_t **headers, char *why, size_t n);

/* Publishes copies of r->selected[from..to) built by build, mandatory with confirms, at most rate
 * per second (0: no limit), and acknowledges each original once its copy is confirmed. Stops at
 * the first failure of the destination (it does not exist, refuses the dlq user, the broker is
 * gone): what was not confirmed stays in the queue. Returns 0 when it got through the range
 * (some may be refused or unroutable: see t), else the error. */
int dlq_send(struct dlq_ctx *c, dlq_run_t *r, mq_conn_t *pub, size_t from, size_t to, double rate,
             int64_t started_ms, size_t sent_before, dlq_build_fn build, void *arg, dlq_tally_t *t,
             dlq_progress_t *p, err_t *e);
/* The summary of a verb that sends or removes: printed (text or --json) and recorded. Returns the
 * exit status: 0 when every selected message was done, else 1. */
int dlq_finish(struct dlq_ctx *c, dlq_args_t *a, dlq_run_t *r, const char *verb, dlq_tally_t *t,
               int64_t started_ms);
/* A copy of d's headers for publishing again: nested values (x-death) folded into
 * x-petstore-previous-* strings, x-delivery-count dropped (new reference). */
json_t *dlq_republish_headers(const mq_delivery_t *d);
/* The message to publish for a copy of m: every property of the original, user_id login,
 * headers (borrowed). */
mq_message_t dlq_copy(const dlq_msg_t *m, const char *exchange, const char *routing_key,
                      const char *login, const json_t *headers);
/* A connection in confirm mode for publishing copies, or NULL after printing why (*status: the
 * exit status). */
mq_conn_t *dlq_publisher(struct dlq_ctx *c, const char *name, int *status);
/* Records that a run that may be long (replay, move) starts, so that even a killed one leaves a
 * trace of who started what. */
void dlq_history_started(struct dlq_ctx *c, const dlq_args_t *a, const dlq_run_t *r);

/* ---- store.c: the tool's database ---------------------------------------------------------- */

typedef struct dlq_ctx {
    const char *amqp_url, *db_url, *mgmt_url, *operator_name;
    const char *ca_file; /* TLS_CA_FILE: authorities for amqps:// and https://, NULL: system's */
    char host[128];
    db_conn_t *db; /* opened on first use */
    int json;
} dlq_ctx_t;

/* Opens the database if needed. ERR_* as db_open. */
int dlq_store_open(dlq_ctx_t *c, err_t *e);
int dlq_store_migrate(dlq_ctx_t *c, err_t *e);
/* Appends one row to the history; selection and counts may be NULL (borrowed). */
int dlq_history_add(dlq_ctx_t *c, const char *verb, const char *queue, const json_t *selection,
                    const char *outcome, const json_t *counts, const char *run, const char *detail,
                    err_t *e);
/* The history, newest first, as an array of objects (new reference). */
int dlq_history_list(dlq_ctx_t *c, long limit, json_t **out, err_t *e);
/* The note of every group: object fingerprint -> {status, text, updated_at, updated_by,
 * resolved_at} (new reference). */
int dlq_notes_all(dlq_ctx_t *c, json_t **out, err_t *e);
int dlq_note_set(dlq_ctx_t *c, const char *fingerprint, const char *status, const char *text,
                 err_t *e);

/* ---- the verbs ----------------------------------------------------------------------------- */

typedef int (*dlq_cmd_fn)(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_list(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_groups(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_show(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_plan(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_replay(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_move(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_purge(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_history(dlq_ctx_t *c, dlq_args_t *a);
int dlq_cmd_note(dlq_ctx_t *c, dlq_args_t *a);

/* Helpers for the verbs (main.c). */
/* Prints "dlq: MESSAGE\n  what to do" for e to stderr and returns the exit status for e's class:
 * DLQ_EXIT_CONNECT for ERR_RETRY/ERR_TIMEOUT/connection refusals, else DLQ_EXIT_PARTIAL. */
int dlq_fail(const char *doing, const err_t *e);
/* Marks e as a failure to connect or log in (exit status 3), keeping its message. Returns the
 * new code. */
int dlq_connect_failed(err_t *e);
int dlq_usage(const char *fmt, ...) PETSTORE_PRINTF(1, 2);
/* "saga.events" or "saga.events.dlq" -> "saga.events.dlq". */
void dlq_queue_name(const char *arg, char *out, size_t n);
/* Every queue ending in .dlq, with its depth, from the management API (new reference: array of
 * {"name","messages"}). */
int dlq_list_queues(dlq_ctx_t *c, json_t **out, err_t *e);
/* Prints j to stdout as one JSON document. */
void dlq_print_json(const json_t *j);

#endif
