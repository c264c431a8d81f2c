"""The consumer's exact failure windows, hit on purpose rather than by a kill -9 at a random
moment: a crash after the commit and before the ack, a crash after the dead letters were
confirmed and before the ack, and a dead-letter publish that fails. In each, nothing is lost
(every message ends handled or in the .dlq) and nothing is applied twice (the redelivered
messages are recognised by the inbox: counted as duplicates, their handler not run again).

Each test runs its own audit consumers (the system's steps aside, and is back at the end) and
queues its messages before the first one starts, so that they usually reach it as one batch.
Usually, not always: a batch is what is already waiting when its first delivery arrives, and the
broker may send the first delivery alone. So the tests do not count on one batch: the crash hits
the first batch, whatever it holds, and what it committed is exactly what the restarted consumer
must recognise as duplicates; the rest it must handle once."""
import db
from daemons import (audit_daemon, audit_recorded, publish_events, publish_poison, ready_count,
                     replacing, take_dead_letters, wait_dead_letters)
from wait import wait_until

CONSUMED = "petstore_messages_consumed_total"


def inbox_rows(conn, ids):
    return db.value(conn, "SELECT count(*) FROM inbox WHERE consumer = 'audit'"
                          " AND message_id = ANY(%s::uuid[])", list(ids))


def crash_at(hook, label):
    """An audit consumer with the exit hook; waits until it has taken the exit."""
    crashing = audit_daemon(label, **{hook: "1"})
    try:
        status = crashing.wait_exit(60, f"the consumer exiting at {hook}")
    finally:
        crashing.stop()
    assert status == 137, crashing.tail()
    assert crashing.lines("consumer.fault_exit"), crashing.tail()
    return crashing


def test_a_crash_after_the_commit_before_the_ack_redelivers_the_batch_and_applies_it_once():
    conn = db.connect("audit")
    with replacing("audit"):
        ids = publish_events(10)
        crash_at("PETSTORE_FAULT_CONSUMER_EXIT_AFTER_COMMIT", "exit-after-commit")
        committed = audit_recorded(conn, ids)
        assert committed >= 1, "the first batch committed before the exit"
        assert inbox_rows(conn, ids) == committed
        wait_until(lambda: ready_count("audit.events") >= 10,
                   what="the unacknowledged batch back in audit.events")

        again = audit_daemon("after-commit-again")
        try:
            again.wait_ready("the restarted consumer ready")
            wait_until(lambda: again.metric(CONSUMED, queue="audit.events",
                                            outcome="duplicate") == committed
                       and again.metric(CONSUMED, queue="audit.events",
                                        outcome="ok") == 10 - committed,
                       what="the committed messages recognised by the inbox, the rest handled")
            assert again.metric(CONSUMED, queue="audit.events", outcome="duplicate") == \
                committed, "no committed message handled a second time"
            assert audit_recorded(conn, ids) == 10
            assert inbox_rows(conn, ids) == 10
        finally:
            assert again.stop() == 0
    conn.close()


def test_a_crash_after_the_dead_letter_confirm_before_the_ack_loses_nothing():
    conn = db.connect("audit")
    with replacing("audit"):
        poison = publish_poison()
        good = publish_events(3)
        crash_at("PETSTORE_FAULT_CONSUMER_EXIT_AFTER_DEAD_LETTER", "exit-after-dead-letter")
        first = wait_dead_letters("audit.events.dlq", [poison])
        assert len(first[poison]) == 1, "dead-lettered and confirmed before the exit"
        committed = audit_recorded(conn, good)  # those of the good messages in the first batch
        wait_until(lambda: ready_count("audit.events") >= 4,
                   what="the unacknowledged batch, poison included, back in audit.events")

        again = audit_daemon("after-dead-letter-again")
        try:
            again.wait_ready("the restarted consumer ready")
            second = wait_dead_letters("audit.events.dlq", [poison])
            assert len(second[poison]) == 1, "dead-lettered again: twice in all, never lost"
            headers = second[poison][0][0].headers
            assert headers["x-petstore-failure-class"] == "unknown-type"
            wait_until(lambda: again.metric(CONSUMED, queue="audit.events",
                                            outcome="duplicate") == committed
                       and again.metric(CONSUMED, queue="audit.events",
                                        outcome="ok") == 3 - committed,
                       what="the committed good messages recognised by the inbox, the rest handled")
            assert again.metric(CONSUMED, queue="audit.events", outcome="duplicate") == committed
            assert audit_recorded(conn, good) == 3
        finally:
            assert again.stop() == 0
    conn.close()


def test_a_failed_dead_letter_publish_keeps_the_batch_until_the_dead_letter_is_confirmed():
    conn = db.connect("audit")
    with replacing("audit"):
        poison = publish_poison()
        good = publish_events(3)
        # The audit consumer publishes nothing but dead letters: its first publish call is the
        # first dead-letter publish, and it fails as if the connection had dropped.
        audit = audit_daemon("dead-letter-fails", PETSTORE_FAULT_MQ_PUBLISH_FAIL_AT="1")
        try:
            audit.wait_ready("the test's audit consumer ready")
            dead = wait_dead_letters("audit.events.dlq", [poison])
            assert len(dead[poison]) == 1
            assert audit.lines("consumer.dead_letter_failed"), audit.tail()
            wait_until(lambda: audit.metric(CONSUMED, queue="audit.events", outcome="ok") == 3,
                       what="the batch acknowledged once the dead letter was confirmed")
            assert audit.metric(CONSUMED, queue="audit.events", outcome="dead_lettered") == 1
            assert audit_recorded(conn, good) == 3
            assert take_dead_letters("audit.events.dlq", [poison], timeout=1.0) == [], \
                "dead-lettered once: the failed attempt published nothing"
        finally:
            assert audit.stop() == 0
        assert ready_count("audit.events") == 0, "everything acknowledged, nothing left behind"
    conn.close()
