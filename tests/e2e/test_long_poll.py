"""Long polls on an order (GET /v1/orders/{id}?wait=S&status=X) answer as soon as the status
leaves X, on whichever storefront instance holds the request: the order-updates fanout reaches
every instance."""
import os
import socket
import subprocess
import uuid

import pytest

import httpc
from petstore_env import binary, need
from shop import api, create_card, create_pet, new_customer, petstore, place_order, wait_status
from wait import wait_until


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def second_storefront():
    """Another storefront process on its own port, sharing the database and the broker."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "PATH"))}
    env.update(DATABASE_URL=need("STOREFRONT_DATABASE_URL"), AMQP_URL=need("STOREFRONT_AMQP_URL"),
               HTTP_PORT=str(port), PAYMENT_PUBLIC_KEY=need("PAYMENT_PUBLIC_KEY"),
               ADMIN_TOKEN=need("ADMIN_TOKEN"), LOG_LEVEL="info")
    log = open(f"/tmp/storefront-second-{port}.log", "w")
    proc = subprocess.Popen([binary("services/storefront/storefront")], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return httpc.get(url + "/readyz", timeout=2, retries_503=0).status == 200
        except OSError:
            return False
    wait_until(lambda: proc.poll() is not None or ready(), what="the second storefront")
    assert proc.poll() is None
    yield url
    proc.terminate()
    assert proc.wait(timeout=20) == 0, "a clean drain on SIGTERM"
    log.close()


def test_a_long_poll_on_another_instance_is_woken_by_the_change(second_storefront):
    token = new_customer()
    number, _card = create_card(10_000)
    petstore("stop", "payment")  # hold the order in PAYING
    try:
        oid = place_order(token, number, [create_pet(1_000)])
        wait_status(token, oid, ("PAYING",), timeout=30)
        results = []
        import threading
        poll = threading.Thread(target=lambda: results.append(httpc.get(
            second_storefront + f"/v1/orders/{oid}?wait=30&status=PAYING", token=token,
            timeout=40)))
        poll.start()
    finally:
        petstore("start", "payment")
    poll.join(timeout=45)
    r, = results
    assert r.status == 200
    assert r.json["status"] != "PAYING", "answered because the status changed, not at timeout"


def test_a_long_poll_that_sees_no_change_answers_at_its_deadline():
    token = new_customer()
    number, _card = create_card(10_000)
    oid = place_order(token, number, [create_pet(500)])
    done = wait_status(token, oid)
    r = httpc.get(api() + f"/v1/orders/{oid}?wait=1&status={done['status']}", token=token)
    assert r.status == 200
    assert r.json["status"] == done["status"]
    r = httpc.get(api() + f"/v1/orders/{oid}?wait=1&status=PENDING", token=token)
    assert r.status == 200 and r.json["status"] == done["status"], "already past: at once"


def test_bad_wait_values_are_refused():
    token = new_customer()
    number, _card = create_card(10_000)
    oid = place_order(token, number, [create_pet(500)])
    for bad in ("31", "-1", "abc"):
        r = httpc.get(api() + f"/v1/orders/{oid}?wait={bad}", token=token)
        assert r.status == 422, bad
        assert r.json["errors"][0]["field"] == "wait"
    assert httpc.get(api() + f"/v1/orders/{uuid.uuid4()}?wait=1", token=token).status == 404
