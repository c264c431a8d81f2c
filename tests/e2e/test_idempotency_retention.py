"""Idempotency keys are remembered for IDEMPOTENCY_RETENTION_S (default a day), then purged in
small batches by every storefront instance, so the table does not grow with every order ever
placed. A key younger than the retention is kept and still answers a retry with its order."""
import uuid

import db
from shop import create_card, create_pet, new_customer, place_order, wait_status
from storefront_proc import Storefront
from wait import wait_until


def test_keys_older_than_the_retention_are_purged_and_younger_ones_kept():
    token = new_customer()
    number, _card = create_card(10_000)
    key, pet = str(uuid.uuid4()), create_pet(500)
    oid = place_order(token, number, [pet], key=key)
    wait_status(token, oid)
    sf = db.connect("storefront")
    user = db.value(sf, "SELECT user_id::text FROM orders WHERE id = %s", oid)
    # Two keys of the same customer as if used 2 minutes and 10 seconds ago.
    old, young = str(uuid.uuid4()), str(uuid.uuid4())
    for k, age in ((old, "2 minutes"), (young, "10 seconds")):
        db.rows(sf, "INSERT INTO idempotency_keys (user_id, key, request_hash, created_at)"
                    " VALUES (%s, %s, sha256('bench'), now() - %s::interval)", user, k, age)
    keys = "SELECT key FROM idempotency_keys WHERE user_id = %s AND key = ANY(%s)"
    second = Storefront(IDEMPOTENCY_RETENTION_S="60")  # purges at its start, then every minute
    try:
        wait_until(lambda: old not in [r["key"] for r in db.rows(sf, keys, user, [old, young])],
                   timeout=20, what="the key older than the retention purged")
        assert {r["key"] for r in db.rows(sf, keys, user, [old, young, key])} == {young, key}, \
            "younger keys are kept"
        assert second.log_lines("storefront.idempotency_purged"), "the purge is logged"
    finally:
        second.stop()
    # The order's own key (minutes old, under the default day) still answers a retry.
    assert place_order(token, number, [pet], key=key) == oid
    sf.close()
