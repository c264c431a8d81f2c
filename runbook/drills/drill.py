#!/usr/bin/python3
"""The runbook's fault drills: `./petstore drill list | NAME... | all`.

Each drill is a scenario in a module of its own beside this file (DRILLS below, in the order
`all` runs them), run against the running system (`./petstore env` exported, PETSTORE_LAUNCHER
the launcher) in five phases:
  setup   the system is healthy (every /readyz 200, every .dlq empty; a daemon found stopped is
          started first); the drill's preflight (it may say why it cannot run here: SKIPPED);
          a load (tests/lib/load.py) prepares customers, cards and pets; the checker's begin();
  load    orders arrive at RATE per second, open loop, from WARMUP_S before the fault until
          TAIL_S after the heal;
  fault   the drill's inject(): what it does is printed with times;
  heal    the drill's heal(), always (try/finally), even when inject failed: processes started
          again, SIGCONT, alarms lifted, rules deleted; then every daemon must be ready again;
  verify  the load's figures, the checker's ledger (tests/lib/checker.py: every order terminal,
          money, pets, outboxes, messages lost/duplicated, dead letters), the drill's own checks
          (e.g. 503 with Retry-After while PostgreSQL was down), and its after() (e.g. purging
          the poison it left on purpose).
A drill PASSes when the checker and its own checks find no problem. The runner prints a summary
table (drill, result, duration) and exits 1 when any drill FAILed (SKIPPED is not a failure; it
is reported as such, never as PASS).

Module interface (see any drill): NAME, SUMMARY, optional RATE, LOAD_S (how long the load is
expected to run, to size its pets), BOUND_S (the checker's bound), and functions inject(ctx),
heal(ctx), optional preflight(ctx), check(ctx, load), after(ctx).
"""
import argparse
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from faults import ROOT, Ctx, Skip  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

DRILLS = ["sigkill_daemons", "rabbitmq_restart", "rabbitmq_down", "postgres_restart",
          "postgres_down", "payment_frozen", "memory_alarm", "duplicate_storm",
          "poison_and_handler_bug", "open_transaction", "broker_cut_off",
          "database_cut_off"]
WARMUP_S = 3.0
TAIL_S = 3.0


def modules():
    return [importlib.import_module(m) for m in DRILLS]


def out(text=""):
    print(text, flush=True)


def run_one(mod):
    """Runs one drill; returns (result, seconds, reason)."""
    from checker import Checker
    from load import Load

    started = time.monotonic()
    ctx = Ctx(mod.NAME, out)
    out(f"=== drill {mod.NAME}: {mod.SUMMARY}")
    load = None
    healed = False
    try:
        why = ctx.healthy()
        if why:
            raise RuntimeError(f"the system is not healthy before the drill: {why}")
        if hasattr(mod, "preflight"):
            mod.preflight(ctx)
        load = Load(rate=getattr(mod, "RATE", 10), duration_s=mod.LOAD_S + WARMUP_S + TAIL_S,
                    log=lambda t: ctx.say(t))
        load.prepare()
        ctx.load = load
        first = Checker()
        snapshot = first.begin()
        first.close()
        ctx.say(f"load starts: {load.rate:g} orders/s")
        load.start()
        time.sleep(WARMUP_S)
        try:
            mod.inject(ctx)
        finally:
            healed = True
            mod.heal(ctx)
        bad = ctx.wait_ready(90, start_stopped=True)
        if bad:
            ctx.problem("not ready after the heal: " + ", ".join(bad))
        time.sleep(TAIL_S)
        load.stop()
        ctx.say("load stopped")
        out(load.text())
        if load.several_orders:
            ctx.problem(f"{len(load.several_orders)} Idempotency-Keys answered with more than "
                        "one order")
        if load.given_up:
            ctx.problem(f"{len(load.given_up)} orders never accepted (the client gave up): "
                        f"{load.given_up[:3]}")
        if load.refused:
            ctx.problem(f"{len(load.refused)} orders refused: {load.refused[:3]}")
        # A checker of its own for the verify: connections opened at begin() may not have
        # survived the fault (PostgreSQL restarted).
        ledger = Checker().verify(load.order_ids + ctx.state.get("orders", []),
                                  bound_s=getattr(mod, "BOUND_S", 90),
                                  poison_ids=ctx.poison_ids, injected_ids=ctx.injected_ids,
                                  snapshot=snapshot)
        out("checker:")
        out("\n".join("  " + line for line in ledger.text().splitlines()))
        f = ledger.figures
        if hasattr(mod, "check"):
            mod.check(ctx, load)
        if hasattr(mod, "after"):
            mod.after(ctx)
        result = "PASS" if ledger.ok and not ctx.problems else "FAIL"
        reason = "" if result == "PASS" else \
            "; ".join((ledger.problems + ctx.problems)[:3])[:300]
        if result == "PASS":
            reason = (f"{f.get('orders')} orders: {f.get('completed')} completed, "
                      f"{f.get('cancelled')} cancelled")
    except Skip as e:
        ctx.say(f"SKIPPED: {e}")
        result, reason = "SKIPPED", str(e)
    except Exception as e:
        out(traceback.format_exc())
        result, reason = "FAIL", f"{type(e).__name__}: {e}"[:300]
    finally:
        if load is not None and load.stopped_at is None:
            try:
                load.stop(timeout=30)
            except Exception:
                pass
        if not healed:
            try:
                mod.heal(ctx)
            except Exception as e:
                out(f"heal failed: {e!r}")
    if ctx.journal:
        out("injected:")
        for t, what in ctx.journal:
            out(f"  {t:6.1f} s  {what}")
    seconds = time.monotonic() - started
    out(f"=== {mod.NAME}: {result} in {seconds:.0f} s{(': ' + reason) if reason else ''}")
    out()
    return result, seconds, reason


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="petstore drill",
        description="The runbook's fault drills under load, each with the checker's ledger.",
        epilog="Drills: " + ", ".join(m.replace("_", "-") for m in DRILLS) + ". "
               "Each prints what it injected (with times), the load's figures, the checker's "
               "ledger and PASS, FAIL or SKIPPED; the exit status is 1 when any drill failed.")
    p.add_argument("what", nargs="+", metavar="list|NAME|all")
    args = p.parse_args(argv)
    mods = modules()
    by_name = {m.NAME: m for m in mods}
    if args.what == ["list"]:
        for m in mods:
            out(f"{m.NAME:24} {m.SUMMARY}")
        return 0
    if args.what == ["all"]:
        chosen = mods
    else:
        unknown = [w for w in args.what if w not in by_name]
        if unknown:
            p.error(f"unknown drill {', '.join(unknown)} (./petstore drill list)")
        chosen = [by_name[w] for w in args.what]
    results = []
    t0 = time.monotonic()
    for m in chosen:
        results.append((m.NAME, *run_one(m)))
    out("drill                    result   seconds  ")
    for name, result, seconds, reason in results:
        out(f"{name:24} {result:8} {seconds:7.0f}  {reason[:110]}")
    failed = sum(1 for r in results if r[1] == "FAIL")
    out(f"{len(results)} drills in {time.monotonic() - t0:.0f} s: "
        f"{sum(1 for r in results if r[1] == 'PASS')} passed, {failed} failed, "
        f"{sum(1 for r in results if r[1] == 'SKIPPED')} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
