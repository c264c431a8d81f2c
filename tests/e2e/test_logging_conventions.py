"""The logging conventions of runbook/logging-and-tracing.md, checked on one real order: each
process's log holds, in order, the lines the conventions promise for it (entry, decisions,
outgoing messages), every one naming the order and its trace; and SQL debug lines carry their
parameters but never a secret."""
import base64
import glob
import hashlib
import json
import os
import subprocess
import uuid

import db
import httpc
from daemons import daemon_ready
from petstore_env import launcher, need
from shop import api, create_card, create_pet, place_order, wait_status
from wait import wait_until


def log_dir():
    return os.environ.get("PETSTORE_LOGS") or os.path.join(need("PETSTORE_HOME"), "logs")


def read_log(process):
    lines = []
    path = os.path.join(log_dir(), process + ".log")
    if not os.path.exists(path):
        return lines
    with open(path, errors="replace") as f:
        for text in f:
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
    return lines


def like(message, **fields):
    """A predicate on a log line: its message and the given fields."""
    def match(line):
        return line.get("message") == message and all(line.get(k) == v for k, v in fields.items())
    match.what = message + (" " + json.dumps(fields) if fields else "")
    return match


def missing_in_order(lines, expected):
    """The first expected line not found after the previous one, or None when all are."""
    i = 0
    for want in expected:
        while i < len(lines) and not want(lines[i]):
            i += 1
        if i == len(lines):
            return want.what
        i += 1
    return None


def customer():
    name = "u" + uuid.uuid4().hex[:12]
    password = "pw-" + uuid.uuid4().hex
    assert httpc.post(api() + "/v1/users", {"username": name, "password": password}).status == 201
    r = httpc.post(api() + "/v1/sessions", {"username": name, "password": password})
    assert r.status == 201, r
    return password, r.json["token"]


def expected_lines(order_id):
    """Per process, the lines one COMPLETED order leaves, in the order they are written."""
    recv = lambda t: like("message.received", type=t)  # noqa: E731
    enq = lambda t: like("outbox.enqueued", type=t)  # noqa: E731
    pub = lambda t: like("relay.published", type=t)  # noqa: E731
    step = lambda a, b: like("saga.step", **{"from": a, "to": b})  # noqa: E731
    return {
        "storefront": [like("outbox.enqueued", type="order.placed.v1"),
                       like("order.accepted"),
                       like("http.request", method="POST", route="/v1/orders", status=202),
                       like("order.view_updated", status="COMPLETED", applied=True)],
        "relay-storefront": [pub("order.placed.v1")],
        "order-saga": [recv("order.placed.v1"), enq("inventory.reserve.v1"),
                       step("PENDING", "RESERVING"),
                       recv("inventory.reserved.v1"), enq("payment.charge.v1"),
                       step("RESERVING", "PAYING"),
                       recv("payment.charged.v1"), enq("inventory.confirm_sale.v1"),
                       step("PAYING", "CONFIRMING"),
                       recv("inventory.sale_confirmed.v1"), step("CONFIRMING", "COMPLETED")],
        "relay-saga": [pub("inventory.reserve.v1"), pub("payment.charge.v1"),
                       pub("inventory.confirm_sale.v1")],
        "inventory": [recv("inventory.reserve.v1"), enq("inventory.reserved.v1"),
                      like("inventory.decision", command="reserve", reply="reserved"),
                      recv("inventory.confirm_sale.v1"), enq("inventory.sale_confirmed.v1"),
                      like("inventory.decision", command="confirm_sale", reply="sale_confirmed")],
        "relay-inventory": [pub("inventory.reserved.v1"), pub("inventory.sale_confirmed.v1")],
        "payment": [recv("payment.charge.v1"), enq("payment.charged.v1"),
                    like("payment.charged", amount_cents=700)],
        "relay-payment": [pub("payment.charged.v1")],
        "audit": [recv("order.placed.v1"), recv("inventory.reserved.v1"),
                  recv("payment.charged.v1"), recv("inventory.sale_confirmed.v1")],
    }


def test_one_order_leaves_its_lines_in_order_in_every_process_log():
    _password, token = customer()
    number, _card = create_card(10_000)
    order_id = place_order(token, number, [create_pet(700)])
    wait_status(token, order_id, ("COMPLETED",))
    expected = expected_lines(order_id)

    def order_lines(process):
        return [l for l in read_log(process) if l.get("order_id") == order_id]

    def all_found():
        gaps = {p: missing_in_order(order_lines(p), want) for p, want in expected.items()}
        gaps = {p: g for p, g in gaps.items() if g}
        return True if not gaps else (False, gaps)
    wait_until(lambda: all_found() is True, timeout=20, what="every process's lines of the order")

    # One trace from the door to the last consumer: the POST's trace is on every line of the
    # message flow, and the POST's entry line (which cannot name the order yet) is in it.
    accepted = [l for l in order_lines("storefront") if l["message"] == "order.accepted"][0]
    trace = accepted["trace_id"]
    for process in expected:
        for line in order_lines(process):
            assert line.get("trace_id"), f"{process}: {line} has no trace_id"
            if line["message"] in ("message.received", "outbox.enqueued", "relay.published",
                                   "saga.step", "inventory.decision", "payment.charged"):
                assert line["trace_id"] == trace, f"{process}: {line} is outside the trace"
    storefront = read_log("storefront")
    entry = [l for l in storefront if l.get("trace_id") == trace and l["message"] == "http.received"]
    assert entry and entry[0]["method"] == "POST" and entry[0]["route"] == "/v1/orders"
    assert storefront.index(entry[0]) < storefront.index(accepted)
    # Every incoming message says where it came from and whether it is a redelivery.
    for line in order_lines("order-saga"):
        if line["message"] == "message.received":
            assert {"type", "message_id", "queue", "redelivered"} <= line.keys(), line


def launcher_env(**overrides):
    env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    env.update(overrides)
    return env


def restart(name, **env):
    out = subprocess.run([launcher(), "restart", name], env=launcher_env(**env),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_until(lambda: daemon_ready(name), timeout=30, what=f"{name} ready")


def test_sql_debug_lines_carry_parameters_and_no_log_holds_a_secret():
    sizes = {p: os.path.getsize(p) for p in glob.glob(os.path.join(log_dir(), "*.log"))}
    for name in ("storefront", "payment"):
        restart(name, LOG_LEVEL="debug")
    try:
        password, token = customer()
        number, _card = create_card(10_000)
        order_id = place_order(token, number, [create_pet(300)])
        wait_status(token, order_id, ("COMPLETED",))
        sf = db.connect("storefront")
        body = db.value(sf, "SELECT body FROM outbox WHERE correlation_id = %s AND type = %s",
                        order_id, "order.placed.v1")
        sf.close()
        sealed = json.loads(body)["card_sealed"]
        assert base64.b64decode(sealed)
    finally:
        for name in ("storefront", "payment"):
            restart(name)

    def debug_lines():
        return [l for l in read_log("storefront") if l.get("message") == "db.query"]
    wait_until(lambda: any(order_id in json.dumps(l) for l in debug_lines()), timeout=10,
               what="db.query lines of the order")
    lines = debug_lines()
    insert = [l for l in lines if l.get("statement") == "sf_insert_order" and order_id in l["params"]]
    assert insert, "no db.query line of sf_insert_order with the order id among its parameters"
    assert insert[0]["duration_ms"] >= 0
    claim = [l for l in lines if l.get("statement") == "sf_claim_key"]
    assert claim and all(l["params"][2] == "[SECRET]" for l in claim)
    session = [l for l in lines if l.get("statement") == "sf_session_user"]
    assert session and all(l["params"] == ["[SECRET]"] for l in session)
    enqueue = [l for l in lines if l.get("statement") == "outbox_enqueue"]
    assert enqueue and all(l["params"][10] == "[SECRET]" for l in enqueue)
    charge = [l for l in read_log("payment") if l.get("statement") == "payment_charge"]
    assert any(l.get("order_id") == order_id for l in charge), "payment's SQL lacks the order"

    token_hash = hashlib.sha256(token.encode()).hexdigest()
    secrets = {"password": password, "token": token, "token hash": token_hash,
               "card number": number, "sealed card": sealed}
    for path in glob.glob(os.path.join(log_dir(), "*.log")):
        with open(path, errors="replace") as f:
            f.seek(sizes.get(path, 0))
            text = f.read()
        for what, value in secrets.items():
            assert value not in text, f"the {what} appears in {os.path.basename(path)}"
