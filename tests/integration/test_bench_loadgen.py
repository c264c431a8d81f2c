"""The bench's load generator (tests/bench, bin/petstore-loadgen) against the real system: what it
reports is what the storefront and the broker recorded. A check of the instrument, not a
performance test: nothing here is timed."""
import json
import subprocess
import uuid

import db
from petstore_env import binary, need
from shop import api, create_card, create_pet, new_customer

LOADGEN = "bin/petstore-loadgen"


def loadgen(*args, timeout=120):
    return subprocess.run([binary(LOADGEN), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_a_closed_loop_run_reports_what_the_storefront_recorded(tmp_path):
    token = new_customer()
    number, _card = create_card(10 ** 9)
    pets = [create_pet(price_cents=100, species="fish") for _ in range(6)]
    (tmp_path / "clients").write_text(f"{token} {number}\n")
    (tmp_path / "pets").write_text("\n".join(pets) + "\n")
    # Six pets for two connections and a long window: the run ends when the pets run out and
    # every order has ended, so the report is complete when the program exits.
    r = loadgen("orders", "--url", api(), "--clients", str(tmp_path / "clients"),
                "--pets", str(tmp_path / "pets"), "--closed", "2", "--duration", "60",
                "--drain", "60", "--json", str(tmp_path / "report.json"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["mode"] == "closed" and rep["connections"] == 2
    assert rep["pets_exhausted"] is True
    assert rep["placed"] == 6 and rep["accepted"] == 6
    assert rep["http_status"] == {"202": 6}
    assert rep["unfinished"] == 0 and rep["abandoned"] == 0
    sf = db.connect("storefront")
    rows = db.rows(sf, "SELECT status, count(*) AS n FROM orders WHERE pet_ids && %s::uuid[]"
                       " GROUP BY status", pets)
    recorded = {row["status"]: row["n"] for row in rows}
    assert sum(recorded.values()) == 6
    for status in ("COMPLETED", "CANCELLED", "NEEDS_OPERATOR"):
        assert rep["ended"][status] == recorded.get(status, 0)
    assert rep["ended"]["COMPLETED"] == 6  # funded card, available pets
    assert sum(rep["completed_by_second"]) == 6
    assert rep["latency_ms"]["completed"]["count"] == 6
    assert rep["latency_ms"]["post"]["count"] == 6
    lat = rep["latency_ms"]["completed"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    # One POST and at least one long poll per order.
    assert rep["requests"] >= 12 and rep["requests_per_order"] >= 2


def test_the_door_alone_only_posts(tmp_path):
    token = new_customer()
    number, _card = create_card(10 ** 9)
    pets = [create_pet(price_cents=100, species="fish") for _ in range(3)]
    (tmp_path / "clients").write_text(f"{token} {number}\n")
    (tmp_path / "pets").write_text("\n".join(pets) + "\n")
    r = loadgen("orders", "--url", api(), "--clients", str(tmp_path / "clients"),
                "--pets", str(tmp_path / "pets"), "--rate", "50", "--duration", "30",
                "--follow", "none", "--drain", "30")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["mode"] == "rate" and rep["follow"] == "none"
    assert rep["accepted"] == 3 and rep["requests"] == 3
    assert rep["ended"] == {"COMPLETED": 0, "CANCELLED": 0, "NEEDS_OPERATOR": 0}


def test_bad_arguments_exit_2_with_a_message():
    r = loadgen("orders", "--url", "http://127.0.0.1:1", "--closed", "2", "--rate", "3")
    assert r.returncode == 2
    assert "petstore-loadgen:" in r.stderr
    r = loadgen("publish", "--count", "many")
    assert r.returncode == 2 and "--count" in r.stderr
    r = loadgen("frobnicate")
    assert r.returncode == 2


def test_the_raw_publish_loop_counts_confirms_and_returns():
    queue = "bench.raw.test." + uuid.uuid4().hex[:12]
    url = need("AMQP_URL")
    r = loadgen("publish", "--amqp-url", url, "--exchange", "", "--routing-key", queue,
                "--declare-queue", queue, "--count", "1200", "--window", "500", "--size", "64",
                "--purge", "--delete-queue")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)  # log lines go to stderr, the report alone to stdout
    assert rep["published"] == 1200 and rep["confirmed"] == 1200
    assert rep["returned"] == 0 and rep["nacked"] == 0 and rep["error"] is None
    assert rep["msgs_per_s"] > 0
    # The queue is gone: publishing to its name now comes back as basic.return.
    r = loadgen("publish", "--amqp-url", url, "--exchange", "", "--routing-key", queue,
                "--count", "10")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["returned"] == 10 and rep["confirmed"] == 0
