"""netcut: one process cut off from a server's port by the kernel, for the cut-off drills
(broker-cut-off, database-cut-off). Not a drill itself.

The cgroup v1 net_cls controller (mounted at /sys/fs/cgroup/net_cls if it is not) tags a
process's packets with a class id once the process is moved into a cgroup of its own (moving a
process re-tags its existing sockets too), and an nftables table of the drill's drops, on the
output hook, TCP packets of that class to the server's port. With inbound=True it also drops, on
the input hook, what the server sends to the ports of the connections the process had when it
was cut: an arriving packet carries no socket class at the input hook (over loopback the kernel
has not looked its socket up yet), so those ports are named. Nothing is closed or refused:
packets just vanish, as in a network partition.

Where the kernel or the permissions do not allow it (not root, no nft, no net_cls controller),
preflight() raises Skip with the reason."""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

from faults import Skip, pid_of, port_of, ready

CGROOT = "/sys/fs/cgroup/net_cls"


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


def local_ports(pid, port):
    """The local ports of the process's TCP connections to the server's port."""
    out = sh("ss", "-tnpH", f"( dport = :{port} )").stdout
    return sorted({line.split()[3].rsplit(":", 1)[1] for line in out.splitlines()
                   if f"pid={pid}," in line})


class Cut:
    """The cut of ctx's victim process: its cgroup (under CGROOT), class id and nft table."""

    def __init__(self, ctx, victim, what, cgroup, classid, table):
        self.ctx, self.victim, self.what = ctx, victim, what
        self.cgroup, self.classid, self.table = CGROOT + "/" + cgroup, classid, table
        self.pid = None  # the process while it is in the cgroup
        self.active = False  # the table exists

    def preflight(self):
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
        os.makedirs(self.cgroup, exist_ok=True)
        with open(self.cgroup + "/net_cls.classid", "w") as f:
            f.write(self.classid)
        sh("nft", "delete", "table", "inet", self.table, check=False)

    def apply(self, port, inbound=False):
        """Cuts the victim off from port; returns the monotonic time of the cut."""
        pid = pid_of(self.victim)
        if pid is None:
            raise RuntimeError(f"{self.victim} is not running")
        sh("nft", "add", "table", "inet", self.table)
        self.active = True
        sh("nft", "add", "chain", "inet", self.table, "out",
           "{ type filter hook output priority 0; policy accept; }")
        sh("nft", "add", "rule", "inet", self.table, "out", "meta", "cgroup", self.classid,
           "tcp", "dport", port, "counter", "drop")
        with open(self.cgroup + "/cgroup.procs", "w") as f:
            f.write(str(pid))
        self.pid = pid
        how = f"nft drop tcp dport {port}"
        if inbound:
            # From here on no new connection of the process gets through (its SYNs are
            # dropped), so the ports of its connections to the server are known.
            ports = local_ports(pid, port)
            sh("nft", "add", "chain", "inet", self.table, "in",
               "{ type filter hook input priority 0; policy accept; }")
            if ports:
                sh("nft", "add", "rule", "inet", self.table, "in", "tcp", "sport", port, "tcp",
                   "dport", "{ " + ", ".join(ports) + " }", "counter", "drop")
            how += f" out, sport {port} in to its {len(ports)} connections"
        self.ctx.inject(f"cut {self.victim} (pid {pid}) off from {self.what}: net_cls "
                        f"{self.classid}, {how}")
        return time.monotonic()

    def noticed(self, t0, notice_s):
        """Seconds from t0 until the victim's /readyz said not ready, or None after notice_s."""
        while time.monotonic() - t0 < notice_s:
            if not ready(self.victim):
                s = time.monotonic() - t0
                self.ctx.inject(f"{self.victim} noticed after {s:.1f} s: /readyz not ready: "
                                f"{failing_checks(self.victim)}")
                return s
            time.sleep(0.5)
        self.ctx.say(f"{self.victim} still answers /readyz 200 after {notice_s} s")
        return None

    def lift(self):
        """Deletes the table (with what its counters dropped) and moves the process back."""
        if self.active:
            listed = sh("nft", "list", "table", "inet", self.table, check=False).stdout
            dropped = re.findall(
                r"(sport|dport) \d+ (?:tcp dport \{[^}]*\} )?counter packets (\d+)", listed)
            sh("nft", "delete", "table", "inet", self.table, check=False)
            self.active = False
            self.ctx.inject(f"deleted the nftables table {self.table} (packets dropped: "
                            f"{', '.join(f'{d} {n}' for d, n in dropped) or '?'})")
        if self.pid is not None:
            try:
                with open(CGROOT + "/cgroup.procs", "w") as f:
                    f.write(str(self.pid))
            except OSError:
                pass  # the process is gone
            self.ctx.inject(f"moved {self.victim} (pid {self.pid}) back to the root net_cls "
                            f"cgroup")
            self.pid = None

    def back(self, back_s, noticed):
        """Seconds after now until the victim is ready again by itself, or None after back_s."""
        t1 = time.monotonic()
        while time.monotonic() - t1 < back_s and not ready(self.victim):
            time.sleep(0.3)
        if not ready(self.victim):
            self.ctx.say(f"{self.victim} not ready {back_s} s after the heal: "
                         f"{failing_checks(self.victim)}")
            return None
        s = time.monotonic() - t1
        how = "reconnected by itself" if noticed is not None else "still ready"
        self.ctx.inject(f"{self.victim} {how} {s:.1f} s after the heal: ready")
        return s

    def remove(self):
        """lift(), and the cgroup removed (the net_cls controller stays mounted)."""
        self.lift()
        if os.path.isdir(self.cgroup):
            try:
                os.rmdir(self.cgroup)
            except OSError:
                pass
