"""Integration tests of order-saga alone, driven through the broker as if by the other services.

The test publishes order.placed and the replies of inventory and payment on petstore.events,
watches the commands the saga sends on petstore.commands (a private queue bound with the keys
"inventory" and "payment" gets a copy of each) and its status changes on petstore.events
(saga.order_status_changed), and checks the saga database. Pet ids are random, so nothing a
real inventory or payment daemon might do with them can be mistaken for the test's own
replies; the module asks the launcher to stop those two daemons for its duration when it can.

Timers: the waits are bounded by the saga's configured timeouts (the SAGA_* variables, when the
environment carries them, else the daemon's defaults) plus a margin.
"""
import json
import os
import uuid

import pytest

from saga_support import (
    Broker,
    SagaDb,
    env_ms,
    stopped_services,
)

PAY_TIMEOUT_MS = env_ms("SAGA_PAY_TIMEOUT_MS", 5000)
COMPENSATE_TIMEOUT_MS = env_ms("SAGA_COMPENSATE_TIMEOUT_MS", 5000)
RETRY_MAX_MS = env_ms("SAGA_RETRY_MAX_MS", 60000)
MAX_COMPENSATION_TRIES = env_ms("SAGA_MAX_COMPENSATION_TRIES", 5)
MARGIN_S = 15.0
SEALED = "c2VhbGVkIGNhcmQgbnVtYmVyIGZvciB0ZXN0cw=="


def needs_operator_after_s():
    """How long compensations take to give up: the first wait, then capped doubling."""
    total, ms = COMPENSATE_TIMEOUT_MS, COMPENSATE_TIMEOUT_MS
    for _ in range(1, MAX_COMPENSATION_TRIES):
        ms = min(ms * 2, RETRY_MAX_MS)
        total += ms
    return total / 1000.0


@pytest.fixture(scope="module")
def quiet_system():
    with stopped_services("inventory", "payment"):
        yield


@pytest.fixture(scope="module")
def broker(quiet_system):
    b = Broker()
    yield b
    b.close()


@pytest.fixture(scope="module")
def db():
    d = SagaDb()
    yield d
    d.close()


class Order:
    """One order driven by the test: its ids, and shortcuts to its messages."""

    def __init__(self, broker, db, total_cents=4200, pets=2):
        self.broker, self.db = broker, db
        self.id = str(uuid.uuid4())
        self.user_id = str(uuid.uuid4())
        self.pet_ids = [str(uuid.uuid4()) for _ in range(pets)]
        self.total_cents = total_cents

    def place(self):
        return self.send("order.placed.v1", {
            "order_id": self.id, "user_id": self.user_id, "pet_ids": self.pet_ids,
            "total_cents": self.total_cents, "card_sealed": SEALED, "card_last4": "4242"})

    def send(self, type_, payload=None, message_id=None):
        body = {"order_id": self.id}
        body.update(payload or {})
        return self.broker.publish_event(type_, body, correlation_id=self.id,
                                         message_id=message_id)

    def command(self, type_, timeout=MARGIN_S, nth=1):
        return self.broker.wait_command(self.id, type_, timeout, nth)

    def statuses(self, until, timeout=MARGIN_S):
        return self.broker.wait_status(self.id, until, timeout)

    def saga(self):
        return self.db.saga(self.id)


def test_happy_path_reserves_charges_confirms_and_completes(broker, db):
    o = Order(broker, db)
    o.place()
    reserve = o.command("inventory.reserve.v1")
    assert reserve.body == {"order_id": o.id, "pet_ids": o.pet_ids}
    assert reserve.correlation_id == o.id
    assert reserve.headers["causation_id"]
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})

    charge = o.command("payment.charge.v1")
    assert charge.body["amount_cents"] == o.total_cents
    assert charge.body["card_sealed"] == SEALED
    assert charge.body["card_last4"] == "4242"
    # expires_at is the database's now() + the pay timeout: in the future, not past the timer.
    expires = db.seconds_until(charge.body["expires_at"])
    assert 0 < expires <= PAY_TIMEOUT_MS / 1000.0 + 1
    timer = db.timer(o.id)
    assert timer is not None and abs(db.seconds_between(timer, charge.body["expires_at"])) < 1
    o.send("payment.charged.v1", {"amount_cents": o.total_cents, "card_last4": "4242"})

    o.command("inventory.confirm_sale.v1")
    o.send("inventory.sale_confirmed.v1", {"pet_ids": o.pet_ids})

    changes = o.statuses("COMPLETED")
    assert [c["status"] for c in changes] == ["RESERVING", "PAYING", "CONFIRMING", "COMPLETED"]
    assert [c["version"] for c in changes] == [2, 3, 4, 5]
    first = changes[0]
    assert first["user_id"] == o.user_id and first["pet_ids"] == o.pet_ids
    assert first["total_cents"] == o.total_cents and first["card_last4"] == "4242"
    assert first["reason"] is None

    saga = db.wait_status(o.id, "COMPLETED", MARGIN_S)
    assert saga["version"] == 5 and saga["card_sealed"] is None and saga["reason"] is None
    assert db.timer(o.id) is None
    assert [(s["version"], s["to_status"]) for s in db.steps(o.id)] == [
        (1, "PENDING"), (2, "RESERVING"), (3, "PAYING"), (4, "CONFIRMING"), (5, "COMPLETED")]


def test_declined_payment_releases_the_pets_and_cancels_with_the_reason(broker, db):
    o = Order(broker, db)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("payment.charge.v1")
    o.send("payment.declined.v1", {"reason": "INSUFFICIENT_FUNDS"})

    release = o.command("inventory.release.v1")
    assert release.body == {"order_id": o.id}
    compensating = db.wait_status(o.id, "COMPENSATING", MARGIN_S)
    assert compensating["reason"] == "INSUFFICIENT_FUNDS"
    o.send("inventory.released.v1", {"pet_ids": o.pet_ids})

    changes = o.statuses("CANCELLED")
    assert [c["status"] for c in changes] == ["RESERVING", "PAYING", "COMPENSATING", "CANCELLED"]
    assert changes[-1]["reason"] == "INSUFFICIENT_FUNDS"
    saga = db.wait_status(o.id, "CANCELLED", MARGIN_S)
    assert saga["reason"] == "INSUFFICIENT_FUNDS" and saga["card_sealed"] is None
    assert db.timer(o.id) is None
    assert broker.commands_for(o.id, "payment.refund_or_void.v1") == []


def test_late_payment_decline_is_a_timeout_for_the_customer(broker, db):
    o = Order(broker, db)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("payment.charge.v1")
    o.send("payment.declined.v1", {"reason": "EXPIRED"})
    o.command("inventory.release.v1")
    o.send("inventory.released.v1", {"pet_ids": []})
    assert db.wait_status(o.id, "CANCELLED", MARGIN_S)["reason"] == "TIMEOUT"


def test_rejected_reservation_cancels_without_compensation(broker, db):
    o = Order(broker, db)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reservation_rejected.v1", {"unavailable_pet_ids": o.pet_ids[:1]})
    changes = o.statuses("CANCELLED")
    assert [c["status"] for c in changes] == ["RESERVING", "CANCELLED"]
    assert changes[-1]["reason"] == "PET_UNAVAILABLE"
    assert db.wait_status(o.id, "CANCELLED", MARGIN_S)["reason"] == "PET_UNAVAILABLE"
    assert broker.commands_for(o.id, "inventory.release.v1") == []
    assert broker.commands_for(o.id, "payment.charge.v1") == []


def test_customer_cancel_while_paying_refunds_or_voids_and_releases(broker, db):
    o = Order(broker, db)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("payment.charge.v1")
    o.send("order.cancel_requested.v1", {"user_id": o.user_id})
    o.command("payment.refund_or_void.v1")
    o.command("inventory.release.v1")
    o.send("payment.voided.v1")
    o.send("inventory.released.v1", {"pet_ids": o.pet_ids})
    changes = o.statuses("CANCELLED")
    assert changes[-1]["reason"] == "CANCELLED_BY_USER"
    assert [c["status"] for c in changes][-2:] == ["COMPENSATING", "CANCELLED"]


def test_pay_timeout_fires_refund_or_void_and_release(broker, db):
    o = Order(broker, db)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("payment.charge.v1")
    # No reply: the saga's timer gives up on the payment.
    bound = PAY_TIMEOUT_MS / 1000.0 + MARGIN_S
    refund = o.command("payment.refund_or_void.v1", timeout=bound)
    assert refund.body == {"order_id": o.id}
    assert refund.headers.get("causation_id") is None  # a timer caused it, not a message
    o.command("inventory.release.v1")
    saga = db.wait_status(o.id, "COMPENSATING", MARGIN_S)
    assert saga["reason"] == "TIMEOUT"
    steps = db.steps(o.id)
    assert steps[-1]["event"] == "timeout" and steps[-1]["message_id"] is None

    # A charge reply arriving now is too late: ignored, the refund settles it.
    o.send("payment.charged.v1", {"amount_cents": o.total_cents, "card_last4": "4242"})
    o.send("payment.refunded.v1", {"amount_cents": o.total_cents})
    o.send("inventory.released.v1", {"pet_ids": o.pet_ids})
    saga = db.wait_status(o.id, "CANCELLED", MARGIN_S)
    assert saga["reason"] == "TIMEOUT"
    assert broker.commands_for(o.id, "inventory.confirm_sale.v1") == []


def test_duplicate_replies_change_nothing(broker, db):
    o = Order(broker, db)
    o.place()
    o.command("inventory.reserve.v1")
    reserved = o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("payment.charge.v1")
    version = db.wait_status(o.id, "PAYING", MARGIN_S)["version"]
    steps = len(db.steps(o.id))

    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids}, message_id=reserved)  # redelivery
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})  # the same reply, a new id
    o.place()  # the order placed again under a new id
    # The saga consumes in order: once the charge's effect is visible, the duplicates were seen.
    o.send("payment.charged.v1", {"amount_cents": o.total_cents, "card_last4": "4242"})
    o.command("inventory.confirm_sale.v1")

    saga = db.wait_status(o.id, "CONFIRMING", MARGIN_S)
    assert saga["version"] == version + 1
    assert len(db.steps(o.id)) == steps + 1
    assert len(broker.commands_for(o.id, "payment.charge.v1")) == 1
    assert len(broker.commands_for(o.id, "inventory.reserve.v1")) == 1
    assert db.inbox_has("order-saga", reserved)


def test_reply_for_an_unknown_order_is_acknowledged_and_dropped(broker, db):
    stranger = Order(broker, db)
    dlq_before = broker.queue_depth("saga.events.dlq")
    stranger.send("inventory.reserved.v1", {"pet_ids": stranger.pet_ids})
    stranger.send("payment.charged.v1", {"amount_cents": 100, "card_last4": "4242"})
    # Messages are consumed in order: a later order's first command proves they were handled.
    marker = Order(broker, db)
    marker.place()
    marker.command("inventory.reserve.v1")
    assert db.saga(stranger.id) is None
    assert broker.queue_depth("saga.events.dlq") == dlq_before
    assert broker.commands_for(stranger.id) == []


def test_free_order_skips_the_charge(broker, db):
    o = Order(broker, db, total_cents=0)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("inventory.confirm_sale.v1")
    assert broker.commands_for(o.id, "payment.charge.v1") == []
    o.send("inventory.sale_confirmed.v1", {"pet_ids": o.pet_ids})
    changes = o.statuses("COMPLETED")
    assert [c["status"] for c in changes] == ["RESERVING", "PAYING", "CONFIRMING", "COMPLETED"]


def test_compensation_that_keeps_failing_parks_the_saga_for_an_operator(broker, db):
    bound = PAY_TIMEOUT_MS / 1000.0 + needs_operator_after_s()
    if bound > 90:
        pytest.skip("compensation timeouts too long for a test (set SAGA_COMPENSATE_TIMEOUT_MS)")
    o = Order(broker, db)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("payment.charge.v1")
    # Nobody answers: the saga times out, compensates, re-sends, and finally parks.
    o.command("inventory.release.v1", timeout=PAY_TIMEOUT_MS / 1000.0 + MARGIN_S)
    o.command("inventory.release.v1", timeout=bound + MARGIN_S, nth=MAX_COMPENSATION_TRIES)
    saga = db.wait_status(o.id, "NEEDS_OPERATOR", bound + MARGIN_S)
    assert saga["reason"] == "TIMEOUT"
    assert db.timer(o.id) is None
    assert len(broker.commands_for(o.id, "payment.refund_or_void.v1")) == MAX_COMPENSATION_TRIES

    # Acknowledgements that arrive after parking still finish the saga.
    o.send("payment.voided.v1")
    o.send("inventory.released.v1", {"pet_ids": o.pet_ids})
    changes = o.statuses("CANCELLED")
    assert [c["status"] for c in changes][-3:] == ["COMPENSATING", "NEEDS_OPERATOR", "CANCELLED"]
