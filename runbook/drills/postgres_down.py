"""postgres-down: PostgreSQL down 20 s under load. The door answers 503 with Retry-After (not a
500, not a hang), clients retrying with the same Idempotency-Key get exactly one order each, and
everything drains after. Besides the load's own clients (each retries its key until 202), one
client places an order with a fixed key in the outage, retries it after, and asks again once
accepted: the same order id both times, and the storefront has one order for that key."""
import time
import uuid

import db
import httpc
import shop

NAME = "postgres-down"
SUMMARY = "PostgreSQL down 20 s: the door answers 503 with Retry-After; one order per key"
LOAD_S = 30
BOUND_S = 120
DOWN_S = 20


def preflight(ctx):
    token = shop.new_customer()
    card, _ = shop.create_card(10**9)
    ctx.state["client"] = (token, card, shop.create_pet(), str(uuid.uuid4()))


def inject(ctx):
    token, card, pet, key = ctx.state["client"]
    body = {"card_number": card, "pet_ids": [pet]}
    url = shop.api() + "/v1/orders"
    ctx.launcher("stop", "postgres")
    t0 = time.monotonic()
    ctx.state["down"] = True
    ctx.inject(f"stopped postgres for {DOWN_S} s")
    time.sleep(2)
    r = httpc.post(url, body, token=token, headers={"Idempotency-Key": key}, retries_503=0)
    ctx.state["outage_answer"] = (r.status, r.headers.get("Retry-After"))
    ctx.say(f"client: POST /v1/orders key {key} in the outage: {r.status} "
            f"Retry-After {r.headers.get('Retry-After')}")
    time.sleep(max(0, DOWN_S - (time.monotonic() - t0)))
    ctx.window("down", t0, time.monotonic())
    ctx.launcher("start", "postgres")
    ctx.state["down"] = False
    ctx.inject("started postgres again")
    ids = []
    deadline = time.monotonic() + 60
    while len(ids) < 2 and time.monotonic() < deadline:
        r = httpc.post(url, body, token=token, headers={"Idempotency-Key": key}, retries_503=0)
        if r.status == 202:
            ids.append(r.json["id"])
        else:
            time.sleep(float(r.headers.get("Retry-After") or 0.5))
    ctx.state["client_ids"] = ids
    ctx.state["orders"] = ids[:1]  # the checker follows the client's order too
    ctx.say(f"client: the same key after the outage answered {ids}")


def heal(ctx):
    if ctx.state.get("down", False):
        ctx.launcher("start", "postgres", check=False)
        ctx.inject("started postgres again (heal)")


def check(ctx, load):
    status, retry_after = ctx.state.get("outage_answer", (None, None))
    if status != 503 or not retry_after:
        ctx.problem(f"POST /v1/orders while PostgreSQL was down answered {status} with "
                    f"Retry-After {retry_after!r}, not 503 with Retry-After")
    ids = ctx.state.get("client_ids", [])
    if len(ids) != 2 or ids[0] != ids[1]:
        ctx.problem(f"the same Idempotency-Key answered {ids}, not one order twice")
    else:
        token, _card, _pet, key = ctx.state["client"]
        conn = db.connect("storefront")
        try:
            n = db.value(conn, "SELECT count(*) FROM idempotency_keys WHERE key = %s AND "
                               "order_id IS NOT NULL", key)
        finally:
            conn.close()
        if n != 1:
            ctx.problem(f"the storefront has {n} orders for key {key}")
    t0, t1 = ctx.windows.get("down", (None, None))
    if t0 is not None:
        seen = load.answers_between(t0 + 1, t1)
        by = {}
        for s, ra in seen:
            by[str(s)] = by.get(str(s), 0) + 1
        ctx.say(f"answers while postgres was down: {by}")
        bad = [(s, ra) for s, ra in seen if s != 503 or not ra]
        if bad:
            ctx.problem(f"{len(bad)} answers while PostgreSQL was down were not 503 with "
                        f"Retry-After: {sorted(set(map(str, bad)))[:5]}")
