"""broker-cut-off: one service (payment) cut off from the broker by the kernel, its existing
connection included, while its database and its HTTP port stay reachable: a network partition
as the process sees it.

How (netcut.py): the process is moved into the net_cls cgroup petstore-cut, and an nftables
table petstore_cut drops, on the output hook, TCP packets of its class to the AMQP port. The broker's heartbeats then go
unanswered and it closes the connection; the service cannot reconnect (its SYNs are dropped),
reports not ready, and holds; the saga's pay timeouts cancel the orders it would have charged.
The hold lasts until the service's /readyz says it noticed (bounded), a few seconds more, then
the table is deleted and the process moved back: it reconnects and everything drains.

So that noticing takes seconds and not minutes, payment is restarted first with
AMQP_HEARTBEAT_S=HEARTBEAT_S (the launcher passes it to the daemons it starts), and restarted
with the system's own setting at the end. Where the kernel or the permissions do not allow the
cut (not root, no nft, no net_cls controller), the drill says why and is SKIPPED."""
import os
import time

from netcut import Cut

NAME = "broker-cut-off"
SUMMARY = "payment cut off from RabbitMQ by nftables (net_cls cgroup), then reconnected"
LOAD_S = 30
BOUND_S = 120
VICTIM = "payment"
HEARTBEAT_S = "3"
NOTICE_S = 30  # at most this long for the service to notice
MORE_S = 3  # held that much longer after it noticed


def cut(ctx):
    if "cut" not in ctx.state:
        ctx.state["cut"] = Cut(ctx, VICTIM, "the broker", "petstore-cut", "0x00100001",
                               "petstore_cut")
    return ctx.state["cut"]


def preflight(ctx):
    cut(ctx).preflight()
    ctx.launcher("restart", VICTIM, env={"AMQP_HEARTBEAT_S": HEARTBEAT_S})
    ctx.state["restarted"] = True
    ctx.say(f"restarted {VICTIM} with AMQP_HEARTBEAT_S={HEARTBEAT_S}")


def inject(ctx):
    port = os.environ.get("PETSTORE_AMQP_PORT") or \
        os.environ["AMQP_URL"].rsplit(":", 1)[1].split("/")[0]
    t0 = cut(ctx).apply(port)
    noticed = ctx.state["noticed_s"] = cut(ctx).noticed(t0, NOTICE_S)
    time.sleep(MORE_S)
    cut(ctx).lift()
    ctx.state["back_s"] = cut(ctx).back(NOTICE_S, noticed)


def heal(ctx):
    cut(ctx).remove()
    if ctx.state.pop("restarted", False):
        ctx.launcher("restart", VICTIM)
        ctx.inject(f"restarted {VICTIM} with the system's heartbeat setting")


def check(ctx, load):
    if ctx.state.get("back_s") is None:
        ctx.problem(f"{VICTIM} did not reconnect by itself within {NOTICE_S} s of the heal")
    if ctx.state.get("noticed_s") is None:
        ctx.problem(f"{VICTIM} never reported the broker lost (/readyz stayed 200)")
