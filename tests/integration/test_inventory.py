"""The inventory daemon driven through its queue, as the saga would: real broker, real database,
real inventory process and relay. Also the consumer loop's guarantees: inbox dedup and
dead-lettering of poison."""
import json
import subprocess
import uuid

import psycopg2
import pytest

import db
from amqp import Broker, envelope, queue_info
from daemons import wait_dead_letters
from petstore_env import binary
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
    # The reply names the pets it changed with their new versions (the storefront's catalog is
    # kept from them): no event per pet.
    versions = {r["id"]: r["version"] for r in db.rows(
        conn, "SELECT id::text AS id, version FROM pets WHERE id = ANY(%s::uuid[])", free)}
    assert {p["pet_id"]: p["version"] for p in json.loads(body)["pets"]} == versions
    assert not [p for _m, p, _b in cap.messages if p.type == "inventory.pet_status_changed.v1"]
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
    replies = [b for _m, p, b in seen if p.correlation_id == order]
    assert len(replies) == 1, "one reply"
    assert [c["pet_id"] for c in json.loads(replies[0])["pets"]] == pets, "one change"
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

    seen = dead_lettered(broker, list(ids))
    for mid, failure in ids.items():
        props, _body = seen[mid]
        assert props.headers["x-petstore-failure-class"] == failure
        assert props.headers["x-petstore-error-code"] == "ERR_INVALID"
        assert props.headers["x-petstore-original-queue"] == "inventory.commands"
        assert props.headers["x-petstore-error"]
    assert statuses(conn, pets) == {pets[0]: "available"}
    wait_until(lambda: queue_info("inventory.commands").get("messages") == 0,
               what="the work queue drained")


def lock_waiters(conn):
    """Backends of this database waiting for a lock (the daemon's, in these tests)."""
    return db.value(conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")


class Concurrent:
    """An open transaction of another writer, committed on demand and rolled back otherwise, so a
    failing test never leaves the daemon waiting on its locks."""

    def __init__(self, *statements):
        self.conn = db.connect("inventory")
        self.conn.autocommit = False
        with self.conn.cursor() as cur:
            for sql, args in statements:
                cur.execute(sql, args)

    def commit(self):
        self.conn.commit()

    def close(self):
        self.conn.rollback()
        self.conn.close()


def settle_after(broker, cap):
    """Everything the inventory answered before a marker command sent now was answered."""
    marker = str(uuid.uuid4())
    send(broker, "inventory.release.v1", {"order_id": marker})
    reply(cap, marker, "inventory.released.v1")
    return cap.settle(0.3)


def dead_lettered(_broker, message_ids):
    """Waits for the messages in inventory.commands.dlq and takes them, and only them, out of it;
    returns {message_id: (props, body)}."""
    return {mid: got[0] for mid, got in
            wait_dead_letters("inventory.commands.dlq", message_ids).items()}


def test_a_repeated_reserve_of_a_rejected_order_names_the_same_pets(inv):
    broker, cap, conn = inv
    free = new_pets(conn, 1)
    missing = str(uuid.uuid4())
    order = str(uuid.uuid4())
    for _ in range(2):
        send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": free + [missing]})
    for _m, _p, body in reply(cap, order, "inventory.reservation_rejected.v1", count=2):
        assert json.loads(body)["unavailable_pet_ids"] == [missing]
    assert statuses(conn, free) == {free[0]: "available"}


def test_a_pet_freed_while_a_reserve_waits_for_it_is_reserved(inv):
    broker, cap, conn = inv
    pet = new_pets(conn, 1)[0]
    holder = str(uuid.uuid4())
    db.rows(conn, "UPDATE pets SET status = 'reserved', order_id = %s, version = 2 WHERE id = %s",
            holder, pet)
    release = Concurrent(("UPDATE pets SET status = 'available', order_id = NULL, version = 3"
                          " WHERE id = %s", (pet,)))
    try:
        order = str(uuid.uuid4())
        send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": [pet]})
        wait_until(lambda: lock_waiters(conn) > 0, what="the reserve waiting for the pet")
        release.commit()
    finally:
        release.close()
    (_m, _p, body), = reply(cap, order, "inventory.reserved.v1")
    assert json.loads(body)["pets"] == [{"pet_id": pet, "version": 4}], "the change it made"
    assert db.rows(conn, "SELECT status, order_id::text, version FROM pets WHERE id = %s", pet) \
        == [{"status": "reserved", "order_id": order, "version": 4}]
    assert db.value(conn, "SELECT status FROM reservations WHERE order_id = %s", order) \
        == "reserved"


def test_a_release_committed_while_its_reserve_waits_makes_the_reserve_fail(inv):
    broker, cap, conn = inv
    pet = new_pets(conn, 1)[0]
    order = str(uuid.uuid4())
    tombstone = Concurrent(("INSERT INTO reservations (order_id, status) VALUES (%s, 'released')",
                            (order,)))
    try:
        send(broker, "inventory.reserve.v1", {"order_id": order, "pet_ids": [pet]})
        wait_until(lambda: lock_waiters(conn) > 0, what="the reserve waiting for the tombstone")
        tombstone.commit()
    finally:
        tombstone.close()
    (_m, _p, body), = reply(cap, order, "inventory.reservation_rejected.v1")
    assert json.loads(body)["unavailable_pet_ids"] == []
    assert db.rows(conn, "SELECT status, version FROM pets WHERE id = %s", pet) \
        == [{"status": "available", "version": 1}]


def test_a_reserve_committed_while_its_release_waits_is_released(inv):
    broker, cap, conn = inv
    pet = new_pets(conn, 1)[0]
    order = str(uuid.uuid4())
    reserve = Concurrent(
        ("INSERT INTO reservations (order_id, status, pet_ids, total_cents)"
         " VALUES (%s, 'reserved', ARRAY[%s]::uuid[], 1000)", (order, pet)),
        ("UPDATE pets SET status = 'reserved', order_id = %s, version = 2 WHERE id = %s",
         (order, pet)))
    try:
        send(broker, "inventory.release.v1", {"order_id": order})
        wait_until(lambda: lock_waiters(conn) > 0, what="the release waiting for the reserve")
        reserve.commit()
    finally:
        reserve.close()
    (_m, _p, body), = reply(cap, order, "inventory.released.v1")
    assert json.loads(body)["pet_ids"] == [pet]
    assert db.rows(conn, "SELECT status, order_id, version FROM pets WHERE id = %s", pet) \
        == [{"status": "available", "order_id": None, "version": 3}]
    assert db.value(conn, "SELECT status FROM reservations WHERE order_id = %s", order) \
        == "released"


def test_commands_out_of_turn_are_answered_by_nothing_and_change_nothing(inv):
    broker, cap, conn = inv
    pets = new_pets(conn, 1)
    sold = str(uuid.uuid4())
    send(broker, "inventory.reserve.v1", {"order_id": sold, "pet_ids": pets})
    reply(cap, sold, "inventory.reserved.v1")
    send(broker, "inventory.confirm_sale.v1", {"order_id": sold})
    reply(cap, sold, "inventory.sale_confirmed.v1")
    unknown = str(uuid.uuid4())
    send(broker, "inventory.release.v1", {"order_id": sold})
    send(broker, "inventory.confirm_sale.v1", {"order_id": unknown})
    seen = settle_after(broker, cap)
    assert not [p for _m, p, _b in seen if p.correlation_id == unknown]
    assert not [p for _m, p, _b in seen
                if p.correlation_id == sold and p.type == "inventory.released.v1"]
    assert statuses(conn, pets) == {pets[0]: "sold"}
    assert db.value(conn, "SELECT count(*) FROM reservations WHERE order_id = %s", unknown) == 0


def test_list_pet_lists_a_pet_once_and_answers_every_time(inv):
    broker, cap, conn = inv
    pet = {"pet_id": str(uuid.uuid4()), "name": "Pip", "species": "hamster", "price_cents": 2500}
    send(broker, "inventory.list_pet.v1", pet)
    send(broker, "inventory.list_pet.v1", pet)
    listed = cap.wait_for(lambda m, p, b: p.type == "inventory.pet_listed.v1"
                          and p.correlation_id == pet["pet_id"], count=2, what="two listings")
    for _m, _p, body in listed:
        assert json.loads(body) == dict(pet, status="available", version=1)
    assert db.rows(conn, "SELECT name, species, price_cents, status, version FROM pets"
                   " WHERE id = %s", pet["pet_id"]) == [
        {"name": "Pip", "species": "hamster", "price_cents": 2500, "status": "available",
         "version": 1}]


def test_semantically_impossible_commands_are_dead_lettered_by_the_handler(inv):
    broker, cap, conn = inv
    pet = {"pet_id": str(uuid.uuid4()), "name": "Pip", "species": "hamster", "price_cents": 2500}
    send(broker, "inventory.list_pet.v1", pet)
    cap.wait_for(lambda m, p, b: p.correlation_id == pet["pet_id"], what="the listing")
    relisted = send(broker, "inventory.list_pet.v1", dict(pet, price_cents=1))
    pets = new_pets(conn, 1)
    order = str(uuid.uuid4())
    mismatched = broker.publish("inventory.reserve.v1", {"order_id": order, "pet_ids": pets},
                                correlation_id=str(uuid.uuid4()))
    seen = dead_lettered(broker, [relisted, mismatched])
    for mid in (relisted, mismatched):
        headers = seen[mid][0].headers
        assert headers["x-petstore-failure-class"] == "handler"
        assert headers["x-petstore-error-code"] == "ERR_INVALID"
    assert "other attributes" in seen[relisted][0].headers["x-petstore-error"]
    assert "does not match" in seen[mismatched][0].headers["x-petstore-error"]
    assert db.value(conn, "SELECT price_cents FROM pets WHERE id = %s", pet["pet_id"]) == 2500
    assert statuses(conn, pets) == {pets[0]: "available"}
    assert db.value(conn, "SELECT count(*) FROM reservations WHERE order_id = %s", order) == 0


@pytest.fixture
def scratch_db():
    with db.scratch("inv") as url:
        yield url


def seed(url):
    out = subprocess.run([binary("services/inventory/inventory"), "--seed-demo"],
                         env={"DATABASE_URL": url, "PATH": "/usr/bin"}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return [line for line in lines if line["message"] == "inventory.seeded"][0]["new_pets"]


def test_seed_demo_lists_the_demo_pets_once_on_a_fresh_database(scratch_db):
    assert seed(scratch_db) == 12, "migrates the fresh database, then lists every demo pet"
    assert seed(scratch_db) == 0, "and lists nothing the second time"
    conn = psycopg2.connect(scratch_db)
    conn.autocommit = True
    pets = db.rows(conn, "SELECT id::text, species, status, version FROM pets ORDER BY id")
    assert len(pets) == 12
    assert {p["species"] for p in pets} == {"dog", "cat", "bird", "fish", "rabbit"}
    assert all(p["status"] == "available" and p["version"] == 1 for p in pets)
    listed = db.rows(conn, "SELECT correlation_id, type, exchange, routing_key, body FROM outbox")
    assert sorted(r["correlation_id"] for r in listed) == [p["id"] for p in pets]
    for r in listed:
        assert (r["type"], r["exchange"], r["routing_key"]) == (
            "inventory.pet_listed.v1", "petstore.events", "inventory.pet_listed")
        assert json.loads(r["body"])["status"] == "available"
    conn.close()
