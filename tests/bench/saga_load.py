"""Places N orders through the storefront with T client threads and reports completed sagas per
second, measured from the database timestamps of the first order placed and the last order
finished. Run against a system started by ./petstore up:

    eval "$(./petstore env)"; /usr/bin/python3 tests/bench/saga_load.py [N] [T]

A measurement, not a test: it prints figures and asserts only that every order finished."""
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

import db  # noqa: E402
import httpc  # noqa: E402
from petstore_env import need  # noqa: E402
from shop import api, create_card, new_customer  # noqa: E402
from wait import wait_until  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    token = new_customer()
    number, _card = create_card(10 ** 12)
    pets = []
    for _ in range(n):
        r = httpc.post(api() + "/v1/pets", {"name": "bench", "species": "fish", "price_cents": 100},
                       token=need("ADMIN_TOKEN"))
        pets.append(r.json["id"])
    sf = db.connect("storefront")
    wait_until(lambda: db.value(sf, "SELECT count(*) FROM pets WHERE id = ANY(%s::uuid[])"
                                " AND status = 'available'", pets) == n, timeout=120,
               what="the pets in the catalog")
    orders, lock = [], threading.Lock()

    def client(chunk):
        for pet in chunk:
            r = httpc.post(api() + "/v1/orders", {"card_number": number, "pet_ids": [pet]},
                           token=token, headers={"Idempotency-Key": str(uuid.uuid4())})
            with lock:
                orders.append(r.json["id"])

    started = time.monotonic()
    workers = [threading.Thread(target=client, args=(pets[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    placed = time.monotonic() - started
    wait_until(lambda: db.value(sf, "SELECT count(*) FROM orders WHERE id = ANY(%s::uuid[])"
                                " AND status IN ('COMPLETED', 'CANCELLED')", orders) == n,
               timeout=600, interval=0.2, what="every order finished")
    row = db.rows(sf, "SELECT count(*) FILTER (WHERE status = 'COMPLETED') AS completed,"
                      " extract(epoch FROM max(updated_at) - min(created_at)) AS seconds,"
                      " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
                      "  updated_at - created_at)) AS p50,"
                      " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM"
                      "  updated_at - created_at)) AS p99"
                      " FROM orders WHERE id = ANY(%s::uuid[])", orders)[0]
    seconds = float(row["seconds"])
    print(f"orders: {n}, client threads: {threads}, placed in {placed:.2f} s "
          f"({n / placed:.0f} POST/s)")
    print(f"completed: {row['completed']}, first placed to last finished: {seconds:.2f} s, "
          f"{row['completed'] / seconds:.0f} completed sagas/s")
    print(f"order latency (placed to final status): p50 {float(row['p50']) * 1000:.0f} ms, "
          f"p99 {float(row['p99']) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
