"""The migration runner through a real binary: applied once and recorded, safe to run again and
concurrently, a changed migration refused with a clear message; and the database fault hook
makes a relay cycle fail without losing the row it was publishing."""
import subprocess
import uuid

import psycopg2
import pytest

import db
from amqp import Broker
from petstore_env import binary, need
from test_relay import Relay, insert, sent
from wait import wait_until

RELAY = "outbox/outbox-relay"


@pytest.fixture
def scratch_db():
    with db.scratch("mig") as url:
        yield url


def migrate(url):
    env = {"DATABASE_URL": url, "AMQP_URL": need("AMQP_URL"), "HTTP_PORT": "1", "PATH": "/usr/bin"}
    return subprocess.run([binary(RELAY), "--migrate"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_migrations_apply_once_and_are_recorded(scratch_db):
    runs = [subprocess.Popen([binary(RELAY), "--migrate"], env={
        "DATABASE_URL": scratch_db, "AMQP_URL": need("AMQP_URL"), "HTTP_PORT": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
    assert [r.wait(timeout=60) for r in runs] == [0, 0, 0], "three migrators at once all succeed"
    assert migrate(scratch_db).returncode == 0, "and again later"
    conn = psycopg2.connect(scratch_db)
    conn.autocommit = True
    rows = db.rows(conn, "SELECT component, version, name FROM schema_migrations ORDER BY version")
    assert [(r["component"], r["version"], r["name"]) for r in rows] == [
        ("runtime", 1, "outbox"), ("runtime", 2, "inbox"), ("runtime", 3, "outbox_order"),
        ("runtime", 4, "outbox_claim_in_id_order")]
    assert db.value(conn, "SELECT to_regclass('outbox') IS NOT NULL AND"
                          " to_regclass('inbox') IS NOT NULL")
    # An applied migration whose text changed is refused, naming it.
    db.rows(conn, "UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 2")
    out = migrate(scratch_db)
    assert out.returncode != 0
    assert "002_inbox was changed after it was applied" in out.stdout + out.stderr
    conn.close()


def test_an_injected_database_fault_at_start_is_retried_and_loses_nothing(scratch_db):
    assert migrate(scratch_db).returncode == 0
    conn = psycopg2.connect(scratch_db)
    conn.autocommit = True
    with Broker() as broker:
        exchange = "faulttest." + uuid.uuid4().hex[:8]
        broker.ch.exchange_declare(exchange, "topic", auto_delete=True)
        cap = broker.capture(exchange, "#")
        mid = insert(conn, exchange)
        # The process's second statement (its startup migration) fails as a lost connection
        # would; the relay must start anyway and publish the row. A fault inside the relay's
        # cycle is test_relay_hooks.py's test_a_database_fault_in_a_relay_cycle_...
        relay = Relay(scratch_db, PETSTORE_FAULT_DB_EXEC_FAIL_AT=2).ready()
        try:
            cap.wait_for(lambda m, p, b: p.message_id == mid, what="the row after the fault")
            wait_until(lambda: sent(conn, mid), what="the row marked sent")
        finally:
            relay.stop()
        log = open(relay.log.name).read()
        assert "injected fault" in log
    conn.close()
