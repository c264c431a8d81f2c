"""The checker (tests/lib/checker.py) against the real system: it passes a healthy batch of
orders, and it catches each kind of violation when one is really produced: an order stuck
behind a stopped payment service, a dead letter nobody injected, a card balance changed behind
the saga's back, events lost on their way to the audit log, and an event published twice under
two ids. Every test puts the system back as it found it (payment and audit running, the .dlq
purged of its poison, the balance restored) so that the tests after it see a healthy system."""
import json
import subprocess
import sys
import time
import uuid

import pika

import db
import dlq
import httpc
from amqp import Broker
from checker import Checker
from daemons import publish_events, replacing
from petstore_env import need
from shop import (api, create_card, create_pet, new_customer, petstore, place_order,
                  wait_status)
from wait import wait_until


def outboxes_drained():
    for service in ("storefront", "inventory", "payment", "saga"):
        conn = db.connect(service)
        try:
            if db.value(conn, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
                return False
        finally:
            conn.close()
    return True


def test_a_healthy_batch_passes_with_its_figures():
    c = Checker()
    token = new_customer()
    rich, _ = create_card(1_000_000)
    poor, _ = create_card(100)
    c.begin()
    # One order cancelled by its customer while payment is away (so that the cancel surely
    # comes before the charge), then the rest with payment back.
    petstore("stop", "payment")
    try:
        cancelled = place_order(token, rich, [create_pet(900)])
        wait_status(token, cancelled, ("PAYING",), timeout=30)
        assert httpc.post(api() + f"/v1/orders/{cancelled}/cancel", token=token).status == 202
    finally:
        petstore("start", "payment")
    orders = [cancelled]
    orders += [place_order(token, rich, [create_pet(1_000 + i)]) for i in range(4)]
    orders += [{"id": place_order(token, poor, [create_pet(5_000)])} for _ in range(2)]

    ledger = c.verify(orders, bound_s=30)
    print(ledger.text())
    assert ledger.ok, ledger.text()
    f = ledger.figures
    assert (f["orders"], f["completed"], f["cancelled"], f["stuck"]) == (7, 4, 3, 0), f
    assert f["cancelled_INSUFFICIENT_FUNDS"] == 2 and f["cancelled_CANCELLED_BY_USER"] == 1, f
    assert f["charges"] == 4 + f["refunds"] and f["declines"] == 2, f
    assert f["charged_cents"] - f["refunded_cents"] == 1_000 + 1_001 + 1_002 + 1_003, f
    assert f["pets_sold"] == 4 and f["pets_released"] == 3, f
    assert f["lost"] == f["duplicated"] == f["unexpected"] == f["dead_letters"] == 0, f
    assert f["events"] > 0 and f["audited"] == f["events"], f
    assert f["commands"] > 0 and f["commands_handled"] == f["commands"], f
    assert f["check_s"] < 5, f
    assert ledger.text().splitlines()[-1] == "PASS"


def test_the_command_line_takes_a_snapshot_and_verifies_with_an_exit_status(tmp_path):
    tool = [sys.executable, str(__import__("checker").__file__)]
    snap = tmp_path / "snap.json"
    subprocess.run([*tool, "begin", "-o", snap], check=True, capture_output=True, timeout=60)
    token = new_customer()
    number, _ = create_card(100_000)
    oid = place_order(token, number, [create_pet(2_000)])
    (tmp_path / "orders").write_text(oid + "\n")
    out = subprocess.run([*tool, "verify", "--snapshot", snap, "--orders", tmp_path / "orders",
                          "--bound", "20", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["figures"]["completed"] == 1
    out = subprocess.run([*tool, "verify", "--snapshot", snap, "--since-snapshot", "--bound",
                          "20"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("PASS"), out.stdout + out.stderr
    # A stuck order fails the command: exit status 1.
    petstore("stop", "payment")
    try:
        stuck = place_order(token, number, [create_pet(2_000)])
        wait_status(token, stuck, ("PAYING",), timeout=30)
        (tmp_path / "orders").write_text(json.dumps([{"id": stuck}]))
        out = subprocess.run([*tool, "verify", "--snapshot", snap, "--orders",
                              tmp_path / "orders", "--bound", "0.5"], capture_output=True,
                             text=True, timeout=60)
    finally:
        petstore("start", "payment")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"order {stuck} stuck in PAYING" in out.stdout and "FAIL" in out.stdout, out.stdout
    wait_status(token, stuck)


def test_an_order_stuck_behind_a_stopped_payment_is_reported_with_its_saga_state():
    c = Checker()
    token = new_customer()
    number, _ = create_card(50_000)
    c.begin()
    petstore("stop", "payment")
    try:
        oid = place_order(token, number, [create_pet(3_000)])
        wait_status(token, oid, ("PAYING",), timeout=30)
        started = time.monotonic()
        ledger = c.verify([oid], bound_s=1.0)
        assert time.monotonic() - started < 10, "the bound holds"
    finally:
        petstore("start", "payment")
    print(ledger.text())
    assert not ledger.ok
    assert ledger.figures["stuck"] == 1
    stuck = [p for p in ledger.problems if p.startswith(f"order {oid}")]
    assert len(stuck) == 1, ledger.problems
    # Its charge waits in payment's queue, with nobody to take it: undelivered, not lost.
    (waiting,) = [p for p in ledger.problems if "not handled yet" in p]
    assert "payment.charge.v1" in waiting and "payment.commands (1 messages there, 0 consumers)" \
        in waiting, waiting
    assert ledger.figures["lost"] == 0 and ledger.figures["undelivered"] == 1
    assert f"order {oid} stuck in PAYING" in stuck[0]
    assert "waits for payment.charged or payment.declined" in stuck[0]
    assert "timer" in stuck[0] and "saga v" in stuck[0] and "storefront shows PAYING" in stuck[0]
    assert ledger.text().splitlines()[-1].startswith("FAIL")

    # Once payment is back the order finishes one way or the other, and then all is well.
    wait_status(token, oid, timeout=60)
    healed = c.verify([oid], bound_s=30)
    assert healed.ok, healed.text()


def test_a_dead_letter_is_reported_unless_it_is_the_injected_poison():
    c = Checker()
    c.begin()
    with Broker(need("STOREFRONT_AMQP_URL")) as broker:
        props = pika.BasicProperties(message_id=str(uuid.uuid4()), type="inventory.list_pet.v1",
                                     content_type="application/json", delivery_mode=2,
                                     user_id="storefront", app_id="storefront")
        poison = broker.publish("inventory.list_pet.v1", None, body=b'{"name": "rex", "spec',
                                properties=props, sender=None)
    try:
        wait_until(lambda: dlq.present("inventory.commands.dlq", [poison]) == {poison},
                   timeout=30, what="the poison in inventory.commands.dlq")
        ledger = c.verify([], bound_s=5)
        print(ledger.text())
        assert not ledger.ok
        assert ledger.figures["dead_letters"] == 1
        (problem,) = ledger.problems
        assert poison in problem and "inventory.commands.dlq" in problem, problem
        assert "inventory.list_pet.v1" in problem and "contract" in problem, problem

        expected = c.verify([], bound_s=5, poison_ids=[poison])
        assert expected.ok, expected.text()
        assert expected.figures["dead_letters_expected"] == 1
    finally:
        dlq.cleanup("inventory.commands.dlq", [poison])
    assert dlq.present("inventory.commands.dlq", [poison]) == set()


def test_a_balance_changed_behind_the_sagas_back_is_reported():
    c = Checker()
    token = new_customer()
    number, card = create_card(20_000)
    c.begin()
    oid = place_order(token, number, [create_pet(1_500)])
    wait_status(token, oid)
    pay = db.connect("payment")
    db.rows(pay, "UPDATE cards SET balance_cents = balance_cents + 700 WHERE id = %s", card)
    try:
        ledger = c.verify([oid], bound_s=10)
    finally:
        db.rows(pay, "UPDATE cards SET balance_cents = balance_cents - 700 WHERE id = %s", card)
        pay.close()
    print(ledger.text())
    assert not ledger.ok
    (problem,) = ledger.problems
    assert f"card {card}" in problem and "changed by -800 cents" in problem, problem
    assert "= -1500" in problem, problem
    assert ledger.figures["completed"] == 1
    assert c.verify([oid], bound_s=10).ok, "restored"


def test_events_purged_on_their_way_to_the_audit_log_are_lost():
    c = Checker()
    token = new_customer()
    number, _ = create_card(20_000)
    c.begin()
    with replacing("audit"):
        oid = place_order(token, number, [create_pet(1_200)])
        wait_status(token, oid)
        wait_until(outboxes_drained, what="every outbox row published")
        # The relays published with confirms: the events are in audit.events. An operator's
        # purge of the queue loses them for real.
        conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
        try:
            purged = conn.channel().queue_purge("audit.events").method.message_count
        finally:
            conn.close()
    assert purged > 0
    ledger = c.verify([oid], bound_s=3)
    print(ledger.text())
    assert not ledger.ok
    lost = [p for p in ledger.problems if "lost" in p]
    assert len(lost) == ledger.figures["lost"] == purged, ledger.problems
    assert all("never handled by audit.events" in p for p in lost), lost
    assert any("saga.order_status_changed.v1" in p and oid in p for p in lost), lost
    assert ledger.figures["audited"] == ledger.figures["events"] - purged
    assert ledger.figures["commands_handled"] == ledger.figures["commands"], "commands were fine"


def test_an_event_published_twice_and_one_nobody_published_are_reported():
    c = Checker()
    token = new_customer()
    number, _ = create_card(20_000)
    c.begin()
    oid = place_order(token, number, [create_pet(1_300)])
    wait_status(token, oid)
    # The saga writing its COMPLETED event a second time under a new id (as a saga that lost
    # its optimistic version check would): a real outbox row, really published by its relay.
    saga = db.connect("saga")
    try:
        copy = db.value(saga, """
            WITH id AS (SELECT gen_random_uuid() AS m)
            INSERT INTO outbox (partition, exchange, routing_key, message_id, type,
                                correlation_id, causation_id, traceparent, app_id, headers, body)
            SELECT o.partition, o.exchange, o.routing_key, id.m, o.type, o.correlation_id,
                   o.causation_id, o.traceparent, o.app_id,
                   o.headers || jsonb_build_object('cloudEvents_id', id.m::text), o.body
            FROM outbox o, id
            WHERE o.correlation_id = %s AND o.type = 'saga.order_status_changed.v1'
              AND o.body::jsonb ->> 'status' = 'COMPLETED'
            RETURNING message_id::text""", oid)
    finally:
        saga.close()
    # And an event that no outbox wrote, published straight to the broker.
    (stray,) = publish_events(1)
    audit = db.connect("audit")
    try:
        wait_until(lambda: db.value(audit, "SELECT count(*) FROM event_log WHERE message_id = "
                                           "ANY(%s::uuid[])", [copy, stray]) == 2,
                   what="both in the audit log")
    finally:
        audit.close()
    ledger = c.verify([oid], bound_s=10)
    print(ledger.text())
    assert (ledger.figures["duplicated"], ledger.figures["unexpected"]) == (1, 1), ledger.problems
    (dup,) = [p for p in ledger.problems if p.startswith("duplicated")]
    assert copy in dup and oid in dup and "saga.order_status_changed.v1" in dup, dup
    (unexpected,) = [p for p in ledger.problems if p.startswith("unexpected")]
    assert stray in unexpected and "order.cancel_requested.v1" in unexpected, unexpected
    injected = c.verify([oid], bound_s=10, injected_ids=[stray])
    assert injected.figures["unexpected"] == 0 and injected.figures["duplicated"] == 1
