"""Another storefront process on its own port, sharing the database and the broker of the system
under test (or reaching them through what the caller puts in `env`)."""
import os
import socket
import subprocess

import httpc
from petstore_env import binary, need
from wait import wait_until


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Storefront:
    def __init__(self, **overrides):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "PATH"))}
        env.update(DATABASE_URL=need("STOREFRONT_DATABASE_URL"),
                   AMQP_URL=need("STOREFRONT_AMQP_URL"), HTTP_PORT=str(self.port),
                   AMQP_MGMT_URL=need("RABBITMQ_MGMT_URL"),
                   PAYMENT_PUBLIC_KEY=need("PAYMENT_PUBLIC_KEY"), ADMIN_TOKEN=need("ADMIN_TOKEN"),
                   LOG_LEVEL="info")
        env.update(overrides)
        self.log_path = f"/tmp/storefront-second-{self.port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary("services/storefront/storefront")], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: self.proc.poll() is not None or self.ready(),
                   what="the second storefront")
        assert self.proc.poll() is None, open(self.log_path).read()[-2000:]

    def ready(self):
        try:
            return httpc.get(self.url + "/readyz", timeout=2, retries_503=0).status == 200
        except OSError:
            return False

    def log_lines(self, message):
        """Lines of its JSON log whose message is `message`."""
        with open(self.log_path) as f:
            return [line for line in f if f'"message":"{message}"' in line]

    def stop(self, drain_s=20):
        """SIGTERM; asserts a clean drain within drain_s. A process that does not drain in time
        is killed before the assertion fails: left running, its consumers would keep the
        messages they prefetched from the queues it shares with the system under test, and
        the tests after this one would wait in vain for what those messages carry."""
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=drain_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        finally:
            self.log.close()
        with open(self.log_path) as f:
            tail = f.read()[-2000:]
        assert code is not None, f"no clean drain within {drain_s} s of SIGTERM (killed):\n{tail}"
        assert code == 0, f"a clean drain on SIGTERM, not exit {code}:\n{tail}"
