"""Integration tests of order-saga alone, driven through the broker as if by the other services.

The test publishes order.placed and the replies of inventory and payment on petstore.events,
watches the commands the saga sends on petstore.commands (a private queue bound with the keys
"inventory" and "payment" gets a copy of each) and its status changes on petstore.events
(saga.order_status_changed), and checks the saga database. The real inventory and payment
daemons would answer the same commands and race the scripted replies, so the module stops them
through the launcher for its duration (when it runs against a launcher's system), drops the
commands it caused from their queues and starts them again afterwards.

Timers: waits are bounded by the saga's timeouts (the SAGA_* variables `./petstore test`
exports, else the daemon's defaults) plus a margin. Tests of what happens after many timeouts
(parking in NEEDS_OPERATOR, timers that fail) replace the launcher's order-saga with a private
one whose timeouts are a few hundred milliseconds (tests/lib/saga_instance.py), so they run in
seconds whatever the system's settings.
"""
import contextlib
import json
import os
import subprocess
import uuid

import pytest

import db
from amqp import Broker
from petstore_env import launcher
from saga_instance import private_saga
from wait import wait_until


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


PAY_TIMEOUT_MS = env_int("SAGA_PAY_TIMEOUT_MS", 5000)
MARGIN_S = 15.0
SEALED = "c2VhbGVkIGNhcmQgbnVtYmVyIGZvciB0ZXN0cw=="
STATUS_CHANGED = "saga.order_status_changed.v1"

# The private order-saga of the tests that wait for many timeouts: every wait a few hundred
# milliseconds, three tries before parking.
FAST = {"SAGA_RESERVE_TIMEOUT_MS": 300, "SAGA_PAY_TIMEOUT_MS": 600,
        "SAGA_CONFIRM_TIMEOUT_MS": 300, "SAGA_COMPENSATE_TIMEOUT_MS": 300,
        "SAGA_RETRY_MAX_MS": 600, "SAGA_MAX_COMPENSATION_TRIES": 3,
        "SAGA_MAX_CONFIRM_TRIES": 3, "SAGA_TIMER_POLL_MS": 50}
FAST_TRIES = 3


def fast_saga_bound_s(first_ms):
    """How long FAST gives up after: the first wait, then capped doubling, plus a margin."""
    total, ms = first_ms, first_ms
    for _ in range(1, FAST_TRIES):
        ms = min(ms * 2, FAST["SAGA_RETRY_MAX_MS"])
        total += ms
    return total / 1000.0 + MARGIN_S


@contextlib.contextmanager
def stopped(*names):
    """Stops the named daemons of the system under test (when the launcher runs one) for the
    duration of the block and starts them again afterwards: they would answer the saga's
    commands themselves and race the test's scripted replies."""
    stopped_names = []
    try:
        if os.environ.get("PETSTORE_HOME"):
            for name in names:
                subprocess.run([launcher(), "stop", name], check=True, capture_output=True)
                stopped_names.append(name)
        yield
    finally:
        for name in stopped_names:
            subprocess.run([launcher(), "start", name], check=True, capture_output=True)


class Message:
    def __init__(self, props, body):
        self.type = props.type
        self.message_id = props.message_id
        self.correlation_id = props.correlation_id
        self.headers = dict(props.headers or {})
        self.body = json.loads(body)


class Saga:
    """The world around the saga: publishes what the storefront, inventory and payment would,
    captures the commands the saga sends and the status changes it announces on petstore.events,
    and reads the saga database."""

    def __init__(self):
        self.broker = Broker()
        self.commands = self.broker.capture("petstore.commands", "inventory", "payment")
        self.updates = self.broker.capture("petstore.events", "saga.order_status_changed")
        self.db = db.connect("saga")
        self.orders = set()

    def discard_commands(self):
        """Removes the commands sent for this module's orders from the work queues of the
        stopped daemons, so that they do not act on fake orders once they are back; anything
        else waiting there is returned to its queue."""
        for queue in ("inventory.commands", "payment.commands"):
            others = []
            while True:
                method, props, _body = self.broker.ch.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                if props.correlation_id in self.orders:
                    self.broker.ch.basic_ack(method.delivery_tag)
                else:
                    others.append(method.delivery_tag)
            for tag in others:
                self.broker.ch.basic_nack(tag, requeue=True)

    def close(self):
        self.db.close()
        self.broker.close()

    def captured(self, capture, order_id, type_=None):
        capture._drain()
        return [Message(p, b) for _m, p, b in capture.messages
                if p.correlation_id == order_id and (type_ is None or p.type == type_)]

    def wait_command(self, order_id, type_, timeout, nth=1):
        hits = self.commands.wait_for(
            lambda m, p, b: p.correlation_id == order_id and p.type == type_, count=nth,
            timeout=timeout, what=f"{type_} #{nth} for order {order_id}")
        return Message(hits[nth - 1][1], hits[nth - 1][2])

    def commands_for(self, order_id, type_=None):
        return self.captured(self.commands, order_id, type_)

    def wait_updates(self, order_id, status, timeout):
        """The order's status changes up to the first with this status, in arrival order;
        their versions must only increase."""
        def upto():
            got = [m.body for m in self.captured(self.updates, order_id, STATUS_CHANGED)]
            for i, change in enumerate(got):
                if change["status"] == status:
                    return got[:i + 1]
            return None
        changes = wait_until(upto, timeout=timeout, what=f"{status} of order {order_id}")
        versions = [c["version"] for c in changes]
        assert versions == sorted(set(versions)), f"versions not increasing: {versions}"
        return changes

    def saga(self, order_id):
        found = db.rows(self.db, "SELECT * FROM sagas WHERE order_id = %s", order_id)
        return found[0] if found else None

    def wait_saga(self, order_id, status, timeout=MARGIN_S):
        def reached():
            row = self.saga(order_id)
            return row if row is not None and row["status"] == status else None
        return wait_until(reached, timeout=timeout, what=f"saga {order_id} in {status}")

    def steps(self, order_id):
        return db.rows(self.db, "SELECT * FROM saga_steps WHERE order_id = %s ORDER BY version",
                       order_id)

    def timer(self, order_id):
        return db.value(self.db, "SELECT deadline FROM saga_timers WHERE order_id = %s",
                        order_id)

    def seconds_until(self, when):
        return float(db.value(self.db, "SELECT extract(epoch FROM %s::timestamptz - now())",
                              when))

    def seconds_between(self, a, b):
        return float(db.value(self.db,
                              "SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz)", a, b))

    def in_inbox(self, message_id):
        return db.value(self.db, "SELECT count(*) FROM inbox WHERE consumer = 'order-saga'"
                        " AND message_id = %s", message_id) == 1

    def queue_depth(self, name):
        return self.broker.ch.queue_declare(name, passive=True).method.message_count


@pytest.fixture(scope="module")
def world():
    with stopped("inventory", "payment"):
        w = Saga()
        yield w
        if os.environ.get("PETSTORE_HOME"):
            w.discard_commands()
        w.close()


class Order:
    """One order driven by the test: its ids, and shortcuts to its messages."""

    def __init__(self, world, total_cents=4200, pets=2):
        self.world = world
        self.id = str(uuid.uuid4())
        self.user_id = str(uuid.uuid4())
        self.pet_ids = [str(uuid.uuid4()) for _ in range(pets)]
        self.total_cents = total_cents
        world.orders.add(self.id)

    def place(self):
        return self.send("order.placed.v1", {
            "user_id": self.user_id, "pet_ids": self.pet_ids, "total_cents": self.total_cents,
            "card_sealed": SEALED, "card_last4": "4242"})

    def send(self, type_, payload=None, message_id=None):
        body = {"order_id": self.id}
        body.update(payload or {})
        return self.world.broker.publish(type_, body, correlation_id=self.id,
                                         message_id=message_id)

    def command(self, type_, timeout=MARGIN_S, nth=1):
        return self.world.wait_command(self.id, type_, timeout, nth)

    def commands(self, type_=None):
        return self.world.commands_for(self.id, type_)

    def updates(self, until, timeout=MARGIN_S):
        return self.world.wait_updates(self.id, until, timeout)

    def saga(self, status=None, timeout=MARGIN_S):
        if status is None:
            return self.world.saga(self.id)
        return self.world.wait_saga(self.id, status, timeout)


def reserved_and_charging(o):
    """Drives a fresh order to PAYING; returns the charge command."""
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    return o.command("payment.charge.v1")


def test_happy_path_reserves_charges_confirms_and_completes(world):
    o = Order(world)
    placed = o.place()
    reserve = o.command("inventory.reserve.v1")
    assert reserve.body == {"order_id": o.id, "pet_ids": o.pet_ids}
    assert reserve.correlation_id == o.id
    assert reserve.headers["causation_id"] == placed
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})

    charge = o.command("payment.charge.v1")
    assert charge.body["amount_cents"] == o.total_cents
    assert charge.body["card_sealed"] == SEALED
    assert charge.body["card_last4"] == "4242"
    # expires_at is the database's now() + the pay timeout: the moment the saga gives up.
    assert 0 < world.seconds_until(charge.body["expires_at"]) <= PAY_TIMEOUT_MS / 1000.0
    timer = world.timer(o.id)
    assert timer is not None
    assert abs(world.seconds_between(timer, charge.body["expires_at"])) < 0.001
    o.send("payment.charged.v1", {"amount_cents": o.total_cents, "card_last4": "4242"})

    o.command("inventory.confirm_sale.v1")
    o.send("inventory.sale_confirmed.v1", {"pet_ids": o.pet_ids})

    changes = o.updates("COMPLETED")
    assert [c["status"] for c in changes] == ["RESERVING", "PAYING", "CONFIRMING", "COMPLETED"]
    assert [c["version"] for c in changes] == [2, 3, 4, 5]
    first = changes[0]
    assert first["user_id"] == o.user_id and first["pet_ids"] == o.pet_ids
    assert first["total_cents"] == o.total_cents and first["card_last4"] == "4242"
    assert first["reason"] is None

    saga = o.saga("COMPLETED")
    assert saga["version"] == 5 and saga["card_sealed"] is None and saga["reason"] is None
    assert world.timer(o.id) is None
    assert [(s["version"], s["from_status"], s["to_status"]) for s in world.steps(o.id)] == [
        (1, None, "PENDING"), (2, "PENDING", "RESERVING"), (3, "RESERVING", "PAYING"),
        (4, "PAYING", "CONFIRMING"), (5, "CONFIRMING", "COMPLETED")]


def test_declined_payment_releases_the_pets_and_cancels_with_the_reason(world):
    o = Order(world)
    reserved_and_charging(o)
    o.send("payment.declined.v1", {"reason": "INSUFFICIENT_FUNDS"})

    release = o.command("inventory.release.v1")
    assert release.body == {"order_id": o.id}
    assert o.saga("COMPENSATING")["reason"] == "INSUFFICIENT_FUNDS"
    o.send("inventory.released.v1", {"pet_ids": o.pet_ids})

    changes = o.updates("CANCELLED")
    assert [c["status"] for c in changes] == ["RESERVING", "PAYING", "COMPENSATING", "CANCELLED"]
    assert [c["reason"] for c in changes[2:]] == ["INSUFFICIENT_FUNDS", "INSUFFICIENT_FUNDS"]
    saga = o.saga("CANCELLED")
    assert saga["reason"] == "INSUFFICIENT_FUNDS" and saga["card_sealed"] is None
    assert world.timer(o.id) is None
    assert o.commands("payment.refund_or_void.v1") == []


def test_a_decline_after_the_saga_gave_up_reads_as_a_timeout(world):
    o = Order(world)
    reserved_and_charging(o)
    o.send("payment.declined.v1", {"reason": "EXPIRED"})
    o.command("inventory.release.v1")
    o.send("inventory.released.v1", {"pet_ids": []})
    assert o.saga("CANCELLED")["reason"] == "TIMEOUT"


def test_rejected_reservation_cancels_without_compensation(world):
    o = Order(world)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reservation_rejected.v1", {"unavailable_pet_ids": o.pet_ids[:1]})
    changes = o.updates("CANCELLED")
    assert [c["status"] for c in changes] == ["RESERVING", "CANCELLED"]
    assert changes[-1]["reason"] == "PET_UNAVAILABLE"
    assert o.saga("CANCELLED")["reason"] == "PET_UNAVAILABLE"
    assert o.commands("inventory.release.v1") == []
    assert o.commands("payment.charge.v1") == []


def test_customer_cancel_while_paying_refunds_or_voids_and_releases(world):
    o = Order(world)
    reserved_and_charging(o)
    o.send("order.cancel_requested.v1", {"user_id": o.user_id})
    o.command("payment.refund_or_void.v1")
    o.command("inventory.release.v1")
    o.send("payment.voided.v1")
    assert o.saga("COMPENSATING")["pending"] != 0  # the release is still outstanding
    o.send("inventory.released.v1", {"pet_ids": o.pet_ids})
    changes = o.updates("CANCELLED")
    assert [c["status"] for c in changes][-2:] == ["COMPENSATING", "CANCELLED"]
    assert changes[-1]["reason"] == "CANCELLED_BY_USER"


def test_pay_timeout_fires_refund_or_void_and_release(world):
    o = Order(world)
    reserved_and_charging(o)
    # No reply: the saga's timer gives up on the payment.
    bound = PAY_TIMEOUT_MS / 1000.0 + MARGIN_S
    refund = o.command("payment.refund_or_void.v1", timeout=bound)
    assert refund.body == {"order_id": o.id}
    assert "causation_id" not in refund.headers  # a timer caused it, not a message
    o.command("inventory.release.v1")
    assert o.saga("COMPENSATING")["reason"] == "TIMEOUT"
    step = world.steps(o.id)[-1]
    assert step["event"] == "timeout" and step["message_id"] is None

    # A charge arriving now is too late: ignored; the refund settles it.
    o.send("payment.charged.v1", {"amount_cents": o.total_cents, "card_last4": "4242"})
    o.send("payment.refunded.v1", {"amount_cents": o.total_cents})
    o.send("inventory.released.v1", {"pet_ids": o.pet_ids})
    assert o.saga("CANCELLED")["reason"] == "TIMEOUT"
    assert o.commands("inventory.confirm_sale.v1") == []


def test_duplicate_replies_change_nothing(world):
    o = Order(world)
    o.place()
    o.command("inventory.reserve.v1")
    reserved = o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("payment.charge.v1")
    version = o.saga("PAYING")["version"]
    steps = len(world.steps(o.id))

    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids}, message_id=reserved)  # redelivered
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})  # the same reply under a new id
    o.place()  # the order placed again under a new id
    # The saga consumes in order: once the charge's effect shows, the duplicates were handled.
    o.send("payment.charged.v1", {"amount_cents": o.total_cents, "card_last4": "4242"})
    o.command("inventory.confirm_sale.v1")

    assert o.saga("CONFIRMING")["version"] == version + 1
    assert len(world.steps(o.id)) == steps + 1
    assert len(o.commands("payment.charge.v1")) == 1
    assert len(o.commands("inventory.reserve.v1")) == 1
    assert world.in_inbox(reserved)
    o.send("inventory.sale_confirmed.v1", {"pet_ids": o.pet_ids})
    o.saga("COMPLETED")


def test_reply_for_an_unknown_order_is_acknowledged_and_dropped(world):
    stranger = Order(world)
    dlq_before = world.queue_depth("saga.events.dlq")
    stranger.send("inventory.reserved.v1", {"pet_ids": stranger.pet_ids})
    stranger.send("payment.charged.v1", {"amount_cents": 100, "card_last4": "4242"})
    # The saga consumes in order: a later order's first command proves both were handled.
    marker = Order(world)
    marker.place()
    marker.command("inventory.reserve.v1")
    assert stranger.saga() is None
    assert world.queue_depth("saga.events.dlq") == dlq_before
    assert world.queue_depth("saga.events") == 0
    assert stranger.commands() == []
    marker.send("inventory.reservation_rejected.v1", {"unavailable_pet_ids": marker.pet_ids})
    marker.saga("CANCELLED")


def test_an_order_with_nothing_to_pay_skips_the_charge(world):
    o = Order(world, total_cents=0)
    o.place()
    o.command("inventory.reserve.v1")
    o.send("inventory.reserved.v1", {"pet_ids": o.pet_ids})
    o.command("inventory.confirm_sale.v1")
    assert o.commands("payment.charge.v1") == []
    o.send("inventory.sale_confirmed.v1", {"pet_ids": o.pet_ids})
    changes = o.updates("COMPLETED")
    assert [c["status"] for c in changes] == ["RESERVING", "PAYING", "CONFIRMING", "COMPLETED"]


def test_compensation_that_keeps_failing_parks_the_saga_for_an_operator(world, tmp_path):
    with private_saga(tmp_path / "order-saga.log", replace=True, **FAST) as saga:
        o = Order(world)
        reserved_and_charging(o)
        # Nobody answers: the payment times out, compensations are sent and re-sent, then parked.
        bound = FAST["SAGA_PAY_TIMEOUT_MS"] / 1000.0 + fast_saga_bound_s(
            FAST["SAGA_COMPENSATE_TIMEOUT_MS"])
        o.command("inventory.release.v1", timeout=bound, nth=FAST_TRIES)
        parked = o.saga("NEEDS_OPERATOR", timeout=bound)
        assert parked["reason"] == "TIMEOUT"
        assert world.timer(o.id) is None
        assert len(o.commands("payment.refund_or_void.v1")) == FAST_TRIES
        assert len(o.commands("inventory.release.v1")) == FAST_TRIES
        assert saga.metrics()['petstore_saga_transitions_total{status="NEEDS_OPERATOR"}'] >= 1

        # Acknowledgements that arrive after parking still finish the saga.
        o.send("payment.voided.v1")
        o.send("inventory.released.v1", {"pet_ids": o.pet_ids})
        changes = o.updates("CANCELLED")
    assert [c["status"] for c in changes][-3:] == ["COMPENSATING", "NEEDS_OPERATOR", "CANCELLED"]


def test_a_confirmation_never_acknowledged_parks_the_saga_for_an_operator(world, tmp_path):
    """CONFIRMING is retried, never compensated, but not forever: after SAGA_MAX_CONFIRM_TRIES
    timeouts the saga waits in NEEDS_OPERATOR; a confirmation that comes later completes it."""
    with private_saga(tmp_path / "order-saga.log", replace=True, **FAST) as saga:
        o = Order(world)
        reserved_and_charging(o)
        o.send("payment.charged.v1", {"amount_cents": o.total_cents, "card_last4": "4242"})
        bound = fast_saga_bound_s(FAST["SAGA_CONFIRM_TIMEOUT_MS"])
        o.command("inventory.confirm_sale.v1", timeout=bound, nth=FAST_TRIES)
        parked = o.saga("NEEDS_OPERATOR", timeout=bound)
        assert parked["reason"] is None
        assert world.timer(o.id) is None
        assert len(o.commands("inventory.confirm_sale.v1")) == FAST_TRIES
        assert o.commands("inventory.release.v1") == []
        assert o.commands("payment.refund_or_void.v1") == []
        assert saga.metrics()['petstore_saga_transitions_total{status="NEEDS_OPERATOR"}'] >= 1
        assert world.steps(o.id)[-1]["why"].startswith("the sale confirmation")

        o.send("inventory.sale_confirmed.v1", {"pet_ids": o.pet_ids})
        changes = o.updates("COMPLETED")
        assert o.saga("COMPLETED")["reason"] is None
    assert [c["status"] for c in changes][-3:] == ["CONFIRMING", "NEEDS_OPERATOR", "COMPLETED"]


def test_a_timer_that_keeps_failing_is_set_aside_and_the_others_fire(world, tmp_path):
    """One saga whose timeout cannot be handled (here the database refuses its step with a
    constraint violation, as a bad row would) backs off, is parked after a bounded number of
    attempts with a metric, and never holds up the timers of the other sagas."""
    bad = Order(world)
    good = [Order(world) for _ in range(3)]
    fn = "test_refuse_" + uuid.uuid4().hex[:12]
    admin = db.admin(os.environ.get("SAGA_DB", "saga"))
    db.rows(admin, f"""
        CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.order_id = '{bad.id}' AND NEW.event = 'timeout' THEN
                RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$""")
    db.rows(admin, f"CREATE TRIGGER {fn} BEFORE INSERT ON saga_steps"
                   f" FOR EACH ROW EXECUTE FUNCTION {fn}()")
    try:
        with private_saga(tmp_path / "order-saga.log", replace=True, **FAST) as saga:
            bad.place()  # first: its timer is the oldest due
            bad.command("inventory.reserve.v1")
            for o in good:
                o.place()
            for o in good:
                o.command("inventory.release.v1", timeout=MARGIN_S)
                assert o.saga("COMPENSATING")["reason"] == "TIMEOUT"

            def parked():
                rows = db.rows(world.db, "SELECT failures, last_error, parked_at"
                               " FROM saga_timers WHERE order_id = %s", bad.id)
                return rows[0] if rows and rows[0]["parked_at"] is not None else None
            timer = wait_until(parked, timeout=MARGIN_S, what="the failing timer parked")
            assert timer["failures"] >= 2
            assert "refused for the test" in timer["last_error"]
            assert bad.saga()["status"] == "RESERVING"
            assert bad.commands("inventory.release.v1") == []
            assert saga.metrics()["petstore_saga_timers_parked_total"] >= 1

            # An operator who fixed the cause puts the timer back: it fires.
            db.rows(admin, f"DROP TRIGGER {fn} ON saga_steps")
            db.rows(world.db, "UPDATE saga_timers SET parked_at = NULL, failures = 0,"
                    " deadline = now() WHERE order_id = %s", bad.id)
            bad.command("inventory.release.v1", timeout=MARGIN_S)
            assert bad.saga("COMPENSATING")["reason"] == "TIMEOUT"
    finally:
        db.rows(admin, f"DROP TRIGGER IF EXISTS {fn} ON saga_steps")
        db.rows(admin, f"DROP FUNCTION IF EXISTS {fn}()")
        admin.close()
