"""The inventory daemon driven through its queue, as the saga would: real broker, real database,
real inventory process and relay. Also the consumer loop's guarantees: inbox dedup and
dead-lettering of poison."""
import json
import uuid

import pytest

import db
from amqp import Broker, envelope, get_all, queue_info
from wait import wait_until


@pytest.fixture
def inv():
    broker = Broker()
    cap = broker.capture("petstore.events", "inventory.#")
    conn = db.connect("inventory")
    yield broker, cap, conn
    conn.close()
    broker.close()


def new_pets(conn, n, price=1000):
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for i, pid in enumerate(ids):
        db.rows(conn, "INSERT INTO pets (id, name, species, price_cents) VALUES (%s, %s, 'dog', %s)",
                pid, f"test-{i}", price)
    return ids


def statuses(conn, ids):
    return {r["id"]: r["status"] for r in
            db.rows(conn, "SELECT id::text, status FROM pets WHERE id = ANY(%s::uuid[])", ids)}


def reply(cap, order, type_, count=1):
    return cap.wait_for(lambda m, p, b: p.correlation_id == order and p.type == type_,
                        count=count, what=f"{type_} for {order}")


def send(broker, type_, payload, message_id=None):
    return broker.publish(type_, payload, correlation_id=payload.get("order_id"),
                          message_id=message_id)


def test_a_reservation_is_all_or_nothing(inv):
    broker, cap, conn = inv
    free = new_pets(conn, 2)
    taken = new_pets(conn, 1)
    db.rows(conn, "UPDATE pets SET status = 'sold', order_id = %s WHERE id = %s",
            str(uuid.uuid4()), taken[0])
    order = str(uuid.uuid4())
    missing = str(uuid.uuid4())
    send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": free + taken + [missing]})
    (_m, _p, body), = reply(cap, order, "inventory.reservation_rejected.v1")
    assert sorted(json.loads(body)["unavailable_pet_ids"]) == sorted(taken + [missing])
    assert statuses(conn, free) == {pid: "available" for pid in free}

    order2 = str(uuid.uuid4())
    send(broker, "inventory.reserve.v1", {"order_id": order2, "pet_ids": free})
    (_m, _p, body), = reply(cap, order2, "inventory.reserved.v1")
    assert sorted(json.loads(body)["pet_ids"]) == sorted(free)
    assert statuses(conn, free) == {pid: "reserved" for pid in free}
    changes = cap.wait_for(lambda m, p, b: p.type == "inventory.pet_status_changed.v1"
                           and json.loads(b)["pet_id"] in free, count=2, what="status changes")
    assert {json.loads(b)["status"] for _m, _p, b in changes} == {"reserved"}
    assert db.value(conn, "SELECT total_cents FROM reservations WHERE order_id = %s", order2) == 2000


def test_two_orders_racing_for_one_pet_reserve_it_once(inv):
    broker, cap, conn = inv
    pet = new_pets(conn, 1)
    orders = [str(uuid.uuid4()) for _ in range(6)]
    for order in orders:
        send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": pet})
    got = cap.wait_for(lambda m, p, b: p.correlation_id in orders and p.type in (
        "inventory.reserved.v1", "inventory.reservation_rejected.v1"), count=len(orders),
        what="an answer per order")
    winners = [p.correlation_id for _m, p, _b in got if p.type == "inventory.reserved.v1"]
    assert len(winners) == 1
    assert db.value(conn, "SELECT order_id::text FROM pets WHERE id = %s", pet[0]) == winners[0]


def test_release_restores_availability_and_is_idempotent(inv):
    broker, cap, conn = inv
    pets = new_pets(conn, 2)
    order = str(uuid.uuid4())
    send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": pets})
    reply(cap, order, "inventory.reserved.v1")
    send(broker, "inventory.release.v1", {"order_id": order})
    send(broker, "inventory.release.v1", {"order_id": order})
    released = reply(cap, order, "inventory.released.v1", count=2)
    bodies = sorted(len(json.loads(b)["pet_ids"]) for _m, _p, b in released)
    assert bodies == [0, 2], "the second release finds nothing to release"
    assert statuses(conn, pets) == {pid: "available" for pid in pets}
    versions = db.rows(conn, "SELECT version FROM pets WHERE id = ANY(%s::uuid[])", pets)
    assert all(v["version"] == 3 for v in versions)


def test_a_release_that_overtakes_its_reserve_leaves_a_tombstone(inv):
    broker, cap, conn = inv
    pets = new_pets(conn, 1)
    order = str(uuid.uuid4())
    send(broker, "inventory.release.v1", {"order_id": order})
    reply(cap, order, "inventory.released.v1")
    send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": pets})
    reply(cap, order, "inventory.reservation_rejected.v1")
    assert statuses(conn, pets) == {pets[0]: "available"}


def test_confirming_a_sale_is_idempotent(inv):
    broker, cap, conn = inv
    pets = new_pets(conn, 1)
    order = str(uuid.uuid4())
    send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": pets})
    reply(cap, order, "inventory.reserved.v1")
    for _ in range(2):
        send(broker, "inventory.confirm_sale.v1", {"order_id": order})
    for _m, _p, body in reply(cap, order, "inventory.sale_confirmed.v1", count=2):
        assert json.loads(body)["pet_ids"] == pets
    assert statuses(conn, pets) == {pets[0]: "sold"}
    assert db.value(conn, "SELECT version FROM pets WHERE id = %s", pets[0]) == 3


def test_the_same_message_delivered_twice_has_one_effect(inv):
    broker, cap, conn = inv
    pets = new_pets(conn, 1)
    order = str(uuid.uuid4())
    mid = str(uuid.uuid4())
    send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": pets}, message_id=mid)
    send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": pets}, message_id=mid)
    marker = str(uuid.uuid4())
    send(broker, "inventory.release.v1", {"order_id": marker})
    reply(cap, marker, "inventory.released.v1")
    seen = cap.settle(0.3)
    assert len([p for _m, p, _b in seen if p.correlation_id == order]) == 1, "one reply"
    assert len([p for _m, p, _b in seen if p.correlation_id == pets[0]]) == 1, "one change"
    assert db.value(conn, "SELECT count(*) FROM inbox WHERE message_id = %s", mid) == 1


def test_poison_is_dead_lettered_with_its_failure_and_changes_nothing(inv):
    broker, cap, conn = inv
    pets = new_pets(conn, 1)
    order = str(uuid.uuid4())
    cases = {
        "contract": (json.dumps({"order_id": order, "pet_ids": "not-a-list"}).encode(),
                     "inventory.reserve.v1"),
        "malformed": (b'{"order_id":', "inventory.reserve.v1"),
    }
    ids = {}
    for case, (body, type_) in cases.items():
        props = envelope(type_, order)
        ids[props.message_id] = "contract"  # a body that is not JSON breaks the contract too
        broker.publish(type_, None, exchange="petstore.commands", routing_key="inventory",
                       body=body, properties=props)
    unknown = envelope("inventory.teleport.v1", order)
    ids[unknown.message_id] = "unknown-type"
    broker.publish("x", None, exchange="petstore.commands", routing_key="inventory",
                   body=b"{}", properties=unknown)

    def dead():
        return [m for m in get_all("inventory.commands.dlq", broker)]
    seen = {}
    wait_until(lambda: seen.update({p.message_id: (p, b) for _m, p, b in dead()})
               or set(ids) <= set(seen), what="the poison in inventory.commands.dlq")
    for mid, failure in ids.items():
        props, _body = seen[mid]
        assert props.headers["x-petstore-failure-class"] == failure
        assert props.headers["x-petstore-error-code"] == "ERR_INVALID"
        assert props.headers["x-petstore-original-queue"] == "inventory.commands"
        assert props.headers["x-petstore-error"]
    assert statuses(conn, pets) == {pets[0]: "available"}
    wait_until(lambda: queue_info("inventory.commands").get("messages") == 0,
               what="the work queue drained")
