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
import subprocess

import pytest

import db
import dlq
from petstore_env import binary, launcher, need
from saga_instance import private_saga
from shop import (balance, create_card, create_pet, net_charged, new_customer, pet_status,
                  place_order, wait_status)
from wait import wait_until

OPERATOR = "saga-tool-test"
RELEASE_BIT = 1  # machine.h SAGA_PENDING_RELEASE

# A private order-saga that parks a saga in seconds: every wait a few hundred milliseconds,
# three tries. The tool gets the same limits (it arms timers as the orchestrator would).
FAST = {"SAGA_RESERVE_TIMEOUT_MS": 2000, "SAGA_PAY_TIMEOUT_MS": 600,
        "SAGA_CONFIRM_TIMEOUT_MS": 2000, "SAGA_COMPENSATE_TIMEOUT_MS": 300,
        "SAGA_RETRY_MAX_MS": 600, "SAGA_MAX_COMPENSATION_TRIES": 3,
        "SAGA_MAX_CONFIRM_TRIES": 3, "SAGA_TIMER_POLL_MS": 50}
# One that lets a saga wait in PAYING for as long as the test needs.
PATIENT = {"SAGA_PAY_TIMEOUT_MS": 60000, "SAGA_TIMER_POLL_MS": 50}


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
    r = saga_tool("list", "--state", "COMPLETED", "--limit", "1000", "--json")
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
