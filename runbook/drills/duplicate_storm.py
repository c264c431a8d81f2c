"""duplicate-storm: for a window, every message is delivered twice. Every relay is restarted with
the fault hook PETSTORE_FAULT_RELAY_DUPLICATES=1 (outbox/relay.c: each row the broker confirmed
is published once more, same message id, as a relay that crashed between publish and mark would
do), then restarted without it. The consumers' inboxes must make every repetition harmless: the
checker finds no double charge, no pet sold twice, no duplicate in the audit log; the drill
checks that the consumers did see duplicates (petstore_messages_consumed_total{outcome=
"duplicate"}), so the storm really happened."""
import time

from faults import process_table

NAME = "duplicate-storm"
SUMMARY = "every message of a 10 s window published twice (relay fault hook), none counted twice"
LOAD_S = 22
BOUND_S = 90
WINDOW_S = 10
HOOK = "PETSTORE_FAULT_RELAY_DUPLICATES"


def relays():
    return [n for n, kind in process_table() if kind == "relay"]


def consumers():
    return [n for n, kind in process_table() if kind == "service"]


def duplicates(ctx):
    return sum(ctx.metric(n, "petstore_messages_consumed_total", {"outcome": "duplicate"})
               for n in consumers())


def inject(ctx):
    # Metrics restart with a daemon; the consumers are not restarted here.
    ctx.state["dups_before"] = duplicates(ctx)
    ctx.state["storm"] = True
    for r in relays():
        ctx.launcher("restart", r, env={HOOK: "1"})
        ctx.inject(f"restarted {r} with {HOOK}=1")
    time.sleep(WINDOW_S)
    calm(ctx)


def calm(ctx):
    for r in relays():
        ctx.launcher("restart", r)
        ctx.inject(f"restarted {r} without the hook")
    ctx.state["storm"] = False


def heal(ctx):
    if ctx.state.get("storm"):
        calm(ctx)


def check(ctx, load):
    after = duplicates(ctx)
    seen = after - ctx.state.get("dups_before", after)
    ctx.say(f"duplicates the consumers recognised and dropped: {seen:.0f}")
    if seen <= 0:
        ctx.problem("the consumers saw no duplicate: the storm did not happen")
