"""The verbs of `dlq` that change what is in a dead-letter queue without replaying it, and the
trail it keeps (append-only); selection by time; exit status 3 when a server is not there: purge
removes nothing without --yes and exactly the selection with it; move
refuses a destination that does not exist and moves exactly the selection to one that does;
a resolved group that receives a new dead letter is open again; history records every action
with its operator.

Dead letters are made by tests/lib/dlq.py as the queue's consumer makes them; each test selects
its own ids, and uses an operator name of its own to find its actions in the history."""
import json
import socket
import time
import uuid
from datetime import datetime, timezone

import psycopg2
import pytest

import db
from daemons import ready_count
from wait import wait_until

import dlq

STATUS = "saga.order_status_changed.v1"


def fill_audit(n):
    return dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed() for _ in range(n)])


def test_purge_without_yes_changes_nothing_and_with_yes_removes_exactly_the_selection():
    ids = fill_audit(6)
    try:
        wait_until(lambda: dlq.present("audit.events.dlq", ids) == set(ids),
                   what="the dead letters in audit.events.dlq")
        depth = ready_count("audit.events.dlq")
        r = dlq.run("purge", "audit.events", "--id", dlq.ids_arg(ids))
        assert r.rc == 2, r
        assert "--yes" in r.out + r.err, "the message says what to do"
        assert ready_count("audit.events.dlq") == depth
        assert dlq.present("audit.events.dlq", ids) == set(ids)
        r = dlq.run("purge", "audit.events", "--yes")
        assert r.rc == 2, ("a purge needs a selector (or --all)", r)
        r = dlq.run("replay", "audit.events")
        assert r.rc == 2, ("so does a replay", r)
        r = dlq.run("purge", "audit.events", "--id", dlq.ids_arg(ids), "--older-than", "1h",
                    "--yes")
        assert r.rc == 0 and r.json["selected"] == 0, ("none of them is an hour old", r)
        assert ready_count("audit.events.dlq") == depth
        assert dlq.present("audit.events.dlq", ids) == set(ids)

        r = dlq.run("purge", "audit.events", "--id", dlq.ids_arg(ids[:3]), "--id", ids[3],
                    "--yes")
        assert r.rc == 0, r
        assert (r.json["selected"], r.json["done"]) == (4, 4), r
        assert ready_count("audit.events.dlq") == depth - 4
        assert dlq.present("audit.events.dlq", ids) == set(ids[4:])
    finally:
        dlq.cleanup("audit.events.dlq", ids)


def test_move_to_a_missing_queue_moves_nothing_and_to_an_existing_one_exactly_the_selection():
    ids = fill_audit(5)
    with dlq.scratch_queue() as parking:
        move_to_missing_then_existing(ids, parking)


def move_to_missing_then_existing(ids, parking):
    try:
        wait_until(lambda: dlq.present("audit.events.dlq", ids) == set(ids),
                   what="the dead letters in audit.events.dlq")
        order = [m["id"] for m in sorted(dlq.show("audit.events", ids),
                                         key=lambda m: m["position"])]
        missing = f"dlqtest-{uuid.uuid4().hex[:10]}.missing.dlq"
        r = dlq.run("move", "audit.events", "--id", dlq.ids_arg(ids), "--to", missing)
        assert r.rc == 1, r
        assert r.json is None or r.json["done"] == 0, r
        after = [m["id"] for m in sorted(dlq.show("audit.events", ids),
                                         key=lambda m: m["position"])]
        assert after == order, "everything in place, in its order"

        r = dlq.run("move", "audit.events", "--id", dlq.ids_arg(ids[:3]), "--to", parking)
        assert r.rc == 0, r
        s = r.json
        assert (s["verb"], s["selected"], s["done"], s["left"], s["outcome"]) == (
            "move", 3, 3, 0, "done"), r
        assert ready_count(parking) == 3
        assert dlq.present("audit.events.dlq", ids) == set(ids[3:])
        moved = sorted(dlq.show(parking, ids), key=lambda m: m["position"])
        assert [m["id"] for m in moved] == ids[:3]
        for m in moved:
            assert (m["type"], m["class"], m["original_queue"]) == (STATUS, "handler",
                                                                    "audit.events"), m
            assert m["sender"] == "saga" and m["verified"] is True, \
                ("a message the tool moved stays replayable", m)
    finally:
        dlq.cleanup("audit.events.dlq", ids)


def test_a_resolved_group_that_receives_a_new_dead_letter_is_open_again():
    operator = "dlq-test-" + uuid.uuid4().hex[:8]
    queue = "storefront.events.dlq"
    kind = dict(failure_class="envelope", code="ERR_INVALID",
                error="missing header cloudEvents_source (dlq reopen test)")
    payload = {"pet_id": str(uuid.uuid4()), "name": "rex", "species": "dog",
               "price_cents": 1000, "status": "available"}
    ids = dlq.fill(queue, "inventory.pet_listed.v1", [payload], **kind)
    try:
        wait_until(lambda: dlq.present(queue, ids) == set(ids), what="the first dead letter")
        fp = dlq.show(queue, ids)[0]["fingerprint"]
        r = dlq.run("note", fp, "--status", "fixed", "not a status")
        assert r.rc == 2, r
        r = dlq.run("note", fp, "--status", "resolved", "fixed the sender (dlq test)",
                    operator=operator)
        assert r.rc == 0, r
        g = dlq.group(fp, queue)
        assert g["status"] == "resolved" and "fixed the sender" in g["note"], g
        count = g["count"]

        # At once: dead-letter times and the note's time have milliseconds, so a dead letter in
        # the same second as the resolution still reopens the group.
        ids += dlq.fill(queue, "inventory.pet_listed.v1", [payload], **kind)
        wait_until(lambda: dlq.present(queue, ids) == set(ids), what="the second dead letter")
        g = dlq.group(fp, queue)
        assert g["status"] == "open", ("reopened by a new dead letter", g)
        assert g["count"] == count + 1, g
        verbs = [(h["verb"], h["operator"]) for h in dlq.ok("history", "--limit", "50")]
        assert ("note", operator) in verbs
        assert "reopen" in [v for v, _ in verbs], verbs
    finally:
        dlq.cleanup(queue, ids)


def test_history_records_every_action_with_its_operator(tmp_path):
    operator = "dlq-test-" + uuid.uuid4().hex[:8]
    ids = fill_audit(4)
    with dlq.scratch_queue() as parking:
        act_and_read_history(operator, ids, parking, tmp_path / "manifest.json")


def act_and_read_history(operator, ids, parking, manifest):
    try:
        wait_until(lambda: dlq.present("audit.events.dlq", ids) == set(ids),
                   what="the dead letters in audit.events.dlq")
        fp = dlq.show("audit.events", ids[:1])[0]["fingerprint"]
        actions = [  # (verb, arguments, exit status)
            ("plan", ["plan", "audit.events", "--id", ids[0], "-o", str(manifest)], 0),
            ("replay", ["replay", "audit.events", "--manifest", str(manifest),
                        "--to", ":audit.events"], 0),
            ("move", ["move", "audit.events", "--id", ids[1], "--to", parking], 0),
            ("purge", ["purge", "audit.events", "--id", ids[2]], 2),
            ("purge", ["purge", "audit.events", "--id", ids[2], "--yes"], 0),
            ("note", ["note", fp, "--status", "investigating", "looking into it (dlq test)"], 0),
        ]
        for verb, args, status in actions:
            r = dlq.run(*args, operator=operator)
            assert r.rc == status, r
            if verb == "plan":
                plan = json.loads(manifest.read_text())
                assert plan["queue"] == "audit.events.dlq", plan
                assert [m["id"] for m in plan["messages"]] == [ids[0]], plan
                assert dlq.present("audit.events.dlq", ids) == set(ids), "plan changes nothing"
        assert dlq.present("audit.events.dlq", ids) == {ids[3]}

        # Newest first; a run may be recorded when it starts and again when it ends (same run
        # id): each action counts once, by its last record.
        history = []
        for h in dlq.ok("history", "--limit", "100"):
            if h["operator"] != operator:
                continue
            if h["run"] and history and history[-1]["run"] == h["run"]:
                continue
            history.append(h)
        assert [h["verb"] for h in history] == [v for v, _, _ in reversed(actions)], history
        for h in history:
            assert h["at"] and h["host"] and h["outcome"], h
            if h["verb"] != "note":
                assert dlq.work_queue(h["queue"]) == "audit.events", h
        assert fp in json.dumps(history[0]["selection"]), ("the note names its group", history[0])
        refused, purged = history[2], history[1]
        assert refused["outcome"] != purged["outcome"], "a purge without --yes is told apart"
        replay = history[4]
        assert replay["run"] and replay["counts"]["done"] == 1, replay
        assert ids[0] in json.dumps(replay["selection"]), replay
        text = dlq.run("history", "--limit", "100", as_json=False)
        assert text.rc == 0 and operator in text.out, text
    finally:
        dlq.cleanup("audit.events.dlq", ids)


def test_since_and_until_select_by_dead_letter_time():
    first = fill_audit(2)
    # Dead-letter times have whole seconds: the second batch is dead-lettered a second later.
    was = int(time.time())
    wait_until(lambda: int(time.time()) > was, what="the next second")
    boundary = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    second = fill_audit(2)
    ids = first + second
    try:
        wait_until(lambda: dlq.present("audit.events.dlq", ids) == set(ids),
                   what="the dead letters in audit.events.dlq")
        since = {m["id"] for m in dlq.show("audit.events", ids, "--since", boundary)}
        assert since == set(second)
        until = {m["id"] for m in dlq.show("audit.events", ids, "--until", boundary)}
        assert set(first) <= until, until  # whether --until takes its own second is open
        assert {m["id"] for m in dlq.show("audit.events", ids, "--since", "1h")} == set(ids)
        assert dlq.show("audit.events", ids, "--until", "1h") == []
        r = dlq.run("purge", "audit.events", "--id", dlq.ids_arg(ids), "--since", boundary,
                    "--yes")
        assert r.rc == 0, r
        assert dlq.present("audit.events.dlq", ids) == set(first)
    finally:
        dlq.cleanup("audit.events.dlq", ids)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_not_there_exits_3_with_what_to_do():
    port = closed_port()
    broker = f"amqp://dlq:nothing@127.0.0.1:{port}/petstore"
    for args, env in ((["show", "audit.events"], {"DLQ_AMQP_URL": broker}),
                      (["list"], {"RABBITMQ_MGMT_URL": f"http://127.0.0.1:{port}"}),
                      (["history"], {"DLQ_DATABASE_URL": f"host=127.0.0.1 port={port} dbname=dlq"
                                                         " user=dlq connect_timeout=5"})):
        r = dlq.run(*args, env=env, timeout=60)
        assert r.rc == 3, r
        assert r.err.strip(), ("an error message", r)


def test_the_history_cannot_be_rewritten_even_by_its_owner():
    """dlq_history is append-only: the tool's own role, which owns the table, can neither change,
    delete nor truncate a row."""
    conn = db.connect("dlq")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM dlq_history")
            before = cur.fetchone()[0]
            cur.execute("INSERT INTO dlq_history (operator, host, verb, outcome)"
                        " VALUES ('test', 'test', 'note', 'appended')")
            for sql in ("UPDATE dlq_history SET outcome = 'rewritten'",
                        "DELETE FROM dlq_history",
                        "TRUNCATE dlq_history"):
                with pytest.raises(psycopg2.Error) as refused:
                    cur.execute(sql)
                assert "append-only" in str(refused.value), sql
            cur.execute("SELECT count(*) FROM dlq_history WHERE outcome = 'rewritten'")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM dlq_history")
            assert cur.fetchone()[0] == before + 1
    finally:
        conn.close()


VERBS = ["list", "groups", "show", "plan", "replay", "move", "purge", "history", "note"]


def test_every_verb_answers_help_with_its_usage_and_changes_nothing():
    for verb in VERBS:
        for asking in ([verb, "--help"], ["help", verb], [verb, "saga.events.dlq", "-h"]):
            r = dlq.run(*asking, as_json=False)
            assert r.rc == 0, r
            assert r.out.startswith(f"usage: dlq {verb}"), r
    r = dlq.run("nope", "--help", as_json=False)
    assert r.rc == 2 and "unknown verb" in r.err, r
