"""A customer and an operator of the running shop, through its public HTTP APIs, plus the
invariant checks the end-to-end suites share (money and pets)."""
import random
import subprocess
import uuid

import db
import httpc
from petstore_env import launcher, need
from wait import wait_until

TERMINAL = ("COMPLETED", "CANCELLED")


def api():
    return need("PETSTORE_API")


def luhn_complete(prefix):
    """prefix + the Luhn check digit."""
    digits = [int(c) for c in prefix][::-1]
    total = 0
    for i, d in enumerate(digits):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def new_card_number():
    return luhn_complete("4" + "".join(random.choice("0123456789") for _ in range(14)))


def create_card(balance_cents, number=None):
    """A card on the payment service: (number, card id)."""
    number = number or new_card_number()
    r = httpc.post(need("PAYMENT_API") + "/v1/cards",
                   {"card_number": number, "balance_cents": balance_cents},
                   token=need("ADMIN_TOKEN"))
    assert r.status == 201, r
    return number, r.json["id"]


def balance(card_id):
    r = httpc.get(need("PAYMENT_API") + f"/v1/cards/{card_id}", token=need("ADMIN_TOKEN"))
    assert r.status == 200, r
    return r.json["balance_cents"]


def create_pet(price_cents=1000, species="dog"):
    """A new pet through the admin API; waits until the catalog shows it available."""
    r = httpc.post(api() + "/v1/pets",
                   {"name": "pet-" + uuid.uuid4().hex[:8], "species": species,
                    "price_cents": price_cents}, token=need("ADMIN_TOKEN"))
    assert r.status == 202, r
    pet_id = r.json["id"]
    wait_until(lambda: pet_status(pet_id) == "available", what=f"pet {pet_id} in the catalog")
    return pet_id


def pet_status(pet_id):
    r = httpc.get(api() + f"/v1/pets/{pet_id}")
    return r.json["status"] if r.status == 200 else None


def new_customer():
    name = "u" + uuid.uuid4().hex[:12]
    password = "pw-" + uuid.uuid4().hex
    r = httpc.post(api() + "/v1/users", {"username": name, "password": password})
    assert r.status == 201, r
    r = httpc.post(api() + "/v1/sessions", {"username": name, "password": password})
    assert r.status == 201, r
    return r.json["token"]


def place_order(token, card_number, pet_ids, key=None):
    r = httpc.post(api() + "/v1/orders", {"card_number": card_number, "pet_ids": pet_ids},
                   token=token, headers={"Idempotency-Key": key or str(uuid.uuid4())})
    assert r.status == 202, r
    return r.json["id"]


def order(token, order_id):
    r = httpc.get(api() + f"/v1/orders/{order_id}", token=token)
    assert r.status == 200, r
    return r.json


def wait_status(token, order_id, statuses=TERMINAL, timeout=60):
    """Polls the order like a client would: a 503 (a server restarting) means "not yet"."""
    def reached():
        r = httpc.get(api() + f"/v1/orders/{order_id}", token=token)
        if r.status == 503:
            return None
        assert r.status == 200, r
        return r.json if r.json["status"] in statuses else None
    return wait_until(reached, timeout=timeout, what=f"order {order_id} in {statuses}")


def ledger(order_id):
    """Payment's ledger rows of an order: [(kind, amount_cents)]."""
    conn = db.connect("payment")
    try:
        return [(r["kind"], r["amount_cents"]) for r in db.rows(
            conn, "SELECT kind, amount_cents FROM ledger WHERE order_id = %s ORDER BY id",
            order_id)]
    finally:
        conn.close()


def net_charged(order_id):
    """What the customer paid in the end for an order, in cents."""
    total = 0
    for kind, amount in ledger(order_id):
        if kind == "charge":
            total += amount
        elif kind == "refund":
            total -= amount
    return total


def petstore(*args):
    """Runs the launcher against the system under test (PETSTORE_HOME is exported)."""
    out = subprocess.run([launcher(), *args], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout
