"""One message cannot wedge a queue: a message whose handler keeps failing (not "invalid", not
a lost connection) is retried a bounded number of times, then dead-lettered alone with class
`handler`, while the rest of its batch is processed; and a poison message whose headers leave
no room in the frame for the consumer's own is dead-lettered with its headers trimmed.

Each test runs its own audit consumer (the system's steps aside, and is back at the end) and
queues its messages before that consumer starts, so that they reach it as one batch."""
import json
import uuid

import db
from amqp import Broker, envelope
from petstore_env import need
from daemons import (audit_daemon, audit_recorded, publish_events, publish_poison, replacing,
                     wait_dead_letters)
from wait import wait_until


def test_a_message_whose_handler_keeps_failing_is_dead_lettered_alone_and_its_batch_is_processed():
    conn = db.connect("audit")
    with replacing("audit"):
        ids = publish_events(20)
        bad = ids[7]
        good = [i for i in ids if i != bad]
        audit = audit_daemon("isolation", PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID=bad)
        try:
            audit.wait_ready("the test's audit consumer ready")
            wait_until(lambda: audit_recorded(conn, good) == len(good), timeout=30,
                       what="every other message of the batch recorded")
            dead = wait_dead_letters("audit.events.dlq", [bad])
            assert len(dead[bad]) == 1
            headers = dead[bad][0][0].headers
            assert headers["x-petstore-failure-class"] == "handler"
            assert headers["x-petstore-error-code"] == "ERR_INTERNAL"
            assert "PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID" in headers["x-petstore-error"]
            assert headers["x-petstore-original-queue"] == "audit.events"
            assert audit_recorded(conn, [bad]) == 0, "the failing message changed nothing"
            wait_until(lambda: audit.metric("petstore_messages_consumed_total",
                                            queue="audit.events", outcome="ok") == len(good),
                       what="the batch acknowledged")
            assert audit.metric("petstore_messages_consumed_total", queue="audit.events",
                                outcome="dead_lettered") == 1
            assert audit.lines("consumer.batch_split"), "the batch was split once the bound hit"
        finally:
            assert audit.stop() == 0
    conn.close()


def test_a_poison_message_with_headers_filling_the_frame_is_dead_lettered_with_them_trimmed():
    conn = db.connect("audit")
    with replacing("audit"):
        # An unknown type is poison before any handler runs. Its headers alone nearly fill a
        # frame (131072 bytes), so the dead letter cannot carry them plus the consumer's.
        poison = publish_poison({"x-padding": "p" * 130600, "x-small": "kept"})
        good = publish_events(5)
        audit = audit_daemon("trim")
        try:
            audit.wait_ready("the test's audit consumer ready")
            dead = wait_dead_letters("audit.events.dlq", [poison])
            assert len(dead[poison]) == 1
            headers = dead[poison][0][0].headers
            assert headers["x-petstore-failure-class"] == "unknown-type"
            assert headers["x-petstore-error-code"] == "ERR_INVALID"
            assert "x-padding" not in headers
            assert headers["x-small"] == "kept"
            assert headers["cloudEvents_id"] == poison
            assert "x-padding" in headers["x-petstore-headers-trimmed"]
            assert json.loads(dead[poison][0][1])["order_id"] == dead[poison][0][0].correlation_id
            wait_until(lambda: audit_recorded(conn, good) == len(good), what="the rest recorded")
            wait_until(lambda: audit.metric("petstore_messages_consumed_total",
                                            queue="audit.events", outcome="ok") == len(good),
                       what="the batch acknowledged")
        finally:
            assert audit.stop() == 0
    conn.close()


def test_an_event_the_database_refuses_is_dead_lettered_and_the_rest_of_its_batch_recorded():
    """A message that passes every contract check but that PostgreSQL refuses (year 0000 is a
    valid RFC 3339 date-time, not a valid timestamptz) is poison of class handler, found at
    once (not after the retries of a failing handler), while the batch it came in is recorded."""
    conn = db.connect("audit")
    with replacing("audit"):
        good = publish_events(6)
        with Broker(need("STOREFRONT_AMQP_URL")) as broker:
            order = str(uuid.uuid4())
            props = envelope("order.cancel_requested.v1", order, source="storefront")
            props.user_id = "storefront"
            props.headers["cloudEvents_time"] = "0000-01-01T00:00:00Z"
            bad = broker.publish("order.cancel_requested.v1",
                                 {"order_id": order, "user_id": str(uuid.uuid4())},
                                 properties=props)
        good += publish_events(6)
        audit = audit_daemon("refused")
        try:
            audit.wait_ready("the test's audit consumer ready")
            wait_until(lambda: audit_recorded(conn, good) == len(good), timeout=30,
                       what="every other message of the batch recorded")
            dead = wait_dead_letters("audit.events.dlq", [bad])
            assert len(dead[bad]) == 1
            headers = dead[bad][0][0].headers
            assert headers["x-petstore-failure-class"] == "handler"
            assert headers["x-petstore-error-code"] == "ERR_INVALID"
            assert audit_recorded(conn, [bad]) == 0, "the refused message changed nothing"
            assert not audit.lines("consumer.batch_retry"), "poison found at once, no retries"
        finally:
            assert audit.stop() == 0
    conn.close()
