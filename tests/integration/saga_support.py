"""Helpers of test_saga.py: a broker stand-in for the services around the saga, and the saga's
database seen from outside."""
import contextlib
import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timezone

import pika
import psycopg2
import psycopg2.extras


def env_ms(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


class Message:
    def __init__(self, props, body):
        self.type = props.type
        self.message_id = props.message_id
        self.correlation_id = props.correlation_id
        self.headers = dict(props.headers or {})
        self.body = json.loads(body)


class Broker:
    """Publishes events as inventory, payment and the storefront would, and records every
    command the saga sends and every status change it announces."""

    def __init__(self):
        params = pika.URLParameters(os.environ["AMQP_URL"])
        self.conn = pika.BlockingConnection(params)
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()
        q = self.ch.queue_declare("", exclusive=True, auto_delete=True)
        self.queue = q.method.queue
        for exchange, key in (("petstore.commands", "inventory"),
                              ("petstore.commands", "payment"),
                              ("petstore.events", "saga.order_status_changed")):
            self.ch.queue_bind(self.queue, exchange, routing_key=key)
        self.seen = []
        self.ch.basic_consume(self.queue, self._on_message, auto_ack=True)

    def close(self):
        with contextlib.suppress(Exception):
            self.conn.close()

    def _on_message(self, _ch, _method, props, body):
        self.seen.append(Message(props, body))

    def pump(self, seconds=0.0):
        self.conn.process_data_events(time_limit=seconds)

    def publish_event(self, type_, payload, correlation_id, message_id=None):
        """Publishes payload as an event of type_ (routing key = type without .vN), with the
        envelope of DESIGN.md section 3. Returns the message id."""
        message_id = message_id or str(uuid.uuid4())
        source = type_.split(".")[0]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        props = pika.BasicProperties(
            message_id=message_id, correlation_id=correlation_id, type=type_,
            content_type="application/json", delivery_mode=2, app_id=source,
            timestamp=int(time.time()),
            headers={"cloudEvents_specversion": "1.0", "cloudEvents_id": message_id,
                     "cloudEvents_source": "/petstore/" + source, "cloudEvents_type": type_,
                     "cloudEvents_time": now})
        key = type_.rsplit(".", 1)[0]
        self.ch.basic_publish("petstore.events", key, json.dumps(payload), props,
                              mandatory=True)
        return message_id

    def _matching(self, order_id, type_=None):
        return [m for m in self.seen
                if m.correlation_id == order_id and (type_ is None or m.type == type_)]

    def wait_until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
            self.pump(min(left, 0.1))

    def wait_command(self, order_id, type_, timeout, nth=1):
        found = self.wait_until(
            lambda: len(self._matching(order_id, type_)) >= nth and self._matching(order_id, type_),
            timeout, f"{type_} #{nth} for order {order_id}")
        return found[nth - 1]

    def wait_status(self, order_id, status, timeout):
        """Status changes of the order up to the first with this status, in arrival order;
        their versions must only increase."""
        def changes():
            got = [m.body for m in self._matching(order_id, "saga.order_status_changed.v1")]
            for i, c in enumerate(got):
                if c["status"] == status:
                    return got[:i + 1]
            return None
        result = self.wait_until(changes, timeout, f"status {status} of order {order_id}")
        versions = [c["version"] for c in result]
        assert versions == sorted(set(versions)), f"versions not increasing: {versions}"
        return result

    def commands_for(self, order_id, type_=None):
        self.pump(0)
        return [m for m in self._matching(order_id, type_)
                if m.type != "saga.order_status_changed.v1"]

    def queue_depth(self, name):
        return self.ch.queue_declare(name, passive=True).method.message_count


class SagaDb:
    def __init__(self):
        self.conn = psycopg2.connect(os.environ["SAGA_DATABASE_URL"])
        self.conn.autocommit = True

    def close(self):
        self.conn.close()

    def _one(self, sql, *args):
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, args)
            return cur.fetchone()

    def _all(self, sql, *args):
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def saga(self, order_id):
        return self._one("SELECT * FROM sagas WHERE order_id = %s", order_id)

    def wait_status(self, order_id, status, timeout):
        deadline = time.monotonic() + timeout
        while True:
            row = self.saga(order_id)
            if row is not None and row["status"] == status:
                return row
            if time.monotonic() >= deadline:
                raise AssertionError(f"saga {order_id} not {status} after {timeout:.1f}s: {row}")
            self._one("SELECT pg_sleep(0.05)")

    def steps(self, order_id):
        return self._all("SELECT * FROM saga_steps WHERE order_id = %s ORDER BY version",
                         order_id)

    def timer(self, order_id):
        row = self._one("SELECT deadline FROM saga_timers WHERE order_id = %s", order_id)
        return row["deadline"] if row else None

    def seconds_until(self, when):
        return float(self._one("SELECT extract(epoch FROM %s::timestamptz - now()) AS s",
                               when)["s"])

    def seconds_between(self, a, b):
        return float(self._one("SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz) AS s",
                               a, b)["s"])

    def inbox_has(self, consumer, message_id):
        return self._one("SELECT 1 AS x FROM inbox WHERE consumer = %s AND message_id = %s",
                         consumer, message_id) is not None


@contextlib.contextmanager
def stopped_services(*names):
    """Stops the named daemons of the test system through the launcher for the duration of the
    block (when there is a launcher and a system), and starts them again afterwards."""
    source = os.environ.get("PETSTORE_SOURCE_DIR")
    launcher = os.path.join(source, "petstore") if source else None
    usable = launcher and os.path.exists(launcher) and os.environ.get("PETSTORE_HOME")
    stopped = []
    try:
        for name in names if usable else ():
            if subprocess.run([launcher, "stop", name], capture_output=True).returncode == 0:
                stopped.append(name)
        yield
    finally:
        for name in stopped:
            subprocess.run([launcher, "start", name], capture_output=True)
