"""One row cannot wedge a relay or reorder an order (issue 13, points 1, 3, 4 and the confirm
outcomes of 11), against the real broker and a scratch service database with a relay of our
own: every message carries the relay's broker login as user_id; a row whose publish makes the
broker close the channel is isolated, retried with backoff and parked while every other row is
published exactly once; a later row of an order waits behind an earlier one in backoff; nacked,
returned, unencodable and confirmed rows of one batch each end in their own state."""
import collections
import json
import urllib.parse
import uuid

import psycopg2

import db
from httpc import get
from petstore_env import need
from test_relay import Relay, insert, scratch, sent  # noqa: F401 (scratch is a fixture)
from wait import wait_until


def metric(relay, name):
    """The value of an unlabelled sample of the relay's /metrics, or None."""
    for line in get(f"http://127.0.0.1:{relay.port}/metrics", timeout=5).raw.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


def row(conn, message_id, columns="attempts, last_error, sent_at, parked_at"):
    return db.rows(conn, f"SELECT {columns} FROM outbox WHERE message_id = %s", message_id)[0]


def deliveries(cap, seconds=0.0):
    """How many times each message id reached the capture queue so far."""
    return collections.Counter(p.message_id for _m, p, _b in cap.settle(seconds))


def test_every_message_carries_the_relays_broker_login_as_user_id(scratch):
    conn, cap = scratch["conn"], scratch["capture"]
    login = urllib.parse.unquote(urllib.parse.urlparse(need("AMQP_URL")).username)
    relay = Relay(scratch["url"]).ready()
    try:
        mid = insert(conn, scratch["exchange"])
        (_m, props, _b), = cap.wait_for(lambda m, p, b: p.message_id == mid, what="the row")
        assert props.user_id == login, "the broker proves the sender only if user_id is set"
    finally:
        relay.stop()


def test_a_row_for_a_missing_exchange_is_parked_and_every_other_row_is_published_once(scratch):
    conn, cap = scratch["conn"], scratch["capture"]
    missing = scratch["exchange"] + ".missing"
    writer = psycopg2.connect(scratch["url"])
    # One transaction, so one batch: good rows, the bad one, good rows.
    before = [insert(writer, scratch["exchange"], correlation=str(uuid.uuid4())) for _ in range(5)]
    bad = insert(writer, missing, correlation=str(uuid.uuid4()), type_="test.bad.v1")
    after = [insert(writer, scratch["exchange"], correlation=str(uuid.uuid4())) for _ in range(5)]
    writer.commit()
    relay = Relay(scratch["url"], RELAY_MAX_ATTEMPTS=3).ready()
    try:
        cap.wait_for(lambda m, p, b: p.message_id in after, count=len(after),
                     what="the rows behind the bad one")
        later = [insert(conn, scratch["exchange"]) for _ in range(5)]
        cap.wait_for(lambda m, p, b: p.message_id in later, count=len(later),
                     what="rows written after the bad one")
        first = wait_until(lambda: (r := row(conn, bad))["attempts"] >= 1 and r,
                           what="the failed attempt recorded")
        assert first["sent_at"] is None
        assert "NOT_FOUND" in first["last_error"] and missing in first["last_error"]
        parked = wait_until(lambda: (r := row(conn, bad))["parked_at"] is not None and r,
                            timeout=30, what="the bad row parked")
        assert parked["attempts"] == 3
        wait_until(lambda: metric(relay, "petstore_outbox_parked") == 1, timeout=15,
                   what="the parked gauge")
        good = before + after + later
        wait_until(lambda: all(sent(conn, m) for m in good), what="every good row marked sent")
        counts = deliveries(cap, 1.0)
        assert all(counts[m] == 1 for m in after + later), counts
        # Rows ahead of the bad one in the failed pipelined batch: a confirm the channel's close
        # overtook makes one repeat possible (at least once), never one per retry.
        assert all(1 <= counts[m] <= 2 for m in before), counts
        log = open(relay.log.name).read()
        parked_lines = [json.loads(line) for line in log.splitlines()
                        if '"relay.parked"' in line]
        assert [p["message_id"] for p in parked_lines] == [bad]
        assert parked_lines[0]["type"] == "test.bad.v1" and parked_lines[0]["level"] == "error"
    finally:
        relay.stop()
        writer.close()
    # A parked row is never claimed again: a new relay publishes nothing of it.
    relay = Relay(scratch["url"], RELAY_MAX_ATTEMPTS=3).ready()
    try:
        marker = insert(conn, scratch["exchange"])
        cap.wait_for(lambda m, p, b: p.message_id == marker, what="a marker row")
        assert row(conn, bad)["attempts"] == 3
    finally:
        relay.stop()


def test_a_later_row_of_an_order_waits_behind_an_earlier_row_in_backoff(scratch):
    conn, cap, broker = scratch["conn"], scratch["capture"], scratch["broker"]
    nowhere = scratch["exchange"] + ".nowhere"
    broker.ch.exchange_declare(nowhere, "direct", auto_delete=True)
    order = str(uuid.uuid4())
    relay = Relay(scratch["url"]).ready()
    try:
        first = insert(conn, nowhere, "k", order)
        cols = "attempts, sent_at"
        wait_until(lambda: row(conn, first, cols)["attempts"] >= 1, what="the first row in backoff")
        second = insert(conn, scratch["exchange"], "k", order)
        other = insert(conn, scratch["exchange"], "k", str(uuid.uuid4()))
        cap.wait_for(lambda m, p, b: p.message_id == other, what="another order's row")
        assert second not in deliveries(cap, 0.5), "the later row overtook the earlier one"
        assert not sent(conn, second)
        # The earlier row becomes routable: it goes first, then the later one.
        q = broker.ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        broker.ch.queue_bind(q, nowhere, routing_key="k")
        cap.wait_for(lambda m, p, b: p.message_id == second, timeout=20, what="the later row")
        a, b = row(conn, first, cols), row(conn, second, cols)
        assert a["sent_at"] is not None and b["sent_at"] is not None
        assert a["sent_at"] <= b["sent_at"]
    finally:
        relay.stop()


def test_returned_nacked_unencodable_and_confirmed_rows_of_one_batch_each_end_right(scratch):
    conn, cap, broker = scratch["conn"], scratch["capture"], scratch["broker"]
    mixed = scratch["exchange"] + ".mixed"
    broker.ch.exchange_declare(mixed, "direct", auto_delete=True)
    full = broker.ch.queue_declare("", exclusive=True, auto_delete=True, arguments={
        "x-max-length": 0, "x-overflow": "reject-publish"}).method.queue
    broker.ch.queue_bind(full, mixed, routing_key="full")
    broker.ch.queue_bind(cap.queue, mixed, routing_key="ok")
    writer = psycopg2.connect(scratch["url"])
    ok1 = insert(writer, mixed, "ok")
    returned = insert(writer, mixed, "none")
    nacked = insert(writer, mixed, "full")
    unencodable = insert(writer, mixed, "ok", headers={"nested": {"a": 1}})
    ok2 = insert(writer, mixed, "ok")
    writer.commit()
    writer.close()
    relay = Relay(scratch["url"], RELAY_MAX_ATTEMPTS=2).ready()
    try:
        cap.wait_for(lambda m, p, b: p.message_id in (ok1, ok2), count=2, what="the good rows")
        wait_until(lambda: sent(conn, ok1) and sent(conn, ok2), what="good rows marked sent")
        r = wait_until(lambda: (x := row(conn, returned))["attempts"] >= 1 and x,
                       what="the returned row failed")
        assert r["sent_at"] is None and "unroutable" in r["last_error"]
        n = wait_until(lambda: (x := row(conn, nacked))["attempts"] >= 1 and x,
                       what="the nacked row failed")
        assert n["sent_at"] is None and n["parked_at"] is None and "nacked" in n["last_error"]
        u = wait_until(lambda: (x := row(conn, unencodable))["parked_at"] is not None and x,
                       what="the unencodable row parked at once")
        assert u["attempts"] == 1 and "not encodable" in u["last_error"]
        # Past the bound: the returned row is parked, the nacked row (a full queue is
        # transient) keeps being retried with backoff.
        wait_until(lambda: row(conn, returned)["parked_at"] is not None, timeout=15,
                   what="the returned row parked after its attempts")
        wait_until(lambda: row(conn, nacked)["attempts"] > 2, timeout=15,
                   what="the nacked row retried past the bound")
        assert row(conn, nacked)["parked_at"] is None
        # The queue accepts again: the nacked row is published.
        broker.ch.queue_delete(full)
        broker.ch.queue_bind(cap.queue, mixed, routing_key="full")
        cap.wait_for(lambda m, p, b: p.message_id == nacked, timeout=20,
                     what="the nacked row once the queue accepts")
        assert wait_until(lambda: sent(conn, nacked), what="the nacked row marked sent")
        assert ok1 not in [m for m, c in deliveries(cap).items() if c > 1]
    finally:
        relay.stop()
