/* handlers: list_pet, reserve, release and confirm_sale (see inventory.h).
 *
 * Concurrency. Commands of one order are serialised by the order's reservation row: every
 * statement starts with `SELECT ... FOR UPDATE` on it, and the statements that may create it
 * (reserve; release writes a tombstone) use `INSERT ... ON CONFLICT DO NOTHING`, which waits for
 * a concurrent insert of the same order to finish. Pets are locked `FOR UPDATE` in id order, after
 * the reservation row, so two batches never wait for each other in a cycle over one command's
 * locks (a batch holds the locks of every command it ran so far, so a deadlock between batches
 * is still possible; PostgreSQL breaks it and the consumer retries the batch).
 *
 * Snapshots. The statements run under READ COMMITTED, where the sub-statements of a WITH share
 * the snapshot taken when the statement began. Two consequences shape the SQL:
 *   - decisions are taken on the rows returned by the FOR UPDATE sub-selects (they are the
 *     latest committed versions, locked), never on a plain read of the snapshot;
 *   - the UPDATEs match pets by id only (FROM locked), so a pet that changed after the snapshot
 *     is updated through PostgreSQL's recheck of the latest version. A filter on a column that
 *     changed (status = 'available') would be tested against the stale snapshot version and
 *     silently skip the row.
 * When the reservation row was committed by someone else after the snapshot was taken, the
 * FOR UPDATE does not see it and the INSERT finds the conflict: the statement reports no status
 * at all ("raced") and is simply run again, which then sees the row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_array.h"
#include "inventory.h"
#include "metrics.h"
#include "plan.h"

static const db_stmt_t stmt_list_pet = {
    .name = "inventory_list_pet",
    .nparams = 4,
    .sql = "WITH ins AS ("
           "  INSERT INTO pets (id, name, species, price_cents) VALUES ($1, $2, $3, $4)"
           "  ON CONFLICT (id) DO NOTHING"
           "  RETURNING name, species, price_cents, status, version"
           ")"
           " SELECT name, species, price_cents, status, version, true AS fresh FROM ins"
           " UNION ALL"
           " SELECT name, species, price_cents, status, version, false FROM pets"
           " WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM ins)",
};

/* $1 order id, $2 pet ids. Columns: prior, status, pet_ids, unavailable, changed. */
static const db_stmt_t stmt_reserve = {
    .name = "inventory_reserve",
    .nparams = 2,
    .sql = "WITH res AS ("
           "  SELECT r.status, r.pet_ids, r.unavailable_pet_ids"
           "  FROM reservations r WHERE r.order_id = $1 FOR UPDATE"
           "), locked AS ("
           "  SELECT p.id, p.status, p.price_cents FROM pets p"
           "  WHERE p.id = ANY ($2::uuid[]) AND NOT EXISTS (SELECT 1 FROM res)"
           "  ORDER BY p.id FOR UPDATE"
           "), verdict AS ("
           "  SELECT ARRAY(SELECT w FROM unnest($2::uuid[]) AS w"
           "               WHERE NOT EXISTS (SELECT 1 FROM locked l"
           "                                 WHERE l.id = w AND l.status = 'available')"
           "               ORDER BY w) AS unavailable,"
           "         (SELECT coalesce(sum(l.price_cents), 0) FROM locked l) AS total"
           "), ins AS ("
           "  INSERT INTO reservations (order_id, status, pet_ids, unavailable_pet_ids,"
           "                            total_cents)"
           "  SELECT $1,"
           "         CASE WHEN cardinality(v.unavailable) = 0 THEN 'reserved' ELSE 'rejected' END,"
           "         $2::uuid[], v.unavailable,"
           "         CASE WHEN cardinality(v.unavailable) = 0 THEN v.total ELSE 0 END"
           "  FROM verdict v WHERE NOT EXISTS (SELECT 1 FROM res)"
           "  ON CONFLICT (order_id) DO NOTHING"
           "  RETURNING status"
           "), upd AS ("
           "  UPDATE pets p SET status = 'reserved', order_id = $1, version = p.version + 1,"
           "                    updated_at = now()"
           "  FROM locked l"
           "  WHERE p.id = l.id AND EXISTS (SELECT 1 FROM ins WHERE ins.status = 'reserved')"
           "  RETURNING p.id, p.version"
           ")"
           " SELECT coalesce((SELECT status FROM res), '') AS prior,"
           "        coalesce((SELECT status FROM ins), (SELECT status FROM res), '') AS status,"
           "        coalesce((SELECT pet_ids FROM res), $2::uuid[]) AS pet_ids,"
           "        coalesce((SELECT unavailable_pet_ids FROM res),"
           "                 (SELECT unavailable FROM verdict)) AS unavailable,"
           "        (SELECT coalesce(json_agg(json_build_array(u.id, u.version) ORDER BY u.id),"
           "                         '[]') FROM upd u) AS changed",
};

/* $1 order id. Columns: prior, status, pet_ids, changed. */
static const db_stmt_t stmt_release = {
    .name = "inventory_release",
    .nparams = 1,
    .sql = "WITH res AS ("
           "  SELECT r.status, r.pet_ids FROM reservations r WHERE r.order_id = $1 FOR UPDATE"
           "), tomb AS ("
           "  INSERT INTO reservations (order_id, status)"
           "  SELECT $1, 'released' WHERE NOT EXISTS (SELECT 1 FROM res)"
           "  ON CONFLICT (order_id) DO NOTHING"
           "  RETURNING status"
           "), locked AS ("
           "  SELECT p.id FROM pets p, res"
           "  WHERE res.status = 'reserved' AND p.id = ANY (res.pet_ids)"
           "    AND p.order_id = $1 AND p.status = 'reserved'"
           "  ORDER BY p.id FOR UPDATE OF p"
           "), upd AS ("
           "  UPDATE pets p SET status = 'available', order_id = NULL, version = p.version + 1,"
           "                    updated_at = now()"
           "  FROM locked l WHERE p.id = l.id"
           "  RETURNING p.id, p.version"
           "), done AS ("
           "  UPDATE reservations r SET status = 'released', updated_at = now()"
           "  FROM res WHERE r.order_id = $1 AND res.status = 'reserved'"
           "  RETURNING r.status"
           ")"
           " SELECT coalesce((SELECT status FROM res), '') AS prior,"
           "        coalesce((SELECT status FROM done), (SELECT status FROM tomb),"
           "                 (SELECT status FROM res), '') AS status,"
           "        coalesce((SELECT pet_ids FROM res), '{}') AS pet_ids,"
           "        (SELECT coalesce(json_agg(json_build_array(u.id, u.version) ORDER BY u.id),"
           "                         '[]') FROM upd u) AS changed",
};

/* $1 order id. Columns: prior, status, pet_ids, changed. */
static const db_stmt_t stmt_confirm_sale = {
    .name = "inventory_confirm_sale",
    .nparams = 1,
    .sql = "WITH res AS ("
           "  SELECT r.status, r.pet_ids FROM reservations r WHERE r.order_id = $1 FOR UPDATE"
           "), locked AS ("
           "  SELECT p.id FROM pets p, res"
           "  WHERE res.status = 'reserved' AND p.id = ANY (res.pet_ids)"
           "    AND p.order_id = $1 AND p.status = 'reserved'"
           "  ORDER BY p.id FOR UPDATE OF p"
           "), upd AS ("
           "  UPDATE pets p SET status = 'sold', version = p.version + 1, updated_at = now()"
           "  FROM locked l WHERE p.id = l.id"
           "  RETURNING p.id, p.version"
           "), done AS ("
           "  UPDATE reservations r SET status = 'sold', updated_at = now()"
           "  FROM res WHERE r.order_id = $1 AND res.status = 'reserved'"
           "  RETURNING r.status"
           ")"
           " SELECT coalesce((SELECT status FROM res), '') AS prior,"
           "        coalesce((SELECT status FROM done), (SELECT status FROM res), '') AS status,"
           "        coalesce((SELECT pet_ids FROM res), '{}') AS pet_ids,"
           "        (SELECT coalesce(json_agg(json_build_array(u.id, u.version) ORDER BY u.id),"
           "                         '[]') FROM upd u) AS changed",
};

static const char *const cmd_names[] = {
    [INV_CMD_RESERVE] = "reserve",
    [INV_CMD_RELEASE] = "release",
    [INV_CMD_CONFIRM_SALE] = "confirm_sale",
};

/* The outcomes counted per command: the reply sent, or none. */
enum { OUT_RESERVED = 0, OUT_REJECTED, OUT_RELEASED, OUT_SOLD, OUT_NONE, OUT__COUNT };
static const char *const outcome_names[] = {
    [OUT_RESERVED] = "reserved",   [OUT_REJECTED] = "rejected", [OUT_RELEASED] = "released",
    [OUT_SOLD] = "sale_confirmed", [OUT_NONE] = "none",
};

struct inventory_app {
    metrics_counter_t *commands[3][OUT__COUNT];
    metrics_counter_t *pets_listed;
    metrics_counter_t *anomalies;
};

int inventory_app_new(inventory_app_t **out, err_t *e)
{
    inventory_app_t *app = calloc(1, sizeof(*app));
    if (app == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *help = "Inventory commands handled, by command and the reply they got";
    for (int c = 0; c < 3; c++) {
        for (int o = 0; o < OUT__COUNT; o++) {
            char labels[96];
            snprintf(labels, sizeof(labels), "command=\"%s\",outcome=\"%s\"", cmd_names[c],
                     outcome_names[o]);
            app->commands[c][o] =
                metrics_counter("petstore_inventory_commands_total", help, labels);
        }
    }
    app->pets_listed = metrics_counter("petstore_inventory_pets_listed_total",
                                       "Pets added to the catalogue by list_pet", NULL);
    app->anomalies = metrics_counter(
        "petstore_inventory_anomalies_total",
        "Commands that met a state that cannot happen by construction (logged at error level)",
        NULL);
    *out = app;
    return 0;
}

void inventory_app_free(inventory_app_t *app) { free(app); }

static int outcome_of(const inv_plan_t *p)
{
    if (p->n == 0)
        return OUT_NONE;
    switch (p->msgs[0].type) {
    case MSG_INVENTORY_RESERVED_V1:
        return OUT_RESERVED;
    case MSG_INVENTORY_RESERVATION_REJECTED_V1:
        return OUT_REJECTED;
    case MSG_INVENTORY_RELEASED_V1:
        return OUT_RELEASED;
    case MSG_INVENTORY_SALE_CONFIRMED_V1:
        return OUT_SOLD;
    default:
        return OUT_NONE;
    }
}

/* The order a command is about. The envelope's correlation_id, when present, must name the
 * same order: replies inherit it and the outbox partitions by it, so a mismatch would put one
 * order's messages in two partitions. */
static int command_order(const svc_msg_t *m, const char **order_id, err_t *e)
{
    const char *id = json_string_value(json_object_get(m->payload, "order_id"));
    if (id == NULL)
        return err_set(e, ERR_INVALID, "$.order_id: missing");
    if (m->env->correlation_id[0] != '\0' && strcmp(m->env->correlation_id, id) != 0)
        return err_set(e, ERR_INVALID, "correlation_id %s does not match $.order_id %s",
                       m->env->correlation_id, id);
    *order_id = id;
    return 0;
}

/* Writes the plan's messages (the reply, correlated by the order) to the outbox. */
static int emit_plan(db_conn_t *db, const svc_cause_t *order_cause, const inv_plan_t *p, err_t *e)
{
    for (size_t i = 0; i < p->n; i++) {
        int rc = svc_emit(db, order_cause, p->msgs[i].type, p->msgs[i].payload, e);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Reads the statement's single row into an outcome; the JSON is new (caller decrefs). */
static int read_outcome(const db_result_t *r, inv_outcome_t *o, json_t **pet_ids,
                        json_t **unavailable, json_t **changed, err_t *e)
{
    if (db_rows(r) != 1)
        return err_set(e, ERR_INTERNAL, "command statement returned %d rows", db_rows(r));
    if (inv_res_parse(db_value(r, 0, db_col_index(r, "prior")), &o->prior) != 0 ||
        inv_res_parse(db_value(r, 0, db_col_index(r, "status")), &o->status) != 0)
        return err_set(e, ERR_INTERNAL, "unknown reservation status");
    *pet_ids = db_array_to_json(db_value(r, 0, db_col_index(r, "pet_ids")));
    int col = db_col_index(r, "unavailable");
    *unavailable = col >= 0 ? db_array_to_json(db_value(r, 0, col)) : json_array();
    *changed = json_loads(db_value(r, 0, db_col_index(r, "changed")), 0, NULL);
    if (*pet_ids == NULL || *unavailable == NULL || *changed == NULL)
        return err_set(e, ERR_INTERNAL, "unreadable command result");
    o->pet_ids = *pet_ids;
    o->unavailable = *unavailable;
    o->changed = *changed;
    return 0;
}

/* Runs a command's statement (again once if it raced a concurrent insert of the order's
 * reservation), then emits the replies that plan.c decides. A refusal (ERR_INVALID) is logged
 * by the consumer when it dead-letters the command. Metrics are counted inside the transaction,
 * so a batch rolled back and retried counts its commands twice: they show trends, the database
 * is the record. */
static int run_command(db_conn_t *db, const svc_msg_t *m, inventory_app_t *app, inv_cmd_t cmd,
                       const db_stmt_t *stmt, const char *const *params, const char *order_id,
                       err_t *e)
{
    log_ctx_t lc = *m->log;
    if (lc.order_id == NULL)
        lc.order_id = order_id;
    inv_plan_t plan;
    memset(&plan, 0, sizeof(plan));
    json_t *inputs = NULL; /* the decision's inputs, for its log line */
    int rc = 0;

    for (int attempt = 0;; attempt++) {
        db_result_t *r = NULL;
        json_t *pet_ids = NULL, *unavailable = NULL, *changed = NULL;
        inv_outcome_t o;
        memset(&o, 0, sizeof(o));
        rc = db_exec(db, stmt, params, &r, e);
        if (rc == 0)
            rc = read_outcome(r, &o, &pet_ids, &unavailable, &changed, e);
        if (rc == 0)
            rc = inv_plan(cmd, order_id, &o, &plan, e);
        if (rc == 0) {
            json_decref(inputs);
            inputs =
                json_pack("{s:s,s:s,s:O?,s:O?}", "prior", inv_res_name(o.prior), "status",
                          inv_res_name(o.status), "pet_ids", pet_ids, "unavailable", unavailable);
        }
        db_result_free(r);
        json_decref(pet_ids);
        json_decref(unavailable);
        json_decref(changed);
        if (rc != 0)
            goto out;
        if (!plan.raced)
            break;
        if (attempt >= 1) {
            rc = err_set(e, ERR_RETRY, "%s of order %s raced twice", cmd_names[cmd], order_id);
            goto out;
        }
        inv_plan_clear(&plan);
    }

    svc_cause_t cause = svc_cause_of(INVENTORY_APP_ID, m);
    cause.correlation_id = order_id;
    rc = emit_plan(db, &cause, &plan, e);
    if (rc != 0)
        goto out;

    int outcome = outcome_of(&plan);
    size_t changed_pets = plan.n > 0 ? plan.n - 1 : 0;
    if (plan.anomaly != NULL) {
        metrics_counter_add(app->anomalies, 1);
        log_error(&lc, "inventory.anomaly",
                  json_pack("{s:s,s:s}", "command", cmd_names[cmd], "anomaly", plan.anomaly));
    }
    metrics_counter_add(app->commands[cmd][outcome], 1);
    /* The decision with its inputs: the reservation before and after the statement, the pets
     * asked for and those that were not available. */
    json_t *f = json_pack("{s:s,s:s,s:i}", "command", cmd_names[cmd], "reply",
                          outcome_names[outcome], "pets_changed", (int)changed_pets);
    if (f != NULL && inputs != NULL)
        json_object_update(f, inputs);
    log_info(&lc, "inventory.decision", f);
out:
    json_decref(inputs);
    inv_plan_clear(&plan);
    return rc;
}

static int on_reserve(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    const char *order_id = NULL;
    int rc = command_order(m, &order_id, e);
    if (rc != 0)
        return rc;
    char *pet_ids = db_array_from_json(json_object_get(m->payload, "pet_ids"));
    if (pet_ids == NULL)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *params[] = {order_id, pet_ids};
    rc = run_command(db, m, app, INV_CMD_RESERVE, &stmt_reserve, params, order_id, e);
    free(pet_ids);
    return rc;
}

static int on_release(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    const char *order_id = NULL;
    int rc = command_order(m, &order_id, e);
    if (rc != 0)
        return rc;
    const char *params[] = {order_id};
    return run_command(db, m, app, INV_CMD_RELEASE, &stmt_release, params, order_id, e);
}

static int on_confirm_sale(db_conn_t *db, const svc_msg_t *m, void *app, err_t *e)
{
    const char *order_id = NULL;
    int rc = command_order(m, &order_id, e);
    if (rc != 0)
        return rc;
    const char *params[] = {order_id};
    return run_command(db, m, app, INV_CMD_CONFIRM_SALE, &stmt_confirm_sale, params, order_id, e);
}

int inventory_list_pet(db_conn_t *db, const svc_cause_t *cause, const inventory_pet_t *pet,
                       int announce_existing, int *inserted, err_t *e)
{
    char price_text[32];
    snprintf(price_text, sizeof(price_text), "%lld", pet->price_cents);
    const char *params[] = {pet->id, pet->name, pet->species, price_text};
    db_result_t *r = NULL;
    json_t *listed = NULL;
    int rc;

    for (int attempt = 0;; attempt++) {
        rc = db_exec(db, &stmt_list_pet, params, &r, e);
        if (rc != 0)
            goto out;
        if (db_rows(r) == 1)
            break;
        /* Listed by a concurrent transaction after this statement's snapshot: look again. */
        db_result_free(r);
        r = NULL;
        if (attempt >= 1) {
            rc = err_set(e, ERR_RETRY, "list_pet of %s raced twice", pet->id);
            goto out;
        }
    }
    int64_t price = 0, version = 0;
    const char *name = db_value(r, 0, db_col_index(r, "name"));
    const char *species = db_value(r, 0, db_col_index(r, "species"));
    const char *status = db_value(r, 0, db_col_index(r, "status"));
    if (db_value_int64(r, 0, db_col_index(r, "price_cents"), &price) != 0 ||
        db_value_int64(r, 0, db_col_index(r, "version"), &version) != 0 || name == NULL ||
        species == NULL || status == NULL) {
        rc = err_set(e, ERR_INTERNAL, "unreadable pet row");
        goto out;
    }
    int fresh = strcmp(db_value(r, 0, db_col_index(r, "fresh")), "t") == 0;
    if (!fresh && (strcmp(name, pet->name) != 0 || strcmp(species, pet->species) != 0 ||
                   price != pet->price_cents)) {
        rc = err_set(e, ERR_INVALID, "pet %s is already listed with other attributes", pet->id);
        goto out;
    }
    if (inserted != NULL)
        *inserted = fresh;
    if (!fresh && !announce_existing)
        goto out;
    listed = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I}", "pet_id", pet->id, "name", name, "species",
                       species, "price_cents", (json_int_t)price, "status", status, "version",
                       (json_int_t)version);
    if (listed == NULL) {
        rc = err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    svc_cause_t c = *cause;
    c.correlation_id = pet->id;
    rc = svc_emit(db, &c, MSG_INVENTORY_PET_LISTED_V1, listed, e);
out:
    json_decref(listed);
    db_result_free(r);
    return rc;
}

/* list_pet is idempotent on pet_id: a repeated command for a pet already listed is answered with
 * the pet as it is now (its status may have moved on). The same id with other attributes is a
 * client's mistake that no retry can fix: the command is refused as poison. */
static int on_list_pet(db_conn_t *db, const svc_msg_t *m, void *app_, err_t *e)
{
    inventory_app_t *app = app_;
    const json_t *p = m->payload;
    inventory_pet_t pet = {
        .id = json_string_value(json_object_get(p, "pet_id")),
        .name = json_string_value(json_object_get(p, "name")),
        .species = json_string_value(json_object_get(p, "species")),
        .price_cents = (long long)json_integer_value(json_object_get(p, "price_cents")),
    };
    svc_cause_t cause = svc_cause_of(INVENTORY_APP_ID, m);
    int inserted = 0;
    int rc = inventory_list_pet(db, &cause, &pet, 1, &inserted, e);
    if (rc != 0)
        return rc;
    if (inserted)
        metrics_counter_add(app->pets_listed, 1);
    log_info(m->log, "inventory.pet_listed",
             json_pack("{s:s,s:s,s:b}", "pet_id", pet.id, "species", pet.species, "new", inserted));
    return 0;
}

const svc_route_t inventory_routes[] = {
    {MSG_INVENTORY_LIST_PET_V1, on_list_pet},
    {MSG_INVENTORY_RESERVE_V1, on_reserve},
    {MSG_INVENTORY_RELEASE_V1, on_release},
    {MSG_INVENTORY_CONFIRM_SALE_V1, on_confirm_sale},
};
const size_t inventory_n_routes = sizeof(inventory_routes) / sizeof(inventory_routes[0]);
