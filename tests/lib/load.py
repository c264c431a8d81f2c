"""An open-loop order generator for the drills and the baseline: customers order at a fixed rate
through the storefront's public API, whatever the system answers, the way real traffic keeps
arriving while a fault lasts.

    load = Load(rate=10, duration_s=60)
    load.prepare()          # customers, funded cards, one empty card, enough fresh pets
    load.start(); ...; load.stop()
    load.order_ids          # every order answered 202
    print(load.text())      # answers by status, orders accepted, latencies

Design decisions:
- Open loop: a scheduler thread starts one order every 1/rate seconds on a pool of worker
  threads and never waits for an answer, so a slow or absent system does not slow the arrivals
  down (a closed loop would hide an outage by sending less). When every worker is busy
  (requests hanging), an order starts late and that lateness is counted (`late`).
- Every order uses a pet of its own, created through the admin API in prepare() and waited for
  until the catalog shows it available, so PET_UNAVAILABLE never happens by accident: an order
  is cancelled only for a real reason we chose. A share of the orders (broke_share) pays with a
  card without funds (INSUFFICIENT_FUNDS) and another share (cancel_share) is cancelled by its
  customer shortly after the 202 (CANCELLED_BY_USER, or COMPLETED when the cancel came too late:
  409), so compensations run under every fault.
- A client that gets 503, 409 (same key still in progress), a refused connection or a timeout
  sends the same order again with the same Idempotency-Key, after Retry-After (at most 2 s) or
  0.5 s, for at most give_up_s; so "exactly one order per key" can be checked. Every distinct
  order id a key was answered with is kept (`several_orders` lists keys with more than one).
- Every answer is recorded with its time (`answers`, `answers_between`), so a drill can say
  what the door answered while its fault lasted (e.g. 503 with Retry-After while PostgreSQL was
  down; 202 while RabbitMQ was).
- POST latency is measured per attempt that got an answer; POST-to-terminal latency is read
  afterwards from each order's history (terminal_latencies), which costs one GET per order and
  nothing while the load runs.
"""
import collections
import http.client
import random
import socket
import threading
import time
import urllib.error
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpc
import shop
from petstore_env import need

FUNDED_CENTS = 10**12  # never runs out, whatever a drill does
PET_PRICE_CENTS = 1000
TERMINAL = ("COMPLETED", "CANCELLED", "NEEDS_OPERATOR")


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def parse_time(text):
    """RFC 3339 (with Z or an offset, milliseconds or not) -> datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Accepted:
    """One order answered 202: its key, id, who placed it and why it may end CANCELLED."""

    def __init__(self, key, order_id, token, card, broke, cancel, t_first, t_202, attempts):
        self.key = key
        self.order_id = order_id
        self.token = token
        self.card = card
        self.broke = broke
        self.cancel = cancel
        self.t_first = t_first
        self.t_202 = t_202
        self.attempts = attempts


class Load:
    def __init__(self, rate=10.0, duration_s=60.0, customers=10, broke_share=0.05,
                 cancel_share=0.05, workers=256, request_timeout=10.0, give_up_s=90.0,
                 log=print):
        self.rate = float(rate)
        self.duration_s = float(duration_s)
        self.n_customers = customers
        self.broke_share = broke_share
        self.cancel_share = cancel_share
        self.request_timeout = request_timeout
        self.give_up_s = give_up_s
        self.log = log
        self.api = need("PETSTORE_API")
        self.customers = []  # (token, funded card number)
        self.card_ids = []  # the funded cards' ids on the payment service
        self.broke_card = None
        self.pets = collections.deque()
        self.accepted = []
        self.given_up = []  # keys never answered 202 within give_up_s: (key, last answer)
        self.refused = []  # keys answered 4xx other than 409: (key, status, body)
        self.answers = []  # (monotonic time, status or 'refused'/'timeout'/'error', retry_after)
        self.post_ms = []
        self.cancels = collections.Counter()
        self.orders_by_key = collections.defaultdict(set)
        self.late = 0
        self.no_pet = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load")
        self._busy = 0
        self._futures = []
        self._scheduler = None
        self._rng = random.Random()
        self.started_at = self.stopped_at = None

    # ------------------------------------------------------------ preparation

    def prepare(self, orders=None, timeout=120):
        """Customers with a funded card each, one card without funds, and `orders` fresh pets
        (default: rate x duration plus a margin), all through the admin APIs; returns once the
        catalog shows every pet available."""
        n = orders or int(self.rate * self.duration_s * 1.15) + 20
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            tokens = list(pool.map(lambda _: shop.new_customer(), range(self.n_customers)))
            cards = list(pool.map(lambda _: shop.create_card(FUNDED_CENTS),
                                  range(self.n_customers)))
            self.broke_card = shop.create_card(0)[0]
            self.customers = [(t, number) for t, (number, _id) in zip(tokens, cards)]
            self.card_ids = [card_id for _number, card_id in cards]
            pets = list(pool.map(self._new_pet, range(n)))
        deadline = time.monotonic() + timeout
        pending = list(pets)
        while pending:
            with ThreadPoolExecutor(max_workers=8) as pool:
                states = list(pool.map(shop.pet_status, pending))
            pending = [p for p, s in zip(pending, states) if s != "available"]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} of {n} new pets not available after "
                                   f"{timeout} s (e.g. {pending[0]}: {shop.pet_status(pending[0])})")
            time.sleep(0.5)
        self.pets.extend(pets)
        self.log(f"load: prepared {self.n_customers} customers, {len(pets)} pets in "
                 f"{time.monotonic() - t0:.1f} s")

    def _new_pet(self, _):
        r = httpc.post(self.api + "/v1/pets",
                       {"name": "drill-" + uuid.uuid4().hex[:8], "species": "dog",
                        "price_cents": PET_PRICE_CENTS}, token=need("ADMIN_TOKEN"))
        if r.status != 202:
            raise RuntimeError(f"POST /v1/pets: {r}")
        return r.json["id"]

    # ------------------------------------------------------------ running

    def start(self):
        self.started_at = time.monotonic()
        self._scheduler = threading.Thread(target=self._schedule, name="load-scheduler",
                                           daemon=True)
        self._scheduler.start()

    def stop(self, timeout=None):
        """Stops new arrivals and waits (at most give_up_s + request_timeout, or timeout) for
        the orders in flight: each ends 202, refused or given up."""
        self._stop.set()
        if self._scheduler:
            self._scheduler.join()
        self.stopped_at = time.monotonic()
        deadline = time.monotonic() + (timeout or self.give_up_s + self.request_timeout + 5)
        for f in list(self._futures):
            f.result(timeout=max(0.1, deadline - time.monotonic()))
        self._pool.shutdown(wait=False)

    def _schedule(self):
        period = 1.0 / self.rate
        nxt = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now < nxt:
                self._stop.wait(nxt - now)
                continue
            with self._lock:
                pet = self.pets.popleft() if self.pets else None
                if pet is None:
                    self.no_pet += 1
                if self._busy >= self._pool._max_workers:
                    self.late += 1
                self._busy += 1
            if pet is not None:
                self._futures.append(self._pool.submit(self._order, pet))
            else:
                with self._lock:
                    self._busy -= 1
            nxt += period

    def _note(self, status, retry_after=None):
        with self._lock:
            self.answers.append((time.monotonic(), status, retry_after))

    def _post(self, path, body, token, key=None):
        """One attempt: (status or 'refused'/'timeout'/'error', response or None)."""
        headers = {"Idempotency-Key": key} if key else {}
        t0 = time.monotonic()
        try:
            r = httpc.post(self.api + path, body, token=token, headers=headers,
                           timeout=self.request_timeout, retries_503=0)
        except (socket.timeout, TimeoutError):
            return "timeout", None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                return "timeout", None
            return "refused", None
        except (ConnectionError, http.client.HTTPException, OSError):
            return "refused", None
        if key:
            with self._lock:
                self.post_ms.append((time.monotonic() - t0) * 1000.0)
        return r.status, r

    def _order(self, pet):
        try:
            self._order_once(pet)
        except Exception as e:  # a bug here must not vanish in a future nobody reads
            self.log(f"load: order of pet {pet} failed in the client: {e!r}")
            with self._lock:
                self.given_up.append((None, repr(e)))
        finally:
            with self._lock:
                self._busy -= 1

    def _order_once(self, pet):
        rng = self._rng
        token, card = rng.choice(self.customers)
        broke = rng.random() < self.broke_share
        cancel = not broke and rng.random() < self.cancel_share
        if broke:
            card = self.broke_card
        key = str(uuid.uuid4())
        body = {"card_number": card, "pet_ids": [pet]}
        t_first = time.monotonic()
        attempts = 0
        last = None
        while True:
            attempts += 1
            status, r = self._post("/v1/orders", body, token, key)
            retry_after = r.headers.get("Retry-After") if r is not None else None
            self._note(status, retry_after)
            last = status if r is None else f"{status} {r.raw[:200]!r}"
            if status == 202:
                order_id = r.json["id"]
                with self._lock:
                    self.orders_by_key[key].add(order_id)
                # A retried key is asked once more: the answer must be the same order.
                if attempts > 1:
                    s2, r2 = self._post("/v1/orders", body, token, key)
                    self._note(s2, None)
                    if s2 == 202:
                        with self._lock:
                            self.orders_by_key[key].add(r2.json["id"])
                a = Accepted(key, order_id, token, card, broke, cancel, t_first,
                             time.monotonic(), attempts)
                with self._lock:
                    self.accepted.append(a)
                if cancel:
                    self._cancel(a)
                return
            if status not in (503, 409, "refused", "timeout"):
                with self._lock:
                    self.refused.append((key, status, r.raw[:300] if r is not None else None))
                return
            if time.monotonic() - t_first > self.give_up_s:
                with self._lock:
                    self.given_up.append((key, last))
                return
            try:
                delay = min(float(retry_after), 2.0) if retry_after else 0.5
            except ValueError:
                delay = 0.5
            time.sleep(delay)

    def _cancel(self, a):
        """The customer changes their mind a moment after the 202; retried like an order."""
        time.sleep(self._rng.uniform(0.0, 0.05))
        t0 = time.monotonic()
        while True:
            status, r = self._post(f"/v1/orders/{a.order_id}/cancel", None, a.token)
            if status in (202, 409) or time.monotonic() - t0 > self.give_up_s:
                with self._lock:
                    self.cancels[status] += 1
                return
            if status not in (503, "refused", "timeout"):
                with self._lock:
                    self.cancels[status] += 1
                return
            time.sleep(0.5)

    # ------------------------------------------------------------ figures

    @property
    def order_ids(self):
        with self._lock:
            return [a.order_id for a in self.accepted]

    @property
    def several_orders(self):
        """Keys that were answered with more than one order id (must be empty)."""
        with self._lock:
            return {k: sorted(v) for k, v in self.orders_by_key.items() if len(v) > 1}

    def answers_by_status(self, t0=None, t1=None):
        with self._lock:
            return collections.Counter(
                str(s) for t, s, _ in self.answers
                if (t0 is None or t >= t0) and (t1 is None or t <= t1))

    def answers_between(self, t0, t1):
        """[(status, retry_after)] of the answers between two monotonic times."""
        with self._lock:
            return [(s, ra) for t, s, ra in self.answers if t0 <= t <= t1]

    def terminal_latencies(self, workers=8):
        """Seconds from created_at to the terminal status of each order, read from the orders'
        history (one GET per order); orders not terminal yet are left out."""
        def one(a):
            try:
                r = httpc.get(f"{self.api}/v1/orders/{a.order_id}", token=a.token,
                              timeout=self.request_timeout, retries_503=2)
            except Exception:
                return None
            if r.status != 200 or r.json.get("status") not in TERMINAL:
                return None
            hist = [h for h in r.json.get("history") or [] if h.get("status") in TERMINAL]
            if not hist:
                return None
            return (parse_time(hist[-1]["at"]) - parse_time(r.json["created_at"])).total_seconds()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return [v for v in pool.map(one, list(self.accepted)) if v is not None]

    def figures(self, with_terminal=False):
        with self._lock:
            accepted = len(self.accepted)
            retried = sum(1 for a in self.accepted if a.attempts > 1)
            post = list(self.post_ms)
        f = {"rate": self.rate,
             "seconds": round((self.stopped_at or time.monotonic()) - (self.started_at or 0), 1)
             if self.started_at else 0,
             "answers": dict(sorted(self.answers_by_status().items())),
             "accepted": accepted, "accepted_after_retry": retried,
             "given_up": len(self.given_up), "refused": len(self.refused),
             "keys_with_several_orders": len(self.several_orders),
             "broke": sum(1 for a in self.accepted if a.broke),
             "cancel_requests": dict((str(k), v) for k, v in self.cancels.items()),
             "late_starts": self.late, "out_of_pets": self.no_pet,
             "post_ms_p50": percentile(post, 50), "post_ms_p95": percentile(post, 95),
             "post_ms_p99": percentile(post, 99)}
        if with_terminal:
            lat = self.terminal_latencies()
            f.update(terminal_s_p50=percentile(lat, 50), terminal_s_p95=percentile(lat, 95),
                     terminal_s_max=max(lat) if lat else None)
        return f

    def text(self, with_terminal=False):
        f = self.figures(with_terminal)

        def ms(v):
            return "-" if v is None else f"{v:.0f}"

        def s(v):
            return "-" if v is None else f"{v:.2f}"
        answers = ", ".join(f"{k}: {v}" for k, v in f["answers"].items()) or "none"
        lines = [
            f"load: {f['rate']:g} orders/s for {f['seconds']} s; answers {answers}",
            f"  accepted {f['accepted']} (after retrying the same key: "
            f"{f['accepted_after_retry']}), given up {f['given_up']}, refused {f['refused']}, "
            f"keys with several orders {f['keys_with_several_orders']}",
            f"  meant to cancel: {f['broke']} on an empty card, cancel requests "
            f"{f['cancel_requests'] or {}}; late starts {f['late_starts']}, "
            f"out of pets {f['out_of_pets']}",
            f"  POST latency ms p50 {ms(f['post_ms_p50'])} p95 {ms(f['post_ms_p95'])} "
            f"p99 {ms(f['post_ms_p99'])}"]
        if with_terminal:
            lines.append(f"  POST->terminal s p50 {s(f['terminal_s_p50'])} "
                         f"p95 {s(f['terminal_s_p95'])} max {s(f['terminal_s_max'])}")
        for key, last in self.given_up[:5]:
            lines.append(f"  given up: key {key}: last answer {last}")
        for key, status, body in self.refused[:5]:
            lines.append(f"  refused: key {key}: {status} {body!r}")
        for key, ids in list(self.several_orders.items())[:5]:
            lines.append(f"  SEVERAL ORDERS for key {key}: {ids}")
        return "\n".join(lines)
