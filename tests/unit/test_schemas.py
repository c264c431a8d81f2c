"""The published contracts agree with the C codec.

Every case under tests/data/contracts/{valid,invalid}/ is judged by the JSON Schema of its type
(Draft 2020-12, formats checked) and must get the verdict the C codec gives it (the directory it
is in; tests/unit/test_msg_codec.c holds the codec to that). For invalid cases the schema must
also complain about the place the codec names. Cases a schema cannot judge (not JSON, duplicate
keys, the size cap) carry a `schema_skip` file saying why. Registered with ctest by
contracts/CMakeLists.txt as unit.schemas.
"""
import json
import os
import pathlib
import re

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

SOURCE = pathlib.Path(os.environ.get("PETSTORE_SOURCE_DIR") or pathlib.Path(__file__).parents[2])
SCHEMAS = SOURCE / "contracts" / "schemas"
CASES = SOURCE / "tests" / "data" / "contracts"
TYPES_DEF = SOURCE / "contracts" / "codec" / "msg_types.def"
ASYNCAPI = SOURCE / "contracts" / "asyncapi.yaml"
SCHEMA_ID = "https://petstore.example/contracts/{}.json"
EXCHANGES = {"COMMANDS": "petstore.commands", "EVENTS": "petstore.events"}

DEF_LINE = re.compile(
    r'^X\((MSG_\w+),\s*"([^"]+)",\s*(COMMANDS|EVENTS),\s*"([^"]+)",\s*"([^"]+)",\s*(\w+)\)\s*$')


def def_types():
    """{type name: (exchange, routing key)} from msg_types.def."""
    return {name: (exchange, key) for name, (exchange, key, _) in def_table().items()}


def def_table():
    """{type name: (exchange, routing key, producer)} from msg_types.def."""
    types = {}
    for line in TYPES_DEF.read_text().splitlines():
        m = DEF_LINE.match(line)
        if m:
            types[m.group(2)] = (EXCHANGES[m.group(3)], m.group(4), m.group(5))
    assert types, "no X(...) lines found in msg_types.def"
    return types


RFC3339 = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                     r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$")


def is_rfc3339(value):
    """RFC 3339 date-time with a real calendar date: the check jsonschema delegates to the
    rfc3339-validator package, which Debian 12 does not ship."""
    if not isinstance(value, str):
        return True
    m = RFC3339.match(value)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return (1 <= month <= 12 and 1 <= day <= days[month - 1] and hour <= 23 and minute <= 59
            and second <= 60)


def format_checker():
    checker = FormatChecker()
    if "date-time" not in checker.checkers:
        checker.checks("date-time")(is_rfc3339)
    return checker


def load_schema(type_name):
    path = SCHEMAS / f"{type_name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def validator(schema):
    return Draft202012Validator(schema, format_checker=format_checker())


def all_cases():
    cases = []
    for verdict in ("valid", "invalid"):
        for d in sorted((CASES / verdict).iterdir()):
            cases.append(pytest.param(verdict, d, id=f"{verdict}/{d.name}"))
    return cases


def error_locations(errors):
    """Where jsonschema's errors point, as the codec spells paths: $, $.field, $.field[2]."""
    for e in errors:
        base = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        if e.validator == "required":
            for name in e.validator_value:
                if isinstance(e.instance, dict) and name not in e.instance:
                    yield f"{base}.{name}"
        else:
            yield base


def test_every_type_in_msg_types_def_has_a_schema_and_every_schema_a_type():
    types = set(def_types())
    files = {p.name[:-len(".json")] for p in SCHEMAS.glob("*.json")} - {"envelope"}
    assert sorted(types - files) == [], "types without a schema"
    assert sorted(files - types) == [], "schemas without a type in msg_types.def"


@pytest.mark.parametrize("type_name", sorted(def_types()))
def test_every_schema_is_a_draft_2020_12_schema_with_the_agreed_header(type_name):
    schema = load_schema(type_name)
    Draft202012Validator.check_schema(schema)
    exchange, routing_key, producer = def_table()[type_name]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID.format(type_name)
    assert schema["title"] == type_name
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is True
    assert schema["x-petstore-exchange"] == exchange
    assert schema["x-petstore-routing-key"] == routing_key
    assert schema["x-petstore-producer"] == producer
    assert set(schema["required"]) <= set(schema["properties"])


@pytest.mark.parametrize("verdict,case", all_cases())
def test_the_schemas_give_every_case_the_codecs_verdict(verdict, case):
    skip = case / "schema_skip"
    if skip.exists():
        pytest.skip(skip.read_text().strip())
    type_name = (case / "type").read_text().strip()
    payload = json.loads((case / "input.json").read_text(encoding="utf-8"))
    schema = load_schema(type_name)
    if schema is None:
        assert verdict == "invalid", f"no schema for {type_name}"
        assert type_name not in def_types()
        return
    errors = list(validator(schema).iter_errors(payload))
    if verdict == "valid":
        assert errors == [], [e.message for e in errors]
        return
    assert errors, "the schema accepts what the codec rejects"
    expected = (case / "error").read_text().strip()
    if expected.startswith("$"):
        c_path = expected.split(":", 1)[0]
        locations = set(error_locations(errors))
        assert any(c_path == loc or c_path.startswith(loc + "[") for loc in locations), (
            f"the codec blames {c_path}, the schema {sorted(locations)}")


def test_every_type_has_a_valid_example():
    examples = {(d / "type").read_text().strip() for d in (CASES / "valid").iterdir()}
    assert sorted(set(def_types()) - examples) == []


ENVELOPE_OK = {
    "properties": {
        "message_id": "0190a3c2-7b1e-7c4d-9f2a-000000000001",
        "correlation_id": "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f90",
        "type": "payment.charge.v1",
        "content_type": "application/json",
        "delivery_mode": 2,
        "timestamp": 1795411812,
        "app_id": "order-saga",
    },
    "headers": {
        "cloudEvents_specversion": "1.0",
        "cloudEvents_id": "0190a3c2-7b1e-7c4d-9f2a-000000000001",
        "cloudEvents_source": "/petstore/order-saga",
        "cloudEvents_type": "payment.charge.v1",
        "cloudEvents_time": "2026-11-23T05:30:12.345Z",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "causation_id": "0190a3c2-7b1e-7c4d-9f2a-000000000000",
        "x-death": [],
    },
}


def test_the_envelope_schema_accepts_a_producers_envelope():
    schema = json.loads((SCHEMAS / "envelope.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == SCHEMA_ID.format("envelope")
    assert list(validator(schema).iter_errors(ENVELOPE_OK)) == []


@pytest.mark.parametrize("part,key,value", [
    ("properties", "message_id", "0190A3C2-7B1E-7C4D-9F2A-000000000001"),
    ("properties", "type", "payment.charge"),
    ("properties", "content_type", "text/plain"),
    ("properties", "delivery_mode", 1),
    ("headers", "cloudEvents_specversion", "0.3"),
    ("headers", "cloudEvents_time", "2026-11-23T05:30:12+01:00"),
    ("headers", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
    ("headers", "causation_id", "cause"),
    ("headers", "cloudEvents_type", None),
])
def test_the_envelope_schema_refuses_a_broken_member(part, key, value):
    schema = json.loads((SCHEMAS / "envelope.json").read_text())
    envelope = json.loads(json.dumps(ENVELOPE_OK))
    if value is None:
        del envelope[part][key]
    else:
        envelope[part][key] = value
    assert list(validator(schema).iter_errors(envelope)) != []


def resolve_local(doc, ref):
    node = doc
    for token in ref[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def all_refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from all_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_refs(v)


def test_the_asyncapi_document_maps_every_type_and_resolves_every_reference():
    doc = yaml.safe_load(ASYNCAPI.read_text())
    types = def_types()
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["components"]["messages"]) == set(types)
    for ref in all_refs(doc):
        if ref.startswith("#/"):
            resolve_local(doc, ref)
        else:
            path, _, pointer = ref.partition("#")
            target = json.loads((ASYNCAPI.parent / path).read_text())
            if pointer:
                resolve_local(target, "#" + pointer)
    for name, msg in doc["components"]["messages"].items():
        assert msg["name"] == name
        assert msg["payload"]["schema"]["$ref"] == f"./schemas/{name}.json"
        assert msg["bindings"]["amqp"]["messageType"] == name
    sent, received = set(), set()
    for op_name, op in doc["operations"].items():
        channel_ref = op["channel"]["$ref"]
        channel = resolve_local(doc, channel_ref)
        for m in op["messages"]:
            assert m["$ref"].startswith(channel_ref + "/messages/"), op_name
            type_name = m["$ref"].rsplit("/", 1)[1]
            amqp = channel["bindings"]["amqp"]
            if op["action"] == "send":
                exchange, routing_key = types[type_name]
                assert amqp["is"] == "routingKey" and amqp["exchange"]["name"] == exchange, op_name
                assert channel["address"] == routing_key, op_name
                sent.add(type_name)
            else:
                assert op["action"] == "receive" and amqp["is"] == "queue", op_name
                received.add(type_name)
    assert sorted(set(types) - sent) == [], "types nobody sends"
    assert sorted(set(types) - received) == [], "types nobody receives"


DEFINITIONS = SOURCE / "broker-config" / "definitions.json"


def test_each_producer_may_write_its_own_types_and_no_other_user_may():
    """The broker's permissions agree with the producer column of msg_types.def: a producer's
    user may write its types' exchange (and, for events, their routing keys under its topic
    permissions); every other service user that may write to petstore.events is refused the
    routing key of an event it does not produce."""
    defs = json.loads(DEFINITIONS.read_text())
    users = {u["name"] for u in defs["users"]}
    writes = {p["user"]: re.compile(p["write"]) for p in defs["permissions"]
              if p["vhost"] == "petstore"}
    topics = {(t["user"], t["exchange"]): re.compile(t["write"])
              for t in defs["topic_permissions"] if t["vhost"] == "petstore"}
    for name, (exchange, key, producer) in def_table().items():
        assert producer in users, f"{name}: producer {producer} is no broker user"
        assert writes[producer].search(exchange), f"{name}: {producer} may not write {exchange}"
        if exchange != "petstore.events":
            continue  # a direct exchange: topic permissions do not apply, consumers check
        topic = topics.get((producer, exchange))
        assert topic is not None and topic.search(key), f"{name}: {producer} may not write {key}"
        for user, write in writes.items():
            # admin is the operator; dlq replays dead letters, which consumers accept from it
            # only as x-petstore-replay-for their producer (contracts/codec/msg.h).
            if user in (producer, "admin", "dlq") or not write.search(exchange):
                continue
            other = topics.get((user, exchange))
            assert other is not None, f"{user} may write any routing key of {exchange}"
            assert not other.search(key), f"{user} may write {key}, which only {producer} produces"
