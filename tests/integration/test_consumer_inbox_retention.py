"""The inbox is bounded: a running consumer deletes inbox rows older than INBOX_RETENTION_S,
in short statements, and keeps the recent ones (which still deduplicate redeliveries)."""
import uuid

import db
from daemons import audit_daemon, replacing
from wait import wait_until

RETENTION_S = 3600
OLD_ROWS = 2500  # more than one purge statement deletes (1000)


def test_a_running_consumer_purges_inbox_rows_older_than_the_retention_and_keeps_recent_ones():
    conn = db.connect("audit")
    consumer = "retention-test-" + uuid.uuid4().hex[:8]
    db.rows(conn, "INSERT INTO inbox (consumer, message_id, received_at)"
                  " SELECT %s, gen_random_uuid(), now() - make_interval(secs => %s + g)"
                  " FROM generate_series(1, %s) AS g", consumer, RETENTION_S + 60, OLD_ROWS)
    recent = [str(uuid.uuid4()) for _ in range(3)]
    db.rows(conn, "INSERT INTO inbox (consumer, message_id, received_at)"
                  " SELECT %s, unnest(%s::uuid[]), now() - make_interval(secs => %s)",
            consumer, recent, RETENTION_S - 600)
    count = "SELECT count(*) FROM inbox WHERE consumer = %s"
    try:
        assert db.value(conn, count, consumer) == OLD_ROWS + len(recent)
        with replacing("audit"):
            audit = audit_daemon("retention", INBOX_RETENTION_S=str(RETENTION_S))
            try:
                audit.wait_ready("the test's audit consumer ready")
                wait_until(lambda: db.value(conn, count, consumer) == len(recent), timeout=30,
                           what="the old inbox rows purged")
                kept = db.rows(conn, "SELECT message_id::text AS id FROM inbox"
                                     " WHERE consumer = %s", consumer)
                assert sorted(r["id"] for r in kept) == sorted(recent)
                assert audit.metric("petstore_inbox_purged_total",
                                    queue="audit.events") >= OLD_ROWS
                purges = [line for line in audit.lines("consumer.inbox_purged")]
                assert purges, "the purge is logged"
            finally:
                assert audit.stop() == 0
    finally:
        db.rows(conn, "DELETE FROM inbox WHERE consumer = %s", consumer)
        conn.close()
