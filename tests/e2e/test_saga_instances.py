"""Two order-saga instances on one saga database and one saga.events queue: competing consumers
and two timer workers racing on the same sagas (a reply against a timeout, a cancellation
against the order's own progress). Whatever interleaving the race produces, every order must
end in exactly one terminal state, be charged at most once, have no command take effect twice,
and no message may be lost or dead-lettered because of a version conflict."""
import contextlib
import os
import threading
import uuid

import db
import httpc
from amqp import Broker, queue_info
from saga_instance import launcher_saga_metrics, private_saga
from shop import (TERMINAL, api, balance, create_card, create_pet, ledger, net_charged,
                  new_customer, petstore, wait_status)
from wait import wait_until

DLQS = ("saga.events.dlq", "inventory.commands.dlq", "payment.commands.dlq")


def total(metrics, name):
    """The sum of a metric over its label sets."""
    return sum(v for k, v in metrics.items() if k == name or k.startswith(name + "{"))


def cancel(token, oid):
    """Asks to cancel; 202 or, if the saga got further first, 409."""
    r = httpc.post(api() + f"/v1/orders/{oid}/cancel", token=token)
    assert r.status in (202, 409), r


def shop_wave(token, number, pets, cancel_every, canceller):
    """Places one order per (pet, shared pet or None), from two threads at once, and calls
    canceller(oid, thread_state) for every cancel_every-th one right after placing it. Orders
    refused at the door because their shared pet is held by another are left out."""
    orders = []
    lock = threading.Lock()

    def worker(part):
        state = {}
        try:
            for i, (pet, shared) in part:
                r = httpc.post(api() + "/v1/orders",
                               {"card_number": number,
                                "pet_ids": [pet] if shared is None else [pet, shared]},
                               token=token, headers={"Idempotency-Key": str(uuid.uuid4())})
                if r.status == 409 and shared is not None:
                    continue  # the shared pet is already held by another order
                assert r.status == 202, r
                oid = r.json["id"]
                if i % cancel_every == 0:
                    canceller(oid, state)
                with lock:
                    orders.append(oid)
        finally:
            for thing in state.values():
                thing.close()
    items = list(enumerate(pets))
    threads = [threading.Thread(target=worker, args=(items[k::2],)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(orders) >= sum(1 for _p, shared in pets if shared is None)
    return orders


def http_cancel(token):
    def canceller(oid, _state):
        cancel(token, oid)
    return canceller


def double_cancel(oid, state):
    """Once the order's saga exists, two order.cancel_requested for it back to back, as the
    storefront sends for two clicks on "cancel": round-robin hands one to each instance, which
    load the same version and race to save it."""
    if "db" not in state:
        state["db"] = db.connect("saga")
        state["broker"] = Broker()
    user = wait_until(lambda: db.value(state["db"], "SELECT user_id::text FROM sagas"
                                       " WHERE order_id = %s", oid), what=f"the saga of {oid}")
    for _ in range(2):
        state["broker"].publish("order.cancel_requested.v1", {"order_id": oid, "user_id": user},
                                correlation_id=oid)


@contextlib.contextmanager
def slow_saga_steps(ms):
    """Every saga step waits ms inside its transaction (a trigger on saga_steps), so that two
    instances handling inputs of one saga at about the same time overlap and conflict."""
    fn = "test_slow_" + uuid.uuid4().hex[:12]
    admin = db.admin(os.environ.get("SAGA_DB", "saga"))
    db.rows(admin, f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$"
                   f" BEGIN PERFORM pg_sleep({ms / 1000.0}); RETURN NEW; END $$")
    db.rows(admin, f"CREATE TRIGGER {fn} BEFORE INSERT ON saga_steps"
                   f" FOR EACH ROW EXECUTE FUNCTION {fn}()")
    try:
        yield
    finally:
        db.rows(admin, f"DROP TRIGGER IF EXISTS {fn} ON saga_steps")
        db.rows(admin, f"DROP FUNCTION IF EXISTS {fn}()")
        admin.close()


def test_two_saga_instances_race_on_timers_and_versions_and_break_nothing(tmp_path):
    token = new_customer()
    number, card = create_card(10_000_000)
    shared = [create_pet(500), create_pet(600)]  # contended: at most one order may buy each
    wave_a = [(create_pet(1000 + i), shared[0] if i % 3 == 0 else None) for i in range(8)]
    wave_b = [(create_pet(2000 + i), shared[1] if i % 3 == 0 else None) for i in range(16)]
    dlq_before = {q: queue_info(q)["messages"] for q in DLQS}

    with private_saga(tmp_path / "order-saga-2.log") as second:
        # Wave A while payment is down: charges time out on both timer workers, compensations
        # are re-sent until payment is back; cancellations race the orders they cancel.
        petstore("stop", "payment")
        try:
            orders = shop_wave(token, number, wave_a, 3, http_cancel(token))
            saga_db = db.connect("saga")
            try:
                wait_until(lambda: db.value(
                    saga_db, "SELECT count(*) FROM saga_steps WHERE event = 'timeout'"
                    " AND order_id = ANY(%s::uuid[])", orders) >= 3,
                    timeout=60, what="payment timeouts fired by the timer workers")
            finally:
                saga_db.close()
        finally:
            petstore("start", "payment")
        # Wave B with everything up and slow saga steps: replies, double cancellations and
        # timers race on the two instances and meet as version conflicts.
        with slow_saga_steps(50):
            orders += shop_wave(token, number, wave_b, 2, double_cancel)
            wait_until(lambda: all(httpc.get(api() + f"/v1/orders/{oid}", token=token)
                                   .json["status"] in TERMINAL for oid in orders),
                       timeout=120, interval=0.2, what="every order finished")

        finals = {oid: wait_status(token, oid, timeout=120) for oid in orders}
        metrics = [launcher_saga_metrics(), second.metrics()]

    completed = [oid for oid, o in finals.items() if o["status"] == "COMPLETED"]
    cancelled = [oid for oid, o in finals.items() if o["status"] == "CANCELLED"]
    assert completed and cancelled, {o["status"] for o in finals.values()}

    # Both instances consumed (competing consumers), and conflicts were retried, not failed.
    for m in metrics:
        assert total(m, "petstore_saga_transitions_total") > 0
    conflicts = sum(total(m, "petstore_saga_version_conflicts_total") for m in metrics)
    timeouts = [total(m, "petstore_saga_timeouts_total") for m in metrics]
    print(f"version conflicts retried: {conflicts:.0f}; timeouts fired per instance: {timeouts}")
    assert conflicts > 0, "the double cancellations raced on the two instances"
    assert sum(timeouts) >= 3
    assert {q: queue_info(q)["messages"] for q in DLQS} == dlq_before, "nothing dead-lettered"

    saga_db = db.connect("saga")
    inv = db.connect("inventory")
    try:
        for oid, final in finals.items():
            steps = db.rows(saga_db, "SELECT version, from_status, to_status FROM saga_steps"
                            " WHERE order_id = %s ORDER BY version", oid)
            # One step per version, no gap: no lost and no duplicated transition.
            assert [s["version"] for s in steps] == list(range(1, len(steps) + 1)), oid
            ends = [s for s in steps if s["to_status"] in TERMINAL]
            assert len(ends) == 1 and ends[0] is steps[-1], (oid, steps)
            assert steps[-1]["to_status"] == final["status"], oid
            for status in ("RESERVING", "PAYING", "CONFIRMING"):
                assert sum(1 for s in steps if s["to_status"] == status
                           and s["from_status"] != status) <= 1, (oid, status, steps)
            saga = db.rows(saga_db, "SELECT status FROM sagas WHERE order_id = %s", oid)[0]
            assert saga["status"] == final["status"], oid
            kinds = [kind for kind, _ in ledger(oid)]
            assert kinds.count("charge") <= 1 and kinds.count("refund") <= 1, (oid, kinds)
            assert net_charged(oid) == (final["total_cents"] if oid in completed else 0), oid
        assert db.value(saga_db, "SELECT count(*) FROM saga_timers WHERE order_id ="
                        " ANY(%s::uuid[])", orders) == 0, "no timer left for a finished saga"

        every_pet = [p for p, _ in wave_a + wave_b] + shared
        sold = db.rows(inv, "SELECT id::text, order_id::text FROM pets WHERE id = ANY(%s::uuid[])"
                       " AND status = 'sold'", every_pet)
        for row in sold:
            assert row["order_id"] in completed, row
        for oid in completed:
            assert {r["id"] for r in sold if r["order_id"] == oid} == set(finals[oid]["pet_ids"])
        assert db.value(inv, "SELECT count(*) FROM pets WHERE id = ANY(%s::uuid[]) AND status ="
                        " 'reserved'", every_pet) == 0, "no pet stays reserved"
    finally:
        saga_db.close()
        inv.close()
    assert balance(card) == 10_000_000 - sum(finals[o]["total_cents"] for o in completed)
