"""The storefront's read models (the catalog and the orders) follow other services' events by
version: a late or repeated event never moves them back, and a pet's status change that arrives
before its listing is not lost.

Events are published straight to petstore.events, as inventory and the saga would. The storefront
consumes storefront.events in order, so a later "barrier" event that has become visible proves
that the earlier ones were handled."""
import uuid

import httpc
from amqp import Broker, now_rfc3339
from shop import api, create_card, create_pet, new_customer, order, place_order, wait_status
from wait import wait_until


def list_pet(broker, pet_id, status="available", version=1, price_cents=1_000):
    broker.publish("inventory.pet_listed.v1",
                   {"pet_id": pet_id, "name": "read-model-" + pet_id[:8], "species": "test-only",
                    "price_cents": price_cents, "status": status, "version": version},
                   correlation_id=pet_id)


def pet(pet_id):
    return httpc.get(api() + f"/v1/pets/{pet_id}")


def barrier(broker):
    """Waits until everything published before it has been applied. The barrier pet is listed
    as sold, so no other test can pick it from the catalog."""
    pet_id = str(uuid.uuid4())
    list_pet(broker, pet_id, status="sold")
    wait_until(lambda: pet(pet_id).status == 200, what="the barrier pet in the catalog")


def test_a_status_change_before_the_listing_is_kept_and_the_pet_hidden_until_listed():
    pet_id = str(uuid.uuid4())
    with Broker() as broker:
        broker.publish("inventory.pet_status_changed.v1",
                       {"pet_id": pet_id, "status": "reserved", "version": 2,
                        "order_id": str(uuid.uuid4())}, correlation_id=pet_id)
        barrier(broker)
        assert pet(pet_id).status == 404, "a pet known only by its status is not shown"
        listed = httpc.get(api() + "/v1/pets?species=test-only&status=reserved&limit=100")
        assert pet_id not in [p["id"] for p in listed.json["items"]]

        list_pet(broker, pet_id, status="available", version=1, price_cents=4_200)
        r = wait_until(lambda: (lambda r: r if r.status == 200 else None)(pet(pet_id)),
                       what="the listed pet in the catalog")
        assert r.json["status"] == "reserved", "the newer status survives the older listing"
        assert r.json["price_cents"] == 4_200 and r.json["species"] == "test-only"

        broker.publish("inventory.pet_status_changed.v1",
                       {"pet_id": pet_id, "status": "available", "version": 2},
                       correlation_id=pet_id)
        broker.publish("inventory.pet_status_changed.v1",
                       {"pet_id": pet_id, "status": "sold", "version": 3}, correlation_id=pet_id)
        barrier(broker)
        assert pet(pet_id).json["status"] == "sold"


def test_the_catalog_follows_the_pets_named_by_inventory_replies_newest_version_first():
    """inventory.reserved, released and sale_confirmed name the pets they changed with their new
    versions; the catalog takes each pet's newest, whatever order the replies of different
    orders arrive in (one pet, released by one order and reserved by the next)."""
    pet_id = str(uuid.uuid4())
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with Broker() as broker:
        list_pet(broker, pet_id)
        barrier(broker)
        # The second order's reservation (version 4) overtakes the first's release (version 3).
        broker.publish("inventory.reserved.v1",
                       {"order_id": second, "pet_ids": [pet_id],
                        "pets": [{"pet_id": pet_id, "version": 4}]}, correlation_id=second)
        broker.publish("inventory.released.v1",
                       {"order_id": first, "pet_ids": [pet_id],
                        "pets": [{"pet_id": pet_id, "version": 3}]}, correlation_id=first)
        barrier(broker)
        assert pet(pet_id).json["status"] == "reserved", "the older release changes nothing"
        # A repeated reply names no pets and changes nothing; the sale makes the pet sold.
        broker.publish("inventory.reserved.v1",
                       {"order_id": second, "pet_ids": [pet_id], "pets": []},
                       correlation_id=second)
        broker.publish("inventory.sale_confirmed.v1",
                       {"order_id": second, "pet_ids": [pet_id],
                        "pets": [{"pet_id": pet_id, "version": 5}]}, correlation_id=second)
        barrier(broker)
        assert pet(pet_id).json["status"] == "sold"


def test_a_stale_order_status_changes_nothing():
    token = new_customer()
    number, _card = create_card(10_000)
    oid = place_order(token, number, [create_pet(1_000)])
    final = wait_status(token, oid)
    assert final["status"] == "COMPLETED"
    with Broker() as broker:
        for version, status in ((2, "RESERVING"), (1, "PENDING"), (3, "PAYING")):
            broker.publish("saga.order_status_changed.v1",
                           {"order_id": oid, "status": status, "reason": None,
                            "version": version, "occurred_at": now_rfc3339()},
                           correlation_id=oid)
        barrier(broker)
    again = order(token, oid)
    assert again["status"] == "COMPLETED"
    assert again["history"] == final["history"]
    assert again["updated_at"] == final["updated_at"]
