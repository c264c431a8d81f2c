"""The cart: add and remove pets, order the cart without naming pets, and the cart is emptied
by the order that took it."""
import uuid

import httpc
from shop import api, balance, create_card, create_pet, new_customer, wait_status


def cart(token):
    r = httpc.get(api() + "/v1/cart", token=token)
    assert r.status == 200, r
    return r.json


def test_a_cart_is_filled_ordered_and_emptied():
    token = new_customer()
    number, card = create_card(10_000)
    a, b, c = create_pet(1_000), create_pet(2_000), create_pet(4_000)
    assert cart(token) == {"items": [], "total_cents": 0}
    for pet in (a, b, c):
        assert httpc.put(api() + f"/v1/cart/items/{pet}", token=token).status == 200
    assert httpc.put(api() + f"/v1/cart/items/{a}", token=token).status == 200, "idempotent"
    r = httpc.delete(api() + f"/v1/cart/items/{c}", token=token)
    assert r.status == 200
    assert [p["id"] for p in r.json["items"]] == [a, b]
    assert r.json["total_cents"] == 3_000

    key = {"Idempotency-Key": str(uuid.uuid4())}
    r = httpc.post(api() + "/v1/orders", {"card_number": number}, token=token, headers=key)
    assert r.status == 202, r
    assert r.json["total_cents"] == 3_000
    assert cart(token)["items"] == [], "the order took the cart"
    again = httpc.post(api() + "/v1/orders", {"card_number": number}, token=token, headers=key)
    assert again.status == 202 and again.json["id"] == r.json["id"], "the same key, the same order"
    final = wait_status(token, r.json["id"])
    assert final["status"] == "COMPLETED"
    assert sorted(final["pet_ids"]) == sorted([a, b])
    assert balance(card) == 7_000


def test_cart_errors():
    token = new_customer()
    number, _card = create_card(10_000)
    assert httpc.put(api() + f"/v1/cart/items/{uuid.uuid4()}", token=token).status == 404
    assert httpc.put(api() + "/v1/cart/items/not-a-uuid", token=token).status == 404
    assert httpc.get(api() + "/v1/cart").status == 401
    empty = httpc.post(api() + "/v1/orders", {"card_number": number}, token=token,
                       headers={"Idempotency-Key": str(uuid.uuid4())})
    assert empty.status == 422
    assert empty.json["errors"][0]["field"] == "pet_ids"
    sold = create_pet(500)
    buyer = new_customer()
    order = httpc.post(api() + "/v1/orders", {"card_number": number, "pet_ids": [sold]},
                       token=buyer, headers={"Idempotency-Key": str(uuid.uuid4())})
    wait_status(buyer, order.json["id"])
    r = httpc.put(api() + f"/v1/cart/items/{sold}", token=token)
    assert r.status == 409
    assert r.headers["Content-Type"] == "application/problem+json"
