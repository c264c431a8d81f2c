"""Shared pytest setup: the helpers in tests/lib are importable from every suite, and every
session leaves the dead-letter queues as it found them (tests/lib/dlq_guard.py says how)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))


@pytest.fixture(scope="session", autouse=True)
def dead_letter_queues_left_as_found():
    """Fails the session (at the teardown of its last test) when any .dlq queue holds a dead
    letter that was not there when the session started, or lacks one that was. Active when the
    session runs against a system (`./petstore env` exported: RABBITMQ_MGMT_URL, DLQ_AMQP_URL).
    Never purges: the leak must stay visible for the test that caused it to be fixed."""
    if not (os.environ.get("RABBITMQ_MGMT_URL") and os.environ.get("DLQ_AMQP_URL")):
        yield
        return
    import dlq_guard
    before = dlq_guard.snapshot()
    yield
    settled = dlq_guard.settle()
    left, taken = dlq_guard.changes(before, dlq_guard.snapshot())
    if left or taken:
        pytest.fail(dlq_guard.describe(left, taken) + ("" if settled else
                    "\n  (some work queue still held messages after "
                    f"{dlq_guard.SETTLE_S}s: more may be on their way)"), pytrace=False)
