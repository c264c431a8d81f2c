#!/usr/bin/python3
"""baseline: measures the metrics of runbook/metrics.md on a running system under a steady load
and writes them as runbook/baseline.md. Re-run it at each release, on the machine that runs the
shop, and commit the file it writes.

    eval "$(./petstore env)"          # or let the script ask the launcher itself
    python3 runbook/tools/baseline.py --seconds 60 --rate 10 -o runbook/baseline.md

How. An open-loop order generator (tests/lib/load.py: Load(rate), prepare(), start(), stop(),
order_ids) places `--rate` orders per second for `--seconds`; meanwhile a sampler reads, once a
second:
  * the RabbitMQ management API (GET /api/queues/petstore): ready and unacknowledged messages per
    work queue, and the depth of every .dlq;
  * every daemon's GET /metrics: counters turned into per-second rates (messages consumed,
    rows published, dead letters, batch retries), the saga's and the relays' gauges (parked
    sagas and timers, parked outbox rows), and GET /readyz of every daemon (how many are ready);
  * SQL, each service's database as its own role: the outbox backlog (unsent, unparked rows)
    and the age of its oldest unsent row, and the sagas in each non-terminal state.
After the load stops it waits (bounded) for the accepted orders to finish, then takes the
end-to-end time of each order accepted during the run (created_at to its terminal status, from
the storefront's order_history). For every metric the file gets p50, p99 and max over the samples
(nearest-rank percentiles), with where the metric is read, so that an operator compares a live
reading with the same source.

Design decisions. The sampler never writes anything and uses only the credentials `./petstore env`
prints (the services' own database roles, the management user). A sample that cannot be read (a
daemon restarting) is skipped for that metric, and the count of samples is in the file. Rates
come from two successive scrapes of the same counter; a counter that went backwards (a restart)
gives no rate for that second. The metric list (METRICS) is the contract with
tests/e2e/test_runbook.py, which checks the file has a figure for each.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

WORK_QUEUES = ("storefront.events", "inventory.commands", "payment.commands", "saga.events",
               "audit.events")
SERVICE_DBS = ("storefront", "inventory", "payment", "saga")  # the databases with an outbox
DAEMONS = ("storefront", "inventory", "payment", "order-saga", "audit", "relay-storefront",
           "relay-inventory", "relay-payment", "relay-saga")
ACTIVE_STATES = ("PENDING", "RESERVING", "PAYING", "CONFIRMING", "COMPENSATING")


def _metrics():
    """(key, unit, where it is read) for every metric the baseline reports, in report order."""
    m = [("orders accepted /s", "orders/s", "the load generator: 202 answers of POST /v1/orders")]
    for q in WORK_QUEUES:
        m.append((f"{q} ready", "messages",
                  f"management API /api/queues/petstore/{q} messages_ready (UI: Queues)"))
        m.append((f"{q} unacked", "messages",
                  f"management API /api/queues/petstore/{q} messages_unacknowledged"))
    for q in WORK_QUEUES:
        m.append((f"{q} consumed /s", "messages/s",
                  f"rate of petstore_messages_consumed_total{{queue=\"{q}\"}} (all outcomes)"))
    m.append(("dead-letter depth (all .dlq)", "messages",
              "management API: sum of messages of the five .dlq queues; ./petstore status"))
    m.append(("dead-lettered /s", "messages/s",
              "rate of petstore_dead_lettered_total, summed over every consumer"))
    m.append(("consumer batch retries /s", "retries/s",
              "rate of petstore_consumer_batch_retries_total, summed over every consumer"))
    for db in SERVICE_DBS:
        m.append((f"outbox {db} backlog", "rows",
                  f"SQL on {db}: unsent, unparked outbox rows (gauge petstore_outbox_backlog "
                  f"on relay-{db}, refreshed every 5 s)"))
        m.append((f"outbox {db} oldest unsent age", "seconds",
                  f"SQL on {db}: now() - min(created_at) of unsent rows "
                  f"(gauge petstore_outbox_lag_seconds on relay-{db})"))
        m.append((f"relay-{db} published /s", "rows/s",
                  f"rate of petstore_outbox_published_total on relay-{db}"))
    m.append(("outbox parked rows (all relays)", "rows",
              "petstore_outbox_parked on each relay's /metrics, summed"))
    for s in ACTIVE_STATES:
        m.append((f"sagas {s}", "sagas", f"SQL on saga: count(*) WHERE status = '{s}'"))
    m.append(("sagas NEEDS_OPERATOR", "sagas",
              "petstore_saga_needs_operator on order-saga's /metrics; ./petstore saga list "
              "--needs-operator"))
    m.append(("saga timers parked", "timers", "petstore_saga_timers_parked on order-saga"))
    m.append(("daemons ready", "of 9", "GET /readyz of the nine daemons answering 200"))
    m.append(("POST /v1/orders latency", "ms",
              "the load generator, per answered attempt; storefront's "
              "petstore_http_request_duration_seconds{route=\"/v1/orders\"}"))
    m.append(("order end-to-end time", "seconds",
              "SQL on storefront: order_history terminal row's at - orders.created_at, "
              "per order accepted during the run"))
    return m


METRICS = _metrics()


# ---------------------------------------------------------------- the system's environment

def system_env():
    """The `./petstore env` variables: from the environment when PETSTORE_API is set there,
    otherwise asked of the launcher (which honours PETSTORE_HOME and the port variables)."""
    if os.environ.get("PETSTORE_API"):
        return dict(os.environ)
    out = subprocess.run([os.path.join(ROOT, "petstore"), "env"], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        sys.exit(f"baseline: ./petstore env failed: {out.stderr.strip()}")
    env = dict(os.environ)
    for line in out.stdout.splitlines():
        m = re.match(r"^export ([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if m and m.group(1) != "PATH":
            env[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
    os.environ.update(env)  # the load generator reads the same variables
    return env


def http_get(url, auth=None, timeout=3):
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def scrape(port):
    """A daemon's /metrics as {'name{labels}': value}; None when it does not answer."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return None
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def total(metrics, name, label=None):
    """The sum of a metric over its label sets (those containing `label` when given)."""
    return sum(v for k, v in metrics.items()
               if (k == name or k.startswith(name + "{")) and (label is None or label in k))


# ---------------------------------------------------------------- sampling

class Sampler:
    """Reads every metric once a second into self.samples: {metric: [value, ...]}."""

    def __init__(self, env):
        import psycopg2
        self.env = env
        self.ports = {d: int(env[f"PETSTORE_{d.upper().replace('-', '_')}_PORT"])
                      for d in DAEMONS}
        self.mgmt = (env["RABBITMQ_MGMT_URL"],
                     (env["RABBITMQ_MGMT_USER"], env["RABBITMQ_MGMT_PASSWORD"]))
        self.dbs = {}
        for db in SERVICE_DBS:
            conn = psycopg2.connect(env[f"{db.upper()}_DATABASE_URL"])
            conn.autocommit = True
            self.dbs[db] = conn
        self.samples = {key: [] for key, _, _ in METRICS}
        self.n = 0
        self.prev = {}          # (daemon, counter) -> (value, monotonic time)
        self.load = None        # set while the load runs: its accepted count is sampled
        self.prev_accepted = None
        self._stop = threading.Event()
        self._thread = None

    def add(self, key, value):
        if value is not None:
            self.samples[key].append(float(value))

    def rate(self, key, daemon, value, now):
        prev = self.prev.get((daemon, key))
        self.prev[(daemon, key)] = (value, now)
        if prev is None or value < prev[0] or now <= prev[1]:
            return None
        return (value - prev[0]) / (now - prev[1])

    def sql(self, db, query):
        try:
            with self.dbs[db].cursor() as cur:
                cur.execute(query)
                return cur.fetchall()
        except Exception:  # a database restarting: no sample this second
            return None

    def sample_once(self):
        now = time.monotonic()
        self.n += 1
        # RabbitMQ: queue depths.
        base, auth = self.mgmt
        status, body = http_get(base + "/api/queues/petstore?columns=name,messages_ready,"
                                "messages_unacknowledged,messages", auth=auth)
        if status == 200:
            queues = {q["name"]: q for q in json.loads(body)}
            for q in WORK_QUEUES:
                if q in queues:
                    self.add(f"{q} ready", queues[q].get("messages_ready"))
                    self.add(f"{q} unacked", queues[q].get("messages_unacknowledged"))
            self.add("dead-letter depth (all .dlq)",
                     sum(queues[q].get("messages") or 0 for q in queues if q.endswith(".dlq")))
        # Daemons: counters, gauges and readiness.
        scraped, dead, retries, parked, ready = {}, [], [], 0.0, 0
        for d, port in self.ports.items():
            m = scrape(port)
            scraped[d] = m
            st, _ = http_get(f"http://127.0.0.1:{port}/readyz")
            ready += st == 200
            if m is None:
                continue
            r = self.rate("dead", d, total(m, "petstore_dead_lettered_total"), now)
            dead.append(r)
            r = self.rate("retries", d, total(m, "petstore_consumer_batch_retries_total"), now)
            retries.append(r)
            if d.startswith("relay-"):
                parked += total(m, "petstore_outbox_parked")
                self.add(f"{d} published /s",
                         self.rate("published", d, total(m, "petstore_outbox_published_total"),
                                   now))
            for q in WORK_QUEUES:
                if any(f'queue="{q}"' in k for k in m):
                    self.add(f"{q} consumed /s",
                             self.rate(q, d, total(m, "petstore_messages_consumed_total",
                                                   f'queue="{q}"'), now))
        if all(m is not None for m in scraped.values()):
            if None not in dead:
                self.add("dead-lettered /s", sum(dead))
            if None not in retries:
                self.add("consumer batch retries /s", sum(retries))
            self.add("outbox parked rows (all relays)", parked)
        saga = scraped.get("order-saga")
        if saga is not None:
            self.add("sagas NEEDS_OPERATOR", total(saga, "petstore_saga_needs_operator"))
            self.add("saga timers parked", total(saga, "petstore_saga_timers_parked"))
        self.add("daemons ready", ready)
        # SQL: outbox backlog and age, saga states.
        for db in SERVICE_DBS:
            rows = self.sql(db, "SELECT count(*) FILTER (WHERE parked_at IS NULL), "
                                "coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                                "FROM outbox WHERE sent_at IS NULL")
            if rows:
                self.add(f"outbox {db} backlog", rows[0][0])
                self.add(f"outbox {db} oldest unsent age", rows[0][1])
        rows = self.sql("saga", "SELECT status, count(*) FROM sagas WHERE status NOT IN "
                                "('COMPLETED', 'CANCELLED') GROUP BY status")
        if rows is not None:
            counts = dict(rows)
            for s in ACTIVE_STATES:
                self.add(f"sagas {s}", counts.get(s, 0))
        # The load: accepted orders per second.
        if self.load is not None:
            accepted = len(self.load.accepted)
            if self.prev_accepted is not None:
                self.add("orders accepted /s", (accepted - self.prev_accepted[0]) /
                         max(now - self.prev_accepted[1], 1e-6))
            self.prev_accepted = (accepted, now)

    def _run(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_at += 1.0
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self):
        self._thread = threading.Thread(target=self._run, name="baseline-sampler", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def order_times(self, order_ids, wait_s):
        """End-to-end seconds of the given orders, after waiting up to wait_s for them to
        finish; unfinished ones are counted separately."""
        query = ("SELECT o.id, extract(epoch FROM min(h.at) - o.created_at) FROM orders o "
                 "LEFT JOIN order_history h ON h.order_id = o.id "
                 "AND h.status IN ('COMPLETED', 'CANCELLED') "
                 "WHERE o.id = ANY(%s::uuid[]) GROUP BY o.id, o.created_at")
        deadline = time.monotonic() + wait_s
        while True:
            with self.dbs["storefront"].cursor() as cur:
                cur.execute(query, (list(order_ids),))
                rows = cur.fetchall()
            open_orders = [r for r in rows if r[1] is None]
            if not open_orders or time.monotonic() >= deadline:
                return [float(r[1]) for r in rows if r[1] is not None], len(open_orders)
            time.sleep(0.5)

    def close(self):
        for conn in self.dbs.values():
            conn.close()


# ---------------------------------------------------------------- report

def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def fmt(v):
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def machine():
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{socket.gethostname()}: {os.cpu_count()} CPUs ({cpu}), {mem}, "
            f"{platform.system()} {platform.release()}")


def commit():
    out = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True,
                         text=True)
    return out.stdout.strip() or "unknown"


def write_report(path, args, sampler, accepted, rejected, post_ms, times, unfinished, started,
                 command):
    lines = [
        "# Baseline: the metrics of this system under a steady load",
        "",
        "Generated by `runbook/tools/baseline.py`; do not edit by hand. Re-run it at each release",
        "on the machine that runs the shop and commit the result:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"- date: {started.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {machine()}",
        f"- commit: {commit()}",
        f"- system: PETSTORE_HOME={os.environ.get('PETSTORE_HOME', '(default .petstore/)')}, "
        f"storefront {os.environ.get('PETSTORE_API', '?')}",
        f"- load: {args.rate:g} orders/s for {args.seconds:g} s, open loop "
        f"(tests/lib/load.py); {accepted} accepted, {rejected} refused or given up",
        f"- samples: {sampler.n}, one a second; orders of the run finished: {len(times)}, "
        f"still unfinished {args.drain:g} s after the load stopped: {unfinished}",
        "",
        "p50 and p99 are nearest-rank percentiles over the samples (over the orders for the",
        "end-to-end time); a rate is the difference of a counter over one second. How to read each",
        "figure and what a deviation means: runbook/metrics.md.",
        "",
        "| metric | unit | p50 | p99 | max | samples | read from |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, unit, where in METRICS:
        values = {"order end-to-end time": times, "POST /v1/orders latency": post_ms}.get(
            key, sampler.samples[key])
        if values:
            p50, p99, mx = (fmt(percentile(values, 50)), fmt(percentile(values, 99)),
                            fmt(max(values)))
        else:
            p50 = p99 = mx = "n/a"
        lines.append(f"| {key} | {unit} | {p50} | {p99} | {mx} | {len(values)} | {where} |")
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="baseline.py",
        description="Measure the runbook's metrics under a steady order load on the running "
                    "system (./petstore env) and write them as a Markdown baseline (p50, p99, "
                    "max per metric).")
    ap.add_argument("--seconds", type=float, default=60, help="how long the load runs (60)")
    ap.add_argument("--rate", type=float, default=10, help="orders per second (10)")
    ap.add_argument("--drain", type=float, default=60,
                    help="seconds to wait after the load for accepted orders to finish (60)")
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "runbook", "baseline.md"),
                    help="the file to write (runbook/baseline.md)")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        ap.error("--seconds and --rate must be positive")

    env = system_env()
    from load import Load  # tests/lib/load.py
    sampler = Sampler(env)
    started = datetime.datetime.now(datetime.timezone.utc).astimezone()
    load = Load(rate=args.rate, duration_s=args.seconds,
                log=lambda text: print(text, file=sys.stderr))
    print(f"baseline: preparing the load ({args.rate:g} orders/s)", file=sys.stderr)
    load.prepare()
    sampler.start()
    load.start()
    sampler.load = load
    print(f"baseline: sampling for {args.seconds:g} s", file=sys.stderr)
    time.sleep(args.seconds)
    load.stop()
    sampler.load = None
    sampler.stop()
    accepted = len(load.accepted)
    rejected = len(load.refused) + len(load.given_up)
    times, unfinished = sampler.order_times(load.order_ids, args.drain)
    sampler.close()
    command = "runbook/tools/baseline.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    write_report(args.output, args, sampler, accepted, rejected, list(load.post_ms), times,
                 unfinished, started, command.strip())
    print(f"baseline: {accepted} orders accepted, {len(times)} finished; wrote {args.output}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
