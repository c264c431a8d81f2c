"""Point 9 of issue 13 (the HTTP part): what a client sends cannot grow /metrics. A method label
is one of a fixed set or "other", a route label is a pattern of the route table or "unmatched";
never the raw method or path, so invented methods and paths add at most a fixed number of series
(no login needed to send them)."""
import http.client
import re
import urllib.parse
import uuid

import httpc
from shop import api

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ")
# Fixed by the label sets, whatever the clients send: route "unmatched" x method (a known one or
# "other") x the few statuses the server answers with, plus one duration histogram.
MAX_NEW_SAMPLES = 60


def samples():
    """The sample lines of the storefront's /metrics, as a set of "name{labels}"."""
    r = httpc.get(api() + "/metrics")
    assert r.status == 200, r
    out = set()
    for line in r.raw.decode().splitlines():
        m = SAMPLE.match(line)
        if m:
            out.add(m.group(1) + (m.group(2) or ""))
    return out


def test_invented_methods_and_paths_add_a_bounded_number_of_series():
    before = samples()
    url = urllib.parse.urlsplit(api())
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    invented = []
    try:
        for i in range(500):
            tag = uuid.uuid4().hex[:10].upper()
            method = "X" + tag if i % 2 == 0 else "GET"
            path = f"/v1/{tag.lower()}/{i}" if i % 3 else "/v1/pets"
            invented.append((method, path))
            conn.request(method, path)
            resp = conn.getresponse()
            resp.read()
            assert resp.status in (400, 404, 405, 501, 200), (method, path, resp.status)
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    finally:
        conn.close()
    after = samples()
    new = after - before
    assert len(new) <= MAX_NEW_SAMPLES, sorted(new)[:20]
    text = "\n".join(after)
    for method, path in invented:
        if method != "GET":
            assert method not in text, f"the raw method {method} became a label"
        if path != "/v1/pets":
            assert path not in text, f"the raw path {path} became a label"
    # The route label of a request the table answered is its pattern.
    assert any('route="/v1/pets"' in s for s in after if s.startswith("petstore_http_requests"))
