"""open-transaction: transactions left open in PostgreSQL for 20 s under load, the way an
operator's forgotten psql session or a stuck batch job leaves them:
  - in the saga database, idle in transaction at REPEATABLE READ after a read: it holds a
    snapshot (and with it the xmin horizon of the whole server: vacuum keeps dead rows, and a
    relay that fenced on the server's xmin would stall; ours does not, outbox/relay.c);
  - in the payment database, idle in transaction holding FOR UPDATE on one funded card of the
    load's customers: payment's charges and refunds of that card wait on the row lock, and the
    payment consumer's batch with them, so orders time out in PAYING and are compensated.
Everything must keep flowing where it can, and drain after the sessions end (rolled back): no
order stuck, no money lost."""
import time

import db

NAME = "open-transaction"
SUMMARY = "transactions idle 20 s in PostgreSQL: a snapshot in saga, a card's row lock in payment"
LOAD_S = 25
BOUND_S = 120
HOLD_S = 20


def inject(ctx):
    card = ctx.load.card_ids[0]
    snap = db.connect("saga")
    snap.autocommit = False
    ctx.state["conns"] = [snap]
    with snap.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute("SELECT count(*) FROM sagas")
        sagas = cur.fetchone()[0]
        cur.execute("SELECT backend_xmin FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        xmin = cur.fetchone()[0]
    ctx.inject(f"saga: a REPEATABLE READ transaction left idle after reading {sagas} sagas "
               f"(snapshot xmin {xmin})")
    lock = db.connect("payment")
    lock.autocommit = False
    ctx.state["conns"].append(lock)
    with lock.cursor() as cur:
        cur.execute("SELECT balance_cents FROM cards WHERE id = %s FOR UPDATE", (card,))
    ctx.inject(f"payment: a transaction left idle holding FOR UPDATE on card {card}")
    t0 = time.monotonic()
    waiting = 0
    watch = db.admin()
    try:
        while time.monotonic() - t0 < HOLD_S:
            waiting = max(waiting, db.value(
                watch, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'payment' "
                       "AND wait_event_type = 'Lock'"))
            time.sleep(1)
    finally:
        watch.close()
    ctx.state["lock_waiters_max"] = waiting
    end(ctx)


def end(ctx):
    for c in ctx.state.pop("conns", []):
        dbname = c.info.dbname
        try:
            c.rollback()
            c.close()
        except Exception:
            pass
        ctx.inject(f"rolled back and closed the idle transaction in {dbname}")


def heal(ctx):
    end(ctx)


def check(ctx, load):
    ctx.say(f"sessions of payment waiting on a lock during the hold: up to "
            f"{ctx.state.get('lock_waiters_max')}")
