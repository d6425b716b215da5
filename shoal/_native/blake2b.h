/* BLAKE2b (RFC 7693) with a key and a personalisation string, for Shoal's connection ids.
 *
 * Written for Shoal from the RFC's description; sequential mode only (fanout 1, depth 1),
 * which is what hashlib.blake2b computes by default.
 */
#ifndef SHOAL_BLAKE2B_H
#define SHOAL_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>

#define SHOAL_BLAKE2B_BLOCK 128
#define SHOAL_BLAKE2B_OUT 64
#define SHOAL_BLAKE2B_KEY 64
#define SHOAL_BLAKE2B_SALT 16
#define SHOAL_BLAKE2B_PERSON 16

typedef struct {
    uint64_t h[8];                       /* chained state */
    uint64_t t[2];                       /* bytes compressed so far, 128-bit counter */
    uint8_t buf[SHOAL_BLAKE2B_BLOCK];    /* input not yet compressed */
    size_t used;                         /* bytes in buf */
    size_t outlen;                       /* digest size in bytes, 1..64 */
} shoal_blake2b;

/* Start a hash of outlen (1..64) bytes; key (0..64 bytes), salt and person (0..16 bytes each,
 * zero-padded) may be NULL when their length is 0. Returns 0, or -1 for a bad length. */
int shoal_blake2b_init(shoal_blake2b *s, size_t outlen, const uint8_t *key, size_t keylen,
                       const uint8_t *salt, size_t saltlen, const uint8_t *person,
                       size_t personlen);
void shoal_blake2b_update(shoal_blake2b *s, const uint8_t *in, size_t len);
/* Compress a full block waiting in the buffer (the key block after init) ahead of time.
 * Only for a caller that will add more input before final; it saves that work per copy. */
void shoal_blake2b_prime(shoal_blake2b *s);
/* Write s->outlen bytes to out; s must not be used afterwards (copy it first to reuse). */
void shoal_blake2b_final(shoal_blake2b *s, uint8_t *out);

#endif
