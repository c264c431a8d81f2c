"""Extra daemon processes of the system's binaries for tests that need a daemon of their own
(a short heartbeat, a fault hook, a short retention), and the dead-letter queue reader those
tests share. A test that replaces one of the system's daemons stops the system's copy with
`replacing(name)` and gets it back, ready, when the block ends."""
import contextlib
import os
import re
import socket
import subprocess
import time

import uuid

import pika

import db
from amqp import Broker, envelope
from httpc import get
from petstore_env import binary, need
from shop import petstore
from wait import wait_until

SYSTEM_DAEMONS = ["storefront", "inventory", "payment", "order-saga", "audit", "relay-storefront",
                  "relay-inventory", "relay-payment", "relay-saga"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        return get(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    except OSError:
        return False


def daemon_ready(name):
    """The system's daemon `name` (as the launcher names it) answers /readyz with 200."""
    return ready(os.environ["PETSTORE_" + name.upper().replace("-", "_") + "_PORT"])


class Daemon:
    """One extra daemon process; env is added to (and overrides) its basic environment:
    HTTP_PORT (a free port), AMQP_HEARTBEAT_S (default 2), LOG_LEVEL=debug and AMQP_MGMT_URL
    (the system's management API, for the start check of the queues it consumes)."""

    def __init__(self, relative, label, **env):
        self.port = free_port()
        full = {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "PATH"))}
        full.update(HTTP_PORT=str(self.port), AMQP_HEARTBEAT_S="2", LOG_LEVEL="debug",
                    AMQP_MGMT_URL=need("RABBITMQ_MGMT_URL"))
        full.update(env)
        self.log_path = f"/tmp/daemon-test-{label}-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary(relative)], env=full, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, what):
        wait_until(lambda: self.proc.poll() is not None or ready(self.port), timeout=60, what=what)
        assert self.proc.poll() is None, self.tail()

    def wait_exit(self, timeout, what):
        """Waits for the process to end by itself; returns its exit status."""
        wait_until(lambda: self.proc.poll() is not None, timeout=timeout, what=what)
        return self.proc.returncode

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        return self.proc.returncode

    def tail(self, chars=3000):
        with open(self.log_path) as f:
            return f.read()[-chars:]

    def lines(self, message):
        with open(self.log_path) as f:
            return [line for line in f if f'"message":"{message}"' in line]

    def metric(self, name, **labels):
        """The value of one sample of /metrics (0 when absent)."""
        text = get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).raw.decode()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
            if m and m.group(1) == name and (m.group(2) or "") == want:
                return float(m.group(3))
        return 0.0


def audit_daemon(label, **env):
    """An audit consumer of audit.events on the system's audit database, as the audit user."""
    return Daemon("services/audit/audit", label, DATABASE_URL=need("AUDIT_DATABASE_URL"),
                  AMQP_URL=need("AUDIT_AMQP_URL"), **env)


def publish_events(n):
    """n valid order.cancel_requested events, published as the storefront (their producer, with
    its user_id) on petstore.events; they reach audit.events through the audit fanout (and the
    saga, which records a cancel for an unknown order). Returns their message ids."""
    ids = []
    with Broker(need("STOREFRONT_AMQP_URL")) as broker:
        for _ in range(n):
            order = str(uuid.uuid4())
            props = envelope("order.cancel_requested.v1", order, source="storefront")
            props.user_id = "storefront"
            ids.append(broker.publish("order.cancel_requested.v1",
                                      {"order_id": order, "user_id": str(uuid.uuid4())},
                                      properties=props))
    return ids


def publish_poison(headers=None):
    """One poison message (an unknown type) straight to petstore.audit, so that only audit.events
    receives it; extra headers are added to its envelope. Returns its message id."""
    props = envelope("order.teleported.v1", str(uuid.uuid4()), source="storefront")
    props.headers.update(headers or {})
    with Broker() as broker:
        return broker.publish("x", None, exchange="petstore.audit", routing_key="",
                              body=b'{"order_id":"%s"}' % props.correlation_id.encode(),
                              properties=props)


def audit_recorded(conn, ids):
    """How many of the message ids are in the audit database's event_log."""
    return db.value(conn, "SELECT count(*) FROM event_log WHERE message_id = ANY(%s::uuid[])",
                    list(ids))


@contextlib.contextmanager
def replacing(name):
    """Stops the system's daemon `name` for the block (so that the test's own daemon is the only
    consumer of its queue); starts it again afterwards and waits until every daemon is ready."""
    petstore("stop", name)
    try:
        yield
    finally:
        petstore("start", name)
        wait_until(lambda: all(daemon_ready(d) for d in SYSTEM_DAEMONS), timeout=120,
                   what="every daemon of the system ready again")


def ready_count(queue):
    """Messages ready in queue, exactly (a passive declare, not the management API's sampled
    statistics)."""
    conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def take_dead_letters(queue, message_ids, timeout=2.0):
    """Removes from queue (a .dlq) every message whose message_id is in message_ids and returns
    them as [(properties, body)]; every other message is left where it was (taken unacknowledged
    and returned when the channel closes). Reads for up to timeout seconds."""
    wanted = set(message_ids)
    conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
    found = []
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1000)

        def on_message(_ch, method, props, body):
            if props.message_id in wanted:
                found.append((props, body))
                ch.basic_ack(method.delivery_tag)

        ch.basic_consume(queue, on_message, auto_ack=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        return found
    finally:
        conn.close()


def wait_dead_letters(queue, ids, timeout=30):
    """Waits until every id has reached queue (a .dlq), taking them out of it; returns
    {id: [(properties, body), ...]} (a dead letter may be there more than once)."""
    seen = {}

    def all_there():
        for props, body in take_dead_letters(queue, ids, timeout=0.5):
            seen.setdefault(props.message_id, []).append((props, body))
        return set(ids) <= set(seen)
    wait_until(all_there, timeout=timeout, interval=0.1, what=f"{ids} in {queue}")
    return seen
