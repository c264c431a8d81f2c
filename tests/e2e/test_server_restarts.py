"""Every daemon survives a restart of PostgreSQL and of RabbitMQ: it reconnects with backoff,
reports not-ready meanwhile, and the shop works again afterwards with nothing lost. (Named to run
last: it restarts the servers every suite shares.)"""
import urllib.request

import pytest

from shop import balance, create_card, create_pet, new_customer, petstore, place_order, wait_status
from wait import wait_until

DAEMONS = ["storefront", "inventory", "payment", "order-saga", "audit", "relay-storefront",
           "relay-inventory", "relay-payment", "relay-saga"]


def ready(name):
    import os
    port = os.environ["PETSTORE_" + name.upper().replace("-", "_") + "_PORT"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("server", ["postgres", "rabbitmq"])
def test_the_shop_recovers_after_a_server_restart(server):
    token = new_customer()
    number, card = create_card(10_000)
    before = create_pet(1_000)
    first = place_order(token, number, [before])
    petstore("restart", server)
    # Orders placed around the restart all finish, and new ones work.
    wait_until(lambda: all(ready(d) for d in DAEMONS), timeout=90,
               what=f"every daemon ready again after the {server} restart")
    # The order in flight finishes either way (a restart longer than the saga's timeouts may
    # legitimately cancel it with TIMEOUT); what it was charged matches how it ended.
    done = wait_status(token, first, timeout=90)
    paid_first = 1_000 if done["status"] == "COMPLETED" else 0
    if done["status"] == "CANCELLED":
        assert done["reason"] == "TIMEOUT"
    after = place_order(token, number, [create_pet(2_000)])
    assert wait_status(token, after, timeout=90)["status"] == "COMPLETED"
    wait_until(lambda: balance(card) == 10_000 - paid_first - 2_000,
               what="the card charged exactly for the completed orders")
