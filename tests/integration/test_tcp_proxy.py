"""The test harness's TcpProxy (tests/lib/tcp_proxy.py): a connection the server ends is ended
for the client too, and close() ends every connection it carries. A proxy that keeps a client
waiting for an answer that can never come hangs the daemon under test, and then the test, for
ever: test_server_restarts.py's drain once waited 77 s on two consumer connections whose server
had gone away (PostgreSQL sent FATAL and closed; the proxy passed the FATAL on, but not the end
of the connection)."""
import socket
import threading

import psycopg2
import pytest

from petstore_env import need
from tcp_proxy import TcpProxy
from wait import wait_until

BOUND = 10  # seconds: far more than any of these steps takes, far less than for ever


@pytest.fixture
def server():
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener
    listener.close()


@pytest.fixture
def proxied(server):
    proxy = TcpProxy("127.0.0.1", server.getsockname()[1])
    yield proxy
    proxy.close()


def accept(server, proxy):
    """A client connected through the proxy and the server's end of it."""
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=BOUND)
    server.settimeout(BOUND)
    upstream, _ = server.accept()
    upstream.settimeout(BOUND)
    return client, upstream


def read_to_end(sock):
    """Everything the socket receives until the end of the connection; socket.timeout if that
    end does not come within the socket's timeout."""
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_a_connection_the_server_ends_is_ended_for_the_client(server, proxied):
    client, upstream = accept(server, proxied)
    client.sendall(b"question")
    assert upstream.recv(100) == b"question"
    upstream.sendall(b"last words")
    upstream.close()
    # The client, blocked reading, hears the last words and then the end of the connection.
    assert read_to_end(client) == b"last words"
    client.close()


def test_close_ends_every_connection_it_carries_even_forgotten_ones(server, proxied):
    busy, busy_upstream = accept(server, proxied)
    idle, _idle_upstream = accept(server, proxied)
    busy.sendall(b"ping")
    assert busy_upstream.recv(100) == b"ping"
    wait_until(lambda: proxied.accepted == 2, what="both connections forwarded")
    assert proxied.forget() == 2  # the idle one now hears nothing until it sends
    proxied.close()
    assert read_to_end(busy) == b""
    assert read_to_end(idle) == b""


def conninfo_through(url, port):
    kept = [kv for kv in url.split() if not kv.startswith(("host=", "port="))]
    return " ".join(kept + ["host=127.0.0.1", f"port={port}"])


def test_a_session_postgresql_ends_while_its_client_waits_fails_at_once():
    """What a PostgreSQL restart does to a session busy with a command (a fast shutdown, like
    pg_terminate_backend, sends FATAL and closes): through the proxy, the waiting client gets
    that FATAL and the end of the connection at once, instead of waiting for ever for the rest
    of the answer (libpq, having read a FATAL, waits for the connection's end)."""
    url = need("PETSTORE_PG_ADMIN_URL")
    proxy = TcpProxy("127.0.0.1", int(need("PGPORT")))
    admin = psycopg2.connect(url)
    admin.autocommit = True
    conn = psycopg2.connect(conninfo_through(url, proxy.port) + " application_name=tcp_proxy_test")
    outcome = {}

    def wait_long():
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(%s)", (BOUND * 6,))
            outcome["error"] = None
        except psycopg2.Error:  # PQerrorMessage: the FATAL, then the end of the connection
            outcome["error"] = conn.info.error_message

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
        waiting = threading.Thread(target=wait_long, daemon=True)
        waiting.start()
        with admin.cursor() as cur:
            def sleeping():
                cur.execute("SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                            (pid,))
                return "pg_sleep" in str(cur.fetchall())
            wait_until(sleeping, what="the proxied session inside pg_sleep")
            cur.execute("SELECT pg_terminate_backend(%s, %s)", (pid, BOUND * 1000))
            assert cur.fetchone()[0]
        waiting.join(BOUND)
        assert not waiting.is_alive(), \
            f"the client still waiting {BOUND} s after PostgreSQL ended its session"
        assert "FATAL:  terminating connection due to administrator command\nserver closed the " \
            "connection unexpectedly" in outcome["error"]
    finally:
        admin.close()
        proxy.close()
