/* handlers: payment.charge.v1 and payment.refund_or_void.v1.
 *
 * Both run inside the consumer's batch transaction (svc.h) and follow one pattern: take the
 * order's lock and read what the ledger already says about it (payment_order_ledger, one round
 * trip); if the ledger has already answered, answer the same again (commands are redelivered
 * and re-sent, with the same or a new message id); otherwise decide, write the ledger row and
 * the balance change in one statement, and emit the answer through the outbox.
 *
 * Invariants, each also enforced by the schema (migrations/001_cards_and_ledger.sql):
 *   - one charge per order, ever; a decline is final for its order;
 *   - a refund only returns an existing charge, at most once; when there is nothing to refund
 *     a void is recorded, so a charge that arrives later is declined ORDER_CLOSED;
 *   - a balance never goes negative; ledger rows are never changed.
 * The card number exists only in a local buffer between opening the sealed box and hashing
 * it, and is wiped on every path. Only the last four digits are logged or stored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "payment.h"

static const char *const decline_names[PAYMENT_DECLINE_COUNT] = {
    [PAYMENT_CARD_INVALID] = "CARD_INVALID",
    [PAYMENT_CARD_UNKNOWN] = "CARD_UNKNOWN",
    [PAYMENT_INSUFFICIENT_FUNDS] = "INSUFFICIENT_FUNDS",
    [PAYMENT_ORDER_CLOSED] = "ORDER_CLOSED",
    [PAYMENT_EXPIRED] = "EXPIRED",
};

const char *payment_decline_name(payment_decline_t reason)
{
    return (unsigned)reason < PAYMENT_DECLINE_COUNT ? decline_names[reason] : "UNKNOWN";
}

/* The order's lock and ledger, plus whether the charge has expired (database time; a charge
 * without expires_at never expires). Always one row; the entry columns are NULL when the
 * ledger holds nothing for the order. */
static const db_stmt_t charge_state_stmt = {
    .name = "payment_charge_state",
    .sql = "SELECT coalesce(now() >= $2::timestamptz, false), o.entry_id, o.entry_kind,"
           "       o.entry_amount_cents, o.entry_reason, o.entry_last4 "
           "FROM (SELECT) AS one LEFT JOIN payment_order_ledger($1::uuid) AS o ON true",
    .nparams = 2,
};

static const db_stmt_t refund_state_stmt = {
    .name = "payment_refund_state",
    .sql = "SELECT NULL::boolean, o.entry_id, o.entry_kind, o.entry_amount_cents,"
           "       o.entry_reason, o.entry_last4, o.entry_card_id "
           "FROM (SELECT) AS one LEFT JOIN payment_order_ledger($1::uuid) AS o ON true",
    .nparams = 1,
};

/* Finds the card by its hash, locks it and, if the balance covers the amount, debits it and
 * writes the charge: the whole happy path in one round trip. Returns one row: the card's id
 * (NULL if unknown), its balance as locked, and whether the charge was written.
 *
 * Under READ COMMITTED the FOR UPDATE in `card` returns the newest committed version of the row
 * and holds its lock; the UPDATE then re-reads that version (EvalPlanQual), so a concurrent
 * charge on the same card can never be lost or overdraw it. The CHECK (balance_cents >= 0)
 * backs this up. */
static const db_stmt_t charge_stmt = {
    .name = "payment_charge",
    .sql = "WITH card AS ("
           "  SELECT id, balance_cents FROM cards WHERE card_hash = decode($2, 'hex') FOR UPDATE"
           "), debit AS ("
           "  UPDATE cards AS c SET balance_cents = c.balance_cents - $3::bigint,"
           "         version = c.version + 1, updated_at = now()"
           "  FROM card WHERE c.id = card.id AND card.balance_cents >= $3::bigint"
           "  RETURNING c.id"
           "), entry AS ("
           "  INSERT INTO ledger (order_id, card_id, kind, amount_cents, last4, message_id)"
           "  SELECT $1::uuid, debit.id, 'charge', $3::bigint, $4, $5::uuid FROM debit"
           "  RETURNING id"
           ") "
           "SELECT card.id, card.balance_cents, (SELECT count(*) FROM entry) AS charged "
           "FROM (SELECT) AS one LEFT JOIN card ON true",
    .nparams = 5,
    .secret = DB_SECRET(2), /* the card hash */
};

static const db_stmt_t decline_stmt = {
    .name = "payment_decline",
    .sql = "INSERT INTO ledger (order_id, card_id, kind, amount_cents, reason, last4, message_id) "
           "VALUES ($1::uuid, $2::uuid, 'decline', $3::bigint, $4, $5, $6::uuid)",
    .nparams = 6,
};

/* Returns the charge's money to its card and records the refund, naming the charge. */
static const db_stmt_t refund_stmt = {
    .name = "payment_refund",
    .sql = "WITH credit AS ("
           "  UPDATE cards SET balance_cents = balance_cents + $3::bigint,"
           "         version = version + 1, updated_at = now()"
           "  WHERE id = $2::uuid RETURNING id"
           ") "
           "INSERT INTO ledger (order_id, card_id, kind, amount_cents, last4, refund_of,"
           "                    message_id) "
           "SELECT $1::uuid, credit.id, 'refund', $3::bigint, $4, $5::bigint, $6::uuid "
           "FROM credit",
    .nparams = 6,
};

static const db_stmt_t void_stmt = {
    .name = "payment_void",
    .sql = "INSERT INTO ledger (order_id, kind, amount_cents, message_id) "
           "VALUES ($1::uuid, 'void', 0, $2::uuid)",
    .nparams = 2,
};

/* What the ledger holds for one order. Strings borrow from the result they were read from. */
typedef struct order_ledger {
    int expired;
    const char *pay_kind; /* "charge", "decline" or NULL */
    const char *pay_id;
    const char *pay_amount;
    const char *pay_reason;
    const char *pay_last4;
    const char *pay_card_id;
    const char *close_kind; /* "refund", "void" or NULL */
    const char *close_amount;
} order_ledger_t;

static const char *value_or_null(db_result_t *res, int row, int col)
{
    return db_is_null(res, row, col) ? NULL : db_value(res, row, col);
}

static void read_ledger(db_result_t *res, int with_card, order_ledger_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int row = 0; row < db_rows(res); row++) {
        const char *expired = value_or_null(res, row, 0);
        if (expired != NULL && expired[0] == 't')
            out->expired = 1;
        const char *kind = value_or_null(res, row, 2);
        if (kind == NULL)
            continue;
        if (strcmp(kind, "charge") == 0 || strcmp(kind, "decline") == 0) {
            out->pay_kind = kind;
            out->pay_id = value_or_null(res, row, 1);
            out->pay_amount = value_or_null(res, row, 3);
            out->pay_reason = value_or_null(res, row, 4);
            out->pay_last4 = value_or_null(res, row, 5);
            out->pay_card_id = with_card ? value_or_null(res, row, 6) : NULL;
        } else {
            out->close_kind = kind;
            out->close_amount = value_or_null(res, row, 3);
        }
    }
}

/* The database's verdict on a statement of ours, as the consumer loop needs it:
 *   - a unique violation means another transaction decided for the order first (possible only
 *     if the order lock was bypassed): retrying the batch makes it read and repeat that decision;
 *   - a data exception (22xxx, ERR_INVALID) can only come from a value of the message that
 *     passed its contract yet is out of the database's range (a timestamp in year 0): that
 *     message would fail forever, so it is poison and is dead-lettered with the reason. */
static int db_fail(int rc, err_t *e)
{
    if (rc == ERR_DUPLICATE || rc == ERR_CONFLICT)
        return err_set(e, ERR_RETRY, "concurrent decision for the order: %s",
                       e != NULL ? e->msg : "");
    return rc;
}

static int emit_charged(db_conn_t *db, const svc_msg_t *m, const char *order_id, json_int_t amount,
                        const char *last4, err_t *e)
{
    svc_cause_t cause = svc_cause_of("payment", m);
    json_t *p = json_pack("{s:s,s:I,s:s}", "order_id", order_id, "amount_cents", amount,
                          "card_last4", last4);
    if (p == NULL)
        return err_set(e, ERR_NOMEM, "out of memory building payment.charged");
    int rc = svc_emit(db, &cause, MSG_PAYMENT_CHARGED_V1, p, e);
    json_decref(p);
    return rc;
}

static int emit_declined(db_conn_t *db, const svc_msg_t *m, const char *order_id,
                         const char *reason, err_t *e)
{
    svc_cause_t cause = svc_cause_of("payment", m);
    json_t *p = json_pack("{s:s,s:s}", "order_id", order_id, "reason", reason);
    if (p == NULL)
        return err_set(e, ERR_NOMEM, "out of memory building payment.declined");
    int rc = svc_emit(db, &cause, MSG_PAYMENT_DECLINED_V1, p, e);
    json_decref(p);
    return rc;
}

static int emit_refunded(db_conn_t *db, const svc_msg_t *m, const char *order_id, json_int_t amount,
                         err_t *e)
{
    svc_cause_t cause = svc_cause_of("payment", m);
    json_t *p = json_pack("{s:s,s:I}", "order_id", order_id, "amount_cents", amount);
    if (p == NULL)
        return err_set(e, ERR_NOMEM, "out of memory building payment.refunded");
    int rc = svc_emit(db, &cause, MSG_PAYMENT_REFUNDED_V1, p, e);
    json_decref(p);
    return rc;
}

static int emit_voided(db_conn_t *db, const svc_msg_t *m, const char *order_id, err_t *e)
{
    svc_cause_t cause = svc_cause_of("payment", m);
    json_t *p = json_pack("{s:s}", "order_id", order_id);
    if (p == NULL)
        return err_set(e, ERR_NOMEM, "out of memory building payment.voided");
    int rc = svc_emit(db, &cause, MSG_PAYMENT_VOIDED_V1, p, e);
    json_decref(p);
    return rc;
}

/* Records a decline (a ledger row: the decision is final for the order) and announces it. */
static int decline(db_conn_t *db, const svc_msg_t *m, payment_app_t *app, const char *order_id,
                   const char *card_id, const char *amount, payment_decline_t reason,
                   const char *last4, err_t *e)
{
    const char *params[] = {order_id,
                            card_id,
                            amount,
                            payment_decline_name(reason),
                            last4 != NULL && last4[0] != '\0' ? last4 : NULL,
                            m->env->message_id};
    int rc = db_exec(db, &decline_stmt, params, NULL, e);
    if (rc != 0)
        return db_fail(rc, e);
    rc = emit_declined(db, m, order_id, payment_decline_name(reason), e);
    if (rc != 0)
        return rc;
    metrics_counter_add(app->m_declined[reason], 1);
    log_info(m->log, "payment.declined",
             json_pack("{s:s,s:I,s:s?}", "reason", payment_decline_name(reason), "amount_cents",
                       (json_int_t)strtoll(amount, NULL, 10), "card_last4",
                       last4 != NULL && last4[0] ? last4 : NULL));
    return 0;
}

/* Answers a charge the ledger has already decided, exactly as the first time. */
static int repeat_charge_answer(db_conn_t *db, const svc_msg_t *m, payment_app_t *app,
                                const char *order_id, const order_ledger_t *l, err_t *e)
{
    int rc;
    log_info(m->log, "payment.charge_repeated",
             json_pack("{s:s,s:s?,s:s?}", "decision", l->pay_kind ? l->pay_kind : l->close_kind,
                       "reason", l->pay_reason, "message_id", m->env->message_id));
    if (l->pay_kind != NULL && strcmp(l->pay_kind, "charge") == 0) {
        rc = emit_charged(db, m, order_id, strtoll(l->pay_amount, NULL, 10),
                          l->pay_last4 != NULL ? l->pay_last4 : "0000", e);
        if (rc == 0)
            metrics_counter_add(app->m_charged, 1);
        return rc;
    }
    payment_decline_t reason = PAYMENT_ORDER_CLOSED;
    if (l->pay_kind != NULL) {
        for (int r = 0; r < PAYMENT_DECLINE_COUNT; r++)
            if (l->pay_reason != NULL && strcmp(l->pay_reason, decline_names[r]) == 0)
                reason = (payment_decline_t)r;
    }
    /* Without a charge or decline, a refund or void closed the order to payment for good. */
    rc = emit_declined(db, m, order_id, payment_decline_name(reason), e);
    if (rc == 0)
        metrics_counter_add(app->m_declined[reason], 1);
    return rc;
}

int payment_handle_charge(db_conn_t *db, const svc_msg_t *m, void *app_v, err_t *e)
{
    payment_app_t *app = app_v;
    const json_t *p = m->payload;
    const char *order_id = json_string_value(json_object_get(p, "order_id"));
    json_int_t amount = json_integer_value(json_object_get(p, "amount_cents"));
    const char *sealed = json_string_value(json_object_get(p, "card_sealed"));
    const char *expires_at = json_string_value(json_object_get(p, "expires_at"));
    db_result_t *res = NULL;
    char number[CARD_NUMBER_SIZE];
    char last4[5] = "";
    char amount_text[24];
    char hash_hex[2 * CARD_HASH_BYTES + 1];
    order_ledger_t l;
    int rc;

    number[0] = '\0';
    snprintf(amount_text, sizeof(amount_text), "%" JSON_INTEGER_FORMAT, amount);

    const char *state_params[] = {order_id, expires_at};
    rc = db_exec(db, &charge_state_stmt, state_params, &res, e);
    if (rc != 0) {
        rc = db_fail(rc, e);
        goto out;
    }
    read_ledger(res, 0, &l);
    if (l.pay_kind != NULL || l.close_kind != NULL) {
        rc = repeat_charge_answer(db, m, app, order_id, &l, e);
        goto out;
    }
    if (l.expired) {
        rc = decline(db, m, app, order_id, NULL, amount_text, PAYMENT_EXPIRED, NULL, e);
        goto out;
    }

    /* A box that does not open and a number that is not a card number are the same answer:
     * the front door only checked the syntax of what the customer typed. */
    if (card_open(app->keys, sealed, number) != 0) {
        rc = decline(db, m, app, order_id, NULL, amount_text, PAYMENT_CARD_INVALID, NULL, e);
        goto out;
    }
    if (card_syntax_ok(number))
        card_last4(number, last4);
    if (card_number_check(number) != 0) {
        rc = decline(db, m, app, order_id, NULL, amount_text, PAYMENT_CARD_INVALID, last4, e);
        goto out;
    }
    unsigned char hash[CARD_HASH_BYTES];
    card_hash(app->keys, number, hash);
    sodium_memzero(number, sizeof(number));
    hex_encode(hash, sizeof(hash), hash_hex);

    db_result_free(res);
    res = NULL;
    const char *charge_params[] = {order_id, hash_hex, amount_text, last4, m->env->message_id};
    rc = db_exec(db, &charge_stmt, charge_params, &res, e);
    if (rc != 0) {
        rc = db_fail(rc, e);
        goto out;
    }
    if (db_rows(res) != 1) {
        rc = err_set(e, ERR_INTERNAL, "charge statement returned %d rows", db_rows(res));
        goto out;
    }
    const char *card_id = value_or_null(res, 0, db_col_index(res, "id"));
    if (card_id == NULL) {
        rc = decline(db, m, app, order_id, NULL, amount_text, PAYMENT_CARD_UNKNOWN, last4, e);
        goto out;
    }
    if (strcmp(db_value(res, 0, db_col_index(res, "charged")), "1") != 0) {
        rc = decline(db, m, app, order_id, card_id, amount_text, PAYMENT_INSUFFICIENT_FUNDS, last4,
                     e);
        goto out;
    }
    rc = emit_charged(db, m, order_id, amount, last4, e);
    if (rc != 0)
        goto out;
    metrics_counter_add(app->m_charged, 1);
    log_info(m->log, "payment.charged",
             json_pack("{s:I,s:s,s:s}", "amount_cents", amount, "card_last4", last4, "card_id",
                       card_id));
out:
    sodium_memzero(number, sizeof(number));
    db_result_free(res);
    return rc;
}

int payment_handle_refund_or_void(db_conn_t *db, const svc_msg_t *m, void *app_v, err_t *e)
{
    payment_app_t *app = app_v;
    const char *order_id = json_string_value(json_object_get(m->payload, "order_id"));
    db_result_t *res = NULL;     /* the ledger as read; l borrows from it */
    db_result_t *written = NULL; /* the refund's insert */
    order_ledger_t l;
    int rc;

    const char *state_params[] = {order_id};
    rc = db_exec(db, &refund_state_stmt, state_params, &res, e);
    if (rc != 0) {
        rc = db_fail(rc, e);
        goto out;
    }
    read_ledger(res, 1, &l);

    if (l.close_kind != NULL) {
        log_info(
            m->log, "payment.refund_or_void_repeated",
            json_pack("{s:s,s:s}", "decision", l.close_kind, "message_id", m->env->message_id));
        if (strcmp(l.close_kind, "refund") == 0) {
            rc = emit_refunded(db, m, order_id, strtoll(l.close_amount, NULL, 10), e);
            if (rc == 0)
                metrics_counter_add(app->m_refunded, 1);
        } else {
            rc = emit_voided(db, m, order_id, e);
            if (rc == 0)
                metrics_counter_add(app->m_voided, 1);
        }
        goto out;
    }

    if (l.pay_kind != NULL && strcmp(l.pay_kind, "charge") == 0) {
        const char *params[] = {order_id,    l.pay_card_id, l.pay_amount,
                                l.pay_last4, l.pay_id,      m->env->message_id};
        rc = db_exec(db, &refund_stmt, params, &written, e);
        if (rc != 0) {
            rc = db_fail(rc, e);
            goto out;
        }
        if (db_cmd_tuples(written) != 1) {
            /* The card of a charge cannot vanish (foreign key): refuse to announce a refund
             * that was not written, and keep retrying where an operator will see it. */
            rc = err_set(e, ERR_INTERNAL, "refund of order %s not recorded", order_id);
            goto out;
        }
        rc = emit_refunded(db, m, order_id, strtoll(l.pay_amount, NULL, 10), e);
        if (rc != 0)
            goto out;
        metrics_counter_add(app->m_refunded, 1);
        log_info(m->log, "payment.refunded",
                 json_pack("{s:I,s:s?,s:s}", "amount_cents",
                           (json_int_t)strtoll(l.pay_amount, NULL, 10), "card_last4", l.pay_last4,
                           "card_id", l.pay_card_id));
        goto out;
    }

    /* Nothing was charged (never asked, declined, or the charge is still on its way): record
     * the void, which also closes the order to any charge that arrives later. */
    const char *params[] = {order_id, m->env->message_id};
    rc = db_exec(db, &void_stmt, params, NULL, e);
    if (rc != 0) {
        rc = db_fail(rc, e);
        goto out;
    }
    rc = emit_voided(db, m, order_id, e);
    if (rc != 0)
        goto out;
    metrics_counter_add(app->m_voided, 1);
    log_info(m->log, "payment.voided",
             json_pack("{s:s?}", "after", l.pay_kind != NULL ? l.pay_reason : NULL));
out:
    db_result_free(written);
    db_result_free(res);
    return rc;
}
