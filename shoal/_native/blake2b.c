/* BLAKE2b as specified by RFC 7693, sections 2 and 3, written for Shoal. */
#include "blake2b.h"

#include <string.h>

static const uint64_t IV[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL,
    0xA54FF53A5F1D36F1ULL, 0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL,
    0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL,
};

/* Message word schedule, RFC 7693 section 2.7; rounds 10 and 11 reuse rows 0 and 1. */
static const uint8_t SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t rotr(uint64_t x, unsigned n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* The mixing function G, RFC 7693 section 3.1, with rotations 32, 24, 16, 63. */
#define G(a, b, c, d, x, y)                 \
    do {                                    \
        v[a] = v[a] + v[b] + (x);           \
        v[d] = rotr(v[d] ^ v[a], 32);       \
        v[c] = v[c] + v[d];                 \
        v[b] = rotr(v[b] ^ v[c], 24);       \
        v[a] = v[a] + v[b] + (y);           \
        v[d] = rotr(v[d] ^ v[a], 16);       \
        v[c] = v[c] + v[d];                 \
        v[b] = rotr(v[b] ^ v[c], 63);       \
    } while (0)

/* The compression function F, RFC 7693 section 3.2. */
static void compress(shoal_blake2b *s, const uint8_t block[SHOAL_BLAKE2B_BLOCK], int last)
{
    uint64_t v[16], m[16];
    for (int i = 0; i < 16; i++)
        m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = IV[i];
    }
    v[12] ^= s->t[0];
    v[13] ^= s->t[1];
    if (last)
        v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *z = SIGMA[r];
        G(0, 4, 8, 12, m[z[0]], m[z[1]]);
        G(1, 5, 9, 13, m[z[2]], m[z[3]]);
        G(2, 6, 10, 14, m[z[4]], m[z[5]]);
        G(3, 7, 11, 15, m[z[6]], m[z[7]]);
        G(0, 5, 10, 15, m[z[8]], m[z[9]]);
        G(1, 6, 11, 12, m[z[10]], m[z[11]]);
        G(2, 7, 8, 13, m[z[12]], m[z[13]]);
        G(3, 4, 9, 14, m[z[14]], m[z[15]]);
    }
    for (int i = 0; i < 8; i++)
        s->h[i] ^= v[i] ^ v[i + 8];
}

static void count(shoal_blake2b *s, uint64_t n)
{
    s->t[0] += n;
    if (s->t[0] < n)
        s->t[1]++;
}

int shoal_blake2b_init(shoal_blake2b *s, size_t outlen, const uint8_t *key, size_t keylen,
                       const uint8_t *salt, size_t saltlen, const uint8_t *person,
                       size_t personlen)
{
    uint8_t param[64];
    if (outlen < 1 || outlen > SHOAL_BLAKE2B_OUT || keylen > SHOAL_BLAKE2B_KEY ||
        saltlen > SHOAL_BLAKE2B_SALT || personlen > SHOAL_BLAKE2B_PERSON)
        return -1;
    /* The parameter block (RFC 7693 section 2.5; salt and personalisation as in the
     * BLAKE2 paper): digest length, key length, fanout 1, depth 1, the rest zero. */
    memset(param, 0, sizeof param);
    param[0] = (uint8_t)outlen;
    param[1] = (uint8_t)keylen;
    param[2] = 1;
    param[3] = 1;
    if (saltlen)
        memcpy(param + 32, salt, saltlen);
    if (personlen)
        memcpy(param + 48, person, personlen);
    for (int i = 0; i < 8; i++)
        s->h[i] = IV[i] ^ load64(param + 8 * i);
    s->t[0] = s->t[1] = 0;
    s->used = 0;
    s->outlen = outlen;
    memset(s->buf, 0, sizeof s->buf);
    if (keylen) {
        /* The key, zero-padded to a whole block, is the first block of input. */
        memcpy(s->buf, key, keylen);
        s->used = SHOAL_BLAKE2B_BLOCK;
    }
    return 0;
}

void shoal_blake2b_update(shoal_blake2b *s, const uint8_t *in, size_t len)
{
    while (len > 0) {
        if (s->used == SHOAL_BLAKE2B_BLOCK) {
            /* A full block is compressed only once more input follows: the last block
             * must go through the final compression with its flag set. */
            count(s, SHOAL_BLAKE2B_BLOCK);
            compress(s, s->buf, 0);
            s->used = 0;
        }
        size_t take = SHOAL_BLAKE2B_BLOCK - s->used;
        if (take > len)
            take = len;
        memcpy(s->buf + s->used, in, take);
        s->used += take;
        in += take;
        len -= take;
    }
}

void shoal_blake2b_prime(shoal_blake2b *s)
{
    if (s->used == SHOAL_BLAKE2B_BLOCK) {
        count(s, SHOAL_BLAKE2B_BLOCK);
        compress(s, s->buf, 0);
        s->used = 0;
    }
}

void shoal_blake2b_final(shoal_blake2b *s, uint8_t *out)
{
    count(s, s->used);
    memset(s->buf + s->used, 0, SHOAL_BLAKE2B_BLOCK - s->used);
    compress(s, s->buf, 1);
    for (size_t i = 0; i < s->outlen; i++)
        out[i] = (uint8_t)(s->h[i / 8] >> (8 * (i % 8)));
}
