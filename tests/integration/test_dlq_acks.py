"""What `dlq` acknowledges stays gone: a purge of thousands of messages from a quorum .dlq
reports them removed, and none of them comes back after the tool closed its connection.

Why a test of its own: RabbitMQ 3.10's quorum queue client holds back the acks of a channel
with 32 or more commands the queue has not applied yet and forgets them when the channel
closes (rabbitmq-server issue 10327), so a burst of acks just before the close could bring
messages back to the queue a moment after the tool said they were removed (services/dlq/walk.c).
The drill poison-and-handler-bug saw it as dead letters of the bug appearing again after a
replay that reported 0 left. Whether the broker holds acks back depends on how fast it applies
them, so the burst is large (thousands of acks) and done twice; the messages are plain ones in
a scratch quorum queue of the test's own, which only this test reads."""
import threading
import time
import uuid

import pika

from daemons import ready_count
from petstore_env import need

import dlq

MESSAGES = 4000
ROUNDS = 2
WATCH_S = 1.5  # the broker gives forgotten messages back within milliseconds of the close


def fill(queue, n):
    conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for _ in range(n):
            ch.basic_publish("", queue, b"{}", pika.BasicProperties(
                message_id=str(uuid.uuid4()), type="payment.charged.v1", delivery_mode=2))
    finally:
        conn.close()


def came_back(queue):
    """The most messages seen ready in queue over WATCH_S seconds after the tool exited."""
    most = 0
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        most = max(most, ready_count(queue))
        time.sleep(0.1)
    return most


class Busy:
    """Publishes to another quorum queue without pause while it runs: the broker's log (one
    write-ahead log for every quorum queue of the node) is busy, as it is under load, so the
    queue applies the tool's acks late."""

    def __init__(self, queue):
        self.queue = queue
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
        try:
            ch = conn.channel()
            while not self.stop.is_set():
                for _ in range(200):
                    ch.basic_publish("", self.queue, b"x" * 200,
                                     pika.BasicProperties(delivery_mode=2))
                conn.process_data_events(0)
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def test_a_purge_of_thousands_of_messages_leaves_none_of_them_behind():
    with dlq.scratch_queue() as queue, dlq.scratch_queue() as other:
        for round_ in range(1, ROUNDS + 1):
            fill(queue, MESSAGES)
            assert ready_count(queue) == MESSAGES
            with Busy(other):
                r = dlq.run("purge", queue, "--all", "--yes")
            assert r.rc == 0, r
            assert (r.json["selected"], r.json["done"], r.json["left"]) == (
                MESSAGES, MESSAGES, 0), r
            back = came_back(queue)
            assert back == 0, (f"round {round_}: {back} of the {MESSAGES} messages the purge "
                               f"acknowledged came back to {queue}")
