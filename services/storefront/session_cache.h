/* session_cache: the sessions one storefront instance has recently checked, so that a request
 * is authenticated without a database round trip.
 *
 * The sessions table stays the truth; the cache may only forget. An entry maps a token's
 * SHA-256 to its user and the session's expiry, and is trusted only while the instance hears
 * every deletion: a session deleted anywhere (DELETE /v1/sessions/current on any instance, an
 * operator, the expiry of its user) notifies "session <hash>" (a trigger on the table) and the
 * notices worker calls session_cache_forget. Notifications sent while that worker has no
 * database connection are lost, so session_cache_listening(0) empties the cache and turns it
 * off until session_cache_listening(1), which empties it again.
 *
 * A database read that raced with a deletion must not be cached: a caller takes a generation
 * with its miss and stores with it; any deletion or change of listening bumps the generation,
 * and a store with an older one is dropped.
 *
 * Direct-mapped (SESSION_CACHE_SLOTS slots indexed by the hash; a collision replaces), so its
 * memory is fixed. Thread-safe (one mutex). Pure: no database, unit-tested. */
#ifndef PETSTORE_SESSION_CACHE_H
#define PETSTORE_SESSION_CACHE_H

#include <stdint.h>
#include <time.h>

#define SESSION_CACHE_SLOTS 4096
#define SESSION_HASH_BYTES 32

/* 1 and the user (36 characters and a NUL) when the token hash is cached and its session has
 * not expired at now (wall-clock seconds); else 0 and *gen, to pass to session_cache_store. */
int session_cache_lookup(const unsigned char hash[SESSION_HASH_BYTES], time_t now, char user_id[37],
                         uint64_t *gen);

/* Remembers a session read from the database after a miss that returned gen; dropped if
 * anything was forgotten since, or while not listening. */
void session_cache_store(const unsigned char hash[SESSION_HASH_BYTES], const char *user_id,
                         time_t expires_at, uint64_t gen);

/* Forgets one session (its deletion was notified, or this instance deleted it). */
void session_cache_forget(const unsigned char hash[SESSION_HASH_BYTES]);

/* Forgets everything; on = whether deletions are heard from now on (the cache is used only
 * then). */
void session_cache_listening(int on);

#endif
