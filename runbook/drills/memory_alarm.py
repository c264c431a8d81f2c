"""memory-alarm: the broker's memory alarm is raised with set_vm_memory_high_watermark 0, so it
blocks every publishing connection. The relays hold their rows (a publish that gets no confirm
fails and the rows stay unsent; nothing is lost, no relay dies), the door keeps answering 202
(an order is only a database transaction), and when the previous watermark is restored all
drains. The drill checks that the storefront's outbox did hold rows during the alarm (the
publishers really were blocked) and that no relay exited."""
import re
import time

import db
from faults import pid_of, process_table

NAME = "memory-alarm"
SUMMARY = "broker memory alarm (watermark 0): publishers blocked, relays hold, door accepts"
LOAD_S = 20
BOUND_S = 120
HOLD_S = 15


def relays():
    return [n for n, kind in process_table() if kind == "relay"]


def inject(ctx):
    before = ctx.rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    ctx.state["watermark"] = before
    ctx.state["relay_pids"] = {n: pid_of(n) for n in relays()}
    ctx.rabbitmqctl("set_vm_memory_high_watermark", "0")
    t0 = time.monotonic()
    ctx.state["raised"] = True
    ctx.inject(f"set_vm_memory_high_watermark 0 (was {before}) for {HOLD_S} s")
    unsent = 0
    conn = db.connect("storefront")
    try:
        while time.monotonic() - t0 < HOLD_S:
            unsent = max(unsent, db.value(conn, "SELECT count(*) FROM outbox "
                                                "WHERE sent_at IS NULL"))
            time.sleep(1)
    finally:
        conn.close()
    ctx.state["unsent_max"] = unsent
    ctx.window("alarm", t0, time.monotonic())
    restore(ctx)


def restore(ctx):
    before = ctx.state.get("watermark", "0.4")
    m = re.match(r"\{absolute,\s*(\d+)\}", before)
    args = ["absolute", m.group(1)] if m else [before]
    ctx.rabbitmqctl("set_vm_memory_high_watermark", *args)
    ctx.state["raised"] = False
    ctx.inject(f"set_vm_memory_high_watermark {' '.join(args)} (restored)")


def heal(ctx):
    if ctx.state.get("raised"):
        restore(ctx)


def check(ctx, load):
    t0, t1 = ctx.windows.get("alarm", (None, None))
    if t0 is None:
        return
    seen = load.answers_by_status(t0, t1)
    ctx.say(f"answers during the alarm: {dict(seen)}; storefront outbox held up to "
            f"{ctx.state.get('unsent_max')} unsent rows")
    if seen.get("202", 0) == 0 or set(seen) - {"202"}:
        ctx.problem(f"the door did not keep answering 202 during the alarm: {dict(seen)}")
    if not ctx.state.get("unsent_max"):
        ctx.problem("the storefront's outbox never held a row: were publishers blocked?")
    for name, pid in ctx.state.get("relay_pids", {}).items():
        if pid_of(name) != pid:
            ctx.problem(f"{name} (pid {pid}) did not survive the alarm (now {pid_of(name)})")
