/* card: everything the payment service does with a card number, with no I/O.
 *
 * A card number reaches the payment service only inside a sealed box (see seal/card_seal.h).
 * card_open() opens it with the service's secret key into a caller-owned buffer that the caller
 * wipes with sodium_memzero() as soon as it has what it needs: the validity verdict
 * (card_number_check: 12-19 digits and the Luhn checksum), the last four digits (the only part
 * that is ever logged, stored or sent on) and the keyed hash by which cards are looked up
 * (BLAKE2b keyed with CARD_HASH_KEY, so a stolen database does not reveal which numbers it
 * holds without the key). The number itself is never stored.
 *
 * Keys: PAYMENT_SECRET_KEY and PAYMENT_PUBLIC_KEY (a crypto_box key pair) and CARD_HASH_KEY (32
 * bytes), each standard base64. card_keys_generate() makes a fresh set; card_keys_format()
 * prints them as shell `export` lines.
 *
 * Thread-safe after card_init() (which initialises libsodium) has returned 0; a card_keys_t is
 * read-only once loaded and may be shared between threads. */
#ifndef PETSTORE_CARD_H
#define PETSTORE_CARD_H

#include <sodium.h>
#include <stddef.h>

#include "card_seal.h"
#include "err.h"

#define CARD_HASH_BYTES crypto_generichash_BYTES
#define CARD_HASH_KEY_BYTES crypto_generichash_KEYBYTES
/* Buffer size for an opened card number: the digits plus NUL. */
#define CARD_NUMBER_SIZE (CARD_NUMBER_MAX + 1)
/* Buffer size that always holds card_keys_format's text. */
#define CARD_KEYS_TEXT_SIZE 512

typedef struct card_keys {
    unsigned char public_key[crypto_box_PUBLICKEYBYTES];
    unsigned char secret_key[crypto_box_SECRETKEYBYTES];
    unsigned char hash_key[CARD_HASH_KEY_BYTES];
} card_keys_t;

/* Initialises libsodium. Returns 0 or ERR_INTERNAL. Call once before anything else here. */
int card_init(void) PETSTORE_NODISCARD;

/* Makes every jansson free in this process wipe the block first (jansson still allocates with
 * malloc, so its results stay free()-able). The admin API parses card numbers with jansson,
 * whose parser copies each string token into buffers it frees unwiped. Call once, early. */
void card_wipe_json_frees(void);

/* 1 if number (borrowed) is 12-19 ASCII digits and nothing else, else 0. */
int card_syntax_ok(const char *number);

/* 1 if number (borrowed) is made of digits only (any length >= 1) and passes the Luhn
 * checksum, else 0. */
int card_luhn_ok(const char *number);

/* 0 if number is a valid card number (syntax and Luhn), else ERR_INVALID. */
int card_number_check(const char *number) PETSTORE_NODISCARD;

/* Writes the last four characters of number (borrowed, at least four long) to out as a
 * NUL-terminated string; "" when number is shorter. */
void card_last4(const char *number, char out[5]);

/* Writes the keyed hash of number (borrowed) under keys->hash_key to out. */
void card_hash(const card_keys_t *keys, const char *number, unsigned char out[CARD_HASH_BYTES]);

/* Opens sealed_b64 (borrowed, standard base64 of a sealed box) with keys and writes the
 * plaintext, NUL-terminated, into number (caller-owned, CARD_NUMBER_SIZE bytes; the caller wipes
 * it). Returns 0, or ERR_INVALID when the text is not base64, the box does not open with these
 * keys (wrong key, tampered, truncated) or the plaintext is empty, longer than 19 bytes or holds
 * a NUL byte. It does not check that the plaintext is a card number: see card_number_check. */
int card_open(const card_keys_t *keys, const char *sealed_b64,
              char number[CARD_NUMBER_SIZE]) PETSTORE_NODISCARD;

/* Fills keys with a fresh key pair and hash key. Returns 0 or ERR_INTERNAL. */
int card_keys_generate(card_keys_t *keys) PETSTORE_NODISCARD;

/* Decodes the three base64 texts (borrowed; any may be NULL, meaning unset) into keys and checks
 * them: lengths, and that the public key belongs to the secret key. Returns 0 or ERR_CONFIG, with
 * every problem named in e's message (never a key's value). keys is left wiped on failure. */
int card_keys_decode(const char *secret_b64, const char *public_b64, const char *hash_b64,
                     card_keys_t *keys, err_t *e) PETSTORE_NODISCARD;

/* Decodes one public key (borrowed base64 text) into out. Returns 0 or ERR_CONFIG. */
int card_public_key_decode(const char *public_b64, unsigned char out[crypto_box_PUBLICKEYBYTES],
                           err_t *e) PETSTORE_NODISCARD;

/* Writes the three keys as `export NAME=value` lines, one per key, into out (caller-owned,
 * NUL-terminated, out_size bytes). Returns 0, or ERR_INTERNAL if out is too small
 * (CARD_KEYS_TEXT_SIZE always suffices). */
int card_keys_format(const card_keys_t *keys, char *out, size_t out_size) PETSTORE_NODISCARD;

#endif
