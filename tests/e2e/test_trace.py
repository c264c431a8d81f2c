"""./petstore trace: one order's lines from every process, in time order, with its hops, found
by the order id or by its trace id; an unknown id exits 1."""
import json
import subprocess
import uuid

from petstore_env import launcher
from shop import create_card, create_pet, new_customer, place_order, wait_status
from wait import wait_until

PROCESSES = {"storefront", "relay-storefront", "order-saga", "relay-saga", "inventory",
             "relay-inventory", "payment", "relay-payment", "audit"}


def trace(*args):
    return subprocess.run([launcher(), "trace", *args], capture_output=True, text=True,
                          timeout=60)


def traced(ident):
    out = trace("--json", ident)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_trace_follows_an_order_through_every_process_by_order_id_and_by_trace_id():
    token = new_customer()
    number, _card = create_card(10_000)
    order_id = place_order(token, number, [create_pet(400)])
    wait_status(token, order_id, ("COMPLETED",))

    def complete():
        t = traced(order_id)
        return t if PROCESSES <= set(t["processes"]) and any(
            l["message"] == "saga.step" and l.get("to") == "COMPLETED" for l in t["lines"]) \
            else None
    t = wait_until(complete, timeout=20, what="the order's lines in every process")
    assert t["order_ids"] == [order_id]
    stamps = [l["timestamp"] for l in t["lines"]]
    assert stamps == sorted(stamps)
    hops = {h["type"]: h for h in t["hops"]}
    placed = hops["order.placed.v1"]
    assert placed["producer"] == "storefront" and placed["relay"] == "relay-storefront"
    assert "order-saga" in {c["process"] for c in placed["consumers"]}
    assert placed["relay_ms"] is not None and placed["relay_ms"] >= 0
    for kind, producer, consumer in (("inventory.reserve.v1", "order-saga", "inventory"),
                                     ("payment.charge.v1", "order-saga", "payment"),
                                     ("payment.charged.v1", "payment", "order-saga")):
        assert hops[kind]["producer"] == producer
        assert consumer in {c["process"] for c in hops[kind]["consumers"]}
    assert t["total_ms"] > 0

    # The same order by its trace id (the one its accepted line carries).
    trace_id = [l for l in t["lines"] if l["message"] == "order.accepted"][0]["trace_id"]
    by_trace = traced(trace_id)
    assert by_trace["order_ids"] == [order_id]
    assert PROCESSES <= set(by_trace["processes"])
    assert trace_id in by_trace["trace_ids"]

    # The readable form names the hops and the total.
    out = trace(order_id)
    assert out.returncode == 0, out.stderr
    assert "order.placed.v1" in out.stdout and "storefront → relay-storefront" in out.stdout
    assert "total " in out.stdout and "saga.step" in out.stdout


def test_trace_of_an_unknown_id_exits_1_and_says_so():
    unknown = str(uuid.uuid4())
    out = trace(unknown)
    assert out.returncode == 1
    assert "no log line names " + unknown in out.stderr
    assert trace("--help").returncode == 0
