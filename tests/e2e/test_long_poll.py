"""Long polls on an order (GET /v1/orders/{id}?wait=S&status=X) answer as soon as the status
leaves X, on whichever storefront instance holds the request: the order-updates fanout reaches
every instance."""
import uuid

import pytest

import httpc
from shop import api, create_card, create_pet, new_customer, petstore, place_order, wait_status
from storefront_proc import Storefront
from wait import wait_until


@pytest.fixture
def second_storefront():
    """Another storefront process on its own port, sharing the database and the broker."""
    sf = Storefront()
    yield sf.url
    sf.stop()


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


def read_events(url, token, limit_s=40):
    """Reads a text/event-stream until the server ends it; returns [(event, id, data)]."""
    import json
    import urllib.request
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                               "Accept": "text/event-stream"})
    events, fields = [], {}
    with urllib.request.urlopen(req, timeout=limit_s) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line == "":
                if "data" in fields:
                    events.append((fields.get("event"), fields.get("id"),
                                   json.loads(fields["data"])))
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
    return events


def test_an_event_stream_follows_the_order_to_its_end(second_storefront):
    import threading
    token = new_customer()
    number, _card = create_card(10_000)
    petstore("stop", "payment")
    try:
        oid = place_order(token, number, [create_pet(700)])
        wait_status(token, oid, ("PAYING",), timeout=30)
        got = []
        reader = threading.Thread(target=lambda: got.extend(
            read_events(second_storefront + f"/v1/orders/{oid}/events", token)))
        reader.start()
        wait_until(lambda: got or reader.is_alive(), what="the stream open")
    finally:
        petstore("start", "payment")
    reader.join(timeout=60)
    assert not reader.is_alive(), "the stream ends when the order is finished"
    statuses = [data["status"] for _event, _id, data in got]
    assert statuses[0] == "PAYING"
    assert statuses[-1] in ("COMPLETED", "CANCELLED")
    ids = [int(i) for _event, i, _data in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "versions only move forward"


def test_an_event_stream_of_a_finished_order_sends_its_state_and_ends():
    token = new_customer()
    number, _card = create_card(10_000)
    oid = place_order(token, number, [create_pet(300)])
    done = wait_status(token, oid)
    events = read_events(api() + f"/v1/orders/{oid}/events", token)
    assert [(e, data["status"]) for e, _i, data in events] == [("status", done["status"])]
    assert httpc.get(api() + f"/v1/orders/{uuid.uuid4()}/events", token=token).status == 404
    assert httpc.get(api() + f"/v1/orders/{oid}/events").status == 401
