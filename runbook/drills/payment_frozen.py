"""payment-frozen: the payment service is frozen with SIGSTOP (a stuck process: its connections
stay open, nothing answers) for longer than the saga's pay timeout, then thawed with SIGCONT.
Orders waiting for payment time out and are compensated (refund-or-void, release); when payment
thaws it handles the charges it held: a charge for a voided order is refused, a late charge is
refunded. The checker proves no order ends charged and cancelled, none charged twice."""
import os
import signal
import time

NAME = "payment-frozen"
SUMMARY = "payment frozen with SIGSTOP past the pay timeout, then SIGCONT"
LOAD_S = 12
BOUND_S = 90
PAST_S = 4.0  # how far past the pay timeout the freeze lasts


def pay_timeout_s():
    # saga/main.c: SAGA_PAY_TIMEOUT_MS, default 5000.
    return int(os.environ.get("SAGA_PAY_TIMEOUT_MS") or 5000) / 1000.0


def inject(ctx):
    hold = pay_timeout_s() + PAST_S
    pid = ctx.signal("payment", signal.SIGSTOP)
    ctx.state["frozen"] = True
    ctx.inject(f"SIGSTOP payment (pid {pid}) for {hold:.1f} s (pay timeout {pay_timeout_s():g} s)")
    time.sleep(hold)
    ctx.cont("payment")
    ctx.state["frozen"] = False
    ctx.inject(f"SIGCONT payment (pid {pid})")


def heal(ctx):
    pid = ctx.cont("payment")
    if ctx.state.get("frozen"):
        ctx.inject(f"SIGCONT payment (pid {pid}) (heal)")
        ctx.state["frozen"] = False
