"""broker-cut-off: one service (payment) cut off from the broker by the kernel, its existing
connection included, while its database and its HTTP port stay reachable: a network partition
as the process sees it.

How: the cgroup v1 net_cls controller (mounted at /sys/fs/cgroup/net_cls if it is not) tags the
process's packets with a class id once it is moved into the cgroup petstore-cut (moving a
process re-tags its existing sockets too), and an nftables table petstore_cut drops, on the
output hook, TCP packets of that class to the AMQP port. The broker's heartbeats then go
unanswered and it closes the connection; the service cannot reconnect (its SYNs are dropped),
reports not ready, and holds; the saga's pay timeouts cancel the orders it would have charged.
The hold lasts until the service's /readyz says it noticed (bounded), a few seconds more, then
the table is deleted and the process moved back: it reconnects and everything drains.

So that noticing takes seconds and not minutes, payment is restarted first with
AMQP_HEARTBEAT_S=HEARTBEAT_S (the launcher passes it to the daemons it starts), and restarted
with the system's own setting at the end. Where the kernel or the permissions do not allow the
cut (not root, no nft, no net_cls controller), the drill says why and is SKIPPED."""
import os
import shutil
import subprocess
import time

from faults import Skip, pid_of, ready

NAME = "broker-cut-off"
SUMMARY = "payment cut off from RabbitMQ by nftables (net_cls cgroup), then reconnected"
LOAD_S = 30
BOUND_S = 120
VICTIM = "payment"
HEARTBEAT_S = "3"
CGROOT = "/sys/fs/cgroup/net_cls"
CGROUP = CGROOT + "/petstore-cut"
CLASSID = "0x00100001"
TABLE = "petstore_cut"
NOTICE_S = 30  # at most this long for the service to notice
MORE_S = 3  # held that much longer after it noticed


def sh(*argv, check=True):
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def preflight(ctx):
    if os.geteuid() != 0:
        raise Skip("not root: cannot load nftables rules or move a process between cgroups")
    if not shutil.which("nft"):
        raise Skip("nft is not installed (apt-get install -y nftables)")
    if not os.path.ismount(CGROOT):
        os.makedirs(CGROOT, exist_ok=True)
        p = sh("mount", "-t", "cgroup", "-o", "net_cls", "net_cls", CGROOT, check=False)
        if p.returncode != 0:
            raise Skip(f"cannot mount the cgroup v1 net_cls controller: {p.stderr.strip()}")
    p = sh("nft", "list", "tables", check=False)
    if p.returncode != 0:
        raise Skip(f"nftables does not work here: {p.stderr.strip()}")
    os.makedirs(CGROUP, exist_ok=True)
    with open(CGROUP + "/net_cls.classid", "w") as f:
        f.write(CLASSID)
    sh("nft", "delete", "table", "inet", TABLE, check=False)
    ctx.launcher("restart", VICTIM, env={"AMQP_HEARTBEAT_S": HEARTBEAT_S})
    ctx.state["restarted"] = True
    ctx.say(f"restarted {VICTIM} with AMQP_HEARTBEAT_S={HEARTBEAT_S}")


def inject(ctx):
    port = os.environ.get("PETSTORE_AMQP_PORT") or \
        os.environ["AMQP_URL"].rsplit(":", 1)[1].split("/")[0]
    pid = pid_of(VICTIM)
    sh("nft", "add", "table", "inet", TABLE)
    ctx.state["table"] = True
    sh("nft", "add", "chain", "inet", TABLE, "out",
       "{ type filter hook output priority 0; policy accept; }")
    sh("nft", "add", "rule", "inet", TABLE, "out", "meta", "cgroup", CLASSID, "tcp", "dport",
       port, "drop")
    with open(CGROUP + "/cgroup.procs", "w") as f:
        f.write(str(pid))
    ctx.state["moved"] = pid
    t0 = time.monotonic()
    ctx.inject(f"cut {VICTIM} (pid {pid}) off from the broker: net_cls {CLASSID}, "
               f"nft drop tcp dport {port}")
    noticed = None
    while time.monotonic() - t0 < NOTICE_S:
        if not ready(VICTIM):
            noticed = time.monotonic() - t0
            break
        time.sleep(0.5)
    ctx.state["noticed_s"] = noticed
    if noticed is None:
        ctx.say(f"{VICTIM} still answers /readyz 200 after {NOTICE_S} s")
    else:
        ctx.inject(f"{VICTIM} noticed after {noticed:.1f} s: /readyz not ready")
    time.sleep(MORE_S)
    reconnect(ctx)
    t1 = time.monotonic()
    while time.monotonic() - t1 < NOTICE_S and not ready(VICTIM):
        time.sleep(0.3)
    if ready(VICTIM):
        ctx.state["back_s"] = time.monotonic() - t1
        ctx.inject(f"{VICTIM} reconnected by itself after {ctx.state['back_s']:.1f} s: ready")


def reconnect(ctx):
    if ctx.state.pop("table", False):
        sh("nft", "delete", "table", "inet", TABLE, check=False)
        ctx.inject(f"deleted the nftables table {TABLE}")
    pid = ctx.state.pop("moved", None)
    if pid is not None:
        try:
            with open(CGROOT + "/cgroup.procs", "w") as f:
                f.write(str(pid))
        except OSError:
            pass  # the process is gone
        ctx.inject(f"moved {VICTIM} (pid {pid}) back to the root net_cls cgroup")


def heal(ctx):
    reconnect(ctx)
    if os.path.isdir(CGROUP):
        try:
            os.rmdir(CGROUP)
        except OSError:
            pass
    if ctx.state.pop("restarted", False):
        ctx.launcher("restart", VICTIM)
        ctx.inject(f"restarted {VICTIM} with the system's heartbeat setting")


def check(ctx, load):
    if ctx.state.get("back_s") is None:
        ctx.problem(f"{VICTIM} did not reconnect by itself within {NOTICE_S} s of the heal")
    if ctx.state.get("noticed_s") is None:
        ctx.problem(f"{VICTIM} never reported the broker lost (/readyz stayed 200)")
