/*
 * store_module.c: shoal._native_store, the Python binding of the compiled swarm table.
 *
 * One type, Table, owning a shoal_table (store.c). shoal/storage/native.py wraps it as the
 * native MemoryStore; this file only converts between Python objects and the core's plain C
 * records. The module also exports the core's C API (store_api.h) as the capsule
 * "shoal._native_store._C_API", and Table.capsule() hands out the table itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "store.h"

typedef struct {
    PyObject_HEAD
    shoal_table *table;
} TableObject;

/* shoal.types / shoal.errors objects, fetched at import */
static PyObject *AnnounceResult_type;
static PyObject *SwarmCounts_type;
static PyObject *ClientError_type;
static PyObject *zero_counts;

static PyObject *s_info_hash, *s_peer_id, *s_addr, *s_uploaded, *s_downloaded, *s_left,
    *s_event, *s_numwant, *s_key, *s_mixed_families, *s_want_peer_ids;

static const shoal_store_api c_api = {
    SHOAL_STORE_API_VERSION, sizeof(shoal_store_api), shoal_table_announce,
    shoal_table_scrape,      shoal_status_reason,     shoal_status_retry,
};

static shoal_table *table_of(TableObject *self) {
    if (self->table == NULL) PyErr_SetString(PyExc_RuntimeError, "table is not initialised");
    return self->table;
}

static PyObject *Table_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"seed", "key", NULL};
    unsigned long long seed;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Ky*", kwlist, &seed, &key)) return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "the hash key is 16 bytes");
        return NULL;
    }
    uint64_t k0 = 0, k1 = 0;
    const uint8_t *kb = key.buf;
    for (int i = 0; i < 8; i++) {
        k0 |= (uint64_t)kb[i] << (8 * i);
        k1 |= (uint64_t)kb[8 + i] << (8 * i);
    }
    PyBuffer_Release(&key);
    TableObject *self = (TableObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->table = shoal_table_new(seed, k0, k1);
    if (self->table == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Table_dealloc(TableObject *self) {
    shoal_table_free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- conversions ---- */

static int get_hash(PyObject *obj, const uint8_t **out, const char *what) {
    if (!PyBytes_Check(obj) || PyBytes_GET_SIZE(obj) != 20) {
        PyErr_Format(PyExc_ValueError, "%s must be 20 bytes", what);
        return -1;
    }
    *out = (const uint8_t *)PyBytes_AS_STRING(obj);
    return 0;
}

static int get_i64(PyObject *obj, int64_t *out) {
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static int get_u64_mask(PyObject *obj, uint64_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "an int is required");
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLongMask(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

static PyObject *counts_object(const shoal_swarm_counts *c) {
    return PyObject_CallFunction(SwarmCounts_type, "KKL", (unsigned long long)c->seeders,
                                 (unsigned long long)c->leechers, (long long)(int64_t)c->completed);
}

static PyObject *bytes_of(const uint8_t *p, size_t len) {
    return PyBytes_FromStringAndSize(len ? (const char *)p : "", (Py_ssize_t)len);
}

/* ---- announce ---- */

static PyObject *attr(PyObject *obj, PyObject *name) { return PyObject_GetAttr(obj, name); }

static PyObject *Table_announce(TableObject *self, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *given[2] = {nargs > 0 ? args[0] : NULL, nargs > 1 ? args[1] : NULL};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        int at = PyUnicode_CompareWithASCIIString(name, "request") == 0 ? 0
                 : PyUnicode_CompareWithASCIIString(name, "now") == 0 ? 1 : -1;
        if (at < 0 || given[at] != NULL) {
            PyErr_Format(PyExc_TypeError, "announce(request, now): unexpected argument %R", name);
            return NULL;
        }
        given[at] = args[nargs + i];
    }
    if (nargs > 2 || given[0] == NULL || given[1] == NULL) {
        PyErr_SetString(PyExc_TypeError, "announce(request, now)");
        return NULL;
    }
    PyObject *r = given[0];
    shoal_announce_request q;
    memset(&q, 0, sizeof q);
    PyObject *ih = NULL, *pid = NULL, *addr = NULL, *tmp = NULL;
    PyObject *result = NULL;
    if (get_i64(given[1], &q.now) < 0) return NULL;
    if ((ih = attr(r, s_info_hash)) == NULL || get_hash(ih, &q.info_hash, "info_hash") < 0) goto out;
    if ((pid = attr(r, s_peer_id)) == NULL || get_hash(pid, &q.peer_id, "peer_id") < 0) goto out;
    if ((addr = attr(r, s_addr)) == NULL) goto out;
    if (!PyBytes_Check(addr) || (PyBytes_GET_SIZE(addr) != 6 && PyBytes_GET_SIZE(addr) != 18)) {
        PyErr_SetString(PyExc_ValueError, "addr must be a 6- or 18-byte compact address");
        goto out;
    }
    q.addr = (const uint8_t *)PyBytes_AS_STRING(addr);
    q.addr_len = (uint32_t)PyBytes_GET_SIZE(addr);
#define FIELD(name, code)                                                                 \
    if ((tmp = attr(r, name)) == NULL) goto out;                                          \
    code;                                                                                 \
    Py_CLEAR(tmp);
    FIELD(s_uploaded, if (get_u64_mask(tmp, &q.uploaded) < 0) goto out)
    FIELD(s_downloaded, if (get_u64_mask(tmp, &q.downloaded) < 0) goto out)
    FIELD(s_left, {
        int zero = PyObject_Not(tmp);
        if (zero < 0) goto out;
        q.seeder = zero;
    })
    FIELD(s_event, {
        int64_t ev;
        if (get_i64(tmp, &ev) < 0) goto out;
        q.event = (int32_t)ev;
    })
    FIELD(s_numwant, {
        int overflow;
        long long nw = PyLong_AsLongLongAndOverflow(tmp, &overflow);
        if (nw == -1 && PyErr_Occurred()) goto out;
        q.numwant = overflow > 0 ? INT64_MAX : overflow < 0 ? -1 : nw;
    })
    FIELD(s_key, {
        if (tmp != Py_None) {
            uint64_t k;
            if (get_u64_mask(tmp, &k) < 0) goto out;
            q.key = (uint32_t)k;
        }
    })
    FIELD(s_mixed_families, {
        int v = PyObject_IsTrue(tmp);
        if (v < 0) goto out;
        q.mixed_families = v;
    })
    FIELD(s_want_peer_ids, {
        int v = PyObject_IsTrue(tmp);
        if (v < 0) goto out;
        q.want_peer_ids = v;
    })
#undef FIELD
    shoal_announce_outcome o;
    int status = shoal_table_announce(t, &q, &o);
    if (status == SHOAL_NO_MEMORY) {
        PyErr_NoMemory();
        goto out;
    }
    if (status != SHOAL_OK) {
        if (status == SHOAL_BAD_REQUEST) {
            PyErr_SetString(PyExc_ValueError, "bad announce request");
            goto out;
        }
        PyObject *err = PyObject_CallFunction(ClientError_type, "si", shoal_status_reason(status),
                                              shoal_status_retry(status));
        if (err != NULL) {
            PyErr_SetObject(ClientError_type, err);
            Py_DECREF(err);
        }
        goto out;
    }
    PyObject *items[14] = {NULL};
    items[0] = PyLong_FromUnsignedLongLong(o.seeders);
    items[1] = PyLong_FromUnsignedLongLong(o.leechers);
    items[2] = PyLong_FromLongLong((long long)(int64_t)o.completed);
    items[3] = PyLong_FromLong(0);
    items[4] = PyLong_FromLong(0);
    items[5] = bytes_of(o.peers4, o.n4 * 6);
    items[6] = bytes_of(o.peers6, o.n6 * 18);
    items[7] = bytes_of(o.ids4, o.ids4 ? o.n4 * SHOAL_ID : 0);
    items[8] = bytes_of(o.ids6, o.ids6 ? o.n6 * SHOAL_ID : 0);
    items[9] = PyLong_FromLong(o.role_before);
    items[10] = PyLong_FromLong(o.role_after);
    items[11] = PyBool_FromLong(o.counted_completed);
    items[12] = PyLong_FromUnsignedLongLong(o.prev_uploaded);
    items[13] = PyLong_FromUnsignedLongLong(o.prev_downloaded);
    int ok = 1;
    for (int i = 0; i < 14; i++) ok &= items[i] != NULL;
    if (ok) result = PyObject_Vectorcall(AnnounceResult_type, items, 14, NULL);
    for (int i = 0; i < 14; i++) Py_XDECREF(items[i]);
out:
    Py_XDECREF(tmp);
    Py_XDECREF(ih);
    Py_XDECREF(pid);
    Py_XDECREF(addr);
    return result;
}

/* ---- reading ---- */

static PyObject *Table_configure(TableObject *self, PyObject *args) {
    long long timeout;
    unsigned long long max_torrents, max_peers, max_per_ip;
    int keep_totals;
    if (!PyArg_ParseTuple(args, "LKKKp", &timeout, &max_torrents, &max_peers, &max_per_ip,
                          &keep_totals))
        return NULL;
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    shoal_table_configure(t, timeout, max_torrents, max_peers, max_per_ip, keep_totals);
    Py_RETURN_NONE;
}

static PyObject *Table_scrape(TableObject *self, PyObject *hashes) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    PyObject *seq = PySequence_Fast(hashes, "info hashes must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    if (out == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *h;
        if (get_hash(PySequence_Fast_GET_ITEM(seq, i), &h, "info_hash") < 0) goto fail;
        shoal_swarm_counts c;
        PyObject *item;
        if (shoal_table_scrape(t, h, &c)) {
            item = counts_object(&c);
            if (item == NULL) goto fail;
        } else {
            item = Py_NewRef(zero_counts);
        }
        PyList_SET_ITEM(out, i, item);
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(seq);
    return NULL;
}

static int parse_range(PyObject *args, Py_ssize_t *start, Py_ssize_t *stop, size_t len) {
    if (!PyArg_ParseTuple(args, "nn", start, stop)) return -1;
    if (*start < 0) *start = 0;
    if (*stop > (Py_ssize_t)len) *stop = (Py_ssize_t)len;
    return 0;
}

/* The list of item(swarm) for the swarms at positions start:stop of the order (positions
 * left empty by a removal are skipped); NULL with an exception set on failure. */
static PyObject *range_list(TableObject *self, PyObject *args,
                            PyObject *(*item)(shoal_swarm *swarm)) {
    shoal_table *t = table_of(self);
    Py_ssize_t start, stop;
    if (t == NULL || parse_range(args, &start, &stop, shoal_order_len(t)) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = start; i < stop; i++) {
        shoal_swarm *s = shoal_order_at(t, (size_t)i);
        if (s == NULL) continue;
        PyObject *entry = item(s);
        if (entry == NULL || PyList_Append(out, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return out;
}

static PyObject *hash_item(shoal_swarm *s) { return bytes_of(shoal_swarm_hash(s), 20); }

static PyObject *scrape_item(shoal_swarm *s) {
    shoal_swarm_counts c;
    shoal_swarm_counts_of(s, &c);
    PyObject *counts = counts_object(&c);
    return counts ? Py_BuildValue("(y#N)", shoal_swarm_hash(s), (Py_ssize_t)20, counts) : NULL;
}

static PyObject *size_item(shoal_swarm *s) {
    return Py_BuildValue("(Ky#)", (unsigned long long)shoal_swarm_size(s), shoal_swarm_hash(s),
                         (Py_ssize_t)20);
}

/* hashes(start, stop): the info hashes held at positions start:stop of the order */
static PyObject *Table_hashes(TableObject *self, PyObject *args) {
    return range_list(self, args, hash_item);
}

/* scrape_range(start, stop): [(info_hash, SwarmCounts)] for positions start:stop */
static PyObject *Table_scrape_range(TableObject *self, PyObject *args) {
    return range_list(self, args, scrape_item);
}

/* sizes_range(start, stop): [(peers, info_hash)] for positions start:stop */
static PyObject *Table_sizes_range(TableObject *self, PyObject *args) {
    return range_list(self, args, size_item);
}

static PyObject *Table_order_len(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    shoal_table *t = table_of(self);
    return t ? PyLong_FromSize_t(shoal_order_len(t)) : NULL;
}

static PyObject *Table_len(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    uint64_t torrents;
    int64_t s, l, c;
    shoal_table_totals(t, &torrents, &s, &l, &c);
    return PyLong_FromUnsignedLongLong(torrents);
}

static PyObject *Table_totals(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    uint64_t torrents;
    int64_t s, l, c;
    shoal_table_totals(t, &torrents, &s, &l, &c);
    return Py_BuildValue("(KLLL)", (unsigned long long)torrents, (long long)s, (long long)l, (long long)c);
}

static shoal_swarm *swarm_arg(shoal_table *t, PyObject *obj) {
    const uint8_t *h;
    if (get_hash(obj, &h, "info_hash") < 0) return NULL;
    return shoal_table_find(t, h);
}

/* swarm(info_hash): None, or (seeders, leechers, completed, last_seen, n4, n6) */
static PyObject *Table_swarm(TableObject *self, PyObject *obj) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    shoal_swarm *s = swarm_arg(t, obj);
    if (s == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    shoal_swarm_counts c;
    shoal_swarm_counts_of(s, &c);
    shoal_family *f4 = shoal_swarm_family(s, 0), *f6 = shoal_swarm_family(s, 1);
    return Py_BuildValue("(KKLLKK)", (unsigned long long)c.seeders, (unsigned long long)c.leechers,
                         (long long)(int64_t)c.completed, (long long)shoal_swarm_last_seen(t, s),
                         (unsigned long long)(f4 ? shoal_family_len(f4) : 0),
                         (unsigned long long)(f6 ? shoal_family_len(f6) : 0));
}

static shoal_family *family_arg(shoal_table *t, PyObject *obj, int v6) {
    shoal_swarm *s = swarm_arg(t, obj);
    return s ? shoal_swarm_family(s, v6) : NULL;
}

/* family(info_hash, v6): None, or (n, seeders) */
static PyObject *Table_family(TableObject *self, PyObject *args) {
    shoal_table *t = table_of(self);
    PyObject *h;
    int v6;
    if (t == NULL || !PyArg_ParseTuple(args, "Op", &h, &v6)) return NULL;
    shoal_family *f = family_arg(t, h, v6);
    if (f == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(KK)", (unsigned long long)shoal_family_len(f),
                         (unsigned long long)shoal_family_seeders(f));
}

/* peer(info_hash, v6, slot): (addr, peer_id, seen, key, counted, uploaded, downloaded) */
static PyObject *Table_peer(TableObject *self, PyObject *args) {
    shoal_table *t = table_of(self);
    PyObject *h;
    int v6;
    Py_ssize_t slot;
    if (t == NULL || !PyArg_ParseTuple(args, "Opn", &h, &v6, &slot)) return NULL;
    shoal_family *f = family_arg(t, h, v6);
    if (f == NULL || slot < 0 || (uint64_t)slot >= shoal_family_len(f)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "no such peer slot");
        return NULL;
    }
    uint64_t up, down;
    shoal_family_reported(f, (uint64_t)slot, &up, &down);
    return Py_BuildValue("(y#y#LkOKK)", shoal_family_addr(f, (uint64_t)slot), (Py_ssize_t)(v6 ? 18 : 6),
                         shoal_family_id(f, (uint64_t)slot), (Py_ssize_t)SHOAL_ID,
                         (long long)shoal_family_seen(t, f, (uint64_t)slot),
                         (unsigned long)shoal_family_key(f, (uint64_t)slot),
                         shoal_family_counted(f, (uint64_t)slot) ? Py_True : Py_False,
                         (unsigned long long)up, (unsigned long long)down);
}

static int append_ids(PyObject *out, shoal_family *f, Py_ssize_t limit) {
    for (uint64_t s = 0; f != NULL && s < shoal_family_len(f) && PyList_GET_SIZE(out) < limit; s++) {
        PyObject *b = bytes_of(shoal_family_id(f, s), SHOAL_ID);
        if (b == NULL || PyList_Append(out, b) < 0) {
            Py_XDECREF(b);
            return -1;
        }
        Py_DECREF(b);
    }
    return 0;
}

/* peer_ids(info_hash, limit): Swarm.peer_ids */
static PyObject *Table_peer_ids(TableObject *self, PyObject *args) {
    shoal_table *t = table_of(self);
    PyObject *h;
    Py_ssize_t limit;
    if (t == NULL || !PyArg_ParseTuple(args, "On", &h, &limit)) return NULL;
    shoal_swarm *s = swarm_arg(t, h);
    if (s == NULL && PyErr_Occurred()) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    if (s != NULL && (append_ids(out, shoal_swarm_family(s, 0), limit) < 0 ||
                      append_ids(out, shoal_swarm_family(s, 1), limit) < 0)) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* sample_peer_ids(limit): MemoryStore.sample_peer_ids, over the arrival order */
static PyObject *Table_sample_peer_ids(TableObject *self, PyObject *arg) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    uint64_t torrents;
    int64_t sd, lc, cp;
    shoal_table_totals(t, &torrents, &sd, &lc, &cp);
    if (limit <= 0 || torrents == 0) return out;
    Py_ssize_t share = limit / (Py_ssize_t)torrents;
    if (share < 1) share = 1;
    for (size_t i = 0; i < shoal_order_len(t); i++) {
        shoal_swarm *s = shoal_order_at(t, i);
        if (s == NULL) continue;
        Py_ssize_t room = limit - PyList_GET_SIZE(out);
        Py_ssize_t stop = PyList_GET_SIZE(out) + (share < room ? share : room);
        if (append_ids(out, shoal_swarm_family(s, 0), stop) < 0 ||
            append_ids(out, shoal_swarm_family(s, 1), stop) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (PyList_GET_SIZE(out) >= limit) break;
    }
    return out;
}

/* ---- sweep ---- */

static PyObject *Table_sweep(TableObject *self, PyObject *args) {
    shoal_table *t = table_of(self);
    long long now;
    unsigned long long budget;
    if (t == NULL || !PyArg_ParseTuple(args, "LK", &now, &budget)) return NULL;
    shoal_sweep_progress p;
    if (shoal_table_sweep(t, now, budget, &p) < 0) return PyErr_NoMemory();
    PyObject *dropped;
    if (p.finished) {
        size_t n;
        const size_t *d = shoal_table_dropped(t, &n);
        dropped = PyList_New((Py_ssize_t)n);
        if (dropped == NULL) return NULL;
        for (size_t i = 0; i < n; i++) {
            PyObject *v = PyLong_FromSize_t(d[i]);
            if (v == NULL) {
                Py_DECREF(dropped);
                return NULL;
            }
            PyList_SET_ITEM(dropped, (Py_ssize_t)i, v);
        }
    } else {
        dropped = Py_NewRef(Py_None);
    }
    return Py_BuildValue("(OKKKN)", p.finished ? Py_True : Py_False,
                         (unsigned long long)p.swarms_examined, (unsigned long long)p.peers_removed,
                         (unsigned long long)p.torrents_removed, dropped);
}

/* ---- snapshots ---- */

static PyObject *family_image(shoal_table *t, shoal_family *f, int v6) {
    if (f == NULL || shoal_family_len(f) == 0) Py_RETURN_NONE;
    uint64_t n = shoal_family_len(f);
    unsigned w = v6 ? 18 : 6;
    PyObject *addrs = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * w));
    PyObject *ids = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * SHOAL_ID));
    PyObject *meta = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 32));
    if (addrs == NULL || ids == NULL || meta == NULL) {
        Py_XDECREF(addrs);
        Py_XDECREF(ids);
        Py_XDECREF(meta);
        return NULL;
    }
    uint8_t *a = (uint8_t *)PyBytes_AS_STRING(addrs), *d = (uint8_t *)PyBytes_AS_STRING(ids),
            *m = (uint8_t *)PyBytes_AS_STRING(meta);
    for (uint64_t s = 0; s < n; s++) {
        memcpy(a + s * w, shoal_family_addr(f, s), w);
        memcpy(d + s * SHOAL_ID, shoal_family_id(f, s), SHOAL_ID);
        uint64_t up, down;
        shoal_family_reported(f, s, &up, &down);
        uint64_t words[4] = {(uint64_t)shoal_family_seen(t, f, s),
                             shoal_family_key(f, s) | ((uint64_t)shoal_family_counted(f, s) << 32), up,
                             down};
        for (int k = 0; k < 4; k++)
            for (int b = 0; b < 8; b++) m[s * 32 + (uint64_t)k * 8 + (uint64_t)b] = (uint8_t)(words[k] >> (8 * b));
    }
    return Py_BuildValue("(KNNN)", (unsigned long long)shoal_family_seeders(f), addrs, ids, meta);
}

/* export(pos, budget) -> (pos, [(info_hash, completed, last_seen, fam4, fam6)]):
 * MemoryStore.export_step; fam is None or (seeders, addrs, ids, meta). */
static PyObject *Table_export(TableObject *self, PyObject *args) {
    shoal_table *t = table_of(self);
    Py_ssize_t pos;
    unsigned long long budget;
    if (t == NULL || !PyArg_ParseTuple(args, "nK", &pos, &budget)) return NULL;
    if (pos < 0) pos = 0;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    uint64_t taken = 0;
    while ((size_t)pos < shoal_order_len(t) && (taken < budget || PyList_GET_SIZE(out) == 0)) {
        shoal_swarm *s = shoal_order_at(t, (size_t)pos);
        pos++;
        if (s == NULL) continue;
        shoal_swarm_counts c;
        shoal_swarm_counts_of(s, &c);
        PyObject *f4 = family_image(t, shoal_swarm_family(s, 0), 0);
        PyObject *f6 = f4 ? family_image(t, shoal_swarm_family(s, 1), 1) : NULL;
        PyObject *item = f6 ? Py_BuildValue("(y#LLNN)", shoal_swarm_hash(s), (Py_ssize_t)20,
                                            (long long)(int64_t)c.completed,
                                            (long long)shoal_swarm_last_seen(t, s), f4, f6)
                            : NULL;
        if (item == NULL) {
            if (f6 == NULL) Py_XDECREF(f4);
            Py_DECREF(out);
            return NULL;
        }
        int bad = PyList_Append(out, item);
        Py_DECREF(item);
        if (bad < 0) {
            Py_DECREF(out);
            return NULL;
        }
        taken += shoal_swarm_size(s) + 10;
    }
    return Py_BuildValue("(nN)", pos, out);
}

static int image_arg(PyObject *obj, unsigned width, shoal_family_image *img, Py_buffer bufs[3]) {
    PyObject *seeders_obj;
    if (!PyArg_ParseTuple(obj, "Oy*y*y*", &seeders_obj, &bufs[0], &bufs[1], &bufs[2])) return -1;
    long long seeders = PyLong_AsLongLong(seeders_obj);
    if (seeders == -1 && PyErr_Occurred()) {
        PyBuffer_Release(&bufs[0]);
        PyBuffer_Release(&bufs[1]);
        PyBuffer_Release(&bufs[2]);
        return -1;
    }
    Py_ssize_t n = bufs[1].len / SHOAL_ID;
    if (bufs[1].len % SHOAL_ID || bufs[0].len != n * (Py_ssize_t)width || bufs[2].len != n * 32 ||
        seeders < 0 || seeders > n) {
        PyBuffer_Release(&bufs[0]);
        PyBuffer_Release(&bufs[1]);
        PyBuffer_Release(&bufs[2]);
        PyErr_SetString(PyExc_ValueError, "inconsistent swarm image");
        return -1;
    }
    img->n = (uint64_t)n;
    img->seeders = (uint64_t)seeders;
    img->addrs = bufs[0].buf;
    img->ids = bufs[1].buf;
    img->meta = bufs[2].buf;
    return 0;
}

/* restore(info_hash, completed, last_seen, fam4, fam6) */
static PyObject *Table_restore(TableObject *self, PyObject *args) {
    shoal_table *t = table_of(self);
    PyObject *h, *f[2];
    long long completed, last_seen;
    if (t == NULL || !PyArg_ParseTuple(args, "OLLOO", &h, &completed, &last_seen, &f[0], &f[1])) return NULL;
    const uint8_t *ih;
    if (get_hash(h, &ih, "info_hash") < 0) return NULL;
    shoal_family_image imgs[2];
    Py_buffer bufs[2][3];
    int have[2] = {0, 0};
    PyObject *result = NULL;
    for (int i = 0; i < 2; i++) {
        if (f[i] == Py_None) continue;
        if (image_arg(f[i], i ? 18 : 6, &imgs[i], bufs[i]) < 0) goto out;
        have[i] = 1;
    }
    int rc = shoal_table_restore(t, ih, completed, last_seen, have[0] ? &imgs[0] : NULL,
                                 have[1] ? &imgs[1] : NULL);
    if (rc == -1)
        PyErr_SetString(PyExc_ValueError, "inconsistent swarm image");
    else if (rc == -2)
        PyErr_NoMemory();
    else
        result = Py_NewRef(Py_None);
out:
    for (int i = 0; i < 2; i++)
        if (have[i])
            for (int k = 0; k < 3; k++) PyBuffer_Release(&bufs[i][k]);
    return result;
}

static PyObject *Table_set_completed(TableObject *self, PyObject *args) {
    shoal_table *t = table_of(self);
    PyObject *h;
    long long completed, now;
    if (t == NULL || !PyArg_ParseTuple(args, "OLL", &h, &completed, &now)) return NULL;
    const uint8_t *ih;
    if (get_hash(h, &ih, "info_hash") < 0) return NULL;
    if (shoal_table_set_completed(t, ih, completed, now) < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* ---- tests and tools ---- */

static PyObject *Table_check(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    char err[256];
    if (shoal_table_check(t, err, sizeof err) < 0) {
        PyErr_SetString(PyExc_AssertionError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Table_memory(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    shoal_table *t = table_of(self);
    return t ? PyLong_FromSize_t(shoal_table_memory(t)) : NULL;
}

static void table_capsule_free(PyObject *capsule) {
    PyObject *owner = PyCapsule_GetContext(capsule);
    Py_XDECREF(owner);
}

/* capsule(): the shoal_table * for other compiled modules (store_api.h); it keeps the
 * Table alive */
static PyObject *Table_capsule(TableObject *self, PyObject *Py_UNUSED(ignored)) {
    shoal_table *t = table_of(self);
    if (t == NULL) return NULL;
    PyObject *cap = PyCapsule_New(t, SHOAL_TABLE_CAPSULE, table_capsule_free);
    if (cap == NULL) return NULL;
    Py_INCREF(self);
    if (PyCapsule_SetContext(cap, self) < 0) {
        Py_DECREF(self);
        Py_DECREF(cap);
        return NULL;
    }
    return cap;
}

static PyMethodDef Table_methods[] = {
    {"announce", (PyCFunction)(void (*)(void))Table_announce, METH_FASTCALL | METH_KEYWORDS,
     "announce(request, now) -> AnnounceResult (raises ClientError on a refusal)"},
    {"configure", (PyCFunction)Table_configure, METH_VARARGS,
     "configure(peer_timeout, max_torrents, max_peers_per_swarm, max_peers_per_ip, "
     "keep_totals)"},
    {"scrape", (PyCFunction)Table_scrape, METH_O, "scrape(info_hashes) -> [SwarmCounts]"},
    {"hashes", (PyCFunction)Table_hashes, METH_VARARGS, "hashes(start, stop) -> [info_hash]"},
    {"scrape_range", (PyCFunction)Table_scrape_range, METH_VARARGS,
     "scrape_range(start, stop) -> [(info_hash, SwarmCounts)]"},
    {"sizes_range", (PyCFunction)Table_sizes_range, METH_VARARGS,
     "sizes_range(start, stop) -> [(peers, info_hash)]"},
    {"order_len", (PyCFunction)Table_order_len, METH_NOARGS, "length of the arrival order"},
    {"torrents", (PyCFunction)Table_len, METH_NOARGS, "torrents held"},
    {"totals", (PyCFunction)Table_totals, METH_NOARGS, "(torrents, seeders, leechers, completed)"},
    {"swarm", (PyCFunction)Table_swarm, METH_O,
     "swarm(info_hash) -> None | (seeders, leechers, completed, last_seen, n4, n6)"},
    {"family", (PyCFunction)Table_family, METH_VARARGS, "family(info_hash, v6) -> None | (n, seeders)"},
    {"peer", (PyCFunction)Table_peer, METH_VARARGS,
     "peer(info_hash, v6, slot) -> (addr, peer_id, seen, key, counted, uploaded, downloaded)"},
    {"peer_ids", (PyCFunction)Table_peer_ids, METH_VARARGS, "peer_ids(info_hash, limit)"},
    {"sample_peer_ids", (PyCFunction)Table_sample_peer_ids, METH_O, "sample_peer_ids(limit)"},
    {"sweep", (PyCFunction)Table_sweep, METH_VARARGS,
     "sweep(now, budget) -> (finished, swarms, peers_removed, torrents_removed, dropped|None)"},
    {"export", (PyCFunction)Table_export, METH_VARARGS, "export(pos, budget) -> (pos, images)"},
    {"restore", (PyCFunction)Table_restore, METH_VARARGS,
     "restore(info_hash, completed, last_seen, fam4, fam6)"},
    {"set_completed", (PyCFunction)Table_set_completed, METH_VARARGS,
     "set_completed(info_hash, completed, now)"},
    {"check", (PyCFunction)Table_check, METH_NOARGS, "check every invariant (AssertionError)"},
    {"memory", (PyCFunction)Table_memory, METH_NOARGS, "bytes the table has allocated"},
    {"capsule", (PyCFunction)Table_capsule, METH_NOARGS,
     "a PyCapsule of the shoal_table * (store_api.h), keeping this table alive"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shoal._native_store.Table",
    .tp_basicsize = sizeof(TableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Table(seed, key): the compiled swarm table (see shoal/_native/store.h)",
    .tp_new = Table_new,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "shoal._native_store",
    "Shoal's compiled swarm table (C); shoal.storage.native wraps it as a MemoryStore.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

static PyObject *from_module(const char *module, const char *name) {
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) return NULL;
    PyObject *v = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return v;
}

PyMODINIT_FUNC PyInit__native_store(void) {
    if (PyType_Ready(&TableType) < 0) return NULL;
    if ((AnnounceResult_type = from_module("shoal.types", "AnnounceResult")) == NULL) return NULL;
    if ((SwarmCounts_type = from_module("shoal.types", "SwarmCounts")) == NULL) return NULL;
    if ((zero_counts = from_module("shoal.types", "ZERO_COUNTS")) == NULL) return NULL;
    if ((ClientError_type = from_module("shoal.errors", "ClientError")) == NULL) return NULL;
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN(s_info_hash, "info_hash")
    INTERN(s_peer_id, "peer_id")
    INTERN(s_addr, "addr")
    INTERN(s_uploaded, "uploaded")
    INTERN(s_downloaded, "downloaded")
    INTERN(s_left, "left")
    INTERN(s_event, "event")
    INTERN(s_numwant, "numwant")
    INTERN(s_key, "key")
    INTERN(s_mixed_families, "mixed_families")
    INTERN(s_want_peer_ids, "want_peer_ids")
#undef INTERN
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Table", (PyObject *)&TableType) < 0) goto fail;
    PyObject *api = PyCapsule_New((void *)&c_api, SHOAL_STORE_API_CAPSULE, NULL);
    if (api == NULL) goto fail;
    int added = PyModule_AddObjectRef(m, "_C_API", api);
    Py_DECREF(api);
    if (added < 0) goto fail;
    if (PyModule_AddIntConstant(m, "API_VERSION", SHOAL_STORE_API_VERSION) < 0) goto fail;
    if (PyModule_AddIntConstant(m, "INDEX_MIN", SHOAL_INDEX_MIN) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
