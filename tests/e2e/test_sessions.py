"""Sessions are checked without a database round trip per request (each storefront instance
caches the sessions it has seen), yet a session ended anywhere is refused everywhere at once:
its deletion notifies every instance. While an instance cannot hear those notifications (its
notices connection is gone) it trusts no cached session, and it forgets them all when it hears
again."""
import pytest

import db
import httpc
from shop import api, new_customer
from storefront_proc import Storefront
from wait import wait_until


@pytest.fixture
def second():
    sf = Storefront()
    yield sf
    sf.stop()


def accepted(url, token):
    return httpc.get(url + "/v1/orders", token=token, retries_503=0).status == 200


def refused(url, token):
    r = httpc.get(url + "/v1/orders", token=token, retries_503=0)
    assert r.status in (200, 401), r
    return r.status == 401


def test_a_session_ended_on_one_instance_is_refused_on_the_other(second):
    token = new_customer()
    assert accepted(api(), token) and accepted(second.url, token)  # both have seen it
    assert accepted(second.url, token)
    r = httpc.delete(api() + "/v1/sessions/current", token=token)
    assert r.status == 204
    assert refused(api(), token), "the instance that ended it refuses it at once"
    wait_until(lambda: refused(second.url, token), timeout=5,
               what="the other instance refusing the ended session")


def test_a_session_deleted_or_shortened_in_the_database_is_refused(second):
    sf = db.connect("storefront")
    token, other = new_customer(), new_customer()
    for t in (token, other):
        assert accepted(api(), t) and accepted(second.url, t)
    db.rows(sf, "DELETE FROM sessions WHERE token_hash = sha256(convert_to(%s, 'UTF8'))", token)
    db.rows(sf, "UPDATE sessions SET expires_at = now() - interval '1 second'"
                " WHERE token_hash = sha256(convert_to(%s, 'UTF8'))", other)
    for url in (api(), second.url):
        wait_until(lambda: refused(url, token) and refused(url, other), timeout=5,
                   what=f"{url} refusing the deleted and the expired session")
    sf.close()


def test_sessions_deleted_while_an_instance_could_not_hear_are_refused_when_it_hears_again(second):
    admin = db.admin("storefront")
    sf = db.connect("storefront")
    token = new_customer()
    assert accepted(second.url, token)
    # Cut every notices connection; each instance reconnects with backoff.
    cut = db.value(admin, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                          " WHERE application_name = 'storefront notices'")
    assert cut >= 2, "one notices connection per instance"
    db.rows(sf, "DELETE FROM sessions WHERE token_hash = sha256(convert_to(%s, 'UTF8'))", token)
    assert refused(second.url, token)
    assert refused(api(), token)
    wait_until(lambda: db.value(admin, "SELECT count(*) FROM pg_stat_activity WHERE"
                                       " application_name = 'storefront notices'") >= 2,
               timeout=15, what="the notices connections back")
    fresh = new_customer()
    assert accepted(second.url, fresh) and accepted(api(), fresh)
    assert refused(second.url, token) and refused(api(), token)
    admin.close()
    sf.close()
