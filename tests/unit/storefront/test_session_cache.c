/* The storefront's session cache (services/storefront/session_cache.h): trusted only while
 * deletions are heard, never keeps a read that raced with a deletion, forgets expired ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "session_cache.h"

static const char USER[] = "7f3c2a10-0000-4000-8000-000000000001";
static const char OTHER[] = "7f3c2a10-0000-4000-8000-000000000002";

static void hash_of(unsigned char h[SESSION_HASH_BYTES], unsigned char seed)
{
    for (int i = 0; i < SESSION_HASH_BYTES; i++)
        h[i] = (unsigned char)(seed * 31 + i);
}

static int setup(void **state)
{
    (void)state;
    session_cache_listening(1);
    return 0;
}

static void test_a_stored_session_is_found_until_it_expires(void **state)
{
    (void)state;
    unsigned char h[SESSION_HASH_BYTES];
    hash_of(h, 1);
    char user[37];
    uint64_t gen = 0;
    assert_int_equal(session_cache_lookup(h, 1000, user, &gen), 0);
    assert_true(gen != 0);
    session_cache_store(h, USER, 2000, gen);
    assert_int_equal(session_cache_lookup(h, 1999, user, &gen), 1);
    assert_string_equal(user, USER);
    assert_int_equal(session_cache_lookup(h, 2000, user, &gen), 0); /* expired */
    assert_int_equal(session_cache_lookup(h, 1500, user, &gen), 0); /* and forgotten */
}

static void test_a_forgotten_session_is_asked_again(void **state)
{
    (void)state;
    unsigned char h[SESSION_HASH_BYTES];
    hash_of(h, 2);
    char user[37];
    uint64_t gen = 0;
    (void)session_cache_lookup(h, 0, user, &gen);
    session_cache_store(h, USER, 100, gen);
    session_cache_forget(h);
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 0);
}

static void test_a_read_that_raced_with_a_deletion_is_not_kept(void **state)
{
    (void)state;
    unsigned char h[SESSION_HASH_BYTES], other[SESSION_HASH_BYTES];
    hash_of(h, 3);
    hash_of(other, 4);
    char user[37];
    uint64_t gen = 0, now = 0;
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 0);
    /* The database said yes; before the answer is stored, the session's deletion is heard. */
    session_cache_forget(h);
    session_cache_store(h, USER, 100, gen);
    assert_int_equal(session_cache_lookup(h, 0, user, &now), 0);
    /* Any deletion counts (the generation is global): a store from before it is dropped. */
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 0);
    session_cache_forget(other);
    session_cache_store(h, USER, 100, gen);
    assert_int_equal(session_cache_lookup(h, 0, user, &now), 0);
    /* A store with the generation of the latest miss is kept. */
    session_cache_store(h, USER, 100, now);
    assert_int_equal(session_cache_lookup(h, 0, user, &now), 1);
}

static void test_nothing_is_trusted_while_deletions_are_not_heard(void **state)
{
    (void)state;
    unsigned char h[SESSION_HASH_BYTES];
    hash_of(h, 5);
    char user[37];
    uint64_t gen = 0;
    (void)session_cache_lookup(h, 0, user, &gen);
    session_cache_store(h, USER, 100, gen);
    session_cache_listening(0); /* the notices connection is lost */
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 0);
    assert_int_equal(gen, 0);
    session_cache_store(h, USER, 100, gen);
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 0);
    session_cache_listening(1); /* back: empty, then used again */
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 0);
    session_cache_store(h, USER, 100, gen);
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 1);
}

static void test_a_colliding_session_replaces_the_other(void **state)
{
    (void)state;
    unsigned char a[SESSION_HASH_BYTES], b[SESSION_HASH_BYTES];
    hash_of(a, 6);
    memcpy(b, a, sizeof(b));
    b[SESSION_HASH_BYTES - 1] ^= 0xff; /* same slot, another token */
    char user[37];
    uint64_t gen = 0;
    (void)session_cache_lookup(a, 0, user, &gen);
    session_cache_store(a, USER, 100, gen);
    session_cache_store(b, OTHER, 100, gen);
    assert_int_equal(session_cache_lookup(a, 0, user, &gen), 0);
    assert_int_equal(session_cache_lookup(b, 0, user, &gen), 1);
    assert_string_equal(user, OTHER);
    session_cache_forget(a); /* not the one cached: b stays */
    assert_int_equal(session_cache_lookup(b, 0, user, &gen), 1);
}

static void test_a_malformed_user_is_not_stored(void **state)
{
    (void)state;
    unsigned char h[SESSION_HASH_BYTES];
    hash_of(h, 7);
    char user[37];
    uint64_t gen = 0;
    (void)session_cache_lookup(h, 0, user, &gen);
    session_cache_store(h, "short", 100, gen);
    session_cache_store(h, NULL, 100, gen);
    assert_int_equal(session_cache_lookup(h, 0, user, &gen), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_a_stored_session_is_found_until_it_expires, setup),
        cmocka_unit_test_setup(test_a_forgotten_session_is_asked_again, setup),
        cmocka_unit_test_setup(test_a_read_that_raced_with_a_deletion_is_not_kept, setup),
        cmocka_unit_test_setup(test_nothing_is_trusted_while_deletions_are_not_heard, setup),
        cmocka_unit_test_setup(test_a_colliding_session_replaces_the_other, setup),
        cmocka_unit_test_setup(test_a_malformed_user_is_not_stored, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
