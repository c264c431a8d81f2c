"""A private order-saga process for tests: the built daemon on the system's saga database and
saga.events queue (a competing consumer of the launcher's order-saga, with its own timer
worker), its own HTTP port, and SAGA_* settings of the test's choosing. With replace=True the
launcher's order-saga is stopped for the duration, so the private one alone drives every saga
(with settings a test can wait for: short timeouts, few tries)."""
import contextlib
import os
import re
import signal
import socket
import subprocess

import httpc
from petstore_env import binary, launcher, need
from wait import wait_until


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url):
    """A Prometheus text exposition as {'name{labels}': value}."""
    r = httpc.get(url, timeout=5)
    assert r.status == 200, r
    text = r.raw.decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


class SagaProcess:
    def __init__(self, log_path, settings):
        self.port = free_port()
        self.log_path = log_path
        env = dict(os.environ, DATABASE_URL=need("SAGA_DATABASE_URL"),
                   AMQP_URL=need("SAGA_AMQP_URL"), HTTP_PORT=str(self.port),
                   AMQP_MGMT_URL=need("RABBITMQ_MGMT_URL"),
                   HTTP_ADDR="127.0.0.1", LOG_LEVEL="info")
        env.update({k: str(v) for k, v in settings.items()})
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([binary("saga/order-saga")], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def tail(self, n=3000):
        with open(self.log_path) as f:
            return f.read()[-n:]

    def wait_ready(self):
        def ready_or_exited():
            if self.proc.poll() is not None:
                return True
            try:
                return httpc.get(self.url("/readyz"), timeout=2).status == 200
            except OSError:
                return False  # not listening yet
        wait_until(ready_or_exited, timeout=30, what="the private order-saga to be ready")
        assert self.proc.poll() is None, self.tail()

    def metrics(self):
        return scrape(self.url("/metrics"))

    def stop(self):
        """SIGTERM (a graceful drain); the exit status must be 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                status = self.proc.wait()
        else:
            status = self.proc.returncode
        self.log.close()
        assert status == 0, self.tail()


def launcher_saga_metrics():
    """The metrics of the launcher's order-saga."""
    return scrape(f"http://127.0.0.1:{need('PETSTORE_ORDER_SAGA_PORT')}/metrics")


def _launcher(*args):
    subprocess.run([launcher(), *args], check=True, capture_output=True, timeout=180)


@contextlib.contextmanager
def private_saga(log_path, replace=False, **settings):
    """Runs a SagaProcess for the block; settings are environment variables (SAGA_*=...).
    replace=True stops the launcher's order-saga first and starts it again afterwards (only
    when the tests run against a launcher's system, PETSTORE_HOME)."""
    replaced = False
    proc = None
    try:
        if replace and os.environ.get("PETSTORE_HOME"):
            _launcher("stop", "order-saga")
            replaced = True
        proc = SagaProcess(log_path, settings)
        proc.wait_ready()
        yield proc
    finally:
        try:
            if proc is not None:
                proc.stop()
        finally:
            if replaced:
                _launcher("start", "order-saga")
