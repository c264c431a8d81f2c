"""The outbox relay against real PostgreSQL and RabbitMQ: what is committed is published exactly
as written, what is rolled back never is, a crash between publish and commit republishes, two
relays share one table without losing a row, unroutable rows stay unsent, and a late-committing
transaction is never overtaken (its later writers wait for it)."""
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import pika
import psycopg2
import pytest

import db
from amqp import Broker
from petstore_env import binary, need
from httpc import get
from wait import wait_until

RELAY = "outbox/outbox-relay"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def scratch():
    """A fresh database with the runtime schema, and a private topic exchange with a capture
    queue bound to everything."""
    name = "relay_" + uuid.uuid4().hex[:12]
    admin = db.admin()
    db.rows(admin, f"CREATE DATABASE {name}")
    url = need("PETSTORE_PG_ADMIN_URL") + f" dbname={name}"
    migrate = subprocess.run([binary(RELAY), "--migrate"], env=relay_env(url, free_port()),
                             capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    broker = Broker()
    exchange = "relaytest." + name
    broker.ch.exchange_declare(exchange, "topic", auto_delete=True)
    capture = broker.capture(exchange, "#")
    conn = psycopg2.connect(url)
    conn.autocommit = True
    yield {"url": url, "exchange": exchange, "capture": capture, "broker": broker, "conn": conn}
    conn.close()
    broker.close()
    db.rows(admin, f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def relay_env(url, port, **extra):
    env = {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "PATH"))}
    env.update(DATABASE_URL=url, AMQP_URL=need("AMQP_URL"), HTTP_PORT=str(port),
               RELAY_NAME="relay-test", RELAY_POLL_MS="200", LOG_LEVEL="debug")
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Relay:
    def __init__(self, url, **extra):
        self.port = free_port()
        self.log = open(f"/tmp/relay-test-{self.port}.log", "w")
        self.proc = subprocess.Popen([binary(RELAY)], env=relay_env(url, self.port, **extra),
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self):
        wait_until(lambda: self.proc.poll() is not None or self._ready(), timeout=30,
                   what="relay readiness")
        return self

    def _ready(self):
        try:
            return get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.log.close()
        return self.proc.returncode


def insert(conn, exchange, key="k", correlation=None, body=None, headers=None, partition=0,
           type_="test.event.v1"):
    message_id = str(uuid.uuid4())
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO outbox (partition, exchange, routing_key, message_id, type,"
            " correlation_id, app_id, headers, body) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (partition, exchange, key, message_id, type_, correlation, "tester",
             json.dumps(headers or {}), body if body is not None else json.dumps({"m": message_id})))
    return message_id


def sent(conn, message_id):
    return db.value(conn, "SELECT sent_at IS NOT NULL FROM outbox WHERE message_id = %s",
                    message_id)


def ids_of(messages):
    return [props.message_id for _m, props, _b in messages]


def test_committed_rows_are_published_exactly_as_written(scratch):
    conn, cap = scratch["conn"], scratch["capture"]
    headers = {"cloudEvents_specversion": "1.0", "traceparent":
               "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-count": 7,
               "x-flag": True}
    order = str(uuid.uuid4())
    body = '{"order_id":"%s","total_cents":12500,"note":"caf\\u00e9"}' % order
    relay = Relay(scratch["url"]).ready()
    try:
        mid = insert(conn, scratch["exchange"], "order.placed", order, body, headers, 5,
                     "order.placed.v1")
        (method, props, raw), = cap.wait_for(lambda m, p, b: p.message_id == mid,
                                             what="the committed row")
        assert method.routing_key == "order.placed"
        assert raw.decode() == body
        assert props.type == "order.placed.v1"
        assert props.correlation_id == order
        assert props.app_id == "tester"
        assert props.content_type == "application/json"
        assert props.delivery_mode == 2
        assert abs(props.timestamp - time.time()) < 120
        assert props.headers == headers
        wait_until(lambda: sent(conn, mid), what="the row marked sent")
    finally:
        assert relay.stop() == 0


def test_rows_of_a_rolled_back_transaction_are_never_published(scratch):
    conn, cap = scratch["conn"], scratch["capture"]
    relay = Relay(scratch["url"]).ready()
    try:
        other = psycopg2.connect(scratch["url"])
        ghost = insert(other, scratch["exchange"])
        other.rollback()
        other.close()
        marker = insert(conn, scratch["exchange"])
        cap.wait_for(lambda m, p, b: p.message_id == marker, what="the marker row")
        assert ghost not in ids_of(cap.settle(0.5))
        assert db.value(conn, "SELECT count(*) FROM outbox WHERE message_id = %s", ghost) == 0
    finally:
        relay.stop()


def test_two_relays_on_one_table_publish_every_row_in_order_per_order(scratch):
    conn, cap = scratch["conn"], scratch["capture"]
    relays = [Relay(scratch["url"], RELAY_BATCH_SIZE=50).ready() for _ in range(2)]
    expected = {}
    try:
        orders = [str(uuid.uuid4()) for _ in range(40)]
        writer = psycopg2.connect(scratch["url"])
        for seq in range(25):
            for i, order in enumerate(orders):
                mid = insert(writer, scratch["exchange"], "k", order, None, {"seq": seq}, i % 16)
                expected[mid] = (order, seq)
            writer.commit()
        writer.close()
        got = cap.wait_for(lambda m, p, b: p.message_id in expected, count=len(expected),
                           timeout=60, what="every row")
        assert set(ids_of(got)) == set(expected)
        wait_until(lambda: db.value(conn, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                   == 0, what="every row marked sent")
        last = {}
        for _m, props, _b in got:
            order, seq = expected[props.message_id]
            assert seq >= last.get(order, -1), f"order {order}: seq {seq} after {last[order]}"
            last[order] = seq
    finally:
        for r in relays:
            r.stop()


def test_an_unroutable_row_is_not_marked_sent_and_does_not_block_the_others(scratch):
    conn, cap, broker = scratch["conn"], scratch["capture"], scratch["broker"]
    nowhere = scratch["exchange"] + ".nowhere"
    broker.ch.exchange_declare(nowhere, "direct", auto_delete=False)
    relay = Relay(scratch["url"]).ready()
    try:
        lost = insert(conn, nowhere, "no-binding")
        fine = insert(conn, scratch["exchange"])
        cap.wait_for(lambda m, p, b: p.message_id == fine, what="the routable row")
        row = wait_until(lambda: db.rows(conn, "SELECT attempts, last_error, sent_at FROM outbox"
                                         " WHERE message_id = %s AND attempts > 0", lost),
                         what="the failed attempt recorded")[0]
        assert row["sent_at"] is None
        assert "unroutable" in row["last_error"]
        assert sent(conn, fine)
    finally:
        relay.stop()
        broker.ch.exchange_delete(nowhere)


def test_a_late_committing_transaction_is_not_overtaken(scratch):
    """A writer of an order waits (the outbox's insert lock) while an older transaction that
    wrote the same order is open, so its row can never be published first."""
    conn, cap = scratch["conn"], scratch["capture"]
    relay = Relay(scratch["url"]).ready()
    early = psycopg2.connect(scratch["url"])
    late = psycopg2.connect(scratch["url"])
    late.autocommit = True
    try:
        order = str(uuid.uuid4())
        first = insert(early, scratch["exchange"], "k", order)  # still uncommitted
        second = []
        later = threading.Thread(
            target=lambda: second.append(insert(late, scratch["exchange"], "k", order)))
        later.start()
        wait_until(lambda: db.value(conn, "SELECT count(*) FROM pg_locks WHERE"
                                    " locktype = 'advisory' AND NOT granted") == 1,
                   what="the later writer waiting for the earlier transaction")
        assert not second and not ids_of(cap.settle(0.5))
        early.commit()
        later.join(timeout=10)
        got = cap.wait_for(lambda m, p, b: p.message_id in (first, *second), count=2,
                           what="both rows")
        assert ids_of(got) == [first, second[0]]
    finally:
        early.close()
        late.close()
        relay.stop()


def test_the_backlog_gauges_count_unsent_and_parked_rows_and_the_oldest_unsent_age(scratch):
    """petstore_outbox_backlog counts unsent, unparked rows (those in backoff included),
    petstore_outbox_parked the parked ones, petstore_outbox_lag_seconds the age of the oldest
    unsent, unparked row; sent rows kept for retention count in none of them."""
    from test_relay_isolation import metric
    conn, cap = scratch["conn"], scratch["capture"]
    published = [insert(conn, scratch["exchange"]) for _ in range(5)]
    relay = Relay(scratch["url"]).ready()
    try:
        cap.wait_for(lambda _m, p, _b: p.message_id in published, count=5, timeout=15)
        wait_until(lambda: all(sent(conn, m) for m in published), timeout=15,
                   what="the first rows marked sent")

        def row_in(state):
            """An outbox row the relay cannot claim: in backoff for an hour (created 90 s ago)
            or parked."""
            mid = str(uuid.uuid4())
            db.rows(conn, "INSERT INTO outbox (partition, exchange, routing_key, message_id,"
                          " type, body, attempts, available_at, created_at, parked_at)"
                          " VALUES (0, %s, 'k', %s, 't', '{}', 3, now() + interval '1 hour',"
                          " now() - interval '90 seconds', CASE WHEN %s THEN now() END)",
                    scratch["exchange"], mid, state == "parked")
            return mid
        for _ in range(3):
            row_in("backoff")
        row_in("parked")

        def shown():
            return (metric(relay, "petstore_outbox_backlog") == 3 and
                    metric(relay, "petstore_outbox_parked") == 1 and
                    metric(relay, "petstore_outbox_lag_seconds") >= 90)
        wait_until(shown, timeout=15, what="backlog 3, parked 1 and lag >= 90 s on the relay's"
                   " gauges (refreshed every 5 s)")
    finally:
        relay.stop()
