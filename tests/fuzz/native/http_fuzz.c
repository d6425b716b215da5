/* libFuzzer harness for Shoal's compiled HTTP request core (shoal/_native/http.c).
 *
 * Input layout: byte 0 picks the limits (bits 0-1: request line 16/64/512/8192 bytes, bit
 * 2: 2 or 64 headers, bit 3: the real-IP header looked for or not) and what the rest
 * feeds: bits 4-5 = 0 the request parser (then the query readers on what it took),
 * 1 the announce query reader, 2 the scrape query reader, 3 the real-IP chain walk. Each
 * result is checked for its rules: a request takes at most the input and ends with the
 * empty line, its target, query and header value lie inside it, the query is the target
 * after its first '?'; a scrape yields 1 to 74 hashes; a real-IP answer is 4 or 16 bytes.
 * The input is copied to a heap buffer of exactly its size, so any read past it is caught.
 * Built with -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static int inside(const uint8_t *p, size_t n, const uint8_t *base, size_t size)
{
    return p >= base && p + n <= base + size;
}

static int odd_trusted(void *ctx, const uint8_t *ip, size_t iplen)
{
    (void)ctx;
    return iplen && (ip[iplen - 1] & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = input[0];
    size_t len = size - 1;
    uint8_t *data = malloc(len ? len : 1);
    if (data == NULL)
        return 0;
    memcpy(data, input + 1, len);
    static const size_t lines[4] = {16, 64, 512, 8192};
    shoal_http_limits limits = {lines[flags & 3], 16384, (flags & 4) ? 64 : 2, NULL, 0};
    if (flags & 8) {
        limits.real_ip_header = (const uint8_t *)"x-real-ip";
        limits.real_ip_header_len = 9;
    }
    int what = (flags >> 4) & 3;
    uint8_t hashes[SHOAL_HTTP_MAX_SCRAPE][20];
    shoal_http_announce a;
    if (what == 0) {
        shoal_http_request r;
        size_t used = shoal_http_parse(data, len, &limits, &r);
        if (used) {
            if (used > len || used < 4 || memcmp(data + used - 4, "\r\n\r\n", 4) != 0)
                abort();
            if (!inside(r.target, r.target_len, data, used) ||
                !inside(r.query, r.query_len, data, used) ||
                r.target_len > limits.max_request_line)
                abort();
            if (r.query_len && r.query[-1] != '?')
                abort();
            if (r.real_ip != NULL && (limits.real_ip_header == NULL ||
                                      !inside(r.real_ip, r.real_ip_len, data, used)))
                abort();
            if (r.kind == SHOAL_HTTP_ANNOUNCE)
                shoal_http_announce_query(r.query, r.query_len, flags & 64, &a);
            else if (r.kind == SHOAL_HTTP_SCRAPE) {
                size_t n = shoal_http_scrape_query(r.query, r.query_len, 64, hashes);
                if (n > 64)
                    abort();
            } else {
                abort();
            }
        }
    } else if (what == 1) {
        if (shoal_http_announce_query(data, len, flags & 64, &a) && a.port == 0)
            abort();
    } else if (what == 2) {
        size_t n = shoal_http_scrape_query(data, len, (flags & 64) ? 74 : 3, hashes);
        if (n > ((flags & 64) ? 74u : 3u))
            abort();
    } else {
        static const uint8_t peer[4] = {10, 0, 0, 1};
        uint8_t out[16];
        size_t n = shoal_http_real_ip(data, len, peer, 4, odd_trusted, NULL, out);
        if (n != 0 && n != 4 && n != 16)
            abort();
    }
    free(data);
    return 0;
}
