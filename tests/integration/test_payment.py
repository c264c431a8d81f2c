"""Integration tests of the payment daemon against the running system of ./petstore test.

The admin API is called over HTTP; commands are published on petstore.commands (routing key
"payment") as order-saga would send them, and the replies are read from a private queue bound
to petstore.events with "payment.*" (the outbox relay publishes them). Balances are read
through the admin API, the ledger and inbox through PAYMENT_DATABASE_URL. Card numbers are
random, Luhn-valid and start with 9, so every test owns its cards; order ids are random, so
order-saga ignores the replies (unknown saga).

Card numbers are sealed with PAYMENT_PUBLIC_KEY (python3-nacl), exactly as the storefront does;
the key comes from the environment or, failing that, from $PETSTORE_HOME/secrets.env.
"""
import base64
import json
import os
import random
import time
import uuid
from datetime import datetime, timedelta, timezone

import signal
import socket
import subprocess

import pika
import psycopg2
import pytest
from nacl import public as nacl_public

import db as dbh
import httpc
from amqp import Broker
from petstore_env import binary, need
from tcp_proxy import TcpProxy
from wait import wait_until

REPLY_TIMEOUT_S = 20.0


def secret(name):
    """name from the environment, else from the instance's $PETSTORE_HOME/secrets.env, else
    None."""
    value = os.environ.get(name)
    path = os.path.join(os.environ.get("PETSTORE_HOME", ""), "secrets.env")
    if not value and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.startswith(f"export {name}="):
                    value = line.split("=", 1)[1].strip().strip("'\"")
    return value


def public_key():
    return secret("PAYMENT_PUBLIC_KEY") or need("PAYMENT_PUBLIC_KEY")


# ---------------------------------------------------------------- cards

def luhn_complete(prefix):
    """prefix + the Luhn check digit."""
    total = 0
    for i, c in enumerate(reversed(prefix)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def new_card_number(length=16):
    return luhn_complete("9" + "".join(random.choice("0123456789") for _ in range(length - 2)))


def break_luhn(number):
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# ---------------------------------------------------------------- HTTP

class Admin:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, token=None):
        """(status, headers, parsed body) of an admin call; token None means the admin's."""
        r = httpc.request(method, self.base + path, body=body,
                          token=self.token if token is None else token, timeout=10)
        return r.status, r.headers, r.json

    def create_card(self, number, balance):
        status, _, body = self.call("POST", "/v1/cards",
                                    {"card_number": number, "balance_cents": balance})
        assert status == 201, body
        return body["id"]

    def balance(self, card_id):
        status, _, body = self.call("GET", f"/v1/cards/{card_id}")
        assert status == 200, body
        return body["balance_cents"]


# ---------------------------------------------------------------- broker

class Payment:
    """Sends payment commands as order-saga does and collects payment's replies by order."""

    def __init__(self):
        self.box = nacl_public.SealedBox(nacl_public.PublicKey(base64.b64decode(public_key())))
        self.broker = Broker()
        self.capture = self.broker.capture("petstore.events", "payment.*")

    def close(self):
        self.broker.close()

    def seal(self, number):
        return base64.b64encode(self.box.encrypt(number.encode())).decode()

    def publish(self, type_, payload, order_id, message_id=None, body=None):
        """Publishes to payment's queue whatever the type says (poison has unknown types)."""
        return self.broker.publish(type_, payload, correlation_id=order_id,
                                   message_id=message_id, body=body,
                                   exchange="petstore.commands", routing_key="payment")

    def charge(self, order_id, number, amount, message_id=None, expires_at=None, sealed=None):
        payload = {"order_id": order_id, "amount_cents": amount,
                   "card_sealed": sealed or self.seal(number), "card_last4": number[-4:]}
        if expires_at is not None:
            payload["expires_at"] = expires_at
        return self.publish("payment.charge.v1", payload, order_id, message_id)

    def refund_or_void(self, order_id, message_id=None):
        return self.publish("payment.refund_or_void.v1", {"order_id": order_id}, order_id,
                            message_id)

    def replies(self, order_id):
        self.capture._drain()
        return [{"type": p.type, "body": json.loads(b), "headers": dict(p.headers or {})}
                for _, p, b in self.capture.messages if p.correlation_id == order_id]

    def wait_replies(self, order_id, count):
        """The order's replies, once there are at least count of them."""
        return wait_until(lambda: (lambda r: r if len(r) >= count else None)(
            self.replies(order_id)), timeout=REPLY_TIMEOUT_S,
            what=f"{count} payment replies for order {order_id}")


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def admin():
    return Admin(need("PAYMENT_API"), need("ADMIN_TOKEN"))


@pytest.fixture(scope="module")
def payment():
    p = Payment()
    yield p
    p.close()


@pytest.fixture(scope="module")
def db():
    conn = dbh.connect("payment")
    yield conn
    conn.close()


def ledger(db, order_id):
    return [(r["kind"], r["amount_cents"], r["reason"]) for r in dbh.rows(
        db, "SELECT kind, amount_cents, reason FROM ledger WHERE order_id = %s ORDER BY id",
        order_id)]


def card_with(admin, balance):
    number = new_card_number()
    return number, admin.create_card(number, balance)


def types(replies):
    return [r["type"] for r in replies]


# ---------------------------------------------------------------- admin API

def test_admin_creates_a_card_and_reads_it_back(admin):
    number = new_card_number()
    status, headers, body = admin.call("POST", "/v1/cards",
                                       {"card_number": number, "balance_cents": 12345})
    assert status == 201, body
    assert body["last4"] == number[-4:]
    assert body["balance_cents"] == 12345
    assert headers.get("Location") == f"/v1/cards/{body['id']}"
    assert number not in json.dumps(body)

    status, _, got = admin.call("GET", f"/v1/cards/{body['id']}")
    assert status == 200
    assert (got["id"], got["last4"], got["balance_cents"]) == (body["id"], number[-4:], 12345)
    assert number not in json.dumps(got)


def test_admin_refuses_a_second_card_with_the_same_number(admin):
    number = new_card_number()
    admin.create_card(number, 100)
    status, headers, body = admin.call("POST", "/v1/cards",
                                       {"card_number": number, "balance_cents": 5})
    assert status == 409
    assert headers.get("Content-Type", "").startswith("application/problem+json")
    assert number not in json.dumps(body)


def test_admin_answers_404_for_an_unknown_card(admin):
    assert admin.call("GET", f"/v1/cards/{uuid.uuid4()}")[0] == 404
    assert admin.call("GET", "/v1/cards/not-a-uuid")[0] == 404


@pytest.mark.parametrize("body", [
    {"card_number": "luhn", "balance_cents": 100},
    {"card_number": "4111111111111112", "balance_cents": 100},   # fails Luhn
    {"card_number": "79927398713", "balance_cents": 100},        # Luhn ok, 11 digits
    {"card_number": "4111 1111 1111 1111", "balance_cents": 100},
    {"card_number": 4111111111111111, "balance_cents": 100},
    {"balance_cents": 100},
    {"card_number": "VALID", "balance_cents": -1},
    {"card_number": "VALID", "balance_cents": "100"},
    {"card_number": "VALID", "balance_cents": 1.5},
    {"card_number": "VALID"},
], ids=["letters", "bad-luhn", "too-short", "spaces", "number-not-string", "no-number",
        "negative-balance", "balance-string", "balance-fraction", "no-balance"])
def test_admin_rejects_an_invalid_card_with_422(admin, body):
    if body.get("card_number") == "VALID":
        body = dict(body, card_number=new_card_number())
    status, headers, problem = admin.call("POST", "/v1/cards", body)
    assert status == 422, problem
    assert headers.get("Content-Type", "").startswith("application/problem+json")
    assert problem["status"] == 422
    if isinstance(body.get("card_number"), str):
        assert body["card_number"] not in json.dumps(problem)


@pytest.mark.parametrize("token", ["", "wrong-token"], ids=["missing", "wrong"])
def test_admin_requires_the_admin_token(admin, token):
    number = new_card_number()
    status, headers, _ = admin.call("POST", "/v1/cards",
                                    {"card_number": number, "balance_cents": 1}, token=token)
    assert status == 401
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert admin.call("GET", f"/v1/cards/{uuid.uuid4()}", token=token)[0] == 401
    # The refused card was not created.
    assert admin.call("POST", "/v1/cards", {"card_number": number, "balance_cents": 1})[0] == 201


# ---------------------------------------------------------------- charges

def test_a_charge_debits_once_however_often_it_is_sent(admin, payment, db):
    number, card = card_with(admin, 10000)
    order = str(uuid.uuid4())
    first = payment.charge(order, number, 2500)
    payment.charge(order, number, 2500, message_id=first)      # the same delivery, redelivered
    payment.charge(order, number, 4000)                          # a new command for the order
    replies = payment.wait_replies(order, 2)
    assert types(replies) == ["payment.charged.v1", "payment.charged.v1"]
    for r in replies:
        assert r["body"] == {"order_id": order, "amount_cents": 2500, "card_last4": number[-4:]}
    assert replies[0]["headers"].get("causation_id") == first
    assert admin.balance(card) == 7500
    assert ledger(db, order) == [("charge", 2500, None)]
    assert dbh.value(db, "SELECT count(*) FROM inbox WHERE consumer = 'payment' "
                         "AND message_id = %s", first) == 1
    # Only the last four digits ever leave the service.
    assert dbh.value(db, "SELECT count(*) FROM outbox WHERE body LIKE %s OR headers::text LIKE %s",
                     f"%{number}%", f"%{number}%") == 0
    assert len(payment.replies(order)) == 2


def test_a_charge_of_the_whole_balance_succeeds(admin, payment):
    number, card = card_with(admin, 3000)
    order = str(uuid.uuid4())
    payment.charge(order, number, 3000)
    assert types(payment.wait_replies(order, 1)) == ["payment.charged.v1"]
    assert admin.balance(card) == 0


@pytest.mark.parametrize("case", ["bad-luhn", "unopenable", "unknown-card", "insufficient"])
def test_a_declined_charge_leaves_the_balance_unchanged(admin, payment, db, case):
    number, card = card_with(admin, 1000)
    order = str(uuid.uuid4())
    amount, sealed, reason = 500, None, None
    if case == "bad-luhn":
        sent, reason = break_luhn(number), "CARD_INVALID"
    elif case == "unopenable":
        # Sealed for another key: only the payment service's key opens a box.
        other = nacl_public.PrivateKey.generate().public_key
        sealed = base64.b64encode(nacl_public.SealedBox(other).encrypt(number.encode())).decode()
        sent, reason = number, "CARD_INVALID"
    elif case == "unknown-card":
        sent, reason = new_card_number(), "CARD_UNKNOWN"
    else:
        sent, amount, reason = number, 1001, "INSUFFICIENT_FUNDS"
    payment.charge(order, sent, amount, sealed=sealed)
    replies = payment.wait_replies(order, 1)
    assert [(r["type"], r["body"]) for r in replies] == [
        ("payment.declined.v1", {"order_id": order, "reason": reason})]
    assert admin.balance(card) == 1000
    assert ledger(db, order) == [("decline", amount, reason)]


def test_a_decline_is_final_for_the_order(admin, payment, db):
    number, card = card_with(admin, 1000)
    order = str(uuid.uuid4())
    payment.charge(order, number, 1500)
    payment.charge(order, number, 500)     # would fit now, but the order was declined
    replies = payment.wait_replies(order, 2)
    assert [r["body"]["reason"] for r in replies] == ["INSUFFICIENT_FUNDS"] * 2
    assert admin.balance(card) == 1000
    assert ledger(db, order) == [("decline", 1500, "INSUFFICIENT_FUNDS")]


def test_an_expired_charge_is_declined_expired(admin, payment, db):
    number, card = card_with(admin, 1000)
    order = str(uuid.uuid4())
    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    payment.charge(order, number, 100, expires_at=past)
    replies = payment.wait_replies(order, 1)
    assert replies[0]["body"] == {"order_id": order, "reason": "EXPIRED"}
    assert admin.balance(card) == 1000
    assert ledger(db, order) == [("decline", 100, "EXPIRED")]


def test_a_charge_before_its_expiry_goes_through(admin, payment):
    number, card = card_with(admin, 1000)
    order = str(uuid.uuid4())
    future = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    payment.charge(order, number, 100, expires_at=future)
    assert types(payment.wait_replies(order, 1)) == ["payment.charged.v1"]
    assert admin.balance(card) == 900


# ---------------------------------------------------------------- refunds and voids

def test_refund_or_void_refunds_a_charge_exactly_once(admin, payment, db):
    number, card = card_with(admin, 5000)
    order = str(uuid.uuid4())
    payment.charge(order, number, 1200)
    payment.wait_replies(order, 1)
    assert admin.balance(card) == 3800
    payment.refund_or_void(order)
    payment.refund_or_void(order)          # a retried compensation with a new id
    replies = payment.wait_replies(order, 3)
    assert types(replies) == ["payment.charged.v1", "payment.refunded.v1",
                              "payment.refunded.v1"]
    assert replies[1]["body"] == {"order_id": order, "amount_cents": 1200}
    assert replies[2]["body"] == replies[1]["body"]
    assert admin.balance(card) == 5000
    assert ledger(db, order) == [("charge", 1200, None), ("refund", 1200, None)]
    # The refund is final: a charge command after it changes nothing.
    payment.charge(order, number, 1200)
    assert types(payment.wait_replies(order, 4))[3] == "payment.charged.v1"
    assert admin.balance(card) == 5000


def test_a_void_closes_the_order_to_a_late_charge(admin, payment, db):
    number, card = card_with(admin, 5000)
    order = str(uuid.uuid4())
    payment.refund_or_void(order)
    payment.charge(order, number, 700)     # arrives after the saga gave up on it
    payment.refund_or_void(order)
    replies = payment.wait_replies(order, 3)
    assert [(r["type"], r["body"]) for r in replies] == [
        ("payment.voided.v1", {"order_id": order}),
        ("payment.declined.v1", {"order_id": order, "reason": "ORDER_CLOSED"}),
        ("payment.voided.v1", {"order_id": order}),
    ]
    assert admin.balance(card) == 5000
    assert ledger(db, order) == [("void", 0, None)]


def test_a_declined_order_is_voided_not_refunded(admin, payment, db):
    number, card = card_with(admin, 100)
    order = str(uuid.uuid4())
    payment.charge(order, number, 200)
    payment.refund_or_void(order)
    replies = payment.wait_replies(order, 2)
    assert types(replies) == ["payment.declined.v1", "payment.voided.v1"]
    assert admin.balance(card) == 100
    assert ledger(db, order) == [("decline", 200, "INSUFFICIENT_FUNDS"), ("void", 0, None)]


def test_the_ledger_refuses_changes(db):
    with db.cursor() as cur:
        for sql in ("UPDATE ledger SET amount_cents = amount_cents + 1",
                    "DELETE FROM ledger", "TRUNCATE ledger"):
            with pytest.raises(psycopg2.Error) as err:
                cur.execute(sql)
            assert "immutable" in str(err.value)


# ---------------------------------------------------------------- poison

def _find_dead_letter(amqp_url, message_id):
    """Looks through payment.commands.dlq for message_id without disturbing other messages:
    everything is taken unacknowledged and returned when the channel closes, except the match,
    which is acknowledged (removed) once found. Returns its properties, or None."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1000)
        found = []

        def on_message(_ch, method, props, _body):
            if props.message_id == message_id:
                found.append(props)
                ch.basic_ack(method.delivery_tag)

        ch.basic_consume("payment.commands.dlq", on_message, auto_ack=False)
        deadline = time.monotonic() + 2.0
        while not found and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        return found[0] if found else None
    finally:
        conn.close()


@pytest.mark.parametrize("case,failure_class", [("schema", "contract"), ("json", "contract"),
                                                ("type", "unknown-type"),
                                                ("year-zero", "handler")])
def test_a_poison_command_is_dead_lettered(payment, db, case, failure_class):
    order = str(uuid.uuid4())
    if case == "schema":
        mid = payment.publish("payment.charge.v1", {"order_id": order, "amount_cents": -5},
                              order)
    elif case == "json":
        mid = payment.publish("payment.charge.v1", None, order, body=b"{not json")
    elif case == "type":
        mid = payment.publish("payment.explode.v1", {"order_id": order}, order)
    else:
        # Passes the contract, but no database can hold the date: it would fail forever.
        mid = payment.publish("payment.charge.v1", {
            "order_id": order, "amount_cents": 100, "card_sealed": payment.seal("4111111111111111"),
            "card_last4": "1111", "expires_at": "0000-01-01T00:00:00Z"}, order)
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    props = None
    while props is None:
        assert time.monotonic() < deadline, f"{mid} never reached payment.commands.dlq"
        props = _find_dead_letter(need("AMQP_URL"), mid)
    headers = props.headers or {}
    assert headers.get("x-petstore-original-queue") == "payment.commands"
    assert headers.get("x-petstore-failure-class") == failure_class
    assert ledger(db, order) == []
    assert payment.replies(order) == []


# ---------------------------------------------------------------- competing instances

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def second_instance(tmp_path):
    """A second payment process on the same database and queue (competing consumers)."""
    yield from _payment_process(tmp_path)


@pytest.fixture
def instance_behind_forwarder(tmp_path):
    """A second payment process whose database connections pass through a TcpProxy, with two
    HTTP threads; yields (process, proxy)."""
    url = need("PAYMENT_DATABASE_URL")
    target = dict(kv.split("=", 1) for kv in url.split())
    proxy = TcpProxy(target.get("host", "127.0.0.1"), int(target["port"]))
    through = " ".join([kv for kv in url.split() if not kv.startswith(("host=", "port="))]
                       + ["host=127.0.0.1", f"port={proxy.port}"])
    try:
        for proc in _payment_process(tmp_path, DATABASE_URL=through, HTTP_THREADS="2"):
            yield proc, proxy
    finally:
        proxy.close()


def _payment_process(tmp_path, **overrides):
    keys = {n: secret(n) for n in ("PAYMENT_SECRET_KEY", "PAYMENT_PUBLIC_KEY", "CARD_HASH_KEY")}
    if not all(keys.values()):
        pytest.skip("the payment keys are not available (no secrets.env in PETSTORE_HOME)")
    port = _free_port()
    env = dict(os.environ, **keys, DATABASE_URL=need("PAYMENT_DATABASE_URL"),
               AMQP_URL=os.environ.get("PAYMENT_AMQP_URL") or need("AMQP_URL"),
               AMQP_MGMT_URL=need("RABBITMQ_MGMT_URL"),
               HTTP_PORT=str(port), HTTP_ADDR="127.0.0.1", LOG_LEVEL="info")
    env.update(overrides)
    log = open(tmp_path / "payment-2.log", "w")
    proc = subprocess.Popen([binary("services/payment/payment")], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        def ready_or_exited():
            if proc.poll() is not None:
                return True
            try:
                return httpc.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
            except OSError:
                return False  # not listening yet

        wait_until(ready_or_exited, timeout=30, what="the second payment instance to be ready")
        assert proc.poll() is None, (tmp_path / "payment-2.log").read_text()[-2000:]
        proc.url = f"http://127.0.0.1:{port}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
            assert status == 0, (tmp_path / "payment-2.log").read_text()[-2000:]
        log.close()


def test_competing_instances_never_both_charge_and_void_an_order(admin, payment, db,
                                                                 second_instance):
    """Charge and refund-or-void of one order, sent back to back in either order, land on two
    consumers at once: the outcome is always charge+refund or void (the charge then declined
    ORDER_CLOSED), and every balance matches its ledger."""
    cards = [card_with(admin, 1_000_000) for _ in range(4)]
    sealed = {number: payment.seal(number) for number, _ in cards}
    orders = []
    for i in range(300):
        order = str(uuid.uuid4())
        number, _ = cards[i % len(cards)]
        orders.append(order)
        if i % 2:
            payment.charge(order, number, 100, sealed=sealed[number])
            payment.refund_or_void(order)
        else:
            payment.refund_or_void(order)
            payment.charge(order, number, 100, sealed=sealed[number])
    wait_until(lambda: dbh.value(db, "SELECT count(*) FROM outbox WHERE correlation_id = ANY(%s)",
                                 orders) >= 2 * len(orders),
               timeout=120, interval=0.1, what="both answers for every order")
    outcomes = {tuple(r["kinds"]) for r in dbh.rows(
        db, "SELECT array_agg(kind ORDER BY id) AS kinds FROM ledger "
            "WHERE order_id = ANY(%s::uuid[]) GROUP BY order_id", orders)}
    assert outcomes <= {("charge", "refund"), ("void",)}, outcomes
    for number, card in cards:
        moved = dbh.value(db, "SELECT coalesce(sum(CASE kind WHEN 'charge' THEN amount_cents "
                              "WHEN 'refund' THEN -amount_cents ELSE 0 END), 0) "
                              "FROM ledger WHERE card_id = %s", card)
        assert moved == 0
        assert admin.balance(card) == 1_000_000


# ---------------------------------------------------------------- command line

def _generate_keys():
    out = subprocess.run([binary("services/payment/payment"), "--generate-keys"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    keys = {}
    for line in out.splitlines():
        assert line.startswith("export ") and "=" in line, line
        name, value = line[len("export "):].split("=", 1)
        keys[name] = value
    return keys


def test_generate_keys_prints_a_matching_key_pair_and_a_hash_key():
    keys = _generate_keys()
    assert sorted(keys) == ["CARD_HASH_KEY", "PAYMENT_PUBLIC_KEY", "PAYMENT_SECRET_KEY"]
    secret_key = nacl_public.PrivateKey(base64.b64decode(keys["PAYMENT_SECRET_KEY"], validate=True))
    assert bytes(secret_key.public_key) == base64.b64decode(keys["PAYMENT_PUBLIC_KEY"])
    assert len(base64.b64decode(keys["CARD_HASH_KEY"], validate=True)) == 32
    assert _generate_keys() != keys


def test_a_public_key_of_another_pair_stops_the_daemon_with_exit_78():
    keys, other = _generate_keys(), _generate_keys()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **keys,
           "PAYMENT_PUBLIC_KEY": other["PAYMENT_PUBLIC_KEY"], "DATABASE_URL": "host=127.0.0.1",
           "AMQP_URL": "amqp://u:p@127.0.0.1:1/x", "AMQP_MGMT_URL": "http://127.0.0.1:1",
           "HTTP_PORT": "1"}
    run = subprocess.run([binary("services/payment/payment")], env=env, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 78
    assert "PAYMENT_PUBLIC_KEY does not belong to PAYMENT_SECRET_KEY" in run.stderr
    for value in keys.values():
        assert value not in run.stderr + run.stdout


# ---------------------------------------------------------------- secrets in memory

def _memory_holding(pid, needles):
    """The needles (bytes) found anywhere in the process's writable memory (heap, stacks,
    anonymous mappings such as libmicrohttpd's connection pools), freed or not. Reservations
    larger than 256 MiB (the sanitizer's shadow) are skipped: nothing is allocated there."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("rw") or end - start > 256 << 20:
                continue
            if len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError):
                continue
            found.update(n for n in needles if n in chunk)
    return found


def test_the_admin_api_keeps_no_card_number_in_memory(second_instance):
    """Point 10 of issue 13: once a card number is hashed, or refused, no copy of it stays in
    the payment process: not in libmicrohttpd's buffers, our body buffer, the JSON parser's
    buffers or the parsed value, on the success path and every error path."""
    url = second_instance.url
    token = need("ADMIN_TOKEN")
    created, bad_balance, duplicate, malformed = (new_card_number() for _ in range(4))
    r = httpc.post(url + "/v1/cards", {"card_number": created, "balance_cents": 100}, token=token)
    assert r.status == 201, r
    r = httpc.post(url + "/v1/cards", {"card_number": bad_balance, "balance_cents": -1},
                   token=token)
    assert r.status == 422, r
    for expected in (201, 409):
        r = httpc.post(url + "/v1/cards", {"card_number": duplicate, "balance_cents": 5},
                       token=token)
        assert r.status == expected, r
    r = httpc.post(url + "/v1/cards", raw=f'{{"card_number": "{malformed}", "balance_cents": }}'
                   .encode(), token=token, headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    paths = {created.encode(): "201 created", bad_balance.encode(): "422 bad balance",
             duplicate.encode(): "201 then 409 duplicate", malformed.encode(): "400 malformed"}
    held = {}

    def clean():
        held["now"] = _memory_holding(second_instance.pid, set(paths))
        return not held["now"]
    # A request is freed when libmicrohttpd reports it complete, just after the answer is sent.
    try:
        wait_until(clean, timeout=5, what="no card number left in the payment process's memory")
    except AssertionError:
        raise AssertionError("card numbers still in memory after: "
                             + ", ".join(sorted(paths[n] for n in held["now"]))) from None


# ---------------------------------------------------------------- dead pooled connections

def test_the_admin_api_replaces_pooled_connections_that_died_unseen(instance_behind_forwarder):
    """Point 8 of issue 13, for the payment admin API: its HTTP threads keep their database
    connections; when those die without a word (a middlebox between payment and PostgreSQL
    forgot them), the first read and the first card creation on each thread still succeed.
    The creation is a write, repeated only because its statement finds the row its own first
    run may have committed (.idempotent), so no card is created twice or answered 409."""
    import concurrent.futures
    proc, proxy = instance_behind_forwarder
    token = need("ADMIN_TOKEN")
    number = new_card_number()
    r = httpc.post(proc.url + "/v1/cards", {"card_number": number, "balance_cents": 7},
                   token=token)
    assert r.status == 201, r
    card = r.json["id"]

    def read(_):
        return httpc.get(proc.url + f"/v1/cards/{card}", token=token, retries_503=0).status

    def create(_):
        return httpc.post(proc.url + "/v1/cards", {"card_number": new_card_number(),
                                                   "balance_cents": 1},
                          token=token, retries_503=0).status
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(5):  # warm both HTTP threads
            assert set(pool.map(read, range(8))) == {200}
        for fn, ok in ((create, 201), (read, 200)):
            proxy.forget()
            got = list(pool.map(fn, range(8)))
            assert got == [ok] * 8, f"{fn.__name__} on dead connections: {got}"
