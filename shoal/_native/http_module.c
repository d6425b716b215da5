/* shoal._native_http: HTTP announces and scrapes answered in C.
 *
 * An HttpAnswer holds the compiled answer (answer.h: the logic layer's policy and access
 * rules, the native store's C API) and the HTTP frontend's limits. The frontend's
 * connection hands it what a readable socket gave, when the connection is between
 * requests: answer() parses every request in it (http.c), and when each is one the
 * compiled path takes, applies them in order and returns the replies as one bytes object
 * for one write. Otherwise it returns None having changed nothing, and the bytes go to the
 * Python parser as before. Counters are kept in C and collected by Python with counts().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "answer.h"
#include "http.h"

#define MAX_REQUESTS 4 /* requests one call answers (the frontend's turn), at most */
#define MAX_HEADER_NAME 64
#define ACCEPT_READ 16384 /* a new connection's first read, at most (as Python's slices) */
#define SERVE_MAX 64       /* kept connections one serve() reads, at most */

enum { SLOT_BYTES_OUT = 0, SLOT_REQUESTS = 1, SLOT_INTERNAL = 5, SLOT_LATENCY = 6 };

typedef struct {
    unsigned long long bytes_out;
    unsigned long long requests[2][2]; /* [ipv4, ipv6][announce, scrape] */
    unsigned long long internal;
    unsigned long long fast[2];                  /* announces, scrapes answered here */
    unsigned long long failures[SHOAL_FAILURES]; /* refusals answered here, by reason */
    unsigned long long bytes_in;    /* read by accept() from connections answered here */
    unsigned long long connections; /* accepted and closed here, never seen by Python */
    unsigned long long accept_errors;
    unsigned long long idle_timeouts;       /* kept connections closed: keep-alive wait over */
    unsigned long long first_byte_timeouts; /* ... silent since accepted */
    unsigned long long evictions;           /* ... to make room (evict_oldest) */
} counts_t;

/* A connection kept here between requests (see "kept connections" below). */
typedef struct {
    double since;   /* kept, or its last reply sent (monotonic seconds) */
    int prev, next; /* the kept list, least recently active first; -1 ends it */
    uint8_t ip[16];
    uint8_t iplen; /* 0: this fd is not kept */
    uint8_t trusted;
    uint8_t seen; /* a request was answered on it */
} kept_t;

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

typedef struct {
    PyObject_HEAD
    shoal_answer *fast; /* NULL: every request goes to Python */
    shoal_netset banned, proxies;
    shoal_http_limits limits;
    uint8_t header[MAX_HEADER_NAME];
    int allow_ip_param;
    Py_ssize_t max_scrape_hashes;
    int close_after; /* the last answer() ended with a reply that closes the connection */
    counts_t c;
    shoal_latency latency; /* request latency, collected with c */
    buf_t out, body;
    uint8_t *in;    /* accept()'s read buffer (ACCEPT_READ bytes) */
    uint8_t *batch; /* serve()'s reads, one after another (SERVE_MAX * ACCEPT_READ bytes) */
    /* kept connections */
    int ep;       /* their epoll set, once ep_open */
    int ep_open;
    int keeping;  /* accept() may keep connections (keep_start, until keep_stop) */
    kept_t *kc;   /* by fd */
    int kc_cap;
    int head, tail;
    Py_ssize_t kept;
    PyObject *per_ip; /* the frontend's open connections by packed address (a dict) */
    Py_ssize_t room, max_per_ip;
    double first_byte_timeout, keepalive_timeout;
} HttpAnswer;

typedef struct {
    shoal_http_request r;
    uint8_t client[16];
    size_t clientlen;
    shoal_http_announce a;
    size_t nhashes;
    uint8_t hashes[SHOAL_HTTP_MAX_SCRAPE][20];
} parsed_t;

static const char INTERNAL_FAILURE[] = "internal error, try again later";

/* ---- buffers --------------------------------------------------------------------- */

static int reserve(buf_t *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put(buf_t *b, const void *data, size_t n)
{
    if (n == 0)
        return; /* (data may be NULL then: an empty peer list) */
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

/* A literal (its length known when compiled). */
#define PUTLIT(b, text) put((b), (text), sizeof(text) - 1)

/* Decimal digits (snprintf was a twentieth of the time a keep-alive request cost, measured
 * with perf). */
static void putu(buf_t *b, unsigned long long v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        b->p[b->len++] = (uint8_t)digits[--n];
}

static void puti(buf_t *b, long long v)
{
    if (v < 0) {
        b->p[b->len++] = '-';
        putu(b, 0ULL - (unsigned long long)v);
    } else {
        putu(b, (unsigned long long)v);
    }
}

/* A byte string, bencoded. */
static void putstr(buf_t *b, const void *data, size_t n)
{
    putu(b, (unsigned long long)n);
    PUTLIT(b, ":");
    put(b, data, n);
}

/* ---- replies (byte for byte what shoal.server.http builds) ------------------------ */

static int failure_body(buf_t *b, const char *reason, int retry)
{
    size_t n = strlen(reason);
    if (reserve(b, n + 80) < 0)
        return -1;
    PUTLIT(b, "d14:failure reason");
    putstr(b, reason, n);
    if (retry >= 0) {
        PUTLIT(b, "8:retry ini");
        puti(b, retry);
        PUTLIT(b, "e");
    }
    PUTLIT(b, "e");
    return 0;
}

/* The response: head and body, as _response() / _OK_HEAD make it, with the HTTP/1.0
 * keep-alive header _flush() adds. */
static int respond(HttpAnswer *self, const shoal_http_request *r)
{
    buf_t *out = &self->out;
    if (reserve(out, self->body.len + 160) < 0)
        return -1;
    PUTLIT(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ");
    putu(out, (unsigned long long)self->body.len);
    PUTLIT(out, "\r\n");
    if (!r->keep_alive)
        PUTLIT(out, "Connection: close\r\n");
    else if (r->legacy)
        PUTLIT(out, "Connection: keep-alive\r\n");
    PUTLIT(out, "\r\n");
    put(out, self->body.p, self->body.len);
    return 0;
}

/* A failure reply for refusal `why` (counted; the caller counts the request answered). */
static int refuse(HttpAnswer *self, int why)
{
    self->c.failures[why]++;
    return failure_body(&self->body, self->fast->reasons[why], self->fast->retry[why]);
}

static int announce(HttpAnswer *self, parsed_t *p, int64_t now)
{
    shoal_answer *f = self->fast;
    const shoal_http_announce *a = &p->a;
    int refused = shoal_answer_rules(f, &self->banned, p->client, p->clientlen, a->info_hash,
                                     a->peer_id);
    self->c.fast[0]++;
    if (refused >= 0)
        return refuse(self, refused);
    uint8_t addr[18];
    memcpy(addr, p->client, p->clientlen);
    addr[p->clientlen] = (uint8_t)(a->port >> 8);
    addr[p->clientlen + 1] = (uint8_t)a->port;
    shoal_announce_request q;
    memset(&q, 0, sizeof q);
    q.info_hash = a->info_hash;
    q.peer_id = a->peer_id;
    q.addr = addr;
    q.addr_len = (uint32_t)p->clientlen + 2;
    q.key = a->key;
    q.uploaded = a->uploaded;
    q.downloaded = a->downloaded;
    q.seeder = a->left == 0;
    q.event = a->event;
    q.numwant = shoal_answer_numwant(f, a->numwant);
    q.mixed_families = 1;
    q.want_peer_ids = 0;
    q.now = now;
    shoal_announce_outcome o;
    int status = shoal_answer_store(f, &q, &o);
    if (status >= SHOAL_SWARM_FULL && status <= SHOAL_TRACKER_FULL)
        return refuse(self, SHOAL_F_SWARM_FULL + status - SHOAL_SWARM_FULL);
    if (status != SHOAL_OK) {
        /* Out of memory (nothing changed, or the completion not recorded): what Python
         * answers for an internal error. */
        self->c.internal++;
        return failure_body(&self->body, INTERNAL_FAILURE, -1);
    }
    buf_t *b = &self->body;
    if (reserve(b, 256 + o.n4 * 6 + o.n6 * 18) < 0)
        return -1;
    PUTLIT(b, "d8:completei");
    putu(b, o.seeders);
    PUTLIT(b, "e");
    PUTLIT(b, "10:downloadedi");
    puti(b, (long long)(int64_t)o.completed);
    PUTLIT(b, "e11:external ip");
    putstr(b, p->client, p->clientlen);
    PUTLIT(b, "10:incompletei");
    putu(b, o.leechers);
    PUTLIT(b, "e");
    PUTLIT(b, "8:intervali");
    puti(b, (long long)shoal_answer_interval(f));
    PUTLIT(b, "e12:min intervali");
    puti(b, (long long)f->min_interval);
    PUTLIT(b, "e5:peers");
    putstr(b, o.peers4, o.n4 * 6);
    if (o.n6) {
        PUTLIT(b, "6:peers6");
        putstr(b, o.peers6, o.n6 * 18);
    }
    PUTLIT(b, "e");
    return 0;
}

static int hash_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 20);
}

static int scrape(HttpAnswer *self, parsed_t *p)
{
    shoal_answer *f = self->fast;
    /* LogicLayer.scrape: a banned address is refused (the socket's or proxied address). */
    if (self->banned.nv4 + self->banned.nv6 &&
        shoal_netset_contains(&self->banned, p->client, p->clientlen)) {
        self->c.fast[1]++;
        return refuse(self, SHOAL_F_BANNED);
    }
    /* Sorted, each once (encode_scrape). */
    qsort(p->hashes, p->nhashes, 20, hash_cmp);
    buf_t *b = &self->body;
    if (reserve(b, 16 + p->nhashes * 160) < 0)
        return -1;
    PUTLIT(b, "d5:filesd");
    for (size_t i = 0; i < p->nhashes; i++) {
        const uint8_t *h = p->hashes[i];
        if (i && memcmp(h, p->hashes[i - 1], 20) == 0)
            continue;
        shoal_swarm_counts c = {0, 0, 0};
        if (shoal_answer_permits(f, h))
            f->api->scrape(f->table, h, &c);
        putstr(b, h, 20);
        PUTLIT(b, "d8:completei");
        putu(b, c.seeders);
    PUTLIT(b, "e");
        PUTLIT(b, "10:downloadedi");
        puti(b, (long long)(int64_t)c.completed);
        PUTLIT(b, "e10:incompletei");
        putu(b, c.leechers);
    PUTLIT(b, "e");
        PUTLIT(b, "e");
    }
    PUTLIT(b, "ee");
    self->c.fast[1]++;
    return 0;
}

/* ---- the type --------------------------------------------------------------------- */

static int is_proxy(void *ctx, const uint8_t *ip, size_t iplen)
{
    HttpAnswer *self = ctx;
    return shoal_netset_contains(&self->proxies, ip, iplen);
}

/* Parse every request in data; 1 when each is one to answer here, 0 to decline. */
static int parse_all(HttpAnswer *self, const uint8_t *data, size_t size, const uint8_t *peer,
                     size_t peerlen, int trusted, parsed_t *reqs, int *count)
{
    size_t off = 0;
    int n = 0;
    while (off < size) {
        if (n == MAX_REQUESTS)
            return 0;
        parsed_t *p = &reqs[n];
        size_t used = shoal_http_parse(data + off, size - off, &self->limits, &p->r);
        if (!used)
            return 0;
        off += used;
        if (!p->r.keep_alive && off != size)
            return 0; /* input after a request that ends the connection: Python ignores it */
        if (p->r.kind == SHOAL_HTTP_ANNOUNCE) {
            if (!shoal_http_announce_query(p->r.query, p->r.query_len, self->allow_ip_param,
                                           &p->a))
                return 0;
        } else {
            p->nhashes = shoal_http_scrape_query(p->r.query, p->r.query_len,
                                                 (size_t)self->max_scrape_hashes, p->hashes);
            if (!p->nhashes)
                return 0;
        }
        if (trusted && p->r.real_ip != NULL) {
            p->clientlen = shoal_http_real_ip(p->r.real_ip, p->r.real_ip_len, peer, peerlen,
                                              is_proxy, self, p->client);
            if (!p->clientlen)
                return 0;
        } else {
            memcpy(p->client, peer, peerlen);
            p->clientlen = peerlen;
        }
        n++;
    }
    *count = n;
    return n > 0;
}

/* Answer every request in data, appending the replies to self->out: 1 when answered
 * (self->close_after set), 0 when declined (nothing done), -1 out of memory (requests
 * already applied cannot be handed back: no reply; the caller closes the connection).
 * *clock: when it began (monotonic seconds; each request's latency is counted from it), then
 * when it ended, if it answered: one clock read per request when a batch is answered one
 * request after the other. */
static int answer_core(HttpAnswer *self, const uint8_t *data, size_t size, const uint8_t *peer,
                       size_t peerlen, int trusted, int64_t now, double *clock)
{
    if (self->fast == NULL)
        return 0;
    double started = *clock;
    parsed_t reqs[MAX_REQUESTS];
    int n = 0;
    if (!parse_all(self, data, size, peer, peerlen, trusted, reqs, &n))
        return 0;
    int fam = peerlen == 4 ? 0 : 1;
    size_t start = self->out.len;
    for (int i = 0; i < n; i++) {
        parsed_t *p = &reqs[i];
        self->body.len = 0;
        int announcing = p->r.kind == SHOAL_HTTP_ANNOUNCE;
        self->c.requests[fam][announcing ? 0 : 1]++;
        int rc = announcing ? announce(self, p, now) : scrape(self, p);
        if (rc < 0 || respond(self, &p->r) < 0) {
            self->c.internal++;
            self->out.len = start;
            return -1;
        }
        *clock = shoal_monotonic();
        shoal_latency_observe(&self->latency, *clock - started);
    }
    self->close_after = !reqs[n - 1].r.keep_alive;
    self->c.bytes_out += self->out.len - start;
    return 1;
}

/* answer(data, peer_ip, trusted, now) -> the replies to every request in data, or None
 * (nothing done: the Python path takes data). `trusted`: the socket's address is a trusted
 * proxy, so the real-IP header names the client. */
static PyObject *HttpAnswer_answer(HttpAnswer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "answer(data: bytes, peer_ip: bytes, trusted, now)");
        return NULL;
    }
    if (self->fast == NULL)
        Py_RETURN_NONE;
    const uint8_t *peer = (const uint8_t *)PyBytes_AS_STRING(args[1]);
    size_t peerlen = (size_t)PyBytes_GET_SIZE(args[1]);
    if (peerlen != 4 && peerlen != 16) {
        PyErr_SetString(PyExc_ValueError, "peer_ip must be a packed address of 4 or 16 bytes");
        return NULL;
    }
    int trusted = PyObject_IsTrue(args[2]);
    if (trusted < 0)
        return NULL;
    long long now = PyLong_AsLongLong(args[3]);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    self->out.len = 0;
    double clock = shoal_monotonic();
    int rc = answer_core(self, (const uint8_t *)PyBytes_AS_STRING(args[0]),
                         (size_t)PyBytes_GET_SIZE(args[0]), peer, peerlen, trusted, now, &clock);
    if (rc < 0)
        return PyErr_NoMemory();
    if (rc == 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)self->out.p, (Py_ssize_t)self->out.len);
}

/* The packed address (IPv4-mapped made IPv4) of an accepted peer; 0 if not inet. */
static int peer_address(const struct sockaddr_storage *ss, uint8_t *ip, size_t *iplen)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ss->ss_family == AF_INET) {
        memcpy(ip, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        *iplen = 4;
        return 1;
    }
    if (ss->ss_family == AF_INET6) {
        const uint8_t *raw = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        int v4 = memcmp(raw, mapped, 12) == 0;
        memcpy(ip, v4 ? raw + 12 : raw, v4 ? 4 : 16);
        *iplen = v4 ? 4 : 16;
        return 1;
    }
    return 0;
}

/* One connection for Python: (fd, input read, reply bytes not yet sent, close after them,
 * a request was answered). */
static int hand_over(PyObject *list, int fd, const uint8_t *data, size_t n, const uint8_t *unsent,
                     size_t m, int close_after, int served)
{
    PyObject *item = Py_BuildValue("(iy#y#OO)", fd, (const char *)data, (Py_ssize_t)n,
                                   (const char *)unsent, (Py_ssize_t)m,
                                   close_after ? Py_True : Py_False, served ? Py_True : Py_False);
    if (item == NULL || PyList_Append(list, item) < 0) {
        Py_XDECREF(item);
        close(fd);
        return -1;
    }
    Py_DECREF(item);
    return 0;
}

enum { READ_DECLINED, READ_GONE, READ_SENT, READ_CLOSES, READ_PARTIAL };

/* Send the replies at self->out.p + off (len bytes) to fd: READ_GONE (the client is gone:
 * close it), READ_SENT (every reply sent; it stays open), READ_CLOSES (every reply sent, and
 * the last one closes it), READ_PARTIAL (hand it over with what is left to send, from
 * self->out.p + off + *done). */
static int send_replies(HttpAnswer *self, int fd, size_t off, size_t len, int close_after,
                        size_t *done)
{
    *done = 0;
    ssize_t sent = send(fd, self->out.p + off, len, MSG_NOSIGNAL);
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return READ_GONE;
    *done = sent < 0 ? 0 : (size_t)sent;
    if (*done < len)
        return READ_PARTIAL;
    return close_after ? READ_CLOSES : READ_SENT;
}

/* Answer the n bytes (0 < n) one read of a connection from ip got, appending the replies
 * to self->out (as answer_core, *clock too): READ_DECLINED (nothing done: hand it over with
 * what was read), READ_GONE (no reply can be made: close it), or READ_SENT when the replies
 * are there to send (self->close_after set). */
static int answer_one(HttpAnswer *self, const uint8_t *data, size_t n, const uint8_t *ip,
                      size_t iplen, int trusted, int64_t now, double *clock)
{
    if (n == ACCEPT_READ)
        return READ_DECLINED; /* maybe more to read: Python's slices take it */
    int rc = answer_core(self, data, n, ip, iplen, trusted, now, clock);
    if (rc <= 0)
        return rc < 0 ? READ_GONE : READ_DECLINED;
    self->c.bytes_in += (unsigned long long)n;
    return READ_SENT;
}

/* Answer the n bytes just read from fd into self->in (0 < n) in C and send the replies:
 * what answer_one says when it is not READ_SENT, else what send_replies says (*done counts
 * from self->out.p). */
static int answer_read(HttpAnswer *self, int fd, size_t n, const uint8_t *ip, size_t iplen,
                       int trusted, int64_t now, size_t *done)
{
    *done = 0;
    self->out.len = 0;
    double clock = shoal_monotonic();
    int rc = answer_one(self, self->in, n, ip, iplen, trusted, now, &clock);
    if (rc != READ_SENT)
        return rc;
    return send_replies(self, fd, 0, self->out.len, self->close_after, done);
}

/* Out of memory while handing connections over: those in the list are closed (none leaks). */
static PyObject *hand_over_failed(PyObject *handed)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(handed); i++)
        close((int)PyLong_AsLong(PyTuple_GET_ITEM(PyList_GET_ITEM(handed, i), 0)));
    Py_DECREF(handed);
    return NULL;
}

/* ---- kept connections -------------------------------------------------------------- */

/* A keep-alive connection whose requests so far were all answered here stays here between
 * requests: in an epoll set of its own (whose fd the Python frontend watches), read,
 * answered and written by serve() with no Python object for it. The first request C cannot
 * answer whole hands it over to Python with what was read, for good. Its keep-alive wait,
 * the connection caps and eviction match the Python frontend's (HttpFrontend.admit): the
 * per-address counts are the frontend's own dict, which C adds to and takes from. */

static void per_ip_add(HttpAnswer *self, const uint8_t *ip, size_t iplen, long delta)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)ip, (Py_ssize_t)iplen);
    if (key == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *have = PyDict_GetItemWithError(self->per_ip, key);
    long count = have != NULL ? PyLong_AsLong(have) : 0;
    if (count < 0)
        count = 0;
    if (PyErr_Occurred()) {
        PyErr_Clear();
    } else if (count + delta <= 0) {
        if (have != NULL && PyDict_DelItem(self->per_ip, key) < 0)
            PyErr_Clear();
    } else {
        PyObject *value = PyLong_FromLong(count + delta);
        if (value == NULL || PyDict_SetItem(self->per_ip, key, value) < 0)
            PyErr_Clear();
        Py_XDECREF(value);
    }
    Py_DECREF(key);
}

static long per_ip_count(HttpAnswer *self, const uint8_t *ip, size_t iplen)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)ip, (Py_ssize_t)iplen);
    if (key == NULL) {
        PyErr_Clear();
        return -1;
    }
    PyObject *have = PyDict_GetItemWithError(self->per_ip, key);
    Py_DECREF(key);
    if (have == NULL) {
        if (!PyErr_Occurred())
            return 0;
        PyErr_Clear();
        return -1;
    }
    long count = PyLong_AsLong(have);
    if (count == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return count;
}

static void kept_link_tail(HttpAnswer *self, int fd)
{
    kept_t *k = &self->kc[fd];
    k->prev = self->tail;
    k->next = -1;
    if (self->tail >= 0)
        self->kc[self->tail].next = fd;
    else
        self->head = fd;
    self->tail = fd;
}

static void kept_unlink(HttpAnswer *self, int fd)
{
    kept_t *k = &self->kc[fd];
    if (k->prev >= 0)
        self->kc[k->prev].next = k->next;
    else
        self->head = k->next;
    if (k->next >= 0)
        self->kc[k->next].prev = k->prev;
    else
        self->tail = k->prev;
}

/* Whether a new connection from ip would meet a cap (or the count cannot be read): then
 * Python's admit is left to decide (refuse it, or make room), before anything is answered. */
static int over_caps(HttpAnswer *self, const uint8_t *ip, size_t iplen, int trusted,
                     Py_ssize_t python_open)
{
    if (python_open + self->kept >= self->room)
        return 1;
    if (trusted || self->max_per_ip <= 0)
        return 0;
    long count = per_ip_count(self, ip, iplen);
    return count < 0 || count >= self->max_per_ip;
}

/* Keep fd here (1), or not (0: the caller hands it over). The caller checked the caps
 * (over_caps) for this connection already. */
static int try_keep(HttpAnswer *self, int fd, const uint8_t *ip, size_t iplen, int trusted,
                    int seen)
{
    if (!self->keeping || fd < 0)
        return 0;
    if (fd >= self->kc_cap) {
        int cap = self->kc_cap ? self->kc_cap : 1024;
        while (cap <= fd)
            cap *= 2;
        kept_t *kc = realloc(self->kc, (size_t)cap * sizeof *kc);
        if (kc == NULL)
            return 0;
        memset(kc + self->kc_cap, 0, (size_t)(cap - self->kc_cap) * sizeof *kc);
        self->kc = kc;
        self->kc_cap = cap;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    /* Edge-triggered: a level-triggered set polls every connection it reported once more,
     * on the next wait, to find it drained (about a third of epoll_wait's cost under the
     * bench's keep-alive load, perf). serve() reads until the socket is drained: a read
     * short of ACCEPT_READ took all there was (what comes after it is a new edge), and a
     * full one hands the connection over, out of this set. */
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.fd = fd;
    if (epoll_ctl(self->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        return 0;
    kept_t *k = &self->kc[fd];
    memcpy(k->ip, ip, iplen);
    k->iplen = (uint8_t)iplen;
    k->trusted = (uint8_t)(trusted != 0);
    k->seen = (uint8_t)(seen != 0);
    k->since = shoal_monotonic();
    kept_link_tail(self, fd);
    self->kept++;
    per_ip_add(self, ip, iplen, 1);
    return 1;
}

/* Stop keeping fd (it is closed or handed over next). */
static void unkeep(HttpAnswer *self, int fd)
{
    kept_t *k = &self->kc[fd];
    epoll_ctl(self->ep, EPOLL_CTL_DEL, fd, NULL);
    kept_unlink(self, fd);
    per_ip_add(self, k->ip, k->iplen, -1);
    k->iplen = 0;
    self->kept--;
}

static void unkeep_and_close(HttpAnswer *self, int fd)
{
    unkeep(self, fd);
    close(fd);
    self->c.connections++;
}

static void close_all_kept(HttpAnswer *self)
{
    while (self->head >= 0)
        unkeep_and_close(self, self->head);
}

/* keep_start(per_ip, room, max_per_ip, first_byte_timeout, keepalive_timeout) -> the epoll
 * fd to watch: from now on accept() keeps keep-alive connections it answered (and ones
 * silent so far) while the frontend's connections and the kept ones are fewer than room,
 * and their address has fewer than max_per_ip open (0: no cap; trusted proxies are never
 * capped). Called again, it takes new limits. */
static PyObject *HttpAnswer_keep_start(HttpAnswer *self, PyObject *args)
{
    PyObject *per_ip;
    Py_ssize_t room, max_per_ip;
    double first_byte, keepalive;
    if (!PyArg_ParseTuple(args, "O!nndd", &PyDict_Type, &per_ip, &room, &max_per_ip,
                          &first_byte, &keepalive))
        return NULL;
    if (!self->ep_open) {
        self->ep = epoll_create1(EPOLL_CLOEXEC);
        if (self->ep < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        self->ep_open = 1;
    }
    if (self->per_ip != per_ip) {
        if (self->kept > 0) {
            PyErr_SetString(PyExc_ValueError, "keep_start: another per_ip dict while keeping");
            return NULL;
        }
        Py_INCREF(per_ip);
        Py_XSETREF(self->per_ip, per_ip);
    }
    self->room = room;
    self->max_per_ip = max_per_ip;
    self->first_byte_timeout = first_byte;
    self->keepalive_timeout = keepalive;
    self->keeping = 1;
    return PyLong_FromLong(self->ep);
}

/* keep_stop(): close every kept connection and keep no more (the epoll fd stays open, and
 * empty, until the HttpAnswer goes). */
static PyObject *HttpAnswer_keep_stop(HttpAnswer *self, PyObject *Py_UNUSED(ignored))
{
    self->keeping = 0;
    if (self->per_ip != NULL)
        close_all_kept(self);
    Py_RETURN_NONE;
}

/* One connection of serve()'s batch. */
typedef struct {
    int fd;
    int rc;         /* READ_DECLINED, READ_GONE, or READ_SENT for replies to send */
    size_t in, n;   /* what was read: self->batch + in, n bytes */
    size_t out, len; /* the replies: self->out.p + out, len bytes */
    int close_after;
    int eof; /* the client's end is shut too: no later edge would tell (close it after) */
} serving_t;

/* serve(now, max) -> [(fd, data, unsent, close, served), ...]: read the kept connections the
 * epoll set says are readable (at most max) and answer what they sent when the compiled
 * path takes all of it; a connection that closed, or whose reply closes it, is closed here.
 * The others are handed over, as accept() does.
 *
 * It goes in three passes over the batch: read every connection, answer every request,
 * send every reply. Each pass keeps its code and data (ours, or the kernel's receive or
 * send path) hot in the caches from one connection to the next; one connection after the
 * other, each request went through all three and found them evicted. Under the bench's
 * keep-alive load a wait reports about 43 connections, and two thirds of a request's CPU
 * is the kernel's (perf). */
static PyObject *HttpAnswer_serve(HttpAnswer *self, PyObject *args)
{
    long long now;
    int max;
    if (!PyArg_ParseTuple(args, "Li", &now, &max))
        return NULL;
    PyObject *handed = PyList_New(0);
    if (handed == NULL)
        return NULL;
    if (!self->ep_open || self->kept == 0)
        return handed;
    if (self->batch == NULL && (self->batch = malloc((size_t)SERVE_MAX * ACCEPT_READ)) == NULL) {
        Py_DECREF(handed);
        return PyErr_NoMemory();
    }
    struct epoll_event evs[SERVE_MAX];
    serving_t batch[SERVE_MAX];
    if (max > SERVE_MAX)
        max = SERVE_MAX;
    if (max < 1)
        max = 1;
    int ready = epoll_wait(self->ep, evs, max, 0);
    /* read */
    int count = 0;
    size_t used = 0;
    for (int i = 0; i < ready; i++) {
        int fd = evs[i].data.fd;
        if (fd < 0 || fd >= self->kc_cap || self->kc[fd].iplen == 0)
            continue;
        ssize_t n;
        do
            n = recv(fd, self->batch + used, ACCEPT_READ, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0) {
            unkeep_and_close(self, fd); /* the client closed, or the connection broke */
            continue;
        }
        batch[count++] = (serving_t){.fd = fd, .in = used, .n = (size_t)n,
                                     .eof = (evs[i].events & (EPOLLRDHUP | EPOLLHUP)) != 0};
        used += (size_t)n;
    }
    /* answer */
    self->out.len = 0;
    double clock = shoal_monotonic();
    for (int i = 0; i < count; i++) {
        serving_t *b = &batch[i];
        kept_t *k = &self->kc[b->fd];
        b->out = self->out.len;
        b->rc = answer_one(self, self->batch + b->in, b->n, k->ip, k->iplen, k->trusted, now,
                           &clock);
        b->len = self->out.len - b->out;
        b->close_after = self->close_after;
    }
    /* send (each connection's activity dated by the end of the answer pass) */
    int failed = 0;
    PyObject *error_type = NULL, *error_value = NULL, *error_tb = NULL;
    for (int i = 0; i < count; i++) {
        serving_t *b = &batch[i];
        int fd = b->fd;
        int seen = self->kc[fd].seen;
        size_t done = 0;
        int rc = b->rc;
        if (rc == READ_SENT)
            rc = send_replies(self, fd, b->out, b->len, b->close_after || b->eof, &done);
        if (rc == READ_SENT) {
            kept_t *k = &self->kc[fd];
            k->seen = 1;
            k->since = clock;
            kept_unlink(self, fd);
            kept_link_tail(self, fd);
        } else if (rc == READ_GONE || rc == READ_CLOSES || failed) {
            unkeep_and_close(self, fd); /* (failed: out of memory for Python's share) */
        } else {
            unkeep(self, fd);
            failed = (rc == READ_DECLINED ? hand_over(handed, fd, self->batch + b->in, b->n,
                                                      NULL, 0, 0, seen)
                                          : hand_over(handed, fd, NULL, 0,
                                                      self->out.p + b->out + done,
                                                      b->len - done, b->close_after, 1)) < 0;
            /* The rest of the batch was read already: it is carried on (unkeep calls into
               Python, which must not see this error pending) and the error raised after. */
            if (failed)
                PyErr_Fetch(&error_type, &error_value, &error_tb);
        }
    }
    if (failed) {
        PyErr_Restore(error_type, error_value, error_tb);
        return hand_over_failed(handed);
    }
    return handed;
}

/* sweep() -> how many kept connections it closed: those whose keep-alive wait is over, or
 * silent since accepted for first_byte_timeout (run about once a second). */
static PyObject *HttpAnswer_sweep(HttpAnswer *self, PyObject *Py_UNUSED(ignored))
{
    double now = shoal_monotonic();
    double soonest = self->keepalive_timeout < self->first_byte_timeout
                         ? self->keepalive_timeout
                         : self->first_byte_timeout;
    long closed = 0;
    int fd = self->head;
    while (fd >= 0) {
        kept_t *k = &self->kc[fd];
        int next = k->next;
        double idle = now - k->since;
        if (idle <= soonest)
            break; /* the list is in order of activity: the rest are more recent */
        if (idle > (k->seen ? self->keepalive_timeout : self->first_byte_timeout)) {
            if (k->seen)
                self->c.idle_timeouts++;
            else
                self->c.first_byte_timeouts++;
            unkeep_and_close(self, fd);
            closed++;
        }
        fd = next;
    }
    return PyLong_FromLong(closed);
}

/* evict_oldest() -> whether a kept connection was closed to make room: the one idle the
 * longest. */
static PyObject *HttpAnswer_evict_oldest(HttpAnswer *self, PyObject *Py_UNUSED(ignored))
{
    if (self->head < 0)
        Py_RETURN_FALSE;
    self->c.evictions++;
    unkeep_and_close(self, self->head);
    Py_RETURN_TRUE;
}

/* accept(listen_fd, now, max, python_open=0) -> [(fd, data, unsent, close, served), ...]:
 * accept up to max connections (non-blocking) and answer each one's first read in C when it
 * holds requests the compiled path takes; a connection whose reply closes it is closed here
 * and never reaches Python, and once keep_start was called one kept alive (or silent so far)
 * is kept here while the caps allow (python_open: the frontend's own open connections). The
 * others are handed over, with what was read and what could not be sent, for the Python
 * frontend to carry on (it owns the fd from then on). */
static PyObject *HttpAnswer_accept(HttpAnswer *self, PyObject *args)
{
    int lfd, max;
    long long now;
    Py_ssize_t python_open = 0;
    if (!PyArg_ParseTuple(args, "iLi|n", &lfd, &now, &max, &python_open))
        return NULL;
    if (self->in == NULL && (self->in = malloc(ACCEPT_READ)) == NULL)
        return PyErr_NoMemory();
    PyObject *handed = PyList_New(0);
    if (handed == NULL)
        return NULL;
    for (int i = 0; i < max; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                self->c.accept_errors++; /* EMFILE and the like: try again on the next wake */
            break;
        }
        uint8_t ip[16];
        size_t iplen;
        ssize_t n = recv(fd, self->in, ACCEPT_READ, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            close(fd); /* gone before a byte: as Python would, counted and forgotten */
            self->c.connections++;
            continue;
        }
        if (!peer_address(&ss, ip, &iplen)) {
            if (hand_over(handed, fd, self->in, n < 0 ? 0 : (size_t)n, NULL, 0, 0, 0) < 0)
                return hand_over_failed(handed);
            continue;
        }
        int trusted = shoal_netset_contains(&self->proxies, ip, iplen);
        int over = self->keeping && over_caps(self, ip, iplen, trusted, python_open);
        if (n < 0 || over) {
            if (n < 0 && !over && self->fast != NULL && try_keep(self, fd, ip, iplen, trusted, 0))
                continue; /* silent so far: its request is read when it comes */
            if (hand_over(handed, fd, self->in, n < 0 ? 0 : (size_t)n, NULL, 0, 0, 0) < 0)
                return hand_over_failed(handed);
            continue;
        }
        size_t done;
        int rc = answer_read(self, fd, (size_t)n, ip, iplen, trusted, now, &done);
        if (rc == READ_GONE || rc == READ_CLOSES) {
            close(fd);
            self->c.connections++;
            continue;
        }
        if (rc == READ_SENT && try_keep(self, fd, ip, iplen, trusted, 1))
            continue;
        int failed = rc == READ_DECLINED
                         ? hand_over(handed, fd, self->in, (size_t)n, NULL, 0, 0, 0)
                         : hand_over(handed, fd, NULL, 0, self->out.p + done,
                                     self->out.len - done, self->close_after, 1);
        if (failed < 0)
            return hand_over_failed(handed);
    }
    return handed;
}

static PyObject *HttpAnswer_attach(HttpAnswer *self, PyObject *args, PyObject *kwds)
{
    PyObject *texts = NULL;
    shoal_answer *f = shoal_answer_new(args, kwds, &texts);
    if (f == NULL)
        return NULL;
    shoal_answer_inherit(f, self->fast);
    shoal_answer_free(self->fast);
    self->fast = f;
    return texts;
}

static PyObject *HttpAnswer_detach(HttpAnswer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *left = shoal_answer_take_completed(self->fast);
    if (left == NULL)
        return NULL;
    shoal_answer_free(self->fast);
    self->fast = NULL;
    return left;
}

static PyObject *HttpAnswer_take_completed(HttpAnswer *self, PyObject *Py_UNUSED(ignored))
{
    return shoal_answer_take_completed(self->fast);
}

static PyObject *load_set(shoal_netset *set, PyObject *args)
{
    PyObject *v4, *v6;
    if (!PyArg_ParseTuple(args, "OO", &v4, &v6))
        return NULL;
    shoal_netset fresh;
    if (shoal_netset_load(v4, v6, &fresh) < 0)
        return NULL;
    shoal_netset_free(set);
    *set = fresh;
    Py_RETURN_NONE;
}

static PyObject *HttpAnswer_set_banned(HttpAnswer *self, PyObject *args)
{
    return load_set(&self->banned, args);
}

static PyObject *HttpAnswer_set_proxies(HttpAnswer *self, PyObject *args)
{
    return load_set(&self->proxies, args);
}

/* counts() -> ((slot, count), ...) of the nonzero figures since the last call, and the
 * latency sum. Slots: 0 bytes out, 1-4 requests (ipv4 announce, ipv4 scrape, ipv6
 * announce, ipv6 scrape), 5 internal errors, then one per latency bucket
 * (len(latency_bounds) + 1), then announces and scrapes answered here, then the refusals
 * by reason (the order of attach's result), then bytes read by accept() from connections
 * answered here, connections closed here (never seen by Python), accept errors, and kept
 * connections closed on their keep-alive wait, on their first-byte wait, and to make room. */
static PyObject *HttpAnswer_counts(HttpAnswer *self, PyObject *Py_UNUSED(ignored))
{
    unsigned long long flat[SLOT_LATENCY + SHOAL_MAX_BOUNDS + 1 + 2 + SHOAL_FAILURES + 6];
    const counts_t *c = &self->c;
    int n = 0;
    flat[n++] = c->bytes_out;
    for (int f = 0; f < 2; f++)
        for (int k = 0; k < 2; k++)
            flat[n++] = c->requests[f][k];
    flat[n++] = c->internal;
    for (int b = 0; b <= self->latency.n; b++)
        flat[n++] = self->latency.counts[b];
    for (int k = 0; k < 2; k++)
        flat[n++] = c->fast[k];
    for (int k = 0; k < SHOAL_FAILURES; k++)
        flat[n++] = c->failures[k];
    flat[n++] = c->bytes_in;
    flat[n++] = c->connections;
    flat[n++] = c->accept_errors;
    flat[n++] = c->idle_timeouts;
    flat[n++] = c->first_byte_timeouts;
    flat[n++] = c->evictions;
    PyObject *out = shoal_count_pairs(flat, n, self->latency.sum);
    if (out != NULL) {
        memset(&self->c, 0, sizeof self->c);
        shoal_latency_reset(&self->latency);
    }
    return out;
}

static PyObject *HttpAnswer_get_attached(HttpAnswer *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->fast != NULL);
}

static int HttpAnswer_init(HttpAnswer *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_request_line", "max_header_bytes", "max_headers",
                             "real_ip_header", "max_scrape_hashes", "allow_ip_param",
                             "latency_bounds", NULL};
    Py_ssize_t line, bytes, headers, scrape;
    PyObject *header, *bounds;
    int allow;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nnnOnpO", kwlist, &line, &bytes, &headers,
                                     &header, &scrape, &allow, &bounds))
        return -1;
    if (line < 0 || bytes < 0 || headers < 0 || scrape < 0) {
        PyErr_SetString(PyExc_ValueError, "limits must not be negative");
        return -1;
    }
    if (header != Py_None && (!PyBytes_Check(header) || PyBytes_GET_SIZE(header) == 0 ||
                              PyBytes_GET_SIZE(header) > MAX_HEADER_NAME)) {
        PyErr_SetString(PyExc_ValueError, "real_ip_header: None or a header name (bytes)");
        return -1;
    }
    if (shoal_latency_bounds(&self->latency, bounds) < 0)
        return -1;
    if (!self->ep_open)
        self->head = self->tail = -1;
    self->limits.max_request_line = (size_t)line;
    self->limits.max_header_bytes = (size_t)bytes;
    self->limits.max_headers = (size_t)headers;
    if (header == Py_None) {
        self->limits.real_ip_header = NULL;
        self->limits.real_ip_header_len = 0;
    } else {
        Py_ssize_t n = PyBytes_GET_SIZE(header);
        const char *name = PyBytes_AS_STRING(header);
        for (Py_ssize_t i = 0; i < n; i++)
            self->header[i] = (uint8_t)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
        self->limits.real_ip_header = self->header;
        self->limits.real_ip_header_len = (size_t)n;
    }
    self->max_scrape_hashes = scrape;
    self->allow_ip_param = allow;
    return 0;
}

static void HttpAnswer_dealloc(HttpAnswer *self)
{
    if (self->per_ip != NULL)
        close_all_kept(self);
    Py_CLEAR(self->per_ip);
    if (self->ep_open)
        close(self->ep);
    free(self->kc);
    shoal_answer_free(self->fast);
    shoal_netset_free(&self->banned);
    shoal_netset_free(&self->proxies);
    free(self->out.p);
    free(self->body.p);
    free(self->in);
    free(self->batch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef HttpAnswer_methods[] = {
    {"answer", (PyCFunction)(void (*)(void))HttpAnswer_answer, METH_FASTCALL,
     "answer(data, peer_ip, trusted, now) -> the replies, or None (Python answers)"},
    {"accept", (PyCFunction)HttpAnswer_accept, METH_VARARGS,
     "accept(listen_fd, now, max, python_open=0) -> [(fd, data, unsent, close, served), ...] "
     "for Python"},
    {"attach", (PyCFunction)(void (*)(void))HttpAnswer_attach, METH_VARARGS | METH_KEYWORDS,
     "attach(table, interval, jitter, default_numwant, max_numwant, torrents, hashes, "
     "client_allow, client_deny, reasons, record_completed, seed, min_interval) -> refusal "
     "texts"},
    {"detach", (PyCFunction)HttpAnswer_detach, METH_NOARGS,
     "detach() -> completed info_hashes not yet taken"},
    {"take_completed", (PyCFunction)HttpAnswer_take_completed, METH_NOARGS,
     "take_completed() -> info_hashes (20 bytes each) that counted a completion"},
    {"set_banned", (PyCFunction)HttpAnswer_set_banned, METH_VARARGS,
     "set_banned(v4_groups, v6_groups): [(shift, [prefix, ...]), ...] per family"},
    {"set_proxies", (PyCFunction)HttpAnswer_set_proxies, METH_VARARGS,
     "set_proxies(v4_groups, v6_groups): the trusted proxies' networks"},
    {"counts", (PyCFunction)HttpAnswer_counts, METH_NOARGS, "counts() -> figures since last call"},
    {"keep_start", (PyCFunction)HttpAnswer_keep_start, METH_VARARGS,
     "keep_start(per_ip, room, max_per_ip, first_byte_timeout, keepalive_timeout) -> epoll fd"},
    {"keep_stop", (PyCFunction)HttpAnswer_keep_stop, METH_NOARGS,
     "keep_stop(): close the kept connections and keep no more"},
    {"serve", (PyCFunction)HttpAnswer_serve, METH_VARARGS,
     "serve(now, max) -> [(fd, data, unsent, close, served), ...] for Python"},
    {"sweep", (PyCFunction)HttpAnswer_sweep, METH_NOARGS,
     "sweep() -> kept connections closed at the end of their wait"},
    {"evict_oldest", (PyCFunction)HttpAnswer_evict_oldest, METH_NOARGS,
     "evict_oldest() -> whether the kept connection idle the longest was closed"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef HttpAnswer_members[] = {
    {"kept", T_PYSSIZET, offsetof(HttpAnswer, kept), READONLY,
     "Connections kept here between requests (see keep_start)."},
    {"close_after", T_INT, offsetof(HttpAnswer, close_after), READONLY,
     "Nonzero when the last answer() ended with a reply that closes the connection."},
    {"allow_ip_param", T_INT, offsetof(HttpAnswer, allow_ip_param), 0,
     "Nonzero: an announce with an ip, ipv4 or ipv6 parameter goes to Python."},
    {"max_scrape_hashes", T_PYSSIZET, offsetof(HttpAnswer, max_scrape_hashes), 0,
     "info_hash values a scrape may carry (more: Python answers the refusal)."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef HttpAnswer_getset[] = {
    {"attached", (getter)HttpAnswer_get_attached, NULL,
     "Whether announces and scrapes are answered in C (attach).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HttpAnswerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shoal._native_http.HttpAnswer",
    .tp_basicsize = sizeof(HttpAnswer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HTTP announces and scrapes answered in C, for one HTTP frontend.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HttpAnswer_init,
    .tp_dealloc = (destructor)HttpAnswer_dealloc,
    .tp_methods = HttpAnswer_methods,
    .tp_members = HttpAnswer_members,
    .tp_getset = HttpAnswer_getset,
};

/* ---- module ----------------------------------------------------------------------- */

/* parse(data, max_request_line, max_header_bytes, max_headers, real_ip_header) -> None or
 * (bytes taken, kind, target, query, real_ip or None, keep_alive, legacy): the request
 * parser alone, for the tests. */
static PyObject *mod_parse(PyObject *Py_UNUSED(m), PyObject *args)
{
    Py_buffer data;
    Py_ssize_t line, bytes, headers;
    PyObject *header;
    if (!PyArg_ParseTuple(args, "y*nnnO", &data, &line, &bytes, &headers, &header))
        return NULL;
    PyObject *result = NULL;
    shoal_http_limits limits = {(size_t)line, (size_t)bytes, (size_t)headers, NULL, 0};
    if (header != Py_None) {
        if (!PyBytes_Check(header)) {
            PyErr_SetString(PyExc_TypeError, "real_ip_header: bytes or None");
            goto done;
        }
        limits.real_ip_header = (const uint8_t *)PyBytes_AS_STRING(header);
        limits.real_ip_header_len = (size_t)PyBytes_GET_SIZE(header);
    }
    /* A heap copy of exactly its length, so that under AddressSanitizer a read past the
     * input is caught (a bytes object has a spare NUL byte after it). */
    uint8_t *copy = malloc(data.len ? (size_t)data.len : 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(copy, data.buf, (size_t)data.len);
    shoal_http_request r;
    size_t used = shoal_http_parse(copy, (size_t)data.len, &limits, &r);
    if (!used) {
        Py_INCREF(Py_None);
        result = Py_None;
    } else {
        result = Py_BuildValue(
            "(niy#y#OOO)", (Py_ssize_t)used, r.kind, r.target, (Py_ssize_t)r.target_len,
            r.query, (Py_ssize_t)r.query_len, Py_None, r.keep_alive ? Py_True : Py_False,
            r.legacy ? Py_True : Py_False);
        if (result != NULL && r.real_ip != NULL) {
            PyObject *v = PyBytes_FromStringAndSize((const char *)r.real_ip,
                                                    (Py_ssize_t)r.real_ip_len);
            if (v == NULL)
                Py_CLEAR(result);
            else
                PyTuple_SetItem(result, 4, v);
        }
    }
    free(copy);
done:
    PyBuffer_Release(&data);
    return result;
}

/* announce_query(query, allow_ip_param) -> None or (info_hash, peer_id, port, uploaded,
 * downloaded, left, event, numwant, key): the announce query reader alone, for the tests. */
static PyObject *mod_announce_query(PyObject *Py_UNUSED(m), PyObject *args)
{
    Py_buffer q;
    int allow;
    if (!PyArg_ParseTuple(args, "y*p", &q, &allow))
        return NULL;
    uint8_t *copy = malloc(q.len ? (size_t)q.len : 1);
    if (copy == NULL) {
        PyBuffer_Release(&q);
        return PyErr_NoMemory();
    }
    memcpy(copy, q.buf, (size_t)q.len);
    shoal_http_announce a;
    int ok = shoal_http_announce_query(copy, (size_t)q.len, allow, &a);
    free(copy);
    PyBuffer_Release(&q);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("(y#y#iKKKiLk)", a.info_hash, (Py_ssize_t)20, a.peer_id, (Py_ssize_t)20,
                         (int)a.port, a.uploaded, a.downloaded, a.left, a.event,
                         (long long)a.numwant, (unsigned long)a.key);
}

/* scrape_query(query, max_hashes) -> the info_hashes, or None. For the tests. */
static PyObject *mod_scrape_query(PyObject *Py_UNUSED(m), PyObject *args)
{
    Py_buffer q;
    Py_ssize_t max;
    if (!PyArg_ParseTuple(args, "y*n", &q, &max))
        return NULL;
    uint8_t hashes[SHOAL_HTTP_MAX_SCRAPE][20];
    uint8_t *copy = malloc(q.len ? (size_t)q.len : 1);
    if (copy == NULL) {
        PyBuffer_Release(&q);
        return PyErr_NoMemory();
    }
    memcpy(copy, q.buf, (size_t)q.len);
    size_t n = shoal_http_scrape_query(copy, (size_t)q.len, max < 0 ? 0 : (size_t)max, hashes);
    free(copy);
    PyBuffer_Release(&q);
    if (!n)
        Py_RETURN_NONE;
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out != NULL && i < n; i++) {
        PyObject *h = PyBytes_FromStringAndSize((const char *)hashes[i], 20);
        if (h == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, h);
    }
    return out;
}

static int in_set(void *ctx, const uint8_t *ip, size_t iplen)
{
    return shoal_netset_contains(ctx, ip, iplen);
}

/* real_ip(value, peer_ip, v4_groups, v6_groups) -> the client's packed address as the
 * compiled path picks it from a trusted proxy's header, or None (declined). For the tests. */
static PyObject *mod_real_ip(PyObject *Py_UNUSED(m), PyObject *args)
{
    Py_buffer value, peer;
    PyObject *v4, *v6;
    if (!PyArg_ParseTuple(args, "y*y*OO", &value, &peer, &v4, &v6))
        return NULL;
    PyObject *result = NULL;
    shoal_netset set;
    uint8_t *copy = NULL;
    if (peer.len != 4 && peer.len != 16) {
        PyErr_SetString(PyExc_ValueError, "peer_ip must be 4 or 16 bytes");
        goto done;
    }
    if (shoal_netset_load(v4, v6, &set) < 0)
        goto done;
    copy = malloc(value.len ? (size_t)value.len : 1);
    if (copy == NULL) {
        shoal_netset_free(&set);
        PyErr_NoMemory();
        goto done;
    }
    memcpy(copy, value.buf, (size_t)value.len);
    uint8_t out[16];
    size_t n = shoal_http_real_ip(copy, (size_t)value.len, peer.buf, (size_t)peer.len, in_set,
                                  &set, out);
    shoal_netset_free(&set);
    if (n)
        result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)n);
    else
        result = (Py_INCREF(Py_None), Py_None);
done:
    free(copy);
    PyBuffer_Release(&value);
    PyBuffer_Release(&peer);
    return result;
}

static PyObject *mod_key(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_buffer k;
    if (PyObject_GetBuffer(arg, &k, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t v = shoal_http_key(k.buf, (size_t)k.len);
    PyBuffer_Release(&k);
    return PyLong_FromUnsignedLong(v);
}

static PyMethodDef module_methods[] = {
    {"parse", (PyCFunction)mod_parse, METH_VARARGS,
     "parse(data, max_request_line, max_header_bytes, max_headers, real_ip_header) -> "
     "(taken, kind, target, query, real_ip, keep_alive, legacy) or None"},
    {"announce_query", (PyCFunction)mod_announce_query, METH_VARARGS,
     "announce_query(query, allow_ip_param) -> the fields read, or None"},
    {"scrape_query", (PyCFunction)mod_scrape_query, METH_VARARGS,
     "scrape_query(query, max_hashes) -> info_hashes, or None"},
    {"key", (PyCFunction)mod_key, METH_O, "key(text) -> BEP 7 key as 32 bits"},
    {"real_ip", (PyCFunction)mod_real_ip, METH_VARARGS,
     "real_ip(value, peer_ip, v4_groups, v6_groups) -> packed address, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shoal._native_http",
    "Shoal's HTTP data plane: announces and scrapes parsed and answered in C.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__native_http(void)
{
    if (PyType_Ready(&HttpAnswerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&HttpAnswerType);
    if (PyModule_AddObject(m, "HttpAnswer", (PyObject *)&HttpAnswerType) < 0) {
        Py_DECREF(&HttpAnswerType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_REQUESTS", MAX_REQUESTS) < 0 ||
        PyModule_AddIntConstant(m, "ANNOUNCE", SHOAL_HTTP_ANNOUNCE) < 0 ||
        PyModule_AddIntConstant(m, "SCRAPE", SHOAL_HTTP_SCRAPE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
