"""The dead-letter tool (services/dlq, `dlq`) for tests: runs it as an operator would, with the
environment `./petstore env` exports (DLQ_AMQP_URL, DLQ_DATABASE_URL, RABBITMQ_MGMT_URL), parses
its --json output, and fills a dead-letter queue quickly with authentic dead letters.

An authentic consumer dead letter (what svc_consumer.c publishes) is published to petstore.dlx
with the original queue as routing key, by the queue's consumer logged in as its own broker user
and naming it in user_id, with the x-petstore-* headers of a consumer's dead letter and
x-petstore-sender = the original message's user_id (its type's producer). fill() publishes
exactly that, so the tool's sender checks hold for it as for the real thing; `as_user` and
`sender` let a test forge one."""
import contextlib
import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timezone

import pika

from amqp import Broker, envelope, producer_of, routing_of
from petstore_env import binary, need

# The consumer of each work queue: its broker user (the first dot-separated part of the queue's
# name) and the handler (inbox) name its dead letters carry.
HANDLERS = {"inventory.commands": "inventory", "payment.commands": "payment",
            "saga.events": "order-saga", "storefront.events": "storefront",
            "audit.events": "audit"}
SENDER_HEADER = "x-petstore-sender"


def work_queue(queue):
    """'audit.events.dlq' or 'audit.events' -> 'audit.events'."""
    return queue[:-4] if queue.endswith(".dlq") else queue


def consumer_of(queue):
    return work_queue(queue).split(".", 1)[0]


def tool():
    return binary("bin/dlq")


def tool_env(operator=None, **override):
    """The tool's environment: the test's (`./petstore env`), the operator's name, and any
    setting overridden (e.g. DLQ_AMQP_URL of a broker that is not there)."""
    env = dict(os.environ)
    for name in ("DLQ_AMQP_URL", "DLQ_DATABASE_URL", "RABBITMQ_MGMT_URL"):
        need(name)
    if operator:
        env["DLQ_OPERATOR"] = operator
    env.update(override)
    return env


class Result:
    def __init__(self, argv, proc, elapsed):
        self.argv = argv
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed
        try:
            self.json = json.loads(self.out) if self.out.strip() else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return (f"dlq {' '.join(self.argv[1:])[:300]} -> exit {self.rc}\n"
                f"stdout: {self.out[-2000:]}\nstderr: {self.err[-2000:]}")


def run(*args, operator=None, as_json=True, timeout=120, env=None):
    """Runs `dlq ARGS [--json]`; returns a Result (rc, out, err, json, elapsed seconds). env:
    settings to override."""
    argv = [tool(), *[str(a) for a in args]] + (["--json"] if as_json else [])
    started = time.monotonic()
    proc = subprocess.run(argv, env=tool_env(operator, **(env or {})), capture_output=True,
                          text=True, timeout=timeout)
    return Result(argv, proc, time.monotonic() - started)


def ok(*args, **kw):
    """run() that must exit 0; returns the parsed JSON."""
    r = run(*args, **kw)
    assert r.rc == 0, r
    assert r.json is not None or not kw.get("as_json", True), r
    return r.json


def spawn(*args, operator=None):
    """`dlq ARGS --json` started in the background (for a test that kills it)."""
    argv = [tool(), *[str(a) for a in args], "--json"]
    return subprocess.Popen(argv, env=tool_env(operator), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def ids_arg(ids):
    return ",".join(ids)


def show(queue, ids=None, *selectors, limit=None):
    """`dlq show QUEUE --json`, restricted to ids when given; the list of entries."""
    args = ["show", queue, *selectors]
    if ids is not None:
        args += ["--id", ids_arg(ids)]
    if limit is not None:
        args += ["--limit", limit]
    return ok(*args)


def present(queue, ids):
    """Which of ids `dlq show` finds in queue (a .dlq), as a set."""
    return {m["id"] for m in show(queue, ids, limit=len(ids) + 100)}


def groups(queue=None):
    return ok("groups", *([queue] if queue else []))


def group(fingerprint, queue=None):
    """The entry of `dlq groups` with that fingerprint, or None."""
    for g in groups(queue):
        if g["fingerprint"] == fingerprint:
            return g
    return None


def cleanup(queue, ids):
    """Removes the test's leftovers from queue by id (purge --yes), whatever they are."""
    if ids:
        run("purge", queue, "--id", ids_arg(ids), "--yes")


def failed_at_now():
    """The consumer's x-petstore-failed-at format (svc_consumer.c: UTC, milliseconds)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def dead_letter_properties(queue, type_, correlation_id=None, message_id=None, sender=None,
                           failure_class="handler", code="ERR_INTERNAL", error=None,
                           handler=None, user_id=None, extra=None):
    """The properties of a consumer's dead letter of one message of type_ from queue's work
    queue: the original envelope (as the producer sent it, CloudEvents headers and all) plus the
    consumer's headers. sender (x-petstore-sender) defaults to the type's producer, user_id to
    the queue's consumer."""
    wq = work_queue(queue)
    producer = producer_of(type_)
    props = envelope(type_, correlation_id or str(uuid.uuid4()), message_id,
                     source=producer or "test")
    exchange, key = routing_of(type_)
    props.headers.update({
        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
        "x-petstore-failure-class": failure_class,
        "x-petstore-error-code": code,
        "x-petstore-error": error or f"{failure_class} failure made by the dlq tests",
        "x-petstore-handler": handler or HANDLERS[wq],
        "x-petstore-original-queue": wq,
        "x-petstore-original-exchange": exchange,
        "x-petstore-original-routing-key": key,
        "x-petstore-failed-at": failed_at_now(),
        SENDER_HEADER: sender if sender is not None else (producer or "none"),
    })
    if failure_class == "handler":
        props.headers["x-petstore-attempts"] = 5
    props.headers.update(extra or {})
    props.user_id = user_id or consumer_of(queue)
    return props


def fill(queue, type_, payloads, broker=None, as_user=None, bodies=None, **dead):
    """Publishes one dead letter per payload (or raw body) to petstore.dlx with routing key
    queue's work queue, as the queue's consumer (or as_user) with its login in user_id, with
    confirms. dead: dead_letter_properties() arguments. Returns the message ids, in order."""
    own = broker is None
    broker = broker or Broker()
    user = as_user or consumer_of(queue)
    ch = broker.channel_of(user)
    ids = []
    try:
        for i, payload in enumerate(payloads if bodies is None else bodies):
            body = payload if bodies is not None else json.dumps(payload).encode()
            corr = payload.get("order_id") if isinstance(payload, dict) else None
            props = dead_letter_properties(queue, type_, correlation_id=corr, user_id=user,
                                           **dead)
            ch.basic_publish("petstore.dlx", work_queue(queue), body, props, mandatory=True)
            ids.append(props.message_id)
    finally:
        if own:
            broker.close()
    return ids


def reinject(queue, saved, broker=None):
    """Publishes copies of dead letters taken from queue ([(properties, body)], e.g. from
    daemons.take_dead_letters) back to it, each as the user in its user_id, unchanged."""
    own = broker is None
    broker = broker or Broker()
    try:
        for props, body in saved:
            p = pika.BasicProperties(**{k: getattr(props, k) for k in (
                "content_type", "content_encoding", "headers", "delivery_mode", "priority",
                "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                "user_id", "app_id")})
            broker.channel_of(props.user_id).basic_publish("petstore.dlx", work_queue(queue),
                                                           body, p, mandatory=True)
    finally:
        if own:
            broker.close()


def status_changed(order_id=None):
    """A valid saga.order_status_changed.v1 payload (audit records it in event_log)."""
    return {"order_id": order_id or str(uuid.uuid4()), "status": "PAYING", "version": 2,
            "occurred_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def charged(order_id=None):
    """A valid payment.charged.v1 payload."""
    return {"order_id": order_id or str(uuid.uuid4()), "amount_cents": 1000,
            "card_last4": "4242"}


@contextlib.contextmanager
def scratch_queue(suffix=".dlq"):
    """A quorum queue of the test's own (declared and deleted by the administrator), as a
    destination of `move` or `replay --to :NAME`; yields its name (ending in suffix, so that
    the tool may read it too)."""
    name = f"dlqtest-{uuid.uuid4().hex[:10]}.scratch{suffix}"
    conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
    try:
        conn.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
        yield name
    finally:
        try:
            conn.channel().queue_delete(name)
        finally:
            conn.close()
