"""Tests that test what they say, for the relay (issue 13, point 11): two relays on one database
share its 16 partitions and both publish; a crash in the exact window after the publish and
before the mark, or after the mark and before the commit, loses nothing (the rows are published
again after the restart: consumers deduplicate by message id); and a database fault injected
into a relay cycle (not the startup migration) fails that cycle and loses nothing."""
import json
import threading
import uuid

import psycopg2

import db
from test_relay import Relay, insert, scratch, sent  # noqa: F401 (scratch is a fixture)
from test_relay_isolation import metric
from wait import wait_until


def test_two_relays_share_the_partitions_and_both_publish(scratch):
    conn, cap = scratch["conn"], scratch["capture"]
    relays = [Relay(scratch["url"], RELAY_BATCH_SIZE=500).ready() for _ in range(2)]
    try:
        for r in relays:
            wait_until(lambda: metric(r, "petstore_outbox_relays") == 2, timeout=10,
                       what="each relay counting both")
        writer = psycopg2.connect(scratch["url"])
        expected = [insert(writer, scratch["exchange"], "k", str(uuid.uuid4()), partition=p)
                    for p in range(16) for _ in range(10)]
        writer.commit()  # one commit, one NOTIFY: both relays wake at once
        writer.close()
        cap.wait_for(lambda m, p, b: p.message_id in expected, count=len(expected), timeout=30,
                     what="every row")
        wait_until(lambda: db.value(conn, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                   == 0, what="every row marked sent")
        published = [metric(r, "petstore_outbox_published_total") for r in relays]
        assert sum(published) == len(expected)
        assert all(p >= len(expected) / 4 for p in published), \
            f"each relay publishes its share of the partitions: {published}"
    finally:
        for r in relays:
            r.stop()


def crash_in_window_then_republish(scratch, hook, logged, check=lambda mid: None):
    """A relay exits (137) at the fault hook's window after publishing one row: the row is still
    unsent (check(message id) may look further), and a fresh relay publishes it again."""
    conn, cap = scratch["conn"], scratch["capture"]
    mid = insert(conn, scratch["exchange"])
    crashing = Relay(scratch["url"], **{hook: 1})
    wait_until(lambda: crashing.proc.poll() is not None, timeout=30, what="the injected crash")
    assert crashing.stop() == 137
    assert logged in open(crashing.log.name).read()
    cap.wait_for(lambda m, p, b: p.message_id == mid, what="the first publish")
    assert not sent(conn, mid), "the mark was never committed: the row must be unsent"
    check(mid)

    relay = Relay(scratch["url"]).ready()
    try:
        cap.wait_for(lambda m, p, b: p.message_id == mid, count=2, what="the republish")
        wait_until(lambda: sent(conn, mid), what="the row marked sent")
    finally:
        relay.stop()


def test_a_relay_killed_after_the_mark_before_the_commit_publishes_again(scratch):
    crash_in_window_then_republish(scratch, "PETSTORE_FAULT_RELAY_EXIT_AFTER_MARK",
                                   "exit after marking, before commit")


def test_a_relay_killed_after_the_publish_before_the_mark_publishes_again(scratch):
    def nothing_recorded(mid):
        assert db.value(scratch["conn"], "SELECT attempts FROM outbox WHERE message_id = %s",
                        mid) == 0, "nothing was recorded of the crashed attempt"
    crash_in_window_then_republish(scratch, "PETSTORE_FAULT_RELAY_EXIT_AFTER_PUBLISH",
                                   "exit after publish, before marking", nothing_recorded)


def test_a_database_fault_in_a_relay_cycle_fails_the_cycle_and_loses_nothing(scratch):
    conn, cap = scratch["conn"], scratch["capture"]
    stop = threading.Event()
    written = []

    def writer():
        w = psycopg2.connect(scratch["url"])
        w.autocommit = True
        while not stop.wait(0.01):
            written.append(insert(w, scratch["exchange"]))
        w.close()

    feeder = threading.Thread(target=writer)
    feeder.start()
    # Far past the startup statements (migration check, LISTEN, slot), while rows keep coming:
    # the fault lands in a cycle that has rows to publish.
    relay = Relay(scratch["url"], PETSTORE_FAULT_DB_EXEC_FAIL_AT=40)
    try:
        relay.ready()
        wait_until(lambda: "relay.cycle_failed" in open(relay.log.name).read(), timeout=20,
                   what="the injected fault failing a cycle")
    finally:
        stop.set()
        feeder.join(timeout=10)
    try:
        wait_until(lambda: set(written) <= {p.message_id for _m, p, _b in cap.settle(0)},
                   timeout=30, what="every row written around the fault")
        wait_until(lambda: all(sent(conn, m) for m in written), what="every row marked sent")
    finally:
        relay.stop()
    failed = [json.loads(line) for line in open(relay.log.name).read().splitlines()
              if '"relay.cycle_failed"' in line]
    assert len(failed) == 1 and "injected" in failed[0]["error"], failed
    assert failed[0]["stage"] in ("begin", "claim", "mark", "commit", "slots"), failed
    assert "startup.migration_retry" not in open(relay.log.name).read()
