/* hex: the nibble table is the whole encoder; the high nibble comes first, as in every hex dump
 * and in PostgreSQL's encode(x, 'hex'). */
#include "hex.h"

char *hex_encode(const void *bin, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = bin;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 0x0f];
    }
    out[2 * len] = '\0';
    return out;
}
