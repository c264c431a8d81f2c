"""Every daemon survives a restart of PostgreSQL and of RabbitMQ: it reconnects with backoff,
reports not-ready meanwhile, and the shop works again afterwards with nothing lost. (Named to run
last: it restarts the servers every suite shares.)"""
import concurrent.futures
import os
import urllib.request
import uuid

import pytest

import httpc
from daemons import audit_daemon
from petstore_env import need
from shop import balance, create_card, create_pet, new_customer, petstore, place_order, wait_status
from storefront_proc import Storefront
from tcp_proxy import TcpProxy
from wait import wait_until

DAEMONS = ["storefront", "inventory", "payment", "order-saga", "audit", "relay-storefront",
           "relay-inventory", "relay-payment", "relay-saga"]


def ready(name):
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


HTTP_THREADS = 2


def conninfo_through(url, port):
    """A key=value conninfo with its host and port replaced."""
    kept = [kv for kv in url.split() if not kv.startswith(("host=", "port="))]
    return " ".join(kept + ["host=127.0.0.1", f"port={port}"])


@pytest.mark.parametrize("first", ["read", "post"])
def test_pooled_connections_that_died_unseen_are_replaced_within_the_request(first):
    """Point 8 of issue 13. Each HTTP thread keeps its database connection between requests.
    PostgreSQL restarts while a middlebox between it and the storefront forgets the connections
    (a load balancer's failover), so no HTTP thread can see that its connection is dead until it
    sends: the first request on every thread must reconnect and retry, never answer 503."""
    proxy = TcpProxy("127.0.0.1", int(need("PGPORT")))
    sf = Storefront(DATABASE_URL=conninfo_through(need("STOREFRONT_DATABASE_URL"), proxy.port),
                    HTTP_THREADS=str(HTTP_THREADS))
    try:
        token = new_customer()
        number, _card = create_card(10_000)
        pet = create_pet(500)
        key = str(uuid.uuid4())
        r = httpc.post(sf.url + "/v1/orders", {"card_number": number, "pet_ids": [pet]},
                       token=token, headers={"Idempotency-Key": key})
        assert r.status == 202, r
        oid = r.json["id"]

        def read(_):
            return httpc.get(sf.url + f"/v1/orders/{oid}", token=token, retries_503=0).status

        def post(_):  # the same key and body again: the stored 202
            return httpc.post(sf.url + "/v1/orders", {"card_number": number, "pet_ids": [pet]},
                              token=token, headers={"Idempotency-Key": key},
                              retries_503=0).status

        calls = {"read": (read, 200), "post": (post, 202)}
        wanted = [calls[first], calls["post" if first == "read" else "read"]]
        with concurrent.futures.ThreadPoolExecutor(4 * HTTP_THREADS) as pool:
            # Warm every HTTP thread: rounds of concurrent requests spread over all of them.
            for _ in range(5):
                assert set(pool.map(read, range(4 * HTTP_THREADS))) == {200}
            assert proxy.forget() > HTTP_THREADS
            petstore("restart", "postgres")
            for fn, ok in wanted:
                got = list(pool.map(fn, range(4 * HTTP_THREADS)))
                assert got == [ok] * len(got), f"{fn.__name__} after the restart: {got}"
        # Every HTTP thread did meet its dead connection, and replaced it within the request.
        assert len(sf.log_lines("db.reconnected")) >= HTTP_THREADS
    finally:
        try:
            sf.stop()  # kills it if it does not drain, so the next test does not inherit it
        finally:
            proxy.close()
            wait_until(lambda: all(ready(d) for d in DAEMONS), timeout=90,
                       what="every daemon ready again after the postgres restart")


def test_a_daemon_started_right_after_a_broker_restart_waits_for_the_queues_policies():
    """Right after RabbitMQ starts, the management API describes a queue without its policy
    until the queue has published its statistics (some seconds). A daemon starting then must wait
    for the policy, not take its absence for a missing setting and refuse to start."""
    petstore("restart", "rabbitmq")
    extra = audit_daemon("after-broker-restart", AMQP_MGMT_URL=need("RABBITMQ_MGMT_URL"))
    try:
        extra.wait_ready("an audit daemon started right after the broker restart")
        assert len(extra.lines("startup.queue_checked")) == 1, extra.tail()
    finally:
        assert extra.stop() == 0, extra.tail()
    wait_until(lambda: all(ready(d) for d in DAEMONS), timeout=90,
               what="every daemon ready again after the rabbitmq restart")
