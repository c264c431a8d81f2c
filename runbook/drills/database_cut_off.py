"""database-cut-off: one service (payment) cut off from PostgreSQL by the kernel, its existing
connections included, while the broker and its HTTP port stay reachable: a network partition
(a firewall, a dead middlebox) between a daemon and a database on another server, as the process
sees it. Nothing is closed or refused: packets just vanish.

How: as broker-cut-off does, with a cgroup and a table of its own. The cgroup v1 net_cls
controller (mounted at /sys/fs/cgroup/net_cls if it is not) tags the process's packets with a
class id once it is moved into the cgroup petstore-dbcut (moving a process re-tags its existing
sockets too), and an nftables table petstore_dbcut drops, on the output hook, TCP packets of that
class to PostgreSQL's port ($PGPORT) and, on the input hook, what the server sends to the ports of
the connections the process had when it was cut (an arriving packet carries no socket class at the
input hook: over loopback the kernel has not looked its socket up yet). A statement in flight is
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
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from faults import Skip, pid_of, port_of, ready

NAME = "database-cut-off"
SUMMARY = "payment cut off from PostgreSQL by nftables (net_cls cgroup), then reconnected"
LOAD_S = 40
BOUND_S = 120
VICTIM = "payment"
CGROOT = "/sys/fs/cgroup/net_cls"
CGROUP = CGROOT + "/petstore-dbcut"
CLASSID = "0x00100002"
TABLE = "petstore_dbcut"
NOTICE_S = 20  # at most this long for the service to notice
HOLD_S = 15  # the cut lasts at least this long
MORE_S = 3  # and that much longer after it noticed
BACK_S = 15  # at most this long after the heal for the service to be ready again


def sh(*argv, check=True):
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def failing_checks(name):
    """The names of the failing checks in a daemon's /readyz report (best effort)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port_of(name)}/readyz", timeout=2) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
    except Exception as e:
        return repr(e)
    try:
        checks = json.loads(body).get("checks", {})
        return ", ".join(f"{k} ({v.get('detail', '')})" for k, v in checks.items()
                         if v.get("status") != "ok")
    except ValueError:
        return body[:200].decode(errors="replace")


def pg_port():
    return os.environ.get("PETSTORE_PG_PORT") or os.environ["PGPORT"]


def local_ports(pid, port):
    """The local ports of the process's TCP connections to the server's port."""
    out = sh("ss", "-tnpH", f"( dport = :{port} )").stdout
    ports = []
    for line in out.splitlines():
        if f"pid={pid}," in line:
            ports.append(line.split()[3].rsplit(":", 1)[1])
    return sorted(set(ports))


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


def inject(ctx):
    port = pg_port()
    pid = pid_of(VICTIM)
    if pid is None:
        raise RuntimeError(f"{VICTIM} is not running")
    ctx.state["pid"] = pid
    sh("nft", "add", "table", "inet", TABLE)
    ctx.state["table"] = True
    sh("nft", "add", "chain", "inet", TABLE, "out",
       "{ type filter hook output priority 0; policy accept; }")
    sh("nft", "add", "rule", "inet", TABLE, "out", "meta", "cgroup", CLASSID, "tcp", "dport",
       port, "counter", "drop")
    with open(CGROUP + "/cgroup.procs", "w") as f:
        f.write(str(pid))
    ctx.state["moved"] = pid
    # From here on no new connection of the process gets through (its SYNs are dropped), so the
    # ports of its connections to the server are known: drop what the server sends to them.
    ports = local_ports(pid, port)
    sh("nft", "add", "chain", "inet", TABLE, "in",
       "{ type filter hook input priority 0; policy accept; }")
    if ports:
        sh("nft", "add", "rule", "inet", TABLE, "in", "tcp", "sport", port, "tcp", "dport",
           "{ " + ", ".join(ports) + " }", "counter", "drop")
    t0 = time.monotonic()
    ctx.window("cut", t0)
    ctx.inject(f"cut {VICTIM} (pid {pid}) off from PostgreSQL: net_cls {CLASSID}, nft drop tcp "
               f"dport {port} out, sport {port} in to its {len(ports)} connections")
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
        ctx.inject(f"{VICTIM} noticed after {noticed:.1f} s: /readyz not ready: "
                   f"{failing_checks(VICTIM)}")
    until = max(HOLD_S, noticed + MORE_S) if noticed is not None else NOTICE_S
    time.sleep(max(0.0, until - (time.monotonic() - t0)))
    reconnect(ctx)
    t1 = time.monotonic()
    ctx.window("cut", end=t1)
    while time.monotonic() - t1 < BACK_S and not ready(VICTIM):
        time.sleep(0.3)
    if ready(VICTIM):
        ctx.state["back_s"] = time.monotonic() - t1
        how = "reconnected by itself" if noticed is not None else "still ready"
        ctx.inject(f"{VICTIM} {how} {ctx.state['back_s']:.1f} s after the heal: ready")
    else:
        ctx.say(f"{VICTIM} not ready {BACK_S} s after the heal: {failing_checks(VICTIM)}")


def reconnect(ctx):
    if ctx.state.pop("table", False):
        listed = sh("nft", "list", "table", "inet", TABLE, check=False).stdout
        dropped = re.findall(r"(sport|dport) \d+ (?:tcp dport \{[^}]*\} )?counter packets (\d+)",
                             listed)
        sh("nft", "delete", "table", "inet", TABLE, check=False)
        ctx.inject(f"deleted the nftables table {TABLE} (packets dropped: "
                   f"{', '.join(f'{d} {n}' for d, n in dropped) or '?'})")
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
