"""The saga tool (petstore-saga, saga/tool/) against a running system: it lists and shows real
sagas, refuses what it must refuse, re-sends a lost charge so that the order completes, and
repairs a saga parked in NEEDS_OPERATOR with resume.

Sagas are made to get stuck with the consumers' fault hook PETSTORE_FAULT_HANDLER_FAIL_TYPE
(every command of one type is dead-lettered, so its reply never comes) on a daemon restarted
through the launcher, and with a private order-saga (tests/lib/saga_instance.py) whose timeouts
suit the scenario: a long pay timeout so that a saga waits in PAYING, or a few hundred
milliseconds and three tries so that compensations park it in seconds. Every daemon a test
restarts with a fault or stops is restarted plainly afterwards, and the commands it caused to
be dead-lettered are purged, since other tests run against the same system."""
import contextlib
import json
import os
import re
import subprocess
import time

import pytest

import db
import dlq
from petstore_env import binary, launcher, need
from saga_instance import private_saga
from shop import (balance, create_card, create_pet, net_charged, new_customer, pet_status,
                  place_order, wait_status)
from wait import Timeout, wait_until

OPERATOR = "saga-tool-test"
RELEASE_BIT = 1  # machine.h SAGA_PENDING_RELEASE
REFUND_BIT = 2  # machine.h SAGA_PENDING_REFUND

# A private order-saga that parks a saga in seconds: every wait a few hundred milliseconds,
# three tries. The tool gets the same limits (it arms timers as the orchestrator would).
FAST = {"SAGA_RESERVE_TIMEOUT_MS": 2000, "SAGA_PAY_TIMEOUT_MS": 600,
        "SAGA_CONFIRM_TIMEOUT_MS": 2000, "SAGA_COMPENSATE_TIMEOUT_MS": 300,
        "SAGA_RETRY_MAX_MS": 600, "SAGA_MAX_COMPENSATION_TRIES": 3,
        "SAGA_MAX_CONFIRM_TRIES": 3, "SAGA_TIMER_POLL_MS": 50}
# One that lets a saga wait in PAYING for as long as the test needs.
PATIENT = {"SAGA_PAY_TIMEOUT_MS": 60000, "SAGA_TIMER_POLL_MS": 50}
# One that also leaves a compensation waiting (not re-sent, not parked) while a test holds it.
STILL = dict(PATIENT, SAGA_COMPENSATE_TIMEOUT_MS=60000)


class Result:
    def __init__(self, argv, proc):
        self.argv, self.rc, self.out, self.err = argv, proc.returncode, proc.stdout, proc.stderr
        try:
            self.json = json.loads(self.out) if self.out.strip().startswith(("{", "[")) else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return (f"petstore-saga {' '.join(self.argv[1:])} -> exit {self.rc}\n"
                f"stdout: {self.out[-3000:]}\nstderr: {self.err[-2000:]}")


def saga_tool(*args, env=None, timeout=90):
    """Runs petstore-saga as an operator would, with the system's settings."""
    need("SAGA_DATABASE_URL")
    argv = [binary("bin/petstore-saga"), *[str(a) for a in args]]
    e = dict(os.environ, SAGA_OPERATOR=OPERATOR)
    e.update({k: str(v) for k, v in (env or {}).items()})
    return Result(argv, subprocess.run(argv, env=e, capture_output=True, text=True,
                                       timeout=timeout))


def spawn_saga_tool(*args, env=None):
    """petstore-saga started in the background, for a test that watches it while it waits."""
    need("SAGA_DATABASE_URL")
    argv = [binary("bin/petstore-saga"), *[str(a) for a in args]]
    e = dict(os.environ, SAGA_OPERATOR=OPERATOR)
    e.update({k: str(v) for k, v in (env or {}).items()})
    return argv, subprocess.Popen(argv, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)


def finish(spawned, timeout=60):
    """The Result of a spawned petstore-saga once it has exited (killed after timeout)."""
    argv, proc = spawned
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return Result(argv, subprocess.CompletedProcess(argv, proc.returncode, out, err))


def launch(*args, **env):
    """The launcher against the system under test, with extra environment (fault hooks)."""
    out = subprocess.run([launcher(), *args], env=dict(os.environ, **env), capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr


@contextlib.contextmanager
def faulty(name, message_type):
    """Daemon `name` restarted so that it dead-letters every message of message_type; restarted
    plainly afterwards (also by the block, through the returned function, to remove the cause)."""
    state = {"faulty": True}

    def heal():
        if state["faulty"]:
            launch("restart", name)
            state["faulty"] = False
    launch("restart", name, PETSTORE_FAULT_HANDLER_FAIL_TYPE=message_type)
    try:
        yield heal
    finally:
        heal()


def saga_row(order_id):
    conn = db.connect("saga")
    try:
        found = db.rows(conn, "SELECT status, reason, pending, version FROM sagas "
                              "WHERE order_id = %s", order_id)
        return found[0] if found else None
    finally:
        conn.close()


def saga_counts(order_id):
    """What a dry run must not change: the saga's version, its steps, its outbox rows, its
    timer."""
    conn = db.connect("saga")
    try:
        return db.rows(conn, """
            SELECT s.version,
                   (SELECT count(*) FROM saga_steps WHERE order_id = s.order_id) AS steps,
                   (SELECT count(*) FROM outbox WHERE correlation_id = s.order_id::text) AS sent,
                   (SELECT deadline FROM saga_timers WHERE order_id = s.order_id) AS deadline
            FROM sagas s WHERE s.order_id = %s""", order_id)[0]
    finally:
        conn.close()


def audit_rows(order_id=None):
    conn = db.connect("saga")
    try:
        if order_id is None:
            return db.rows(conn, "SELECT * FROM saga_operator_actions ORDER BY id")
        return db.rows(conn, "SELECT * FROM saga_operator_actions WHERE order_id = %s "
                             "ORDER BY id", order_id)
    finally:
        conn.close()


def outbox_ids(order_id, message_type):
    conn = db.connect("saga")
    try:
        return [str(r["message_id"]) for r in db.rows(
            conn, "SELECT message_id FROM outbox WHERE correlation_id = %s AND type = %s",
            order_id, message_type)]
    finally:
        conn.close()


def wait_saga(order_id, predicate, what, timeout=30):
    return wait_until(lambda: (lambda r: r if r and predicate(r) else None)(saga_row(order_id)),
                      timeout=timeout, what=what)


def completed_order():
    token = new_customer()
    number, _card = create_card(100_000)
    oid = place_order(token, number, [create_pet(1200)])
    assert wait_status(token, oid)["status"] == "COMPLETED"
    return oid


def test_help_usage_and_connection_errors_have_their_exit_statuses():
    r = saga_tool("--help")
    assert r.rc == 0 and "resume" in r.out, r
    for verb in ("list", "show", "retry", "compensate", "resume"):
        r = saga_tool(verb, "--help")
        assert r.rc == 0 and f"petstore-saga {verb}" in r.out, r
    order = "0190a8a0-1234-7abc-8def-0123456789ab"
    r = saga_tool("retry", order)
    assert r.rc == 2 and "--reason" in r.err, r
    r = saga_tool("frobnicate")
    assert r.rc == 2, r
    bad = "host=127.0.0.1 port=1 dbname=saga user=saga password=x connect_timeout=2"
    r = saga_tool("list", env={"SAGA_DATABASE_URL": bad})
    assert r.rc == 3 and "SAGA_DATABASE_URL" in r.err, r
    r = saga_tool("resume", order, "--reason", "x", env={"SAGA_DATABASE_URL": bad})
    assert r.rc == 3, r


def test_list_and_show_a_finished_saga_and_refuse_a_selection_without_yes():
    first, second = completed_order(), completed_order()
    # Oldest first, and the system may hold many (the bench loader's test ages it): all of them.
    r = saga_tool("list", "--state", "COMPLETED", "--limit", "1000000", "--json")
    assert r.rc == 0, r
    listed = {s["order_id"]: s for s in r.json}
    assert first in listed and second in listed, r
    assert listed[first]["status"] == "COMPLETED" and listed[first]["waiting_for"] == "nothing"
    assert first not in saga_tool("list").out  # unfinished sagas only, by default

    r = saga_tool("show", first)
    assert r.rc == 0, r
    for text in ("steps", "placed", "PENDING -> RESERVING", "sent inventory.reserve.v1",
                 "sent payment.charge.v1", "sent inventory.confirm_sale.v1", "received ",
                 "trace ", "finished: COMPLETED at"):
        assert text in r.out, (text, r)
    r = saga_tool("show", first, "--json")
    assert r.rc == 0 and r.json["saga"]["status"] == "COMPLETED", r
    assert [s["version"] for s in r.json["steps"]] == list(range(1, len(r.json["steps"]) + 1))
    assert len(r.json["trace_ids"]) == 1, r.json["trace_ids"]
    assert r.json["last_line"].startswith("finished: COMPLETED")

    # Two or more sagas selected: refused without --yes, nothing written, not even an audit row.
    before = len(audit_rows())
    r = saga_tool("retry", "--state", "COMPLETED", "--reason", "selection test")
    assert r.rc == 2 and "--yes" in r.err, r
    r = saga_tool("retry", first, second, "--reason", "selection test")
    assert r.rc == 2 and "--yes" in r.err, r
    assert len(audit_rows()) == before

    # A finished saga is not retried: the machine refuses, the audit says so, exit 1.
    r = saga_tool("retry", first, "--reason", "nothing to retry", "--json")
    assert r.rc == 1, r
    assert r.json["results"][0]["outcome"] == "refused", r
    assert [a["outcome"] for a in audit_rows(first)] == ["refused"]

    r = saga_tool("show", "0190a8a0-1234-7abc-8def-0123456789ab")
    assert r.rc == 1 and "no saga" in r.err, r


def test_retry_resends_a_lost_charge_and_the_order_completes(tmp_path):
    token = new_customer()
    number, card = create_card(100_000)
    pet = create_pet(2100)
    oid = None
    with private_saga(str(tmp_path / "saga.log"), replace=True, **PATIENT):
        with faulty("payment", "payment.charge.v1") as heal:
            try:
                oid = place_order(token, number, [pet])
                wait_saga(oid, lambda r: r["status"] == "PAYING", "the saga paying")
                charges = wait_until(lambda: outbox_ids(oid, "payment.charge.v1"),
                                     what="the charge in the outbox")
                wait_until(lambda: dlq.present("payment.commands.dlq", charges),
                           timeout=30, what="the charge dead-lettered: its reply is lost")

                # What an operator sees: stuck in PAYING, waiting for the charge.
                r = saga_tool("list", "--state", "PAYING", "--stuck-for", "0s", "--json")
                assert r.rc == 0 and oid in [s["order_id"] for s in r.json], r
                r = saga_tool("show", oid)
                assert r.rc == 0, r
                assert "waiting for payment.charged until" in r.out.splitlines()[-1], r
                assert "RESERVING -> PAYING" in r.out and "sent payment.charge.v1" in r.out, r

                # A dry run says what it would do and changes nothing.
                before = saga_counts(oid)
                r = saga_tool("retry", oid, "--reason", "charge lost", "--dry-run", "--json",
                              env=PATIENT)
                assert r.rc == 0, r
                assert r.json["results"][0]["outcome"] == "dry-run", r
                assert "payment.charge.v1" in r.json["results"][0]["messages"], r
                assert saga_counts(oid) == before
                assert [(a["outcome"], a["dry_run"]) for a in audit_rows(oid)] == [
                    ("dry-run", True)]

                heal()  # payment handles charges again
                r = saga_tool("retry", oid, "--reason", "charge lost to a handler bug",
                              env=PATIENT)
                assert r.rc == 0, r
                assert "confirmed" in r.out, r
                final = wait_status(token, oid, timeout=30)
                assert final["status"] == "COMPLETED", final
                assert net_charged(oid) == 2100
                assert balance(card) == 100_000 - 2100
                assert pet_status(pet) == "sold"
                rows = audit_rows(oid)
                assert [a["outcome"] for a in rows] == ["dry-run", "sent", "confirmed"], rows
                assert rows[1]["verb"] == "retry" and rows[1]["operator"] == OPERATOR
                assert rows[1]["from_status"] == "PAYING" and rows[1]["reason"] == \
                    "charge lost to a handler bug"
                assert rows[1]["action_id"] == rows[2]["action_id"]
                r = saga_tool("show", oid)
                assert "operator_retry" in r.out and "charge lost to a handler bug" in r.out, r
            finally:
                if oid:
                    dlq.cleanup("payment.commands.dlq", outbox_ids(oid, "payment.charge.v1"))


def test_resume_repairs_a_saga_parked_in_needs_operator(tmp_path):
    """The acceptance test: a compensation made to fail parks the saga, the cause is removed,
    resume finishes it: CANCELLED, the pet free, the card whole, the action audited, exit 0."""
    token = new_customer()
    number, card = create_card(50_000)
    pet = create_pet(3300)
    oid = None
    payment_stopped = False
    with private_saga(str(tmp_path / "saga.log"), replace=True, **FAST):
        with faulty("inventory", "inventory.release.v1") as heal:
            try:
                # Payment does not answer: the charge times out, the saga compensates (refund or
                # void, release); every release is dead-lettered, so the saga parks.
                launch("stop", "payment")
                payment_stopped = True
                oid = place_order(token, number, [pet])
                wait_saga(oid, lambda r: r["status"] in ("COMPENSATING", "NEEDS_OPERATOR"),
                          "the saga compensating")
                launch("start", "payment")
                payment_stopped = False
                parked = wait_saga(oid, lambda r: r["status"] == "NEEDS_OPERATOR" and
                                   r["pending"] == RELEASE_BIT,
                                   "the saga parked with only the release pending")
                assert parked["reason"] == "TIMEOUT"
                assert pet_status(pet) == "reserved"

                r = saga_tool("list", "--needs-operator", "--json")
                assert r.rc == 0 and oid in [s["order_id"] for s in r.json], r
                r = saga_tool("show", oid)
                assert r.rc == 0, r
                assert "parked: needs an operator since" in r.out, r
                assert f"petstore-saga resume {oid}" in r.out, r

                # The cause removed (inventory releases again), resume sends the release once
                # more and checks that the saga finished.
                heal()
                r = saga_tool("resume", oid, "--reason", "inventory release handler fixed",
                              env=FAST)
                assert r.rc == 0, r
                assert "confirmed" in r.out, r
                final = wait_status(token, oid, timeout=30)
                assert final["status"] == "CANCELLED" and final["reason"] == "TIMEOUT", final
                assert pet_status(pet) == "available"
                assert balance(card) == 50_000
                assert net_charged(oid) == 0
                rows = audit_rows(oid)
                assert [(a["verb"], a["outcome"]) for a in rows] == [
                    ("resume", "sent"), ("resume", "confirmed")], rows
                assert rows[0]["from_status"] == "NEEDS_OPERATOR"
                assert rows[0]["to_status"] == "COMPENSATING"
                assert rows[0]["operator"] == OPERATOR and not rows[0]["dry_run"]
                # The audit cannot be rewritten.
                conn = db.connect("saga")
                try:
                    with pytest.raises(Exception):
                        db.rows(conn, "UPDATE saga_operator_actions SET outcome = 'refused' "
                                      "WHERE order_id = %s", oid)
                finally:
                    conn.close()
            finally:
                if payment_stopped:
                    launch("start", "payment")
                if oid:
                    dlq.cleanup("inventory.commands.dlq", outbox_ids(oid, "inventory.release.v1"))


def operator_steps(order_id):
    conn = db.connect("saga")
    try:
        return db.rows(conn, "SELECT version, event, from_status, to_status, message_id, why "
                             "FROM saga_steps WHERE order_id = %s AND event LIKE 'operator%%' "
                             "ORDER BY version", order_id)
    finally:
        conn.close()


def assert_list_json_matches_text(order_id):
    """`list --json` parses and carries every column the text shows for the order."""
    state = saga_row(order_id)["status"]
    text = saga_tool("list", "--state", state, "--limit", "1000000")
    doc = saga_tool("list", "--state", state, "--limit", "1000000", "--json")
    assert text.rc == 0 and doc.rc == 0 and isinstance(doc.json, list), (text, doc)
    header = re.split(r"\s{2,}", text.out.splitlines()[0].strip())
    assert header == ["order", "status", "reason", "ver", "in state", "waiting for", "until",
                      "att", "timer"], text
    line = [ln for ln in text.out.splitlines() if ln.startswith(order_id)]
    entry = [s for s in doc.json if s["order_id"] == order_id]
    assert len(line) == 1 and len(entry) == 1, (text, doc)
    cols, entry = re.split(r"\s{2,}", line[0].strip()), entry[0]
    assert len(cols) == 9, cols
    parked, failures = entry["timer_parked_at"], entry["timer_failures"] or 0
    timer = (f"PARKED since {parked} after {failures} failures" if parked
             else f"{failures} failures" if failures else "-")
    assert cols == [entry["order_id"], entry["status"], entry["reason"] or "-",
                    str(entry["version"]), cols[4], entry["waiting_for"],
                    entry["deadline"] or "-", str(entry["attempts"]), timer], (cols, entry)
    # "in state" is age_ms formatted when the text was printed (a moment before the JSON).
    assert re.fullmatch(r"\d+ (ms|s|min|h|d)", cols[4]) and entry["age_ms"] >= 0, (cols, entry)
    assert entry["since"], entry


def assert_show_json_matches_text(order_id):
    """`show --json` parses and carries everything the timeline shows."""
    text = saga_tool("show", order_id)
    doc = saga_tool("show", order_id, "--json")
    assert text.rc == 0 and doc.rc == 0 and isinstance(doc.json, dict), (text, doc)
    j, lines = doc.json, text.out.splitlines()
    saga = j["saga"]
    assert lines[0] == f"order {saga['order_id']}", text
    assert lines[1].strip() == (
        f"status {saga['status']}, reason {saga['reason'] or '-'}, version {saga['version']}, "
        f"attempts {saga['attempts']}, waiting for {j['waiting_for']}"), (lines[1], j)
    total = saga["total_cents"]
    assert lines[2].strip() == (
        f"created {saga['created_at']}, {len(saga['pet_ids'])} pet(s), "
        f"total {total // 100}.{total % 100:02d}, card ****{saga['card_last4']}"), (lines[2], j)
    assert len(j["trace_ids"]) >= 1 and f"trace {j['trace_ids'][0]} (the order's)" in text.out
    assert j["steps"], j
    for step in j["steps"]:
        assert any(step["at"] in ln and f"v{step['version']}" in ln and step["event"] in ln
                   and f"-> {step['to']}" in ln and step["why"] in ln for ln in lines), (step, text)
    for m in j["sent"]:
        assert any(m["type"] in ln and m["message_id"] in ln and f"key {m['routing_key']}" in ln
                   and (m["sent_at"] is None or f"published {m['sent_at']}" in ln)
                   for ln in lines), (m, text)
    for a in j["actions"]:
        assert any(a["at"] in ln and a["operator"] in ln and a["verb"] in ln and a["outcome"] in ln
                   and f"\"{a['reason']}\"" in ln for ln in lines), (a, text)
    assert ("operator actions (audit)" in text.out) == bool(j["actions"])
    timer_at = lines.index("timer")
    if j["timer"] is None:
        assert lines[timer_at + 1].strip() == "none", text
    else:
        t = j["timer"]
        assert lines[timer_at + 1].strip().startswith(f"deadline {t['deadline']} ("), text
        assert (f"attempt {t['attempt']}, failures {t['failures']}, "
                f"last error {t['last_error'] or '-'}, parked {t['parked_at'] or '-'}"
                in lines[timer_at + 1]), (lines[timer_at + 1], t)
    assert lines[-1] == j["last_line"], (lines[-1], j["last_line"])


def test_compensate_cancels_a_paying_saga_and_exits_only_once_it_is_cancelled(tmp_path):
    """Payment stopped: the saga waits in PAYING, its charge unanswered. compensate sends the
    refund-or-void and the release; inventory releases at once, but the tool waits on until
    payment, started again, has charged and refunded, and the saga is CANCELLED. A finished saga
    is not compensated."""
    token = new_customer()
    number, card = create_card(100_000)
    pet = create_pet(2700)
    reason = "charge unanswered, customer gave up"
    payment_stopped = False
    spawned = None
    with private_saga(str(tmp_path / "saga.log"), replace=True, **STILL):
        try:
            launch("stop", "payment")
            payment_stopped = True
            oid = place_order(token, number, [pet])
            wait_saga(oid, lambda r: r["status"] == "PAYING", "the saga paying")
            wait_until(lambda: outbox_ids(oid, "payment.charge.v1"),
                       what="the charge in the outbox")
            assert_list_json_matches_text(oid)  # PAYING, timer armed
            assert_show_json_matches_text(oid)

            spawned = spawn_saga_tool("compensate", oid, "--reason", reason, "--wait", 40,
                                      env=STILL)
            wait_saga(oid, lambda r: r["status"] == "COMPENSATING" and
                      r["pending"] == REFUND_BIT,
                      "the release acknowledged, the refund-or-void waiting for payment")
            # Half undone is not done: the tool keeps waiting (seven of its 200 ms polls).
            try:
                wait_until(lambda: spawned[1].poll() is not None, timeout=1.5,
                           what="the tool to exit")
            except Timeout:
                pass
            else:
                early, spawned = finish(spawned), None
                pytest.fail(f"exited while the refund was pending ({saga_row(oid)}): {early!r}")
            assert [a["outcome"] for a in audit_rows(oid)] == ["sent"]
            launch("start", "payment")
            payment_stopped = False
            r = finish(spawned)
            spawned = None
            after = saga_row(oid)
            assert r.rc == 0 and "compensate confirmed" in r.out and "saga is CANCELLED" in r.out, r
            assert after["status"] == "CANCELLED" and after["reason"] == "TIMEOUT", after
            assert pet_status(pet) == "available"
            wait_until(lambda: balance(card) == 100_000, what="the card whole again")
            assert net_charged(oid) == 0
            rows = audit_rows(oid)
            assert [(a["verb"], a["outcome"]) for a in rows] == [
                ("compensate", "sent"), ("compensate", "confirmed")], rows
            assert rows[0]["action_id"] == rows[1]["action_id"]
            assert (rows[0]["from_status"], rows[0]["to_status"]) == ("PAYING", "COMPENSATING")
            assert rows[0]["operator"] == OPERATOR and rows[0]["reason"] == reason
            assert rows[1]["to_status"] == "COMPENSATING"  # the step's; the detail says CANCELLED
            steps = operator_steps(oid)
            assert len(steps) == 1 and steps[0]["event"] == "operator_compensate", steps
            assert str(steps[0]["message_id"]) == str(rows[0]["action_id"])
            assert f"petstore-saga compensate by {OPERATOR}: {reason}" in steps[0]["why"], steps
            assert_list_json_matches_text(oid)  # CANCELLED, an operator's action, no timer
            assert_show_json_matches_text(oid)
        finally:
            if spawned is not None:
                spawned[1].kill()
                spawned[1].communicate()
            if payment_stopped:
                launch("start", "payment")

    # A finished saga: refused, exit 1, audited, nothing else changed.
    done = completed_order()
    before = saga_counts(done)
    r = saga_tool("compensate", done, "--reason", "too late", "--json")
    assert r.rc == 1 and r.json["results"][0]["outcome"] == "refused", r
    assert saga_counts(done) == before
    assert saga_row(done)["status"] == "COMPLETED"
    assert [(a["verb"], a["outcome"], a["from_status"]) for a in audit_rows(done)] == [
        ("compensate", "refused", "COMPLETED")]


def test_a_selection_with_yes_acts_on_every_saga_at_the_rate_asked(tmp_path):
    """Three sagas stuck in PAYING (every charge dead-lettered), compensated as one selection
    (--state PAYING --yes --rate 2): each selected saga gets its step and one pair of audit rows,
    every order is cancelled with nothing charged, and the run is paced: n sagas at 2 per second
    take at least (n - 1) / 2 seconds."""
    token = new_customer()
    number, card = create_card(100_000)
    pets = [create_pet(1500 + i) for i in range(3)]
    oids = []
    rate = 2
    with private_saga(str(tmp_path / "saga.log"), replace=True, **STILL):
        with faulty("payment", "payment.charge.v1"):
            try:
                for pet in pets:
                    oids.append(place_order(token, number, [pet]))
                for oid in oids:
                    wait_saga(oid, lambda r: r["status"] == "PAYING", "the saga paying")
                charges = [c for oid in oids for c in wait_until(
                    lambda oid=oid: outbox_ids(oid, "payment.charge.v1"), what="a charge")]
                wait_until(lambda: dlq.present("payment.commands.dlq", charges) == set(charges),
                           timeout=30, what="every charge dead-lettered")

                started = time.monotonic()
                r = saga_tool("compensate", "--state", "PAYING", "--yes", "--rate", rate,
                              "--reason", "charges lost, orders given up", "--wait", 40,
                              "--json", env=STILL)
                elapsed = time.monotonic() - started
                assert r.rc == 0 and r.json is not None, r
                selected = [x["order_id"] for x in r.json["results"]]
                n = len(selected)
                assert set(oids) <= set(selected) and n == len(set(selected)), r
                assert r.json["selected"] == n and r.json["ok"] == n and r.json["not_ok"] == 0
                assert all(x["outcome"] == "confirmed" for x in r.json["results"]), r
                print(f"compensate --rate {rate}: {n} sagas in {elapsed:.2f} s "
                      f"(at least {(n - 1) / rate:.2f} s)")
                assert elapsed >= (n - 1) / rate, (elapsed, n)

                sent_at = []
                for x in r.json["results"]:
                    rows = audit_rows(x["order_id"])
                    assert [(a["verb"], a["outcome"]) for a in rows] == [
                        ("compensate", "sent"), ("compensate", "confirmed")], rows
                    assert {str(a["action_id"]) for a in rows} == {x["action_id"]}
                    sent_at.append(rows[0]["at"])
                    assert len(operator_steps(x["order_id"])) == 1
                # The steps themselves were paced: the k-th written k / rate s after the first.
                spread = (sent_at[-1] - sent_at[0]).total_seconds()
                print(f"sent rows spread over {spread:.2f} s")
                assert spread >= (n - 1) / rate - 0.1, sent_at  # the first step may start late
                for oid, pet in zip(oids, pets):
                    final = wait_status(token, oid, timeout=30)
                    assert final["status"] == "CANCELLED", final
                    assert net_charged(oid) == 0
                    assert pet_status(pet) == "available"
                assert balance(card) == 100_000
            finally:
                for oid in oids:
                    dlq.cleanup("payment.commands.dlq", outbox_ids(oid, "payment.charge.v1"))
