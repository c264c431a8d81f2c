"""Orders through the storefront's HTTP API, with every real process behind it: what a customer
sees, and what happens to their money and the pets. After each scenario the checker
(tests/lib/checker.py) verifies its orders against every database, the dead-letter queues and
the audit log."""
import threading
import uuid

import httpc
from checker import Checker
from petstore_env import need
from shop import (api, balance, create_card, create_pet, ledger, new_card_number, new_customer,
                  order, petstore, pet_status, place_order, wait_status)
from wait import wait_until


def test_the_happy_path_completes_debits_the_total_once_and_sells_the_pets():
    token = new_customer()
    number, card = create_card(100_000)
    pets = [create_pet(12_500), create_pet(7_500)]
    checker = Checker()
    checker.begin()
    r = httpc.post(api() + "/v1/orders", {"card_number": number, "pet_ids": pets}, token=token,
                   headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status == 202
    assert r.json["status"] == "PENDING"
    assert r.json["total_cents"] == 20_000
    assert r.headers["Location"] == f"/v1/orders/{r.json['id']}"
    assert int(r.headers["Retry-After"]) >= 1
    final = wait_status(token, r.json["id"])
    assert final["status"] == "COMPLETED"
    assert final["reason"] is None
    assert final["card_last4"] == number[-4:]
    assert sorted(final["pet_ids"]) == sorted(pets)
    assert [h["status"] for h in final["history"]] == [
        "PENDING", "RESERVING", "PAYING", "CONFIRMING", "COMPLETED"]
    assert balance(card) == 80_000
    assert ledger(final["id"]) == [("charge", 20_000)]
    wait_until(lambda: all(pet_status(p) == "sold" for p in pets), what="the pets sold")
    listed = httpc.get(api() + "/v1/orders", token=token).json["items"]
    assert [o["id"] for o in listed] == [final["id"]]
    checker.verify_ok([final["id"]])


def declined(balance_cents, number=None, register=True, reason=None):
    token = new_customer()
    if register:
        number, card = create_card(balance_cents, number)
    pet = create_pet(5_000)
    checker = Checker()
    checker.begin()
    oid = place_order(token, number, [pet])
    final = wait_status(token, oid)
    assert final["status"] == "CANCELLED"
    assert final["reason"] == reason
    assert "COMPENSATING" in [h["status"] for h in final["history"]]
    wait_until(lambda: pet_status(pet) == "available", what="the pet available again")
    if register:
        assert balance(card) == balance_cents
    assert not any(kind == "charge" for kind, _ in ledger(oid))
    checker.verify_ok([oid])


def test_insufficient_funds_cancels_and_changes_no_balance():
    declined(4_999, reason="INSUFFICIENT_FUNDS")


def test_an_invalid_card_number_cancels_with_card_invalid():
    bad = new_card_number()
    bad = bad[:-1] + str((int(bad[-1]) + 1) % 10)  # breaks the Luhn check digit
    declined(0, bad, register=False, reason="CARD_INVALID")


def test_an_unknown_card_cancels_with_card_unknown():
    declined(0, new_card_number(), register=False, reason="CARD_UNKNOWN")


def test_two_orders_racing_for_one_pet_complete_exactly_one():
    pet = create_pet(3_000)
    buyers = [(new_customer(), *create_card(10_000)) for _ in range(2)]
    checker = Checker()
    checker.begin()
    placed = []
    go = threading.Barrier(2)

    def buy(token, number):
        go.wait()
        placed.append((token, place_order(token, number, [pet])))

    threads = [threading.Thread(target=buy, args=(t, n)) for t, n, _ in buyers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finals = [wait_status(token, oid) for token, oid in placed]
    assert sorted(f["status"] for f in finals) == ["CANCELLED", "COMPLETED"]
    loser = next(f for f in finals if f["status"] == "CANCELLED")
    assert loser["reason"] == "PET_UNAVAILABLE"
    assert sorted(balance(card) for _t, _n, card in buyers) == [7_000, 10_000]
    assert pet_status(pet) == "sold"
    checker.verify_ok([oid for _t, oid in placed])


def test_cancel_while_paying_refunds_or_voids_and_releases_the_pets():
    token = new_customer()
    number, card = create_card(20_000)
    pet = create_pet(4_000)
    checker = Checker()
    checker.begin()
    petstore("stop", "payment")
    try:
        oid = place_order(token, number, [pet])
        wait_status(token, oid, ("PAYING",), timeout=30)
        r = httpc.post(api() + f"/v1/orders/{oid}/cancel", token=token)
        assert r.status == 202
    finally:
        petstore("start", "payment")
    final = wait_status(token, oid)
    assert final["status"] == "CANCELLED"
    assert final["reason"] == "CANCELLED_BY_USER"
    assert balance(card) == 20_000
    wait_until(lambda: pet_status(pet) == "available", what="the pet released")
    r = httpc.post(api() + f"/v1/orders/{oid}/cancel", token=token)
    assert r.status == 409, "a finished order cannot be cancelled"
    checker.verify_ok([oid])


def test_the_same_idempotency_key_gives_the_same_order_and_another_body_is_refused():
    token = new_customer()
    number, card = create_card(50_000)
    pet, second, other = create_pet(1_000), create_pet(500), create_pet(1_000)
    checker = Checker()
    checker.begin()
    key = str(uuid.uuid4())
    body = {"card_number": number, "pet_ids": [pet, second]}
    first = httpc.post(api() + "/v1/orders", body, token=token, headers={"Idempotency-Key": key})
    again = httpc.post(api() + "/v1/orders", body, token=token, headers={"Idempotency-Key": key})
    assert first.status == again.status == 202
    assert first.json == again.json
    assert again.headers["Location"] == f"/v1/orders/{first.json['id']}"
    reordered = httpc.post(api() + "/v1/orders", {"card_number": number, "pet_ids": [second, pet]},
                           token=token, headers={"Idempotency-Key": key})
    assert reordered.status == 202, "the same pets in another order are the same request"
    assert reordered.json["id"] == first.json["id"]
    changed = httpc.post(api() + "/v1/orders", {"card_number": number, "pet_ids": [other]},
                         token=token, headers={"Idempotency-Key": key})
    assert changed.status == 422
    assert changed.headers["Content-Type"] == "application/problem+json"
    final = wait_status(token, first.json["id"])
    assert final["status"] == "COMPLETED"
    assert balance(card) == 48_500
    assert ledger(final["id"]) == [("charge", 1_500)]
    listed = httpc.get(api() + "/v1/orders", token=token).json["items"]
    assert [o["id"] for o in listed] == [final["id"]], "one order, however often it was asked for"
    assert pet_status(other) == "available"
    checker.verify_ok([final["id"]])


def test_http_errors_are_problem_documents():
    token = new_customer()
    url = api() + "/v1/orders"
    pet = create_pet(100)
    checker = Checker()
    checker.begin()

    def problem(r, status):
        assert r.status == status, r
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json["status"] == status and r.json["title"]
        return r.json

    problem(httpc.post(url, {"card_number": "4111111111111111", "pet_ids": [pet]}), 401)
    assert "Bearer" in httpc.post(url, {}).headers["WWW-Authenticate"]
    problem(httpc.post(url, {"card_number": "4111111111111111", "pet_ids": [pet]}, token=token),
            400)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    problem(httpc.post(url, raw=b"{}", token=token, headers={**key, "Content-Type": "text/plain"}),
            415)
    problem(httpc.post(url, raw=b'{"card_number":', token=token,
                       headers={**key, "Content-Type": "application/json"}), 400)
    bad = problem(httpc.post(url, {"card_number": "12ab", "pet_ids": ["x"]}, token=token,
                             headers=key), 422)
    assert {e["field"] for e in bad["errors"]} == {"card_number", "pet_ids"}
    assert all(isinstance(e["message"], str) and e["message"] for e in bad["errors"])
    problem(httpc.post(url, raw=b"{" + b" " * 70_000 + b"}", token=token,
                       headers={**key, "Content-Type": "application/json"}), 413)
    problem(httpc.post(url, {"card_number": "4111111111111111", "pet_ids": [str(uuid.uuid4())]},
                       token=token, headers=key), 404)
    problem(httpc.get(api() + f"/v1/orders/{uuid.uuid4()}", token=token), 404)
    taken = create_pet(100)
    number, _card = create_card(10_000)
    first = place_order(token, number, [taken])
    wait_status(token, first)
    problem(httpc.post(url, {"card_number": number, "pet_ids": [taken]}, token=token,
                       headers={"Idempotency-Key": str(uuid.uuid4())}), 409)
    someone_else = new_customer()
    mine = place_order(token, number, [create_pet(100)])
    problem(httpc.get(api() + f"/v1/orders/{mine}", token=someone_else), 404)
    problem(httpc.post(api() + "/v1/pets", {"name": "x", "species": "y", "price_cents": 1},
                       token=token), 401)
    assert httpc.post(api() + "/v1/pets", {"name": "x", "species": "y", "price_cents": 1},
                      token=need("ADMIN_TOKEN")).status == 202
    checker.verify_ok([first, mine])


def test_accounts_sign_up_sign_in_and_sign_out():
    name = "u" + uuid.uuid4().hex[:10]
    r = httpc.post(api() + "/v1/users", {"username": name, "password": "long enough"})
    assert r.status == 201 and r.json["username"] == name
    assert httpc.post(api() + "/v1/users", {"username": name, "password": "long enough"}).status == 409
    bad = httpc.post(api() + "/v1/users", {"username": "X", "password": "short"})
    assert bad.status == 422
    assert {e["field"] for e in bad.json["errors"]} == {"username", "password"}
    assert httpc.post(api() + "/v1/sessions", {"username": name, "password": "wrong pw"}).status == 401
    s = httpc.post(api() + "/v1/sessions", {"username": name, "password": "long enough"})
    assert s.status == 201 and s.json["token"] and s.json["expires_at"]
    assert httpc.get(api() + "/v1/orders", token=s.json["token"]).status == 200
    assert httpc.delete(api() + "/v1/sessions/current", token=s.json["token"]).status == 204
    assert httpc.get(api() + "/v1/orders", token=s.json["token"]).status == 401
