"""`PETSTORE_TLS=1 PETSTORE_MONITORING=1 ./petstore up` on a system of its own: every link speaks
TLS and refuses plain text, an order completes over HTTPS, and Prometheus scrapes every daemon
and RabbitMQ and has loaded the SLO rules.

The system gets its own home and ports (nothing is shared with the suites' system) and is
stopped and removed at the end. It uses the build under test (PETSTORE_BUILD_DIR)."""
import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pika
import psycopg2
import pytest

from wait import wait_until  # tests/lib, on the path through tests/conftest.py

SOURCE = os.environ.get("PETSTORE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
LAUNCHER = os.path.join(SOURCE, "petstore")
DAEMONS = ["storefront", "inventory", "payment", "order-saga", "audit", "relay-storefront",
           "relay-inventory", "relay-payment", "relay-saga"]
# Port variables of the launcher and their defaults; the system takes the first free ports
# from these plus an offset.
PORTS = {"PETSTORE_PG_PORT": 5433, "PETSTORE_AMQP_PORT": 5673, "PETSTORE_MGMT_PORT": 5674,
         "PETSTORE_PROMETHEUS_PORT": 5693, "PETSTORE_DIST_PORT": 25673,
         "PETSTORE_MONITORING_PORT": 9095, "PETSTORE_STOREFRONT_PORT": 8080,
         "PETSTORE_INVENTORY_PORT": 8081, "PETSTORE_PAYMENT_PORT": 8082,
         "PETSTORE_ORDER_SAGA_PORT": 8083, "PETSTORE_AUDIT_PORT": 8084,
         "PETSTORE_RELAY_STOREFRONT_PORT": 8091, "PETSTORE_RELAY_INVENTORY_PORT": 8092,
         "PETSTORE_RELAY_PAYMENT_PORT": 8093, "PETSTORE_RELAY_SAGA_PORT": 8094}
OFFSET = 23000


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports():
    taken, out = set(), {}
    for var, default in PORTS.items():
        p = default + OFFSET
        while p in taken or not port_free(p):
            p += 1
        taken.add(p)
        out[var] = str(p)
    return out


def launcher_env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PETSTORE_")}
    env.update(free_ports())
    env.update({
        "PETSTORE_HOME": home, "PETSTORE_TLS": "1", "PETSTORE_MONITORING": "1",
        "PETSTORE_SKIP_INSTALL": "1", "PETSTORE_SKIP_BUILD": "1",
        "PETSTORE_BUILD_DIR": os.environ["PETSTORE_BUILD_DIR"],
    })
    return env


def run(env, *args, timeout=60, check=True):
    p = subprocess.run([LAUNCHER, *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"./petstore {' '.join(args)} exited {p.returncode}:\n"
                             f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def system():
    home = tempfile.mkdtemp(prefix="petstore-tls.", dir="/var/tmp")
    env = launcher_env(home)
    try:
        run(env, "up", timeout=300)
        exports = {}
        for line in run(env, "env").stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                k, v = line[len("export "):].split("=", 1)
                exports[k] = v.strip("'")
        yield env, exports
    finally:
        run(env, "down", timeout=180, check=False)
        # Under the sanitizers a daemon reports a leak or an error in its log when it stops.
        reports = []
        logs = os.path.join(home, "logs")
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            if name.endswith(".log") and os.path.isfile(os.path.join(logs, name)):
                with open(os.path.join(logs, name), errors="replace") as f:
                    reports += [f"{name}: {line.strip()}" for line in f
                                if "Sanitizer" in line or "runtime error:" in line]
        digest = hashlib.sha256(home.encode()).hexdigest()[:10]
        shutil.rmtree(f"/var/lib/petstore/pg-{digest}", ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
        assert not reports, "sanitizer reports:\n" + "\n".join(reports[:20])


def tls_context(exports):
    return ssl.create_default_context(cafile=exports["PETSTORE_CA_FILE"])


def call(exports, method, url, body=None, token=None, headers=None, timeout=35):
    """One HTTPS call trusting the system's CA only: (status, parsed JSON or None)."""
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=tls_context(exports)) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def daemon_port(exports, name):
    return int(exports["PETSTORE_" + name.upper().replace("-", "_") + "_PORT"])


def plain_http_answer(port):
    """What a plain-text HTTP request to 127.0.0.1:port gets back (b"" when the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        chunks = []
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
    return b"".join(chunks)


def refuses_plain_http(port):
    """Whether a plain-text HTTP request to port gets nothing served: the connection ends in a
    failed handshake, or (Go's servers, Prometheus) a 400 saying that HTTPS is required."""
    answer = plain_http_answer(port)
    if not answer.startswith(b"HTTP/"):
        return True
    return answer.split(b" ", 2)[1] == b"400" and b"HTTPS" in answer


def test_status_says_tls_and_monitoring_are_on_and_every_daemon_is_ready(system):
    env, _ = system
    out = run(env, "status").stdout
    assert "tls: on" in out, out
    assert "monitoring: on" in out, out
    for name in DAEMONS:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert line.rstrip().endswith(" ready"), line
    assert any(ln.startswith("prometheus ") and " running" in ln for ln in out.splitlines()), out


def test_the_urls_it_gives_are_tls_ones(system):
    _, exports = system
    assert exports["PETSTORE_API"].startswith("https://localhost:")
    assert exports["PAYMENT_API"].startswith("https://localhost:")
    assert exports["AMQP_URL"].startswith("amqps://")
    assert exports["RABBITMQ_MGMT_URL"].startswith("https://")
    assert exports["PROMETHEUS_URL"].startswith("https://")
    for db in ("STOREFRONT", "INVENTORY", "PAYMENT", "SAGA", "AUDIT"):
        assert "sslmode=verify-full" in exports[db + "_DATABASE_URL"]


def test_an_order_completes_over_https(system):
    _, exports = system
    api = exports["PETSTORE_API"] + "/v1"
    user = "tls-" + uuid.uuid4().hex[:12]
    status, _ = call(exports, "POST", api + "/users", {"username": user, "password": "a long passphrase"})
    assert status == 201
    status, session = call(exports, "POST", api + "/sessions",
                           {"username": user, "password": "a long passphrase"})
    assert status == 201
    token = session["token"]
    status, pets = call(exports, "GET", api + "/pets?status=available&limit=1")
    assert status == 200 and pets["items"], pets
    status, order = call(exports, "POST", api + "/orders",
                         {"card_number": "4111111111111111", "pet_ids": [pets["items"][0]["id"]]},
                         token=token, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert status == 202, order
    seen = {}

    def finished():
        st, body = call(exports, "GET", f"{api}/orders/{order['id']}?wait=5&until=terminal",
                        token=token)
        seen["last"] = (st, body)
        return st == 200 and body["status"] in ("COMPLETED", "CANCELLED", "NEEDS_OPERATOR")

    wait_until(finished, timeout=90, what="the order to finish over TLS")
    assert seen["last"][1]["status"] == "COMPLETED", seen["last"]


def test_every_http_port_refuses_plain_text(system):
    _, exports = system
    for name in DAEMONS:
        port = daemon_port(exports, name)
        assert refuses_plain_http(port), f"{name} answered plain HTTP: {plain_http_answer(port)[:80]!r}"
        # And over TLS it answers.
        status, _ = call(exports, "GET", f"https://localhost:{port}/livez")
        assert status == 200, name


def test_an_https_client_that_does_not_trust_the_ca_is_refused(system):
    _, exports = system
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(exports["PETSTORE_API"] + "/readyz", timeout=10,
                               context=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def amqp_params(url, exports, use_tls):
    """The connection parameters of url (amqps://), with or without TLS."""
    params = pika.URLParameters(url.replace("amqps://", "amqp://"))
    params.socket_timeout = 10
    params.blocked_connection_timeout = 10
    params.connection_attempts = 1
    if use_tls:
        params.ssl_options = pika.SSLOptions(tls_context(exports), server_hostname="localhost")
    return params


def test_rabbitmq_speaks_amqp_over_tls_only(system):
    env, exports = system
    url = exports["AMQP_URL"]
    assert url.startswith("amqps://")
    conn = pika.BlockingConnection(amqp_params(url, exports, use_tls=True))
    try:
        assert conn.is_open
    finally:
        conn.close()
    with pytest.raises(pika.exceptions.AMQPError):
        pika.BlockingConnection(amqp_params(url, exports, use_tls=False))
    # The raw protocol header in plain text gets no connection.start (a method frame, type 1).
    with socket.create_connection(("127.0.0.1", int(env["PETSTORE_AMQP_PORT"])), timeout=5) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        try:
            first = s.recv(1)
        except (ConnectionResetError, socket.timeout):
            first = b""
    assert first != b"\x01", "the AMQP port answered a plain-text client"


def test_the_management_api_speaks_https_only(system):
    _, exports = system
    base = exports["RABBITMQ_MGMT_URL"]
    port = int(urllib.parse.urlsplit(base).port)
    assert refuses_plain_http(port)
    auth = "Basic " + base64.b64encode(
        f"{exports['RABBITMQ_MGMT_USER']}:{exports['RABBITMQ_MGMT_PASSWORD']}".encode()).decode()
    seen = {}

    def listed():
        # The management API lists a connection once its first statistics are in (5 s).
        status, conns = call(exports, "GET", base + "/api/connections",
                             headers={"Authorization": auth})
        assert status == 200
        seen["conns"] = conns
        return len(conns) >= len(DAEMONS)

    wait_until(listed, timeout=30, interval=0.5, what="every daemon's connection to be listed")
    # Every daemon's broker connections (consumers, publishers, relays) are TLS ones.
    conns = seen["conns"]
    assert all(c["ssl"] for c in conns), [(c.get("name"), c["ssl"]) for c in conns]


def test_postgresql_requires_tls_and_verifies_the_server(system):
    _, exports = system
    dsn = exports["PETSTORE_PG_ADMIN_URL"]
    plain = dsn.replace("sslmode=verify-full", "sslmode=disable")
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(plain, connect_timeout=10)
    assert "no encryption" in str(e.value), str(e.value)
    # A client that checks the server against another authority refuses it.
    other = dsn.replace(exports["PETSTORE_CA_FILE"], "/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(other, connect_timeout=10)
    assert "certificate verify failed" in str(e.value), str(e.value)
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone()[0] is True
            # Every TCP client of the cluster (the daemons' connections) uses TLS.
            cur.execute("""SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                           WHERE a.client_addr IS NOT NULL""")
            encrypted, clear = cur.fetchone()
            assert clear == 0
            assert encrypted >= len(DAEMONS)
    finally:
        conn.close()


def dlq_tool(exports, *args, ca_file=None):
    """The dlq tool with the system's settings; ca_file replaces the CA it trusts."""
    env = {k: exports[k] for k in ("DLQ_AMQP_URL", "DLQ_DATABASE_URL", "RABBITMQ_MGMT_URL")}
    env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"),
               TLS_CA_FILE=ca_file or exports["TLS_CA_FILE"])
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return subprocess.run([os.path.join(os.environ["PETSTORE_BUILD_DIR"], "bin", "dlq"), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_dlq_tool_speaks_tls_and_refuses_a_broker_it_cannot_verify(system):
    _, exports = system
    assert exports["DLQ_AMQP_URL"].startswith("amqps://")
    ok = dlq_tool(exports, "list")
    assert ok.returncode == 0, ok.stderr
    assert "storefront.events.dlq" in ok.stdout
    # Trusting the system's authorities only, neither the management API (list) nor the AMQP
    # link (groups reads the queue over AMQP first) is accepted.
    for verb in (["list"], ["groups", "storefront.events.dlq"]):
        p = dlq_tool(exports, *verb, ca_file="/etc/ssl/certs/ca-certificates.crt")
        assert p.returncode != 0, (verb, p.stdout)
        assert "verif" in p.stderr, (verb, p.stderr)


def prom_query(exports, query):
    url = exports["PROMETHEUS_URL"] + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = call(exports, "GET", url)
    assert status == 200 and body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_every_daemon_and_rabbitmq_over_tls(system):
    _, exports = system
    assert refuses_plain_http(urllib.parse.urlsplit(exports["PROMETHEUS_URL"]).port)

    def all_up():
        ups = prom_query(exports, 'up{job=~"petstore|rabbitmq|rabbitmq-per-object"}')
        return len(ups) == len(DAEMONS) + 2 and all(r["value"][1] == "1" for r in ups)

    wait_until(all_up, timeout=60, what="every target to be scraped")
    # A metric of every daemon, by its daemon label, and each one ready by its own account.
    for name in DAEMONS:
        series = prom_query(exports, f'petstore_http_requests_total{{daemon="{name}"}}')
        assert series, f"no petstore_http_requests_total from {name}"
    ready = {r["metric"]["daemon"]: r["value"][1] for r in prom_query(exports, "petstore_ready")}
    assert ready == {name: "1" for name in DAEMONS}, ready
    # RabbitMQ's queue depths per queue, which the dead-letter and lag alerts read.
    depths = prom_query(exports, 'rabbitmq_queue_messages_ready{queue="saga.events"}')
    assert depths, "no per-queue depth from RabbitMQ"


def test_prometheus_has_loaded_the_slo_rules_and_evaluates_them(system):
    _, exports = system

    def rules():
        status, body = call(exports, "GET", exports["PROMETHEUS_URL"] + "/api/v1/rules")
        assert status == 200
        return [r for g in body["data"]["groups"] for r in g["rules"]]

    assert any(r["type"] == "recording" for r in rules()), "no recording rules loaded"
    assert any(r["type"] == "alerting" for r in rules()), "no alerting rules loaded"
    # Each group runs at its own interval: every rule has been evaluated once, without error.
    wait_until(lambda: all(r.get("health") != "unknown" for r in rules()), timeout=120,
               interval=1, what="every rule to be evaluated once")
    failed = [(r["name"], r.get("lastError")) for r in rules() if r.get("health") != "ok"]
    assert not failed, failed


def test_a_second_up_with_tls_off_is_refused_while_it_runs(system):
    env, _ = system
    p = run(dict(env, PETSTORE_TLS="0"), "up", timeout=60, check=False)
    assert p.returncode != 0
    assert "./petstore down" in p.stderr, p.stderr
