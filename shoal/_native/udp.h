/* Shoal's UDP tracker datagram core (BEP 15, BEP 41), free of Python and sockets.
 *
 * shoal_udp_decode() is the C twin of shoal.protocol.udp.decode_request(): the same checks
 * in the same order (size bounds, action, then the connection id before anything else is
 * read), the same refusal messages and the same rule for when an error reply is safe. The
 * connection ids are those of shoal.protocol.connid (16-bit stamp + keyed BLAKE2b-48 tag),
 * and the banned networks those of shoal.engine.rules.NetworkSet, compiled to sorted arrays.
 */
#ifndef SHOAL_UDP_H
#define SHOAL_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "blake2b.h"
#include "netset.h"

#define SHOAL_UDP_PROTOCOL_ID 0x41727101980ULL
#define SHOAL_UDP_CONNECT 0
#define SHOAL_UDP_ANNOUNCE 1
#define SHOAL_UDP_SCRAPE 2
#define SHOAL_UDP_ERROR 3

#define SHOAL_UDP_HEADER 16
#define SHOAL_UDP_ANNOUNCE_LENGTH 98
#define SHOAL_UDP_MAX_SCRAPE_HASHES 74
#define SHOAL_UDP_MAX_DATAGRAM (SHOAL_UDP_HEADER + SHOAL_UDP_MAX_SCRAPE_HASHES * 20)
#define SHOAL_UDP_MAX_OPTIONS 512
#define SHOAL_UDP_MAX_ANNOUNCE (SHOAL_UDP_ANNOUNCE_LENGTH + SHOAL_UDP_MAX_OPTIONS)
#define SHOAL_UDP_REPLY_BUDGET 1200
#define SHOAL_UDP_MAX_PEERS_V4 ((SHOAL_UDP_REPLY_BUDGET - 20) / 6)
#define SHOAL_UDP_MAX_PEERS_V6 ((SHOAL_UDP_REPLY_BUDGET - 20) / 18)
/* Room for any reply built in C: an error or connect reply, or (from a compiled answer
 * hooked in through shoal_udp_fast_path) an announce reply within the budget or a
 * scrape reply of the most hashes (8 + 74 * 12 bytes). */
#define SHOAL_UDP_MAX_C_REPLY SHOAL_UDP_REPLY_BUDGET

/* What a datagram is. */
enum shoal_udp_kind {
    SHOAL_UDP_K_CONNECT = 0,
    SHOAL_UDP_K_ANNOUNCE = 1,
    SHOAL_UDP_K_SCRAPE = 2,
    SHOAL_UDP_K_MALFORMED = 3, /* not a request: counted, answered only if `reply` */
    SHOAL_UDP_K_BAD_ID = 4,    /* announce or scrape with an invalid connection id */
};

/* Refusal messages, in the order of SHOAL_UDP_MESSAGES (the Python codec's texts). */
enum shoal_udp_message {
    SHOAL_UDP_M_NONE = 0,
    SHOAL_UDP_M_TOO_SHORT,
    SHOAL_UDP_M_TOO_LONG,
    SHOAL_UDP_M_PROTOCOL_ID,
    SHOAL_UDP_M_UNKNOWN_ACTION,
    SHOAL_UDP_M_EXPIRED,
    SHOAL_UDP_M_NO_INFO_HASH,
    SHOAL_UDP_M_SCRAPE_LENGTH,
    SHOAL_UDP_M_TOO_MANY_HASHES,
    SHOAL_UDP_M_ANNOUNCE_SHORT,
    SHOAL_UDP_M_OPTIONS_LONG,
    SHOAL_UDP_M_INVALID_PORT,
    SHOAL_UDP_M_TRUNCATED_OPTIONS,
    SHOAL_UDP_M_COUNT
};

extern const char *const SHOAL_UDP_MESSAGES[SHOAL_UDP_M_COUNT];

/* Connection ids: a keyed BLAKE2b state ready for the message, ttl and skew in seconds. */
typedef struct {
    shoal_blake2b keyed; /* after init with key and person: copied per id */
    int64_t ttl;
    int64_t skew;
} shoal_connids;

int shoal_connids_init(shoal_connids *c, const uint8_t *key, size_t keylen, int64_t ttl,
                       int64_t skew);
uint64_t shoal_connids_issue(const shoal_connids *c, const uint8_t *addr, size_t addrlen,
                             int64_t now);
/* 1 if valid now (first and last then hold the seconds it is valid in), else 0. */
int shoal_connids_window(const shoal_connids *c, uint64_t id, const uint8_t *addr,
                         size_t addrlen, int64_t now, int64_t *first, int64_t *last);

/* A decoded datagram. Pointers point into the datagram. */
typedef struct {
    int kind;            /* enum shoal_udp_kind */
    int has_tid;         /* 0 only for datagrams too short or too long to read */
    uint32_t tid;
    int message;         /* enum shoal_udp_message for MALFORMED and BAD_ID */
    int reply;           /* an error reply may be sent (never larger than the datagram) */
    /* announce */
    const uint8_t *info_hash;
    const uint8_t *peer_id;
    uint64_t downloaded, left, uploaded;
    uint32_t event;      /* 0..4, unknown numbers already mapped to 0 */
    uint32_t key;
    int32_t num_want;    /* capped for the family; 0 kept; any negative -> -1 */
    uint8_t addr[18];    /* peer address: ip (source, or the allowed IP field) + port */
    size_t addrlen;
    uint8_t url[SHOAL_UDP_MAX_OPTIONS]; /* BEP 41 URL data, chunks concatenated */
    size_t urllen;
    /* scrape */
    const uint8_t *hashes;
    size_t nhashes;
} shoal_udp_request;

typedef int (*shoal_udp_id_check)(void *ctx, uint64_t conn_id, const uint8_t *source,
                                  size_t sourcelen);

/* Decode one datagram from `source` (packed ip + port: 6 or 18 bytes, IPv4-mapped already
 * made IPv4). Never fails; reads only data[0..size). */
void shoal_udp_decode(const uint8_t *data, size_t size, const uint8_t *source,
                      size_t sourcelen, shoal_udp_id_check id_ok, void *ctx,
                      int allow_ip_param, shoal_udp_request *out);

/* The hook where a compiled store can answer a valid announce or scrape inline, before the
 * request would be handed to Python: write the reply to out (at most cap bytes) and return
 * its length, or return 0 to hand the request to Python as usual. `source` is the packed
 * socket address (ip + port) the datagram came from; `now` the tracker clock in seconds. */
typedef size_t (*shoal_udp_fast_path)(void *ctx, const shoal_udp_request *req,
                                      const uint8_t *source, size_t sourcelen, int64_t now,
                                      uint8_t *out, size_t cap);

/* Replies built in C; each returns its length. `out` holds SHOAL_UDP_MAX_C_REPLY bytes. */
size_t shoal_udp_connect_reply(uint8_t *out, uint32_t tid, uint64_t conn_id);
size_t shoal_udp_error_reply(uint8_t *out, uint32_t tid, int message);

#endif
