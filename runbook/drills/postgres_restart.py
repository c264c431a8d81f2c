"""postgres-restart: PostgreSQL restarted (fast shutdown, start) under load. Every daemon loses
its connections; transient faults hold work without using delivery attempts; the door answers
503 with Retry-After meanwhile and the clients retry with the same Idempotency-Key."""
NAME = "postgres-restart"
SUMMARY = "PostgreSQL restarted under load; daemons reconnect, clients retry, all drains"
LOAD_S = 20
BOUND_S = 90


def inject(ctx):
    ctx.inject("restarting postgres")
    ctx.launcher("restart", "postgres")
    ctx.inject("postgres is up again")


def heal(ctx):
    ctx.launcher("start", "postgres", check=False)
