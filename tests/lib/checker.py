#!/usr/bin/python3
"""The checker: after a load (a drill, an end-to-end test), reads the real system and says what
was lost, duplicated or stuck. Used by every drill (runbook/drills/) and by the e2e tests.

    from checker import Checker
    c = Checker()                      # the environment `./petstore env` prints
    c.begin()                          # snapshot before the load
    ... place orders ...
    ledger = c.verify(order_ids, bound_s=60, poison_ids=())
    ledger.ok, ledger.problems, ledger.figures; print(ledger.text())

    python3 tests/lib/checker.py begin -o FILE
    python3 tests/lib/checker.py verify --snapshot FILE [--orders FILE | --since-snapshot]
            [--bound S] [--poison ID,...] [--needs-operator ID,...] [--json]    (exit 0 PASS, 1 FAIL)

What it reads, and the decisions behind it:
- Every service database through its own role (*_DATABASE_URL: least privilege, and a service's
  role can read all of its own tables), the broker's management API for the queue list and the
  bindings, one AMQP connection (AMQP_URL) for exact queue depths (the management API's
  statistics lag by seconds), and the dead-letter tool (`dlq show QUEUE --json`, which takes
  and gives back every message in order) to read what a non-empty .dlq holds. No HTTP API: the
  databases behind them are what the APIs show, and reading them is set-based.
- begin() notes the time, every card's balance and the payment ledger's last id (one snapshot
  of the payment database), each outbox's last id and its unsent rows, the audit log's last id,
  and the dead letters already present (ids per .dlq). "The window" is everything after that.
  What was already wrong at begin() (a dead letter, a parked outbox row) is shown as a note, not
  counted against the load; a drill that wants a clean slate checks that notes are empty.
- verify() polls (every POLL_S, bounded by bound_s) until every order is settled (COMPLETED or
  CANCELLED in the saga and the same status, reason and version in the storefront; or
  NEEDS_OPERATOR for an order the caller expects there), no outbox has an unsent unparked row,
  and every message of the window has reached every work queue's consumer it was routed to. Each
  poll only asks about what is still missing, so waiting costs little. Then it checks everything
  once and writes the ledger; the bound is a deadline, not a sleep.
- Orders: the saga row (status, reason, version, pending compensations, attempts, timer
  deadline, parked timer) and the storefront row; what a stuck saga waits for follows from its
  status (saga/machine.h). NEEDS_OPERATOR is stuck unless listed in expect_needs_operator.
- Money: per card, balance now − balance at begin() = − charges + refunds of ledger rows written
  since begin() (read in one repeatable-read snapshot, so a payment committing meanwhile cannot
  tear the comparison). A card created after begin() has no known starting balance: its version
  must be 1 + its charge and refund rows (payment bumps the version with every balance change,
  services/payment/handlers.c), which a change behind the ledger's back also breaks. Per order:
  a COMPLETED order has exactly one charge of the saga's total and no refund; a CANCELLED one
  nets zero; none ever has two charges or refunds more than it was charged.
- Pets: a COMPLETED order's pets are sold with pets.order_id = it (one column: "to it alone");
  a CANCELLED order's pets are available, or belong to another order; no pet anywhere is
  reserved by an order whose saga has finished.
- Messages: every outbox row created in the window is routed with the broker's live bindings
  (topic patterns, exchange-to-exchange bindings) to the work queues; each work queue's consumer
  keeps what it handled (the inbox table of its database; audit's event_log, whose message_id is
  unique). A routed message absent from its consumer at the end is lost, unless it is in a
  .dlq (then it is a dead letter, counted and judged there). Duplicates: a consumer's memory is
  keyed by message id, so the same message cannot be recorded twice; what can happen is the same
  event published twice under two ids: two ids for one (type, key, version) of a versioned event
  (saga.order_status_changed by order, inventory.pet_status_changed and pet_listed by pet), in
  the outboxes or the audit log. Unexpected: an audit row of the window whose message id no
  outbox holds, except the ids the caller injected (poison_ids, injected_ids). Commands are not
  audited: they are checked through the consumers' inboxes (and their effects, above).
- Outbox rows are deleted RELAY_RETENTION_S (default 3600 s) after they were sent: a window
  longer than that cannot be checked for lost messages; the figures say how old the window is.
- Dead letters: every queue ending .dlq; any message there that was not there at begin() and
  whose id is not in poison_ids is a problem, named with its queue, type, failure and error.
"""
import argparse
import collections
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import psycopg2  # noqa: E402
    import psycopg2.extras  # noqa: E402
except ImportError:  # another python3 first on the PATH: the system's has psycopg2 and pika
    if __name__ == "__main__" and sys.executable != "/usr/bin/python3":
        os.execv("/usr/bin/python3", ["/usr/bin/python3", *sys.argv])
    raise

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

import amqp  # noqa: E402
from petstore_env import need  # noqa: E402

POLL_S = 0.2
# What a server being restarted looks like from here: the wait asks again until its deadline.
UNREACHABLE = (psycopg2.OperationalError, psycopg2.InterfaceError, OSError,
               pika.exceptions.AMQPError)
TERMINAL = ("COMPLETED", "CANCELLED")
SERVICES = ("storefront", "inventory", "payment", "saga", "audit")
OUTBOX_DBS = ("storefront", "inventory", "payment", "saga")
# Each work queue's consumer: its database and where it remembers what it handled (the inbox
# consumer name; None for audit, whose event_log is its memory).
CONSUMERS = {"inventory.commands": ("inventory", "inventory"),
             "payment.commands": ("payment", "payment"),
             "saga.events": ("saga", "order-saga"),
             "storefront.events": ("storefront", "storefront"),
             "audit.events": ("audit", None)}
# Versioned events: (type, payload field naming the thing) -> one message per version.
VERSIONED = {"saga.order_status_changed.v1": "order_id",
             "inventory.pet_status_changed.v1": "pet_id",
             "inventory.pet_listed.v1": "pet_id"}
# What a saga in each status waits for (saga/machine.h).
WAITS_FOR = {"PENDING": "its first step (order.placed being applied)",
             "RESERVING": "inventory.reserved or inventory.reservation_rejected",
             "PAYING": "payment.charged or payment.declined",
             "CONFIRMING": "inventory.sale_confirmed",
             "COMPENSATING": "the compensations' acknowledgements",
             "NEEDS_OPERATOR": "an operator (compensation or confirmation kept failing)"}
PENDING_BITS = ((1, "inventory.released"), (2, "payment.refunded or payment.voided"),
                (4, "inventory.sale_confirmed"))


def _ids(orders):
    out = []
    for o in orders:
        out.append(str(o["id"] if isinstance(o, dict) else o))
    return list(dict.fromkeys(out))


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _topic_match(pattern, key):
    """AMQP topic matching: '*' one word, '#' zero or more."""
    p, k = pattern.split("."), key.split(".")

    def m(i, j):
        if i == len(p):
            return j == len(k)
        if p[i] == "#":
            return any(m(i + 1, jj) for jj in range(j, len(k) + 1))
        return j < len(k) and (p[i] == "*" or p[i] == k[j]) and m(i + 1, j + 1)
    return m(0, 0)


class Ledger:
    """The checker's verdict: figures, problems, notes, and the text an operator reads."""

    def __init__(self, figures, problems, notes):
        self.figures = figures
        self.problems = problems
        self.notes = notes

    @property
    def ok(self):
        return not self.problems

    def as_dict(self):
        return {"ok": self.ok, "figures": self.figures, "problems": self.problems,
                "notes": self.notes}

    def text(self):
        f = collections.defaultdict(int, self.figures)
        cancelled = ", ".join(f"{k[len('cancelled_'):].lower()} {v}" for k, v in sorted(f.items())
                              if k.startswith("cancelled_")) or "-"
        rows = [
            ("orders", f"{f['orders']}: completed {f['completed']}, cancelled {f['cancelled']} "
                       f"({cancelled}), needs operator {f['needs_operator']}, stuck {f['stuck']}"),
            ("money", f"charges {f['charges']} ({f['charged_cents']} cents), refunds "
                      f"{f['refunds']} ({f['refunded_cents']} cents), voids {f['voids']}, "
                      f"declines {f['declines']}; cards checked {f['cards_checked']}"),
            ("pets", f"sold {f['pets_sold']}, released {f['pets_released']}"),
            ("outboxes", f"published {f['published']} in the window, unsent {f['unsent']}, "
                         f"parked {f['parked']}"),
            ("messages", f"events {f['events']}: delivered to audit {f['audited']}; "
                         f"commands {f['commands']}: handled {f['commands_handled']}; "
                         f"deliveries {f['deliveries']} of {f['routed']}"),
            ("anomalies", f"lost {f['lost']}, undelivered {f['undelivered']}, duplicated {f['duplicated']}, unexpected "
                          f"{f['unexpected']}"),
            ("dead letters", f"{f['dead_letters']} new ({f['dead_letters_expected']} expected "
                             f"poison), {f['dead_letters_before']} already there"),
            ("time", f"window {f['window_s']:.1f} s, waited {f['wait_s']:.2f} s, checked in "
                     f"{f['check_s']:.2f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        out = [f"{k.ljust(width)}  {v}" for k, v in rows]
        for n in self.notes:
            out.append(f"note: {n}")
        for p in self.problems:
            out.append(f"PROBLEM: {p}")
        out.append("PASS" if self.ok else f"FAIL ({len(self.problems)} problems)")
        return "\n".join(out)


class Checker:
    def __init__(self, env=None):
        self.env = env if env is not None else os.environ
        self.snapshot = None
        self._conns = {}

    # -- plumbing ---------------------------------------------------------------------------

    def _need(self, name):
        v = self.env.get(name)
        if not v:
            return need(name)
        return v

    def conn(self, service):
        c = self._conns.get(service)
        if c is None or c.closed:
            c = psycopg2.connect(self._need(f"{service.upper()}_DATABASE_URL"),
                                 connect_timeout=10)
            c.autocommit = True
            self._conns[service] = c
        return c

    def q(self, service, sql, *args):
        try:
            with self.conn(service).cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else []
        except psycopg2.OperationalError:
            self._conns.pop(service, None)  # reconnect on the next call (a restarted server)
            raise

    def close(self):
        for c in self._conns.values():
            try:
                c.close()
            except Exception:
                pass
        self._conns = {}

    def _payment_snapshot(self, sql_pairs):
        """Runs [(name, sql, args)] in one repeatable-read snapshot of the payment database."""
        c = psycopg2.connect(self._need("PAYMENT_DATABASE_URL"), connect_timeout=10)
        try:
            c.set_session(isolation_level="REPEATABLE READ", readonly=True)
            out = {}
            with c.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                for name, sql, args in sql_pairs:
                    cur.execute(sql, args)
                    out[name] = cur.fetchall()
            c.rollback()
            return out
        finally:
            c.close()

    def dlq_queues(self):
        return sorted(q["name"] for q in amqp.mgmt("queues/petstore?columns=name")
                      if q["name"].endswith(".dlq"))

    def _depths(self, queues, consumers=False):
        """Exact ready counts (a passive declare), by queue; with consumers, (ready, consumers)."""
        out = {}
        if not queues:
            return out
        conn = pika.BlockingConnection(pika.URLParameters(self._need("AMQP_URL")))
        try:
            ch = conn.channel()
            for q in queues:
                m = ch.queue_declare(q, passive=True).method
                out[q] = (m.message_count, m.consumer_count) if consumers else m.message_count
        finally:
            conn.close()
        return out

    def _unacked(self, queue):
        try:
            info = amqp.mgmt("queues/petstore/" + urllib.parse.quote(queue, safe=""))
            return info.get("messages_unacknowledged", 0) or 0
        except Exception:
            return 0

    def dead_letters(self, only_nonempty=False):
        """{queue: [{id, type, class, code, error, handler}]} of every .dlq (empty ones too)."""
        queues = self.dlq_queues()
        depths = self._depths(queues)
        out = {} if only_nonempty else {q: [] for q in queues}
        for q in queues:
            if depths[q]:
                out[q] = self._read_dlq(q, depths[q])
        return out

    def _read_dlq(self, queue, depth):
        tool = shutil.which("dlq", path=os.path.join(self._need("PETSTORE_BUILD_DIR"), "bin")
                            + os.pathsep + self.env.get("PATH", ""))
        if tool:
            r = subprocess.run([tool, "show", queue, "--limit", str(depth + 1000), "--json"],
                               capture_output=True, text=True, timeout=60, env=dict(self.env))
            if r.returncode == 0:
                return [{k: m.get(k) for k in ("id", "type", "class", "code", "error",
                                                 "handler")} for m in json.loads(r.stdout)]
        # The tool is not built here: the management API's get, which gives every message back.
        res = amqp_post(f"queues/petstore/{urllib.parse.quote(queue, safe='')}/get",
                        {"count": depth + 1000, "ackmode": "ack_requeue_true",
                         "encoding": "auto", "truncate": 2000})
        out = []
        for m in res:
            p = m.get("properties", {})
            h = p.get("headers", {}) or {}
            out.append({"id": p.get("message_id"), "type": p.get("type"),
                        "class": h.get("x-petstore-failure-class"),
                        "code": h.get("x-petstore-error-code"),
                        "error": h.get("x-petstore-error"),
                        "handler": h.get("x-petstore-handler")})
        return out

    def routes(self):
        """A function (exchange, routing key) -> set of work queues, from the live bindings."""
        bindings = amqp.mgmt("bindings/petstore")
        types = {e["name"]: e["type"] for e in amqp.mgmt("exchanges/petstore?columns=name,type")}

        cache = {}

        def cached(exchange, key):
            if (exchange, key) not in cache:
                cache[(exchange, key)] = frozenset(route(exchange, key))
            return cache[(exchange, key)]

        def route(exchange, key, seen=()):
            out = set()
            for b in bindings:
                if b["source"] != exchange or b["destination"] in seen:
                    continue
                t = types.get(exchange, "direct")
                if t == "fanout" or (t == "direct" and b["routing_key"] == key) or (
                        t == "topic" and _topic_match(b["routing_key"], key)):
                    if b["destination_type"] == "queue":
                        if b["destination"] in CONSUMERS:
                            out.add(b["destination"])
                    else:
                        out |= route(b["destination"], key, seen + (exchange,))
            return out
        return cached

    # -- begin ------------------------------------------------------------------------------

    def begin(self):
        """Notes where the system is before the load; returns the snapshot (JSON-able)."""
        pay = self._payment_snapshot([
            ("cards", "SELECT id::text, balance_cents, version FROM cards", ()),
            ("hwm", "SELECT coalesce(max(id), 0) AS id FROM ledger", ())])
        snap = {"at": _now().isoformat(), "monotonic": time.monotonic(),
                "cards": {r["id"]: [r["balance_cents"], r["version"]] for r in pay["cards"]},
                "ledger_hwm": pay["hwm"][0]["id"], "outbox_hwm": {}, "outbox_unsent": {}}
        for s in OUTBOX_DBS:
            r = self.q(s, "SELECT coalesce(max(id), 0) AS id, coalesce(array_agg(id) FILTER "
                          "(WHERE sent_at IS NULL), '{}') AS unsent FROM outbox")[0]
            snap["outbox_hwm"][s] = r["id"]
            snap["outbox_unsent"][s] = r["unsent"]
        snap["audit_hwm"] = self.q("audit", "SELECT coalesce(max(id), 0) AS id "
                                            "FROM event_log")[0]["id"]
        snap["dead_letters"] = {q: [m["id"] for m in ms] for q, ms in self.dead_letters().items()}
        self.snapshot = snap
        return snap

    # -- verify -----------------------------------------------------------------------------

    def verify(self, orders, bound_s=60, poison_ids=(), expect_needs_operator=(),
               injected_ids=(), snapshot=None):
        """Waits (at most bound_s) for the orders to settle and the messages to drain, then
        checks every invariant; returns a Ledger."""
        snap = snapshot or self.snapshot
        if snap is None:
            raise RuntimeError("verify() needs begin() (or a snapshot) first")
        started = time.monotonic()
        deadline = started + bound_s
        ids = _ids(orders)
        poison = {str(i) for i in poison_ids}
        known = poison | {str(i) for i in injected_ids}
        parked_ok = {str(i) for i in expect_needs_operator}
        problems, notes = [], []
        route = self.routes()

        # Wait: orders settled, outboxes drained, every routed message handled.
        unsettled = set(ids)
        next_dead_look = 0.0
        state = None  # what is still to be handled (see _pending_deliveries)
        unreachable = None
        while True:
            try:
                unsettled = self._unsettled(unsettled, parked_ok)
                unsent = self._unsent_unparked()
                state = self._pending_deliveries(snap, route, state)
                if state["pending"] and time.monotonic() >= next_dead_look:
                    # a dead-lettered message is never handled: stop waiting for it
                    next_dead_look = time.monotonic() + 1.0
                    for q, ms in self.dead_letters(only_nonempty=True).items():
                        for m in ms:
                            state["pending"].discard((q[:-len(".dlq")], m["id"]))
                unreachable = None
                if not unsettled and not unsent and not state["pending"]:
                    break
            except UNREACHABLE as e:  # a server restarting: ask again until the deadline
                unreachable = e
                self.close()
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        waited = time.monotonic() - started

        t0 = time.monotonic()
        figures = {"orders": len(ids)}
        try:
            sagas = self._check_orders(ids, parked_ok, figures, problems)
            self._check_money(snap, ids, sagas, figures, problems)
            self._check_pets(ids, sagas, figures, problems)
            self._check_outboxes(snap, figures, problems, notes)
            dead = self._check_dead_letters(snap, poison, figures, problems, notes)
            self._check_messages(snap, route, dead, known, figures, problems,
                                 (state or {}).get("handled", set()))
        except UNREACHABLE as e:
            problems.append(f"could not read the system to check it: {e!r} (while waiting: "
                            f"{unreachable!r})")
        figures["window_s"] = (_now() - datetime.datetime.fromisoformat(snap["at"])).total_seconds()
        figures["wait_s"] = round(waited, 3)
        figures["check_s"] = round(time.monotonic() - t0, 3)
        self.close()
        return Ledger(figures, problems, notes)

    def verify_ok(self, orders, **kw):
        """verify() for a test: the ledger, or an AssertionError carrying its text."""
        ledger = self.verify(orders, **kw)
        assert ledger.ok, "the checker found problems:\n" + ledger.text()
        return ledger

    def _unsettled(self, ids, parked_ok):
        if not ids:
            return set()
        rows = self.q("saga", "SELECT order_id::text AS id, status, reason, version FROM sagas "
                              "WHERE order_id = ANY(%s::uuid[])", list(ids))
        done = {r["id"]: r for r in rows if r["status"] in TERMINAL
                or (r["status"] == "NEEDS_OPERATOR" and r["id"] in parked_ok)}
        if done:
            front = self.q("storefront", "SELECT id::text AS id, status, reason, version "
                                         "FROM orders WHERE id = ANY(%s::uuid[])", list(done))
            agree = {r["id"] for r in front
                     if (r["status"], r["reason"], r["version"]) ==
                     (done[r["id"]]["status"], done[r["id"]]["reason"], done[r["id"]]["version"])}
        else:
            agree = set()
        return set(ids) - agree

    def _unsent_unparked(self):
        return sum(self.q(s, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL "
                             "AND parked_at IS NULL")[0]["n"] for s in OUTBOX_DBS)

    def _window_rows(self, snap, unsent_too=False):
        """Outbox rows of the window, every database: [{db, message_id, exchange, routing_key,
        type, correlation_id, sent, body}]."""
        out = []
        for s in OUTBOX_DBS:
            for r in self.q(s, "SELECT message_id::text, exchange, routing_key, type, "
                               "correlation_id, sent_at IS NOT NULL AS sent, "
                               "parked_at IS NOT NULL AS parked, body, id FROM outbox "
                               "WHERE id > %s", snap["outbox_hwm"][s]):
                r["db"] = s
                out.append(r)
        return out

    def _handled(self, queue, message_ids):
        """Which of message_ids queue's consumer has recorded."""
        if not message_ids:
            return set()
        service, consumer = CONSUMERS[queue]
        if consumer is None:
            rows = self.q(service, "SELECT message_id::text AS m FROM event_log "
                                   "WHERE message_id = ANY(%s::uuid[])", list(message_ids))
        else:
            rows = self.q(service, "SELECT message_id::text AS m FROM inbox WHERE consumer = %s "
                                   "AND message_id = ANY(%s::uuid[])", consumer, list(message_ids))
        return {r["m"] for r in rows}

    def _pending_deliveries(self, snap, route, state):
        """state: {"frontier": {db: id}, "pending": {(queue, message id)}}, None at first.
        Each poll reads only outbox rows above each database's frontier (every row at or below
        it was sent and routed already) and asks the consumers only about what is pending."""
        if state is None:
            state = {"frontier": dict(snap["outbox_hwm"]), "pending": set(), "handled": set()}
        for s in OUTBOX_DBS:
            rows = self.q(s, "SELECT id, message_id::text, exchange, routing_key, "
                             "sent_at IS NOT NULL AS sent FROM outbox WHERE id > %s ORDER BY id",
                          state["frontier"][s])
            frontier = state["frontier"][s]
            for r in rows:
                if not r["sent"]:
                    break
                for q in route(r["exchange"], r["routing_key"]):
                    state["pending"].add((q, r["message_id"]))
                frontier = r["id"]
            state["frontier"][s] = frontier
        by_queue = {}
        for q, m in state["pending"]:
            by_queue.setdefault(q, set()).add(m)
        for q, ms in by_queue.items():
            for m in self._handled(q, ms):
                state["pending"].discard((q, m))
                state["handled"].add((q, m))
        return state

    # -- the checks -------------------------------------------------------------------------

    def _check_orders(self, ids, parked_ok, figures, problems):
        sagas = {r["id"]: r for r in self.q(
            "saga", "SELECT s.order_id::text AS id, s.status, s.reason, s.version, s.pending, "
                    "s.attempts, s.total_cents, s.pet_ids::text[] AS pet_ids, s.updated_at, "
                    "t.deadline, t.failures, t.last_error, t.parked_at, now() AS db_now, "
                    "(SELECT event || ' at ' || to_char(st.at, 'HH24:MI:SS.MS') FROM saga_steps st "
                    " WHERE st.order_id = s.order_id ORDER BY st.version DESC LIMIT 1) AS last_step "
                    "FROM sagas s LEFT JOIN saga_timers t ON t.order_id = s.order_id "
                    "WHERE s.order_id = ANY(%s::uuid[])", ids)}
        front = {r["id"]: r for r in self.q(
            "storefront", "SELECT id::text AS id, status, reason, version FROM orders "
                          "WHERE id = ANY(%s::uuid[])", ids)}
        early = {r["id"] for r in self.q(
            "saga", "SELECT order_id::text AS id FROM saga_early_cancels "
                    "WHERE order_id = ANY(%s::uuid[])", ids)}
        for k in ("completed", "cancelled", "needs_operator", "stuck", "disagreeing"):
            figures[k] = 0
        for oid in ids:
            s, f = sagas.get(oid), front.get(oid)
            if s is None:
                figures["stuck"] += 1
                where = (f"the storefront shows it {f['status']} v{f['version']}" if f
                         else "the storefront does not know it either")
                more = "; a cancellation waits for it" if oid in early else ""
                problems.append(f"order {oid} stuck: the saga never started (waits for "
                                f"order.placed); {where}{more}")
                continue
            st = s["status"]
            if st == "COMPLETED":
                figures["completed"] += 1
            elif st == "CANCELLED":
                figures["cancelled"] += 1
                key = f"cancelled_{s['reason'] or 'NONE'}"
                figures[key] = figures.get(key, 0) + 1
            elif st == "NEEDS_OPERATOR":
                figures["needs_operator"] += 1
            if st not in TERMINAL and not (st == "NEEDS_OPERATOR" and oid in parked_ok):
                figures["stuck"] += 1
                problems.append(f"order {oid} stuck in {st}: {self._saga_state(s)}; storefront "
                                + (f"shows {f['status']} v{f['version']}" if f else "has no row"))
                continue
            if f is None or (f["status"], f["reason"], f["version"]) != (
                    st, s["reason"], s["version"]):
                figures["disagreeing"] += 1
                shown = f"{f['status']}/{f['reason']} v{f['version']}" if f else "no row"
                problems.append(f"order {oid}: the storefront shows {shown}, the saga "
                                f"{st}/{s['reason']} v{s['version']}")
        return sagas

    @staticmethod
    def _saga_state(s):
        parts = [f"saga v{s['version']}", f"attempts {s['attempts']}"]
        if s["reason"]:
            parts.append(f"reason {s['reason']}")
        if s["deadline"] is not None:
            left = (s["deadline"] - s["db_now"]).total_seconds()
            parts.append(f"timer {s['deadline'].strftime('%H:%M:%S.%f')[:-3]} "
                         f"({'in %.1f s' % left if left >= 0 else '%.1f s overdue' % -left})")
            if s["parked_at"] is not None:
                parts.append(f"timer PARKED since {s['parked_at'].strftime('%H:%M:%S')} after "
                             f"{s['failures']} failures: {s['last_error']}")
            elif s["failures"]:
                parts.append(f"timer failed {s['failures']}x: {s['last_error']}")
        else:
            parts.append("no timer")
        if s["last_step"]:
            parts.append(f"last step {s['last_step']}")
        waits = WAITS_FOR.get(s["status"], "?")
        if s["status"] in ("COMPENSATING", "NEEDS_OPERATOR") and s["pending"]:
            waits = " and ".join(n for bit, n in PENDING_BITS if s["pending"] & bit)
        parts.append(f"waits for {waits}")
        return ", ".join(parts)

    def _check_money(self, snap, ids, sagas, figures, problems):
        pay = self._payment_snapshot([
            ("cards", "SELECT id::text, balance_cents, version, last4 FROM cards", ()),
            ("moves", "SELECT card_id::text AS card, sum(amount_cents) FILTER (WHERE kind = "
                      "'charge') AS charged, sum(amount_cents) FILTER (WHERE kind = 'refund') AS "
                      "refunded FROM ledger WHERE id > %s AND card_id IS NOT NULL GROUP BY 1",
             (snap["ledger_hwm"],)),
            ("counts", "SELECT card_id::text AS card, count(*) AS n FROM ledger WHERE kind IN "
                       "('charge', 'refund') AND card_id IS NOT NULL GROUP BY 1", ()),
            ("orders", "SELECT order_id::text AS id, kind, amount_cents, id AS row FROM ledger "
                       "WHERE order_id = ANY(%s::uuid[]) ORDER BY id", (ids,))])
        moves = {r["card"]: (r["charged"] or 0, r["refunded"] or 0) for r in pay["moves"]}
        counts = {r["card"]: r["n"] for r in pay["counts"]}
        checked = 0
        for c in pay["cards"]:
            charged, refunded = moves.get(c["id"], (0, 0))
            before = snap["cards"].get(c["id"])
            checked += 1
            if before is not None:
                change = c["balance_cents"] - before[0]
                if change != refunded - charged:
                    problems.append(
                        f"card {c['id']} (…{c['last4']}): balance changed by {change} cents "
                        f"since begin, but its ledger says -{charged} charged +{refunded} "
                        f"refunded = {refunded - charged}")
            elif c["version"] != 1 + counts.get(c["id"], 0):
                problems.append(
                    f"card {c['id']} (…{c['last4']}, created in the window): version "
                    f"{c['version']} but {counts.get(c['id'], 0)} charge/refund rows: its balance "
                    f"changed {c['version'] - 1 - counts.get(c['id'], 0):+d} times without one")
        figures["cards_checked"] = checked
        per = {}
        for r in pay["orders"]:
            per.setdefault(r["id"], []).append(r)
        for k in ("charges", "refunds", "voids", "declines", "charged_cents", "refunded_cents"):
            figures[k] = 0
        for oid in ids:
            rows = per.get(oid, [])
            charges = [r["amount_cents"] for r in rows if r["kind"] == "charge"]
            refunds = [r["amount_cents"] for r in rows if r["kind"] == "refund"]
            figures["charges"] += len(charges)
            figures["refunds"] += len(refunds)
            figures["voids"] += sum(1 for r in rows if r["kind"] == "void")
            figures["declines"] += sum(1 for r in rows if r["kind"] == "decline")
            figures["charged_cents"] += sum(charges)
            figures["refunded_cents"] += sum(refunds)
            s = sagas.get(oid)
            net = sum(charges) - sum(refunds)
            ledger = ", ".join(f"{r['kind']} {r['amount_cents']}" for r in rows) or "nothing"
            if len(charges) > 1:
                problems.append(f"order {oid}: charged {len(charges)} times ({ledger})")
            if net < 0 or (s is not None and net > s["total_cents"]):
                problems.append(f"order {oid}: net charge {net} cents outside 0..total "
                                f"({ledger})")
            if s is None:
                continue
            if s["status"] == "COMPLETED" and (charges != [s["total_cents"]] or refunds):
                problems.append(f"order {oid} COMPLETED for {s['total_cents']} cents but its "
                                f"ledger holds {ledger}")
            elif s["status"] == "CANCELLED" and net != 0:
                problems.append(f"order {oid} CANCELLED ({s['reason']}) but the customer pays "
                                f"{net} cents ({ledger})")

    def _check_pets(self, ids, sagas, figures, problems):
        pet_ids = sorted({p for s in sagas.values() for p in s["pet_ids"]})
        pets = {r["id"]: r for r in self.q(
            "inventory", "SELECT id::text AS id, status, order_id::text AS order_id FROM pets "
                         "WHERE id = ANY(%s::uuid[])", pet_ids)}
        figures["pets_sold"] = figures["pets_released"] = 0
        for oid in ids:
            s = sagas.get(oid)
            if s is None or s["status"] not in TERMINAL:
                continue
            for p in s["pet_ids"]:
                pet = pets.get(p)
                if pet is None:
                    problems.append(f"order {oid} ({s['status']}): pet {p} unknown to inventory")
                    continue
                if s["status"] == "COMPLETED":
                    if pet["status"] != "sold" or pet["order_id"] != oid:
                        problems.append(f"order {oid} COMPLETED but its pet {p} is "
                                        f"{pet['status']} for order {pet['order_id']}")
                    else:
                        figures["pets_sold"] += 1
                elif pet["order_id"] == oid:
                    problems.append(f"order {oid} CANCELLED ({s['reason']}) but its pet {p} is "
                                    f"still {pet['status']} for it")
                else:
                    figures["pets_released"] += 1
        # No pet anywhere reserved by a finished order.
        held = self.q("inventory", "SELECT id::text AS id, order_id::text AS order_id FROM pets "
                                   "WHERE status = 'reserved'")
        if held:
            owners = {r["id"]: r["status"] for r in self.q(
                "saga", "SELECT order_id::text AS id, status FROM sagas "
                        "WHERE order_id = ANY(%s::uuid[])", sorted({h["order_id"] for h in held}))}
            for h in held:
                st = owners.get(h["order_id"])
                if st in TERMINAL:
                    problems.append(f"pet {h['id']} still reserved by order {h['order_id']}, "
                                    f"which is {st}")

    def _check_outboxes(self, snap, figures, problems, notes):
        figures["unsent"] = figures["parked"] = figures["published"] = 0
        for s in OUTBOX_DBS:
            r = self.q(s, "SELECT count(*) FILTER (WHERE id > %s AND sent_at IS NOT NULL) AS pub, "
                          "count(*) FILTER (WHERE sent_at IS NULL AND parked_at IS NULL) AS unsent,"
                          " count(*) FILTER (WHERE parked_at IS NOT NULL AND sent_at IS NULL) "
                          "AS parked, min(created_at) FILTER (WHERE sent_at IS NULL) AS oldest, "
                          "array_agg(id) FILTER (WHERE parked_at IS NOT NULL AND sent_at IS NULL"
                          " AND id <= %s) AS old_parked FROM outbox",
                       snap["outbox_hwm"][s], snap["outbox_hwm"][s])[0]
            figures["published"] += r["pub"]
            figures["unsent"] += r["unsent"]
            figures["parked"] += r["parked"]
            old_parked = len(r["old_parked"] or [])
            if r["unsent"]:
                problems.append(f"outbox of {s}: {r['unsent']} rows not published yet (oldest "
                                f"from {r['oldest']})")
            if r["parked"] - old_parked:
                parked = self.q(s, "SELECT id, message_id::text AS m, type, attempts, last_error "
                                   "FROM outbox WHERE parked_at IS NOT NULL AND sent_at IS NULL "
                                   "AND id > %s ORDER BY id LIMIT 20", snap["outbox_hwm"][s])
                for p in parked:
                    problems.append(f"outbox of {s}: message {p['m']} ({p['type']}) parked after "
                                    f"{p['attempts']} attempts: {p['last_error']}")
            if old_parked:
                notes.append(f"outbox of {s}: {old_parked} rows parked before begin")

    def _check_dead_letters(self, snap, poison, figures, problems, notes):
        dead = self.dead_letters()
        before = {(q, m) for q, ms in snap["dead_letters"].items() for m in ms}
        figures["dead_letters"] = figures["dead_letters_expected"] = 0
        figures["dead_letters_before"] = 0
        for q, ms in sorted(dead.items()):
            for m in ms:
                if (q, m["id"]) in before:
                    figures["dead_letters_before"] += 1
                    continue
                figures["dead_letters"] += 1
                if m["id"] in poison:
                    figures["dead_letters_expected"] += 1
                    continue
                problems.append(f"dead letter {m['id']} in {q}: {m['type']}, {m['class']} "
                                f"{m['code']} by {m['handler']}: {m['error']}")
        if figures["dead_letters_before"]:
            notes.append(f"{figures['dead_letters_before']} dead letters were already there at "
                         f"begin")
        return {(q[:-len(".dlq")], m["id"]) for q, ms in dead.items() for m in ms}

    def _check_messages(self, snap, route, dead, known, figures, problems, seen_handled):
        rows = self._window_rows(snap)
        by_queue = {}
        for r in rows:
            r["queues"] = route(r["exchange"], r["routing_key"]) if r["sent"] else set()
            for q in r["queues"]:
                by_queue.setdefault(q, set()).add(r["message_id"])
        # What the wait saw handled stays handled (inboxes and the audit log are only purged
        # after days): ask only about the rest.
        handled = {q: {m for m in ms if (q, m) in seen_handled} for q, ms in by_queue.items()}
        for q, ms in by_queue.items():
            handled[q] |= self._handled(q, ms - handled[q])
        figures.update(events=0, audited=0, commands=0, commands_handled=0, routed=0,
                       deliveries=0, lost=0, undelivered=0, duplicated=0, unexpected=0)
        missed = []
        for r in rows:
            if r["exchange"] == "petstore.events":
                figures["events"] += 1
            elif r["exchange"] == "petstore.commands":
                figures["commands"] += 1
            if not r["sent"]:
                continue
            if not r["queues"]:
                problems.append(f"message {r['message_id']} ({r['type']}, order "
                                f"{r['correlation_id']}) from {r['db']}'s outbox reaches no work "
                                f"queue ({r['exchange']} {r['routing_key']})")
            missing = []
            for q in sorted(r["queues"]):
                figures["routed"] += 1
                if r["message_id"] in handled[q]:
                    figures["deliveries"] += 1
                    if q == "audit.events":
                        figures["audited"] += 1
                    elif r["exchange"] == "petstore.commands":
                        figures["commands_handled"] += 1
                elif (q, r["message_id"]) not in dead:
                    missing.append(q)
            if missing:
                missed.append((r, missing))
        # A message not handled is lost only if its queue no longer holds it: one still waiting
        # in a queue (a consumer stopped or slow) is undelivered, said with the queue's state.
        queues = sorted({q for _r, ms in missed for q in ms})
        depth = self._depths(queues, consumers=True)
        held = {q: depth[q][0] + self._unacked(q) for q in queues}
        for r, missing in missed:
            waiting = [q for q in missing if held[q]]
            gone = [q for q in missing if not held[q]]
            what = f"message {r['message_id']} ({r['type']}, order {r['correlation_id']}) " \
                   f"published from {r['db']}'s outbox"
            if gone:
                figures["lost"] += 1
                problems.append(f"{what}, lost: never handled by {', '.join(gone)}")
            if waiting:
                figures["undelivered"] += 1
                problems.append(f"{what}, not handled yet by " + ", ".join(
                    f"{q} ({held[q]} messages there, {depth[q][1]} consumers)" for q in waiting))
        # Duplicated: two message ids for one version of a versioned event.
        audit = self.q("audit", "SELECT message_id::text AS m, type, correlation_id, payload "
                                "FROM event_log WHERE id > %s", snap["audit_hwm"])
        versions = {}
        for r in rows:
            if r["type"] in VERSIONED:
                try:
                    body = json.loads(r["body"])
                except ValueError:
                    continue
                k = (r["type"], body.get(VERSIONED[r["type"]]), body.get("version"))
                versions.setdefault(k, set()).add(r["message_id"])
        for r in audit:
            if r["type"] in VERSIONED and isinstance(r["payload"], dict):
                k = (r["type"], r["payload"].get(VERSIONED[r["type"]]), r["payload"].get("version"))
                versions.setdefault(k, set()).add(r["m"])
        for (type_, key, version), ms in sorted(versions.items(), key=str):
            if len(ms) > 1:
                figures["duplicated"] += len(ms) - 1
                problems.append(f"duplicated: {type_} of {key} version {version} published as "
                                f"{len(ms)} messages ({', '.join(sorted(ms))})")
        # Unexpected: audit rows of the window that no outbox produced.
        window_ids = {r["message_id"] for r in rows}
        candidates = [r["m"] for r in audit if r["m"] not in known and r["m"] not in window_ids]
        produced = set()
        if candidates:
            for s in OUTBOX_DBS:
                produced |= {x["m"] for x in self.q(
                    s, "SELECT message_id::text AS m FROM outbox "
                       "WHERE message_id = ANY(%s::uuid[])", candidates)}
        for r in audit:
            if r["m"] in known or r["m"] in produced or r["m"] in window_ids:
                continue
            figures["unexpected"] += 1
            problems.append(f"unexpected: audit recorded {r['m']} ({r['type']}, order "
                            f"{r['correlation_id']}) that no outbox produced")


def amqp_post(path, body):
    """POST on the management API; parsed JSON."""
    import base64
    import urllib.request
    url = need("RABBITMQ_MGMT_URL") + "/api/" + path
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    token = base64.b64encode(
        f"{need('RABBITMQ_MGMT_USER')}:{need('RABBITMQ_MGMT_PASSWORD')}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


# -- command line ---------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(prog="checker", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("begin", help="snapshot the system before a load")
    b.add_argument("-o", "--output", required=True, help="the snapshot's JSON file")
    v = sub.add_parser("verify", help="wait for the orders to settle, check, print the ledger")
    v.add_argument("--snapshot", required=True)
    src = v.add_mutually_exclusive_group(required=True)
    src.add_argument("--orders", help="a file of order ids: one a line, or a JSON list of ids "
                                      "or of objects with an id")
    src.add_argument("--since-snapshot", action="store_true",
                     help="every order the storefront accepted since the snapshot")
    v.add_argument("--bound", type=float, default=60.0, help="seconds to wait (default 60)")
    v.add_argument("--poison", default="", help="ids of injected poison messages, comma-separated")
    v.add_argument("--needs-operator", default="",
                   help="ids of orders expected in NEEDS_OPERATOR, comma-separated")
    v.add_argument("--json", action="store_true", help="the ledger as JSON")
    a = ap.parse_args(argv)
    c = Checker()
    if a.cmd == "begin":
        snap = c.begin()
        with open(a.output, "w") as f:
            json.dump(snap, f)
        c.close()
        print(f"snapshot at {snap['at']} written to {a.output}")
        return 0
    with open(a.snapshot) as f:
        snap = json.load(f)
    if a.since_snapshot:
        orders = [r["id"] for r in c.q("storefront", "SELECT id::text AS id FROM orders WHERE "
                                                     "created_at >= %s::timestamptz", snap["at"])]
    else:
        with open(a.orders) as f:
            text = f.read()
        try:
            orders = json.loads(text)
        except ValueError:
            orders = [line.strip() for line in text.splitlines() if line.strip()]
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    ledger = c.verify(orders, bound_s=a.bound, poison_ids=split(a.poison),
                      expect_needs_operator=split(a.needs_operator), snapshot=snap)
    print(json.dumps(ledger.as_dict(), indent=2, default=str) if a.json else ledger.text())
    return 0 if ledger.ok else 1


if __name__ == "__main__":
    sys.exit(main())
