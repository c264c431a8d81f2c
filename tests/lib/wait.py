"""Bounded waiting on conditions: never a bare sleep."""
import time


class Timeout(AssertionError):
    pass


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Polls predicate until it returns a truthy value, which is returned. Raises Timeout with
    `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
