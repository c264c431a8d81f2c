/* card_seal: the sealing half of card protection, for any daemon that accepts card numbers.
 *
 * The front door never keeps a card number: it seals it with the payment service's public key
 * (a libsodium sealed box, crypto_box_seal) and passes on only the sealed text, which no one but
 * the payment service can open. The sealed text is part of the message contract (the
 * card_sealed field of order.placed.v1 and payment.charge.v1), so sealing lives in
 * petstore_contracts beside the codec: a daemon that accepts card numbers links the contracts,
 * never the payment service. This header depends on libsodium alone.
 *
 * The sealed text is standard base64 (with padding) of crypto_box_seal(number) where number is
 * the card's ASCII digits, no separators and no terminating NUL. Thread-safe after sodium_init()
 * has succeeded once in the process (card_seal calls it itself; it is idempotent). */
#ifndef PETSTORE_CARD_SEAL_H
#define PETSTORE_CARD_SEAL_H

#include <sodium.h>

/* Card numbers are 12 to 19 ASCII digits. */
#define CARD_NUMBER_MIN 12
#define CARD_NUMBER_MAX 19

/* Size of the buffer card_seal writes: the base64 of the longest sealed number, plus NUL. */
#define CARD_SEALED_B64_SIZE                                                                       \
    sodium_base64_ENCODED_LEN(CARD_NUMBER_MAX + crypto_box_SEALBYTES,                              \
                              sodium_base64_VARIANT_ORIGINAL)

/* Seals number (borrowed, 12-19 ASCII digits, NUL-terminated) for the holder of the secret key
 * that belongs to pubkey (borrowed, crypto_box_PUBLICKEYBYTES bytes) and writes the standard
 * base64 text, NUL-terminated, into out_b64 (caller-owned, at least CARD_SEALED_B64_SIZE bytes).
 * Returns 0, or -1 when number is not 12-19 digits or libsodium cannot be initialised; out_b64
 * is then an empty string. Sealing is randomised: two seals of one number differ. */
int card_seal(const unsigned char *pubkey, const char *number, char *out_b64)
    __attribute__((warn_unused_result));

#endif
