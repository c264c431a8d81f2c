"""An AMQP inspector for tests: publishes enveloped messages like a service would, captures
what crosses an exchange on a private queue, and reads queue depths through the management
API. Talks to the real broker of the system under test."""
import base64
import json
import pathlib
import re
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

import pika

from petstore_env import need
from wait import wait_until


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def envelope(type_, correlation_id=None, message_id=None, source="test", causation_id=None):
    """pika properties carrying the project's envelope (DESIGN.md section 3)."""
    message_id = message_id or str(uuid.uuid4())
    headers = {"cloudEvents_specversion": "1.0", "cloudEvents_id": message_id,
               "cloudEvents_source": f"/petstore/{source}", "cloudEvents_type": type_,
               "cloudEvents_time": now_rfc3339()}
    if causation_id:
        headers["causation_id"] = causation_id
    return pika.BasicProperties(message_id=message_id, correlation_id=correlation_id, type=type_,
                                content_type="application/json", delivery_mode=2, app_id=source,
                                timestamp=int(time.time()), headers=headers)


def routing_of(type_):
    """(exchange, routing key) of a message type, as contracts/codec/msg_types.def defines."""
    service, rest = type_.split(".", 1)
    name = rest.rsplit(".", 1)[0]
    if name in ("list_pet", "reserve", "release", "confirm_sale", "charge", "refund_or_void"):
        return "petstore.commands", service
    return "petstore.events", f"{service}.{name}"


TYPES_DEF = pathlib.Path(__file__).parents[2] / "contracts" / "codec" / "msg_types.def"


def producer_of(type_):
    """The broker user that may produce type_ (msg_types.def), or None for an unknown type."""
    if not hasattr(producer_of, "table"):
        producer_of.table = dict(re.findall(r'^X\(\w+, "([^"]+)", \w+, "[^"]+", "([^"]+)"',
                                            TYPES_DEF.read_text(), re.M))
    return producer_of.table.get(type_)


# contracts/codec/msg.h: the dead-letter tool's broker user, the header in which a replay names
# the producer it speaks for, and the header in which a dead letter names the original sender.
REPLAY_USER = "dlq"
REPLAY_FOR_HEADER = "x-petstore-replay-for"
SENDER_HEADER = "x-petstore-sender"


def user_url(user):
    """The AMQP URL of a service's broker user, from `./petstore env` (STOREFRONT_AMQP_URL...)."""
    return need(f"{user.upper()}_AMQP_URL")


class Broker:
    """The admin connection (captures, queue reads) plus, on demand, one publishing connection
    per service user: publish() sends a message as its type's producer would, with user_id set,
    since consumers dead-letter a message whose user_id is not its type's producer."""

    def __init__(self, url=None):
        self.conn = pika.BlockingConnection(pika.URLParameters(url or need("AMQP_URL")))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()
        self.senders = {}

    def close(self):
        for conn, _ch in self.senders.values():
            try:
                conn.close()
            except Exception:
                pass
        self.senders = {}
        try:
            self.conn.close()
        except Exception:
            pass

    def channel_of(self, user):
        """A confirm-mode channel logged in as user (None: the admin channel)."""
        if user is None:
            return self.ch
        if user not in self.senders or not self.senders[user][0].is_open:
            conn = pika.BlockingConnection(pika.URLParameters(user_url(user)))
            ch = conn.channel()
            ch.confirm_delivery()
            self.senders[user] = (conn, ch)
        return self.senders[user][1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def publish(self, type_, payload, correlation_id=None, message_id=None, exchange=None,
                routing_key=None, body=None, properties=None, sender="producer", headers=None):
        """Publishes with confirms; returns the message id. body overrides the JSON payload
        (for malformed input); properties overrides the envelope. sender is the broker user
        that publishes and is named in user_id: by default the producer of the message's type
        (the admin, without user_id, for an unknown type); a user name to publish as that
        user (REPLAY_USER, "dlq", publishes as the dead-letter tool does, with DLQ_AMQP_URL);
        None for the admin without user_id. headers are added to the envelope's (e.g.
        {REPLAY_FOR_HEADER: "payment"} for a replay speaking for payment)."""
        ex, key = routing_of(type_) if exchange is None else (exchange, routing_key)
        props = properties or envelope(type_, correlation_id, message_id)
        if headers:
            props.headers = {**(props.headers or {}), **headers}
        if sender == "producer":
            sender = producer_of(props.type or type_)
        if sender is not None and props.user_id is None:
            props.user_id = sender
        raw = body if body is not None else json.dumps(payload).encode()
        self.channel_of(sender).basic_publish(ex, key if routing_key is None else routing_key,
                                              raw, props, mandatory=True)
        return props.message_id

    def capture(self, exchange, *keys):
        """A private queue bound to exchange with keys; returns a Capture."""
        return Capture(self, exchange, keys)


class Capture:
    def __init__(self, broker, exchange, keys):
        self.broker = broker
        q = broker.ch.queue_declare("", exclusive=True, auto_delete=True)
        self.queue = q.method.queue
        for key in keys or ("",):
            broker.ch.queue_bind(self.queue, exchange, routing_key=key)
        self.messages = []

    def _drain(self):
        while True:
            method, props, body = self.broker.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return
            self.messages.append((method, props, body))

    def wait_for(self, predicate=lambda m: True, count=1, timeout=20, what="messages"):
        """Waits until `count` captured messages satisfy predicate(method, props, body) and
        returns them."""
        def found():
            self._drain()
            hits = [m for m in self.messages if predicate(*m)]
            return hits if len(hits) >= count else None
        return wait_until(found, timeout=timeout, what=what)

    def settle(self, seconds):
        """Everything captured after a bounded quiet period (to assert that nothing more came)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.broker.conn.process_data_events(time_limit=0.05)
        self._drain()
        return self.messages


def mgmt(path):
    """GET on the management API; parsed JSON."""
    url = need("RABBITMQ_MGMT_URL") + "/api/" + path
    req = urllib.request.Request(url)
    token = base64.b64encode(
        f"{need('RABBITMQ_MGMT_USER')}:{need('RABBITMQ_MGMT_PASSWORD')}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def queue_info(name):
    return mgmt("queues/petstore/" + urllib.parse.quote(name, safe=""))


def get_all(queue, broker, limit=1000):
    """Consumes (acks) every message of queue; returns [(method, props, body)]."""
    out = []
    while len(out) < limit:
        method, props, body = broker.ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((method, props, body))
    return out
