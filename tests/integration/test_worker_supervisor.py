"""The worker supervisor keeps broker connections alive while a worker waits for something else:
an idle relay stays connected and ready, and a consumer whose PostgreSQL is stopped for longer
than two heartbeat intervals keeps its AMQP connection (the very same one, as the management API
lists it), holds its batch without burning delivery attempts, and handles it once the database is
back. Both run with AMQP_HEARTBEAT_S=2, so two intervals pass in seconds.

(Named to run last in the integration suite: it stops the PostgreSQL server every suite shares,
and waits for every daemon of the system to be ready again before it ends.)"""
import time

import pytest

import db
from amqp import mgmt
from daemons import (Daemon, audit_daemon, audit_recorded, publish_events, ready, replacing,
                     take_dead_letters)
from petstore_env import need
from shop import petstore
from wait import wait_until

HEARTBEAT_S = 2  # the Daemon helper's AMQP_HEARTBEAT_S
OUTAGE_S = 3 * HEARTBEAT_S + 1  # longer than the two intervals after which a broker gives up


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


def test_two_hundred_waiting_messages_outlast_three_heartbeat_intervals_without_postgresql():
    """An outage must not burn delivery attempts. 200 messages wait in the consumer's prefetch
    window and in its held batch while PostgreSQL is down for three heartbeat intervals; the
    consumer keeps its one broker connection, none is dead-lettered or handed back to the broker,
    and each is recorded exactly once when the database returns. The system's own audit
    consumer steps aside so that this one (heartbeat 2 s) is the only consumer of audit.events;
    it is back before the test ends."""
    conn_name = "audit audit.events"
    with replacing("audit"):
        before = connections(conn_name)
        audit = audit_daemon("outage-200")
        try:
            audit.wait_ready("the test's audit consumer ready")
            ours = wait_until(lambda: connections(conn_name) - before, timeout=30,
                              what="the test's audit connection in the management API")
            petstore("stop", "postgres")
            try:
                ids = publish_events(200)
                wait_until(lambda: audit.lines("worker.db_connect_failed")
                           or audit.lines("consumer.batch_retry"), timeout=30,
                           what="the consumer waiting for the database")
                hold_for(OUTAGE_S, lambda: ours <= connections(conn_name),
                         "the consumer kept its broker connection while PostgreSQL was down")
            finally:
                petstore("start", "postgres")
            conn = db.connect("audit")
            wait_until(lambda: audit_recorded(conn, ids) == 200, timeout=60,
                       what="all 200 messages recorded once PostgreSQL is back")
            conn.close()
            # (at least: other traffic of the system may reach audit.events meanwhile)
            wait_until(lambda: audit.metric("petstore_messages_consumed_total",
                                            queue="audit.events", outcome="ok") >= 200,
                       what="all 200 acknowledged")
            assert audit.metric("petstore_messages_consumed_total", queue="audit.events",
                                outcome="duplicate") == 0, "none came back from the broker"
            assert audit.metric("petstore_messages_consumed_total", queue="audit.events",
                                outcome="dead_lettered") == 0
            assert take_dead_letters("audit.events.dlq", ids, timeout=1.0) == []
            assert ours <= connections(conn_name), "still the same broker connection afterwards"
            assert len(audit.lines("worker.mq_connected")) == 1
            assert audit.lines("consumer.connection_lost") == []
        finally:
            assert audit.stop() == 0
