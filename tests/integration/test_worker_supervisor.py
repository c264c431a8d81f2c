"""The worker supervisor keeps broker connections alive while a worker waits for something else:
an idle relay stays connected and ready, and a consumer whose PostgreSQL is stopped for longer
than two heartbeat intervals keeps its AMQP connection (the very same one, as the management API
lists it), holds its batch without burning delivery attempts, and handles it once the database is
back. Both run with AMQP_HEARTBEAT_S=2, so two intervals pass in seconds.

(Named to run last in the integration suite: it stops the PostgreSQL server every suite shares,
and waits for every daemon of the system to be ready again before it ends.)"""
import os
import socket
import subprocess
import time
import uuid

import pytest

import db
from amqp import Broker, mgmt, queue_info
from httpc import get
from petstore_env import binary, need
from shop import petstore
from wait import wait_until

HEARTBEAT_S = 2
OUTAGE_S = 3 * HEARTBEAT_S + 1  # longer than the two intervals after which a broker gives up
DAEMONS = ["storefront", "inventory", "payment", "order-saga", "audit", "relay-storefront",
           "relay-inventory", "relay-payment", "relay-saga"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        return get(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    except OSError:
        return False


def daemon_ready(name):
    return ready(os.environ["PETSTORE_" + name.upper().replace("-", "_") + "_PORT"])


class Daemon:
    """One extra daemon process of the system's binaries, with a short heartbeat."""

    def __init__(self, relative, label, **env):
        self.port = free_port()
        full = {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "PATH"))}
        full.update(HTTP_PORT=str(self.port), AMQP_HEARTBEAT_S=str(HEARTBEAT_S),
                    LOG_LEVEL="debug")
        full.update(env)
        self.log_path = f"/tmp/supervisor-test-{label}-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary(relative)], env=full, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, what):
        wait_until(lambda: self.proc.poll() is not None or ready(self.port), timeout=60, what=what)
        assert self.proc.poll() is None, open(self.log_path).read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        return self.proc.returncode

    def lines(self, message):
        with open(self.log_path) as f:
            return [line for line in f if f'"message":"{message}"' in line]


def connections(connection_name):
    """Names (client address -> server address) of the broker's connections with that
    connection_name: a name identifies one TCP connection."""
    return {c["name"] for c in mgmt("connections")
            if (c.get("client_properties") or {}).get("connection_name") == connection_name}


def hold_for(seconds, check, what):
    """Asserts check() at every sample over the whole period (the period is the point here:
    an outage or an idle spell of a given length)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.25)


@pytest.fixture
def scratch_url():
    with db.scratch("supervisor") as url:
        yield url


def test_an_idle_relay_stays_connected_and_ready_past_two_heartbeat_intervals(scratch_url):
    relay = Daemon("outbox/outbox-relay", "relay", DATABASE_URL=scratch_url,
                   AMQP_URL=need("AMQP_URL"), RELAY_NAME="relay-supervisor-test",
                   RELAY_POLL_MS="5000")
    try:
        relay.wait_ready("the relay ready")
        conn_name = "relay-supervisor-test outbox"
        first = wait_until(lambda: connections(conn_name), timeout=30,
                           what="the relay's connection in the management API")
        hold_for(OUTAGE_S, lambda: ready(relay.port),
                 "the idle relay stayed ready over two heartbeat intervals")
        assert connections(conn_name) == first, "the idle relay kept the same connection"
        assert relay.lines("worker.heartbeat_failed") == []
        assert len(relay.lines("worker.mq_connected")) == 1
    finally:
        assert relay.stop() == 0


def test_a_consumer_keeps_its_broker_connection_and_its_batch_while_postgresql_is_down():
    """The system's own audit consumer steps aside so that this one (heartbeat 2 s) is the only
    consumer of audit.events; it is back before the test ends."""
    conn_name = "audit audit.events"
    petstore("stop", "audit")
    audit = None
    try:
        before = connections(conn_name)
        audit = Daemon("services/audit/audit", "audit", DATABASE_URL=need("AUDIT_DATABASE_URL"),
                       AMQP_URL=need("AUDIT_AMQP_URL"))
        audit.wait_ready("the test's audit consumer ready")
        ours = wait_until(lambda: connections(conn_name) - before, timeout=30,
                          what="the test's audit connection in the management API")
        dead_before = queue_info("audit.events.dlq")["messages"]

        petstore("stop", "postgres")
        try:
            orders = [str(uuid.uuid4()) for _ in range(20)]
            with Broker() as broker:
                for order in orders:
                    broker.publish("order.cancel_requested.v1",
                                   {"order_id": order, "user_id": str(uuid.uuid4())},
                                   correlation_id=order)
            # It notices the outage either before taking a batch (its connection check) or
            # while holding one it cannot commit; either way it waits for the database.
            wait_until(lambda: audit.lines("worker.db_connect_failed")
                       or audit.lines("consumer.batch_retry"), timeout=30,
                       what="the consumer waiting for the database")
            hold_for(OUTAGE_S, lambda: ours <= connections(conn_name),
                     "the consumer kept its broker connection while PostgreSQL was down")
        finally:
            petstore("start", "postgres")

        conn = db.connect("audit")
        wait_until(lambda: db.value(conn, "SELECT count(*) FROM event_log"
                                          " WHERE correlation_id = ANY(%s)", orders) == 20,
                   timeout=60, what="every held message recorded once PostgreSQL is back")
        conn.close()
        assert ours <= connections(conn_name), "still the same broker connection afterwards"
        assert len(audit.lines("worker.mq_connected")) == 1
        assert queue_info("audit.events.dlq")["messages"] == dead_before
    finally:
        if audit is not None:
            assert audit.stop() == 0
        petstore("start", "audit")
        wait_until(lambda: all(daemon_ready(d) for d in DAEMONS), timeout=120,
                   what="every daemon of the system ready again")
