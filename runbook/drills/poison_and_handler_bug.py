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
import json
import time
import uuid

from amqp import Broker, envelope

NAME = "poison-and-handler-bug"
SUMMARY = "handler bug dead-letters a type, a malformed message too; fixed, re-driven with dlq"
LOAD_S = 18
BOUND_S = 90
BUG_S = 8
BUG_TYPE = "payment.charged.v1"
HOOK = "PETSTORE_FAULT_HANDLER_FAIL_TYPE"
POISON_QUEUE = "inventory.commands.dlq"


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
    # Replay, then monitor: a dead letter that shows up after the replay (svc_consumer.c: a
    # dead letter may reach its .dlq twice) is replayed too; each round is reported.
    for rnd in range(1, 4):
        out = ctx.launcher("dlq", "replay", "audit.events.dlq", "--type", BUG_TYPE, timeout=120)
        ctx.inject(f"dlq replay audit.events.dlq --type {BUG_TYPE}: {out.strip()[-300:]}")
        time.sleep(2)
        left = ctx.dead_letters().get("audit.events.dlq", 0)
        if not left:
            break
        ctx.say(f"NOTE: {left} dead letters of the bug appeared in audit.events.dlq after "
                f"replay round {rnd}")
        ctx.state["late_dead_letters"] = ctx.state.get("late_dead_letters", 0) + left


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


def after(ctx):
    for mid in ctx.poison_ids:
        out = ctx.launcher("dlq", "purge", POISON_QUEUE, "--id", mid, "--yes", check=False)
        ctx.inject(f"dlq purge {POISON_QUEUE} --id {mid} --yes: {out.strip()[-200:]}")
    left = ctx.dead_letters()
    if left:
        ctx.problem(f"dead letters left after the purge: {left}")
