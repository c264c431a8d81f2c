"""services/storefront/openapi.yaml stays true: every route the storefront serves is documented
(and nothing else), and live answers to every call, successes and errors alike, match the
documented status codes, content types and schemas."""
import os
import re
import uuid

import jsonschema
import pytest
import yaml

import httpc
from petstore_env import need
from shop import api, create_card, create_pet, new_customer, place_order, wait_status

SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "services", "storefront")
SPEC = yaml.safe_load(open(os.path.join(SOURCE, "openapi.yaml")))
BUILTIN = {("GET", "/livez"), ("GET", "/readyz"), ("GET", "/metrics")}


def documented():
    return {(m.upper(), p) for p, item in SPEC["paths"].items() for m in item
            if m in ("get", "put", "post", "delete", "patch")}


def test_every_served_route_is_documented_and_every_documented_route_is_served():
    main = open(os.path.join(SOURCE, "main.c")).read()
    served = set(re.findall(r'\{"(GET|PUT|POST|DELETE|PATCH)", "([^"]+)", sf_', main))
    served = {(m, re.sub(r"\{pet_id\}", "{pet_id}", p)) for m, p in served} | BUILTIN
    assert served == documented()


def resolve(node):
    while "$ref" in node:
        target = SPEC
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def operation(method, path):
    for template, item in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in openapi.yaml")


checked = []


def check(method, url, response):
    """Validates one live response against the document."""
    path = url[len(api()):].split("?")[0]
    template, op = operation(method, path)
    status = str(response.status)
    assert status in op["responses"], f"{method} {template} answered undocumented {status}"
    documented_response = resolve(op["responses"][status])
    content = documented_response.get("content", {})
    if not content:
        assert not response.raw, f"{method} {template} {status}: a body where none is documented"
        checked.append((method, template, status))
        return response
    ctype = response.headers["Content-Type"].split(";")[0]
    assert ctype in content, f"{method} {template} {status}: {ctype} not in {list(content)}"
    if ctype.endswith("json"):
        schema = content[ctype]["schema"]
        validator = jsonschema.Draft202012Validator(
            schema, resolver=jsonschema.RefResolver.from_schema(SPEC))
        errors = sorted(validator.iter_errors(response.json), key=str)
        assert not errors, f"{method} {template} {status}: {errors[0].message}"
    checked.append((method, template, status))
    return response


def call(method, path, **kw):
    url = api() + path
    return check(method, url, httpc.request(method, url, **kw))


def test_live_answers_match_the_document():
    name = "u" + uuid.uuid4().hex[:10]
    call("POST", "/v1/users", body={"username": name, "password": "long enough"})
    call("POST", "/v1/users", body={"username": name, "password": "long enough"})  # 409
    call("POST", "/v1/users", body={"username": "X", "password": "x"})  # 422
    token = call("POST", "/v1/sessions",
                 body={"username": name, "password": "long enough"}).json["token"]
    call("POST", "/v1/sessions", body={"username": name, "password": "wrong password"})  # 401
    admin = need("ADMIN_TOKEN")
    call("POST", "/v1/pets", body={"name": "Doc", "species": "dog", "price_cents": 900},
         token=admin)
    call("POST", "/v1/pets", body={"name": "", "species": "dog", "price_cents": -1}, token=admin)
    call("POST", "/v1/pets", body={"name": "Doc", "species": "dog", "price_cents": 1})  # 401
    pet = create_pet(900)
    call("GET", "/v1/pets?limit=2")
    call("GET", "/v1/pets?limit=500")  # 422
    call("GET", f"/v1/pets/{pet}")
    call("GET", f"/v1/pets/{uuid.uuid4()}")  # 404
    call("GET", "/v1/cart", token=token)
    call("GET", "/v1/cart")  # 401
    call("PUT", f"/v1/cart/items/{pet}", token=token)
    call("PUT", f"/v1/cart/items/{uuid.uuid4()}", token=token)  # 404
    call("DELETE", f"/v1/cart/items/{pet}", token=token)
    number, _card = create_card(100_000)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    order = call("POST", "/v1/orders", body={"card_number": number, "pet_ids": [pet]},
                 token=token, headers=key).json
    call("POST", "/v1/orders", body={"card_number": number, "pet_ids": [pet]}, token=token)  # 400
    call("POST", "/v1/orders", body={"card_number": "1"}, token=token, headers=key)  # 422
    call("POST", "/v1/orders", raw=b"x", token=token,
         headers={**key, "Content-Type": "text/plain"})  # 415
    call("GET", f"/v1/orders/{order['id']}", token=token)
    call("GET", f"/v1/orders/{order['id']}?wait=1&status=PENDING", token=token)
    call("GET", f"/v1/orders/{order['id']}?wait=99", token=token)  # 422
    call("GET", f"/v1/orders/{uuid.uuid4()}", token=token)  # 404
    call("GET", "/v1/orders", token=token)
    wait_status(token, order["id"])
    call("POST", f"/v1/orders/{order['id']}/cancel", token=token)  # 409: finished
    other = place_order(token, number, [create_pet(100)])
    call("POST", f"/v1/orders/{other}/cancel", token=token)  # 202 or 409 depending on timing
    call("GET", f"/v1/orders/{order['id']}/events", token=token)
    call("POST", "/v1/orders", body={"card_number": number, "pet_ids": [pet]}, token=token,
         headers={"Idempotency-Key": str(uuid.uuid4())})  # 409: sold
    call("DELETE", "/v1/sessions/current", token=token)
    call("GET", "/livez")
    call("GET", "/readyz")
    call("GET", "/metrics")
    statuses = {s for _m, _t, s in checked}
    assert {"200", "201", "202", "204", "400", "401", "404", "409", "415", "422"} <= statuses
