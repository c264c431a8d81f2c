"""The bench's bulk loader (tests/bench/bulk.py) against the running system: pets it seeds are
ordered through the real API and the saga completes those orders; after ageing the databases
with completed orders the system still completes a real order, the aged rows keep the money and
pet invariants across the five databases, and the checker finds every invariant true for them."""
import hashlib
import os
import sys
import uuid

import db
from checker import Checker
from shop import (create_card, net_charged, new_customer, pet_status, place_order,
                  wait_status)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import bulk  # noqa: E402


def by_id(conn, sql, ids):
    return {r["id"]: r for r in db.rows(conn, sql, ids)}


def test_seeded_pets_are_ordered_through_the_api_and_the_saga_completes_them():
    species = "bench-" + uuid.uuid4().hex[:8]
    # Four pets, all ordered below: a pet left available would stay on the shop's first page
    # for the tests that follow (the web page lists the oldest available pets first).
    pets = bulk.seed_pets(4, price_cents=250, species=species)
    assert len(pets) == len(set(pets)) == 4

    inv, sf = db.connect("inventory"), db.connect("storefront")
    try:
        sql = ("SELECT id::text AS id, name, species, price_cents, status, version FROM pets"
               " WHERE id = ANY(%s::uuid[])")
        in_inventory, in_catalog = by_id(inv, sql, pets), by_id(sf, sql, pets)
        assert in_inventory == in_catalog, "inventory and the catalog disagree"
        assert {(r["species"], r["price_cents"], r["status"], r["version"])
                for r in in_inventory.values()} == {(species, 250, "available", 1)}
        assert db.value(inv, "SELECT count(*) FROM pets WHERE id = ANY(%s::uuid[])"
                        " AND order_id IS NULL", pets) == 4
    finally:
        inv.close()
        sf.close()
    assert pet_status(pets[0]) == "available"

    token = new_customer()
    number, _card = create_card(100_000)
    orders = [place_order(token, number, pets[0:1]), place_order(token, number, pets[1:3]),
              place_order(token, number, pets[3:4])]
    for oid in orders:
        assert wait_status(token, oid, timeout=30)["status"] == "COMPLETED"
    assert [net_charged(oid) for oid in orders] == [250, 500, 250]
    inv = db.connect("inventory")
    try:
        sold = db.rows(inv, "SELECT id::text AS id, status, order_id::text AS order_id FROM pets"
                       " WHERE id = ANY(%s::uuid[]) ORDER BY id", pets[:4])
    finally:
        inv.close()
    owner = {pets[0]: orders[0], pets[1]: orders[1], pets[2]: orders[1], pets[3]: orders[2]}
    assert {r["id"]: (r["status"], r["order_id"]) for r in sold} == \
        {p: ("sold", o) for p, o in owner.items()}


def aged_order_ids(figures):
    """The orders of one ageing run: those of its customers (usernames derive from the run)."""
    names = ["c" + hashlib.md5(f"{figures['run']}:name{u}".encode()).hexdigest()[:12]
             for u in range(figures["customers"])]
    sf = db.connect("storefront")
    try:
        return [r["id"] for r in db.rows(
            sf, "SELECT o.id::text AS id FROM orders o JOIN users u ON u.id = o.user_id"
            " WHERE u.username = ANY(%s) ORDER BY o.created_at", names)]
    finally:
        sf.close()


def test_an_aged_system_keeps_its_invariants_and_still_completes_orders():
    n = 2000
    figures = bulk.age(n)
    dbs = figures["databases"]
    assert figures["size_after"] > figures["size_before"]
    assert dbs["storefront"]["inserted"]["orders"] == n
    assert dbs["storefront"]["inserted"]["order_history"] == 5 * n
    assert dbs["storefront"]["inserted"]["idempotency_keys"] == n
    assert dbs["saga"]["inserted"] == {"sagas": n, "saga_steps": 5 * n}
    pets_sold = dbs["inventory"]["inserted"]["pets"]
    assert dbs["inventory"]["inserted"]["reservations"] == n
    assert dbs["storefront"]["inserted"]["pets"] == pets_sold
    # Per order: 8 events, 2 per pet (reserved, sold), and each pet's listing.
    assert dbs["audit"]["inserted"]["event_log"] == 8 * n + pets_sold
    # Inbox and outbox rows of orders older than every retention are purged: none is loaded.
    assert all("inbox" not in d["inserted"] and "outbox" not in d["inserted"]
               for d in dbs.values())

    aged = aged_order_ids(figures)
    assert len(aged) == n

    saga, sf, inv, pay, audit = (db.connect(s) for s in
                                 ("saga", "storefront", "inventory", "payment", "audit"))
    try:
        sagas = by_id(saga, "SELECT order_id::text AS id, status, version, total_cents,"
                      " pet_ids::text[] AS pet_ids, card_last4, user_id::text AS user_id,"
                      " card_sealed FROM sagas WHERE order_id = ANY(%s::uuid[])", aged)
        assert len(sagas) == n
        assert {(s["status"], s["version"], s["card_sealed"]) for s in sagas.values()} == \
            {("COMPLETED", 5, None)}
        assert db.value(saga, "SELECT count(*) FROM saga_timers WHERE order_id = ANY(%s::uuid[])",
                        aged) == 0
        steps = db.rows(saga, "SELECT order_id::text AS id, array_agg(to_status ORDER BY version)"
                        " AS path FROM saga_steps WHERE order_id = ANY(%s::uuid[]) GROUP BY 1",
                        aged)
        assert {tuple(r["path"]) for r in steps} == \
            {("PENDING", "RESERVING", "PAYING", "CONFIRMING", "COMPLETED")} and len(steps) == n

        # The storefront's read model says what the saga says.
        orders = by_id(sf, "SELECT id::text AS id, status, version, total_cents,"
                       " pet_ids::text[] AS pet_ids, card_last4, user_id::text AS user_id"
                       " FROM orders WHERE id = ANY(%s::uuid[])", aged)
        assert {k: (o["status"], o["version"], o["total_cents"], o["pet_ids"], o["card_last4"],
                    o["user_id"]) for k, o in orders.items()} == \
            {k: (s["status"], s["version"], s["total_cents"], s["pet_ids"], s["card_last4"],
                 s["user_id"]) for k, s in sagas.items()}

        # Every COMPLETED order's pets are sold to it alone: in inventory (order_id = it) and in
        # the catalog (sold, version 3), and no pet is in two orders.
        owner = {p: oid for oid, s in sagas.items() for p in s["pet_ids"]}
        assert len(owner) == sum(len(s["pet_ids"]) for s in sagas.values()) == pets_sold
        pets = list(owner)
        sold = {r["id"]: (r["status"], r["order_id"]) for r in db.rows(
            inv, "SELECT id::text AS id, status, order_id::text AS order_id FROM pets"
            " WHERE id = ANY(%s::uuid[])", pets)}
        assert sold == {p: ("sold", oid) for p, oid in owner.items()}
        assert db.value(sf, "SELECT count(*) FROM orders WHERE pet_ids && %s::uuid[]"
                        " AND NOT (id = ANY(%s::uuid[]))", pets, aged) == 0
        catalog = {r["id"]: (r["status"], r["version"]) for r in db.rows(
            sf, "SELECT id::text AS id, status, version FROM pets WHERE id = ANY(%s::uuid[])",
            pets)}
        assert catalog == {p: ("sold", 3) for p in pets}
        reservations = by_id(inv, "SELECT order_id::text AS id, status, pet_ids::text[] AS"
                             " pet_ids, total_cents FROM reservations"
                             " WHERE order_id = ANY(%s::uuid[])", aged)
        assert {k: (r["status"], r["pet_ids"], r["total_cents"]) for k, r in
                reservations.items()} == \
            {k: ("sold", s["pet_ids"], s["total_cents"]) for k, s in sagas.items()}

        # Money: one charge per order of the saga's total, and per card: balance = initial -
        # charges + refunds, version = 1 + the ledger rows that moved its balance.
        charges = {r["id"]: r for r in db.rows(
            pay, "SELECT order_id::text AS id, kind, amount_cents, card_id::text AS card_id,"
            " last4 FROM ledger WHERE order_id = ANY(%s::uuid[])", aged)}
        assert {k: (c["kind"], c["amount_cents"], c["last4"]) for k, c in charges.items()} == \
            {k: ("charge", s["total_cents"], s["card_last4"]) for k, s in sagas.items()}
        cards = sorted({c["card_id"] for c in charges.values()})
        assert len(cards) == figures["cards"]
        money = db.rows(
            pay, "SELECT c.id::text AS id, c.balance_cents, c.version,"
            " coalesce(sum(l.amount_cents) FILTER (WHERE l.kind = 'charge'), 0) AS charged,"
            " coalesce(sum(l.amount_cents) FILTER (WHERE l.kind = 'refund'), 0) AS refunded,"
            " count(l.id) FILTER (WHERE l.kind IN ('charge', 'refund')) AS moves"
            " FROM cards c LEFT JOIN ledger l ON l.card_id = c.id"
            " WHERE c.id = ANY(%s::uuid[]) GROUP BY c.id", cards)
        assert len(money) == len(cards)
        for c in money:
            assert c["balance_cents"] == bulk.CARD_INITIAL_CENTS - c["charged"] + c["refunded"], c
            assert c["version"] == 1 + c["moves"], c

        # The audit trail holds each order's 8 events plus each pet's listing, all with known ids.
        per_order = {r["correlation_id"]: r["count"] for r in db.rows(
            audit, "SELECT correlation_id, count(*) AS count FROM event_log"
            " WHERE correlation_id = ANY(%s) GROUP BY 1", aged)}
        assert per_order == {oid: 8 for oid in aged}
        assert db.value(audit, "SELECT count(*) FROM event_log WHERE correlation_id = ANY(%s)",
                        pets) == pets_sold
        steps_msgs = {r["m"] for r in db.rows(
            saga, "SELECT message_id::text AS m FROM saga_steps WHERE order_id = ANY(%s::uuid[])"
            " AND message_id IS NOT NULL", aged)}
        audited = {r["m"] for r in db.rows(
            audit, "SELECT message_id::text AS m FROM event_log WHERE correlation_id = ANY(%s)",
            aged)}
        assert steps_msgs <= audited
    finally:
        for conn in (saga, sf, inv, pay, audit):
            conn.close()

    # The system still works on the aged databases, and the checker finds every invariant true
    # of the aged orders and of a new one.
    c = Checker()
    c.begin()
    pet = bulk.seed_pets(1, price_cents=300, species="bench-aged")[0]
    token = new_customer()
    number, _card = create_card(10_000)
    new = place_order(token, number, [pet])
    assert wait_status(token, new, timeout=30)["status"] == "COMPLETED"
    assert net_charged(new) == 300
    ledger = c.verify(aged + [new], bound_s=60)
    assert ledger.ok, ledger.text()
    f = ledger.figures
    assert (f["orders"], f["completed"], f["stuck"]) == (n + 1, n + 1, 0), f
