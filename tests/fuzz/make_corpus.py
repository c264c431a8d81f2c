#!/usr/bin/python3
"""Writes the seed corpora and dictionaries of the fuzz targets (tests/fuzz/CMakeLists.txt).

    make_corpus.py CONTRACTS_DIR OUT_DIR

CONTRACTS_DIR is tests/data/contracts: every valid and invalid case (<case>/type and
<case>/input.json) becomes a fuzz_message seed, wrapped in a well-formed envelope; a few more
seeds vary the envelope alone. The HTTP bodies and AMQP header tables are written out here.
OUT_DIR/<target>/ receives the seeds (replaced on every run) and OUT_DIR/<target>.dict the
libFuzzer dictionary. The seeds are the starting point only: libFuzzer keeps what it finds in the
build directory's fuzz-corpus/."""
import json
import os
import shutil
import struct
import sys

MESSAGE_ID = "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f90"
ORDER_ID = "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f91"
CAUSE_ID = "0190a3c2-7b1e-7c4d-9f2a-3b5c6d7e8f92"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PET_A = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
PET_B = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"


def headers(type_name, **changes):
    h = {
        "cloudEvents_specversion": "1.0",
        "cloudEvents_id": MESSAGE_ID,
        "cloudEvents_source": "/petstore/storefront",
        "cloudEvents_type": type_name,
        "cloudEvents_time": "2024-05-01T12:00:00.123Z",
        "traceparent": TRACEPARENT,
        "causation_id": CAUSE_ID,
    }
    for k, v in changes.items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    return h


def message(type_name, body, hdrs, message_id=MESSAGE_ID, correlation_id=ORDER_ID):
    """The fuzz_message input format (fuzz_message.c): four lines, then the body."""
    line = json.dumps(hdrs, separators=(",", ":")) if hdrs is not None else "-"
    head = "\n".join([type_name, message_id, correlation_id, line]) + "\n"
    return head.encode() + body


def message_seeds(contracts):
    seeds = {}
    types = set()
    for verdict in ("valid", "invalid"):
        root = os.path.join(contracts, verdict)
        for case in sorted(os.listdir(root)):
            d = os.path.join(root, case)
            try:
                with open(os.path.join(d, "type"), encoding="utf-8") as f:
                    type_name = f.read().strip()
                with open(os.path.join(d, "input.json"), "rb") as f:
                    body = f.read()
            except FileNotFoundError:
                continue
            if verdict == "valid":
                types.add(type_name)
            seeds[f"{verdict}-{case}"] = message(type_name, body, headers(type_name))
    # The envelope alone, around one valid body.
    t = "payment.refund_or_void.v1"
    body = json.dumps({"order_id": ORDER_ID}).encode()
    variants = {
        "no-headers": None,
        "empty-headers": {},
        "headers-not-an-object": [1, 2],
        "only-the-source": {"cloudEvents_source": "/petstore/saga"},
        "bad-specversion": headers(t, cloudEvents_specversion="0.3"),
        "other-id": headers(t, cloudEvents_id=CAUSE_ID),
        "other-type": headers(t, cloudEvents_type="payment.charge.v1"),
        "source-with-space": headers(t, cloudEvents_source="/petstore/a b"),
        "source-not-petstore": headers(t, cloudEvents_source="urn:example:x"),
        "time-with-offset": headers(t, cloudEvents_time="2024-05-01T12:00:00+02:00"),
        "empty-time": headers(t, cloudEvents_time=""),
        "bad-causation": headers(t, causation_id="x"),
        "traceparent-version-ff": headers(t, traceparent="ff" + TRACEPARENT[2:]),
        "traceparent-zero-trace": headers(t, traceparent="00-" + "0" * 32 + TRACEPARENT[35:]),
        "traceparent-future-version": headers(t, traceparent="01" + TRACEPARENT[2:] + "-x"),
        "header-with-nul": headers(t, cloudEvents_source="/petstore/sa\u0000ga"),
        "numeric-id": headers(t, cloudEvents_id=5),
    }
    for name, h in variants.items():
        seeds[f"envelope-{name}"] = message(t, body, h)
    seeds["envelope-no-message-id"] = message(t, body, headers(t), message_id="")
    seeds["envelope-bad-correlation"] = message(t, body, headers(t), correlation_id="ORDER")
    seeds["envelope-no-type"] = message("", body, headers(t))
    return seeds, sorted(types)


def http_seeds():
    bodies = {
        "user": {"username": "alice", "password": "correct horse"},
        "user-bad-name": {"username": "Al", "password": "short"},
        "session-any-strings": {"username": "A B", "password": "x"},
        "credentials-not-strings": {"username": 5, "password": None},
        "pet": {"name": "Rex", "species": "dog", "price_cents": 12500},
        "pet-bounds": {"name": "x" * 101, "species": "", "price_cents": 100000001},
        "pet-real-price": {"name": "Rex", "species": "dog", "price_cents": 1.5},
        "order-cart": {"card_number": "4111111111111111"},
        "order-pets": {"card_number": "4111111111111111", "pet_ids": [PET_A, PET_B]},
        "order-repeated-pet": {"card_number": "411111111111", "pet_ids": [PET_A, PET_A]},
        "order-empty-pets": {"card_number": "4111111111111111111", "pet_ids": []},
        "order-bad-card": {"card_number": "4111 1111 1111 1111", "pet_ids": "x"},
        "order-21-pets": {"card_number": "4111111111111111",
                          "pet_ids": [PET_A[:-2] + f"{i:02x}" for i in range(21)]},
        "card": {"card_number": "4111111111111111", "balance_cents": 100000},
        "card-not-luhn": {"card_number": "4111111111111112", "balance_cents": 0},
        "card-too-rich": {"card_number": "5555555555554444", "balance_cents": 1000000000001},
        "card-negative": {"card_number": "378282246310005", "balance_cents": -1},
        "everything": {"username": "bob_1", "password": "12345678", "name": "Tom",
                       "species": "cat", "price_cents": 0, "card_number": "4012888888881881",
                       "balance_cents": 5, "pet_ids": [PET_B]},
    }
    seeds = {k: json.dumps(v).encode() for k, v in bodies.items()}
    seeds["duplicate-key"] = b'{"username":"alice","username":"bob","password":"12345678"}'
    seeds["array"] = b'[{"card_number":"4111111111111111"}]'
    seeds["malformed"] = b'{"card_number": "4111'
    seeds["unicode-escape"] = b'{"name":"\\u00e9\\ud83d\\ude00","species":"\\u0063at","price_cents":1}'
    return seeds


# AMQP 0-9-1 field tables as rabbitmq-c reads them (amqp_table.c): a 32-bit length, then per
# entry a short-string name, a kind byte and the value.
def shortstr(b):
    return struct.pack(">B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def value(v):
    kind, x = v
    if kind == "S":
        return b"S" + longstr(x if isinstance(x, bytes) else x.encode())
    if kind == "x":
        return b"x" + longstr(x)
    if kind == "F":
        return b"F" + table(x)
    if kind == "A":
        items = b"".join(value(i) for i in x)
        return b"A" + struct.pack(">I", len(items)) + items
    if kind == "D":
        return b"D" + struct.pack(">Bi", *x)
    if kind == "V":
        return b"V"
    fmt = {"t": ">B", "b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I",
           "l": ">q", "L": ">Q", "f": ">f", "d": ">d", "T": ">Q"}[kind]
    return kind.encode() + struct.pack(fmt, x)


def table(entries):
    body = b"".join(shortstr(k if isinstance(k, bytes) else k.encode()) + value(v)
                    for k, v in entries)
    return struct.pack(">I", len(body)) + body


def amqp_seeds():
    envelope = [(k, ("S", v)) for k, v in headers("payment.charge.v1").items()]
    death = [("count", ("l", 3)), ("reason", ("S", "delivery_limit")),
             ("queue", ("S", "payment.commands")), ("time", ("T", 1714564800)),
             ("exchange", ("S", "petstore.commands")),
             ("routing-keys", ("A", [("S", "payment")]))]
    kinds = [("bool", ("t", 1)), ("i8", ("b", -5)), ("u8", ("B", 250)), ("i16", ("s", -300)),
             ("u16", ("u", 65000)), ("i32", ("I", -70000)), ("u32", ("i", 4000000000)),
             ("i64", ("l", -(2 ** 62))), ("u64", ("L", 2 ** 64 - 1)), ("f32", ("f", 1.5)),
             ("f64", ("d", -2.25)), ("decimal", ("D", (2, 12345))), ("void", ("V", None)),
             ("bytes", ("x", b"\x00\xff\xfe")), ("ts", ("T", 0))]
    return {
        "envelope": table(envelope),
        "envelope-with-x-death": table(envelope + [("x-death", ("A", [("F", death)])),
                                                   ("x-petstore-replay-count", ("l", 1))]),
        "every-kind": table(kinds),
        "nested-deep": table([("a", ("F", [("b", ("F", [("c", ("A", [("A", [("V", None)])]))]))]))]),
        "not-utf8": table([(b"k\xff\x00ey", ("S", b"caf\xc3\xa9 \xff\xfe")),
                           ("cloudEvents_source", ("S", b"/petstore/\xe9"))]),
        "duplicate-keys": table([("traceparent", ("S", TRACEPARENT)), ("traceparent", ("l", 7))]),
        "long-key": table([("k" * 255, ("S", "v"))]),
        "empty": table([]),
    }


def dictionary(words):
    return "".join(json.dumps(w) + "\n" for w in sorted(set(words)))


def write(out, target, seeds, words):
    d = os.path.join(out, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    with open(os.path.join(out, target + ".dict"), "w", encoding="utf-8") as f:
        f.write(dictionary(words))


def main():
    contracts, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    seeds, types = message_seeds(contracts)
    header_names = list(headers("x").keys())
    write(out, "fuzz_message", seeds,
          types + header_names + ["/petstore/", "1.0", MESSAGE_ID, TRACEPARENT, "Z", "T00:00:00"])
    write(out, "fuzz_http_body", http_seeds(),
          ["username", "password", "name", "species", "price_cents", "card_number", "pet_ids",
           "balance_cents", PET_A, "4111111111111111", "null", "true", "\\u0000"])
    write(out, "fuzz_amqp_headers", amqp_seeds(), header_names + ["x-death"])


if __name__ == "__main__":
    main()
