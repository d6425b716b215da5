/* http.c: the HTTP requests the compiled data plane answers (http.h). Every read is
 * bounded by the length given; the input is hostile bytes from the internet (fuzzed by
 * tests/fuzz/native/http_fuzz.c). */
#include "http.h"

#include <arpa/inet.h>
#include <string.h>

#include "store_api.h"

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* The byte classes the parser asks about, as tables: it looks at every byte of a request,
 * and finding them with strchr in the character sets cost about 3% of a keep-alive
 * request's CPU (perf, under the bench's closed loop). */
enum { TCHAR = 1, TARGET = 2, ALNUM = TCHAR | TARGET };
static const uint8_t byte_class[256] = {
    ['0' ... '9'] = ALNUM, ['a' ... 'z'] = ALNUM, ['A' ... 'Z'] = ALNUM,
    /* RFC 9110 tchar and target bytes alike */
    ['!'] = ALNUM, ['$'] = ALNUM, ['%'] = ALNUM, ['&'] = ALNUM, ['\''] = ALNUM,
    ['*'] = ALNUM, ['+'] = ALNUM, ['-'] = ALNUM, ['.'] = ALNUM, ['_'] = ALNUM, ['~'] = ALNUM,
    /* tchar only */
    ['#'] = TCHAR, ['^'] = TCHAR, ['`'] = TCHAR, ['|'] = TCHAR,
    /* target only: the other sub-delims, ':', '@', '/', '?' */
    ['('] = TARGET, [')'] = TARGET, [','] = TARGET, [';'] = TARGET, ['='] = TARGET,
    [':'] = TARGET, ['@'] = TARGET, ['/'] = TARGET, ['?'] = TARGET,
};

/* A hexadecimal digit's value plus one; 0 for any other byte. */
static const uint8_t hex_plus_one[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

static int eq_nocase_n(const uint8_t *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != b[i])
            return 0;
    return 1;
}

static int eq_n(const uint8_t *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Comparisons with a string literal, its length known when compiled ("" lit "" does not
 * compile unless lit is a literal, whose sizeof is its length plus one). */
#define eq(a, alen, lit) eq_n((a), (alen), (lit), sizeof("" lit "") - 1)
#define eq_nocase(a, alen, lit) eq_nocase_n((a), (alen), (lit), sizeof("" lit "") - 1)

/* RFC 9110 tchar */
static int is_tchar(uint8_t c)
{
    return byte_class[c] & TCHAR;
}

/* Target bytes taken here: unreserved, sub-delims, ':', '@', '/', '?' and '%' (what
 * clients send, binary values percent-encoded). Anything else goes to Python's parser. */
static int is_target_char(uint8_t c)
{
    return byte_class[c] & TARGET;
}

/* Header value bytes taken here: visible ASCII, space and tab. A control byte (a bare CR or
 * LF too) or obs-text goes to Python's parser. */
static const uint8_t value_byte[256] = {['\t'] = 1, [' ' ... '~'] = 1};

/* Whether p (before end) starts with CR LF. */
static int at_crlf(const uint8_t *p, const uint8_t *end)
{
    return end - p >= 2 && p[0] == '\r' && p[1] == '\n';
}

static void trim(const uint8_t **v, size_t *n)
{
    while (*n && ((*v)[0] == ' ' || (*v)[0] == '\t')) {
        (*v)++;
        (*n)--;
    }
    while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t'))
        (*n)--;
}

/* Connection: 1 close, 2 keep-alive, 0 declined (another token, both, or none). */
static int connection_tokens(const uint8_t *v, size_t n)
{
    int seen = 0;
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        const uint8_t *t = v + i;
        size_t tn = j - i;
        trim(&t, &tn);
        if (tn) {
            int which = eq_nocase(t, tn, "close") ? 1 : eq_nocase(t, tn, "keep-alive") ? 2 : 0;
            if (!which || (seen && seen != which))
                return 0;
            seen = which;
        }
        i = j + 1;
    }
    return seen;
}

size_t shoal_http_parse(const uint8_t *data, size_t size, const shoal_http_limits *limits,
                        shoal_http_request *out)
{
    const uint8_t *end = data + size;
    /* "GET " target " HTTP/1.x" CRLF, in one pass: the target ends at its first byte that
     * is not a target byte, which must begin " HTTP/1.x" CRLF (each byte of a request is
     * looked at once here; finding the line's end first, then checking the target, read it
     * twice: a tenth of a keep-alive request's CPU was this parser, perf under the bench). */
    if (size < 5 || memcmp(data, "GET /", 5) != 0)
        return 0;
    out->target = data + 4;
    const uint8_t *p = out->target;
    while (p < end && is_target_char(*p))
        p++;
    if (end - p < 11 || memcmp(p, " HTTP/1.", 8) != 0 || (p[8] != '1' && p[8] != '0') ||
        !at_crlf(p + 9, end))
        return 0;
    out->legacy = p[8] == '0';
    out->target_len = (size_t)(p - out->target);
    if (out->target_len > limits->max_request_line)
        return 0;
    const uint8_t *q = memchr(out->target, '?', out->target_len);
    size_t pathlen = q ? (size_t)(q - out->target) : out->target_len;
    if (eq(out->target, pathlen, "/announce"))
        out->kind = SHOAL_HTTP_ANNOUNCE;
    else if (eq(out->target, pathlen, "/scrape"))
        out->kind = SHOAL_HTTP_SCRAPE;
    else
        return 0;
    out->query = q ? q + 1 : out->target + out->target_len;
    out->query_len = (size_t)(out->target + out->target_len - out->query);
    /* headers */
    int connection = 0;
    out->real_ip = NULL;
    out->real_ip_len = 0;
    size_t headers = 0, header_bytes = 0;
    p += 11;
    for (;;) {
        if (at_crlf(p, end))
            break; /* the empty line: the head is complete */
        const uint8_t *colon = p;
        while (colon < end && is_tchar(*colon))
            colon++;
        if (colon == p || colon == end || *colon != ':')
            return 0;
        const uint8_t *name = p;
        size_t namelen = (size_t)(colon - p);
        const uint8_t *value = colon + 1;
        const uint8_t *eol = value;
        while (eol < end && value_byte[*eol])
            eol++;
        if (!at_crlf(eol, end))
            return 0; /* a control byte, obs-text or the end of the input: Python judges */
        size_t valuelen = (size_t)(eol - value);
        /* The untrimmed value: never below what Python counts, so never over its limit. */
        header_bytes += namelen + valuelen + 4;
        if (++headers > limits->max_headers || header_bytes > limits->max_header_bytes)
            return 0;
        trim(&value, &valuelen);
        if (eq_nocase(name, namelen, "connection")) {
            if (connection || !(connection = connection_tokens(value, valuelen)))
                return 0;
        } else if (eq_nocase(name, namelen, "content-length")) {
            if (!eq(value, valuelen, "0"))
                return 0;
        } else if (eq_nocase(name, namelen, "transfer-encoding") ||
                   eq_nocase(name, namelen, "upgrade") || eq_nocase(name, namelen, "expect")) {
            return 0;
        }
        if (limits->real_ip_header != NULL && namelen == limits->real_ip_header_len) {
            size_t i = 0;
            while (i < namelen && lower(name[i]) == limits->real_ip_header[i])
                i++;
            if (i == namelen) {
                if (out->real_ip != NULL)
                    return 0; /* repeated: Python joins them */
                out->real_ip = value;
                out->real_ip_len = valuelen;
            }
        }
        p = eol + 2;
    }
    out->keep_alive = out->legacy ? connection == 2 : connection != 1;
    return (size_t)(p + 2 - data);
}

/* ---- queries ---------------------------------------------------------------------- */

static int hexval(uint8_t c)
{
    return (int)hex_plus_one[c] - 1;
}

/* percent_decode into out[cap]: the decoded length, or -1 for a bad escape or more than
 * cap bytes. */
static long decode(const uint8_t *v, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = v[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(v[i + 1]), lo = hexval(v[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o == cap)
            return -1;
        out[o++] = (uint8_t)c;
    }
    return (long)o;
}

/* Python's int() of 1 to 19 ASCII digits (always below 2**64). 0: not that. */
static int digits(const uint8_t *v, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 1;
}

uint32_t shoal_http_key(const uint8_t *key, size_t len)
{
    if (len > 0 && len <= 8) {
        uint32_t x = 0;
        size_t i = 0;
        for (; i < len; i++) {
            int h = hexval(key[i]);
            if (h < 0)
                break;
            x = (x << 4) | (uint32_t)h;
        }
        if (i == len)
            return x;
    }
    /* CRC-32 (IEEE 802.3, reflected, as zlib.crc32), bit by bit: keys are short. */
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= key[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

enum { P_INFO_HASH, P_PEER_ID, P_PORT, P_UPLOADED, P_DOWNLOADED, P_LEFT, P_EVENT, P_COMPACT,
       P_NUMWANT, P_KEY, P_IP, P_PARAMS };

static int param_index(const uint8_t *k, size_t n)
{
#define NAME(s) {s, sizeof(s) - 1}
    static const struct {
        const char *s;
        size_t n;
    } names[P_IP] = {NAME("info_hash"), NAME("peer_id"),    NAME("port"),  NAME("uploaded"),
                     NAME("downloaded"), NAME("left"),      NAME("event"), NAME("compact"),
                     NAME("numwant"),    NAME("key")};
#undef NAME
    for (int i = 0; i < P_IP; i++)
        if (eq_n(k, n, names[i].s, names[i].n))
            return i;
    if (eq(k, n, "ip") || eq(k, n, "ipv4") || eq(k, n, "ipv6"))
        return P_IP;
    return -1;
}

/* One `key=value` item of a query (a missing `=` gives an empty value). */
typedef struct {
    const uint8_t *key, *value;
    size_t klen, vlen;
} query_item;

/* The item of query at *pos, moving *pos past it; 0 at the end of the query. */
static int next_item(const uint8_t *query, size_t len, size_t *pos, query_item *it)
{
    size_t i = *pos;
    if (i >= len)
        return 0;
    /* memchr: the values clients send most are 60 bytes of percent-encoded hash */
    const uint8_t *amp = memchr(query + i, '&', len - i);
    size_t j = amp ? (size_t)(amp - query) : len;
    const uint8_t *equals = memchr(query + i, '=', j - i);
    size_t eqpos = equals ? (size_t)(equals - query) : j;
    it->key = query + i;
    it->klen = eqpos - i;
    it->value = eqpos < j ? query + eqpos + 1 : query + j;
    it->vlen = eqpos < j ? j - eqpos - 1 : 0;
    *pos = j + 1;
    return 1;
}

int shoal_http_announce_query(const uint8_t *query, size_t len, int allow_ip_param,
                              shoal_http_announce *out)
{
    /* The last of repeated keys wins (Python's dict). */
    const uint8_t *val[P_PARAMS] = {0};
    size_t vlen[P_PARAMS] = {0};
    size_t pos = 0;
    query_item it;
    while (next_item(query, len, &pos, &it)) {
        int which = param_index(it.key, it.klen);
        if (which >= 0) {
            val[which] = it.value;
            vlen[which] = it.vlen;
        }
    }
    if (val[P_IP] != NULL && allow_ip_param)
        return 0;
    if (val[P_INFO_HASH] == NULL || decode(val[P_INFO_HASH], vlen[P_INFO_HASH],
                                           out->info_hash, 20) != 20)
        return 0;
    if (val[P_PEER_ID] == NULL || decode(val[P_PEER_ID], vlen[P_PEER_ID], out->peer_id, 20) != 20)
        return 0;
    uint64_t port;
    if (val[P_PORT] == NULL || !digits(val[P_PORT], vlen[P_PORT], &port) || port == 0 ||
        port > 65535)
        return 0;
    out->port = (uint16_t)port;
    if (val[P_UPLOADED] == NULL || !digits(val[P_UPLOADED], vlen[P_UPLOADED], &out->uploaded) ||
        val[P_DOWNLOADED] == NULL ||
        !digits(val[P_DOWNLOADED], vlen[P_DOWNLOADED], &out->downloaded) ||
        val[P_LEFT] == NULL || !digits(val[P_LEFT], vlen[P_LEFT], &out->left))
        return 0;
    out->event = SHOAL_EVENT_NONE;
    if (val[P_EVENT] != NULL) {
        const uint8_t *e = val[P_EVENT];
        size_t n = vlen[P_EVENT];
        out->event = eq(e, n, "started")     ? SHOAL_EVENT_STARTED
                     : eq(e, n, "stopped")   ? SHOAL_EVENT_STOPPED
                     : eq(e, n, "completed") ? SHOAL_EVENT_COMPLETED
                     : eq(e, n, "paused")    ? SHOAL_EVENT_PAUSED
                                             : SHOAL_EVENT_NONE;
    }
    if (val[P_COMPACT] != NULL && eq(val[P_COMPACT], vlen[P_COMPACT], "0"))
        return 0; /* the dictionary model: Python builds it */
    out->numwant = -1;
    if (val[P_NUMWANT] != NULL) {
        const uint8_t *t = val[P_NUMWANT];
        size_t n = vlen[P_NUMWANT];
        int negative = n > 0 && t[0] == '-';
        if (negative) {
            t++;
            n--;
        }
        uint64_t x = 0;
        if (n == 0)
            return 0;
        for (size_t k = 0; k < n; k++)
            if (t[k] < '0' || t[k] > '9')
                return 0;
        if (n <= 10) {
            digits(t, n, &x);
            out->numwant = negative ? -(int64_t)x : (int64_t)x;
        } else {
            out->numwant = negative ? -1 : 2147483647;
        }
    }
    out->key = 0;
    if (val[P_KEY] != NULL) {
        uint8_t key[64];
        long n = decode(val[P_KEY], vlen[P_KEY], key, sizeof key);
        if (n < 0)
            return 0; /* a bad escape (Python's error), or a key too long to bother with */
        out->key = shoal_http_key(key, (size_t)n);
    }
    return 1;
}

size_t shoal_http_scrape_query(const uint8_t *query, size_t len, size_t max_hashes,
                               uint8_t (*hashes)[20])
{
    size_t count = 0, pos = 0;
    if (max_hashes > SHOAL_HTTP_MAX_SCRAPE)
        max_hashes = SHOAL_HTTP_MAX_SCRAPE;
    query_item it;
    while (next_item(query, len, &pos, &it)) {
        if (eq(it.key, it.klen, "info_hash")) {
            if (count == max_hashes || decode(it.value, it.vlen, hashes[count], 20) != 20)
                return 0;
            count++;
        }
    }
    return count;
}

/* ---- the real-IP header ---------------------------------------------------------- */

/* One entry as ipaddress.ip_address(text) reads it (after the caller's strip and
 * brackets): 4 or 16 (packed into out), 0 when it is not an address, -1 when this cannot
 * tell as Python would (a scope id, an over-long text). */
static int parse_ip(const uint8_t *t, size_t n, uint8_t *out)
{
    char text[64];
    if (n == 0)
        return 0;
    if (n >= sizeof text)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = t[i];
        if (c == '%')
            return -1;
        if (!(hexval(c) >= 0 || c == ':' || c == '.'))
            return 0;
    }
    memcpy(text, t, n);
    text[n] = 0;
    if (memchr(t, ':', n) != NULL)
        return inet_pton(AF_INET6, text, out) == 1 ? 16 : 0;
    /* IPv4: four decimal parts of 1-3 digits, at most 255, no leading zero (as Python). */
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (i >= n || t[i] != '.')
                return 0;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && t[i] >= '0' && t[i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned)(t[i++] - '0');
        if (i == start || v > 255 || (i - start > 1 && t[start] == '0'))
            return 0;
        out[part] = (uint8_t)v;
    }
    return i == n ? 4 : 0;
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

size_t shoal_http_real_ip(const uint8_t *value, size_t len, const uint8_t *peer, size_t peerlen,
                          int (*trusted)(void *ctx, const uint8_t *ip, size_t iplen), void *ctx,
                          uint8_t *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(out, peer, peerlen);
    size_t chosen = peerlen;
    size_t end = len;
    for (;;) {
        size_t start = end;
        while (start > 0 && value[start - 1] != ',')
            start--;
        const uint8_t *t = value + start;
        size_t n = end - start;
        while (n && is_space(t[0])) {
            t++;
            n--;
        }
        while (n && is_space(t[n - 1]))
            n--;
        if (n && t[0] == '[') {
            const uint8_t *close = memchr(t, ']', n);
            if (close != NULL) {
                n = (size_t)(close - t - 1);
                t++;
            }
        }
        uint8_t ip[16];
        int got = parse_ip(t, n, ip);
        if (got < 0)
            return 0;
        if (got == 0)
            break;
        if (got == 16 && memcmp(ip, mapped, 12) == 0) {
            memmove(ip, ip + 12, 4);
            got = 4;
        }
        memcpy(out, ip, (size_t)got);
        chosen = (size_t)got;
        if (!trusted(ctx, ip, (size_t)got) || start == 0)
            break;
        end = start - 1;
    }
    return chosen;
}
