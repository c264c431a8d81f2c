/* session_cache: see session_cache.h. */
#include "session_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef struct slot {
    int used;
    unsigned char hash[SESSION_HASH_BYTES];
    char user_id[37];
    time_t expires_at;
} slot_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot_t slots[SESSION_CACHE_SLOTS]; /* guarded by lock, like the two below */
static uint64_t generation = 1;
static int listening;

/* The hash is uniformly random (SHA-256 of a random token): its first bytes index well. */
static slot_t *slot_of(const unsigned char *hash)
{
    unsigned idx = ((unsigned)hash[0] << 16 | (unsigned)hash[1] << 8 | hash[2]);
    return &slots[idx % SESSION_CACHE_SLOTS];
}

int session_cache_lookup(const unsigned char hash[SESSION_HASH_BYTES], time_t now, char user_id[37],
                         uint64_t *gen)
{
    int hit = 0;
    pthread_mutex_lock(&lock);
    slot_t *s = slot_of(hash);
    if (listening && s->used && memcmp(s->hash, hash, SESSION_HASH_BYTES) == 0) {
        if (now < s->expires_at) {
            snprintf(user_id, 37, "%s", s->user_id);
            hit = 1;
        } else {
            s->used = 0; /* expired: the database decides again (and says no) */
        }
    }
    *gen = listening ? generation : 0;
    pthread_mutex_unlock(&lock);
    return hit;
}

void session_cache_store(const unsigned char hash[SESSION_HASH_BYTES], const char *user_id,
                         time_t expires_at, uint64_t gen)
{
    if (user_id == NULL || strlen(user_id) != 36)
        return;
    pthread_mutex_lock(&lock);
    if (listening && gen == generation) {
        slot_t *s = slot_of(hash);
        s->used = 1;
        memcpy(s->hash, hash, SESSION_HASH_BYTES);
        memcpy(s->user_id, user_id, 37);
        s->expires_at = expires_at;
    }
    pthread_mutex_unlock(&lock);
}

void session_cache_forget(const unsigned char hash[SESSION_HASH_BYTES])
{
    pthread_mutex_lock(&lock);
    slot_t *s = slot_of(hash);
    if (s->used && memcmp(s->hash, hash, SESSION_HASH_BYTES) == 0)
        s->used = 0;
    generation++;
    pthread_mutex_unlock(&lock);
}

void session_cache_listening(int on)
{
    pthread_mutex_lock(&lock);
    memset(slots, 0, sizeof(slots));
    generation++;
    listening = on;
    pthread_mutex_unlock(&lock);
}
