/* answer.c: the compiled answer shared by the UDP and HTTP data planes (answer.h). */
#include "answer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* splitmix64: the jitter's generator (not Python's sequence, the same distribution). */
static inline uint64_t next_random(shoal_answer *f)
{
    uint64_t z = (f->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Policy.next_interval: interval + int(random() * (jitter + 1)), random() in [0, 1). */
int64_t shoal_answer_interval(shoal_answer *f)
{
    if (!f->jitter)
        return f->interval;
    double r = (double)(next_random(f) >> 11) * (1.0 / 9007199254740992.0);
    return f->interval + (int64_t)(r * (double)(f->jitter + 1));
}

int64_t shoal_answer_numwant(const shoal_answer *f, int64_t asked)
{
    int64_t numwant = asked < 0 ? f->default_numwant : asked;
    return numwant > f->max_numwant ? f->max_numwant : numwant;
}

static int hash_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 20);
}

int shoal_answer_permits(const shoal_answer *f, const uint8_t *info_hash)
{
    if (!f->torrents)
        return 1;
    int listed = f->nhashes && bsearch(info_hash, f->hashes, f->nhashes, 20, hash_cmp) != NULL;
    return listed == (f->torrents == 1);
}

static int starts_with_any(PyObject *prefixes, const uint8_t *peer_id)
{
    Py_ssize_t n = PyTuple_GET_SIZE(prefixes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyTuple_GET_ITEM(prefixes, i);
        Py_ssize_t len = PyBytes_GET_SIZE(p);
        if (len <= 20 && memcmp(PyBytes_AS_STRING(p), peer_id, (size_t)len) == 0)
            return 1;
    }
    return 0;
}

int shoal_answer_rules(const shoal_answer *f, const shoal_netset *banned, const uint8_t *ip,
                       size_t iplen, const uint8_t *info_hash, const uint8_t *peer_id)
{
    if (banned->nv4 + banned->nv6 && shoal_netset_contains(banned, ip, iplen))
        return SHOAL_F_BANNED;
    if (!shoal_answer_permits(f, info_hash))
        return SHOAL_F_TORRENT;
    if ((PyTuple_GET_SIZE(f->client_allow) && !starts_with_any(f->client_allow, peer_id)) ||
        (PyTuple_GET_SIZE(f->client_deny) && starts_with_any(f->client_deny, peer_id)))
        return SHOAL_F_CLIENT;
    return -1;
}

static int remember_completed(shoal_answer *f, const uint8_t *info_hash)
{
    if (f->ncompleted == f->capcompleted) {
        size_t cap = f->capcompleted ? 2 * f->capcompleted : 64;
        uint8_t *grown = realloc(f->completed, cap * 20);
        if (grown == NULL)
            return -1;
        f->completed = grown;
        f->capcompleted = cap;
    }
    memcpy(f->completed + 20 * f->ncompleted++, info_hash, 20);
    return 0;
}

int shoal_answer_store(shoal_answer *f, const shoal_announce_request *q,
                       shoal_announce_outcome *o)
{
    int status = f->api->announce(f->table, q, o);
    if (status == SHOAL_OK && o->counted_completed && f->record_completed &&
        remember_completed(f, q->info_hash) < 0)
        return SHOAL_NO_MEMORY;
    return status;
}

void shoal_answer_free(shoal_answer *f)
{
    if (f == NULL)
        return;
    Py_XDECREF(f->capsule);
    Py_XDECREF(f->client_allow);
    Py_XDECREF(f->client_deny);
    for (int i = 0; i < SHOAL_FAILURES; i++)
        free(f->reasons[i]);
    free(f->hashes);
    free(f->completed);
    free(f);
}

void shoal_answer_inherit(shoal_answer *fresh, shoal_answer *old)
{
    if (old == NULL || !old->ncompleted)
        return;
    free(fresh->completed);
    fresh->completed = old->completed;
    fresh->ncompleted = old->ncompleted;
    fresh->capcompleted = old->capcompleted;
    old->completed = NULL;
    old->ncompleted = old->capcompleted = 0;
}

PyObject *shoal_answer_take_completed(shoal_answer *f)
{
    if (f == NULL || f->ncompleted == 0)
        return PyBytes_FromStringAndSize("", 0);
    PyObject *out = PyBytes_FromStringAndSize((const char *)f->completed,
                                              (Py_ssize_t)(20 * f->ncompleted));
    if (out != NULL)
        f->ncompleted = 0;
    return out;
}

static int prefix_tuple(PyObject *obj, PyObject **out)
{
    PyObject *t = PySequence_Tuple(obj);
    if (t == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(t, i))) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_TypeError, "client prefixes must be bytes");
            return -1;
        }
    }
    *out = t;
    return 0;
}

static char *copy_text(const char *text)
{
    char *copy = strdup(text);
    if (copy == NULL)
        PyErr_NoMemory();
    return copy;
}

shoal_answer *shoal_answer_new(PyObject *args, PyObject *kwds, PyObject **texts)
{
    static char *kwlist[] = {"table", "interval", "jitter", "default_numwant", "max_numwant",
                             "torrents", "hashes", "client_allow", "client_deny", "reasons",
                             "record_completed", "seed", "min_interval", NULL};
    PyObject *capsule, *allow, *deny, *reasons;
    long long interval, jitter, dnw, mnw, min_interval = 0;
    unsigned long long seed;
    int torrents, record;
    Py_buffer hashes;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OLLLLiy*OOOpK|L", kwlist, &capsule,
                                     &interval, &jitter, &dnw, &mnw, &torrents, &hashes, &allow,
                                     &deny, &reasons, &record, &seed, &min_interval))
        return NULL;
    shoal_answer *f = NULL;
    if (interval < 0 || jitter < 0 || dnw < 0 || mnw < 0 || min_interval < 0 || torrents < 0 ||
        torrents > 2 || hashes.len % 20) {
        PyErr_SetString(PyExc_ValueError, "bad policy figures, torrent mode or hash list");
        goto fail;
    }
    const shoal_store_api *api = PyCapsule_Import(SHOAL_STORE_API_CAPSULE, 0);
    if (api == NULL)
        goto fail;
    if (api->version != SHOAL_STORE_API_VERSION || api->size < sizeof(shoal_store_api)) {
        PyErr_SetString(PyExc_ImportError, "shoal._native_store has another C API version");
        goto fail;
    }
    shoal_table *table = PyCapsule_GetPointer(capsule, SHOAL_TABLE_CAPSULE);
    if (table == NULL)
        goto fail;
    f = calloc(1, sizeof *f);
    if (f == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    f->api = api;
    f->table = table;
    Py_INCREF(capsule);
    f->capsule = capsule;
    f->interval = interval;
    f->jitter = jitter;
    f->min_interval = min_interval;
    f->default_numwant = dnw;
    f->max_numwant = mnw;
    f->torrents = torrents;
    f->record_completed = record;
    f->rng = seed;
    f->nhashes = (size_t)hashes.len / 20;
    if (f->nhashes) {
        f->hashes = malloc((size_t)hashes.len);
        if (f->hashes == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(f->hashes, hashes.buf, (size_t)hashes.len);
        qsort(f->hashes, f->nhashes, 20, hash_cmp);
    }
    if (prefix_tuple(allow, &f->client_allow) < 0 || prefix_tuple(deny, &f->client_deny) < 0)
        goto fail;
    if (!PyTuple_Check(reasons) || PyTuple_GET_SIZE(reasons) != 3) {
        PyErr_SetString(PyExc_TypeError, "reasons: the 3 access refusal texts");
        goto fail;
    }
    for (int i = 0; i < 3; i++) {
        const char *text = PyUnicode_AsUTF8(PyTuple_GET_ITEM(reasons, i));
        if (text == NULL || (f->reasons[i] = copy_text(text)) == NULL)
            goto fail;
        f->retry[i] = SHOAL_RETRY_LATER;
    }
    for (int s = SHOAL_SWARM_FULL; s <= SHOAL_TRACKER_FULL; s++) {
        int slot = SHOAL_F_SWARM_FULL + s - SHOAL_SWARM_FULL;
        const char *text = api->reason(s);
        if (text == NULL) {
            PyErr_SetString(PyExc_ImportError, "the store gives no reason for a refusal");
            goto fail;
        }
        if ((f->reasons[slot] = copy_text(text)) == NULL)
            goto fail;
        f->retry[slot] = api->retry(s);
    }
    *texts = Py_BuildValue("(ssssss)", f->reasons[0], f->reasons[1], f->reasons[2],
                           f->reasons[3], f->reasons[4], f->reasons[5]);
    if (*texts == NULL)
        goto fail;
    PyBuffer_Release(&hashes);
    return f;
fail:
    shoal_answer_free(f);
    PyBuffer_Release(&hashes);
    return NULL;
}

/* One family's groups from [(shift, [prefix int, ...]), ...]. */
static int load_groups(PyObject *spec, unsigned maxshift, shoal_net_group **out, size_t *n)
{
    PyObject *seq = PySequence_Fast(spec, "networks must be a sequence");
    if (seq == NULL)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    shoal_net_group *groups = count ? calloc((size_t)count, sizeof *groups) : NULL;
    if (count && groups == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    *out = groups;
    *n = 0;
    PyObject *sixty_four = PyLong_FromLong(64);
    PyObject *mask = PyLong_FromUnsignedLongLong(~0ULL);
    int rc = sixty_four && mask ? 0 : -1;
    for (Py_ssize_t g = 0; rc == 0 && g < count; g++) {
        PyObject *shift_obj, *values;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, g), "OO", &shift_obj, &values)) {
            rc = -1;
            break;
        }
        long shift = PyLong_AsLong(shift_obj);
        if (shift < 0 || (unsigned long)shift > maxshift) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "network shift out of range");
            rc = -1;
            break;
        }
        PyObject *vs = PySequence_Fast(values, "prefixes must be a sequence");
        if (vs == NULL) {
            rc = -1;
            break;
        }
        Py_ssize_t m = PySequence_Fast_GET_SIZE(vs);
        groups[g].shift = (unsigned)shift;
        groups[g].items = m ? calloc((size_t)m, sizeof(shoal_prefix)) : NULL;
        (*n)++;
        if (m && groups[g].items == NULL) {
            Py_DECREF(vs);
            PyErr_NoMemory();
            rc = -1;
            break;
        }
        for (Py_ssize_t i = 0; i < m; i++) {
            PyObject *v = PySequence_Fast_GET_ITEM(vs, i);
            PyObject *hi = PyNumber_Rshift(v, sixty_four);
            PyObject *lo = hi ? PyNumber_And(v, mask) : NULL;
            unsigned long long h = hi ? PyLong_AsUnsignedLongLong(hi) : 0;
            unsigned long long l = lo ? PyLong_AsUnsignedLongLong(lo) : 0;
            Py_XDECREF(hi);
            Py_XDECREF(lo);
            if (PyErr_Occurred()) {
                rc = -1;
                break;
            }
            groups[g].items[i].hi = h;
            groups[g].items[i].lo = l;
            groups[g].count++;
        }
        Py_DECREF(vs);
    }
    Py_XDECREF(sixty_four);
    Py_XDECREF(mask);
    Py_DECREF(seq);
    return rc;
}

int shoal_netset_load(PyObject *v4, PyObject *v6, shoal_netset *out)
{
    shoal_netset fresh;
    memset(&fresh, 0, sizeof fresh);
    if (load_groups(v4, 32, &fresh.v4, &fresh.nv4) < 0 ||
        load_groups(v6, 128, &fresh.v6, &fresh.nv6) < 0) {
        shoal_netset_free(&fresh);
        memset(out, 0, sizeof *out);
        return -1;
    }
    shoal_netset_sort(&fresh);
    *out = fresh;
    return 0;
}

/* ---- counters ---------------------------------------------------------------------- */

int shoal_latency_bounds(shoal_latency *h, PyObject *bounds)
{
    if (!PyTuple_Check(bounds) || PyTuple_GET_SIZE(bounds) > SHOAL_MAX_BOUNDS) {
        PyErr_SetString(PyExc_TypeError, "latency_bounds must be a tuple of at most 32 floats");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(bounds); i++) {
        double b = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (b == -1.0 && PyErr_Occurred())
            return -1;
        h->bounds[i] = b;
    }
    h->n = (int)PyTuple_GET_SIZE(bounds);
    return 0;
}

void shoal_latency_observe(shoal_latency *h, double seconds)
{
    int i = 0;
    while (i < h->n && h->bounds[i] < seconds)
        i++;
    h->counts[i]++;
    h->sum += seconds;
}

void shoal_latency_reset(shoal_latency *h)
{
    memset(h->counts, 0, sizeof h->counts);
    h->sum = 0.0;
}

double shoal_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

PyObject *shoal_count_pairs(const unsigned long long *flat, int n, double latency_sum)
{
    int nonzero = 0;
    for (int i = 0; i < n; i++)
        nonzero += flat[i] != 0;
    PyObject *pairs = PyTuple_New(nonzero);
    if (pairs == NULL)
        return NULL;
    for (int i = 0, j = 0; i < n; i++) {
        if (!flat[i])
            continue;
        PyObject *pair = Py_BuildValue("(iK)", i, flat[i]);
        if (pair == NULL) {
            Py_DECREF(pairs);
            return NULL;
        }
        PyTuple_SET_ITEM(pairs, j++, pair);
    }
    return Py_BuildValue("(Nd)", pairs, latency_sum);
}
