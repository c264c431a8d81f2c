"""A small JSON HTTP client over urllib: status, headers and parsed body, never raising on
HTTP error statuses."""
import json
import time
import urllib.error
import urllib.request


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        ctype = headers.get("Content-Type", "")
        self.json = json.loads(raw) if raw and "json" in ctype else None

    def __repr__(self):
        return f"<{self.status} {self.raw[:200]!r}>"


def request(method, url, body=None, headers=None, token=None, raw=None, timeout=35,
            retries_503=10):
    """One HTTP call. A 503 with Retry-After (a dependency restarting) is retried like a
    well-behaved client would, a bounded number of times; then it is returned."""
    for _ in range(retries_503):
        r = _once(method, url, body, headers, token, raw, timeout)
        if r.status != 503 or "Retry-After" not in r.headers:
            return r
        time.sleep(min(float(r.headers["Retry-After"]), 2.0))
    return _once(method, url, body, headers, token, raw, timeout)


def _once(method, url, body, headers, token, raw, timeout):
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


def get(url, **kw):
    return request("GET", url, **kw)


def post(url, body=None, **kw):
    return request("POST", url, body=body, **kw)


def put(url, body=None, **kw):
    return request("PUT", url, body=body, **kw)


def delete(url, **kw):
    return request("DELETE", url, **kw)
