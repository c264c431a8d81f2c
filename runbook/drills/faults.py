"""What the drills share: the drill's context (a timed journal of what was injected, the launcher,
the daemons' pids and health, queue depths, the database and broker as an operator reaches
them) and Skip. Every drill module (one per drill, beside this file) uses it; drill.py runs them.

Decisions:
- Faults are injected the way an operator's bad day produces them, through the launcher
  ($PETSTORE_LAUNCHER kill/stop/start/restart/rabbitmqctl) or the kernel (signals, nftables),
  never by reaching into a daemon; the only in-process help is the PETSTORE_FAULT_* hooks, which
  the launcher passes to a daemon it starts.
- Every action is journaled with the time since the drill began and the wall clock, so the
  printed report says what was injected when, and the daemons' logs can be matched to it.
- Health is what an operator checks first: every daemon's /readyz answers 200 and every .dlq is
  empty (exact depths from a passive queue declare: the management API's counts lag by seconds).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pika  # noqa: E402

from petstore_env import need  # noqa: E402


class Skip(Exception):
    """The drill cannot run here (kernel, permissions); the message says why."""


def launcher_path():
    return os.environ.get("PETSTORE_LAUNCHER") or os.path.join(ROOT, "petstore")


def process_table():
    """The daemons of the launcher's PROCESS_TABLE, in start order: [(name, kind)]."""
    text = open(launcher_path()).read()
    m = re.search(r"^PROCESS_TABLE='\n(.*?)^'", text, re.S | re.M)
    if not m:
        raise RuntimeError(f"no PROCESS_TABLE in {launcher_path()}")
    return [tuple(line.split()[:2]) for line in m.group(1).splitlines() if line.strip()]


def port_of(name):
    return int(need("PETSTORE_" + name.upper().replace("-", "_") + "_PORT"))


def ready(name, timeout=2.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port_of(name)}/readyz",
                                    timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def pid_of(name):
    """The pid of a running daemon from $PETSTORE_HOME/run/NAME.pid, or None."""
    try:
        pid = int(open(os.path.join(need("PETSTORE_HOME"), "run", name + ".pid")).read())
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # killed, not reaped yet
                return None
        return pid
    except (OSError, ValueError, IndexError):
        return None


def mgmt(path):
    url = need("RABBITMQ_MGMT_URL") + path
    req = urllib.request.Request(url)
    import base64
    auth = base64.b64encode(f"{need('RABBITMQ_MGMT_USER')}:{need('RABBITMQ_MGMT_PASSWORD')}"
                            .encode()).decode()
    req.add_header("Authorization", "Basic " + auth)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def queue_depths(suffix=""):
    """{queue: ready + unacked} for the vhost's queues ending with suffix: names from the
    management API, ready counts exact from a passive declare, unacknowledged from the API."""
    queues = {q["name"]: q.get("messages_unacknowledged", 0)
              for q in mgmt("/api/queues/petstore") if q["name"].endswith(suffix)}
    out = {}
    conn = pika.BlockingConnection(pika.URLParameters(need("AMQP_URL")))
    try:
        ch = conn.channel()
        for q, unacked in queues.items():
            ok = ch.queue_declare(q, passive=True)
            out[q] = ok.method.message_count + (unacked or 0)
    finally:
        conn.close()
    return out


class Ctx:
    """One drill's run: the journal, the launcher, and what the drill hands the checker."""

    def __init__(self, name, out=print):
        self.name = name
        self.out = out
        self.t0 = time.monotonic()
        self.journal = []
        self.poison_ids = []  # dead letters the drill left on purpose (the checker allows them)
        self.injected_ids = []  # messages the drill published itself
        self.problems = []  # the drill's own findings, besides the checker's
        self.state = {}  # what a drill's heal and check need from its inject
        self.windows = {}  # name -> (monotonic start, monotonic end) of a fault

    # journal

    def say(self, text):
        self.out(f"  [{time.monotonic() - self.t0:6.1f} s {datetime.now():%H:%M:%S}] {text}")

    def inject(self, text):
        """Journals an injected fault or a heal."""
        self.journal.append((time.monotonic() - self.t0, text))
        self.say(text)

    def problem(self, text):
        self.problems.append(text)
        self.say("PROBLEM: " + text)

    def window(self, name, start=None, end=None):
        s, e = self.windows.get(name, (None, None))
        self.windows[name] = (start if start is not None else s, end if end is not None else e)

    def sleep(self, seconds):
        time.sleep(seconds)

    # the launcher

    def launcher(self, *args, env=None, timeout=180, check=True):
        """Runs `$PETSTORE_LAUNCHER ARGS`; returns its stdout. env: variables to add (e.g. a
        PETSTORE_FAULT_* hook for the daemon it starts)."""
        full = dict(os.environ)
        full.update(env or {})
        p = subprocess.run([launcher_path(), *args], env=full, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"petstore {' '.join(args)}: exit {p.returncode}: "
                               f"{(p.stderr or p.stdout)[-800:]}")
        return p.stdout

    def rabbitmqctl(self, *args, check=True):
        return self.launcher("rabbitmqctl", *args, check=check).strip()

    # health

    def daemons(self):
        return [n for n, _ in process_table()]

    def unready(self):
        return [n for n in self.daemons() if not ready(n)]

    def wait_ready(self, timeout=90, start_stopped=False):
        """Waits until every daemon answers /readyz 200; with start_stopped, starts any daemon
        that is not running first. Returns the ones still not ready (empty when healthy)."""
        if start_stopped:
            for n in self.daemons():
                if pid_of(n) is None:
                    self.inject(f"{n} was not running: starting it")
                    self.launcher("start", n, check=False)
        deadline = time.monotonic() + timeout
        while True:
            bad = self.unready()
            if not bad or time.monotonic() > deadline:
                return bad
            time.sleep(0.3)

    def dead_letters(self):
        return {q: n for q, n in queue_depths(".dlq").items() if n}

    def healthy(self, timeout=90):
        """None when every daemon is ready and every .dlq empty; otherwise why not."""
        bad = self.wait_ready(timeout, start_stopped=True)
        if bad:
            return "not ready: " + ", ".join(bad)
        # The unacknowledged counts come from the management API, whose statistics lag by a
        # few seconds (a dlq run that just ended may still show as holding messages): a real
        # leftover is one still there after that.
        deadline = time.monotonic() + 15
        while True:
            dl = self.dead_letters()
            if not dl:
                return None
            if time.monotonic() > deadline:
                return "dead letters present: " + ", ".join(f"{q} {n}" for q, n in dl.items())
            time.sleep(0.5)

    # processes

    def signal(self, name, sig):
        pid = pid_of(name)
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    def cont(self, name):
        """SIGCONT, harmless when the process runs or is gone."""
        pid = pid_of(name)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        return pid

    def metric(self, name, metric, labels=None):
        """The sum of a Prometheus metric's samples on a daemon's /metrics whose labels contain
        every key=value of labels."""
        with urllib.request.urlopen(f"http://127.0.0.1:{port_of(name)}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(metric) or line.startswith("#"):
                continue
            m = re.match(r"^(\w+)(\{[^}]*\})?\s+(\S+)", line)
            if not m or m.group(1) != metric:
                continue
            lab = m.group(2) or ""
            if all(f'{k}="{v}"' in lab for k, v in (labels or {}).items()):
                total += float(m.group(3))
        return total
