"""The suites leave every dead-letter queue as they found it.

Design. A test that makes dead letters (a poison, a forged message, a handler that keeps
failing) waits for exactly those it causes, by message id, and removes exactly those:
daemons.wait_dead_letters (bounded; hands them back for the test's assertions), or
dlq.cleanup (`dlq purge --id`) in a finally once dlq.present has seen them. The session guard (tests/conftest.py, `dead_letter_queues_left_as_found`)
is the net under that rule: at the start of a pytest session it reads every queue of the
petstore vhost whose name ends in .dlq (with `dlq show`, which gives every message back), and at
the end reads them again; a dead letter that was not there at the start fails the session,
named by queue, type, message id, class, sender, time, error and body (whose order_id is
the correlation id); so does one that was there at the start and is gone (a test that took
more than its own, e.g. by consuming a whole .dlq). It never purges: removing what a
test forgot would hide the leak the next run depends on finding.

Dead letters arrive asynchronously (a consumer retries, then publishes to petstore.dlx with
confirms). Each test waits for its own; the guard only lets what is still in flight settle, for
a bounded few seconds: until every work queue of the vhost is empty (nothing left to handle,
retry or dead-letter), then reads the .dlq queues. Messages are compared as a multiset of
(message id, type), so a dead letter without a message id, or one dead-lettered twice, counts
too."""
import collections

import dlq
from amqp import mgmt
from wait import Timeout, wait_until

SETTLE_S = 10  # the bound on waiting for in-flight dead letters at the end of a session


def dlq_names():
    """Every queue of the petstore vhost whose name ends in .dlq."""
    return sorted(q["name"] for q in mgmt("queues/petstore?columns=name")
                  if q["name"].endswith(".dlq"))


def snapshot():
    """{queue: [entry of `dlq show`, ...]} of every .dlq (nothing is removed)."""
    return {q: dlq.show(q, limit=1_000_000) for q in dlq_names()}


def key(entry):
    return (entry.get("id") or "", entry.get("type") or "")


def work_queues_idle():
    """True when no queue of the vhost but the .dlq ones holds a message (ready or unacked)."""
    return all(q.get("messages", 0) == 0 for q in mgmt(
        "queues/petstore?columns=name,messages,exclusive")
        if not q["name"].endswith(".dlq") and not q.get("exclusive"))


def settle(timeout=SETTLE_S):
    """Waits (bounded) until nothing is in flight towards a .dlq; False when it did not."""
    try:
        wait_until(work_queues_idle, timeout=timeout, interval=0.2,
                   what="every work queue of the vhost empty")
        return True
    except Timeout:
        return False


def difference(a, b):
    """[(queue, entry)] of the dead letters in snapshot a that are not in snapshot b."""
    out = []
    for queue, entries in a.items():
        there = collections.Counter(key(e) for e in b.get(queue, []))
        for e in entries:
            if there[key(e)] > 0:
                there[key(e)] -= 1
            else:
                out.append((queue, e))
    return out


def changes(before, after):
    """(left behind: in after but not before, taken away: in before but not after)."""
    return difference(after, before), difference(before, after)


def line(queue, e):
    return (f"  {queue}: type={e.get('type') or '(none)'} id={e.get('id') or '(none)'} "
            f"class={e.get('class')} sender={e.get('sender')} dead_at={e.get('dead_at')} "
            f"error={(e.get('error') or '')[:160]!r} body={(e.get('body') or '')[:120]!r}")


def describe(left, taken):
    lines = []
    if left:
        lines.append(f"{len(left)} dead letter(s) left behind by the session (not there at its "
                     "start; the test that caused each must wait for it and remove it by "
                     "message id):")
        lines += [line(q, e) for q, e in left]
    if taken:
        lines.append(f"{len(taken)} dead letter(s) that were there at the start of the session "
                     "were taken away (a test removed more than its own):")
        lines += [line(q, e) for q, e in taken]
    return "\n".join(lines)

