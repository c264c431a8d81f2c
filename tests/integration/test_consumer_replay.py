"""Replays stay authentic. The dead-letter tool re-drives a dead letter as its own broker user,
`dlq` (the broker lets a connection put only its own login in user_id), naming the producer it
speaks for in the header x-petstore-replay-for; a consumer accepts a message of type T from the
`dlq` user only when that header names T's producer, and from any other user the header means
nothing (contracts/codec/msg.h). Anything else stays `forged`.

A dead letter carries the login of the consumer that dead-lettered it in user_id (the broker
checks it) and the original sender in x-petstore-sender, so that the tool can tell who vouches
for it; and that consumer counts it in petstore_dead_lettered_total{queue,class} once the
broker has confirmed it. Driven through the system's own audit, saga and inventory consumers
(the metric through an audit consumer of the test's own)."""
import re
import uuid

import db
from amqp import REPLAY_FOR_HEADER, REPLAY_USER, SENDER_HEADER, Broker, envelope
from daemons import audit_daemon, publish_poison, replacing, wait_dead_letters
from httpc import get
from wait import wait_until

CLASSES = ("unknown-type", "forged", "envelope", "contract", "handler")


def cancel_requested(source="storefront"):
    """A valid order.cancel_requested.v1 (produced by storefront): (payload, properties)."""
    order = str(uuid.uuid4())
    return ({"order_id": order, "user_id": str(uuid.uuid4())},
            envelope("order.cancel_requested.v1", order, source=source))


def replay_to_audit(broker, replay_for=None):
    """An order.cancel_requested.v1 published by the dlq user straight to audit.events (the
    default exchange, as `dlq replay --to :audit.events` does), speaking for replay_for (None:
    without the header). Returns its message id."""
    payload, props = cancel_requested(source="dlq")
    headers = {REPLAY_FOR_HEADER: replay_for} if replay_for is not None else None
    return broker.publish("order.cancel_requested.v1", payload, exchange="",
                          routing_key="audit.events", properties=props, sender=REPLAY_USER,
                          headers=headers)


def in_inbox(service, ids):
    conn = db.connect(service)
    try:
        return db.value(conn, "SELECT count(*) FROM inbox WHERE message_id = ANY(%s::uuid[])",
                        list(ids))
    finally:
        conn.close()


def assert_forged(dead, mid, consumer, sender):
    """dead[mid] is one dead letter of class forged, published by consumer, naming sender."""
    assert len(dead[mid]) == 1, dead[mid]
    props = dead[mid][0][0]
    assert props.headers["x-petstore-failure-class"] == "forged"
    assert props.headers["x-petstore-actual-sender"] == sender
    assert props.headers[SENDER_HEADER] == sender
    assert props.user_id == consumer, "the dead letter carries the dead-lettering consumer's login"
    # When, to the millisecond: the dead-letter tool compares it with when a group was resolved.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                        props.headers["x-petstore-failed-at"]), props.headers


def test_a_replay_by_the_dlq_user_speaking_for_the_producer_is_handled():
    audit = db.connect("audit")
    inventory = db.connect("inventory")
    pet = str(uuid.uuid4())
    db.rows(inventory, "INSERT INTO pets (id, name, species, price_cents) VALUES (%s,"
                       " 'replay-test', 'dog', 1000)", pet)
    order = str(uuid.uuid4())
    with Broker() as broker:
        # An event to its original destination: petstore.events reaches audit and the saga.
        payload, props = cancel_requested(source="storefront")
        event = broker.publish("order.cancel_requested.v1", payload, properties=props,
                               sender=REPLAY_USER, headers={REPLAY_FOR_HEADER: "storefront"})
        # A command the saga produces, replayed to inventory.
        broker.publish("inventory.reserve.v1", {"order_id": order, "pet_ids": [pet]},
                       correlation_id=order, sender=REPLAY_USER,
                       headers={REPLAY_FOR_HEADER: "saga"})
    row = wait_until(lambda: db.rows(audit, "SELECT * FROM event_log WHERE message_id = %s",
                                     event), what="the replayed event in the audit log")
    assert row[0]["type"] == "order.cancel_requested.v1"
    wait_until(lambda: in_inbox("saga", [event]) == 1, what="the replayed event taken by the saga")
    wait_until(lambda: db.value(inventory, "SELECT status FROM pets WHERE id = %s", pet)
               == "reserved", what="the pet reserved by the replayed command")
    audit.close()
    inventory.close()


def test_a_message_from_the_dlq_user_not_speaking_for_its_producer_is_forged():
    audit = db.connect("audit")
    with Broker() as broker:
        bare = replay_to_audit(broker)  # no header
        wrong = replay_to_audit(broker, "payment")  # names another service
        itself = replay_to_audit(broker, REPLAY_USER)  # names the replay user itself
        empty = replay_to_audit(broker, "")
    ids = [bare, wrong, itself, empty]
    dead = wait_dead_letters("audit.events.dlq", ids)
    for mid in ids:
        assert_forged(dead, mid, "audit", REPLAY_USER)
    error = dead[wrong][0][0].headers["x-petstore-error"]
    assert "storefront" in error and "payment" in error, error
    assert db.value(audit, "SELECT count(*) FROM event_log WHERE message_id = ANY(%s::uuid[])",
                    ids) == 0, "no forged message recorded"
    audit.close()


def test_an_accepted_replay_that_fails_again_is_dead_lettered_naming_the_replay_user():
    """Its sender passed (the class is not forged), so the dead letter names the dlq user as the
    sender and keeps whom the replay spoke for: the tool can replay it again."""
    _payload, props = cancel_requested(source="dlq")
    with Broker() as broker:
        mid = broker.publish("order.cancel_requested.v1", {"order_id": "not-a-uuid"},
                             exchange="", routing_key="audit.events", properties=props,
                             sender=REPLAY_USER, headers={REPLAY_FOR_HEADER: "storefront"})
    dead = wait_dead_letters("audit.events.dlq", [mid])
    assert len(dead[mid]) == 1
    props = dead[mid][0][0]
    assert props.headers["x-petstore-failure-class"] == "contract"
    assert props.headers[SENDER_HEADER] == REPLAY_USER
    assert props.headers[REPLAY_FOR_HEADER] == "storefront"
    assert props.user_id == "audit"


def test_the_replay_header_from_any_other_user_means_nothing():
    inventory = db.connect("inventory")
    pet = str(uuid.uuid4())
    db.rows(inventory, "INSERT INTO pets (id, name, species, price_cents) VALUES (%s,"
                       " 'replay-test', 'dog', 1000)", pet)
    order = str(uuid.uuid4())
    with Broker() as broker:
        broker.publish("inventory.reserve.v1", {"order_id": order, "pet_ids": [pet]},
                       correlation_id=order)  # by the saga, its producer
        wait_until(lambda: db.value(inventory, "SELECT status FROM pets WHERE id = %s", pet)
                   == "reserved", what="the pet reserved by the saga")
        # The storefront's user speaks for the saga (a command: no topic permission stops it)
        # and for payment (a payment.charged under one of its own routing keys, which reaches
        # the saga and audit).
        release = broker.publish("inventory.release.v1", {"order_id": order},
                                 correlation_id=order, sender="storefront",
                                 headers={REPLAY_FOR_HEADER: "saga"})
        charged = broker.publish("payment.charged.v1",
                                 {"order_id": order, "amount_cents": 1000, "card_last4": "1111"},
                                 correlation_id=order, exchange="petstore.events",
                                 routing_key="order.charged", sender="storefront",
                                 headers={REPLAY_FOR_HEADER: "payment"})
    assert_forged(wait_dead_letters("inventory.commands.dlq", [release]), release, "inventory",
                  "storefront")
    assert_forged(wait_dead_letters("saga.events.dlq", [charged]), charged, "saga", "storefront")
    assert_forged(wait_dead_letters("audit.events.dlq", [charged]), charged, "audit",
                  "storefront")
    assert db.value(inventory, "SELECT status FROM pets WHERE id = %s", pet) == "reserved"
    assert in_inbox("inventory", [release]) == 0 and in_inbox("saga", [charged]) == 0
    inventory.close()


def dead_lettered_series(port):
    """{class: value} of petstore_dead_lettered_total{queue="audit.events",...} on /metrics."""
    text = get(f"http://127.0.0.1:{port}/metrics", timeout=5).raw.decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^petstore_dead_lettered_total\{queue="audit\.events",class="([^"]+)"\} (\S+)$', text,
        re.M)}


def test_the_consumer_counts_its_confirmed_dead_letters_by_queue_and_class():
    with replacing("audit"):
        audit = audit_daemon("dead-lettered-metric")
        try:
            audit.wait_ready("the test's audit consumer ready")
            assert dead_lettered_series(audit.port) == {c: 0.0 for c in CLASSES}, \
                "every class shows 0 before any poison"
            unknown = publish_poison()
            with Broker() as broker:
                forged = [replay_to_audit(broker), replay_to_audit(broker, "payment")]
            dead = wait_dead_letters("audit.events.dlq", [unknown, *forged])
            assert dead[unknown][0][0].headers[SENDER_HEADER] == "none"
            assert dead[unknown][0][0].user_id == "audit"
            wait_until(lambda: dead_lettered_series(audit.port)["forged"] == 2, timeout=10,
                       what="two forged dead letters counted")
            series = dead_lettered_series(audit.port)
            assert series == {"unknown-type": 1.0, "forged": 2.0, "envelope": 0.0,
                              "contract": 0.0, "handler": 0.0}, series
            assert audit.metric("petstore_dead_lettered_total", queue="audit.events",
                                **{"class": "unknown-type"}) == 1
        finally:
            assert audit.stop() == 0
