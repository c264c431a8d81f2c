#!/usr/bin/python3
"""trace: one order's log lines from every process, merged in time order, with its hops.

Usage: ./petstore trace [--json] ORDER_ID|TRACE_ID
       (or PETSTORE_LOGS=DIR /usr/bin/python3 runbook/tools/trace.py [--json] ID)

How the lines are found (runbook/logging-and-tracing.md explains the conventions):
  1. every line whose order_id is the order (an order id was given), or every line of the trace
     (a trace id, 32 hex digits, was given: its order is the order id most of its lines name);
  2. the trace ids those lines carry (the order's own trace, and the traces of the customer's
     later requests about it, e.g. GET /v1/orders/{id});
  3. every line of those traces, also those that do not name the order (the HTTP entry line,
     messages about the order's pets).
They are merged by timestamp (milliseconds; lines of one process keep their order).

Hops: a message is followed by its id from the producer's outbox.enqueued to the relay's
relay.published to each consumer's message.received, e.g.
  order.placed.v1  storefront → relay-storefront 3 ms → order-saga 5 ms, audit 6 ms
Both times count from the enqueue: the relay's is when the broker confirmed the publish (its
line is written then, which can be a little after a consumer already got the message), a
consumer's is when its message.received was written. The enqueue is logged inside the
producer's transaction, so each includes the rest of that transaction and its commit.
The total is the time from the order's first line to its last.

The log directory is $PETSTORE_LOGS, else $PETSTORE_HOME/logs, else .petstore/logs beside the
launcher. Exit status: 0 when lines were found, 1 when nothing matches, 2 on a usage error.
"""
import argparse
import collections
import glob
import json
import os
import re
import sys
from datetime import datetime

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STANDARD = ("timestamp", "level", "service", "message", "trace_id", "span_id", "order_id",
            "process")
# Fields worth showing on a line, in this order, when present.
KEY_FIELDS = ("method", "route", "status", "duration_ms", "type", "message_id", "queue",
              "redelivered", "routing_key", "source", "event", "from", "to", "reason", "why",
              "command", "reply", "prior", "pet_ids", "unavailable", "amount_cents", "card_last4",
              "applied", "version", "outcome", "code", "error", "sqlstate", "statement", "params",
              "rows", "poison", "class")


def log_dir():
    if os.environ.get("PETSTORE_LOGS"):
        return os.environ["PETSTORE_LOGS"]
    if os.environ.get("PETSTORE_HOME"):
        return os.path.join(os.environ["PETSTORE_HOME"], "logs")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".petstore",
                        "logs")


def read_logs(directory):
    """Every JSON line of every *.log in directory, each with its process (the file's name)."""
    lines = []
    for path in sorted(glob.glob(os.path.join(directory, "*.log"))):
        process = os.path.basename(path)[:-4]
        with open(path, errors="replace") as f:
            for n, text in enumerate(f):
                if not text.startswith("{"):
                    continue
                try:
                    line = json.loads(text)
                except ValueError:
                    continue
                if not isinstance(line, dict) or "timestamp" not in line:
                    continue
                line["process"] = process
                line["_seq"] = n
                lines.append(line)
    return lines


def select(lines, wanted):
    """(order ids, trace ids, the lines of the order), by the rules at the top."""
    wanted = wanted.lower()
    if TRACE_ID.match(wanted):
        named = collections.Counter(l["order_id"] for l in lines
                                    if l.get("trace_id") == wanted and l.get("order_id"))
        orders = {named.most_common(1)[0][0]} if named else set()
        traces = {wanted}
    else:
        orders = {wanted}
        traces = set()
    traces |= {l["trace_id"] for l in lines if l.get("order_id") in orders and l.get("trace_id")}
    chosen = [l for l in lines if l.get("order_id") in orders or l.get("trace_id") in traces]
    chosen.sort(key=lambda l: (l["timestamp"], l["process"], l["_seq"]))
    return sorted(orders), sorted(traces), chosen


def when(line):
    return datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")


def ms_between(a, b):
    return round((when(b) - when(a)).total_seconds() * 1000, 1)


def hops(chosen):
    """One entry per message of the order, in the order they were enqueued."""
    by_id = collections.OrderedDict()
    for l in chosen:
        mid = l.get("message_id")
        if not mid or l["message"] not in ("outbox.enqueued", "relay.published",
                                            "message.received"):
            continue
        h = by_id.setdefault(mid, {"message_id": mid, "type": l.get("type"), "enqueued": None,
                                   "published": None, "received": []})
        h["type"] = h["type"] or l.get("type")
        if l["message"] == "outbox.enqueued" and h["enqueued"] is None:
            h["enqueued"] = l
        elif l["message"] == "relay.published" and h["published"] is None:
            h["published"] = l
        elif l["message"] == "message.received":
            h["received"].append(l)
    out = []
    for h in by_id.values():
        entry = {"message_id": h["message_id"], "type": h["type"],
                 "producer": h["enqueued"]["process"] if h["enqueued"] else None,
                 "relay": h["published"]["process"] if h["published"] else None,
                 "relay_ms": None, "consumers": []}
        if h["enqueued"] and h["published"]:
            entry["relay_ms"] = ms_between(h["enqueued"], h["published"])
        # From the enqueue, not the relay's line: relay.published is written when the broker's
        # confirm arrives, which can be after the consumer already has the message.
        start = h["enqueued"] or h["published"]
        for r in h["received"]:
            entry["consumers"].append({"process": r["process"], "queue": r.get("queue"),
                                       "ms": ms_between(start, r) if start else None})
        out.append(entry)
    return out


def hop_text(h):
    def ms(v):
        return "?" if v is None else f"{v:g} ms"
    parts = [h["producer"] or "?"]
    if h["relay"]:
        parts.append(f"{h['relay']} {ms(h['relay_ms'])}")
    consumers = ", ".join(f"{c['process']} {ms(c['ms'])}" for c in h["consumers"])
    if consumers:
        parts.append(consumers)
    return f"{h['type'] or '?':34} " + " → ".join(parts)


def value_text(v):
    if isinstance(v, float):
        return f"{v:.1f}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def line_text(l, width):
    fields = [f"{k}={value_text(l[k])}" for k in KEY_FIELDS if k in l and l[k] is not None]
    extra = [f"{k}={value_text(v)}" for k, v in l.items()
             if k not in STANDARD and k not in KEY_FIELDS and not k.startswith("_")
             and k not in ("exchange", "causation_id", "outbox_id", "attempts", "span_id")]
    ts = l["timestamp"][11:23]
    return (f"{ts}  {l['process']:<{width}}  {l.get('level', ''):<5}  {l['message']:<22} "
            + " ".join(fields + extra)).rstrip()


def main(argv):
    p = argparse.ArgumentParser(
        prog="./petstore trace",
        description="One order's log lines from every process, merged in time order, with the "
                    "time spent in each hop (outbox → relay → consumer) and the total.",
        epilog="Logs are read from $PETSTORE_LOGS (the launcher sets it), else "
               "$PETSTORE_HOME/logs. Exit 1 when no line matches.")
    p.add_argument("id", metavar="ORDER_ID|TRACE_ID",
                   help="an order id (UUID) or a trace id (32 hex digits)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    wanted = args.id.strip().lower()
    if not (UUID.match(wanted) or TRACE_ID.match(wanted)):
        print(f"trace: {args.id!r} is neither an order id (UUID) nor a trace id "
              "(32 hex digits)", file=sys.stderr)
        return 2
    directory = log_dir()
    if not os.path.isdir(directory):
        print(f"trace: no log directory {directory} (is the system up? PETSTORE_LOGS?)",
              file=sys.stderr)
        return 1
    orders, traces, chosen = select(read_logs(directory), wanted)
    if not chosen:
        print(f"trace: no log line names {args.id} in {directory}", file=sys.stderr)
        return 1
    hop_list = hops(chosen)
    total = ms_between(chosen[0], chosen[-1])
    processes = sorted({l["process"] for l in chosen})
    if args.json:
        for l in chosen:
            l.pop("_seq", None)
        json.dump({"id": wanted, "order_ids": orders, "trace_ids": traces,
                   "processes": processes, "lines": chosen, "hops": hop_list,
                   "total_ms": total}, sys.stdout, indent=1)
        print()
        return 0
    print(f"order {', '.join(orders) or '?'}   trace {', '.join(traces)}")
    print(f"{len(chosen)} lines from {len(processes)} processes: {', '.join(processes)}")
    print()
    width = max(len(p_) for p_ in processes)
    for l in chosen:
        print(line_text(l, width))
    print()
    print("hops (from outbox.enqueued: → relay.published confirmed → message.received):")
    for h in hop_list:
        print("  " + hop_text(h))
    print()
    print(f"total {total:g} ms from {chosen[0]['timestamp']} to {chosen[-1]['timestamp']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:
        sys.exit(0)
