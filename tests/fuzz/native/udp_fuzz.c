/* libFuzzer harness for Shoal's compiled UDP datagram core (shoal/_native/udp.c).
 *
 * Input layout: byte 0 picks the source family (bit 0: IPv6), whether the connection id is
 * taken as valid (bit 1: so the fuzzer reaches the announce and scrape parsers, which a
 * real id check would hide behind a 2**-48 guess) and allow_ip_param (bit 2); the rest is
 * the datagram. Each decision is checked for the rules the Python path keeps: an error
 * reply is never larger than the datagram, the URL data fits its buffer, numwant is capped,
 * scrapes hold 1 to 74 hashes inside the datagram. A real connection id is also issued and
 * checked for the source. Built with -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "udp.h"

static int always(void *ctx, uint64_t id, const uint8_t *src, size_t len)
{
    (void)id, (void)src, (void)len;
    return *(const int *)ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    static shoal_connids ids;
    static int ready;
    if (!ready) {
        static const uint8_t key[32] = "shoal fuzz key, 32 bytes long!!";
        if (shoal_connids_init(&ids, key, sizeof key, 120, 5) != 0)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    uint8_t flags = input[0];
    const uint8_t *data = input + 1;
    size_t len = size - 1;
    uint8_t source[18];
    size_t sourcelen = (flags & 1) ? 18 : 6;
    for (size_t i = 0; i < sourcelen; i++)
        source[i] = (uint8_t)(0x7f + i);
    int valid = (flags >> 1) & 1;
    shoal_udp_request r;
    /* A copy on the heap of exactly len bytes, so AddressSanitizer sees any overread. */
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, len);
    shoal_udp_decode(copy, len, source, sourcelen, always, &valid, (flags >> 2) & 1, &r);
    uint8_t out[SHOAL_UDP_MAX_C_REPLY];
    switch (r.kind) {
    case SHOAL_UDP_K_CONNECT:
        shoal_udp_connect_reply(out, r.tid, shoal_connids_issue(&ids, source, sourcelen, 1));
        break;
    case SHOAL_UDP_K_MALFORMED:
    case SHOAL_UDP_K_BAD_ID:
        if (r.message <= SHOAL_UDP_M_NONE || r.message >= SHOAL_UDP_M_COUNT)
            abort();
        if (r.reply) {
            if (!r.has_tid || shoal_udp_error_reply(out, r.tid, r.message) > len)
                abort(); /* an error reply larger than the datagram: amplification */
        }
        break;
    case SHOAL_UDP_K_ANNOUNCE:
        if (len < SHOAL_UDP_ANNOUNCE_LENGTH || len > SHOAL_UDP_MAX_ANNOUNCE || !valid)
            abort();
        if (r.urllen > SHOAL_UDP_MAX_OPTIONS || r.addrlen != sourcelen || r.event > 4)
            abort();
        if (r.num_want < -1 || r.num_want > SHOAL_UDP_MAX_PEERS_V4)
            abort();
        break;
    case SHOAL_UDP_K_SCRAPE:
        if (!valid || r.nhashes < 1 || r.nhashes > SHOAL_UDP_MAX_SCRAPE_HASHES ||
            SHOAL_UDP_HEADER + 20 * r.nhashes != len)
            abort();
        break;
    default:
        abort();
    }
    int64_t first, last;
    if (len >= 8) {
        uint64_t id = 0;
        for (int i = 0; i < 8; i++)
            id = (id << 8) | copy[i];
        (void)shoal_connids_window(&ids, id, source, sourcelen, 1000000, &first, &last);
    }
    uint64_t mine = shoal_connids_issue(&ids, source, sourcelen, 1000000);
    if (!shoal_connids_window(&ids, mine, source, sourcelen, 1000000, &first, &last))
        abort(); /* an id the tracker issued must be accepted at once */
    free(copy);
    return 0;
}
