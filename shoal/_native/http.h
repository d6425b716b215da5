/*
 * http.h: the HTTP requests the compiled data plane answers, in plain C (no Python API).
 *
 * The compiled path takes a strict subset of HTTP/1.x, the one BitTorrent clients send: a
 * complete `GET /announce?...` or `GET /scrape?...` with CRLF line ends, printable ASCII,
 * no body and no Upgrade, within the configured limits, and a query whose parameters are
 * well formed. Anything else (a partial request, another method or path, an error to
 * report, a full scrape, `compact=0`, an `ip` parameter the operator allows) is declined:
 * the caller hands the input to the Python path (shoal.protocol.http1, shoal.protocol.http),
 * which stays the reference. So a request is never answered here that Python would answer
 * otherwise; a declined one costs only the look.
 */
#ifndef SHOAL_HTTP_H
#define SHOAL_HTTP_H

#include <stddef.h>
#include <stdint.h>

enum { SHOAL_HTTP_ANNOUNCE = 1, SHOAL_HTTP_SCRAPE = 2 };

#define SHOAL_HTTP_MAX_SCRAPE 74 /* info_hash values a scrape may carry here, at most */

typedef struct {
    size_t max_request_line; /* the target's length, at most (else Python answers 414) */
    size_t max_header_bytes; /* sum over headers of name + value + 4 (else 431) */
    size_t max_headers;
    const uint8_t *real_ip_header; /* lower case; NULL: not looked for */
    size_t real_ip_header_len;
} shoal_http_limits;

typedef struct {
    int kind;                 /* SHOAL_HTTP_ANNOUNCE or SHOAL_HTTP_SCRAPE */
    const uint8_t *target;    /* the request target (path and query) */
    size_t target_len;
    const uint8_t *query;     /* after the '?' (empty when there is none) */
    size_t query_len;
    const uint8_t *real_ip;   /* the real-IP header's value (NULL: absent) */
    size_t real_ip_len;
    int keep_alive;           /* the connection stays open after the reply */
    int legacy;               /* HTTP/1.0 */
} shoal_http_request;

/* One request at the start of data[0..size): the bytes it takes when the compiled path
 * answers it, 0 when it declines (incomplete, or not in the subset). */
size_t shoal_http_parse(const uint8_t *data, size_t size, const shoal_http_limits *limits,
                        shoal_http_request *out);

typedef struct {
    uint8_t info_hash[20];
    uint8_t peer_id[20];
    uint16_t port;
    uint64_t uploaded, downloaded, left;
    int event;       /* SHOAL_EVENT_* (store_api.h) */
    int64_t numwant; /* as asked; negative: the default */
    uint32_t key;    /* BEP 7 key as 32 bits (shoal.protocol.http.key_to_int), 0: none */
} shoal_http_announce;

/* An announce query as shoal.protocol.http.parse_announce reads it: 1 when it is one the
 * compiled path answers (valid, compact, and no ip/ipv4/ipv6 parameter when
 * `allow_ip_param`), 0 when Python must (it reports the error, or builds the reply). */
int shoal_http_announce_query(const uint8_t *query, size_t len, int allow_ip_param,
                              shoal_http_announce *out);

/* A scrape query's info_hash values (parse_scrape): how many (1 to max_hashes, at most
 * SHOAL_HTTP_MAX_SCRAPE) into hashes, or 0 when Python must answer (none: a full scrape;
 * a bad one; too many). */
size_t shoal_http_scrape_query(const uint8_t *query, size_t len, size_t max_hashes,
                               uint8_t (*hashes)[20]);

/* The client address from a trusted proxy's real-IP header, as HttpConnection._client_ip
 * picks it: the rightmost entry that is not itself a trusted proxy (`trusted(ctx, ip,
 * iplen)`), walking left while entries are trusted, stopping at one that is not an
 * address. `peer`/`peerlen` is the socket's address (the answer when the rightmost entry
 * is not an address). Writes the packed address (IPv4-mapped IPv6 made IPv4) into out[16]
 * and returns its length, or 0 when an entry is one this parser cannot judge as Python
 * would (the caller declines). */
size_t shoal_http_real_ip(const uint8_t *value, size_t len, const uint8_t *peer, size_t peerlen,
                          int (*trusted)(void *ctx, const uint8_t *ip, size_t iplen), void *ctx,
                          uint8_t *out);

/* BEP 7 key text to 32 bits: 1-8 hex digits are the number, anything else its CRC-32. */
uint32_t shoal_http_key(const uint8_t *key, size_t len);

#endif
