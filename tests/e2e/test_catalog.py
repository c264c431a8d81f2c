"""The catalog: filters, cursor pagination, single pets, statuses that follow inventory; and the
caller's order list, newest first."""
import uuid

import httpc
from petstore_env import need
from shop import api, create_card, new_customer, place_order, pet_status, wait_status
from wait import wait_until


def list_pet(species, price):
    r = httpc.post(api() + "/v1/pets", {"name": "cat-" + uuid.uuid4().hex[:6],
                                        "species": species, "price_cents": price},
                   token=need("ADMIN_TOKEN"))
    assert r.status == 202 and r.headers["Location"] == f"/v1/pets/{r.json['id']}"
    return r.json["id"]


def test_filters_and_cursor_pages_walk_the_whole_catalog():
    species = "sp" + uuid.uuid4().hex[:8]
    ids = [list_pet(species, 100 + i) for i in range(5)]
    wait_until(lambda: all(pet_status(i) == "available" for i in ids), what="the new pets")
    seen, after = [], None
    while True:
        q = f"/v1/pets?species={species}&limit=2" + (f"&after={after}" if after else "")
        page = httpc.get(api() + q).json
        assert len(page["items"]) <= 2
        seen += [p["id"] for p in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    pet = httpc.get(api() + f"/v1/pets/{ids[0]}").json
    assert pet == {"id": ids[0], "name": pet["name"], "species": species, "price_cents": 100,
                   "status": "available"}

    token = new_customer()
    number, _card = create_card(10_000)
    first = place_order(token, number, [ids[0]])
    wait_status(token, first)
    assert pet_status(ids[0]) == "sold"
    sold = httpc.get(api() + f"/v1/pets?species={species}&status=sold").json["items"]
    assert [p["id"] for p in sold] == [ids[0]]
    available = httpc.get(api() + f"/v1/pets?species={species}&status=available").json["items"]
    assert len(available) == 4

    second = place_order(token, number, [ids[1]])
    mine = httpc.get(api() + "/v1/orders", token=token).json["items"]
    assert [o["id"] for o in mine] == [second, first], "newest first"
    for bad in ("limit=0", "limit=x", "status=lost", "after=nope"):
        r = httpc.get(api() + f"/v1/pets?{bad}")
        assert r.status == 422, bad
