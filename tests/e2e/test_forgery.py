"""Messages cannot be forged: a service's broker user cannot make another service's message.

The storefront's credentials (from `./petstore env`) are the easiest ones to reach from outside,
so these tests use them to try what an attacker holding them would: fake the payment of a live
order, and release its reserved pets. The broker refuses an event outside the user's own routing
keys and a user_id that is not the login; a command (direct exchange, no topic permissions)
reaches its consumer, which dead-letters it as `forged`. The order is never completed unpaid.

Each forged message that gets through is dead-lettered by every consumer it reaches: a command
by its one consumer, an event on petstore.events by the saga (saga.events) and, through the
audit fanout, by audit (audit.events). The tests wait for each of those dead letters by message
id and take it out of its .dlq, and nothing else (the session guard, tests/conftest.py, fails a
run that leaves one behind).
"""
import pika
import pytest

from amqp import Broker, envelope
from daemons import wait_dead_letters
from shop import (balance, create_card, create_pet, ledger, new_customer, order, pet_status,
                  petstore, place_order, wait_status)


def forge(broker, user, type_, payload, oid, user_id=None):
    """Publishes as user (with user_id, if given); returns (the broker's reply code when it
    closed the channel, None when it accepted the message; the message id)."""
    props = envelope(type_, oid, source=user)
    props.user_id = user_id
    try:
        broker.publish(type_, payload, correlation_id=oid, properties=props, sender=None
                       if user is None else user)
    except pika.exceptions.ChannelClosedByBroker as e:
        broker.senders.pop(user, None)
        return e.reply_code, props.message_id
    return None, props.message_id


def refused(broker, user, type_, payload, oid, user_id=None):
    """forge()'s reply code."""
    return forge(broker, user, type_, payload, oid, user_id)[0]


def dead_letter(queue, mid):
    """Waits for the one dead letter of message mid in queue and takes it out; its properties."""
    dead = wait_dead_letters(queue, [mid], timeout=20)
    assert len(dead[mid]) == 1, dead[mid]
    return dead[mid][0][0]


@pytest.fixture
def stop_payment():
    """Stops payment when called, so a live order waits in PAYING for the real payment.charged;
    starts it again after the test."""
    stopped = []

    def stop():
        petstore("stop", "payment")
        stopped.append(True)
    yield stop
    if stopped:
        petstore("start", "payment")


def test_a_forged_payment_or_release_leaves_a_live_order_unaffected(stop_payment):
    token = new_customer()
    number, _card = create_card(50_000)
    pets = [create_pet(1_200), create_pet(800)]
    stop_payment()
    oid = place_order(token, number, pets)
    wait_status(token, oid, statuses=("PAYING",), timeout=20)
    charged = {"order_id": oid, "amount_cents": 2_000, "card_last4": number[-4:]}

    with Broker() as broker:
        # The broker: outside its routing keys, and with someone else's user_id.
        assert refused(broker, "storefront", "payment.charged.v1", charged, oid) == 403
        assert refused(broker, "storefront", "payment.charged.v1", charged, oid,
                       user_id="payment") in (403, 406)
        assert refused(broker, "storefront", "order.placed.v1", {}, oid, user_id="saga") == 406
        # The consumers: a command the storefront's user may route, and an event sent by a user
        # the topic permissions do not restrict (the admin) without any user_id.
        code, release = forge(broker, "storefront", "inventory.release.v1", {"order_id": oid},
                              oid, user_id="storefront")
        assert code is None
        code, forged = forge(broker, None, "payment.charged.v1", charged, oid)
        assert code is None

    inv = dead_letter("inventory.commands.dlq", release)
    saga = dead_letter("saga.events.dlq", forged)
    audit = dead_letter("audit.events.dlq", forged)
    for props, actual, consumer in ((inv, "storefront", "inventory"), (saga, "none", "saga"),
                                    (audit, "none", "audit")):
        assert props.headers["x-petstore-failure-class"] == "forged"
        assert props.headers["x-petstore-actual-sender"] == actual
        assert props.headers["x-petstore-sender"] == actual
        assert "x-petstore-claimed-sender" in props.headers
        assert props.user_id == consumer, "the dead letter carries its consumer's login"

    # Unaffected: still waiting for the real payment (or, if the test system's short pay
    # timeout fired meanwhile, compensating it), never completed; nothing charged or sold.
    status = order(token, oid)["status"]
    assert status in ("PAYING", "COMPENSATING"), status
    if status == "PAYING":
        assert all(pet_status(p) == "reserved" for p in pets)
    assert not any(pet_status(p) == "sold" for p in pets)
    assert ledger(oid) == [], "nothing charged (payment is stopped; its ledger is read directly)"


def test_a_forged_payment_of_a_finished_order_changes_nothing():
    token = new_customer()
    number, card = create_card(50_000)
    pet = create_pet(700)
    oid = place_order(token, number, [pet])
    assert wait_status(token, oid)["status"] == "COMPLETED"
    with Broker() as broker:
        code, forged = forge(broker, None, "payment.refunded.v1",
                             {"order_id": oid, "amount_cents": 700}, oid)
        assert code is None
    for queue in ("saga.events.dlq", "audit.events.dlq"):
        assert dead_letter(queue, forged).headers["x-petstore-failure-class"] == "forged"
    assert order(token, oid)["status"] == "COMPLETED"
    assert balance(card) == 50_000 - 700
    assert pet_status(pet) == "sold"
