"""The metrics the service-level objectives are computed from (runbook/slo.md), read from the
daemons' /metrics while real orders go through the system:

- petstore_ready on every daemon: 1 exactly when its /readyz answers 200, at each scrape;
- petstore_orders_finished_total{status,reason} and the histogram
  petstore_order_completion_seconds{status} on the storefront: each order counted once, when its
  outcome (COMPLETED, CANCELLED with its reason, NEEDS_OPERATOR) reaches the storefront's read
  model, with the time from its creation at the door; a later status change of a finished order
  does not count it again.

Counter values are compared before and after, so the tests hold on a system that has taken
other orders before; they assume no other client finishes orders of the same kind meanwhile."""
import re
import time
import urllib.parse
import uuid

import pytest

import httpc
import shop
from amqp import Broker, now_rfc3339
from daemons import SYSTEM_DAEMONS, Daemon, daemon_ready, free_port, wait_dead_letters
from petstore_env import need
from wait import wait_until

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(base_url):
    """{(name, frozenset(labels.items())): value} of a /metrics page."""
    r = httpc.get(base_url + "/metrics", timeout=5)
    assert r.status == 200, r
    out = {}
    for line in r.raw.decode().splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = frozenset(LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def daemon_url(name):
    return "http://127.0.0.1:" + need("PETSTORE_" + name.upper().replace("-", "_") + "_PORT")


def storefront_url():
    return daemon_url("storefront")


def finished(samples, status, reason="none"):
    return value(samples, "petstore_orders_finished_total", status=status, reason=reason)


def completion(samples, status):
    """(count, sum, {le: cumulative count}) of petstore_order_completion_seconds{status}."""
    buckets = {dict(labels)["le"]: v for (name, labels), v in samples.items()
               if name == "petstore_order_completion_seconds_bucket" and
               dict(labels).get("status") == status}
    return (value(samples, "petstore_order_completion_seconds_count", status=status),
            value(samples, "petstore_order_completion_seconds_sum", status=status), buckets)


def test_every_daemon_says_in_its_metrics_that_it_is_ready():
    for name in SYSTEM_DAEMONS:
        url = daemon_url(name)
        assert httpc.get(url + "/readyz", timeout=5).status == 200, name
        samples = scrape(url)
        assert ("petstore_ready", frozenset()) in samples, f"{name} has no petstore_ready"
        assert value(samples, "petstore_ready") == 1, name


def test_a_daemon_cut_off_from_its_broker_says_not_ready_in_its_metrics():
    """A storefront whose AMQP URL names a port nobody listens on: it serves HTTP, its consumer
    cannot connect, /readyz answers 503 and petstore_ready is 0 at every scrape."""
    url = urllib.parse.urlsplit(need("STOREFRONT_AMQP_URL"))
    dead = url._replace(netloc=url.netloc.rsplit(":", 1)[0] + f":{free_port()}").geturl()
    d = Daemon("services/storefront/storefront", "not-ready",
               DATABASE_URL=need("STOREFRONT_DATABASE_URL"), AMQP_URL=dead,
               PAYMENT_PUBLIC_KEY=need("PAYMENT_PUBLIC_KEY"), ADMIN_TOKEN=need("ADMIN_TOKEN"))
    base = f"http://127.0.0.1:{d.port}"
    try:
        def answers():
            assert d.proc.poll() is None, d.tail()
            try:
                return httpc.get(base + "/readyz", timeout=2, retries_503=0)
            except OSError:
                return None
        r = wait_until(answers, timeout=60, what="the storefront's /readyz")
        assert r.status == 503, r
        for _ in range(3):
            samples = scrape(base)
            assert ("petstore_ready", frozenset()) in samples, d.tail()
            assert value(samples, "petstore_ready") == 0
            time.sleep(0.2)
    finally:
        d.stop()


def order_of(balance_cents):
    """A new customer's order of a new pet, paid with a new card holding balance_cents: (token,
    order id, seconds from just before the POST to the client seeing the final status, the
    order as then seen)."""
    pet = shop.create_pet(price_cents=1500)
    number, _ = shop.create_card(balance_cents)
    token = shop.new_customer()
    started = time.monotonic()
    order_id = shop.place_order(token, number, [pet])
    seen = shop.wait_status(token, order_id)
    return token, order_id, time.monotonic() - started, seen


def test_a_completed_order_is_counted_once_with_its_time_from_the_door():
    before = scrape(storefront_url())
    _, _, elapsed, seen = order_of(100_000)
    assert seen["status"] == "COMPLETED", seen
    # Counted after the consumer's commit, which the client may see a moment earlier.
    after = wait_until(lambda: (s := scrape(storefront_url())) and
                       finished(s, "COMPLETED") > finished(before, "COMPLETED") and s,
                       timeout=10, what="the completed order in petstore_orders_finished_total")
    time.sleep(1.0)  # anything counted twice would show by now
    after = scrape(storefront_url())
    assert finished(after, "COMPLETED") - finished(before, "COMPLETED") == 1
    count0, sum0, buckets0 = completion(before, "COMPLETED")
    count1, sum1, buckets1 = completion(after, "COMPLETED")
    assert count1 - count0 == 1
    assert 0 < sum1 - sum0 <= elapsed + 0.05, (sum1 - sum0, elapsed)
    assert set(buckets1) >= {"0.05", "0.5", "1", "2.5", "5", "10", "30", "+Inf"}, buckets1
    assert buckets1["+Inf"] - buckets0.get("+Inf", 0) == 1
    assert buckets1["30"] - buckets0.get("30", 0) == 1  # a test order takes well under 30 s
    # The other outcomes did not move.
    for status, reason in [("CANCELLED", "INSUFFICIENT_FUNDS"), ("NEEDS_OPERATOR", "none")]:
        assert finished(after, status, reason) == finished(before, status, reason)


def test_a_declined_order_is_counted_as_cancelled_with_its_reason_and_only_once():
    before = scrape(storefront_url())
    token, order_id, _, seen = order_of(0)
    assert (seen["status"], seen["reason"]) == ("CANCELLED", "INSUFFICIENT_FUNDS"), seen
    wait_until(lambda: finished(scrape(storefront_url()), "CANCELLED", "INSUFFICIENT_FUNDS") >
               finished(before, "CANCELLED", "INSUFFICIENT_FUNDS"),
               timeout=10, what="the declined order in petstore_orders_finished_total")
    counted = scrape(storefront_url())
    assert finished(counted, "CANCELLED", "INSUFFICIENT_FUNDS") - \
        finished(before, "CANCELLED", "INSUFFICIENT_FUNDS") == 1
    assert completion(counted, "CANCELLED")[0] - completion(before, "CANCELLED")[0] == 1
    assert finished(counted, "COMPLETED") == finished(before, "COMPLETED")

    # A later outcome of the same order (as when an operator finishes a parked order): a newer
    # status change the read model applies, but the order had its outcome already.
    later = seen["version"] + 10
    with Broker() as broker:  # as the saga, its producer
        broker.publish("saga.order_status_changed.v1",
                       {"order_id": order_id, "status": "CANCELLED",
                        "reason": "INSUFFICIENT_FUNDS", "version": later,
                        "occurred_at": now_rfc3339()},
                       correlation_id=order_id, message_id=str(uuid.uuid4()))
    wait_until(lambda: shop.order(token, order_id)["version"] == later,
               what="the later status change applied to the read model")
    time.sleep(0.5)
    after = scrape(storefront_url())
    assert finished(after, "CANCELLED", "INSUFFICIENT_FUNDS") == \
        finished(counted, "CANCELLED", "INSUFFICIENT_FUNDS")
    assert completion(after, "CANCELLED")[0] == completion(counted, "CANCELLED")[0]


def test_an_outcome_in_a_batch_rolled_back_and_run_again_is_counted_once():
    """The outcome is counted after the commit, not when the handler runs: an order's
    COMPLETED shares a batch with a message whose handler keeps failing, so the batch is rolled
    back CONSUMER_MAX_ATTEMPTS times, then split, and the COMPLETED commits alone. The test's own
    storefront (the system's steps aside) starts with both messages waiting, so that they reach
    it as one batch, and counts from 0."""
    token = shop.new_customer()
    pet = shop.create_pet()
    number, _ = shop.create_card(100_000)
    poison = str(uuid.uuid4())
    stopped = []
    try:
        # The order stays PENDING (version 1) in the read model: its saga is not running.
        shop.petstore("stop", "order-saga")
        stopped.append("order-saga")
        order_id = shop.place_order(token, number, [pet])
        shop.petstore("stop", "storefront")
        stopped.append("storefront")
        with Broker() as broker:  # as the saga, its producer
            broker.publish("saga.order_status_changed.v1",
                           {"order_id": order_id, "status": "COMPLETED", "version": 50,
                            "occurred_at": now_rfc3339()}, correlation_id=order_id)
            other = str(uuid.uuid4())
            broker.publish("saga.order_status_changed.v1",
                           {"order_id": other, "status": "CANCELLED", "reason": "TIMEOUT",
                            "version": 9, "occurred_at": now_rfc3339()},
                           correlation_id=other, message_id=poison)
        d = Daemon("services/storefront/storefront", "rolled-back",
                   DATABASE_URL=need("STOREFRONT_DATABASE_URL"),
                   AMQP_URL=need("STOREFRONT_AMQP_URL"),
                   PAYMENT_PUBLIC_KEY=need("PAYMENT_PUBLIC_KEY"), ADMIN_TOKEN=need("ADMIN_TOKEN"),
                   CONSUMER_MAX_ATTEMPTS="2", PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID=poison)
        try:
            d.wait_ready("the test's storefront ready")
            wait_dead_letters("storefront.events.dlq", [poison])
            base = f"http://127.0.0.1:{d.port}"
            wait_until(lambda: finished(scrape(base), "COMPLETED") >= 1, timeout=30,
                       what="the COMPLETED counted")
            assert d.lines("consumer.batch_split"), "the batch was not split: not one batch?"
            time.sleep(0.5)
            samples = scrape(base)
            assert finished(samples, "COMPLETED") == 1
            assert completion(samples, "COMPLETED")[0] == 1
            assert finished(samples, "CANCELLED", "TIMEOUT") == 0
        finally:
            assert d.stop() == 0
    finally:
        for name in reversed(stopped):
            shop.petstore("start", name)
        wait_until(lambda: all(daemon_ready(n) for n in SYSTEM_DAEMONS), timeout=120,
                   what="every daemon of the system ready again")


@pytest.mark.parametrize("status,reason", [
    ("COMPLETED", "none"), ("CANCELLED", "PET_UNAVAILABLE"), ("CANCELLED", "INSUFFICIENT_FUNDS"),
    ("CANCELLED", "CARD_INVALID"), ("CANCELLED", "CARD_UNKNOWN"),
    ("CANCELLED", "CANCELLED_BY_USER"), ("CANCELLED", "TIMEOUT"), ("NEEDS_OPERATOR", "none")])
def test_every_outcome_the_objectives_read_has_a_series_from_the_start(status, reason):
    """The SLO ratios divide by sums of these series: each exists (at 0 before its first order)
    so that a rate over it is defined."""
    samples = scrape(storefront_url())
    assert ("petstore_orders_finished_total",
            frozenset({("status", status), ("reason", reason)})) in samples
    assert ("petstore_order_completion_seconds_count", frozenset({("status", status)})) in samples
