"""Every daemon checks at start, through the management API, that each queue it consumes is a
quorum queue with a dead-letter exchange, an explicit delivery limit and at-least-once
dead-lettering, and refuses to start (exit 78, a message naming the missing setting) when it is
not; while the management API cannot answer it waits, not ready, and still drains on SIGTERM.

The broken settings come from a temporary policy of higher priority than the system's
`dead-letter-audit.events` that matches audit.events only; it is always deleted afterwards."""
import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

from amqp import queue_info
from daemons import SYSTEM_DAEMONS, Daemon, audit_daemon, daemon_ready, free_port
from httpc import get
from petstore_env import need
from wait import wait_until

POLICY = "test-queue-policy-check"
SYSTEM_POLICY = "dead-letter-audit.events"
EX_CONFIG = 78

# The system's own policy for audit.events (broker-config/definitions.json), less one setting.
FULL = {"dead-letter-exchange": "petstore.dlx", "dead-letter-routing-key": "audit.events",
        "dead-letter-strategy": "at-least-once", "overflow": "reject-publish",
        "delivery-limit": 5}
NO_DELIVERY_LIMIT = {k: v for k, v in FULL.items() if k != "delivery-limit"}
AT_MOST_ONCE = dict(FULL, **{"dead-letter-strategy": "at-most-once"})

# The daemons that consume a work queue, by the launcher's name.
CONSUMERS = ["storefront", "inventory", "payment", "order-saga", "audit"]


def admin_request(method, path, body=None):
    """A call on the management API as the administrator; returns the HTTP status."""
    req = urllib.request.Request(need("RABBITMQ_MGMT_URL") + "/api/" + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    token = base64.b64encode(
        f"{need('RABBITMQ_MGMT_USER')}:{need('RABBITMQ_MGMT_PASSWORD')}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def policy_of_audit_events():
    return queue_info("audit.events").get("policy")


def set_policy(definition):
    status = admin_request("PUT", "policies/petstore/" + POLICY,
                           {"pattern": r"^audit\.events$", "apply-to": "queues",
                            "priority": 100, "definition": definition})
    assert status in (201, 204), status
    wait_until(lambda: policy_of_audit_events() == POLICY, timeout=30,
               what=f"policy {POLICY} in effect on audit.events")


@pytest.fixture
def temporary_policy():
    """set_policy, undone whatever happens: the system's policy is in effect again after."""
    try:
        yield set_policy
    finally:
        assert admin_request("DELETE", "policies/petstore/" + POLICY) in (204, 404)
        wait_until(lambda: policy_of_audit_events() == SYSTEM_POLICY, timeout=30,
                   what=f"policy {SYSTEM_POLICY} in effect on audit.events again")


def mgmt_url():
    return need("RABBITMQ_MGMT_URL")


@pytest.mark.parametrize("definition, setting, found", [
    (NO_DELIVERY_LIMIT, "delivery-limit", "not set"),
    (AT_MOST_ONCE, "dead-letter-strategy", 'is "at-most-once"'),
], ids=["no-delivery-limit", "at-most-once"])
def test_a_daemon_refuses_a_queue_that_misses_a_setting_and_starts_once_it_is_fixed(
        temporary_policy, definition, setting, found):
    temporary_policy(definition)
    refused = audit_daemon("policy-refused", AMQP_MGMT_URL=mgmt_url())
    try:
        assert refused.wait_exit(30, "the audit daemon to refuse to start") == EX_CONFIG, \
            refused.tail()
        out = refused.tail()
        # The one line on stderr for the operator: the queue, the setting, what to do.
        line = next(ln for ln in out.splitlines() if ln.startswith("audit: "))
        assert "audit.events" in line and f"{setting} {found}" in line, line
        assert f'policy "{POLICY}"' in line, line
        assert "broker-config/definitions.json" in line, line
        # The JSON log names the queue and each problem.
        [logged] = [json.loads(ln) for ln in refused.lines("startup.queue_unfit")]
        assert logged["queue"] == "audit.events" and logged["policy"] == POLICY
        assert [p["setting"] for p in logged["problems"]] == [setting]
    finally:
        refused.stop()

    assert admin_request("DELETE", "policies/petstore/" + POLICY) == 204
    wait_until(lambda: policy_of_audit_events() == SYSTEM_POLICY, timeout=30,
               what="the system's policy in effect on audit.events again")
    accepted = audit_daemon("policy-accepted", AMQP_MGMT_URL=mgmt_url())
    try:
        accepted.wait_ready("the audit daemon ready once the policy is fixed")
        assert len(accepted.lines("startup.queue_checked")) == 1
    finally:
        assert accepted.stop() == 0


def test_a_daemon_waits_for_an_unreachable_management_api_and_still_drains():
    closed = free_port()  # nothing listens there
    waiting = audit_daemon("policy-waiting", AMQP_MGMT_URL=f"http://127.0.0.1:{closed}")
    try:
        wait_until(lambda: len(waiting.lines("startup.queue_check_retry")) >= 2, timeout=30,
                   what="two attempts at the management API")
        assert waiting.proc.poll() is None, waiting.tail()
        health = get(f"http://127.0.0.1:{waiting.port}/readyz", timeout=5, retries_503=0)
        assert health.status == 503
        check = health.json["checks"]["queue-policy"]
        assert check["status"] == "fail" and str(closed) in check["detail"], check
    finally:
        assert waiting.stop() == 0, "SIGTERM while waiting drains and exits 0: " + waiting.tail()


def test_a_user_the_management_api_refuses_stops_the_daemon():
    url = urllib.parse.urlparse(need("AUDIT_AMQP_URL"))
    wrong = url._replace(netloc=f"{url.username}:wrong-password@{url.hostname}:{url.port}")
    refused = Daemon("services/audit/audit", "policy-unauthorized",
                     DATABASE_URL=need("AUDIT_DATABASE_URL"), AMQP_MGMT_URL=mgmt_url(),
                     AMQP_URL=urllib.parse.urlunparse(wrong))
    try:
        assert refused.wait_exit(30, "the audit daemon to stop") == EX_CONFIG, refused.tail()
        out = refused.tail()
        assert "401" in out and "management" in out, out
        assert "wrong-password" not in out
    finally:
        refused.stop()


def test_a_management_url_that_is_not_the_management_api_stops_the_daemon():
    amqp_port = urllib.parse.urlparse(need("AUDIT_AMQP_URL")).port
    wrong = f"http://127.0.0.1:{amqp_port}"  # the AMQP listener answers in its own protocol
    refused = audit_daemon("policy-not-http", AMQP_MGMT_URL=wrong)
    try:
        assert refused.wait_exit(30, "the audit daemon to stop") == EX_CONFIG, refused.tail()
        assert f"Check that AMQP_MGMT_URL ({wrong}) is RabbitMQ's management API" in \
            refused.tail()
    finally:
        refused.stop()


def test_the_running_systems_daemons_passed_the_check():
    for name in CONSUMERS:
        assert daemon_ready(name), name
        port = os.environ["PETSTORE_" + name.upper().replace("-", "_") + "_PORT"]
        checks = get(f"http://127.0.0.1:{port}/readyz", timeout=5).json["checks"]
        assert checks["queue-policy"]["status"] == "ok", (name, checks)
    # A daemon that consumes no work queue (a relay) has nothing to check.
    assert all(daemon_ready(d) for d in SYSTEM_DAEMONS)
