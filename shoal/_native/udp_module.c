/* shoal._native_udp: the UDP data plane in C.
 *
 * An Engine owns nothing but buffers: Shoal binds the socket, and the event loop calls
 * Engine.drain() when it is readable. drain() reads datagrams in batches with recvmmsg,
 * decodes each one (udp.c), answers connects, bad connection ids and malformed datagrams
 * itself, hands the valid announces and scrapes of the batch to a Python callable in one
 * call, and sends every reply of the batch with one sendmmsg. Counters are kept in C and
 * collected by Python with counts(), into the same figures the Python path keeps.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "udp.h"
#include "answer.h"

#define BATCH 64
#define RECV_BUFFER 1536 /* more than SHOAL_UDP_MAX_DATAGRAM: longer ones are not read */

enum { KIND_ANNOUNCE = 0, KIND_SCRAPE, KIND_CONNECT, KIND_ERROR, KINDS };

typedef struct {
    unsigned long long bytes_in, bytes_out;
    unsigned long long requests[2][KINDS]; /* [ipv4, ipv6][announce, scrape, connect, error] */
    unsigned long long banned, bad_id, send_blocked, socket_errors;
    unsigned long long malformed[SHOAL_UDP_M_COUNT];
    unsigned long long fast[2];           /* announces, scrapes answered in C */
    unsigned long long failures[SHOAL_FAILURES]; /* refusals answered in C, by reason */
} counts_t;


typedef struct {
    PyObject_HEAD
    int fd;
    int allow_ip_param;
    int draining; /* drain() is running: its batch buffers are in use */
    shoal_connids ids;
    int64_t now;
    PyObject *announce_cls;
    PyObject *events[5];
    shoal_netset banned;
    shoal_udp_fast_path fast_path; /* NULL: every valid request goes to Python */
    void *fast_ctx;
    shoal_answer *fast;            /* the compiled answer (answer.h), when attached */
    counts_t c;
    shoal_latency latency; /* request latency, collected with c */
    shoal_udp_request req;
    /* One batch: datagrams in, replies out (C-built in out_buf, Python-built held). */
    struct mmsghdr in_msgs[BATCH];
    struct iovec in_iov[BATCH];
    struct sockaddr_storage in_addr[BATCH];
    uint8_t in_buf[BATCH][RECV_BUFFER];
    struct mmsghdr out_msgs[BATCH];
    struct iovec out_iov[BATCH];
    uint8_t out_buf[BATCH][SHOAL_UDP_MAX_C_REPLY];
    PyObject *held[BATCH];
    int item_slot[BATCH]; /* batch slot of each request handed to Python */
} Engine;

/* ---- helpers ---------------------------------------------------------------------- */

/* A socket address -> packed ip (IPv4-mapped made IPv4) and port; 0 if not inet. */
static int unpack_sockaddr(const struct sockaddr_storage *ss, uint8_t *ip, size_t *iplen,
                           uint16_t *port)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        memcpy(ip, &a->sin_addr, 4);
        *iplen = 4;
        *port = ntohs(a->sin_port);
        return 1;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        const uint8_t *raw = (const uint8_t *)&a->sin6_addr;
        if (memcmp(raw, mapped, 12) == 0) {
            memcpy(ip, raw + 12, 4);
            *iplen = 4;
        } else {
            memcpy(ip, raw, 16);
            *iplen = 16;
        }
        *port = ntohs(a->sin6_port);
        return 1;
    }
    return 0;
}

static int id_ok(void *ctx, uint64_t conn_id, const uint8_t *source, size_t sourcelen)
{
    Engine *self = ctx;
    int64_t first, last;
    return shoal_connids_window(&self->ids, conn_id, source, sourcelen, self->now, &first,
                                &last);
}

static PyObject *request_item(Engine *self, const shoal_udp_request *r, const uint8_t *ip,
                              size_t iplen, const void *sa, size_t salen)
{
    PyObject *payload, *action;
    if (r->kind == SHOAL_UDP_K_ANNOUNCE) {
        PyObject *args[12] = {0};
        args[0] = PyBytes_FromStringAndSize((const char *)r->info_hash, 20);
        args[1] = PyBytes_FromStringAndSize((const char *)r->peer_id, 20);
        args[2] = PyBytes_FromStringAndSize((const char *)r->addr, (Py_ssize_t)r->addrlen);
        args[3] = PyLong_FromUnsignedLongLong(r->uploaded);
        args[4] = PyLong_FromUnsignedLongLong(r->downloaded);
        args[5] = PyLong_FromUnsignedLongLong(r->left);
        args[6] = self->events[r->event];
        Py_INCREF(args[6]);
        args[7] = PyLong_FromLong(r->num_want);
        args[8] = PyLong_FromUnsignedLong(r->key);
        args[9] = Py_False;
        Py_INCREF(Py_False);
        args[10] = Py_False;
        Py_INCREF(Py_False);
        args[11] = PyBytes_FromStringAndSize((const char *)r->url, (Py_ssize_t)r->urllen);
        payload = NULL;
        int ok = 1;
        for (int i = 0; i < 12; i++)
            ok = ok && args[i] != NULL;
        if (ok)
            payload = PyObject_Vectorcall(self->announce_cls, args, 12, NULL);
        for (int i = 0; i < 12; i++)
            Py_XDECREF(args[i]);
        action = PyLong_FromLong(SHOAL_UDP_ANNOUNCE);
    } else {
        payload = PyList_New((Py_ssize_t)r->nhashes);
        if (payload != NULL) {
            for (size_t i = 0; i < r->nhashes; i++) {
                PyObject *h = PyBytes_FromStringAndSize((const char *)r->hashes + 20 * i, 20);
                if (h == NULL) {
                    Py_CLEAR(payload);
                    break;
                }
                PyList_SET_ITEM(payload, (Py_ssize_t)i, h);
            }
        }
        action = PyLong_FromLong(SHOAL_UDP_SCRAPE);
    }
    PyObject *tid = PyLong_FromUnsignedLong(r->tid);
    PyObject *ipb = PyBytes_FromStringAndSize((const char *)ip, (Py_ssize_t)iplen);
    PyObject *sab = PyBytes_FromStringAndSize((const char *)sa, (Py_ssize_t)salen);
    PyObject *item = NULL;
    if (payload && action && tid && ipb && sab)
        item = PyTuple_Pack(5, action, tid, payload, ipb, sab);
    Py_XDECREF(payload);
    Py_XDECREF(action);
    Py_XDECREF(tid);
    Py_XDECREF(ipb);
    Py_XDECREF(sab);
    return item;
}

/* One datagram: counted, then answered in out (returns 1, *outlen set), handed to Python
 * (returns 2, *item set), or left unanswered (returns 0); -1 with a Python error set. */
static int process_one(Engine *self, const uint8_t *data, size_t size, const uint8_t *ip,
                       size_t iplen, uint16_t port, const void *sa, size_t salen,
                       uint8_t *out, size_t *outlen, PyObject **item)
{
    shoal_udp_request *r = &self->req;
    uint8_t source[18];
    int fam = iplen == 4 ? 0 : 1;
    self->c.bytes_in += size;
    if (self->banned.nv4 + self->banned.nv6 && shoal_netset_contains(&self->banned, ip, iplen)) {
        self->c.banned++;
        r->kind = -1;
        return 0;
    }
    memcpy(source, ip, iplen);
    source[iplen] = (uint8_t)(port >> 8);
    source[iplen + 1] = (uint8_t)port;
    shoal_udp_decode(data, size, source, iplen + 2, id_ok, self, self->allow_ip_param, r);
    switch (r->kind) {
    case SHOAL_UDP_K_CONNECT:
        self->c.requests[fam][KIND_CONNECT]++;
        *outlen = shoal_udp_connect_reply(
            out, r->tid, shoal_connids_issue(&self->ids, source, iplen + 2, self->now));
        return 1;
    case SHOAL_UDP_K_MALFORMED:
    case SHOAL_UDP_K_BAD_ID:
        self->c.requests[fam][KIND_ERROR]++;
        if (r->kind == SHOAL_UDP_K_BAD_ID)
            self->c.bad_id++;
        else
            self->c.malformed[r->message]++;
        if (r->reply && r->has_tid) {
            *outlen = shoal_udp_error_reply(out, r->tid, r->message);
            return 1;
        }
        return 0;
    default:
        self->c.requests[fam][r->kind == SHOAL_UDP_K_ANNOUNCE ? KIND_ANNOUNCE : KIND_SCRAPE]++;
        if (self->fast_path != NULL) {
            size_t n = self->fast_path(self->fast_ctx, r, source, iplen + 2, self->now, out,
                                       SHOAL_UDP_MAX_C_REPLY);
            if (n > 0) {
                *outlen = n;
                return 1;
            }
        }
        *item = request_item(self, r, ip, iplen, sa, salen);
        return *item == NULL ? -1 : 2;
    }
}


/* ---- the compiled answer: announces and scrapes on the native store ---------------- */

#define I32_MAX 2147483647ULL

static inline uint32_t clamp32(uint64_t v)
{
    return v > I32_MAX ? (uint32_t)I32_MAX : (uint32_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t fast_error(uint8_t *out, size_t cap, uint32_t tid, const char *text)
{
    size_t n = strlen(text);
    if (8 + n > cap)
        n = cap - 8;
    wr32(out, SHOAL_UDP_ERROR);
    wr32(out + 4, tid);
    memcpy(out + 8, text, n);
    return 8 + n;
}

static size_t fast_refuse(Engine *self, int why, const char *text, uint8_t *out, size_t cap,
                          uint32_t tid)
{
    self->c.failures[why]++;
    self->c.fast[0]++;
    return fast_error(out, cap, tid, text);
}

static size_t fast_announce(Engine *self, shoal_answer *f, const shoal_udp_request *r, int64_t now,
                            uint8_t *out, size_t cap)
{
    size_t iplen = r->addrlen - 2;
    /* The rules in AccessRules.announce_rules' order; a banned source never got here. */
    int refused = shoal_answer_rules(f, &self->banned, r->addr, iplen, r->info_hash, r->peer_id);
    if (refused >= 0)
        return fast_refuse(self, refused, f->reasons[refused], out, cap, r->tid);
    /* Policy.numwant, then the datagram's budget for the family (as the Python encoder). */
    int64_t numwant = shoal_answer_numwant(f, r->num_want);
    int64_t most = iplen == 4 ? SHOAL_UDP_MAX_PEERS_V4 : SHOAL_UDP_MAX_PEERS_V6;
    if (numwant > most)
        numwant = most;
    shoal_announce_request q;
    memset(&q, 0, sizeof q);
    q.info_hash = r->info_hash;
    q.peer_id = r->peer_id;
    q.addr = r->addr;
    q.addr_len = (uint32_t)r->addrlen;
    q.key = r->key;
    q.uploaded = r->uploaded;
    q.downloaded = r->downloaded;
    q.seeder = r->left == 0;
    q.event = (int32_t)r->event;
    q.numwant = numwant;
    q.mixed_families = 0;
    q.want_peer_ids = 0;
    q.now = now;
    shoal_announce_outcome o;
    int status = shoal_answer_store(f, &q, &o);
    if (status >= SHOAL_SWARM_FULL && status <= SHOAL_TRACKER_FULL) {
        int why = SHOAL_F_SWARM_FULL + status - SHOAL_SWARM_FULL;
        return fast_refuse(self, why, f->reasons[why], out, cap, r->tid);
    }
    /* Nothing changed (Python tries again and reports the error), or the announce is
     * applied but its completion cannot be recorded for the flush: the Python path would
     * raise MemoryError too (an internal error, no reply). */
    if (status != SHOAL_OK)
        return 0;
    size_t width = iplen == 4 ? 6 : 18;
    size_t n = iplen == 4 ? o.n4 : o.n6;
    const uint8_t *peers = iplen == 4 ? o.peers4 : o.peers6;
    if ((int64_t)n > most)
        n = (size_t)most;
    if (20 + n * width > cap)
        n = (cap - 20) / width;
    wr32(out, SHOAL_UDP_ANNOUNCE);
    wr32(out + 4, r->tid);
    wr32(out + 8, clamp32((uint64_t)shoal_answer_interval(f)));
    wr32(out + 12, clamp32(o.leechers));
    wr32(out + 16, clamp32(o.seeders));
    if (n)
        memcpy(out + 20, peers, n * width);
    self->c.fast[0]++;
    return 20 + n * width;
}

static size_t fast_scrape(Engine *self, shoal_answer *f, const shoal_udp_request *r, uint8_t *out,
                          size_t cap)
{
    if (8 + 12 * r->nhashes > cap)
        return 0;
    wr32(out, SHOAL_UDP_SCRAPE);
    wr32(out + 4, r->tid);
    uint8_t *p = out + 8;
    for (size_t i = 0; i < r->nhashes; i++) {
        const uint8_t *h = r->hashes + 20 * i;
        shoal_swarm_counts c = {0, 0, 0};
        if (shoal_answer_permits(f, h))
            f->api->scrape(f->table, h, &c);
        wr32(p, clamp32(c.seeders));
        wr32(p + 4, clamp32(c.completed));
        wr32(p + 8, clamp32(c.leechers));
        p += 12;
    }
    self->c.fast[1]++;
    return 8 + 12 * r->nhashes;
}

static size_t fast_answer(void *ctx, const shoal_udp_request *req, const uint8_t *source,
                          size_t sourcelen, int64_t now, uint8_t *out, size_t cap)
{
    (void)source;
    (void)sourcelen;
    Engine *self = ctx;
    shoal_answer *f = self->fast;
    if (f == NULL || cap < 20)
        return 0;
    if (req->kind == SHOAL_UDP_K_ANNOUNCE)
        return fast_announce(self, f, req, now, out, cap);
    if (req->kind == SHOAL_UDP_K_SCRAPE)
        return fast_scrape(self, f, req, out, cap);
    return 0;
}

/* attach_store(table, interval, jitter, default_numwant, max_numwant, torrents, hashes,
 * client_allow, client_deny, reasons, record_completed, seed, min_interval=0): answer
 * announces and scrapes in C from now on (answer.h). Returns the texts of the refusals
 * counted (the SHOAL_F_* order). The completed info_hashes not yet taken are kept. */
static PyObject *Engine_attach_store(Engine *self, PyObject *args, PyObject *kwds)
{
    if (self->draining) {
        PyErr_SetString(PyExc_RuntimeError, "attach_store() called from a drain() handler");
        return NULL;
    }
    PyObject *texts = NULL;
    shoal_answer *f = shoal_answer_new(args, kwds, &texts);
    if (f == NULL)
        return NULL;
    shoal_answer_inherit(f, self->fast);
    shoal_answer_free(self->fast);
    self->fast = f;
    self->fast_path = fast_answer;
    self->fast_ctx = self;
    return texts;
}

/* detach_store(): every valid announce and scrape goes to Python again; returns the
 * completed info_hashes not yet taken (concatenated). */
static PyObject *Engine_detach_store(Engine *self, PyObject *Py_UNUSED(ignored))
{
    if (self->draining) {
        PyErr_SetString(PyExc_RuntimeError, "detach_store() called from a drain() handler");
        return NULL;
    }
    PyObject *left = shoal_answer_take_completed(self->fast);
    if (left == NULL)
        return NULL;
    self->fast_path = NULL;
    self->fast_ctx = NULL;
    shoal_answer_free(self->fast);
    self->fast = NULL;
    return left;
}

/* take_completed(): the info_hashes (20 bytes each, concatenated) whose announce, answered
 * in C, counted a completed download since the last call. */
static PyObject *Engine_take_completed(Engine *self, PyObject *Py_UNUSED(ignored))
{
    return shoal_answer_take_completed(self->fast);
}

static PyObject *Engine_get_attached(Engine *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->fast != NULL);
}

/* ---- Engine ----------------------------------------------------------------------- */

static void Engine_dealloc(Engine *self)
{
    Py_XDECREF(self->announce_cls);
    for (int i = 0; i < 5; i++)
        Py_XDECREF(self->events[i]);
    shoal_netset_free(&self->banned);
    shoal_answer_free(self->fast);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Engine_init(Engine *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "key", "ttl", "skew", "allow_ip_param", "announce",
                             "events", "latency_bounds", NULL};
    int fd, allow;
    Py_buffer key;
    long long ttl, skew;
    PyObject *cls, *events, *bounds;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*LLpOOO", kwlist, &fd, &key, &ttl, &skew,
                                     &allow, &cls, &events, &bounds))
        return -1;
    int bad = shoal_connids_init(&self->ids, key.buf, (size_t)key.len, ttl, skew);
    PyBuffer_Release(&key);
    if (bad) {
        PyErr_SetString(PyExc_ValueError,
                        "need a key of 1 to 64 bytes, 1 <= ttl and 0 <= skew, ttl + skew < 65536");
        return -1;
    }
    if (!PyCallable_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "announce must be the announce request class");
        return -1;
    }
    if (!PyTuple_Check(events) || PyTuple_GET_SIZE(events) != 5) {
        PyErr_SetString(PyExc_TypeError, "events must be a tuple of the 5 events, 0 to 4");
        return -1;
    }
    if (shoal_latency_bounds(&self->latency, bounds) < 0)
        return -1;
    self->fd = fd;
    self->allow_ip_param = allow;
    Py_INCREF(cls);
    Py_XSETREF(self->announce_cls, cls);
    for (int i = 0; i < 5; i++) {
        PyObject *e = PyTuple_GET_ITEM(events, i);
        Py_INCREF(e);
        Py_XSETREF(self->events[i], e);
    }
    for (int i = 0; i < BATCH; i++) {
        self->in_iov[i].iov_base = self->in_buf[i];
        self->in_iov[i].iov_len = RECV_BUFFER;
    }
    return 0;
}

static int get_now(PyObject *obj, int64_t *now)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *now = v;
    return 0;
}

static PyObject *Engine_issue(Engine *self, PyObject *args)
{
    Py_buffer addr;
    long long now;
    if (!PyArg_ParseTuple(args, "y*L", &addr, &now))
        return NULL;
    uint64_t id = shoal_connids_issue(&self->ids, addr.buf, (size_t)addr.len, now);
    PyBuffer_Release(&addr);
    return PyLong_FromUnsignedLongLong(id);
}

static PyObject *Engine_window(Engine *self, PyObject *args)
{
    Py_buffer addr;
    unsigned long long id;
    long long now;
    int64_t first, last;
    if (!PyArg_ParseTuple(args, "Ky*L", &id, &addr, &now))
        return NULL;
    int ok = shoal_connids_window(&self->ids, id, addr.buf, (size_t)addr.len, now, &first,
                                  &last);
    PyBuffer_Release(&addr);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("(LL)", (long long)first, (long long)last);
}

static PyObject *Engine_set_banned(Engine *self, PyObject *args)
{
    PyObject *v4, *v6;
    if (!PyArg_ParseTuple(args, "OO", &v4, &v6))
        return NULL;
    shoal_netset fresh;
    if (shoal_netset_load(v4, v6, &fresh) < 0)
        return NULL;
    shoal_netset_free(&self->banned);
    self->banned = fresh;
    Py_RETURN_NONE;
}

static PyObject *Engine_admits(Engine *self, PyObject *arg)
{
    Py_buffer ip;
    if (PyObject_GetBuffer(arg, &ip, PyBUF_SIMPLE) < 0)
        return NULL;
    int banned = shoal_netset_contains(&self->banned, ip.buf, (size_t)ip.len);
    PyBuffer_Release(&ip);
    return PyBool_FromLong(!banned);
}

/* decide(data, source, now): what drain() does with one datagram from the packed address
 * `source`, without a socket: (kind, transaction id or None, message, reply or None,
 * request item or None). Counted like a received datagram. For the tests. */
static PyObject *Engine_decide(Engine *self, PyObject *args)
{
    Py_buffer data, source;
    PyObject *now_obj;
    if (!PyArg_ParseTuple(args, "y*y*O", &data, &source, &now_obj))
        return NULL;
    PyObject *result = NULL;
    if (self->draining) {
        PyErr_SetString(PyExc_RuntimeError, "decide() called from a drain() handler");
        goto done;
    }
    if (source.len != 6 && source.len != 18) {
        PyErr_SetString(PyExc_ValueError, "source must be a packed address of 6 or 18 bytes");
        goto done;
    }
    if (get_now(now_obj, &self->now) < 0)
        goto done;
    size_t iplen = (size_t)source.len - 2;
    const uint8_t *src = source.buf;
    uint16_t port = (uint16_t)((src[iplen] << 8) | src[iplen + 1]);
    uint8_t out[SHOAL_UDP_MAX_C_REPLY];
    size_t outlen = 0;
    PyObject *item = NULL;
    /* Decoded from a heap copy of exactly its length, so that under AddressSanitizer a
     * read past the datagram is caught (a bytes object has a spare NUL byte after it). */
    uint8_t *copy = malloc(data.len ? (size_t)data.len : 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(copy, data.buf, (size_t)data.len);
    int rc = process_one(self, copy, (size_t)data.len, src, iplen, port, "", 0, out,
                         &outlen, &item);
    free(copy);
    if (rc < 0)
        goto done;
    const shoal_udp_request *r = &self->req;
    PyObject *reply = rc == 1 ? PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)outlen)
                              : (Py_INCREF(Py_None), Py_None);
    PyObject *tid = r->kind >= 0 && r->has_tid ? PyLong_FromUnsignedLong(r->tid)
                                               : (Py_INCREF(Py_None), Py_None);
    PyObject *message = PyUnicode_FromString(r->kind >= 0 ? SHOAL_UDP_MESSAGES[r->message] : "");
    if (item == NULL) {
        Py_INCREF(Py_None);
        item = Py_None;
    }
    if (reply && tid && message)
        result = Py_BuildValue("(iOOOO)", r->kind, tid, message, reply, item);
    Py_XDECREF(reply);
    Py_XDECREF(tid);
    Py_XDECREF(message);
    Py_XDECREF(item);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&source);
    return result;
}

/* Send out_msgs[0..n): a reply that would block is dropped and counted (the socket buffer
 * is full; asyncio would queue it without bound), any other error counted too. */
static void send_batch(Engine *self, int n)
{
    int i = 0;
    while (i < n) {
        int sent = sendmmsg(self->fd, self->out_msgs + i, (unsigned)(n - i), MSG_DONTWAIT);
        if (sent > 0) {
            i += sent;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            self->c.send_blocked++;
        else
            self->c.socket_errors++;
        i++;
    }
}

/* The replies the handler returned, one per request item: bytes or None. */
static int take_replies(Engine *self, PyObject *replies, Py_ssize_t nitems,
                        size_t outlen[BATCH], int answered[BATCH])
{
    PyObject *seq = PySequence_Fast(replies, "the batch handler must return a list");
    if (seq == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != nitems) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "the batch handler must return one reply per request");
        return -1;
    }
    for (Py_ssize_t k = 0; k < nitems; k++) {
        PyObject *reply = PySequence_Fast_GET_ITEM(seq, k);
        int slot = self->item_slot[k];
        if (reply == Py_None)
            continue;
        if (!PyBytes_Check(reply)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "a reply must be bytes or None");
            return -1;
        }
        Py_INCREF(reply);
        self->held[slot] = reply;
        outlen[slot] = (size_t)PyBytes_GET_SIZE(reply);
        answered[slot] = 1;
    }
    Py_DECREF(seq);
    return 0;
}

/* drain(now, handler, max_batches): read and answer up to max_batches batches of datagrams;
 * the number of datagrams read. */
static PyObject *Engine_drain(Engine *self, PyObject *args)
{
    PyObject *now_obj, *handler;
    int max_batches;
    if (!PyArg_ParseTuple(args, "OOi", &now_obj, &handler, &max_batches))
        return NULL;
    if (self->draining) {
        PyErr_SetString(PyExc_RuntimeError, "drain() called again from its own handler");
        return NULL;
    }
    if (get_now(now_obj, &self->now) < 0)
        return NULL;
    self->draining = 1;
    long total = 0;
    PyObject *error_type = NULL, *error_value = NULL, *error_tb = NULL;
    int last = BATCH;
    for (int b = 0; b < max_batches && error_type == NULL; b++) {
        /* A batch short of full emptied the socket (as good as: one that came since wakes
           the loop's level-triggered poll again), so no recvmmsg is spent on its EAGAIN:
           at a moderate rate most wake-ups carry a few datagrams, and that call was a
           third of the system calls per wake-up. */
        if (last < BATCH)
            break;
        for (int i = 0; i < BATCH; i++) {
            struct msghdr *h = &self->in_msgs[i].msg_hdr;
            memset(h, 0, sizeof *h);
            h->msg_name = &self->in_addr[i];
            h->msg_namelen = sizeof self->in_addr[i];
            h->msg_iov = &self->in_iov[i];
            h->msg_iovlen = 1;
        }
        int n = recvmmsg(self->fd, self->in_msgs, BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
        if (n < 0) {
            if (errno == EINTR) {
                b--;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                self->c.socket_errors++; /* as the Python path's error_received */
            break;
        }
        if (n == 0)
            break;
        last = n;
        double started = shoal_monotonic();
        total += n;
        size_t outlen[BATCH];
        int answered[BATCH];
        PyObject *items = NULL;
        Py_ssize_t nitems = 0;
        for (int i = 0; i < n; i++) {
            answered[i] = 0;
            self->held[i] = NULL;
            uint8_t ip[16];
            size_t iplen;
            uint16_t port;
            if (!unpack_sockaddr(&self->in_addr[i], ip, &iplen, &port)) {
                self->c.bytes_in += self->in_msgs[i].msg_len;
                continue;
            }
            PyObject *item = NULL;
            int rc = process_one(self, self->in_buf[i], self->in_msgs[i].msg_len, ip, iplen,
                                 port, &self->in_addr[i], self->in_msgs[i].msg_hdr.msg_namelen,
                                 self->out_buf[i], &outlen[i], &item);
            if (rc == 1) {
                answered[i] = 1;
            } else if (rc == 2) {
                if (items == NULL)
                    items = PyList_New(0);
                if (items == NULL || PyList_Append(items, item) < 0) {
                    Py_DECREF(item);
                    rc = -1;
                } else {
                    Py_DECREF(item);
                    self->item_slot[nitems++] = i;
                }
            }
            if (rc < 0 && error_type == NULL)
                PyErr_Fetch(&error_type, &error_value, &error_tb);
        }
        if (items != NULL && nitems > 0 && error_type == NULL) {
            PyObject *replies = PyObject_CallOneArg(handler, items);
            if (replies == NULL || take_replies(self, replies, nitems, outlen, answered) < 0)
                PyErr_Fetch(&error_type, &error_value, &error_tb);
            Py_XDECREF(replies);
        }
        Py_XDECREF(items);
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (!answered[i])
                continue;
            struct msghdr *h = &self->out_msgs[m].msg_hdr;
            memset(h, 0, sizeof *h);
            h->msg_name = &self->in_addr[i];
            h->msg_namelen = self->in_msgs[i].msg_hdr.msg_namelen;
            self->out_iov[m].iov_base =
                self->held[i] ? (void *)PyBytes_AS_STRING(self->held[i]) : self->out_buf[i];
            self->out_iov[m].iov_len = outlen[i];
            h->msg_iov = &self->out_iov[m];
            h->msg_iovlen = 1;
            self->c.bytes_out += outlen[i];
            m++;
        }
        if (m)
            send_batch(self, m);
        double elapsed = shoal_monotonic() - started;
        for (int i = 0; i < m; i++)
            shoal_latency_observe(&self->latency, elapsed);
        for (int i = 0; i < n; i++)
            Py_CLEAR(self->held[i]);
        if (n < BATCH)
            break;
    }
    self->draining = 0;
    if (error_type != NULL) {
        PyErr_Restore(error_type, error_value, error_tb);
        return NULL;
    }
    return PyLong_FromLong(total);
}

/* sendto(reply, sockaddr): a reply that came later (from a networked store), to the
 * address a request item carried. Raises OSError (BlockingIOError when the buffer is
 * full). */
static PyObject *Engine_sendto(Engine *self, PyObject *args)
{
    Py_buffer data, sa;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &sa))
        return NULL;
    PyObject *result = NULL;
    if (sa.len < (Py_ssize_t)sizeof(sa_family_t) ||
        sa.len > (Py_ssize_t)sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_ValueError, "not a socket address from a request item");
    } else {
        struct sockaddr_storage addr;
        memcpy(&addr, sa.buf, (size_t)sa.len);
        ssize_t sent;
        do {
            sent = sendto(self->fd, data.buf, (size_t)data.len, MSG_DONTWAIT,
                          (struct sockaddr *)&addr, (socklen_t)sa.len);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0)
            PyErr_SetFromErrno(PyExc_OSError);
        else
            result = (Py_INCREF(Py_None), Py_None);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&sa);
    return result;
}

/* counts(): the figures since the last call, then zeroed, as (pairs, latency_sum): pairs is a
 * tuple of (slot, count) for the nonzero figures only, so collecting after a small batch
 * costs little. Slots: 0 bytes in, 1 bytes out, 2-9 requests (ipv4 announce, scrape,
 * connect, error, then ipv6 the same), 10 banned, 11 bad connection id, 12 send blocked,
 * 13 socket errors, then one per message of MESSAGES (malformed by reason), then one per
 * latency bucket (len(latency_bounds) + 1), then announces and scrapes answered in C, then
 * the refusals answered in C by reason (the order of attach_store's result). */
static PyObject *Engine_counts(Engine *self, PyObject *Py_UNUSED(ignored))
{
    unsigned long long flat[14 + SHOAL_UDP_M_COUNT + SHOAL_MAX_BOUNDS + 1 + 2 + SHOAL_FAILURES];
    const counts_t *c = &self->c;
    int n = 0;
    flat[n++] = c->bytes_in;
    flat[n++] = c->bytes_out;
    for (int f = 0; f < 2; f++)
        for (int k = 0; k < KINDS; k++)
            flat[n++] = c->requests[f][k];
    flat[n++] = c->banned;
    flat[n++] = c->bad_id;
    flat[n++] = c->send_blocked;
    flat[n++] = c->socket_errors;
    for (int m = 0; m < SHOAL_UDP_M_COUNT; m++)
        flat[n++] = c->malformed[m];
    for (int b = 0; b <= self->latency.n; b++)
        flat[n++] = self->latency.counts[b];
    for (int k = 0; k < 2; k++)
        flat[n++] = c->fast[k];
    for (int k = 0; k < SHOAL_FAILURES; k++)
        flat[n++] = c->failures[k];
    PyObject *out = shoal_count_pairs(flat, n, self->latency.sum);
    if (out != NULL) {
        memset(&self->c, 0, sizeof self->c);
        shoal_latency_reset(&self->latency);
    }
    return out;
}

static PyMethodDef Engine_methods[] = {
    {"drain", (PyCFunction)Engine_drain, METH_VARARGS,
     "drain(now, handler, max_batches) -> datagrams read"},
    {"decide", (PyCFunction)Engine_decide, METH_VARARGS,
     "decide(data, source, now) -> (kind, tid, message, reply, item)"},
    {"sendto", (PyCFunction)Engine_sendto, METH_VARARGS, "sendto(reply, sockaddr)"},
    {"issue", (PyCFunction)Engine_issue, METH_VARARGS, "issue(addr, now) -> connection id"},
    {"window", (PyCFunction)Engine_window, METH_VARARGS,
     "window(conn_id, addr, now) -> (first, last) or None"},
    {"set_banned", (PyCFunction)Engine_set_banned, METH_VARARGS,
     "set_banned(v4_groups, v6_groups): [(shift, [prefix, ...]), ...] per family"},
    {"admits", (PyCFunction)Engine_admits, METH_O, "admits(ip) -> not banned"},
    {"counts", (PyCFunction)Engine_counts, METH_NOARGS, "counts() -> figures since last call"},
    {"attach_store", (PyCFunction)(void (*)(void))Engine_attach_store,
     METH_VARARGS | METH_KEYWORDS,
     "attach_store(table, interval, jitter, default_numwant, max_numwant, torrents, hashes, "
     "client_allow, client_deny, reasons, record_completed, seed) -> refusal texts"},
    {"detach_store", (PyCFunction)Engine_detach_store, METH_NOARGS,
     "detach_store() -> completed info_hashes not yet taken"},
    {"take_completed", (PyCFunction)Engine_take_completed, METH_NOARGS,
     "take_completed() -> info_hashes (20 bytes each) that counted a completion"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Engine_members[] = {
    {"allow_ip_param", T_INT, offsetof(Engine, allow_ip_param), 0,
     "Nonzero: an IPv4 client's non-zero IP field is its peer address (changed on reload)."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"attached", (getter)Engine_get_attached, NULL,
     "Whether announces and scrapes are answered in C (attach_store).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shoal._native_udp.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The UDP data plane for one bound, non-blocking socket.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_members = Engine_members,
    .tp_getset = Engine_getset,
};

/* ---- module ----------------------------------------------------------------------- */

static PyObject *mod_blake2b(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"data", "digest_size", "key", "salt", "person", NULL};
    Py_buffer data, key = {0}, salt = {0}, person = {0};
    int size = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|$iy*y*y*", kwlist, &data, &size, &key,
                                     &salt, &person))
        return NULL;
    shoal_blake2b s;
    uint8_t out[SHOAL_BLAKE2B_OUT];
    PyObject *result = NULL;
    if (shoal_blake2b_init(&s, (size_t)size, key.buf, (size_t)key.len, salt.buf,
                           (size_t)salt.len, person.buf, (size_t)person.len) < 0) {
        PyErr_SetString(PyExc_ValueError, "digest_size 1..64, key up to 64 bytes, salt and "
                                          "person up to 16");
    } else {
        shoal_blake2b_update(&s, data.buf, (size_t)data.len);
        shoal_blake2b_final(&s, out);
        result = PyBytes_FromStringAndSize((const char *)out, size);
    }
    PyBuffer_Release(&data);
    if (key.obj)
        PyBuffer_Release(&key);
    if (salt.obj)
        PyBuffer_Release(&salt);
    if (person.obj)
        PyBuffer_Release(&person);
    return result;
}

static PyMethodDef module_methods[] = {
    {"blake2b", (PyCFunction)(void (*)(void))mod_blake2b, METH_VARARGS | METH_KEYWORDS,
     "blake2b(data, *, digest_size=64, key=b'', salt=b'', person=b'') -> digest"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shoal._native_udp",
    "Shoal's UDP data plane: recvmmsg/sendmmsg batches, compiled datagram checks.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__native_udp(void)
{
    if (PyType_Ready(&EngineType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *messages = PyTuple_New(SHOAL_UDP_M_COUNT);
    if (messages == NULL)
        goto fail;
    for (int i = 0; i < SHOAL_UDP_M_COUNT; i++) {
        PyObject *s = PyUnicode_FromString(SHOAL_UDP_MESSAGES[i]);
        if (s == NULL) {
            Py_DECREF(messages);
            goto fail;
        }
        PyTuple_SET_ITEM(messages, i, s);
    }
    if (PyModule_AddObject(m, "MESSAGES", messages) < 0) {
        Py_DECREF(messages);
        goto fail;
    }
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        goto fail;
    }
    if (PyModule_AddIntConstant(m, "BATCH", BATCH) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
