"""The audit log: every event on petstore.events is recorded once, append-only."""
import uuid

import psycopg2
import pytest

import db
from amqp import Broker
from wait import wait_until


def test_every_event_is_recorded_once_and_never_rewritten():
    conn = db.connect("audit")
    order = str(uuid.uuid4())
    mid = str(uuid.uuid4())
    with Broker() as broker:
        for _ in range(2):  # the same event delivered twice
            broker.publish("order.cancel_requested.v1",
                           {"order_id": order, "user_id": str(uuid.uuid4())},
                           correlation_id=order, message_id=mid)
    row = wait_until(lambda: db.rows(conn, "SELECT * FROM event_log WHERE correlation_id = %s",
                                     order), what="the event in the audit log")
    assert len(row) == 1
    assert row[0]["type"] == "order.cancel_requested.v1"
    assert row[0]["routing_key"] == "order.cancel_requested"
    assert row[0]["payload"]["order_id"] == order
    with pytest.raises(psycopg2.Error, match="append-only"):
        db.rows(conn, "UPDATE event_log SET type = 'x' WHERE message_id = %s", mid)
    with pytest.raises(psycopg2.Error, match="append-only"):
        db.rows(conn, "DELETE FROM event_log WHERE message_id = %s", mid)
    conn.close()
