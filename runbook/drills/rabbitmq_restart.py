"""rabbitmq-restart: the broker is restarted (stopped cleanly, started again) under load. Every
daemon's worker supervisor reconnects with backoff; relays hold their rows meanwhile; consumers'
unacknowledged deliveries are redelivered (quorum queues keep them); the door keeps answering
202 (an order is a database transaction; the relay publishes it later)."""
NAME = "rabbitmq-restart"
SUMMARY = "RabbitMQ restarted under load; every daemon reconnects, everything drains"
LOAD_S = 25
BOUND_S = 90


def inject(ctx):
    ctx.inject("restarting rabbitmq")
    ctx.launcher("restart", "rabbitmq")
    ctx.inject("rabbitmq is up again")


def heal(ctx):
    ctx.launcher("start", "rabbitmq", check=False)
