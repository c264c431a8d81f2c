"""rabbitmq-down: RabbitMQ is down 30 s while orders keep arriving. The door must keep
answering 202 throughout (placing an order touches only the storefront's database; the order.placed
message waits in its outbox), and after the broker is back everything drains: every order
accepted in the outage reaches a terminal state."""
import time

NAME = "rabbitmq-down"
SUMMARY = "RabbitMQ down 30 s while orders keep arriving: the door answers 202, all drains after"
LOAD_S = 65
BOUND_S = 120
DOWN_S = 30


def inject(ctx):
    ctx.launcher("stop", "rabbitmq")
    t0 = time.monotonic()
    ctx.inject(f"stopped rabbitmq for {DOWN_S} s")
    ctx.state["down"] = True
    time.sleep(DOWN_S)
    ctx.window("down", t0, time.monotonic())
    ctx.launcher("start", "rabbitmq")
    ctx.state["down"] = False
    ctx.inject("started rabbitmq again")


def heal(ctx):
    if ctx.state.get("down", False):
        ctx.launcher("start", "rabbitmq", check=False)
        ctx.inject("started rabbitmq again (heal)")


def check(ctx, load):
    t0, t1 = ctx.windows.get("down", (None, None))
    if t0 is None:
        return
    seen = load.answers_by_status(t0 + 1, t1)
    ctx.say(f"answers while rabbitmq was down: {dict(seen)}")
    if seen.get("202", 0) == 0:
        ctx.problem("the door accepted no order while RabbitMQ was down")
    other = {k: v for k, v in seen.items() if k != "202"}
    if other:
        ctx.problem(f"the door answered other than 202 while RabbitMQ was down: {other}")
