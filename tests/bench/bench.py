"""The benchmarks of `./petstore bench`: what the shop does on this machine, and what one saga
costs. Run by the launcher on a throw-away system (release build, default settings, PostgreSQL
counting statements); it can also run against any system started by `./petstore up`:

    eval "$(./petstore env)"; PETSTORE_LAUNCHER=$PWD/petstore python3 tests/bench/bench.py

Scenarios, in this order (name them to run some; the default is all):
  closed     closed loop for --duration s: --clients connections, each placing an order,
             following it to its end with the long poll, then placing the next; the maximum
             completed sagas per second, POST->COMPLETED latency, and the cost of one saga
  open-100   open loop at 100 orders/s (and open-500 at 500/s): POST and POST->COMPLETED
             latency measured from each order's due time (no coordinated omission)
  relay      the storefront's relay alone on a pre-filled outbox (its consumers stopped) against
             a raw confirmed-publish loop to the same exchange and routing key, same sizes
  door       the HTTP door alone: the storefront's relay stopped, POST /v1/orders only, 202s per
             second; the orders it accepted are parked in the outbox afterwards, never run
  aged       the databases aged with --aged completed orders loaded in bulk, then closed again
The load comes from bin/petstore-loadgen (C, epoll); pets are loaded in bulk (tests/bench/bulk.py)
before each scenario, customers and cards through the public APIs.

Prints one line per scenario, the peak RSS of every daemon and the cost-of-one-saga table, and
writes everything as JSON under --out. A measurement, not a test: it fails only when the system
does not work (an order lost, a scenario that cannot run)."""
import argparse
import base64
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)

import bulk  # noqa: E402
import cost  # noqa: E402
import db  # noqa: E402
import httpc  # noqa: E402
from petstore_env import need  # noqa: E402
from shop import api, create_card, new_customer  # noqa: E402
from wait import wait_until  # noqa: E402

SCENARIOS = ("closed", "open-100", "open-500", "relay", "door", "aged")
WORK_QUEUES = ("inventory.commands", "payment.commands", "saga.events", "storefront.events",
               "audit.events")


def say(*a):
    print(*a, flush=True)


def launcher(*args):
    subprocess.run([need("PETSTORE_LAUNCHER"), *args], check=True, stdout=subprocess.DEVNULL)


def loadgen():
    return os.path.join(need("PETSTORE_BUILD_DIR"), "bin", "petstore-loadgen")


def mgmt(path, method="GET"):
    auth = f"{need('RABBITMQ_MGMT_USER')}:{need('RABBITMQ_MGMT_PASSWORD')}"
    req = urllib.request.Request(need("RABBITMQ_MGMT_URL") + path, method=method, headers={
        "Authorization": "Basic " + base64.b64encode(auth.encode()).decode()})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def queue_depths():
    return {q["name"]: q.get("messages", 0)
            for q in mgmt("/api/queues/petstore?columns=name,messages")}


def quiet(timeout=1200):
    """Waits until every work queue is empty and every outbox is sent (nothing in flight)."""
    conns = {d: db.connect(d) for d in ("storefront", "inventory", "payment", "saga")}

    def idle():
        depths = queue_depths()
        if any(depths.get(q, 0) for q in WORK_QUEUES):
            return False
        return all(db.value(c, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                               " AND parked_at IS NULL") == 0 for c in conns.values())
    try:
        wait_until(idle, timeout=timeout, interval=0.5, what="the system idle")
    finally:
        for c in conns.values():
            c.close()


class Shop:
    """The bench's customers (session tokens) and cards, written to the loadgen's clients file."""

    def __init__(self, n, workdir):
        self.path = os.path.join(workdir, "clients.txt")
        with open(self.path, "w") as f:
            for _ in range(n):
                number, _card = create_card(10 ** 12)
                f.write(f"{new_customer()} {number}\n")

    def pets(self, n, workdir, name):
        path = os.path.join(workdir, f"pets-{name}.txt")
        with open(path, "w") as f:
            for pet in bulk.seed_pets(n):
                f.write(f"{pet}\n")
        return path


def run_loadgen(args, out):
    cmd = [loadgen(), *args, "--json", out]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
    with open(out) as f:
        return json.load(f)


def pct(result, key, p):
    lat = result.get("latency_ms", {}).get(key) or {}
    return lat.get(p)


def saga_line(name, r):
    done = r.get("completed_per_s", 0.0)
    return (f"{name}: {done:.0f} sagas/s completed, p50 {pct(r, 'completed', 'p50'):.0f} ms,"
            f" p99 {pct(r, 'completed', 'p99'):.0f} ms")


def orders(shop, opts, workdir, name, mode, duration, follow="longpoll"):
    rate = mode[1] if mode[0] == "rate" else None
    want = int((rate or opts.max_rate) * duration * 1.2) + 100
    pets = shop.pets(want, workdir, name)
    args = ["orders", "--url", api(), "--clients", shop.path, "--pets", pets,
            "--duration", str(duration), "--follow", follow, "--drain", str(opts.drain),
            "--wait-query", opts.wait_query]
    args += ["--closed", str(mode[1])] if mode[0] == "closed" else ["--rate", str(rate)]
    return run_loadgen(args, os.path.join(workdir, f"{name}.json"))


def check_ended(name, r):
    """Says so when accepted orders had not ended by the end of the drain (an overloaded system:
    they end later, and the next scenario waits for them), or when the pets ran out."""
    if r.get("unfinished"):
        say(f"  ({name}: {r['unfinished']} orders had not ended when the drain ended: the system"
            " could not keep up)")
    if r.get("pets_exhausted"):
        say(f"  ({name}: ran out of pets before the end; raise --max-rate)")


def closed(shop, opts, workdir, name="closed-loop"):
    quiet()
    meter = cost.Meter()
    meter.begin()
    r = orders(shop, opts, workdir, name, ("closed", opts.clients), opts.duration)
    ended = sum(r.get("ended", {}).values())
    r["cost"] = meter.end(ended)
    r["peak_rss_mb"] = meter.rss_mb()
    check_ended(name, r)
    say(saga_line(name, r))
    return r


def open_loop(shop, opts, workdir, rate):
    quiet()
    name = f"open-{rate}"
    r = orders(shop, opts, workdir, name, ("rate", rate), opts.duration)
    check_ended(name, r)
    say(saga_line(name, r) + f"; POST p50 {pct(r, 'post', 'p50'):.1f} ms,"
        f" p99 {pct(r, 'post', 'p99'):.1f} ms")
    return r


def relay_metric(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("petstore_outbox_published_total "):
                return float(line.split()[1])
    raise SystemExit("bench: the relay has no petstore_outbox_published_total")


def relay(shop, opts, workdir):
    """The storefront's relay publishing a pre-filled outbox, against the raw loop. The rows are
    copies of a real order.placed row (one order is placed for it if none is there)."""
    n = opts.relay_messages
    port = need("PETSTORE_RELAY_STOREFRONT_PORT")
    sf = db.connect("storefront")  # autocommit: the INSERT below commits as one transaction
    query = ("SELECT exchange, routing_key, type, app_id, headers::text AS headers, body"
             " FROM outbox WHERE routing_key = 'order.placed' ORDER BY id DESC LIMIT 1")
    if not db.rows(sf, query):
        orders(shop, opts, workdir, "relay-template", ("closed", 1), 0.5)
    quiet()
    template = db.rows(sf, query)
    if not template:
        raise SystemExit("bench: relay: no order.placed row to copy")
    t = template[0]
    for consumer in ("order-saga", "audit"):
        launcher("stop", consumer)
    try:
        before = relay_metric(port)
        meter = cost.Meter()  # what the relay's cycle costs (statements above all), per message
        meter.begin(settle=False)
        cur = sf.cursor()
        # No correlation ids: the outbox's insert trigger takes an advisory lock per order, and
        # tens of thousands in one transaction would exhaust the server's lock table.
        cur.execute("INSERT INTO outbox (partition, exchange, routing_key, message_id, type,"
                    " correlation_id, app_id, headers, body)"
                    " SELECT g %% 16, %s, %s, gen_random_uuid(), %s, NULL, %s,"
                    " %s::jsonb, %s FROM generate_series(1, %s) g",
                    (t["exchange"], t["routing_key"], t["type"], t["app_id"], t["headers"],
                     t["body"], n))
        started = time.monotonic()
        wait_until(lambda: relay_metric(port) >= before + n, timeout=600, interval=0.02,
                   what=f"the relay publishing {n} rows")
        relay_s = time.monotonic() - started
        relay_cost = meter.end(n)
        purge(("saga.events", "audit.events"))
        raw = run_loadgen(["publish", "--amqp-url", need("STOREFRONT_AMQP_URL"),
                           "--exchange", t["exchange"], "--routing-key", t["routing_key"],
                           "--count", str(n), "--size", str(len(t["body"])),
                           "--window", str(opts.relay_window), "--type", t["type"],
                           "--user-id", "storefront"], os.path.join(workdir, "raw.json"))
        purge(("saga.events", "audit.events"))
    finally:
        for consumer in ("order-saga", "audit"):
            launcher("start", consumer)
        sf.close()
    r = {"messages": n, "body_bytes": len(t["body"]), "relay_s": round(relay_s, 3),
         "relay_cost_per_message": relay_cost,
         "relay_msgs_per_s": round(n / relay_s), "raw": raw,
         "raw_msgs_per_s": round(raw["msgs_per_s"])}
    r["relay_share_of_raw"] = round(r["relay_msgs_per_s"] / max(r["raw_msgs_per_s"], 1), 3)
    say(f"relay: {r['relay_msgs_per_s']} msgs/s, raw: {r['raw_msgs_per_s']} msgs/s"
        f" ({100 * r['relay_share_of_raw']:.0f}%)")
    return r


def purge(queues):
    for q in queues:
        mgmt(f"/api/queues/petstore/{q}/contents", method="DELETE")


def door(shop, opts, workdir):
    """POST /v1/orders alone: nothing downstream runs (the storefront's relay is stopped), and the
    orders accepted are parked in the storefront's outbox afterwards so that they never run."""
    quiet()
    launcher("stop", "relay-storefront")
    sf = db.connect("storefront")
    try:
        r = orders(shop, opts, workdir, "door", ("closed", opts.clients), opts.door_duration,
                   follow="none")
        cur = sf.cursor()
        cur.execute("UPDATE outbox SET parked_at = now(), last_error = 'bench: accepted by the"
                    " door scenario, never run' WHERE sent_at IS NULL AND parked_at IS NULL")
        r["parked"] = cur.rowcount
    finally:
        sf.close()
        launcher("start", "relay-storefront")
    say(f"door: {r.get('post_per_s', 0):.0f} 202s/s, POST p50 {pct(r, 'post', 'p50'):.1f} ms,"
        f" p99 {pct(r, 'post', 'p99'):.1f} ms")
    return r


def aged(shop, opts, workdir):
    say(f"  (ageing the databases with {opts.aged} completed orders, in bulk...)")
    figures = bulk.age(opts.aged)
    r = closed(shop, opts, workdir, name="aged-closed-loop")
    r["ageing"] = figures
    return r


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 2 ** 20, 1),
            "kernel": platform.release(), "commit": commit.strip()}


def main():
    ap = argparse.ArgumentParser(
        prog="./petstore bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: " + ", ".join(SCENARIOS) + " (default: all, in that order)")
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    ap.add_argument("--duration", type=float, default=60, help="seconds of load per scenario")
    ap.add_argument("--door-duration", type=float, default=15)
    ap.add_argument("--clients", type=int, default=64, help="closed-loop connections")
    ap.add_argument("--customers", type=int, default=64, help="customers (and cards)")
    ap.add_argument("--max-rate", type=float, default=1500,
                    help="orders/s the closed loop may reach (pets are loaded for it)")
    ap.add_argument("--drain", type=float, default=120, help="seconds for orders in flight")
    ap.add_argument("--aged", type=int, default=500_000, help="orders the aged scenario loads")
    ap.add_argument("--relay-messages", type=int, default=20_000)
    ap.add_argument("--relay-window", type=int, default=500, help="the relay's batch size")
    ap.add_argument("--wait-query", default="wait=30&until=terminal",
                    help="how a client follows its order (the long poll's query; {status} is"
                         " the last status seen, e.g. 'wait=30&status={status}' for one request"
                         " per status change)")
    ap.add_argument("--quick", action="store_true",
                    help="a few seconds per scenario and 5,000 aged orders: a check it runs")
    ap.add_argument("--out", default=".", help="directory for the JSON report")
    opts = ap.parse_args()
    for s in opts.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r} (scenarios: {', '.join(SCENARIOS)})")
    if opts.quick:
        opts.duration, opts.door_duration, opts.aged = 5, 3, 5000
        opts.relay_messages, opts.max_rate, opts.drain = 2000, 400, 60
        opts.customers = opts.clients = min(opts.clients, 16)
    chosen = [s for s in SCENARIOS if not opts.scenarios or s in opts.scenarios]

    report = {"machine": machine(), "settings": {k: v for k, v in vars(opts).items()
                                                 if k not in ("scenarios", "out")},
              "scenarios": {}}
    os.makedirs(opts.out, exist_ok=True)
    path = os.path.join(opts.out, "bench-" + time.strftime("%Y%m%d-%H%M%S") + ".json")

    def save():  # after every scenario: a run cut short keeps what it measured
        with open(path, "w") as f:
            json.dump(report, f, indent=2)

    with tempfile.TemporaryDirectory(prefix="petstore-bench-") as workdir:
        shop = Shop(opts.customers, workdir)
        for s in chosen:
            if s == "closed":
                r = closed(shop, opts, workdir)
            elif s.startswith("open-"):
                r = open_loop(shop, opts, workdir, int(s[5:]))
            elif s == "relay":
                r = relay(shop, opts, workdir)
            elif s == "door":
                r = door(shop, opts, workdir)
            else:
                r = aged(shop, opts, workdir)
            report["scenarios"][s] = r
            save()
    meter = cost.Meter()
    rss, now = meter.rss_mb(), meter.rss_mb("VmRSS")
    report["peak_rss_mb"], report["rss_mb"] = rss, now
    say("peak RSS: " + ", ".join(f"{k} {v:.1f} MB" for k, v in rss.items()))
    say("RSS now:  " + ", ".join(f"{k} {v:.1f} MB" for k, v in now.items()))
    for key in ("closed", "aged"):
        if key in report["scenarios"]:
            say(f"\nthe cost of one saga ({key}, {report['scenarios'][key]['cost']['sagas']}"
                " sagas):")
            say(cost.table(report["scenarios"][key]["cost"]))
    save()
    say(f"\nreport: {path}")


if __name__ == "__main__":
    main()
