#!/usr/bin/python3
"""The bench's bulk data loader: pets to order, and databases aged with completed orders, both
written straight into the service databases with INSERT ... SELECT generate_series (never through
the saga), consistent across the five databases. Used by tests/bench/bench.py:

    import bulk
    pet_ids = bulk.seed_pets(100_000)            # available pets, in inventory and the catalog
    figures = bulk.age(orders=500_000, days=30)  # history of completed orders, then ANALYZE

    python3 tests/bench/bulk.py pets N
    python3 tests/bench/bulk.py age N [DAYS]     (prints the figures as JSON)

Both take connect=, a factory connect(service) -> psycopg2 connection; by default each service's
database is opened as its own role from <SERVICE>_DATABASE_URL (what `./petstore env` prints).
Nothing here needs the superuser: the tables belong to the service roles, and no trigger stands
in the way (the append-only triggers of saga_steps, ledger and event_log refuse UPDATE and
DELETE only; the outbox's triggers are not involved because no outbox row is written).

Decisions, and the facts they rest on (the migrations and the C code as of this writing):

- Same rows everywhere without shipping them: each database's session builds the same plan in
  temporary tables from (run seed, order number) with md5-derived values, so the order ids, pet
  ids, users, cards, amounts and message ids agree across databases although each database is
  loaded by its own connection, in parallel (one thread per database). Ids are UUIDv7 stamped
  with the row's own time, like uuid_v7() in services/common/uuid.c, so the indexes see the
  same time-ordered keys as in production rather than random ones.
- What one COMPLETED order leaves, copied from a real order on a running system (1 or, for every
  fourth order, 2 pets): storefront orders (version 5) with 5 order_history rows, an
  idempotency key holding the 202 answer, the pets sold at version 3 in the catalog; inventory
  pets sold to the order (version 3) and its reservation 'sold'; one payment ledger 'charge'
  whose message_id is the charge command's; the saga COMPLETED at version 5, card_sealed
  cleared, its 5 steps (message ids = the events that caused them), no timer (the saga deletes
  its timer when it finishes); the audit event_log rows: order.placed, 4
  saga.order_status_changed, inventory.reserved, payment.charged, inventory.sale_confirmed (the
  two replies name the pets they changed with their versions; inventory sends no event per
  pet), i.e. 8, plus each pet's inventory.pet_listed when it was put on sale. Timestamps follow the real run's offsets (the
  saga steps 9, 26, 38 and 47 ms after the order), pets listed an hour before they are sold.
- Customers and cards: one customer per 100 orders (at least 1, at most 5,000), each with one
  expired session (signing in deletes only that user's expired sessions, so one stays per
  customer); one card per 1,000 orders (at least 10, at most 300), each customer always pays with
  the same card. Card balance = 10^12 - the charges; card version = 1 + the charges (payment
  bumps it with every balance change; the checker relies on it).
- Time window: the orders are spread evenly over [now - days, now - R - 1 h] where R is the
  longest retention the services apply: INBOX_RETENTION_S (default 604800 s,
  services/common/svc/svc.c), RELAY_RETENTION_S (default 3600 s, outbox/main.c) and
  SESSION_TTL_S (default 86400 s, services/storefront/main.c), read from the environment when
  set. So every aged row is older than every retention, and what the purges remove is loaded as
  already removed: no inbox row (the consumers purge rows older than INBOX_RETENTION_S), no
  outbox row (the relays delete sent rows after RELAY_RETENTION_S), no live session.
- Tables nothing ever purges, loaded in full because a real system keeps them: idempotency_keys
  (one row per order, forever: no code deletes them), order_history, orders, the catalog's and
  inventory's sold pets, reservations, ledger, sagas, saga_steps, event_log. The first is a
  finding (it grows with history and is read on every POST); the others are the history itself.
- Speed: synchronous_commit off and larger temp_buffers/work_mem in the loader's own sessions;
  one transaction per database; indexes stay as they are (built row by row). ANALYZE of every
  table at the end, so the bench does not run on statistics of an empty database.
"""
import json
import os
import secrets
import sys
import threading
import time

try:
    import psycopg2
except ImportError:  # another python3 first on the PATH: the system's has psycopg2
    if __name__ == "__main__" and sys.executable != "/usr/bin/python3":
        os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])
    raise

SERVICES = ("storefront", "inventory", "payment", "saga", "audit")
SPECIES = ("dog", "cat", "bird", "fish", "rabbit")
CARD_INITIAL_CENTS = 10 ** 12
# The defaults of the services' cfg tables (see the module comment), overridden by the
# environment the same way the daemons read them.
RETENTION_DEFAULTS = {"INBOX_RETENTION_S": 604800, "RELAY_RETENTION_S": 3600,
                      "SESSION_TTL_S": 86400}
MARGIN_S = 3600
# A real Argon2id hash (libsodium crypto_pwhash_str, the storefront's parameters) of a password
# nobody knows: the aged customers never sign in again.
PASSWORD_HASH = ("$argon2id$v=19$m=65536,t=2,p=1$CxPfaOSXYcjtg/wUt0l/bg$"
                 "bRbu1oZ7ggN2mQtr8W245COF8tp6fynVdFlECOvzEZo")


def default_connect(service):
    """A connection to a service's database as its own role (not autocommit)."""
    url = os.environ.get(f"{service.upper()}_DATABASE_URL")
    if not url:
        raise SystemExit(f"bulk: {service.upper()}_DATABASE_URL is not set"
                         " (eval \"$(./petstore env)\")")
    return psycopg2.connect(url)


# Deterministic helpers, the same in every session: a UUIDv7 with the given time whose random
# bits come from md5(seed), and a number in [0, m) from md5(seed).
PRELUDE = r"""
SET synchronous_commit = off;
SET temp_buffers = '256MB';
SET work_mem = '64MB';
SET maintenance_work_mem = '256MB';
CREATE FUNCTION pg_temp.bulk_uuid(ts timestamptz, seed text) RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
            || substr(md5(seed), 1, 3) || '8' || substr(md5(seed), 4, 15))::uuid
$$;
CREATE FUNCTION pg_temp.bulk_int(seed text, m bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT ('x' || lpad(substr(md5(seed), 1, 8), 16, '0'))::bit(64)::bigint % m
$$;
CREATE FUNCTION pg_temp.bulk_bytes32(seed text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT decode(md5(seed) || md5(seed || '#'), 'hex')
$$;
CREATE FUNCTION pg_temp.bulk_iso(ts timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
"""

# The plan of one ageing run, built identically in every database's session. Parameters: run
# (seed), n (orders), start and span_s (the window), n_users, n_cards.
PLAN = r"""
CREATE TEMP TABLE plan_users ON COMMIT DROP AS
SELECT u, pg_temp.bulk_uuid(%(start)s::timestamptz - interval '1 day'
                            + make_interval(secs => u / 1000.0), %(run)s || ':u' || u) AS user_id,
       'c' || substr(md5(%(run)s || ':name' || u), 1, 12) AS username,
       %(start)s::timestamptz - interval '1 day' + make_interval(secs => u / 1000.0) AS created
FROM generate_series(0, %(n_users)s - 1) u;

CREATE TEMP TABLE plan_cards ON COMMIT DROP AS
SELECT c, pg_temp.bulk_uuid(%(start)s::timestamptz - interval '2 days'
                            + make_interval(secs => c / 1000.0), %(run)s || ':c' || c) AS card_id,
       lpad(pg_temp.bulk_int(%(run)s || ':last4' || c, 10000)::text, 4, '0') AS last4,
       pg_temp.bulk_bytes32(%(run)s || ':hash' || c) AS card_hash,
       %(start)s::timestamptz - interval '2 days' + make_interval(secs => c / 1000.0) AS created
FROM generate_series(0, %(n_cards)s - 1) c;

CREATE TEMP TABLE plan_orders0 ON COMMIT DROP AS
SELECT i, s, t, pg_temp.bulk_uuid(t, s || ':o') AS order_id,
       pg_temp.bulk_int(s || ':user', %(n_users)s) AS u, 1 + (i %% 4 = 0)::int AS npets
FROM (SELECT i, %(run)s || ':' || i AS s,
             %(start)s::timestamptz + make_interval(secs => %(span_s)s::float8 * (i - 1) / %(n)s) AS t
      FROM generate_series(1, %(n)s) i) g;

CREATE TEMP TABLE plan_pets ON COMMIT DROP AS
SELECT o.i, k, pg_temp.bulk_uuid(o.t - interval '1 hour' + make_interval(secs => k / 1000.0),
                                 o.s || ':p' || k) AS pet_id,
       o.t - interval '1 hour' + make_interval(secs => k / 1000.0) AS listed,
       'pet-' || substr(md5(o.s || ':pn' || k), 1, 8) AS name,
       (ARRAY['dog', 'cat', 'bird', 'fish', 'rabbit'])[1 + pg_temp.bulk_int(o.s || ':sp' || k, 5)]
           AS species,
       100 + pg_temp.bulk_int(o.s || ':price' || k, 9900) AS price
FROM plan_orders0 o, generate_series(1, o.npets) k;

CREATE TEMP TABLE plan_orders ON COMMIT DROP AS
SELECT o.*, u.user_id, c.card_id, c.last4, p.pet_ids, p.total,
       md5(o.s || ':trace') AS trace
FROM plan_orders0 o
JOIN plan_users u ON u.u = o.u
JOIN plan_cards c ON c.c = o.u %% %(n_cards)s
JOIN (SELECT i, array_agg(pet_id ORDER BY k) AS pet_ids, sum(price)::bigint AS total
      FROM plan_pets GROUP BY i) p ON p.i = o.i
ORDER BY o.i;
"""


def _ms(ms):
    return f"(o.t + interval '{ms} ms')"


def _mid(tag, ms):
    """The message id of the order's message `tag`, sent `ms` after the order was placed."""
    return f"pg_temp.bulk_uuid({_ms(ms)}, o.s || ':{tag}')"


# Offsets in ms from POST, as measured on a real order: the saga created and RESERVING at 9,
# inventory reserved at 18, PAYING at 26, charge 30, charged 35, CONFIRMING 38, sold 42,
# COMPLETED 47.
STEPS = ((1, "created", None, "PENDING", "placed", 0, "order placed: saga created", 9),
         (2, "placed", "PENDING", "RESERVING", "placed", 0, "order placed: reserve the pets", 9),
         (3, "reserved", "RESERVING", "PAYING", "reserved", 18, "pets reserved: charge the card",
          26),
         (4, "charged", "PAYING", "CONFIRMING", "charged", 35, "card charged: confirm the sale",
          38),
         (5, "sale_confirmed", "CONFIRMING", "COMPLETED", "confirmed", 42, "sale confirmed", 47))
HISTORY = ((1, "PENDING", 0), (2, "RESERVING", 9), (3, "PAYING", 26), (4, "CONFIRMING", 38),
           (5, "COMPLETED", 47))


def _values(rows):
    def lit(v):
        if v is None:
            return "NULL::text"
        if isinstance(v, int):
            return str(v)
        return "'" + v.replace("'", "''") + "'"
    return ", ".join("(" + ", ".join(lit(v) for v in r) + ")" for r in rows)


STOREFRONT = [
    ("users", """
INSERT INTO users (id, username, password_hash, created_at)
SELECT user_id, username, %(pwhash)s, created FROM plan_users ORDER BY u"""),
    ("sessions", """
INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
SELECT pg_temp.bulk_bytes32(%(run)s || ':session' || u), user_id, c, c + make_interval(secs => %(ttl)s)
FROM (SELECT u, user_id, %(end)s::timestamptz - make_interval(mins => u %% 1440) AS c
      FROM plan_users) s ORDER BY u"""),
    ("pets", """
INSERT INTO pets (id, name, species, price_cents, status, version, updated_at)
SELECT p.pet_id, p.name, p.species, p.price, 'sold', 3, """ + _ms(47) + """
FROM plan_pets p JOIN plan_orders o ON o.i = p.i ORDER BY p.i, p.k"""),
    ("orders", """
INSERT INTO orders (id, user_id, status, reason, total_cents, pet_ids, card_last4, version,
                    created_at, updated_at)
SELECT order_id, user_id, 'COMPLETED', NULL, total, pet_ids, last4, 5, t, """ + _ms(47) + """
FROM plan_orders o ORDER BY i"""),
    ("order_history", """
INSERT INTO order_history (order_id, version, status, reason, at)
SELECT o.order_id, h.v, h.status, NULL, o.t + make_interval(secs => h.ms / 1000.0)
FROM plan_orders o CROSS JOIN (VALUES """ + _values(HISTORY) + """) h (v, status, ms)
ORDER BY o.i, h.v"""),
    ("idempotency_keys", """
INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, status_code, response,
                              created_at)
SELECT user_id, md5(s || ':key')::uuid::text, pg_temp.bulk_bytes32(s || ':fp'), order_id, 202,
       jsonb_build_object('id', order_id::text, 'status', 'PENDING', 'total_cents', total), t
FROM plan_orders o ORDER BY i"""),
]

INVENTORY = [
    ("pets", """
INSERT INTO pets (id, name, species, price_cents, status, order_id, version, created_at,
                  updated_at)
SELECT p.pet_id, p.name, p.species, p.price, 'sold', o.order_id, 3, p.listed, """ + _ms(42) + """
FROM plan_pets p JOIN plan_orders o ON o.i = p.i ORDER BY p.i, p.k"""),
    ("reservations", """
INSERT INTO reservations (order_id, status, pet_ids, total_cents, created_at, updated_at,
                          unavailable_pet_ids)
SELECT order_id, 'sold', pet_ids, total, """ + _ms(18) + ", " + _ms(42) + """, '{}'
FROM plan_orders o ORDER BY i"""),
]

PAYMENT = [
    ("cards", """
INSERT INTO cards (id, card_hash, last4, balance_cents, version, created_at, updated_at)
SELECT c.card_id, c.card_hash, c.last4, %(initial)s - coalesce(x.charged, 0),
       1 + coalesce(x.n, 0)::int, c.created, coalesce(x.last, c.created)
FROM plan_cards c
LEFT JOIN (SELECT card_id, sum(total) AS charged, count(*) AS n,
                  max(t + interval '30 ms') AS last
           FROM plan_orders GROUP BY card_id) x ON x.card_id = c.card_id
ORDER BY c.c"""),
    ("ledger", """
INSERT INTO ledger (order_id, card_id, kind, amount_cents, reason, last4, refund_of, message_id,
                    created_at)
SELECT order_id, card_id, 'charge', total, NULL, last4, NULL, """ + _mid("charge", 26) + ", "
     + _ms(30) + """
FROM plan_orders o ORDER BY i"""),
]

SAGA = [
    ("sagas", """
INSERT INTO sagas (order_id, user_id, status, reason, pending, attempts, version, pet_ids,
                   total_cents, card_sealed, card_last4, created_at, updated_at)
SELECT order_id, user_id, 'COMPLETED', NULL, 0, 0, 5, pet_ids, total, NULL, last4, """
     + _ms(9) + ", " + _ms(47) + """
FROM plan_orders o ORDER BY i"""),
    ("saga_steps", """
INSERT INTO saga_steps (order_id, version, event, from_status, to_status, message_id, why, at)
SELECT o.order_id, st.v, st.event, st.from_status, st.to_status,
       pg_temp.bulk_uuid(o.t + make_interval(secs => st.msg_ms / 1000.0), o.s || ':' || st.tag),
       st.why, o.t + make_interval(secs => st.ms / 1000.0)
FROM plan_orders o
CROSS JOIN (VALUES """ + _values(STEPS) + """) st (v, event, from_status, to_status, tag, msg_ms,
                                                   why, ms)
ORDER BY o.i, st.v"""),
]


def _status_payload(status, version, ms):
    return (f"jsonb_build_object('card_last4', o.last4, 'occurred_at', pg_temp.bulk_iso({_ms(ms)}),"
            f" 'order_id', o.order_id, 'pet_ids', to_jsonb(o.pet_ids), 'reason', NULL,"
            f" 'status', '{status}', 'total_cents', o.total, 'user_id', o.user_id,"
            f" 'version', {version})")


def _event(tag, ms, typ, source, correlation, causation, payload):
    """One event_log row of an order as a VALUES row (columns of AUDIT_COLUMNS)."""
    return (f"({_mid(tag, ms)}, '{typ}.v1', '{typ}', '/petstore/{source}', {correlation},"
            f" {causation}, '00-' || o.trace || '-' || substr(md5(o.s || ':span:{tag}'), 1, 16)"
            f" || '-01', date_trunc('milliseconds', {_ms(ms)}), {_ms(ms + 3)}, {payload})")


AUDIT_COLUMNS = ("message_id, type, routing_key, source, correlation_id, causation_id,"
                 " traceparent, occurred_at, received_at, payload")
ORDER_EVENTS = ",\n".join([
    _event("placed", 0, "order.placed", "storefront", "o.order_id::text", "NULL",
           "jsonb_build_object('pet_ids', to_jsonb(o.pet_ids), 'user_id', o.user_id,"
           " 'order_id', o.order_id, 'card_last4', o.last4, 'card_sealed',"
           " translate(encode(pg_temp.bulk_bytes32(o.s || ':seal1')"
           " || pg_temp.bulk_bytes32(o.s || ':seal2'), 'base64'), E'\\n', ''),"
           " 'total_cents', o.total)"),
    _event("s2", 9, "saga.order_status_changed", "order-saga", "o.order_id::text",
           _mid("placed", 0) + "::text", _status_payload("RESERVING", 2, 9)),
    _event("reserved", 18, "inventory.reserved", "inventory", "o.order_id::text",
           _mid("reserve", 9) + "::text",
           "jsonb_build_object('pet_ids', to_jsonb(o.pet_ids), 'order_id', o.order_id,"
           " 'pets', (SELECT jsonb_agg(jsonb_build_object('pet_id', q, 'version', 2)"
           " ORDER BY q) FROM unnest(o.pet_ids) q))"),
    _event("s3", 26, "saga.order_status_changed", "order-saga", "o.order_id::text",
           _mid("reserved", 18) + "::text", _status_payload("PAYING", 3, 26)),
    _event("charged", 35, "payment.charged", "payment", "o.order_id::text",
           _mid("charge", 26) + "::text",
           "jsonb_build_object('order_id', o.order_id, 'card_last4', o.last4,"
           " 'amount_cents', o.total)"),
    _event("s4", 38, "saga.order_status_changed", "order-saga", "o.order_id::text",
           _mid("charged", 35) + "::text", _status_payload("CONFIRMING", 4, 38)),
    _event("confirmed", 42, "inventory.sale_confirmed", "inventory", "o.order_id::text",
           _mid("confirm", 38) + "::text",
           "jsonb_build_object('pet_ids', to_jsonb(o.pet_ids), 'order_id', o.order_id,"
           " 'pets', (SELECT jsonb_agg(jsonb_build_object('pet_id', q, 'version', 3)"
           " ORDER BY q) FROM unnest(o.pet_ids) q))"),
    _event("s5", 47, "saga.order_status_changed", "order-saga", "o.order_id::text",
           _mid("confirmed", 42) + "::text", _status_payload("COMPLETED", 5, 47)),
])


AUDIT = [
    ("event_log", f"""
INSERT INTO event_log ({AUDIT_COLUMNS})
SELECT pg_temp.bulk_uuid(p.listed, o.s || ':listed' || p.k), 'inventory.pet_listed.v1',
       'inventory.pet_listed', '/petstore/inventory', p.pet_id::text,
       pg_temp.bulk_uuid(p.listed, o.s || ':list' || p.k)::text,
       '00-' || md5(o.s || ':ltrace' || p.k) || '-' || substr(md5(o.s || ':lspan' || p.k), 1, 16)
           || '-01',
       date_trunc('milliseconds', p.listed), p.listed + interval '3 ms',
       jsonb_build_object('name', p.name, 'pet_id', p.pet_id, 'status', 'available',
                          'species', p.species, 'version', 1, 'price_cents', p.price)
FROM plan_pets p JOIN plan_orders o ON o.i = p.i ORDER BY p.i, p.k"""),
    ("event_log", f"""
INSERT INTO event_log ({AUDIT_COLUMNS})
SELECT e.* FROM plan_orders o CROSS JOIN LATERAL (VALUES
{ORDER_EVENTS}
) e ({AUDIT_COLUMNS})"""),
]

LOADS = {"storefront": STOREFRONT, "inventory": INVENTORY, "payment": PAYMENT, "saga": SAGA,
         "audit": AUDIT}


def _tables(cur):
    cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1")
    return [r[0] for r in cur.fetchall()]


def _db_size(cur):
    cur.execute("SELECT pg_database_size(current_database())")
    return cur.fetchone()[0]


def _counts(cur):
    out = {}
    for table in _tables(cur):
        cur.execute(f'SELECT count(*) FROM "{table}"')
        out[table] = cur.fetchone()[0]
    return out


def _age_one(service, connect, params, out):
    t0 = time.monotonic()
    conn = connect(service)
    try:
        conn.rollback()  # a factory's connection may already be inside a transaction
        conn.autocommit = False
        inserted = {}
        with conn.cursor() as cur:
            size_before = _db_size(cur)
            cur.execute(PRELUDE)
            cur.execute(PLAN, params)
            for table, sql in LOADS[service]:
                cur.execute(sql, params)
                inserted[table] = inserted.get(table, 0) + cur.rowcount
        conn.commit()
        load_s = time.monotonic() - t0
        conn.autocommit = True
        with conn.cursor() as cur:
            for table in _tables(cur):
                cur.execute(f'ANALYZE "{table}"')
            out[service] = {"inserted": inserted, "rows": _counts(cur),
                            "size_before": size_before, "size_after": _db_size(cur),
                            "load_s": round(load_s, 2),
                            "seconds": round(time.monotonic() - t0, 2)}
    finally:
        conn.close()


def _env_int(name):
    v = os.environ.get(name)
    return int(v) if v else RETENTION_DEFAULTS[name]


def age(orders=500_000, days=30, connect=None):
    """Fills every service database as if `orders` orders had COMPLETED through the saga over
    the past `days` days (see the module comment for what and why), then ANALYZEs every table.
    Returns the figures: per database the rows inserted per table, the rows per table after, the
    size before and after (pg_database_size) and the seconds taken; the order ids' window; the
    total seconds. Raises if the window would not be older than every retention."""
    connect = connect or default_connect
    orders = int(orders)
    if orders < 1:
        raise ValueError("orders must be at least 1")
    keep_s = max(_env_int(n) for n in RETENTION_DEFAULTS) + MARGIN_S
    span_s = days * 86400 - keep_s
    if span_s <= 0:
        raise ValueError(f"days must exceed the longest retention ({keep_s} s)")
    now = time.time()
    start = now - days * 86400
    params = {
        "run": secrets.token_hex(8), "n": orders, "span_s": span_s,
        "start": time.strftime("%Y-%m-%dT%H:%M:%S+00", time.gmtime(start)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%S+00", time.gmtime(start + span_s)),
        "n_users": max(1, min(5000, orders // 100)), "n_cards": max(10, min(300, orders // 1000)),
        "pwhash": PASSWORD_HASH, "ttl": _env_int("SESSION_TTL_S"), "initial": CARD_INITIAL_CENTS,
    }
    t0 = time.monotonic()
    out, errors = {}, []

    def run(service):
        try:
            _age_one(service, connect, params, out)
        except Exception as exc:  # reported below, with the database it happened in
            errors.append((service, exc))
    threads = [threading.Thread(target=run, args=(s,)) for s in SERVICES]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        service, exc = errors[0]
        raise RuntimeError(f"bulk: ageing the {service} database failed: {exc}") from exc
    return {"orders": orders, "days": days, "run": params["run"],
            "window": [params["start"], params["end"]], "customers": params["n_users"],
            "cards": params["n_cards"], "seconds": round(time.monotonic() - t0, 2),
            "size_before": sum(d["size_before"] for d in out.values()),
            "size_after": sum(d["size_after"] for d in out.values()),
            "databases": out}


SEED_PETS = """
INSERT INTO {table}
SELECT pg_temp.bulk_uuid(%(at)s::timestamptz + make_interval(secs => i / 1000000.0),
                         %(run)s || ':' || i),
       'pet-' || substr(md5(%(run)s || ':n' || i), 1, 8), %(species)s, %(price)s::bigint,
       'available', {extra}
FROM generate_series(1, %(n)s) i ORDER BY i
RETURNING id::text
"""


def seed_pets(n, price_cents=100, species="bench", connect=None):
    """n available pets, written in bulk where inventory keeps them and in the storefront's
    catalog as the inventory's pet_listed event leaves them (status 'available', version 1), so
    that orders for them are accepted and reserved. Inventory is committed first: a pet the
    catalog shows is always one inventory can reserve. Returns the pet ids (text), in order."""
    connect = connect or default_connect
    n = int(n)
    if n < 1:
        return []
    # One time for both databases: the ids carry it (UUIDv7) and must be the same in both.
    params = {"run": secrets.token_hex(8), "n": n, "species": species, "price": price_cents,
              "at": time.strftime("%Y-%m-%dT%H:%M:%S+00", time.gmtime())}
    ids = {}
    for service, table, extra in (
            ("inventory", "pets (id, name, species, price_cents, status, order_id, version)",
             "NULL::uuid, 1"),
            ("storefront", "pets (id, name, species, price_cents, status, version)", "1")):
        conn = connect(service)
        try:
            conn.rollback()  # a factory's connection may already be inside a transaction
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute(PRELUDE)
                cur.execute(SEED_PETS.format(table=table, extra=extra), params)
                ids[service] = [r[0] for r in cur.fetchall()]
            conn.commit()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ANALYZE pets")
        finally:
            conn.close()
    if ids["inventory"] != ids["storefront"]:
        raise RuntimeError("bulk: the pets written to inventory and the catalog differ")
    return ids["inventory"]


def main(argv):
    if len(argv) >= 2 and argv[0] == "pets":
        t0 = time.monotonic()
        pets = seed_pets(int(argv[1]))
        print(json.dumps({"pets": len(pets), "seconds": round(time.monotonic() - t0, 2)}))
    elif len(argv) >= 2 and argv[0] == "age":
        figures = age(int(argv[1]), int(argv[2]) if len(argv) > 2 else 30)
        print(json.dumps(figures, indent=2))
    else:
        print("usage: bulk.py pets N | bulk.py age N [DAYS]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
