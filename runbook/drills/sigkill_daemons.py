"""sigkill-daemons: under load, every daemon of the launcher's PROCESS_TABLE in turn is killed
with SIGKILL (no drain, no goodbye: a crash, an OOM kill) and started again. What must hold: a
killed consumer's unacknowledged batch is redelivered and its inbox makes the repetition
harmless; a killed relay's claimed rows are published again (duplicates by message id, never a
loss); a killed orchestrator's timers are rows and fire after the restart; the storefront's
clients retry refused connections with their Idempotency-Key."""
from faults import pid_of, process_table

NAME = "sigkill-daemons"
SUMMARY = "each daemon killed with SIGKILL mid-load and started again, one after the other"
LOAD_S = 40
BOUND_S = 90
DOWN_S = 1.0  # how long each one stays dead


def inject(ctx):
    for name, _kind in process_table():
        pid = pid_of(name)
        ctx.launcher("kill", name)
        ctx.inject(f"SIGKILL {name} (pid {pid}): petstore kill {name}")
        ctx.sleep(DOWN_S)
        ctx.launcher("start", name)
        ctx.inject(f"started {name} again: ready")


def heal(ctx):
    ctx.wait_ready(60, start_stopped=True)
