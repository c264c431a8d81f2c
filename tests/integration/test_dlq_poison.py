"""The dead-letter tool (`dlq`) on dead letters that the system's own consumers made: every
poison kind reaches the right `.dlq` and the right group, `show` tells an operator what
happened (and masks anything card-like), a failed charge replayed after its cause is fixed
completes its order, a second replay of the same message has no second effect, dead letters
whose sender the tool cannot prove are never replayed, and RabbitMQ's own dead letter (a message
over its queue's delivery limit, with x-death) is shown and replayed like the consumers'.

Other tests' leftovers may sit in the same queues and groups: everything here is selected by
message id, group counts are compared before and after, and what a test leaves is purged by id."""
import os
import subprocess
import uuid

import db
import shop
from amqp import Broker, envelope
from daemons import (audit_daemon, audit_recorded, publish_events, replacing,
                     take_dead_letters)
from petstore_env import launcher
from saga_instance import private_saga, scrape
from wait import wait_until

import dlq

CARD = "4111111111111111"


def publish(type_, body, user, exchange, key, headers=None):
    """One message of type_ published as the broker user `user` (named in user_id); the raw
    body is sent as it is. Returns its message id."""
    props = envelope(type_, str(uuid.uuid4()), source="storefront")
    props.headers.update(headers or {})
    with Broker() as broker:
        return broker.publish(type_, None, exchange=exchange, routing_key=key, body=body,
                              properties=props, sender=user)


def wait_present(queue, ids, timeout=30):
    wait_until(lambda: dlq.present(queue, ids) == set(ids), timeout=timeout,
               what=f"{ids} in {queue} (dlq show)")


def counts_by_fingerprint():
    return {g["fingerprint"]: g["count"] for g in dlq.groups()}


def launcher_run(*args, **env):
    out = subprocess.run([launcher(), *args], capture_output=True, text=True, timeout=180,
                         env=dict(os.environ, **env))
    assert out.returncode == 0, out.stdout + out.stderr


def make_every_poison_kind(expect, trace):
    """Makes the system's consumers dead-letter a message of each poison kind (two
    schema-invalid ones); records each dead letter in expect as (queue, message id) -> (class,
    code, type, handler) as soon as it is on its way. Returns the message ids: unparseable,
    [schema-invalid, schema-invalid], unknown type, forged, failing handler."""
    # Unparseable: a command whose body is not JSON, from its producer (the storefront).
    unparseable = publish("inventory.list_pet.v1", b'{"name": "rex", "species": ', "storefront",
                          "petstore.commands", "inventory")
    expect[("inventory.commands.dlq", unparseable)] = ("contract", "ERR_INVALID",
                                                       "inventory.list_pet.v1", "inventory")
    # Schema-invalid, twice: an event from its producer whose order_id is no uuid, with a card
    # number in a free-text field. Both saga.events and audit.events get it.
    invalid = []
    for _ in range(2):
        invalid.append(publish("order.cancel_requested.v1",
                               b'{"order_id": "not-a-uuid", "user_id": "%s", "note": "card %s"}'
                               % (str(uuid.uuid4()).encode(), CARD.encode()), "storefront",
                               "petstore.events", "order.cancel_requested",
                               {"traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01"}))
        for queue, handler in (("saga.events.dlq", "order-saga"), ("audit.events.dlq", "audit")):
            expect[(queue, invalid[-1])] = ("contract", "ERR_INVALID",
                                            "order.cancel_requested.v1", handler)
    # Unknown type, from the storefront (its topic permissions allow order.*).
    unknown = publish("order.teleported.v1", b'{"order_id": "%s"}' % str(uuid.uuid4()).encode(),
                      "storefront", "petstore.events", "order.teleported")
    for queue, handler in (("saga.events.dlq", "order-saga"), ("audit.events.dlq", "audit")):
        expect[(queue, unknown)] = ("unknown-type", "ERR_INVALID", "order.teleported.v1", handler)
    # Forged: a release of a reservation, which only the saga may send, from the storefront.
    forged = publish("inventory.release.v1", b'{"order_id": "%s"}' % str(uuid.uuid4()).encode(),
                     "storefront", "petstore.commands", "inventory")
    expect[("inventory.commands.dlq", forged)] = ("forged", "ERR_INVALID",
                                                  "inventory.release.v1", "inventory")
    # A handler that keeps failing: audit's, with the fault hook on one valid event.
    with replacing("audit"):
        failing = publish_events(3)[1]
        expect[("audit.events.dlq", failing)] = ("handler", "ERR_INTERNAL",
                                                 "order.cancel_requested.v1", "audit")
        audit = audit_daemon("dlq-handler", PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID=failing,
                             CONSUMER_MAX_ATTEMPTS="2")
        try:
            audit.wait_ready("the test's audit consumer ready")
            wait_present("audit.events.dlq", [failing])
        finally:
            assert audit.stop() == 0
    return unparseable, invalid, unknown, forged, failing


def test_each_poison_kind_reaches_its_dead_letter_queue_and_group_and_show_explains_it():
    before = counts_by_fingerprint()
    trace = uuid.uuid4().hex
    expect = {}
    try:
        unparseable, invalid, unknown, forged, failing = make_every_poison_kind(expect, trace)
        queues = sorted({q for q, _ in expect})
        for q in queues:
            wait_present(q, [i for qq, i in expect if qq == q])
        shown = {}
        for q in queues:
            entries = dlq.show(q, [i for qq, i in expect if qq == q])
            shown.update({(q, m["id"]): m for m in entries})
            assert len(entries) == sum(1 for qq, _ in expect if qq == q), entries
        assert set(shown) == set(expect), "each dead letter exactly once, in its own queue"

        for (q, mid), (klass, code, type_, handler) in expect.items():
            m = shown[(q, mid)]
            what = f"{mid} in {q}: {m}"
            assert (m["class"], m["code"], m["type"], m["handler"]) == (klass, code, type_,
                                                                      handler), what
            assert m["original_queue"] == dlq.work_queue(q), what
            assert m["replay_count"] == 0, what
            assert m["error"], what
            assert m["dead_at"] and m["first_death"], what
            assert m["position"] >= 0, what
        # Where each came from, and who sent it (the consumers name the original sender).
        m = shown[("inventory.commands.dlq", unparseable)]
        assert (m["exchange"], m["routing_key"]) == ("petstore.commands", "inventory"), m
        assert m["sender"] == "storefront" and m["verified"] is True and m["refusal"] is None, m
        for q in ("saga.events.dlq", "audit.events.dlq"):
            m = shown[(q, invalid[0])]
            assert (m["exchange"], m["routing_key"]) == ("petstore.events",
                                                         "order.cancel_requested"), m
            assert m["sender"] == "storefront" and m["verified"] is True, m
            assert m["trace_id"] == trace, m
            assert "order_id" in m["error"], m
        m = shown[("inventory.commands.dlq", forged)]
        assert m["sender"] == "storefront" and m["verified"] is False, m
        assert m["refusal"], "a forged dead letter says why it cannot be replayed"
        assert "storefront" in m["error"], m
        for q in ("saga.events.dlq", "audit.events.dlq"):
            m = shown[(q, unknown)]
            assert m["refusal"], f"no producer vouches for an unknown type: {m}"
            assert "order.teleported.v1" in m["error"], m
        m = shown[("audit.events.dlq", failing)]
        assert m["sender"] == "storefront" and m["verified"] is True, m
        assert m["attempts"] >= 1, m
        assert "PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID" in m["error"], m

        # Masking: the card number appears in no output of show, only its last four digits.
        for q in ("saga.events.dlq", "audit.events.dlq"):
            m = shown[(q, invalid[0])]
            assert CARD not in m["body"] and "1111" in m["body"], m["body"]
            text = dlq.run("show", q, "--id", invalid[0], as_json=False)
            assert text.rc == 0, text
            assert invalid[0] in text.out and CARD not in text.out + text.err, text

        # Groups: one per class, code, type, handler and queue; the two schema-invalid
        # messages of one queue share theirs; the counts grew by exactly what arrived.
        fingerprints = {key: shown[key]["fingerprint"] for key in expect}
        assert fingerprints[("saga.events.dlq", invalid[0])] == \
            fingerprints[("saga.events.dlq", invalid[1])]
        assert fingerprints[("audit.events.dlq", invalid[0])] == \
            fingerprints[("audit.events.dlq", invalid[1])]
        distinct = {fingerprints[key] for key in expect}
        assert len(distinct) == 7, fingerprints
        after = {g["fingerprint"]: g for g in dlq.groups()}
        for key, (klass, code, type_, handler) in expect.items():
            fp = fingerprints[key]
            g = after[fp]
            arrived = sum(1 for k in expect if fingerprints[k] == fp)
            assert g["count"] - before.get(fp, 0) == arrived, (key, g, before.get(fp))
            assert (g["queue"], g["original_queue"]) == (key[0], dlq.work_queue(key[0])), g
            assert (g["class"], g["code"], g["type"], g["handler"]) == (klass, code, type_,
                                                                      handler), g
            assert g["first_seen"] and g["last_seen"] and g["sample_error"], g
            assert (g["status"], g["note"]) == ("open", None), ("no note yet", g)
        # groups QUEUE lists that queue's groups only.
        only = dlq.groups("audit.events")
        assert {g["queue"] for g in only} == {"audit.events.dlq"}, only
        assert fingerprints[("audit.events.dlq", failing)] in {g["fingerprint"] for g in only}
        # list: every dead-letter queue with its depth and groups.
        listed = {e["queue"]: e for e in dlq.ok("list")}
        for q in queues:
            ours = sum(1 for qq, _ in expect if qq == q)
            assert listed[q]["depth"] >= ours and listed[q]["groups"] >= 1, listed[q]
            assert listed[q]["oldest_age_s"] is not None, listed[q]
    finally:
        for q in {q for q, _ in expect}:
            dlq.cleanup(q, [i for qq, i in expect if qq == q])


def test_a_fake_or_forged_dead_letter_is_never_replayed():
    # A forged command, dead-lettered by inventory itself.
    forged = publish("inventory.release.v1", b'{"order_id": "%s"}' % str(uuid.uuid4()).encode(),
                     "storefront", "petstore.commands", "inventory")
    order = {"order_id": str(uuid.uuid4()), "amount_cents": 100,
             "card_sealed": "c2VhbGVk", "card_last4": "4242"}  # shape only: never handled
    # A "dead letter" of a charge, written into payment's .dlq by the storefront (which may
    # publish to petstore.dlx) claiming that the saga sent the charge.
    fake = dlq.fill("payment.commands.dlq", "payment.charge.v1", [order], as_user="storefront",
                    sender="saga")
    # A dead letter by payment itself, but naming a sender that does not produce charges.
    wrong_sender = dlq.fill("payment.commands.dlq", "payment.charge.v1", [order],
                            sender="storefront")
    try:
        wait_present("inventory.commands.dlq", [forged])
        wait_present("payment.commands.dlq", fake + wrong_sender)
        for queue, ids in (("inventory.commands", [forged]),
                           ("payment.commands", fake + wrong_sender)):
            for m in dlq.show(queue, ids):
                assert m["verified"] is False and m["refusal"], m
            r = dlq.run("replay", queue, "--id", dlq.ids_arg(ids))
            assert r.rc == 1, r
            s = r.json
            assert (s["selected"], s["refused"], s["done"]) == (len(ids), len(ids), 0), r
            assert s["outcome"] == "partial", r
            assert dlq.present(queue + ".dlq", ids) == set(ids), "refused ones stay"
            for m in dlq.show(queue, ids):
                assert m["replay_count"] == 0, m
    finally:
        dlq.cleanup("inventory.commands.dlq", [forged])
        dlq.cleanup("payment.commands.dlq", fake + wrong_sender)


def saga_charge_id(conn, order_id):
    return db.value(conn, "SELECT message_id::text FROM outbox WHERE correlation_id = %s AND"
                          " type = 'payment.charge.v1' ORDER BY id LIMIT 1", order_id)


def payment_duplicates():
    metrics = scrape(f"http://127.0.0.1:{os.environ['PETSTORE_PAYMENT_PORT']}/metrics")
    return sum(v for k, v in metrics.items()
               if k.startswith("petstore_messages_consumed_total{")
               and 'queue="payment.commands"' in k and 'outcome="duplicate"' in k)


def test_replaying_a_failed_charge_after_the_fix_completes_the_order_once(tmp_path):
    price = 2300
    pet = shop.create_pet(price)
    number, _card = shop.create_card(100000)
    token = shop.new_customer()
    saga_conn = db.connect("saga")
    charge = None
    # The saga waits two minutes for the payment, so the order stays PAYING (instead of being
    # compensated) while its charge sits in payment.commands.dlq.
    with private_saga(str(tmp_path / "saga.log"), replace=True, SAGA_PAY_TIMEOUT_MS=120000):
        launcher_run("stop", "payment")
        try:
            order_id = shop.place_order(token, number, [pet])
            charge = wait_until(lambda: saga_charge_id(saga_conn, order_id), timeout=30,
                                what="the saga's charge command in its outbox")
            # Payment comes back with a handler that fails on exactly that charge.
            launcher_run("start", "payment", PETSTORE_FAULT_HANDLER_FAIL_MESSAGE_ID=charge,
                         CONSUMER_MAX_ATTEMPTS="2")
            wait_present("payment.commands.dlq", [charge])
            m = dlq.show("payment.commands", [charge])[0]
            assert (m["class"], m["code"], m["type"], m["handler"], m["sender"]) == (
                "handler", "ERR_INTERNAL", "payment.charge.v1", "payment", "saga"), m
            assert (m["exchange"], m["routing_key"]) == ("petstore.commands", "payment"), m
            assert m["verified"] is True and m["refusal"] is None, m
            assert shop.order(token, order_id)["status"] == "PAYING"
            assert shop.net_charged(order_id) == 0

            # The cause is fixed: payment without the fault.
            launcher_run("restart", "payment")
            # A copy of the dead letter, for the second replay.
            saved = take_dead_letters("payment.commands.dlq", [charge])
            assert len(saved) == 1
            dlq.reinject("payment.commands", saved)
            wait_present("payment.commands.dlq", [charge])

            group = dlq.group(m["fingerprint"], "payment.commands")
            assert group and group["count"] >= 1 and group["class"] == "handler", group
            r = dlq.run("replay", "payment.commands", "--group", m["fingerprint"],
                        "--id", charge)
            assert r.rc == 0, r
            s = r.json
            assert (s["verb"], s["selected"], s["done"], s["refused"], s["failed"]) == (
                "replay", 1, 1, 0, 0), r
            assert s["outcome"] == "done" and s["run"], r
            done = shop.wait_status(token, order_id, timeout=60)
            assert done["status"] == "COMPLETED", done
            assert shop.net_charged(order_id) == price
            assert dlq.present("payment.commands.dlq", [charge]) == set()

            # The same message replayed again: payment's inbox drops it.
            duplicates = payment_duplicates()
            dlq.reinject("payment.commands", saved)
            wait_present("payment.commands.dlq", [charge])
            r = dlq.run("replay", "payment.commands", "--id", charge)
            assert r.rc == 0 and r.json["done"] == 1, r
            wait_until(lambda: payment_duplicates() >= duplicates + 1, timeout=30,
                       what="payment dropping the second replay as a duplicate")
            assert shop.ledger(order_id) == [("charge", price)]
            assert shop.order(token, order_id)["status"] == "COMPLETED"
            assert dlq.present("payment.commands.dlq", [charge]) == set()
        finally:
            launcher_run("restart", "payment")
            if charge:
                dlq.cleanup("payment.commands.dlq", [charge])
    saga_conn.close()


def test_rabbitmqs_own_dead_letter_over_the_delivery_limit_is_shown_and_replayed():
    conn = db.connect("audit")
    mid = None
    try:
        with replacing("audit"):
            # A valid event from its producer that no consumer settles: the administrator takes
            # it and gives it back until the queue's delivery limit sends it to audit.events.dlq.
            mid = publish_events(1)[0]
            with Broker() as broker:
                def bounced_out():
                    method, _props, _body = broker.ch.basic_get("audit.events", auto_ack=False)
                    if method is not None:
                        broker.ch.basic_nack(method.delivery_tag, requeue=True)
                    return method is None and dlq.present("audit.events.dlq", [mid]) == {mid}
                wait_until(bounced_out, timeout=30, what="the event over its delivery limit")
        m = dlq.show("audit.events", [mid])[0]
        assert (m["class"], m["type"], m["original_queue"]) == (
            "delivery-limit", "order.cancel_requested.v1", "audit.events"), m
        assert m["sender"] == "storefront" and m["verified"] is True and m["refusal"] is None, m
        assert (m["exchange"], m["routing_key"]) == ("petstore.events",
                                                     "order.cancel_requested"), m
        assert m["first_death"], m
        g = dlq.group(m["fingerprint"], "audit.events")
        assert g and g["class"] == "delivery-limit" and g["count"] >= 1, g

        r = dlq.run("replay", "audit.events", "--id", mid, "--to", ":audit.events")
        assert r.rc == 0 and r.json["done"] == 1, r
        wait_until(lambda: audit_recorded(conn, [mid]) == 1, what="the event recorded by audit")
        assert dlq.present("audit.events.dlq", [mid]) == set()
    finally:
        if mid:
            dlq.cleanup("audit.events.dlq", [mid])
        conn.close()
