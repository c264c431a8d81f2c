"""The servers `./petstore` starts: RabbitMQ with its definitions and least-privilege users,
PostgreSQL with one database and one role per service."""
import os
import pathlib
import uuid

import pika
import pytest

import db
from amqp import mgmt
from daemons import wait_dead_letters
from petstore_env import need
from wait import wait_until

QUEUES = ["inventory.commands", "payment.commands", "saga.events", "storefront.events",
          "audit.events"]
SERVICES = ["storefront", "inventory", "payment", "saga", "audit"]
# The migrations every service database gets from the runtime (outbox, inbox, ...).
RUNTIME_MIGRATIONS = len(list(
    (pathlib.Path(__file__).parents[2] / "services" / "common" / "migrations").glob("*.sql")))


def test_the_management_api_shows_the_definitions():
    names = {x["name"]: x["type"] for x in mgmt("exchanges/petstore")}
    assert names["petstore.commands"] == "direct"
    assert names["petstore.events"] == "topic"
    assert names["petstore.audit"] == "fanout"
    assert names["petstore.dlx"] == "direct"
    users = {u["name"] for u in mgmt("users")}
    assert users == {"admin", *SERVICES, "dlq"}, \
        "one user per service, the dead-letter tool's, an admin, and no guest"


@pytest.mark.parametrize("queue", QUEUES)
def test_work_queues_are_quorum_with_dead_lettering_by_policy(queue):
    def info():
        q = mgmt(f"queues/petstore/{queue}")
        return q if q.get("effective_policy_definition") else None
    q = wait_until(info, what=f"the policy on {queue}")
    assert q["arguments"]["x-queue-type"] == "quorum"
    policy = q["effective_policy_definition"]
    assert policy["dead-letter-exchange"] == "petstore.dlx"
    assert policy["dead-letter-routing-key"] == queue
    assert policy["dead-letter-strategy"] == "at-least-once"
    assert policy["overflow"] == "reject-publish"
    assert policy["delivery-limit"] >= 1
    dlq = mgmt(f"queues/petstore/{queue}.dlq")
    assert dlq["arguments"]["x-queue-type"] == "quorum"
    keys = {b["routing_key"] for b in mgmt(f"queues/petstore/{queue}.dlq/bindings")
            if b["source"] == "petstore.dlx"}
    assert keys == {queue}


def test_a_service_user_may_publish_but_not_read_another_services_queue():
    # The probe (no type) reaches audit.events through the audit fanout, whose consumer
    # dead-letters it as unknown-type: it carries a message id so that the test takes exactly
    # that dead letter out of audit.events.dlq again.
    probe = str(uuid.uuid4())
    conn = pika.BlockingConnection(pika.URLParameters(need("INVENTORY_AMQP_URL")))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("petstore.events", "inventory.test_probe", b"{}",
                     pika.BasicProperties(message_id=probe), mandatory=False)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.basic_get("payment.commands")
        assert refused.value.reply_code == 403
    finally:
        conn.close()
        dead = wait_dead_letters("audit.events.dlq", [probe])
    assert dead[probe][0][0].headers["x-petstore-failure-class"] == "unknown-type"


def test_a_dead_letter_reaches_the_queues_dlq():
    conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
    ch = conn.channel()
    ch.confirm_delivery()
    marker = os.urandom(8).hex().encode()
    ch.basic_publish("petstore.dlx", "audit.events", marker, mandatory=True)
    seen = []

    def found():
        method, _props, body = ch.basic_get("audit.events.dlq", auto_ack=False)
        if method is None:
            return False
        if body == marker:
            ch.basic_ack(method.delivery_tag)
            return True
        seen.append(method.delivery_tag)
        return False
    wait_until(found, what="the marker in audit.events.dlq")
    for tag in seen:
        ch.basic_nack(tag, requeue=True)
    conn.close()


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_database_and_role(service):
    conn = db.connect(service)
    assert db.value(conn, "SELECT current_database()") == service
    assert db.value(conn, "SELECT pg_get_userbyid(datdba) FROM pg_database"
                          " WHERE datname = current_database()") == service
    assert db.value(conn, "SELECT count(*) FROM schema_migrations WHERE component = 'runtime'") \
        == RUNTIME_MIGRATIONS or service == "audit"
    conn.close()
    other = "payment" if service != "payment" else "inventory"
    admin = db.admin()
    allowed = db.value(admin, "SELECT has_database_privilege(%s, %s, 'CONNECT')", service, other)
    admin.close()
    assert not allowed, f"{service} must not connect to {other}'s database"
