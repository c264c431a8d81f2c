/* card_seal: seal a card number for the payment service (see card_seal.h). */
#include "card_seal.h"

#include <string.h>

int card_seal(const unsigned char *pubkey, const char *number, char *out_b64)
{
    unsigned char sealed[CARD_NUMBER_MAX + crypto_box_SEALBYTES];
    size_t len = 0;

    out_b64[0] = '\0';
    if (pubkey == NULL || number == NULL)
        return -1;
    /* Count at most one digit past the maximum so an over-long string is rejected cheaply. */
    while (len <= CARD_NUMBER_MAX && number[len] >= '0' && number[len] <= '9')
        len++;
    if (number[len] != '\0' && len <= CARD_NUMBER_MAX)
        return -1; /* a non-digit */
    if (len < CARD_NUMBER_MIN || len > CARD_NUMBER_MAX)
        return -1;
    if (sodium_init() < 0)
        return -1;
    if (crypto_box_seal(sealed, (const unsigned char *)number, len, pubkey) != 0)
        return -1;
    sodium_bin2base64(out_b64, CARD_SEALED_B64_SIZE, sealed, len + crypto_box_SEALBYTES,
                      sodium_base64_VARIANT_ORIGINAL);
    return 0;
}
