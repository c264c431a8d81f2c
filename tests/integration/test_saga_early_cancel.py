"""A customer's cancellation that reaches the order saga before the order itself is never lost.

The storefront answers 202 to POST /orders/{id}/cancel while the order is still PENDING; its
order.cancel_requested and the earlier order.placed travel through the outbox separately, so the
saga can see the cancellation first (a delayed outbox row, a redelivery). The test injects the
two messages in that order, each as its producer (the storefront's broker user) would publish
it, against the real saga, inventory and payment: the order must start already cancelled, with
no reservation and no charge, and the customer's pets and card must be untouched."""
import base64
import json
import uuid

import db
from amqp import Broker
from petstore_env import need
from shop import balance, create_card, create_pet, ledger, pet_status
from wait import wait_until

STATUS_CHANGED = "saga.order_status_changed.v1"


def seal(number):
    """The card number sealed for the payment service, as the storefront does."""
    from nacl.public import PublicKey, SealedBox
    key = PublicKey(base64.b64decode(need("PAYMENT_PUBLIC_KEY")))
    return base64.b64encode(SealedBox(key).encrypt(number.encode())).decode()


def saga_row(conn, order_id):
    found = db.rows(conn, "SELECT * FROM sagas WHERE order_id = %s", order_id)
    return found[0] if found else None


def test_a_cancel_that_arrives_before_the_order_starts_the_saga_cancelled():
    number, card = create_card(20_000)
    pets = [create_pet(1200), create_pet(800)]
    order_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    saga_db = db.connect("saga")
    try:
        with Broker() as broker:
            commands = broker.capture("petstore.commands", "inventory", "payment")
            updates = broker.capture("petstore.events", "saga.order_status_changed")
            cancel_id = broker.publish("order.cancel_requested.v1",
                                       {"order_id": order_id, "user_id": user_id},
                                       correlation_id=order_id)
            # The cancellation is recorded before the order exists: the saga has no row yet.
            wait_until(lambda: db.value(saga_db, "SELECT count(*) FROM inbox WHERE consumer ="
                                        " 'order-saga' AND message_id = %s", cancel_id) == 1,
                       timeout=15, what="the saga to consume the early cancellation")
            assert saga_row(saga_db, order_id) is None
            placed_id = broker.publish("order.placed.v1", {
                "order_id": order_id, "user_id": user_id, "pet_ids": pets, "total_cents": 2000,
                "card_sealed": seal(number), "card_last4": number[-4:]}, correlation_id=order_id)

            def cancelled():
                row = saga_row(saga_db, order_id)
                return row if row is not None and row["status"] == "CANCELLED" else None
            row = wait_until(cancelled, timeout=15, what=f"saga {order_id} CANCELLED")
            assert row["reason"] == "CANCELLED_BY_USER"
            assert row["card_sealed"] is None

            # The storefront learns it like any other cancellation.
            change = updates.wait_for(
                lambda m, p, b: p.correlation_id == order_id and p.type == STATUS_CHANGED,
                timeout=15, what="the status change of the cancelled order")[0]
            body = json.loads(change[2])
            assert (body["status"], body["reason"]) == ("CANCELLED", "CANCELLED_BY_USER")
            assert body["version"] == 2

            # Nothing was ever asked of inventory or payment.
            steps = db.rows(saga_db, "SELECT version, event, from_status, to_status,"
                            " message_id::text FROM saga_steps WHERE order_id = %s"
                            " ORDER BY version", order_id)
            assert [(s["version"], s["from_status"], s["to_status"]) for s in steps] == [
                (1, None, "PENDING"), (2, "PENDING", "CANCELLED")]
            assert steps[0]["message_id"] == placed_id
            assert steps[1]["event"] == "cancel" and steps[1]["message_id"] == cancel_id
            assert db.value(saga_db, "SELECT count(*) FROM saga_timers WHERE order_id = %s",
                            order_id) == 0
            sent = [p.type for _m, p, _b in commands.settle(1.0) if p.correlation_id == order_id]
            assert sent == [], sent
    finally:
        saga_db.close()

    assert all(pet_status(p) == "available" for p in pets)
    inv = db.connect("inventory")
    try:
        assert db.value(inv, "SELECT count(*) FROM pets WHERE order_id = %s", order_id) == 0
    finally:
        inv.close()
    assert ledger(order_id) == []
    assert balance(card) == 20_000

