"""Passwords, session tokens and card numbers never appear in clear in any log or database; and
a second request with an Idempotency-Key that is still being written gets 409."""
import glob
import os
import uuid

import psycopg2

import db
import httpc
from petstore_env import need
from shop import api, create_card, create_pet, wait_status


def test_passwords_tokens_and_card_numbers_are_never_stored_or_logged_in_clear():
    name = "u" + uuid.uuid4().hex[:10]
    password = "pw-" + uuid.uuid4().hex
    assert httpc.post(api() + "/v1/users", {"username": name, "password": password}).status == 201
    token = httpc.post(api() + "/v1/sessions",
                       {"username": name, "password": password}).json["token"]
    number, _card = create_card(10_000)
    r = httpc.post(api() + "/v1/orders", {"card_number": number, "pet_ids": [create_pet(100)]},
                   token=token, headers={"Idempotency-Key": str(uuid.uuid4())})
    wait_status(token, r.json["id"])
    httpc.post(api() + "/v1/sessions", {"username": name, "password": password + "x"})  # 401

    secrets = {"password": password, "token": token, "card number": number}
    for path in glob.glob(os.path.join(need("PETSTORE_HOME"), "logs", "*.log")):
        text = open(path, errors="replace").read()
        for what, value in secrets.items():
            assert value not in text, f"the {what} appears in {os.path.basename(path)}"

    for service in ("storefront", "inventory", "payment", "saga", "audit"):
        conn = db.connect(service)
        tables = db.rows(conn, "SELECT table_name FROM information_schema.tables"
                               " WHERE table_schema = 'public'")
        for t in tables:
            rows = db.rows(conn, f'SELECT t::text AS row FROM "{t["table_name"]}" t')
            for what, value in secrets.items():
                assert not any(value in r["row"] for r in rows), \
                    f"the {what} is stored in {service}.{t['table_name']}"
        conn.close()
    sf = db.connect("storefront")
    stored = db.value(sf, "SELECT password_hash FROM users WHERE username = %s", name)
    assert stored.startswith("$argon2id$")
    # OWASP's Argon2id setting of 7 MiB and 5 passes (as strong as 19 MiB x 2): a login's
    # memory stays within the daemon's RSS budget, where libsodium's interactive limits take
    # 64 MiB per concurrent login.
    assert "$m=7168,t=5,p=1$" in stored, stored[:40]
    sf.close()


def test_a_key_still_in_progress_answers_409():
    name = "u" + uuid.uuid4().hex[:10]
    httpc.post(api() + "/v1/users", {"username": name, "password": "long enough"})
    token = httpc.post(api() + "/v1/sessions",
                       {"username": name, "password": "long enough"}).json["token"]
    number, _card = create_card(10_000)
    pet = create_pet(10)  # before the open transaction below, which holds back the relay's fence
    key = str(uuid.uuid4())
    sf = db.connect("storefront")
    user_id = db.value(sf, "SELECT id::text FROM users WHERE username = %s", name)
    sf.close()
    # Another request with this key is "being written": its row is inserted, not committed.
    holder = psycopg2.connect(need("STOREFRONT_DATABASE_URL"))
    with holder.cursor() as cur:
        cur.execute("INSERT INTO idempotency_keys (user_id, key, request_hash)"
                    " VALUES (%s, %s, sha256('another request'))", (user_id, key))
    try:
        r = httpc.post(api() + "/v1/orders", {"card_number": number, "pet_ids": [pet]},
                       token=token, headers={"Idempotency-Key": key})
        assert r.status == 409
        assert r.json["type"].endswith("/request-in-progress")
    finally:
        holder.rollback()
        holder.close()
