"""poison-and-handler-bug: a handler bug and a truly malformed message.

The bug: audit is restarted with PETSTORE_FAULT_HANDLER_FAIL_TYPE=payment.charged.v1
(services/common/svc/svc_consumer.c: that handler fails every message of the type as poison,
ERR_INVALID), so under load every payment.charged event lands in audit.events.dlq. Audit is
the consumer to break because the saga does not wait for it: the orders complete meanwhile (a
saga step with a short timeout would cancel them before anyone fixed anything). The poison: one
message with a body that is not JSON, published as its producer would into inventory.commands;
inventory dead-letters it to inventory.commands.dlq.

Then the operator's procedure: the bug is fixed (audit restarted without the hook), the dead
letters of the bug are re-driven with `dlq replay audit.events.dlq --type payment.charged.v1`,
the checker verifies (the poison, and only it, may stay in its .dlq: poison_ids) and finally the
poison is purged with `dlq purge inventory.commands.dlq --id ID --yes`."""
import time
import uuid

import pika

from amqp import Broker, envelope
from petstore_env import need

NAME = "poison-and-handler-bug"
SUMMARY = "handler bug dead-letters a type, a malformed message too; fixed, re-driven with dlq"
LOAD_S = 18
BOUND_S = 90
BUG_S = 8
BUG_TYPE = "payment.charged.v1"
HOOK = "PETSTORE_FAULT_HANDLER_FAIL_TYPE"
POISON_QUEUE = "inventory.commands.dlq"
BUG_QUEUE = "audit.events.dlq"
WATCH_S = 3  # after the replay: dead letters given back by the broker reappear within that


def ready(queue):
    """Messages ready in queue, exactly (a passive declare; the management API's unacknowledged
    count lags by seconds and would still show what the replay held)."""
    conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def inject(ctx):
    ctx.state["bug"] = True
    ctx.launcher("restart", "audit", env={HOOK: BUG_TYPE})
    ctx.inject(f"restarted audit with {HOOK}={BUG_TYPE} (a handler bug)")
    props = envelope("inventory.reserve.v1", str(uuid.uuid4()), source="saga")
    props.user_id = "saga"
    with Broker() as b:
        mid = b.publish("inventory.reserve.v1", None, body=b"{this is not json",
                        properties=props)
    ctx.poison_ids.append(mid)
    ctx.injected_ids.append(mid)
    ctx.inject(f"published a malformed inventory.reserve.v1 {mid} to petstore.commands/inventory")
    time.sleep(BUG_S)
    fix(ctx)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        dl = ctx.dead_letters()
        if dl.get("audit.events.dlq") and dl.get(POISON_QUEUE):
            break
        time.sleep(0.5)
    ctx.say(f"dead letters: {dl}")
    ctx.state["dead_before_replay"] = dl
    out = ctx.launcher("dlq", "replay", "audit.events.dlq", "--type", BUG_TYPE, timeout=120)
    ctx.inject(f"dlq replay audit.events.dlq --type {BUG_TYPE}: {out.strip()[-300:]}")
    # One replay must be enough: a dead letter that shows up after it (as when the broker forgot
    # the tool's acks, services/dlq/walk.c) is a problem, not a reason to replay again.
    late = 0
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        late = max(late, ready(BUG_QUEUE))
        time.sleep(0.2)
    ctx.state["late_dead_letters"] = late
    if late:
        ctx.say(f"{late} dead letters of the bug are back in {BUG_QUEUE} after the replay")


def fix(ctx):
    ctx.launcher("restart", "audit")
    ctx.state["bug"] = False
    ctx.inject("restarted audit without the bug")


def heal(ctx):
    if ctx.state.get("bug"):
        fix(ctx)


def check(ctx, load):
    dl = ctx.state.get("dead_before_replay", {})
    if not dl.get("audit.events.dlq"):
        ctx.problem("the handler bug dead-lettered nothing into audit.events.dlq")
    if not dl.get(POISON_QUEUE):
        ctx.problem(f"the malformed message did not reach {POISON_QUEUE}")
    if ctx.state.get("late_dead_letters"):
        ctx.problem(f"{ctx.state['late_dead_letters']} dead letters of the bug came back to "
                    f"{BUG_QUEUE} after one dlq replay had reported 0 left")


def after(ctx):
    if ctx.state.get("late_dead_letters"):  # the drill failed already; clean up for the next one
        out = ctx.launcher("dlq", "replay", BUG_QUEUE, "--type", BUG_TYPE, check=False)
        ctx.inject(f"dlq replay {BUG_QUEUE} --type {BUG_TYPE} (again): {out.strip()[-200:]}")
    for mid in ctx.poison_ids:
        out = ctx.launcher("dlq", "purge", POISON_QUEUE, "--id", mid, "--yes", check=False)
        ctx.inject(f"dlq purge {POISON_QUEUE} --id {mid} --yes: {out.strip()[-200:]}")
    left = ctx.dead_letters()
    if left:
        ctx.problem(f"dead letters left after the purge: {left}")
