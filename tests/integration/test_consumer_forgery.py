"""Messages cannot be forged: a consumer takes a message only from the broker user that
produces its type (the contract table's producer), as the AMQP user_id property says, which the
broker checks against the publisher's login. Anything else is dead-lettered with class `forged`,
naming the sender it claimed (app_id) and the one it had (user_id, or "none"), and changes
nothing. The dead letter comes from the consumer (its login in user_id), which names the original
sender in x-petstore-sender. Driven through the system's own inventory consumer."""
import uuid

import db
from amqp import Broker, envelope
from daemons import wait_dead_letters
from wait import wait_until


def new_pet(conn):
    pet = str(uuid.uuid4())
    db.rows(conn, "INSERT INTO pets (id, name, species, price_cents) VALUES (%s, 'forgery-test',"
                  " 'dog', 1000)", pet)
    return pet


def status(conn, pet):
    return db.value(conn, "SELECT status FROM pets WHERE id = %s", pet)


def publish_as(user, type_, payload, order, claimed="saga"):
    """Publishes a command claiming (app_id) to come from `claimed`, logged in as the broker
    user `user` and naming it in user_id (None: the admin, with no user_id). Returns its id."""
    props = envelope(type_, order, source=claimed)
    with Broker() as broker:
        return broker.publish(type_, payload, properties=props, sender=user)


def test_a_command_from_a_user_that_does_not_produce_its_type_is_dead_lettered_as_forged():
    conn = db.connect("inventory")
    pet = new_pet(conn)
    order = str(uuid.uuid4())
    # The saga, which produces inventory commands, reserves the pet for a live order.
    publish_as("saga", "inventory.reserve.v1",
               {"order_id": order, "pet_ids": [pet]}, order)
    wait_until(lambda: status(conn, pet) == "reserved", what="the pet reserved by the saga")

    # The storefront's broker user releases it, claiming to be the saga; so does a connection
    # that sets no user_id at all.
    release = {"order_id": order}
    forged = publish_as("storefront", "inventory.release.v1", release, order)
    anonymous = publish_as(None, "inventory.release.v1", release, order)

    dead = wait_dead_letters("inventory.commands.dlq", [forged, anonymous])
    for mid, actual in ((forged, "storefront"), (anonymous, "none")):
        assert len(dead[mid]) == 1
        props = dead[mid][0][0]
        assert props.headers["x-petstore-failure-class"] == "forged"
        assert props.headers["x-petstore-error-code"] == "ERR_INVALID"
        assert props.headers["x-petstore-claimed-sender"] == "saga"
        assert props.headers["x-petstore-actual-sender"] == actual
        assert props.headers["x-petstore-sender"] == actual
        assert props.user_id == "inventory", "the dead letter carries the consumer's login"
    assert status(conn, pet) == "reserved", "the forged release changed nothing"
    assert db.value(conn, "SELECT count(*) FROM inbox WHERE message_id = ANY(%s::uuid[])",
                    [forged, anonymous]) == 0
    conn.close()
