"""The cost of a window of work on a running system, read from the operating system, PostgreSQL
and RabbitMQ at its start and end, so that the bench can divide it by the sagas done in it:

- CPU (user + system) of every daemon (its pid file under $PETSTORE_HOME/run), of RabbitMQ (the
  Erlang VM and its children) and of PostgreSQL: each backend by the database it serves, the
  server's own processes (WAL writer, checkpointer, ...) and the backends that ended inside the
  window (the postmaster's reaped children) as "postgres other";
- per database: commits (pg_stat_database.xact_commit) and statements (pg_stat_statements calls,
  when the server loads it; the launcher's bench does);
- WAL bytes written by the server (pg_current_wal_lsn);
- per queue: messages published to it and delivered from it; per exchange: messages published
  in by clients (the management API's message_stats).

PostgreSQL publishes a backend's counters when it goes idle, within 10 s at most, and the
management API samples every 5 s, so `end()` reads the CPU at once and the counters after a
settle delay. Nothing here changes the system."""
import base64
import json
import os
import time
import urllib.request

import psycopg2

TICK = os.sysconf("SC_CLK_TCK")
SERVICE_DBS = ("storefront", "inventory", "payment", "saga", "audit")
SETTLE_S = 11.0


def proc_stat(pid):
    """(ppid, utime + stime, cutime + cstime) in seconds, or None when pid is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / TICK
    children = (int(fields[13]) + int(fields[14])) / TICK
    return ppid, own, children


def children_of(root):
    """Every descendant pid of root."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                parents.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_kb(pid, field="VmHWM"):
    """A process's peak (VmHWM) or current (VmRSS) resident memory in kB, None when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def daemon_pids(home):
    run = os.path.join(home, "run")
    pids = {}
    for name in sorted(os.listdir(run)):
        if name.endswith(".pid"):
            try:
                with open(os.path.join(run, name)) as f:
                    pids[name[:-4]] = int(f.read().strip())
            except (OSError, ValueError):
                pass
    return pids


class Meter:
    """meter = Meter(); meter.begin(); ...work...; figures = meter.end(sagas)"""

    def __init__(self, home=None):
        self.home = home or os.environ["PETSTORE_HOME"]
        self.admin = psycopg2.connect(os.environ["PETSTORE_PG_ADMIN_URL"])
        self.admin.autocommit = True
        with self.admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
            if cur.fetchone()[0] == 0:
                try:
                    cur.execute("CREATE EXTENSION pg_stat_statements")
                except psycopg2.Error:
                    pass  # not preloaded: statements are not counted
            try:  # usable only when the server preloads it (the launcher's bench does)
                cur.execute("SELECT count(*) FROM pg_stat_statements")
                self.statements = True
            except psycopg2.Error:
                self.statements = False
            cur.execute("SELECT pg_backend_pid()")
            own = cur.fetchone()[0]
        self.postmaster = proc_stat(own)[0]
        with open(os.path.join(self.home, "rabbitmq", "rabbitmq.pid")) as f:
            self.beam = int(f.read().strip())
        self.mgmt = os.environ["RABBITMQ_MGMT_URL"]
        auth = f"{os.environ['RABBITMQ_MGMT_USER']}:{os.environ['RABBITMQ_MGMT_PASSWORD']}"
        self.auth = "Basic " + base64.b64encode(auth.encode()).decode()

    # ------------------------------------------------------------ readings

    def _mgmt(self, path):
        req = urllib.request.Request(self.mgmt + path, headers={"Authorization": self.auth})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def _cpu(self):
        cpu = {}
        for name, pid in daemon_pids(self.home).items():
            st = proc_stat(pid)
            if st is not None:
                cpu[name] = st[1]
        st = proc_stat(self.beam)
        cpu["rabbitmq"] = st[1] + st[2] + sum(
            (proc_stat(p) or (0, 0, 0))[1] for p in children_of(self.beam))
        with self.admin.cursor() as cur:
            cur.execute("SELECT pid, datname FROM pg_stat_activity WHERE backend_type = 'client"
                        " backend' AND pid <> pg_backend_pid()")
            backends = dict(cur.fetchall())
        pm = proc_stat(self.postmaster)
        pg = {"postgres other": pm[1] + pm[2]}
        for pid in children_of(self.postmaster):
            st = proc_stat(pid)
            if st is None:
                continue
            db = backends.get(pid)
            key = f"postgres {db}" if db in SERVICE_DBS else "postgres other"
            pg[key] = pg.get(key, 0.0) + st[1]
        return cpu, pg, backends

    def _db(self):
        with self.admin.cursor() as cur:
            cur.execute("SELECT datname, xact_commit FROM pg_stat_database"
                        " WHERE datname = ANY(%s)", (list(SERVICE_DBS),))
            commits = dict(cur.fetchall())
            statements = {}
            if self.statements:
                cur.execute("SELECT d.datname, sum(s.calls) FROM pg_stat_statements s"
                            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = ANY(%s)"
                            " GROUP BY d.datname", (list(SERVICE_DBS),))
                statements = {k: int(v) for k, v in cur.fetchall()}
            cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
            wal = int(cur.fetchone()[0])
        return commits, statements, wal

    def _top(self):
        """Every statement's calls, time and WAL, by database and query text."""
        if not self.statements:
            return {}
        with self.admin.cursor() as cur:
            cur.execute("SELECT d.datname, s.query, sum(s.calls), sum(s.total_exec_time),"
                        " sum(s.wal_bytes) FROM pg_stat_statements s"
                        " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = ANY(%s)"
                        " GROUP BY d.datname, s.query", (list(SERVICE_DBS),))
            return {(db, q): (int(c), float(t), int(w)) for db, q, c, t, w in cur.fetchall()}

    def _mq(self):
        queues = {}
        for q in self._mgmt("/api/queues/petstore?columns=name,message_stats"):
            stats = q.get("message_stats") or {}
            name = q["name"]
            if name.startswith("amq.gen-"):
                name = "exclusive queues (amq.gen-*)"
            got = queues.setdefault(name, {"published": 0, "delivered": 0})
            got["published"] += stats.get("publish", 0)
            got["delivered"] += stats.get("deliver_get", 0)
        exchanges = {}
        for x in self._mgmt("/api/exchanges/petstore?columns=name,message_stats"):
            if x["name"].startswith("petstore."):
                exchanges[x["name"]] = (x.get("message_stats") or {}).get("publish_in", 0)
        return queues, exchanges

    # ------------------------------------------------------------ the window

    def begin(self, settle=True):
        if settle:
            time.sleep(SETTLE_S)  # the counters of the work before the window are published
        self.t0 = time.monotonic()
        self.cpu0, self.pg0, self.backends0 = self._cpu()
        self.db0 = self._db()
        self.top0 = self._top()
        self.mq0 = self._mq()

    def end(self, sagas):
        """The window's figures, in all and per saga (sagas: how many ended in it)."""
        seconds = time.monotonic() - self.t0
        cpu1, pg1, backends1 = self._cpu()
        time.sleep(SETTLE_S)
        db1 = self._db()
        top1 = self._top()
        mq1 = self._mq()
        per = max(sagas, 1)
        top = []
        for key, (calls, ms, wal_b) in top1.items():
            c0, ms0, w0 = self.top0.get(key, (0, 0.0, 0))
            if calls > c0:
                top.append({"database": key[0], "query": " ".join(key[1].split())[:240],
                            "calls_per_saga": round((calls - c0) / per, 2),
                            "exec_ms_per_saga": round((ms - ms0) / per, 3),
                            "wal_bytes_per_saga": round((wal_b - w0) / per)})
        top.sort(key=lambda t: -t["exec_ms_per_saga"])

        cpu = {k: (v - self.cpu0.get(k, 0.0)) for k, v in cpu1.items() if k in self.cpu0}
        pg = {k: (v - self.pg0.get(k, 0.0)) for k, v in pg1.items()}
        # A backend that ended in the window is counted by its parent's reaped time, in
        # "postgres other"; one that started in it is counted from zero, which is right.
        commits = {db: db1[0].get(db, 0) - self.db0[0].get(db, 0) for db in SERVICE_DBS}
        statements = {db: db1[1].get(db, 0) - self.db0[1].get(db, 0) for db in SERVICE_DBS}
        wal = db1[2] - self.db0[2]
        queues = {}
        for name, v in mq1[0].items():
            before = self.mq0[0].get(name, {"published": 0, "delivered": 0})
            d = {"published": v["published"] - before["published"],
                 "delivered": v["delivered"] - before["delivered"]}
            if d["published"] or d["delivered"]:
                queues[name] = d
        exchanges = {k: v - self.mq0[1].get(k, 0) for k, v in mq1[1].items()}
        cpu_all = dict(cpu)
        cpu_all.update(pg)
        total_cpu = sum(cpu_all.values())
        return {
            "sagas": sagas,
            "seconds": round(seconds, 2),
            "cpu_s": {k: round(v, 2) for k, v in sorted(cpu_all.items())},
            "cpu_ms_per_saga": {k: round(1000 * v / per, 3) for k, v in sorted(cpu_all.items())},
            "cpu_ms_per_saga_total": round(1000 * total_cpu / per, 2),
            "machine_busy": round(total_cpu / (seconds * os.cpu_count()), 3),
            "commits_per_saga": {k: round(v / per, 2) for k, v in commits.items()},
            "commits_per_saga_total": round(sum(commits.values()) / per, 2),
            "statements_per_saga": ({k: round(v / per, 2) for k, v in statements.items()}
                                    if self.statements else None),
            "statements_per_saga_total": (round(sum(statements.values()) / per, 2)
                                          if self.statements else None),
            "wal_bytes_per_saga": round(wal / per),
            "published_per_saga": {k: round(v / per, 2) for k, v in exchanges.items() if v},
            "published_per_saga_total": round(sum(exchanges.values()) / per, 2),
            "queues_per_saga": {k: {"published": round(v["published"] / per, 2),
                                    "delivered": round(v["delivered"] / per, 2)}
                                for k, v in sorted(queues.items())},
            "delivered_per_saga_total": round(sum(v["delivered"] for v in queues.values()) / per,
                                              2),
            "statements": top[:40],
        }

    def rss_mb(self, field="VmHWM"):
        """Each daemon's peak (VmHWM) or current (VmRSS) resident memory in MB."""
        out = {}
        for name, pid in daemon_pids(self.home).items():
            kb = rss_kb(pid, field)
            if kb is not None:
                out[name] = round(kb / 1024, 1)
        return out


def table(cost):
    """The cost of one saga as Markdown rows (what the README and the closing notes show)."""
    lines = ["| where | per saga |", "|---|---|"]
    cpu = cost["cpu_ms_per_saga"]
    for k in sorted(cpu, key=lambda k: -cpu[k]):
        lines.append(f"| CPU {k} | {cpu[k]:.2f} ms |")
    lines.append(f"| **CPU, everything** | **{cost['cpu_ms_per_saga_total']:.2f} ms** |")
    for db, v in cost["commits_per_saga"].items():
        st = (cost["statements_per_saga"] or {}).get(db)
        lines.append(f"| {db} database | {v:.2f} commits"
                     + (f", {st:.1f} statements |" if st is not None else " |"))
    lines.append(f"| commits, all databases | {cost['commits_per_saga_total']:.2f} |")
    if cost["statements_per_saga_total"] is not None:
        lines.append(f"| statements, all databases | {cost['statements_per_saga_total']:.1f} |")
    lines.append(f"| WAL | {cost['wal_bytes_per_saga'] / 1024:.1f} KB |")
    lines.append(f"| messages published | {cost['published_per_saga_total']:.2f} |")
    for q, v in cost["queues_per_saga"].items():
        lines.append(f"| queue {q} | {v['published']:.2f} in, {v['delivered']:.2f} delivered |")
    lines.append(f"| messages delivered | {cost['delivered_per_saga_total']:.2f} |")
    return "\n".join(lines)
