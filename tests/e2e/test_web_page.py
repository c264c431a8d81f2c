"""The web page, driven in Debian's headless Chromium by playwright-core: a person signs up,
puts a pet in the cart, orders it with a card and watches the order reach COMPLETED."""
import json
import os
import subprocess
import uuid

import httpc
from petstore_env import need
from shop import api, balance, create_card
from wait import wait_until

BROWSER = os.path.join(os.path.dirname(__file__), "browser")


def test_a_person_orders_a_pet_on_the_web_page_and_sees_it_completed(tmp_path):
    assert os.path.isdir(os.path.join(BROWSER, "node_modules", "playwright-core")), \
        "run through ./petstore test, which installs the browser driver"
    name = "Pixel-" + uuid.uuid4().hex[:6]
    r = httpc.post(api() + "/v1/pets", {"name": name, "species": "cat", "price_cents": 2500},
                   token=need("ADMIN_TOKEN"))
    number, card = create_card(10_000)
    pet_id = r.json["id"]
    wait_until(lambda: httpc.get(api() + f"/v1/pets/{pet_id}").status == 200,
               what="the pet in the catalog")
    shot = tmp_path / "order.png"
    out = subprocess.run(["node", os.path.join(BROWSER, "order.js"), api(), name, number,
                          str(shot)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "COMPLETED"
    assert [h.split(" ")[0] for h in result["history"]][-1] == "COMPLETED"
    assert shot.stat().st_size > 0
    assert balance(card) == 7_500
    page = httpc.get(api() + "/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
