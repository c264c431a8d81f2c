/* card: card numbers, their keyed hash and their sealed boxes (see card.h).
 *
 * Every buffer that held a secret (a card number, a decoded key) is wiped before it goes out of
 * scope. Nothing here logs. */
#include "card.h"

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int card_init(void) { return sodium_init() < 0 ? ERR_INTERNAL : 0; }

/* malloc_usable_size is the whole block malloc handed out (glibc; the sanitizers intercept
 * it), at least what jansson asked for. */
static void wiping_free(void *p)
{
    if (p != NULL)
        sodium_memzero(p, malloc_usable_size(p));
    free(p);
}

void card_wipe_json_frees(void) { json_set_alloc_funcs(malloc, wiping_free); }

int card_syntax_ok(const char *number)
{
    size_t len = 0;
    if (number == NULL)
        return 0;
    while (len <= CARD_NUMBER_MAX && number[len] >= '0' && number[len] <= '9')
        len++;
    return number[len] == '\0' && len >= CARD_NUMBER_MIN && len <= CARD_NUMBER_MAX;
}

int card_luhn_ok(const char *number)
{
    if (number == NULL || number[0] == '\0')
        return 0;
    size_t len = strlen(number);
    unsigned sum = 0;
    /* From the rightmost digit (the check digit) leftwards, every second digit is doubled and
     * a doubled value above 9 contributes its digit sum (d*2 - 9). */
    for (size_t i = 0; i < len; i++) {
        char c = number[len - 1 - i];
        if (c < '0' || c > '9')
            return 0;
        unsigned d = (unsigned)(c - '0');
        if (i % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return sum % 10 == 0;
}

int card_number_check(const char *number)
{
    return card_syntax_ok(number) && card_luhn_ok(number) ? 0 : ERR_INVALID;
}

void card_last4(const char *number, char out[5])
{
    size_t len = number != NULL ? strlen(number) : 0;
    if (len < 4) {
        out[0] = '\0';
        return;
    }
    memcpy(out, number + len - 4, 4);
    out[4] = '\0';
}

void card_hash(const card_keys_t *keys, const char *number, unsigned char out[CARD_HASH_BYTES])
{
    crypto_generichash(out, CARD_HASH_BYTES, (const unsigned char *)number, strlen(number),
                       keys->hash_key, CARD_HASH_KEY_BYTES);
}

int card_open(const card_keys_t *keys, const char *sealed_b64, char number[CARD_NUMBER_SIZE])
{
    unsigned char sealed[CARD_NUMBER_MAX + crypto_box_SEALBYTES];
    size_t sealed_len = 0;
    int rc = ERR_INVALID;

    number[0] = '\0';
    if (sealed_b64 == NULL)
        return ERR_INVALID;
    /* A text longer than the largest valid box is rejected before decoding; sodium_base642bin
     * also refuses to write past sizeof(sealed). */
    size_t b64_len = strnlen(sealed_b64, CARD_SEALED_B64_SIZE);
    if (b64_len >= CARD_SEALED_B64_SIZE)
        return ERR_INVALID;
    if (sodium_base642bin(sealed, sizeof(sealed), sealed_b64, b64_len, NULL, &sealed_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return ERR_INVALID;
    if (sealed_len <= crypto_box_SEALBYTES)
        goto out;
    size_t len = sealed_len - crypto_box_SEALBYTES;
    if (crypto_box_seal_open((unsigned char *)number, sealed, sealed_len, keys->public_key,
                             keys->secret_key) != 0)
        goto out;
    number[len] = '\0';
    if (memchr(number, '\0', len) != NULL)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        sodium_memzero(number, CARD_NUMBER_SIZE);
    sodium_memzero(sealed, sizeof(sealed));
    return rc;
}

int card_keys_generate(card_keys_t *keys)
{
    if (crypto_box_keypair(keys->public_key, keys->secret_key) != 0)
        return ERR_INTERNAL;
    crypto_generichash_keygen(keys->hash_key);
    return 0;
}

/* Decodes text into exactly len bytes. Returns 0, or -1 if text is not base64 of len bytes. */
static int decode_exact(const char *text, unsigned char *out, size_t len)
{
    size_t got = 0;
    if (text == NULL)
        return -1;
    if (sodium_base642bin(out, len, text, strlen(text), " \t\r\n", &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    return got == len ? 0 : -1;
}

static void append_problem(char *buf, size_t size, const char *problem)
{
    size_t used = strlen(buf);
    if (used < size)
        snprintf(buf + used, size - used, "%s%s", used > 0 ? "; " : "", problem);
}

int card_keys_decode(const char *secret_b64, const char *public_b64, const char *hash_b64,
                     card_keys_t *keys, err_t *e)
{
    char problems[240] = "";
    int secret_ok = 0, public_ok = 0;

    sodium_memzero(keys, sizeof(*keys));
    if (secret_b64 == NULL || secret_b64[0] == '\0')
        append_problem(problems, sizeof(problems), "PAYMENT_SECRET_KEY is not set");
    else if (decode_exact(secret_b64, keys->secret_key, sizeof(keys->secret_key)) != 0)
        append_problem(problems, sizeof(problems),
                       "PAYMENT_SECRET_KEY is not base64 of a 32-byte crypto_box secret key");
    else
        secret_ok = 1;
    if (public_b64 == NULL || public_b64[0] == '\0')
        append_problem(problems, sizeof(problems), "PAYMENT_PUBLIC_KEY is not set");
    else if (decode_exact(public_b64, keys->public_key, sizeof(keys->public_key)) != 0)
        append_problem(problems, sizeof(problems),
                       "PAYMENT_PUBLIC_KEY is not base64 of a 32-byte crypto_box public key");
    else
        public_ok = 1;
    if (hash_b64 == NULL || hash_b64[0] == '\0')
        append_problem(problems, sizeof(problems), "CARD_HASH_KEY is not set");
    else if (decode_exact(hash_b64, keys->hash_key, sizeof(keys->hash_key)) != 0)
        append_problem(problems, sizeof(problems), "CARD_HASH_KEY is not base64 of 32 bytes");
    if (secret_ok && public_ok) {
        /* A public key from another pair would let the front door seal boxes that this
         * service can never open: every order would be declined CARD_INVALID. */
        unsigned char derived[crypto_box_PUBLICKEYBYTES];
        if (crypto_scalarmult_base(derived, keys->secret_key) != 0 ||
            sodium_memcmp(derived, keys->public_key, sizeof(derived)) != 0)
            append_problem(problems, sizeof(problems),
                           "PAYMENT_PUBLIC_KEY does not belong to PAYMENT_SECRET_KEY");
    }
    if (problems[0] == '\0')
        return 0;
    sodium_memzero(keys, sizeof(*keys));
    return err_set(e, ERR_CONFIG, "%s", problems);
}

int card_public_key_decode(const char *public_b64, unsigned char out[crypto_box_PUBLICKEYBYTES],
                           err_t *e)
{
    if (decode_exact(public_b64, out, crypto_box_PUBLICKEYBYTES) != 0)
        return err_set(e, ERR_CONFIG,
                       "PAYMENT_PUBLIC_KEY is not base64 of a 32-byte crypto_box public key");
    return 0;
}

int card_keys_format(const card_keys_t *keys, char *out, size_t out_size)
{
    char sk[sodium_base64_ENCODED_LEN(crypto_box_SECRETKEYBYTES, sodium_base64_VARIANT_ORIGINAL)];
    char pk[sodium_base64_ENCODED_LEN(crypto_box_PUBLICKEYBYTES, sodium_base64_VARIANT_ORIGINAL)];
    char hk[sodium_base64_ENCODED_LEN(CARD_HASH_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(sk, sizeof(sk), keys->secret_key, sizeof(keys->secret_key),
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(pk, sizeof(pk), keys->public_key, sizeof(keys->public_key),
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(hk, sizeof(hk), keys->hash_key, sizeof(keys->hash_key),
                      sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(out, out_size,
                     "export PAYMENT_SECRET_KEY=%s\nexport PAYMENT_PUBLIC_KEY=%s\n"
                     "export CARD_HASH_KEY=%s\n",
                     sk, pk, hk);
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(hk, sizeof(hk));
    if (n < 0 || (size_t)n >= out_size) {
        sodium_memzero(out, out_size);
        return ERR_INTERNAL;
    }
    return 0;
}
