"""database-cut-off: one service (payment) cut off from PostgreSQL by the kernel, its existing
connections included, while the broker and its HTTP port stay reachable: a network partition
(a firewall, a dead middlebox) between a daemon and a database on another server, as the process
sees it. Nothing is closed or refused: packets just vanish.

How (netcut.py), as broker-cut-off does, with a cgroup and a table of its own: the process is
moved into the net_cls cgroup petstore-dbcut, and an nftables table petstore_dbcut drops, on the
output hook, TCP packets of its class to PostgreSQL's port ($PGPORT) and, on the input hook,
what the server sends to the ports of the connections the process had when it was cut. A statement in flight is
then never acknowledged, an idle connection hears nothing, and a new connection's SYNs are
dropped. (A port freed by the cut could in principle be reused by another daemon's new
connection during the hold; the ephemeral range makes that unlikely, and the heal ends it.)

Why both directions, where broker-cut-off drops only what the process sends: a packet dropped on
the local output hook never left, so TCP counts it as not sent (local congestion) and probes with
its persist timer instead of retransmitting; every segment that still arrives from the server
(the server retransmitting a result whose acknowledgement was dropped) then restarts that timer's
TCP_USER_TIMEOUT clock, and the process may go on waiting well past the user timeout. A real
partition loses the server's packets too, and a packet lost on the wire is retransmitted under
the user timeout however many duplicate acknowledgements arrive: dropping both ways is the cut
as the process sees it.

What it proves: the service notices within NOTICE_S (its /readyz turns not ready: a worker's
statement fails when the connection's TCP user timeout or keepalives give up, db.h), the cut is
held at least HOLD_S, then the table is deleted and the process moved back, and the service is
ready again within BACK_S by itself, without a restart; the checker's ledger passes (the pay
commands it could not answer timed out in the saga and were compensated, the rest drained).
Without bounded TCP timeouts on the libpq connections the service never notices: a blocked
statement waits for the kernel's retransmissions (~15 minutes) and /readyz keeps saying ready.
If the service is not back after the heal, the heal restarts it (so the drills after this one
find a healthy system) and the drill FAILs. Where the kernel or the permissions do not allow the
cut (not root, no nft, no net_cls controller), the drill says why and is SKIPPED."""
import os
import time

from faults import pid_of, ready
from netcut import Cut

NAME = "database-cut-off"
SUMMARY = "payment cut off from PostgreSQL by nftables (net_cls cgroup), then reconnected"
LOAD_S = 40
BOUND_S = 120
VICTIM = "payment"
NOTICE_S = 20  # at most this long for the service to notice
HOLD_S = 15  # the cut lasts at least this long
MORE_S = 3  # and that much longer after it noticed
BACK_S = 15  # at most this long after the heal for the service to be ready again


def cut(ctx):
    if "cut" not in ctx.state:
        ctx.state["cut"] = Cut(ctx, VICTIM, "PostgreSQL", "petstore-dbcut", "0x00100002",
                               "petstore_dbcut")
    return ctx.state["cut"]


def preflight(ctx):
    cut(ctx).preflight()


def inject(ctx):
    ctx.state["pid"] = pid_of(VICTIM)
    t0 = cut(ctx).apply(os.environ.get("PETSTORE_PG_PORT") or os.environ["PGPORT"],
                        inbound=True)
    ctx.window("cut", t0)
    noticed = ctx.state["noticed_s"] = cut(ctx).noticed(t0, NOTICE_S)
    until = max(HOLD_S, noticed + MORE_S) if noticed is not None else NOTICE_S
    time.sleep(max(0.0, until - (time.monotonic() - t0)))
    cut(ctx).lift()
    ctx.window("cut", end=time.monotonic())
    ctx.state["back_s"] = cut(ctx).back(BACK_S, noticed)


def heal(ctx):
    cut(ctx).remove()
    if "pid" in ctx.state and ctx.state.get("back_s") is None and not ready(VICTIM):
        # It did not come back by itself (check() says so): restart it, so the drills after
        # this one find a healthy system.
        ctx.launcher("restart", VICTIM)
        ctx.inject(f"restarted {VICTIM}: it was not ready {BACK_S} s after the heal")


def check(ctx, load):
    if ctx.state.get("noticed_s") is None:
        ctx.problem(f"{VICTIM} never reported the database lost: /readyz stayed 200 for "
                    f"{NOTICE_S} s of the cut")
    if ctx.state.get("back_s") is None:
        ctx.problem(f"{VICTIM} was not ready again within {BACK_S} s of the heal")
    else:
        pid = pid_of(VICTIM)
        if pid != ctx.state.get("pid"):
            ctx.problem(f"{VICTIM} was restarted (pid {ctx.state.get('pid')} -> {pid})")
