"""`dlq replay` on many authentic dead letters (tests/lib/dlq.py fills a .dlq as its consumer
would): killed with SIGKILL part-way it loses nothing and a second run finishes the rest once;
--rate holds its pace; a canary that fails again stops the run with the rest untouched; and the
messages a replay does not select keep their order.

Replays go straight to a work queue (`--to :audit.events`, `--to :saga.events`) so that only the
consumer under test sees them, or to a queue of the test's own to read what was published; a
manifest freezes a selection; a destination that cannot take a message leaves it in place. Every test selects its own message ids and purges what it
leaves."""
import json
import os
import pty
import re
import signal
import subprocess
import time
import uuid
from datetime import datetime, timezone

import db
from amqp import Broker, get_all
from daemons import audit_recorded
from wait import wait_until

import dlq

STATUS = "saga.order_status_changed.v1"


def recorded_ids(conn, ids):
    return {r["message_id"] for r in db.rows(
        conn, "SELECT message_id::text AS message_id FROM event_log"
              " WHERE message_id = ANY(%s::uuid[])", list(ids))}


def test_a_replay_killed_part_way_loses_nothing_and_a_second_one_finishes_exactly_once():
    conn = db.connect("audit")
    ids = dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed() for _ in range(1000)])
    try:
        # A pace (4 s for all) so that the kill lands part-way whatever the machine.
        proc = dlq.spawn("replay", "audit.events", "--id", dlq.ids_arg(ids),
                         "--to", ":audit.events", "--rate", "250")
        try:
            wait_until(lambda: proc.poll() is not None or audit_recorded(conn, ids) >= 100,
                       timeout=30, what="100 replayed messages recorded by audit")
            assert proc.poll() is None, ("the replay ended before it was killed",
                                         proc.communicate())
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

        # Each message is in audit.events.dlq or in event_log (once what was published before
        # the kill has been consumed).
        state = {}

        def accounted():
            state["log"] = recorded_ids(conn, ids)
            state["dlq"] = dlq.present("audit.events.dlq", ids)
            return set(ids) <= state["log"] | state["dlq"]
        wait_until(accounted, timeout=30, what="every message in the .dlq or the event log",
                   interval=0.5)
        assert len(state["log"]) >= 100 and state["dlq"], \
            (len(state["log"]), len(state["dlq"]), "killed part-way")

        r = dlq.run("replay", "audit.events", "--id", dlq.ids_arg(ids), "--to", ":audit.events")
        assert r.rc == 0, r
        assert r.json["done"] == r.json["selected"] == len(state["dlq"]), r
        wait_until(lambda: audit_recorded(conn, ids) == len(ids), timeout=30,
                   what="all 1,000 recorded")
        per_id = db.rows(conn, "SELECT message_id, count(*) AS n FROM event_log"
                               " WHERE message_id = ANY(%s::uuid[]) GROUP BY message_id",
                         list(ids))
        assert len(per_id) == len(ids) and all(row["n"] == 1 for row in per_id)
        assert dlq.present("audit.events.dlq", ids) == set()
    finally:
        dlq.cleanup("audit.events.dlq", ids)
        conn.close()


def test_rate_200_spreads_1000_replays_over_at_least_4_5_seconds():
    conn = db.connect("audit")
    ids = dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed() for _ in range(1000)])
    try:
        r = dlq.run("replay", "audit.events", "--id", dlq.ids_arg(ids), "--to", ":audit.events",
                    "--rate", "200")
        assert r.rc == 0, r
        assert r.elapsed >= 4.5, f"1,000 messages at 200/s took {r.elapsed:.2f} s"
        s = r.json
        assert (s["selected"], s["done"], s["left"], s["outcome"]) == (1000, 1000, 0, "done"), r
        assert s["elapsed_s"] >= 4.5, r
        wait_until(lambda: audit_recorded(conn, ids) == len(ids), timeout=30,
                   what="all 1,000 recorded")
    finally:
        dlq.cleanup("audit.events.dlq", ids)
        conn.close()


def test_rate_never_lets_a_first_burst_through():
    """At --rate N, message i (from 0) leaves no earlier than i/N seconds after the start, so 100
    messages at 50/s take at least 99/50 s: the batches the tool publishes do not run ahead."""
    conn = db.connect("audit")
    ids = dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed() for _ in range(100)])
    try:
        r = dlq.run("replay", "audit.events", "--id", dlq.ids_arg(ids), "--to", ":audit.events",
                    "--rate", "50")
        assert r.rc == 0 and r.json["done"] == 100, r
        assert r.json["elapsed_s"] >= 99 / 50, f"100 messages at 50/s in {r.json['elapsed_s']} s"
        wait_until(lambda: audit_recorded(conn, ids) == len(ids), timeout=30,
                   what="all 100 recorded")
    finally:
        dlq.cleanup("audit.events.dlq", ids)
        conn.close()


def test_a_canary_that_fails_again_stops_the_run_and_leaves_the_rest_untouched():
    # Reservations naming a pet that is no uuid, from inventory, dead-lettered by the saga as
    # contract violations: replaying them fails again.
    bad = [{"order_id": str(uuid.uuid4()), "pet_ids": [f"not-a-uuid-{i}"]} for i in range(10)]
    ids = dlq.fill("saga.events.dlq", "inventory.reserved.v1", bad, failure_class="contract",
                   code="ERR_INVALID", error="$.pet_ids[0]: expected uuid")
    try:
        before = [m["id"] for m in sorted(dlq.show("saga.events", ids),
                                          key=lambda m: m["position"])]
        assert before == ids
        started = time.monotonic()
        r = dlq.run("replay", "saga.events", "--id", dlq.ids_arg(ids), "--to", ":saga.events",
                    "--canary", "2", "--canary-wait", "3s")
        assert r.rc == 1, r
        s = r.json
        assert (s["canary"], s["outcome"], s["selected"], s["done"]) == ("failed", "partial",
                                                                         10, 2), r
        assert s["left"] == 8, r
        assert time.monotonic() - started < 30
        # The canaries came back; the other eight never left, in their order.
        wait_until(lambda: dlq.present("saga.events.dlq", ids) == set(ids), timeout=15,
                   what="the canaries back in saga.events.dlq")
        shown = {m["id"]: m for m in dlq.show("saga.events", ids)}
        canaries = [i for i in ids if shown[i]["replay_count"] == 1]
        untouched = [i for i in ids if shown[i]["replay_count"] == 0]
        assert canaries == ids[:2] and untouched == ids[2:], shown
        for i in canaries:
            assert (shown[i]["class"], shown[i]["code"]) == ("contract", "ERR_INVALID"), \
                ("failed again, for the same reason", shown[i])
        assert sorted(untouched, key=lambda i: shown[i]["position"]) == untouched
    finally:
        dlq.cleanup("saga.events.dlq", ids)


def test_messages_a_replay_does_not_select_keep_their_order():
    conn = db.connect("audit")
    with Broker() as broker:
        ids = []
        for _ in range(6):
            ids += dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed()], broker=broker)
            ids += dlq.fill("audit.events.dlq", "payment.charged.v1", [dlq.charged()],
                            broker=broker)
    replayed, kept = ids[0::2], ids[1::2]
    try:
        # With a canary that passes (these are valid events): the run goes on to the end.
        r = dlq.run("replay", "audit.events", "--type", STATUS, "--id", dlq.ids_arg(ids),
                    "--to", ":audit.events", "--canary", "1", "--canary-wait", "1s")
        assert r.rc == 0, r
        assert (r.json["selected"], r.json["done"], r.json["canary"]) == (6, 6, "passed"), r
        wait_until(lambda: audit_recorded(conn, replayed) == 6, what="the six replayed")
        left = sorted(dlq.show("audit.events", ids), key=lambda m: m["position"])
        assert [m["id"] for m in left] == kept, "the others, in their original order"
        assert all(m["type"] == "payment.charged.v1" and m["replay_count"] == 0 for m in left)
        assert audit_recorded(conn, kept) == 0
    finally:
        dlq.cleanup("audit.events.dlq", ids)
        conn.close()


def take_all(queue):
    """Every message of queue (the administrator consumes them): [(properties, body)]."""
    with Broker() as broker:
        return [(props, body) for _method, props, body in get_all(queue, broker)]


def test_a_manifest_freezes_the_selection_and_a_replay_keeps_the_id_and_every_header(tmp_path):
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    queue = "storefront.events.dlq"
    changed = [{"pet_id": str(uuid.uuid4()), "status": "available", "version": 3}
               for _ in range(4)]
    ids = dlq.fill(queue, "inventory.pet_status_changed.v1", changed[:3])
    manifest = tmp_path / "manifest.json"
    try:
        fp = dlq.show(queue, ids[:1])[0]["fingerprint"]
        r = dlq.run("plan", "storefront.events", "--group", fp, "--since", started,
                    "-o", manifest)
        assert r.rc == 0, r
        plan = json.loads(manifest.read_text())
        assert [m["id"] for m in plan["messages"]] == ids, plan
        # A dead letter of the same group after the plan is not part of it.
        ids += dlq.fill(queue, "inventory.pet_status_changed.v1", changed[3:])
        assert dlq.present(queue, ids) == set(ids), "plan changes nothing"
        # The manifest of another queue is refused.
        r = dlq.run("replay", "saga.events", "--manifest", manifest)
        assert r.rc == 2, r
        sent = {m["id"]: m for m in dlq.show(queue, ids)}

        with dlq.scratch_queue(".replayed") as target:
            r = dlq.run("replay", queue, "--manifest", manifest, "--to", ":" + target)
            assert r.rc == 0, r
            s = r.json
            assert (s["selected"], s["done"], s["left"]) == (3, 3, 0), r
            assert dlq.present(queue, ids) == {ids[3]}
            got = take_all(target)
        assert [p.message_id for p, _ in got] == ids[:3], "same ids, in their order"
        for (props, body), payload in zip(got, changed):
            h = props.headers
            assert props.user_id == "dlq", props
            assert props.type == "inventory.pet_status_changed.v1"
            assert json.loads(body) == payload
            assert h["cloudEvents_id"] == props.message_id
            assert h["traceparent"].split("-")[1] == sent[props.message_id]["trace_id"], h
            assert (h["x-petstore-failure-class"], h["x-petstore-sender"],
                    h["x-petstore-original-queue"]) == ("handler", "inventory",
                                                        "storefront.events"), h
            assert h["x-petstore-replay-count"] == 1, h
            assert h["x-petstore-replay-run"] == s["run"], h
            assert h["x-petstore-replay-for"] == "inventory", h
            assert h["x-petstore-replayed-at"], h
    finally:
        dlq.cleanup(queue, ids)


def test_a_destination_that_routes_nowhere_or_does_not_exist_leaves_the_message_in_place():
    ids = dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed() for _ in range(3)])
    try:
        for to, unroutable in (("petstore.commands:dlqtest-nowhere", 2),
                               ("dlqtest-no-such-exchange:key", 0)):
            r = dlq.run("replay", "audit.events", "--id", dlq.ids_arg(ids[:2]), "--to", to)
            assert r.rc == 1, r
            s = r.json
            assert (s["selected"], s["done"], s["unroutable"], s["left"], s["outcome"]) == (
                2, 0, unroutable, 2, "partial"), r
            assert to.split(":")[1 if unroutable else 0] in (s.get("detail") or "") + r.err, \
                ("says what went wrong", r)
            shown = sorted(dlq.show("audit.events", ids), key=lambda m: m["position"])
            assert [m["id"] for m in shown] == ids, "every message in place, in its order"
            assert all(m["replay_count"] == 0 for m in shown), shown
    finally:
        dlq.cleanup("audit.events.dlq", ids)


def test_a_replay_on_a_terminal_shows_its_progress():
    ids = dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed() for _ in range(100)])
    try:
        main, terminal = pty.openpty()
        proc = subprocess.Popen([dlq.tool(), "replay", "audit.events", "--id", dlq.ids_arg(ids),
                                 "--to", ":audit.events", "--rate", "100"],
                                stdout=terminal, stderr=terminal, env=dlq.tool_env())
        os.close(terminal)
        out = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            out += chunk
        os.close(main)
        assert proc.wait(timeout=30) == 0, out
        text = out.decode(errors="replace")
        done = [int(n) for n in re.findall(r"(\d+)/100\b", text)]
        assert len(set(done)) >= 3 and done[-1] == 100, ("done/total as it goes", text)
        assert re.search(r"\d[\d.]* ?(msg|messages)?/s", text), ("the rate", text)
        assert re.search(r"\d+ ?(s|min|m|h)\b[^\r\n]*\bleft", text), ("time left", text)
    finally:
        dlq.cleanup("audit.events.dlq", ids)


def test_a_replay_asked_to_stop_ends_after_the_batch_in_hand_and_says_what_is_left():
    """SIGTERM (interrupt.h): the tool finishes the batch it is sending, acknowledges exactly
    what was confirmed, reports a partial run (exit 1) with its counts, and leaves the rest in
    the .dlq; nothing is lost or replayed twice."""
    conn = db.connect("audit")
    ids = dlq.fill("audit.events.dlq", STATUS, [dlq.status_changed() for _ in range(1000)])
    try:
        proc = dlq.spawn("replay", "audit.events", "--id", dlq.ids_arg(ids),
                         "--to", ":audit.events", "--rate", "250")
        try:
            wait_until(lambda: proc.poll() is not None or audit_recorded(conn, ids) >= 100,
                       timeout=30, what="100 replayed messages recorded by audit")
            assert proc.poll() is None, ("the replay ended before it was asked to stop",
                                         proc.communicate())
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode == 1, (proc.returncode, out, err)
        summary = json.loads(out)
        counts = summary.get("counts", summary)
        assert 100 <= counts["done"] < len(ids), counts
        assert counts["left"] == len(ids) - counts["done"], counts

        state = {}

        def settled():
            state["log"] = recorded_ids(conn, ids)
            state["dlq"] = dlq.present("audit.events.dlq", ids)
            return len(state["log"]) == counts["done"] and \
                len(state["dlq"]) == counts["left"]
        wait_until(settled, timeout=30, interval=0.5,
                   what="the replayed ones in the event log, the rest in the .dlq")
        assert state["log"].isdisjoint(state["dlq"]) and state["log"] | state["dlq"] == set(ids)
    finally:
        dlq.cleanup("audit.events.dlq", ids)
        conn.close()
