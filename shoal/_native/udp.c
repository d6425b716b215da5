/* Shoal's UDP datagram core: decoding, connection ids, error replies, banned networks.
 * The rules mirror shoal/protocol/udp.py and shoal/protocol/connid.py line by line; the
 * differential tests in tests/native/ hold the two to the same decisions and bytes. */
#include "udp.h"

#include <stdlib.h>
#include <string.h>

const char *const SHOAL_UDP_MESSAGES[SHOAL_UDP_M_COUNT] = {
    "",
    "packet too short",
    "packet too long",
    "wrong protocol id",
    "unknown action",
    "connection id expired",
    "no info_hash",
    "bad scrape length",
    "too many info_hashes",
    "announce too short",
    "announce options too long",
    "invalid port",
    "truncated options",
};

static const uint8_t PERSON[16] = "shoal/udp-connid";

#define STAMP_SHIFT 48
#define STAMP_MOD 65536
#define TAG_BYTES 6
#define TAG_MASK ((1ULL << 48) - 1)

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Python's a % b for b > 0: never negative. */
static inline int64_t pymod(int64_t a, int64_t b)
{
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

int shoal_connids_init(shoal_connids *c, const uint8_t *key, size_t keylen, int64_t ttl,
                       int64_t skew)
{
    if (keylen < 1 || keylen > SHOAL_BLAKE2B_KEY || ttl < 1 || skew < 0 ||
        ttl + skew >= STAMP_MOD)
        return -1;
    c->ttl = ttl;
    c->skew = skew;
    if (shoal_blake2b_init(&c->keyed, TAG_BYTES, key, keylen, NULL, 0, PERSON,
                           sizeof PERSON) < 0)
        return -1;
    /* Every tag hashes at least the 8-byte time after the key block: compress it once. */
    shoal_blake2b_prime(&c->keyed);
    return 0;
}

/* The 48-bit tag over (issue time as signed 64-bit big-endian, address). */
static uint64_t tag(const shoal_connids *c, int64_t issued, const uint8_t *addr,
                    size_t addrlen, uint8_t out[TAG_BYTES])
{
    shoal_blake2b s = c->keyed;
    uint8_t when[8];
    put64(when, (uint64_t)issued);
    shoal_blake2b_update(&s, when, sizeof when);
    shoal_blake2b_update(&s, addr, addrlen);
    shoal_blake2b_final(&s, out);
    uint64_t v = 0;
    for (int i = 0; i < TAG_BYTES; i++)
        v = (v << 8) | out[i];
    return v;
}

uint64_t shoal_connids_issue(const shoal_connids *c, const uint8_t *addr, size_t addrlen,
                             int64_t now)
{
    uint8_t out[TAG_BYTES];
    uint64_t t = tag(c, now, addr, addrlen, out);
    return ((uint64_t)pymod(now, STAMP_MOD) << STAMP_SHIFT) | t;
}

int shoal_connids_window(const shoal_connids *c, uint64_t id, const uint8_t *addr,
                         size_t addrlen, int64_t now, int64_t *first, int64_t *last)
{
    int64_t age = pymod(now - (int64_t)(id >> STAMP_SHIFT), STAMP_MOD);
    if (age >= c->ttl) {
        int64_t ahead = STAMP_MOD - age;
        if (ahead > c->skew)
            return 0;
        age = -ahead;
    }
    int64_t issued = now - age;
    uint8_t expected[TAG_BYTES];
    tag(c, issued, addr, addrlen, expected);
    /* Constant time over the tag bytes. */
    uint8_t diff = 0;
    for (int i = 0; i < TAG_BYTES; i++)
        diff |= (uint8_t)(expected[i] ^ (uint8_t)(id >> (8 * (TAG_BYTES - 1 - i))));
    if (diff)
        return 0;
    *first = issued - c->skew;
    *last = issued + c->ttl - 1;
    return 1;
}

static void malformed(shoal_udp_request *out, int kind, int message, int has_tid,
                      uint32_t tid, size_t size, int may_reply)
{
    out->kind = kind;
    out->message = message;
    out->has_tid = has_tid;
    out->tid = tid;
    /* An error reply is sent only when it is no larger than the datagram. */
    out->reply = may_reply && 8 + strlen(SHOAL_UDP_MESSAGES[message]) <= size;
}

/* BEP 41 options after the announce: NOP runs skipped, URL data collected; 0 if truncated. */
static int parse_options(const uint8_t *data, size_t size, shoal_udp_request *out)
{
    size_t pos = SHOAL_UDP_ANNOUNCE_LENGTH;
    out->urllen = 0;
    while (pos < size) {
        while (pos < size && data[pos] == 1)
            pos++;
        if (pos >= size)
            break;
        uint8_t kind = data[pos];
        if (kind == 0)
            break;
        if (pos + 1 >= size)
            return 0;
        size_t end = pos + 2 + data[pos + 1];
        if (end > size)
            return 0;
        if (kind == 2) {
            size_t n = end - (pos + 2);
            /* Cannot overflow: all URL data lies inside the option area, at most
             * SHOAL_UDP_MAX_OPTIONS bytes (checked before this is called). */
            memcpy(out->url + out->urllen, data + pos + 2, n);
            out->urllen += n;
        }
        pos = end;
    }
    return 1;
}

void shoal_udp_decode(const uint8_t *data, size_t size, const uint8_t *source,
                      size_t sourcelen, shoal_udp_id_check id_ok, void *ctx,
                      int allow_ip_param, shoal_udp_request *out)
{
    out->urllen = 0;
    out->nhashes = 0;
    out->addrlen = 0;
    if (size < SHOAL_UDP_HEADER) {
        malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_TOO_SHORT, 0, 0, size, 0);
        return;
    }
    if (size > SHOAL_UDP_MAX_DATAGRAM) {
        malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_TOO_LONG, 0, 0, size, 0);
        return;
    }
    uint64_t conn_id = be64(data);
    uint32_t action = be32(data + 8);
    uint32_t tid = be32(data + 12);
    out->tid = tid;
    out->has_tid = 1;
    if (action == SHOAL_UDP_CONNECT) {
        if (conn_id != SHOAL_UDP_PROTOCOL_ID) {
            malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_PROTOCOL_ID, 1, tid, size, 0);
            return;
        }
        out->kind = SHOAL_UDP_K_CONNECT;
        out->message = SHOAL_UDP_M_NONE;
        out->reply = 0;
        return;
    }
    if (action != SHOAL_UDP_ANNOUNCE && action != SHOAL_UDP_SCRAPE) {
        malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_UNKNOWN_ACTION, 1, tid, size, 0);
        return;
    }
    /* The connection id before anything else: a spoofed source costs one hash. */
    if (!id_ok(ctx, conn_id, source, sourcelen)) {
        malformed(out, SHOAL_UDP_K_BAD_ID, SHOAL_UDP_M_EXPIRED, 1, tid, size, 1);
        return;
    }
    if (action == SHOAL_UDP_SCRAPE) {
        size_t body = size - SHOAL_UDP_HEADER;
        int bad = SHOAL_UDP_M_NONE;
        if (body == 0)
            bad = SHOAL_UDP_M_NO_INFO_HASH;
        else if (body % 20)
            bad = SHOAL_UDP_M_SCRAPE_LENGTH;
        else if (body > SHOAL_UDP_MAX_SCRAPE_HASHES * 20)
            bad = SHOAL_UDP_M_TOO_MANY_HASHES;
        if (bad != SHOAL_UDP_M_NONE) {
            malformed(out, SHOAL_UDP_K_MALFORMED, bad, 1, tid, size, 1);
            return;
        }
        out->kind = SHOAL_UDP_K_SCRAPE;
        out->message = SHOAL_UDP_M_NONE;
        out->reply = 0;
        out->hashes = data + SHOAL_UDP_HEADER;
        out->nhashes = body / 20;
        return;
    }
    if (size < SHOAL_UDP_ANNOUNCE_LENGTH) {
        malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_ANNOUNCE_SHORT, 1, tid, size, 1);
        return;
    }
    if (size > SHOAL_UDP_MAX_ANNOUNCE) {
        malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_OPTIONS_LONG, 1, tid, size, 1);
        return;
    }
    uint16_t port = (uint16_t)((data[96] << 8) | data[97]);
    if (port == 0) {
        malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_INVALID_PORT, 1, tid, size, 1);
        return;
    }
    if (size > SHOAL_UDP_ANNOUNCE_LENGTH && !parse_options(data, size, out)) {
        malformed(out, SHOAL_UDP_K_MALFORMED, SHOAL_UDP_M_TRUNCATED_OPTIONS, 1, tid, size, 1);
        return;
    }
    out->kind = SHOAL_UDP_K_ANNOUNCE;
    out->message = SHOAL_UDP_M_NONE;
    out->reply = 0;
    out->info_hash = data + 16;
    out->peer_id = data + 36;
    out->downloaded = be64(data + 56);
    out->left = be64(data + 64);
    out->uploaded = be64(data + 72);
    uint32_t event = be32(data + 80);
    out->event = event <= 4 ? event : 0;
    uint32_t ip_field = be32(data + 84);
    out->key = be32(data + 88);
    int32_t num_want = (int32_t)be32(data + 92);
    size_t iplen = sourcelen - 2;
    if (allow_ip_param && ip_field && iplen == 4) {
        put32(out->addr, ip_field);
    } else {
        memcpy(out->addr, source, iplen);
    }
    out->addr[iplen] = (uint8_t)(port >> 8);
    out->addr[iplen + 1] = (uint8_t)port;
    out->addrlen = iplen + 2;
    if (num_want > 0) {
        int32_t most = iplen == 4 ? SHOAL_UDP_MAX_PEERS_V4 : SHOAL_UDP_MAX_PEERS_V6;
        if (num_want > most)
            num_want = most;
    } else if (num_want < 0) {
        num_want = -1;
    }
    out->num_want = num_want;
}

size_t shoal_udp_connect_reply(uint8_t *out, uint32_t tid, uint64_t conn_id)
{
    put32(out, SHOAL_UDP_CONNECT);
    put32(out + 4, tid);
    put64(out + 8, conn_id);
    return 16;
}

size_t shoal_udp_error_reply(uint8_t *out, uint32_t tid, int message)
{
    const char *text = SHOAL_UDP_MESSAGES[message];
    size_t n = strlen(text);
    put32(out, SHOAL_UDP_ERROR);
    put32(out + 4, tid);
    memcpy(out + 8, text, n);
    return 8 + n;
}
