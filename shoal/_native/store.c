/*
 * store.c: the compiled swarm table (see store.h for the layout, store_api.h for the
 * contract). Every rule mirrors shoal/engine/swarm.py and shoal/storage/memory.py, step for
 * step where the slot layout depends on it, so that both engines hold the same peers in the
 * same slots after the same requests (the differential test compares them).
 */
#include "store.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID SHOAL_ID
#define INDEX_MIN SHOAL_INDEX_MIN
#define COUNTED 0x80000000u /* in a record's seen word: its completion has been counted */
#define SEEN_MASK 0x7fffffffu
#define EPOCH_BACK (INT64_C(1) << 30) /* seconds representable before the first time seen */
#define MIN_BUCKETS 64u
#define BASE_REC(width) ((width) + ID + 8u) /* address, peer id, seen word, key */
#define TAIL_HEAD (ID + 8u) /* a record's tail before its totals: peer id, seen word, key */
/* Uploaded and downloaded as last reported, after the base: 48 bits each (NARROW) while
 * every total of the family fits, else 64 bits each (WIDE): exact either way. */
#define NARROW 12u
#define WIDE 16u
#define ORDER_MAX (UINT32_MAX - 1u) /* torrents the order may list (order_pos is 32 bits) */

/* ------------------------------------------------------------------------------------- */
/* records                                                                               */

typedef struct {
    uint32_t mask;     /* by_addr and by_id have mask + 1 buckets: slot + 1, or 0 (empty) */
    uint32_t *by_addr;
    uint32_t *by_id;
    uint32_t ip_mask;  /* per_ip: ip_mask + 1 buckets of (ip, u32 count); count 0 = empty */
    uint32_t ip_used;
    uint8_t *per_ip;
    /* Per slot, the next and the previous slot of the ring of entries sharing its peer id
     * (itself twice when alone): by_id maps an id to one of them, and when that one goes,
     * to the next (Python's FamilyPeers.ring). ring_cap slots of room. */
    uint32_t *ring;
    uint32_t ring_cap;
} fidx_t;

struct shoal_family {
    uint32_t n;
    uint32_t cap;
    uint32_t seeders;
    uint8_t width; /* 6 or 18 */
    uint8_t rec;   /* record size: BASE_REC(width), + NARROW or WIDE with reported totals */
    uint8_t pad[2];
    fidx_t *idx;   /* NULL unless the family is past INDEX_MIN */
    /* cap records follow, split in two arrays: the cap addresses (width bytes each), then
     * the cap tails (rec - width bytes each: peer id, seen word, key, totals). A reply's
     * peers are a run of slots, so their addresses are a few cache lines rather than a
     * record's worth of lines each. */
};

/* One allocation per torrent: this header and its IPv4 records (most torrents have no IPv6
 * peer); the IPv6 family is a block of its own. The block moves when the IPv4 family grows
 * or shrinks: swarm_moved() puts the new address in the bucket and the order. */
struct shoal_swarm {
    uint8_t info_hash[20];
    uint32_t last_seen; /* relative to the table's epoch */
    int64_t completed;
    uint32_t cursor;    /* lazy expiry's rolling slot */
    uint32_t order_pos; /* in the order, or (below the sweep's position) in the next one */
    shoal_family *v6;
    shoal_family v4;    /* present when v4.cap > 0; its records follow the header */
};

struct shoal_table {
    uint64_t k0, k1; /* SipHash key */
    uint64_t rng;
    int64_t epoch;
    int have_epoch;
    int64_t timeout;
    uint64_t max_torrents, max_peers, max_per_ip;
    int keep_totals; /* hold each peer's reported uploaded/downloaded totals */
    uintptr_t *buckets; /* a swarm block's address and its tag (see TAG_MASK), or 0 */
    uint64_t mask;
    uint64_t count;
    shoal_swarm **order;
    size_t order_len, order_cap;
    shoal_swarm **kept;
    size_t kept_len, kept_cap;
    size_t sweep_pos;
    size_t *dropped;
    size_t dropped_len, dropped_cap;
    size_t *last_dropped;
    size_t last_dropped_len, last_dropped_cap;
    shoal_swarm *partial; /* a swarm a sweep step left half done */
    int partial_fam;
    uint32_t partial_hi;
    int64_t seeders, leechers, completed;
    uint8_t *scratch;
    size_t scratch_cap;
    size_t mem;
};

/* A slot's address (the record's first part) */
static inline uint8_t *rec_at(const shoal_family *f, uint64_t slot) {
    return (uint8_t *)(f + 1) + slot * f->width;
}
/* The bytes of a record's tail, and the tails' array in a block of `cap` records. */
static inline unsigned tail_of(const shoal_family *f) { return (unsigned)f->rec - f->width; }
static inline uint8_t *tails_at(const shoal_family *f, uint64_t cap) {
    return (uint8_t *)(f + 1) + cap * f->width;
}
/* A slot's tail, which starts with its peer id */
static inline uint8_t *rec_id(const shoal_family *f, uint64_t slot) {
    return tails_at(f, f->cap) + slot * tail_of(f);
}
static inline uint32_t rec_seen(const shoal_family *f, uint64_t slot) {
    uint32_t v;
    memcpy(&v, rec_id(f, slot) + ID, 4);
    return v;
}
static inline void rec_set_seen(shoal_family *f, uint64_t slot, uint32_t v) {
    memcpy(rec_id(f, slot) + ID, &v, 4);
}
static inline uint32_t rec_key(const shoal_family *f, uint64_t slot) {
    uint32_t v;
    memcpy(&v, rec_id(f, slot) + ID + 4, 4);
    return v;
}
static inline void rec_set_key(shoal_family *f, uint64_t slot, uint32_t v) {
    memcpy(rec_id(f, slot) + ID + 4, &v, 4);
}
/* The bytes of totals a family's records carry: 0, NARROW or WIDE. */
static inline unsigned totals_of(const shoal_family *f) { return f->rec - BASE_REC(f->width); }
/* The totals width that holds up and down: 0 when both are 0. */
static inline unsigned totals_for(uint64_t up, uint64_t down) {
    return (up | down) == 0 ? 0 : (up | down) >> 48 ? WIDE : NARROW;
}

static inline uint64_t get_le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned b = 0; b < n; b++) v |= (uint64_t)p[b] << (8 * b);
    return v;
}
static inline void put_le(uint8_t *p, unsigned n, uint64_t v) {
    for (unsigned b = 0; b < n; b++) p[b] = (uint8_t)(v >> (8 * b));
}
/* Totals of `width` bytes (0, NARROW or WIDE) at p. */
static inline void totals_read(const uint8_t *p, unsigned width, uint64_t *up, uint64_t *down) {
    *up = get_le(p, width / 2);
    *down = get_le(p + width / 2, width / 2);
}
static inline void totals_write(uint8_t *p, unsigned width, uint64_t up, uint64_t down) {
    put_le(p, width / 2, up);
    put_le(p + width / 2, width / 2, down);
}
static inline void xfer_get(const shoal_family *f, uint64_t slot, uint64_t *up, uint64_t *down) {
    totals_read(rec_id(f, slot) + TAIL_HEAD, totals_of(f), up, down);
}
/* The family's totals are wide enough for up and down (fam_reserve saw to it). */
static inline void xfer_set(shoal_family *f, uint64_t slot, uint64_t up, uint64_t down) {
    totals_write(rec_id(f, slot) + TAIL_HEAD, totals_of(f), up, down);
}

/* The family of a swarm (v6 0 or 1), NULL when it has none. */
static inline shoal_family *fam_of(const shoal_swarm *s, int v6) {
    if (v6) return s->v6;
    return s->v4.cap ? (shoal_family *)&s->v4 : NULL;
}

/* ------------------------------------------------------------------------------------- */
/* allocation with accounting                                                            */

static void *t_alloc(shoal_table *t, size_t size) {
    void *p = calloc(1, size);
    if (p != NULL) t->mem += size;
    return p;
}
static void t_free(shoal_table *t, void *p, size_t size) {
    if (p != NULL) {
        t->mem -= size;
        free(p);
    }
}
static void *t_realloc(shoal_table *t, void *p, size_t old, size_t size) {
    void *q = realloc(p, size);
    if (q != NULL) t->mem = t->mem - old + size;
    return q;
}

/* ------------------------------------------------------------------------------------- */
/* SipHash-1-3 (Aumasson and Bernstein), 64-bit output                                    */

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND                                                                          \
    do {                                                                                  \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                         \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                            \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                            \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                         \
    } while (0)

static uint64_t siphash13(uint64_t k0, uint64_t k1, const uint8_t *p, size_t len) {
    uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575);
    uint64_t v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
    uint64_t v2 = k0 ^ UINT64_C(0x6c7967656e657261);
    uint64_t v3 = k1 ^ UINT64_C(0x7465646279746573);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t m = 0;
        for (int b = 0; b < 8; b++) m |= (uint64_t)p[i + b] << (8 * b);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (int b = 0; i + (size_t)b < len; b++) last |= (uint64_t)p[i + b] << (8 * b);
    v3 ^= last;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static inline uint64_t hash_of(const shoal_table *t, const uint8_t *p, size_t len) {
    return siphash13(t->k0, t->k1, p, len);
}

/* splitmix64: the picks' random start */
static inline uint64_t next_random(shoal_table *t) {
    uint64_t z = (t->rng += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}
static inline uint64_t random_below(shoal_table *t, uint64_t n) {
    return (uint64_t)(((unsigned __int128)next_random(t) * n) >> 64);
}

/* ------------------------------------------------------------------------------------- */
/* time: whole seconds relative to an epoch set at the first time seen                     */

static inline void see_time(shoal_table *t, int64_t now) {
    if (!t->have_epoch) {
        t->epoch = now - EPOCH_BACK;
        t->have_epoch = 1;
    }
}
static inline uint32_t rel_time(shoal_table *t, int64_t when) {
    see_time(t, when);
    int64_t r = when - t->epoch;
    if (r < 0) return 0;
    if (r > (int64_t)SEEN_MASK) return SEEN_MASK;
    return (uint32_t)r;
}
static inline int64_t abs_time(const shoal_table *t, uint32_t rel) {
    return t->epoch + (int64_t)(rel & SEEN_MASK);
}

/* ------------------------------------------------------------------------------------- */
/* family indexes (only past INDEX_MIN): unique keys, values as Python's dicts hold them   */

static inline int is_loopback(const uint8_t *addr, unsigned width) {
    static const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return width == 6 ? addr[0] == 127 : memcmp(addr, loop6, 16) == 0;
}

static uint32_t buckets_for(uint64_t n) {
    uint64_t cap = MIN_BUCKETS;
    while (cap < 2 * n) cap <<= 1;
    return (uint32_t)cap;
}

/* The bucket of `key` in by_addr (kind 0, key = address) or by_id (kind 1, key = id), or
 * NULL. Records of every occupied bucket hold their key (kept so by updating the indexes
 * before moving records). */
static uint32_t *idx_lookup(const shoal_table *t, const shoal_family *f, int kind,
                            const uint8_t *key) {
    const fidx_t *x = f->idx;
    uint32_t *b = kind ? x->by_id : x->by_addr;
    size_t len = kind ? ID : f->width;
    uint32_t i = (uint32_t)hash_of(t, key, len) & x->mask;
    for (;; i = (i + 1) & x->mask) {
        uint32_t v = b[i];
        if (v == 0) return NULL;
        /* an announce found by address goes on to its peer id and times: ask for them
         * while the address is compared */
        if (!kind) __builtin_prefetch(rec_id(f, v - 1));
        const uint8_t *held = kind ? rec_id(f, v - 1) : rec_at(f, v - 1);
        if (memcmp(held, key, len) == 0) return &b[i];
    }
}

/* by_X[key] = slot (insert or overwrite); the table has room. */
static void idx_set(const shoal_table *t, shoal_family *f, int kind, const uint8_t *key,
                    uint32_t slot) {
    fidx_t *x = f->idx;
    uint32_t *b = kind ? x->by_id : x->by_addr;
    size_t len = kind ? ID : f->width;
    uint32_t i = (uint32_t)hash_of(t, key, len) & x->mask;
    for (;; i = (i + 1) & x->mask) {
        uint32_t v = b[i];
        if (v == 0) break;
        const uint8_t *held = kind ? rec_id(f, v - 1) : rec_at(f, v - 1);
        if (memcmp(held, key, len) == 0) break;
    }
    b[i] = slot + 1;
}

/* Empty bucket `pos` of by_X, shifting later entries of its run back (linear probing
 * without tombstones). */
static void idx_delete_at(const shoal_table *t, shoal_family *f, int kind, uint32_t pos) {
    fidx_t *x = f->idx;
    uint32_t *b = kind ? x->by_id : x->by_addr;
    size_t len = kind ? ID : f->width;
    uint32_t i = pos;
    uint32_t j = pos;
    for (;;) {
        j = (j + 1) & x->mask;
        uint32_t v = b[j];
        if (v == 0) break;
        const uint8_t *key = kind ? rec_id(f, v - 1) : rec_at(f, v - 1);
        uint32_t home = (uint32_t)hash_of(t, key, len) & x->mask;
        if (((j - home) & x->mask) >= ((j - i) & x->mask)) {
            b[i] = v;
            i = j;
        }
    }
    b[i] = 0;
}

static inline size_t ip_bucket(const shoal_family *f) { return (size_t)(f->width - 2) + 4; }

static uint8_t *ip_find(const shoal_table *t, const shoal_family *f, const uint8_t *ip,
                        int *found) {
    const fidx_t *x = f->idx;
    size_t ipw = f->width - 2, bw = ip_bucket(f);
    uint32_t i = (uint32_t)hash_of(t, ip, ipw) & x->ip_mask;
    for (;; i = (i + 1) & x->ip_mask) {
        uint8_t *b = x->per_ip + (size_t)i * bw;
        uint32_t count;
        memcpy(&count, b + ipw, 4);
        if (count == 0) {
            *found = 0;
            return b;
        }
        if (memcmp(b, ip, ipw) == 0) {
            *found = 1;
            return b;
        }
    }
}

static uint32_t ip_count(const shoal_table *t, const shoal_family *f, const uint8_t *ip) {
    int found;
    uint8_t *b = ip_find(t, f, ip, &found);
    uint32_t count = 0;
    if (found) memcpy(&count, b + f->width - 2, 4);
    return count;
}

static void ip_add(const shoal_table *t, shoal_family *f, const uint8_t *ip) {
    int found;
    size_t ipw = f->width - 2;
    uint8_t *b = ip_find(t, f, ip, &found);
    uint32_t count = 0;
    if (found) {
        memcpy(&count, b + ipw, 4);
    } else {
        memcpy(b, ip, ipw);
        f->idx->ip_used++;
    }
    count++;
    memcpy(b + ipw, &count, 4);
}

static void ip_remove(const shoal_table *t, shoal_family *f, const uint8_t *ip) {
    int found;
    fidx_t *x = f->idx;
    size_t ipw = f->width - 2, bw = ip_bucket(f);
    uint8_t *b = ip_find(t, f, ip, &found);
    if (!found) return; /* cannot happen: every entry's IP is counted */
    uint32_t count;
    memcpy(&count, b + ipw, 4);
    if (--count) {
        memcpy(b + ipw, &count, 4);
        return;
    }
    x->ip_used--;
    uint32_t i = (uint32_t)((b - x->per_ip) / bw), j = i;
    for (;;) {
        j = (j + 1) & x->ip_mask;
        uint8_t *bj = x->per_ip + (size_t)j * bw;
        uint32_t c;
        memcpy(&c, bj + ipw, 4);
        if (c == 0) break;
        uint32_t home = (uint32_t)hash_of(t, bj, ipw) & x->ip_mask;
        if (((j - home) & x->ip_mask) >= ((j - i) & x->ip_mask)) {
            memcpy(x->per_ip + (size_t)i * bw, bj, bw);
            i = j;
        }
    }
    memset(x->per_ip + (size_t)i * bw, 0, bw);
}

static void idx_free(shoal_table *t, shoal_family *f) {
    fidx_t *x = f->idx;
    if (x == NULL) return;
    t_free(t, x->by_addr, ((size_t)x->mask + 1) * 4);
    t_free(t, x->by_id, ((size_t)x->mask + 1) * 4);
    t_free(t, x->per_ip, ((size_t)x->ip_mask + 1) * ip_bucket(f));
    t_free(t, x->ring, (size_t)x->ring_cap * 8);
    t_free(t, x, sizeof *x);
    f->idx = NULL;
}

/* Room in the id ring for `slots` slots (grown or shrunk to it). */
static int ring_resize(shoal_table *t, shoal_family *f, uint32_t slots) {
    fidx_t *x = f->idx;
    uint32_t *r = x->ring == NULL ? t_alloc(t, (size_t)slots * 8)
                                  : t_realloc(t, x->ring, (size_t)x->ring_cap * 8, (size_t)slots * 8);
    if (r == NULL) return -1;
    x->ring = r;
    x->ring_cap = slots;
    return 0;
}

/* Python's _link: index `slot` (whose record holds its id) under its id; it joins the ring
 * of the entries holding that id, before the indexed one, which it replaces in by_id. */
static void id_link(const shoal_table *t, shoal_family *f, uint32_t slot) {
    uint32_t *r = f->idx->ring;
    uint32_t *b = idx_lookup(t, f, 1, rec_id(f, slot));
    if (b == NULL) {
        r[2 * slot] = r[2 * slot + 1] = slot;
        idx_set(t, f, 1, rec_id(f, slot), slot);
        return;
    }
    uint32_t head = *b - 1, tail = r[2 * head + 1];
    r[2 * slot] = head;
    r[2 * slot + 1] = tail;
    r[2 * tail] = r[2 * head + 1] = slot;
    *b = slot + 1;
}

/* Python's _unlink: take `slot` out of its ring; by_id moves on to the next entry of the
 * ring if it pointed at `slot`, and drops the id when none is left. */
static void id_unlink(const shoal_table *t, shoal_family *f, uint32_t slot) {
    uint32_t *r = f->idx->ring;
    uint32_t *b = idx_lookup(t, f, 1, rec_id(f, slot));
    uint32_t after = r[2 * slot], before = r[2 * slot + 1];
    if (after == slot) {
        if (b != NULL) idx_delete_at(t, f, 1, (uint32_t)(b - f->idx->by_id));
        return;
    }
    r[2 * before] = after;
    r[2 * after + 1] = before;
    if (b != NULL && *b == slot + 1) *b = after + 1;
}

/* Move the indexes to tables of `buckets` and `ip_buckets` buckets, keeping every mapping
 * as it is (a rebuild from the records could map a shared peer id differently). */
static int idx_resize(shoal_table *t, shoal_family *f, uint32_t buckets, uint32_t ip_buckets) {
    fidx_t *old = f->idx;
    fidx_t *x = t_alloc(t, sizeof *x);
    if (x == NULL) return -1;
    size_t bw = ip_bucket(f);
    x->mask = buckets - 1;
    x->ip_mask = ip_buckets - 1;
    x->by_addr = t_alloc(t, (size_t)buckets * 4);
    x->by_id = t_alloc(t, (size_t)buckets * 4);
    x->per_ip = t_alloc(t, (size_t)ip_buckets * bw);
    if (x->by_addr == NULL || x->by_id == NULL || x->per_ip == NULL) {
        f->idx = x;
        idx_free(t, f);
        f->idx = old;
        return -1;
    }
    f->idx = x;
    if (old != NULL) {
        x->ring = old->ring;
        x->ring_cap = old->ring_cap;
        old->ring = NULL;
        old->ring_cap = 0;
        for (uint32_t i = 0; i <= old->mask; i++) {
            if (old->by_addr[i]) idx_set(t, f, 0, rec_at(f, old->by_addr[i] - 1), old->by_addr[i] - 1);
            if (old->by_id[i]) idx_set(t, f, 1, rec_id(f, old->by_id[i] - 1), old->by_id[i] - 1);
        }
        size_t ipw = f->width - 2;
        for (uint32_t i = 0; i <= old->ip_mask; i++) {
            uint8_t *b = old->per_ip + (size_t)i * bw;
            uint32_t c;
            memcpy(&c, b + ipw, 4);
            if (c) {
                int found;
                uint8_t *nb = ip_find(t, f, b, &found);
                memcpy(nb, b, bw);
                x->ip_used++;
            }
        }
        f->idx = old;
        idx_free(t, f);
        f->idx = x;
    }
    return 0;
}

/* Python's _build_index: every slot in order (so the last of a shared peer id wins). */
static int idx_build(shoal_table *t, shoal_family *f, uint64_t room) {
    if (idx_resize(t, f, buckets_for(room), buckets_for(room)) < 0) return -1;
    if (ring_resize(t, f, f->cap) < 0) {
        idx_free(t, f);
        return -1;
    }
    for (uint32_t s = 0; s < f->n; s++) {
        id_link(t, f, s);
        idx_set(t, f, 0, rec_at(f, s), s);
        ip_add(t, f, rec_at(f, s));
    }
    return 0;
}

/* Python's _unindex */
static void unindex(shoal_table *t, shoal_family *f, uint32_t slot) {
    uint32_t *b = idx_lookup(t, f, 0, rec_at(f, slot));
    if (b != NULL) idx_delete_at(t, f, 0, (uint32_t)(b - f->idx->by_addr));
    id_unlink(t, f, slot);
    ip_remove(t, f, rec_at(f, slot));
}

/* ------------------------------------------------------------------------------------- */
/* families                                                                              */

static void swarm_moved(shoal_table *t, shoal_swarm *old, shoal_swarm *s);

static inline size_t head_bytes(int v6) { return v6 ? sizeof(shoal_family) : sizeof(shoal_swarm); }

/* Move the first n tails of `from_tl` bytes at src to tails of `to_tl` bytes at dst (totals
 * widened or narrowed, exact either way), within one block: dst at or after src with
 * tails no narrower (from the last down), or dst at or before src with tails no wider
 * (from the first up), or between two blocks. */
static void tails_move(uint8_t *dst, const uint8_t *src, uint32_t n, unsigned from_tl,
                       unsigned to_tl) {
    if (n == 0 || (dst == src && from_tl == to_tl)) return;
    int down = dst > src || (dst == src && to_tl > from_tl);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = down ? n - 1 - k : k;
        uint64_t up, dn;
        totals_read(src + (size_t)i * from_tl + TAIL_HEAD, from_tl - TAIL_HEAD, &up, &dn);
        memmove(dst + (size_t)i * to_tl, src + (size_t)i * from_tl, TAIL_HEAD);
        totals_write(dst + (size_t)i * to_tl + TAIL_HEAD, to_tl - TAIL_HEAD, up, dn);
    }
}

/* Give family v6 of *sp room for `cap` records of `rec` bytes (cap >= its peers, rec at least
 * its record size: the tails move, their totals widened). The block (*sp for IPv4) may
 * move; the family must exist unless it is IPv4. -1 when out of memory: nothing changed. */
static int fam_resize(shoal_table *t, shoal_swarm **sp, int v6, uint32_t cap, unsigned rec) {
    shoal_swarm *s = *sp;
    shoal_family *f = v6 ? s->v6 : &s->v4;
    size_t head = head_bytes(v6);
    size_t fam_off = v6 ? 0 : offsetof(shoal_swarm, v4);
    void *block = v6 ? (void *)f : (void *)s;
    size_t old_size = head + (size_t)f->cap * f->rec, size = head + (size_t)cap * rec;
    uint32_t n = f->n, old_cap = f->cap;
    unsigned w = f->width, old_tl = tail_of(f), tl = rec - w;
    size_t old_off = (size_t)old_cap * w, off = (size_t)cap * w;
    /* Tails move within the block unless they would both move up and narrow, or move down
     * and widen (no caller asks for that): then they go by a copy. */
    int in_place = (off >= old_off && tl >= old_tl) || (off <= old_off && tl <= old_tl);
    uint8_t *copy = NULL;
    if (!in_place && n) {
        copy = malloc((size_t)n * old_tl);
        if (copy == NULL) return -1;
        memcpy(copy, tails_at(f, old_cap), (size_t)n * old_tl);
    }
    uint8_t *nb;
    if (size < old_size) {
        /* shrinking: the tails go to their new place first, in the block still large */
        uint8_t *base = (uint8_t *)(f + 1);
        tails_move(base + off, copy ? copy : base + old_off, n, old_tl, tl);
        nb = t_realloc(t, block, old_size, size);
        if (nb == NULL) {
            /* put them back: nothing changed */
            if (copy) memcpy(base + old_off, copy, (size_t)n * old_tl);
            else tails_move(base + old_off, base + off, n, tl, old_tl);
            free(copy);
            return -1;
        }
        f = (shoal_family *)(nb + fam_off);
    } else {
        nb = t_realloc(t, block, old_size, size);
        if (nb == NULL) {
            free(copy);
            return -1;
        }
        f = (shoal_family *)(nb + fam_off);
        uint8_t *base = (uint8_t *)(f + 1);
        tails_move(base + off, copy ? copy : base + old_off, n, old_tl, tl);
    }
    free(copy);
    f->rec = (uint8_t)rec;
    f->cap = cap;
    if (v6) {
        s->v6 = f;
    } else {
        *sp = (shoal_swarm *)nb;
        swarm_moved(t, s, *sp);
    }
    return 0;
}

/* A new, empty family of one record's room. */
static int fam_create(shoal_table *t, shoal_swarm **sp, int v6) {
    if (!v6) {
        (*sp)->v4.rec = (uint8_t)BASE_REC(6);
        return fam_resize(t, sp, 0, 1, BASE_REC(6));
    }
    shoal_family *f = t_alloc(t, sizeof(shoal_family) + BASE_REC(18));
    if (f == NULL) return -1;
    f->cap = 1;
    f->width = 18;
    f->rec = (uint8_t)BASE_REC(18);
    (*sp)->v6 = f;
    return 0;
}

/* Drop an empty family (IPv4's keeps its header, with no room). */
static void fam_drop(shoal_table *t, shoal_swarm **sp, int v6) {
    shoal_family *f = fam_of(*sp, v6);
    if (f == NULL) return;
    idx_free(t, f);
    if (v6) {
        t_free(t, f, sizeof(shoal_family) + (size_t)f->cap * f->rec);
        (*sp)->v6 = NULL;
        return;
    }
    f->n = f->seeders = 0;
    if (fam_resize(t, sp, 0, 0, f->rec) == 0) (*sp)->v4.rec = (uint8_t)BASE_REC(6);
    else f->cap = 0; /* realloc kept the larger block: the room is simply not used */
}

/* Room for `need` records of family v6 of *sp, with totals at least `totals` bytes wide,
 * and, past INDEX_MIN, their indexes; *sp may move. Nothing observable changes. Small
 * families grow by what they need (a torrent's usual handful of peers costs no spare
 * room), larger ones by a quarter. */
static int fam_reserve(shoal_table *t, shoal_swarm **sp, int v6, uint64_t need, unsigned totals) {
    shoal_family *f = fam_of(*sp, v6);
    if (need > UINT32_MAX / 2) return -1;
    unsigned rec = totals > totals_of(f) ? BASE_REC(f->width) + totals : f->rec;
    if (need > f->cap || rec != f->rec) {
        uint64_t cap = f->cap;
        if (need > cap) {
            cap = cap < INDEX_MIN ? need : cap + cap / 4 + 1;
            if (cap < need) cap = need;
            if (cap > UINT32_MAX / 2) cap = UINT32_MAX / 2;
        }
        if (fam_resize(t, sp, v6, (uint32_t)cap, rec) < 0) return -1;
        f = fam_of(*sp, v6);
    }
    if (f->idx == NULL) {
        if (need > INDEX_MIN && idx_build(t, f, need) < 0) return -1;
    } else {
        /* both tables keep at least twice as many buckets as peers (an IP is counted at
         * most once per peer), so neither is ever more than half full */
        if (2 * need > (uint64_t)f->idx->mask + 1 &&
            idx_resize(t, f, buckets_for(need), buckets_for(need)) < 0)
            return -1;
        if (need > f->idx->ring_cap && ring_resize(t, f, f->cap) < 0) return -1;
    }
    return 0;
}

static void fam_shrink(shoal_table *t, shoal_swarm **sp, int v6) {
    shoal_family *f = fam_of(*sp, v6);
    if (f->idx != NULL && f->idx->mask + 1 > MIN_BUCKETS && 8 * (uint64_t)f->n < f->idx->mask + 1)
        idx_resize(t, f, buckets_for(f->n), buckets_for(f->n)); /* may fail: kept as is */
    if (f->cap > 8 && f->n < f->cap / 4) {
        /* shrinking a block: were realloc to fail, the old one stays, larger than needed */
        if (fam_resize(t, sp, v6, f->n + f->n / 4 + 1, f->rec) < 0) return;
        f = fam_of(*sp, v6);
        if (f->idx != NULL && f->idx->ring_cap > f->cap) ring_resize(t, f, f->cap); /* may fail: kept */
    }
}

/* Copy slot src over slot dst (whose peer is being dropped); Python's _copy. */
static void fam_copy(shoal_table *t, shoal_family *f, uint32_t src, uint32_t dst) {
    if (f->idx != NULL) {
        uint32_t *b = idx_lookup(t, f, 0, rec_at(f, src));
        if (b != NULL) *b = dst + 1;
        b = idx_lookup(t, f, 1, rec_id(f, src));
        if (b != NULL && *b == src + 1) *b = dst + 1;
        uint32_t *r = f->idx->ring;
        uint32_t after = r[2 * src], before = r[2 * src + 1];
        if (after == src) {
            r[2 * dst] = r[2 * dst + 1] = dst;
        } else {
            r[2 * dst] = after;
            r[2 * dst + 1] = before;
            r[2 * before] = r[2 * after + 1] = dst;
        }
    }
    memcpy(rec_at(f, dst), rec_at(f, src), f->width);
    memcpy(rec_id(f, dst), rec_id(f, src), tail_of(f));
}

/* Python's _swap_links: the rings after the entries of slots a and b traded places (they
 * may share a ring, even be neighbours in it). */
static inline uint32_t swapped(uint32_t s, uint32_t a, uint32_t b) { return s == a ? b : s == b ? a : s; }
static void ring_swap(uint32_t *r, uint32_t a, uint32_t b) {
    uint32_t next_a = r[2 * a], prev_a = r[2 * a + 1], next_b = r[2 * b], prev_b = r[2 * b + 1];
    r[2 * b] = swapped(next_a, a, b);
    r[2 * b + 1] = swapped(prev_a, a, b);
    r[2 * a] = swapped(next_b, a, b);
    r[2 * a + 1] = swapped(prev_b, a, b);
    if (prev_a != a && prev_a != b) r[2 * prev_a] = b;
    if (next_a != a && next_a != b) r[2 * next_a + 1] = b;
    if (prev_b != a && prev_b != b) r[2 * prev_b] = a;
    if (next_b != a && next_b != b) r[2 * next_b + 1] = a;
}

/* Python's _swap */
static void fam_swap(shoal_table *t, shoal_family *f, uint32_t a, uint32_t b) {
    if (f->idx != NULL) {
        uint32_t *ba = idx_lookup(t, f, 0, rec_at(f, a));
        uint32_t *bb = idx_lookup(t, f, 0, rec_at(f, b));
        uint32_t *ia = idx_lookup(t, f, 1, rec_id(f, a));
        uint32_t *ib = idx_lookup(t, f, 1, rec_id(f, b));
        uint32_t va = ia ? *ia : 0, vb = ib ? *ib : 0;
        if (ba) *ba = b + 1;
        if (bb) *bb = a + 1;
        if (ia && va == a + 1) *ia = b + 1;
        if (ib && vb == b + 1) *ib = a + 1;
        ring_swap(f->idx->ring, a, b);
    }
    uint8_t tmp[BASE_REC(18) + WIDE];
    memcpy(tmp, rec_at(f, a), f->width);
    memcpy(rec_at(f, a), rec_at(f, b), f->width);
    memcpy(rec_at(f, b), tmp, f->width);
    memcpy(tmp, rec_id(f, a), tail_of(f));
    memcpy(rec_id(f, a), rec_id(f, b), tail_of(f));
    memcpy(rec_id(f, b), tmp, tail_of(f));
}

/* Python's FamilyPeers.remove */
static void fam_remove(shoal_table *t, shoal_family *f, uint32_t slot) {
    uint32_t last = f->n - 1;
    if (f->idx != NULL) unindex(t, f, slot);
    if (slot < f->seeders) {
        t->seeders--;
        uint32_t last_seeder = f->seeders - 1;
        if (slot != last_seeder) fam_copy(t, f, last_seeder, slot);
        slot = last_seeder;
        f->seeders--;
    } else {
        t->leechers--;
    }
    if (slot != last) fam_copy(t, f, last, slot);
    f->n = last;
    if (f->idx != NULL && last < INDEX_MIN / 2) idx_free(t, f);
}

/* Python's FamilyPeers.insert; room was reserved. Returns the new slot. */
static uint32_t fam_insert(shoal_table *t, shoal_family *f, const uint8_t *peer_id,
                           const uint8_t *addr, uint32_t seen, uint32_t key, int seeder,
                           uint64_t up, uint64_t down) {
    uint32_t slot = f->n;
    memcpy(rec_at(f, slot), addr, f->width);
    memcpy(rec_id(f, slot), peer_id, ID);
    rec_set_seen(f, slot, seen);
    rec_set_key(f, slot, key);
    xfer_set(f, slot, up, down);
    f->n++;
    if (f->idx != NULL) {
        idx_set(t, f, 0, addr, slot);
        id_link(t, f, slot);
        ip_add(t, f, addr);
    }
    if (seeder) {
        t->seeders++;
        uint32_t first_leecher = f->seeders++;
        if (first_leecher != slot) fam_swap(t, f, slot, first_leecher);
        slot = first_leecher;
    } else {
        t->leechers++;
    }
    return slot;
}

/* Python's set_role */
static uint32_t fam_set_role(shoal_table *t, shoal_family *f, uint32_t slot, int seeder) {
    uint32_t target;
    if (seeder && slot >= f->seeders) {
        target = f->seeders++;
        t->seeders++;
        t->leechers--;
    } else if (!seeder && slot < f->seeders) {
        target = --f->seeders;
        t->seeders--;
        t->leechers++;
    } else {
        return slot;
    }
    if (target != slot) fam_swap(t, f, slot, target);
    return target;
}

/* Python's replace: give `slot` to another client (or this client at a new address). */
static void fam_replace(shoal_table *t, shoal_family *f, uint32_t slot, const uint8_t *peer_id,
                        const uint8_t *addr, uint32_t key) {
    int same = memcmp(rec_id(f, slot), peer_id, ID) == 0;
    uint32_t seen = rec_seen(f, slot);
    rec_set_seen(f, slot, same ? seen : (seen & SEEN_MASK));
    rec_set_key(f, slot, key);
    if (f->idx != NULL) unindex(t, f, slot);
    memcpy(rec_at(f, slot), addr, f->width);
    memcpy(rec_id(f, slot), peer_id, ID);
    if (f->idx != NULL) {
        idx_set(t, f, 0, addr, slot);
        id_link(t, f, slot);
        ip_add(t, f, addr);
    }
}

static int64_t fam_find_addr(const shoal_table *t, const shoal_family *f, const uint8_t *addr) {
    if (f->idx != NULL) {
        uint32_t *b = idx_lookup(t, f, 0, addr);
        return b ? (int64_t)*b - 1 : -1;
    }
    for (uint32_t s = 0; s < f->n; s++)
        if (memcmp(rec_at(f, s), addr, f->width) == 0) return s;
    return -1;
}

static int64_t fam_find_id(const shoal_table *t, const shoal_family *f, const uint8_t *peer_id) {
    if (f->idx != NULL) {
        uint32_t *b = idx_lookup(t, f, 1, peer_id);
        return b ? (int64_t)*b - 1 : -1;
    }
    for (uint32_t s = 0; s < f->n; s++)
        if (memcmp(rec_id(f, s), peer_id, ID) == 0) return s;
    return -1;
}

static uint64_t fam_peers_at_ip(const shoal_table *t, const shoal_family *f, const uint8_t *ip) {
    if (f->idx != NULL) return ip_count(t, f, ip);
    uint64_t count = 0;
    for (uint32_t s = 0; s < f->n; s++)
        if (memcmp(rec_at(f, s), ip, f->width - 2u) == 0) count++;
    return count;
}

/* Python's pick: up to count peers from a random contiguous run of slots in [lo, hi)
 * (wrapping round), leaving out slot skip. Writes addresses (and ids) and returns how many. */
static uint64_t fam_pick(shoal_table *t, const shoal_family *f, int64_t lo, int64_t hi,
                         int64_t count, int64_t skip, uint8_t *addrs, uint8_t *ids) {
    int64_t n = hi - lo;
    int inside = lo <= skip && skip < hi;
    int64_t available = n - inside;
    if (count <= 0 || available <= 0) return 0;
    int64_t runs[3][2];
    int nruns;
    if (count >= available) {
        runs[0][0] = lo;
        runs[0][1] = hi;
        nruns = 1;
    } else {
        int64_t start = lo + (int64_t)random_below(t, (uint64_t)n);
        int64_t end = start + count;
        if (inside && ((start <= skip && skip < end) || skip < end - n)) end++;
        if (end <= hi) {
            runs[0][0] = start;
            runs[0][1] = end;
            nruns = 1;
        } else {
            runs[0][0] = start;
            runs[0][1] = hi;
            runs[1][0] = lo;
            runs[1][1] = end - n;
            nruns = 2;
        }
    }
    /* The runs' addresses, all at once before the copy: in a big swarm they are rarely in
     * cache (any 50 of 100,000), and the copy below would otherwise wait for each line in
     * turn. */
    for (int r = 0; r < nruns; r++) {
        const uint8_t *p = rec_at(f, (uint64_t)runs[r][0]);
        const uint8_t *end = rec_at(f, (uint64_t)runs[r][1]);
        for (p = (const uint8_t *)((uintptr_t)p & ~(uintptr_t)63); p < end; p += 64)
            __builtin_prefetch(p);
    }
    uint64_t k = 0;
    unsigned w = f->width;
    for (int r = 0; r < nruns; r++) {
        for (int64_t s = runs[r][0]; s < runs[r][1]; s++) {
            if (s == skip) continue;
            memcpy(addrs + k * w, rec_at(f, (uint64_t)s), w);
            if (ids != NULL) memcpy(ids + k * ID, rec_id(f, (uint64_t)s), ID);
            k++;
        }
    }
    return k;
}

/* Python's round() of count * n_seed / total: to nearest, ties to even. */
static int64_t share_rounded(int64_t count, int64_t n_seed, int64_t total) {
    double q = (double)(count * n_seed) / (double)total;
    int64_t fl = (int64_t)q; /* q >= 0 */
    double frac = q - (double)fl;
    if (frac > 0.5 || (frac == 0.5 && (fl & 1))) fl++;
    return fl;
}

/* Python's pick_for */
static uint64_t fam_pick_for(shoal_table *t, const shoal_family *f, int64_t count, int64_t skip,
                             int want_seeders, uint8_t *addrs, uint8_t *ids) {
    if (count <= 0) return 0;
    int64_t total = f->n, seeders = f->seeders;
    if (!want_seeders) return fam_pick(t, f, seeders, total, count, skip, addrs, ids);
    int own_seed = 0 <= skip && skip < seeders;
    int own_leech = skip >= seeders;
    int64_t n_seed = seeders - own_seed, n_leech = total - seeders - own_leech;
    int64_t take_seed, take_leech;
    if (n_seed + n_leech <= count) {
        take_seed = n_seed;
        take_leech = n_leech;
    } else {
        take_seed = share_rounded(count, n_seed, n_seed + n_leech);
        if (take_seed > n_seed) take_seed = n_seed;
        take_leech = count - take_seed;
    }
    uint64_t k = fam_pick(t, f, 0, seeders, take_seed, skip, addrs, ids);
    if (!take_leech) return k;
    return k + fam_pick(t, f, seeders, total, take_leech, skip, addrs + k * f->width,
                        ids ? ids + k * ID : NULL);
}

/* Python's expire(before, lo, hi) */
static uint64_t fam_expire(shoal_table *t, shoal_family *f, int64_t before, uint32_t lo, uint32_t hi) {
    uint64_t removed = 0;
    for (int64_t s = (int64_t)hi - 1; s >= (int64_t)lo; s--) {
        if (abs_time(t, rec_seen(f, (uint64_t)s)) < before) {
            fam_remove(t, f, (uint32_t)s);
            removed++;
        }
    }
    return removed;
}

/* ------------------------------------------------------------------------------------- */
/* swarms                                                                                */

static inline uint64_t swarm_len(const shoal_swarm *s) {
    return (uint64_t)s->v4.n + (s->v6 ? s->v6->n : 0);
}

static void swarm_counts(const shoal_swarm *s, shoal_swarm_counts *c) {
    c->seeders = c->leechers = 0;
    for (int i = 0; i < 2; i++) {
        const shoal_family *f = fam_of(s, i);
        if (f != NULL) {
            c->seeders += f->seeders;
            c->leechers += f->n - f->seeders;
        }
    }
    c->completed = (uint64_t)s->completed;
}

/* Families left empty go (an empty family holds nothing observable). */
static void swarm_tidy(shoal_table *t, shoal_swarm **sp) {
    for (int i = 0; i < 2; i++) {
        shoal_family *f = fam_of(*sp, i);
        if (f == NULL) continue;
        if (f->n == 0) fam_drop(t, sp, i);
        else fam_shrink(t, sp, i);
    }
}

static void expire_some(shoal_table *t, shoal_swarm *s, int64_t before) {
    uint32_t cursor = ++s->cursor;
    for (int i = 0; i < 2; i++) {
        shoal_family *f = fam_of(s, i);
        if (f != NULL && f->n) {
            uint32_t slot = cursor % f->n, ahead = slot + 2;
            /* the slot the announce after next examines, which in a big swarm is not in
             * cache by then otherwise (the roll is too slow for the hardware to follow) */
            __builtin_prefetch(rec_id(f, ahead < f->n ? ahead : ahead % f->n) + ID);
            if (abs_time(t, rec_seen(f, slot)) < before) fam_remove(t, f, slot);
        }
    }
}

static int completed_elsewhere(const shoal_table *t, const shoal_swarm *s, const uint8_t *peer_id,
                               int v6, int64_t before) {
    const shoal_family *other = fam_of(s, !v6);
    if (other == NULL) return 0;
    int64_t slot = fam_find_id(t, other, peer_id);
    return slot >= 0 && (rec_seen(other, (uint64_t)slot) & COUNTED) &&
           !(abs_time(t, rec_seen(other, (uint64_t)slot)) < before);
}

static int ensure_scratch(shoal_table *t, size_t need) {
    if (need <= t->scratch_cap) return 0;
    size_t cap = need < 4096 ? 4096 : need + need / 2;
    uint8_t *p = t_realloc(t, t->scratch, t->scratch_cap, cap);
    if (p == NULL) return -1;
    t->scratch = p;
    t->scratch_cap = cap;
    return 0;
}

static void finish_counts(const shoal_swarm *s, shoal_announce_outcome *o) {
    shoal_swarm_counts c;
    swarm_counts(s, &c);
    o->seeders = c.seeders;
    o->leechers = c.leechers;
    o->completed = c.completed;
}

/* Python's Swarm.announce */
static int swarm_announce(shoal_table *t, shoal_swarm **sp, const shoal_announce_request *q,
                          shoal_announce_outcome *o) {
    shoal_swarm *s = *sp;
    int64_t now = q->now;
    int64_t before = now - t->timeout;
    uint32_t now_rel = rel_time(t, now);
    s->last_seen = now_rel;
    expire_some(t, s, before);
    unsigned width = q->addr_len;
    int v6 = width == 18;
    int stopped = q->event == SHOAL_EVENT_STOPPED;
    if (fam_of(s, v6) == NULL) {
        if (stopped) goto done;
        if (fam_create(t, sp, v6) < 0) return SHOAL_NO_MEMORY;
        s = *sp;
    }
    shoal_family *f = fam_of(s, v6);
    int keep = t->keep_totals;
    const uint8_t *peer_id = q->peer_id, *addr = q->addr;
    uint32_t key = q->key;
    int seeder = q->seeder != 0;
    int completing = q->event == SHOAL_EVENT_COMPLETED && seeder;
    int64_t slot = fam_find_addr(t, f, addr);
    if (slot >= 0) {
        if (memcmp(rec_id(f, (uint64_t)slot), peer_id, ID) == 0) {
            o->role_before = slot < f->seeders ? SHOAL_ROLE_SEEDER : SHOAL_ROLE_LEECHER;
            if (keep) xfer_get(f, (uint64_t)slot, &o->prev_uploaded, &o->prev_downloaded);
            if (stopped) {
                fam_remove(t, f, (uint32_t)slot);
                goto done;
            }
        } else if (stopped) {
            goto done;
        } else {
            fam_replace(t, f, (uint32_t)slot, peer_id, addr, key);
        }
    } else {
        int64_t moved = key != 0 ? fam_find_id(t, f, peer_id) : -1;
        if (moved >= 0 && rec_key(f, (uint64_t)moved) == key) {
            o->role_before = moved < f->seeders ? SHOAL_ROLE_SEEDER : SHOAL_ROLE_LEECHER;
            if (keep) xfer_get(f, (uint64_t)moved, &o->prev_uploaded, &o->prev_downloaded);
            if (stopped) {
                fam_remove(t, f, (uint32_t)moved);
                goto done;
            }
            fam_replace(t, f, (uint32_t)moved, peer_id, addr, key);
            slot = moved;
        } else if (stopped) {
            goto done;
        } else {
            int status = SHOAL_OK;
            if (swarm_len(s) >= t->max_peers) {
                status = SHOAL_SWARM_FULL;
            } else if (f->n >= t->max_per_ip && !is_loopback(addr, width) &&
                       fam_peers_at_ip(t, f, addr) >= t->max_per_ip) {
                status = SHOAL_ADDRESS_FULL;
            }
            if (status != SHOAL_OK) {
                o->role_before = SHOAL_ROLE_NONE;
                o->prev_uploaded = o->prev_downloaded = 0;
                swarm_tidy(t, sp);
                return status;
            }
        }
    }
    /* Every allocation this announce may need, before it changes anything more: room for
     * a new record, the transfer totals (held only when kept), the picks. */
    uint64_t up = keep ? q->uploaded : 0, down = keep ? q->downloaded : 0;
    if (fam_reserve(t, sp, v6, f->n + (slot < 0), totals_for(up, down)) < 0) return SHOAL_NO_MEMORY;
    s = *sp;
    f = fam_of(s, v6);
    shoal_family *other = q->mixed_families ? fam_of(s, !v6) : NULL;
    int64_t numwant = q->numwant;
    if (numwant > (INT64_C(1) << 40)) numwant = INT64_C(1) << 40;
    uint64_t own_max = numwant > 0 ? ((uint64_t)numwant < f->n ? (uint64_t)numwant : f->n) : 0;
    uint64_t other_max = 0;
    if (other != NULL && numwant > 0) other_max = (uint64_t)numwant < other->n ? (uint64_t)numwant : other->n;
    size_t per_own = width + (q->want_peer_ids ? ID : 0);
    size_t per_other = (size_t)(24 - width) + (q->want_peer_ids ? ID : 0);
    if (ensure_scratch(t, own_max * per_own + other_max * per_other + 1) < 0) return SHOAL_NO_MEMORY;

    int completed = 0;
    if (slot >= 0) {
        uint32_t sl = (uint32_t)slot;
        if (completing && !(rec_seen(f, sl) & COUNTED))
            completed = !completed_elsewhere(t, s, peer_id, v6, before);
        rec_set_seen(f, sl, now_rel | (rec_seen(f, sl) & COUNTED) | (completing ? COUNTED : 0));
        xfer_set(f, sl, up, down);
        if (seeder != (sl < f->seeders)) slot = fam_set_role(t, f, sl, seeder);
    } else if (completing) {
        completed = !completed_elsewhere(t, s, peer_id, v6, before);
    }
    if (completed) {
        s->completed++;
        t->completed++;
    }
    o->counted_completed = completed;
    int want_seeders = !seeder && q->event != SHOAL_EVENT_PAUSED;
    uint8_t *own_addrs = t->scratch;
    uint8_t *own_ids = q->want_peer_ids ? own_addrs + own_max * width : NULL;
    uint8_t *other_addrs = t->scratch + own_max * per_own;
    uint8_t *other_ids = q->want_peer_ids ? other_addrs + other_max * (24 - width) : NULL;
    uint64_t n_own = fam_pick_for(t, f, numwant, slot, want_seeders, own_addrs, own_ids);
    uint64_t n_other = 0;
    if (other != NULL) {
        int64_t remaining = numwant - (int64_t)n_own;
        if (remaining > 0)
            n_other = fam_pick_for(t, other, remaining, fam_find_id(t, other, peer_id),
                                   want_seeders, other_addrs, other_ids);
    }
    if (slot < 0)
        fam_insert(t, f, peer_id, addr, now_rel | (completing ? COUNTED : 0), key, seeder, up,
                   down);
    o->role_after = seeder ? SHOAL_ROLE_SEEDER : SHOAL_ROLE_LEECHER;
    if (v6) {
        o->peers6 = own_addrs, o->ids6 = own_ids, o->n6 = n_own;
        o->peers4 = other_addrs, o->ids4 = other_ids, o->n4 = n_other;
    } else {
        o->peers4 = own_addrs, o->ids4 = own_ids, o->n4 = n_own;
        o->peers6 = other_addrs, o->ids6 = other_ids, o->n6 = n_other;
    }
done:
    swarm_tidy(t, sp);
    finish_counts(*sp, o);
    return SHOAL_OK;
}

/* ------------------------------------------------------------------------------------- */
/* the torrent table                                                                     */

/* A torrent's bucket holds its swarm block's address with three bits of its info hash's
 * hash (not those that choose the bucket) in the address's low bits, which are 0: blocks
 * come from calloc, aligned for any type. A probe past other torrents then reads one of
 * their blocks only when the tag matches, an eighth of the time: the blocks are spread over
 * the heap, each read a cache miss (at 10,000 torrents the table is 61% full, so a lookup
 * passed 0.8 other torrents on average). */
#define TAG_MASK ((uintptr_t)7)
_Static_assert(_Alignof(max_align_t) >= 8, "swarm blocks leave three low bits for a tag");

static inline shoal_swarm *bucket_swarm(uintptr_t v) {
    return (shoal_swarm *)(v & ~TAG_MASK);
}

static inline uintptr_t hash_tag(uint64_t hash) {
    return (uintptr_t)(hash >> 61);
}

/* The bucket of info_hash (whose hash_of is `hash`): its torrent's, or the empty one where
 * it would go. */
static uintptr_t *bucket_at(const shoal_table *t, const uint8_t *info_hash, uint64_t hash) {
    uintptr_t tag = hash_tag(hash);
    for (uint64_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        uintptr_t v = t->buckets[i];
        if (v == 0 || ((v & TAG_MASK) == tag &&
                       memcmp(bucket_swarm(v)->info_hash, info_hash, 20) == 0))
            return &t->buckets[i];
    }
}

static uintptr_t *bucket_of(const shoal_table *t, const uint8_t *info_hash) {
    return bucket_at(t, info_hash, hash_of(t, info_hash, 20));
}

/* Hold s in the table (its info hash not held yet; the table has room). */
static void bucket_put(shoal_table *t, shoal_swarm *s) {
    uint64_t hash = hash_of(t, s->info_hash, 20);
    *bucket_at(t, s->info_hash, hash) = (uintptr_t)s | hash_tag(hash);
}

shoal_swarm *shoal_table_find(shoal_table *t, const uint8_t *info_hash) {
    return bucket_swarm(*bucket_of(t, info_hash));
}

static int table_grow(shoal_table *t) {
    uint64_t cap = (t->mask + 1) * 2;
    uintptr_t *nb = t_alloc(t, cap * sizeof *nb);
    if (nb == NULL) return -1;
    uintptr_t *old = t->buckets;
    uint64_t old_cap = t->mask + 1;
    t->buckets = nb;
    t->mask = cap - 1;
    for (uint64_t i = 0; i < old_cap; i++)
        if (old[i] != 0) bucket_put(t, bucket_swarm(old[i]));
    t_free(t, old, old_cap * sizeof *old);
    return 0;
}

static void table_delete(shoal_table *t, shoal_swarm *s) {
    uintptr_t *b = bucket_of(t, s->info_hash);
    uint64_t i = (uint64_t)(b - t->buckets), j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        uintptr_t v = t->buckets[j];
        if (v == 0) break;
        uint64_t home = hash_of(t, bucket_swarm(v)->info_hash, 20) & t->mask;
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->buckets[i] = v;
            i = j;
        }
    }
    t->buckets[i] = 0;
    t->count--;
}

/* The swarm block `old` (in the table) now lives at `s`: point its bucket and its place in
 * the order at it. Only compares `old`, which may be freed. */
/* A torrent a running sweep pass kept is at `k` in the next order (its order_pos) and still at
 * its old position in the current one, which walks read until the pass ends: k plus the
 * positions the pass dropped before it (dropped is ascending, dropped[j] - j non-decreasing). */
static size_t kept_was_at(const shoal_table *t, size_t k) {
    size_t lo = 0, hi = t->dropped_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->dropped[mid] - mid <= k) lo = mid + 1;
        else hi = mid;
    }
    return k + lo;
}

static void swarm_moved(shoal_table *t, shoal_swarm *old, shoal_swarm *s) {
    if (old == s) return;
    uint64_t i = hash_of(t, s->info_hash, 20) & t->mask;
    while (bucket_swarm(t->buckets[i]) != old) i = (i + 1) & t->mask;
    t->buckets[i] = (uintptr_t)s | (t->buckets[i] & TAG_MASK);
    /* a sweep pass moves the torrents it keeps to the next order, at positions below its own */
    if (s->order_pos < t->sweep_pos) {
        t->kept[s->order_pos] = s;
        t->order[kept_was_at(t, s->order_pos)] = s;
    } else {
        t->order[s->order_pos] = s;
    }
    if (t->partial == old) t->partial = s;
}

static void swarm_free(shoal_table *t, shoal_swarm *s) {
    fam_drop(t, &s, 1);
    idx_free(t, &s->v4);
    t_free(t, s, sizeof *s + (size_t)s->v4.cap * s->v4.rec);
}

/* An empty swarm block (no IPv4 room) for `info_hash`, not yet in the table. */
static shoal_swarm *swarm_block(shoal_table *t, const uint8_t *info_hash) {
    shoal_swarm *s = t_alloc(t, sizeof *s);
    if (s == NULL) return NULL;
    memcpy(s->info_hash, info_hash, 20);
    s->v4.width = 6;
    s->v4.rec = (uint8_t)BASE_REC(6);
    return s;
}

/* Put swarm block s (not held yet) in the table and at the end of the order; -1 when out of
 * room (nothing changed). */
static int swarm_insert(shoal_table *t, shoal_swarm *s) {
    if (t->order_len >= ORDER_MAX) return -1;
    if (4 * (t->count + 1) > 3 * (t->mask + 1) && table_grow(t) < 0) return -1;
    if (t->order_len == t->order_cap) {
        size_t ncap = t->order_cap ? t->order_cap * 2 : 64;
        shoal_swarm **p = t_realloc(t, t->order, t->order_cap * sizeof *p, ncap * sizeof *p);
        if (p == NULL) return -1;
        t->order = p;
        t->order_cap = ncap;
    }
    bucket_put(t, s);
    t->count++;
    s->order_pos = (uint32_t)t->order_len;
    t->order[t->order_len++] = s;
    return 0;
}

/* A new, empty torrent, in the table and at the end of the order. */
static shoal_swarm *swarm_add(shoal_table *t, const uint8_t *info_hash) {
    shoal_swarm *s = swarm_block(t, info_hash);
    if (s != NULL && swarm_insert(t, s) < 0) {
        t_free(t, s, sizeof *s);
        return NULL;
    }
    return s;
}

int shoal_table_announce(shoal_table *t, const shoal_announce_request *q, shoal_announce_outcome *o) {
    memset(o, 0, sizeof *o);
    if (t == NULL || q == NULL || q->info_hash == NULL || q->peer_id == NULL || q->addr == NULL ||
        (q->addr_len != 6 && q->addr_len != 18))
        return SHOAL_BAD_REQUEST;
    shoal_swarm *s = shoal_table_find(t, q->info_hash);
    if (s == NULL) {
        if (q->event == SHOAL_EVENT_STOPPED) return SHOAL_OK; /* leaves no trace */
        if (t->count >= t->max_torrents) return SHOAL_TRACKER_FULL;
        s = swarm_add(t, q->info_hash);
        if (s == NULL) return SHOAL_NO_MEMORY;
        int status = swarm_announce(t, &s, q, o);
        if (status != SHOAL_OK && swarm_len(s) == 0 && s->completed == 0) {
            /* a refused first announce leaves no torrent (it is the last in the order) */
            table_delete(t, s);
            t->order_len--;
            swarm_free(t, s);
        }
        return status;
    }
    return swarm_announce(t, &s, q, o);
}

int shoal_table_scrape(shoal_table *t, const uint8_t *info_hash, shoal_swarm_counts *c) {
    shoal_swarm *s = shoal_table_find(t, info_hash);
    if (s == NULL) {
        c->seeders = c->leechers = c->completed = 0;
        return 0;
    }
    swarm_counts(s, c);
    return 1;
}

const char *shoal_status_reason(int status) {
    switch (status) {
    case SHOAL_OK: return NULL;
    case SHOAL_SWARM_FULL: return "swarm is full";
    case SHOAL_ADDRESS_FULL: return "too many peers from your address in this swarm";
    case SHOAL_TRACKER_FULL: return "tracker is full: no new torrents accepted";
    case SHOAL_NO_MEMORY: return "out of memory";
    default: return "bad request";
    }
}

int shoal_status_retry(int status) {
    switch (status) {
    case SHOAL_SWARM_FULL:
    case SHOAL_ADDRESS_FULL: return 5;
    case SHOAL_TRACKER_FULL: return 30;
    default: return -1;
    }
}

shoal_table *shoal_table_new(uint64_t seed, uint64_t k0, uint64_t k1) {
    shoal_table *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    t->mem = sizeof *t;
    t->k0 = k0;
    t->k1 = k1;
    t->rng = seed;
    t->timeout = 2880;
    t->max_torrents = 5000000;
    t->max_peers = 200000;
    t->max_per_ip = 100;
    t->mask = 63;
    t->buckets = t_alloc(t, 64 * sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void shoal_table_free(shoal_table *t) {
    if (t == NULL) return;
    for (uint64_t i = 0; i <= t->mask; i++)
        if (t->buckets[i] != 0) swarm_free(t, bucket_swarm(t->buckets[i]));
    free(t->buckets);
    free(t->order);
    free(t->kept);
    free(t->dropped);
    free(t->last_dropped);
    free(t->scratch);
    free(t);
}

void shoal_table_configure(shoal_table *t, int64_t peer_timeout, uint64_t max_torrents,
                           uint64_t max_peers, uint64_t max_per_ip, int keep_totals) {
    t->keep_totals = keep_totals != 0;
    t->timeout = peer_timeout;
    t->max_torrents = max_torrents;
    t->max_peers = max_peers;
    t->max_per_ip = max_per_ip;
}

void shoal_table_totals(const shoal_table *t, uint64_t *torrents, int64_t *seeders,
                        int64_t *leechers, int64_t *completed) {
    *torrents = t->count;
    *seeders = t->seeders;
    *leechers = t->leechers;
    *completed = t->completed;
}

size_t shoal_table_memory(const shoal_table *t) { return t->mem; }
size_t shoal_order_len(const shoal_table *t) { return t->order_len; }
shoal_swarm *shoal_order_at(const shoal_table *t, size_t pos) {
    return pos < t->order_len ? t->order[pos] : NULL;
}
const uint8_t *shoal_swarm_hash(const shoal_swarm *s) { return s->info_hash; }
void shoal_swarm_counts_of(const shoal_swarm *s, shoal_swarm_counts *c) { swarm_counts(s, c); }
uint64_t shoal_swarm_size(const shoal_swarm *s) { return swarm_len(s); }
int64_t shoal_swarm_last_seen(const shoal_table *t, const shoal_swarm *s) {
    return t->have_epoch ? abs_time(t, s->last_seen) : 0;
}
shoal_family *shoal_swarm_family(const shoal_swarm *s, int v6) { return fam_of(s, v6 != 0); }
uint64_t shoal_family_len(const shoal_family *f) { return f->n; }
uint64_t shoal_family_seeders(const shoal_family *f) { return f->seeders; }
const uint8_t *shoal_family_addr(const shoal_family *f, uint64_t slot) { return rec_at(f, slot); }
const uint8_t *shoal_family_id(const shoal_family *f, uint64_t slot) { return rec_id(f, slot); }
int64_t shoal_family_seen(const shoal_table *t, const shoal_family *f, uint64_t slot) {
    return abs_time(t, rec_seen(f, slot));
}
uint32_t shoal_family_key(const shoal_family *f, uint64_t slot) { return rec_key(f, slot); }
int shoal_family_counted(const shoal_family *f, uint64_t slot) {
    return (rec_seen(f, slot) & COUNTED) != 0;
}
void shoal_family_reported(const shoal_family *f, uint64_t slot, uint64_t *up, uint64_t *down) {
    xfer_get(f, slot, up, down);
}

/* ------------------------------------------------------------------------------------- */
/* sweep                                                                                 */

#define SWARM_COST 10 /* as memory.py's SWARM_COST */

/* memory.py's _expire_swarm */
static int expire_swarm(shoal_table *t, shoal_swarm *s, int64_t before, uint64_t allowance,
                        uint64_t *removed, uint64_t *looked) {
    int start_family = 0;
    int64_t hi = -1;
    if (t->partial == s) {
        start_family = t->partial_fam;
        hi = t->partial_hi;
    }
    t->partial = NULL;
    *removed = *looked = 0;
    for (int index = 0; index < 2; index++) {
        shoal_family *f = fam_of(s, index);
        if (index < start_family || f == NULL) continue;
        uint64_t top = (index != start_family || hi < 0) ? f->n : ((uint64_t)hi < f->n ? (uint64_t)hi : f->n);
        uint64_t left = allowance > *looked ? allowance - *looked : 0;
        uint64_t lo = top > left ? top - left : 0;
        *removed += fam_expire(t, f, before, (uint32_t)lo, (uint32_t)top);
        *looked += top - lo;
        if (lo > 0) {
            t->partial = s;
            t->partial_fam = index;
            t->partial_hi = (uint32_t)lo;
            return 0;
        }
    }
    return 1;
}

int shoal_table_sweep(shoal_table *t, int64_t now, uint64_t budget, shoal_sweep_progress *p) {
    memset(p, 0, sizeof *p);
    t->last_dropped_len = 0;
    int64_t before = now - t->timeout;
    uint64_t examined = 0;
    while (t->sweep_pos < t->order_len && examined < budget) {
        shoal_swarm *s = t->order[t->sweep_pos];
        if (s == NULL) { /* cannot happen: the current pass has not reached it */
            t->sweep_pos++;
            continue;
        }
        uint64_t removed, looked;
        int done = expire_swarm(t, s, before, budget - examined, &removed, &looked);
        examined += looked + SWARM_COST;
        p->peers_removed += removed;
        if (!done) {
            swarm_tidy(t, &s);
            break;
        }
        if (t->dropped_cap == t->dropped_len || t->kept_cap == t->kept_len) {
            /* room first, so the step can always record what it did */
            size_t nd = t->dropped_cap ? t->dropped_cap * 2 : 64;
            if (t->dropped_cap == t->dropped_len) {
                size_t *d = t_realloc(t, t->dropped, t->dropped_cap * sizeof *d, nd * sizeof *d);
                if (d == NULL) return -1;
                t->dropped = d;
                t->dropped_cap = nd;
            }
            if (t->kept_cap == t->kept_len) {
                size_t nk = t->kept_cap ? t->kept_cap * 2 : 64;
                shoal_swarm **k = t_realloc(t, t->kept, t->kept_cap * sizeof *k, nk * sizeof *k);
                if (k == NULL) return -1;
                t->kept = k;
                t->kept_cap = nk;
            }
        }
        swarm_tidy(t, &s); /* while s is still at sweep_pos in the order (it may move) */
        t->sweep_pos++;
        p->swarms_examined++;
        if (swarm_len(s) == 0 && abs_time(t, s->last_seen) < before) {
            t->completed -= s->completed;
            t->order[t->sweep_pos - 1] = NULL;
            t->dropped[t->dropped_len++] = t->sweep_pos - 1;
            table_delete(t, s);
            swarm_free(t, s);
            p->torrents_removed++;
        } else {
            s->order_pos = (uint32_t)t->kept_len;
            t->kept[t->kept_len++] = s;
        }
    }
    p->finished = t->sweep_pos >= t->order_len;
    if (p->finished) {
        shoal_swarm **old = t->order;
        size_t old_cap = t->order_cap;
        t->order = t->kept;
        t->order_len = t->kept_len;
        t->order_cap = t->kept_cap;
        t->kept = old;
        t->kept_len = 0;
        t->kept_cap = old_cap;
        /* the pass's list of dropped positions is handed over; a new one starts empty */
        size_t *ld = t->last_dropped;
        size_t ld_cap = t->last_dropped_cap;
        t->last_dropped = t->dropped;
        t->last_dropped_cap = t->dropped_cap;
        t->last_dropped_len = t->dropped_len;
        t->dropped = ld;
        t->dropped_cap = ld_cap;
        t->dropped_len = 0;
        t->sweep_pos = 0;
        if (t->kept_cap > 64 && t->order_len < t->kept_cap / 4) {
            /* the spare list need not stay as large as the table once was */
            t_free(t, t->kept, t->kept_cap * sizeof *t->kept);
            t->kept = NULL;
            t->kept_cap = 0;
        }
    }
    return 0;
}

const size_t *shoal_table_dropped(const shoal_table *t, size_t *count) {
    *count = t->last_dropped_len;
    return t->last_dropped;
}

/* ------------------------------------------------------------------------------------- */
/* snapshots                                                                             */

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v |= (uint64_t)p[b] << (8 * b);
    return v;
}

/* The totals width an image's peers need. */
static unsigned image_totals(const shoal_family_image *img) {
    unsigned width = 0;
    for (uint64_t s = 0; s < img->n; s++) {
        const uint8_t *m = img->meta + (size_t)s * 32;
        unsigned w = totals_for(le64(m + 16), le64(m + 24));
        if (w > width) width = w;
    }
    return width;
}

/* Fill family f (room for img->n records of its record size) from a snapshot image; -1 out
 * of memory (for its indexes). */
static int family_fill(shoal_table *t, shoal_family *f, const shoal_family_image *img) {
    uint32_t n = (uint32_t)img->n;
    unsigned width = f->width;
    for (uint32_t s = 0; s < n; s++) {
        const uint8_t *m = img->meta + (size_t)s * 32;
        memcpy(rec_at(f, s), img->addrs + (size_t)s * width, width);
        memcpy(rec_id(f, s), img->ids + (size_t)s * ID, ID);
        uint64_t word = le64(m + 8);
        int64_t seen = (int64_t)le64(m);
        rec_set_seen(f, s, rel_time(t, seen) | ((word >> 32) & 1 ? COUNTED : 0));
        rec_set_key(f, s, (uint32_t)word);
        xfer_set(f, s, le64(m + 16), le64(m + 24));
    }
    f->n = n;
    f->seeders = (uint32_t)img->seeders;
    return n > INDEX_MIN ? idx_build(t, f, n) : 0;
}

int shoal_table_restore(shoal_table *t, const uint8_t *info_hash, int64_t completed,
                        int64_t last_seen, const shoal_family_image *v4,
                        const shoal_family_image *v6) {
    const shoal_family_image *imgs[2] = {v4, v6};
    for (int i = 0; i < 2; i++)
        if (imgs[i] != NULL && (imgs[i]->seeders > imgs[i]->n || imgs[i]->n > UINT32_MAX / 2))
            return -1;
    see_time(t, last_seen);
    /* the new block, IPv4 peers inline, and its IPv6 family, before anything changes */
    uint32_t n4 = v4 != NULL ? (uint32_t)v4->n : 0;
    unsigned rec4 = BASE_REC(6) + (n4 ? image_totals(v4) : 0);
    shoal_swarm *s = t_alloc(t, sizeof *s + (size_t)n4 * rec4);
    if (s == NULL) return -2;
    memcpy(s->info_hash, info_hash, 20);
    s->v4.width = 6;
    s->v4.rec = (uint8_t)rec4;
    s->v4.cap = n4;
    if (n4 && family_fill(t, &s->v4, v4) < 0) {
        swarm_free(t, s);
        return -2;
    }
    if (v6 != NULL && v6->n) {
        unsigned rec6 = BASE_REC(18) + image_totals(v6);
        shoal_family *f = t_alloc(t, sizeof *f + (size_t)v6->n * rec6);
        if (f == NULL) {
            swarm_free(t, s);
            return -2;
        }
        f->width = 18;
        f->rec = (uint8_t)rec6;
        f->cap = (uint32_t)v6->n;
        s->v6 = f;
        if (family_fill(t, f, v6) < 0) {
            swarm_free(t, s);
            return -2;
        }
    }
    shoal_swarm *old = shoal_table_find(t, info_hash);
    if (old != NULL) {
        shoal_swarm_counts c;
        swarm_counts(old, &c);
        t->seeders -= (int64_t)c.seeders;
        t->leechers -= (int64_t)c.leechers;
        t->completed -= old->completed;
        s->order_pos = old->order_pos;
        swarm_moved(t, old, s);
        if (t->partial == s) t->partial = NULL; /* its families are new */
        swarm_free(t, old);
    } else if (swarm_insert(t, s) < 0) {
        swarm_free(t, s);
        return -2;
    }
    for (int i = 0; i < 2; i++) {
        shoal_family *f = fam_of(s, i);
        if (f != NULL) {
            t->seeders += f->seeders;
            t->leechers += f->n - f->seeders;
        }
    }
    s->completed = completed;
    s->last_seen = rel_time(t, last_seen);
    t->completed += completed;
    return 0;
}

int shoal_table_set_completed(shoal_table *t, const uint8_t *info_hash, int64_t completed,
                              int64_t now) {
    shoal_swarm *s = shoal_table_find(t, info_hash);
    if (s == NULL) {
        s = swarm_add(t, info_hash);
        if (s == NULL) return -2;
        s->last_seen = rel_time(t, now);
    }
    t->completed += completed - s->completed;
    s->completed = completed;
    return 0;
}

/* ------------------------------------------------------------------------------------- */
/* invariants (for the tests)                                                            */

#define FAIL(...)                                                                         \
    do {                                                                                  \
        snprintf(err, errlen, __VA_ARGS__);                                               \
        return -1;                                                                        \
    } while (0)

static int check_family(shoal_table *t, shoal_family *f, unsigned width, char *err, size_t errlen) {
    if (f->width != width || (f->rec != BASE_REC(width) && f->rec != BASE_REC(width) + NARROW &&
                              f->rec != BASE_REC(width) + WIDE))
        FAIL("family width %u, record %u", f->width, f->rec);
    if (f->n == 0) FAIL("an empty family is kept");
    if (f->n > f->cap || f->seeders > f->n) FAIL("family counts n=%u cap=%u seeders=%u", f->n, f->cap, f->seeders);
    if (f->n > INDEX_MIN && f->idx == NULL) FAIL("a family of %u peers has no index", f->n);
    for (uint32_t s = 0; s < f->n; s++) {
        if (fam_find_addr(t, f, rec_at(f, s)) != s) FAIL("address of slot %u not found at it", s);
        /* every entry is found by its id, also when others share it (their ring) */
        int64_t other = fam_find_id(t, f, rec_id(f, s));
        if (other < 0 || memcmp(rec_id(f, (uint64_t)other), rec_id(f, s), ID) != 0)
            FAIL("peer id of slot %u not found", s);
    }
    if (f->idx != NULL) {
        fidx_t *x = f->idx;
        if (x->ring == NULL || x->ring_cap < f->n) FAIL("id ring of %u slots for %u peers", x->ring_cap, f->n);
        for (uint32_t s = 0; s < f->n; s++) {
            /* the ring of slot s links exactly the entries holding its id, both ways */
            uint32_t sharing = 0, members = 0, at = s;
            for (uint32_t o = 0; o < f->n; o++) sharing += memcmp(rec_id(f, o), rec_id(f, s), ID) == 0;
            do {
                uint32_t next = x->ring[2 * at];
                if (next >= f->n || x->ring[2 * next + 1] != at) FAIL("id ring broken at slot %u", at);
                if (memcmp(rec_id(f, next), rec_id(f, s), ID) != 0) FAIL("id ring of slot %u mixes ids", s);
                at = next;
            } while (at != s && ++members <= f->n);
            if (members + 1 != sharing) FAIL("id ring of slot %u holds %u of %u entries", s, members + 1, sharing);
        }
        uint32_t addrs = 0, ip_total = 0, ips = 0;
        for (uint32_t i = 0; i <= x->mask; i++) {
            if (x->by_addr[i]) {
                addrs++;
                if (x->by_addr[i] > f->n) FAIL("address index points past the family");
            }
            if (x->by_id[i]) {
                uint32_t v = x->by_id[i] - 1;
                if (v >= f->n) FAIL("id index points past the family");
                if (idx_lookup(t, f, 1, rec_id(f, v)) != &x->by_id[i]) FAIL("id index entry unreachable");
            }
        }
        if (addrs != f->n) FAIL("address index holds %u of %u peers", addrs, f->n);
        size_t ipw = f->width - 2u, bw = ip_bucket(f);
        for (uint32_t i = 0; i <= x->ip_mask; i++) {
            uint32_t c;
            memcpy(&c, x->per_ip + (size_t)i * bw + ipw, 4);
            if (c) {
                ips++;
                ip_total += c;
                if (c != fam_peers_at_ip(t, f, x->per_ip + (size_t)i * bw)) FAIL("per-IP count mismatch");
                uint32_t scan = 0;
                for (uint32_t s = 0; s < f->n; s++)
                    if (memcmp(rec_at(f, s), x->per_ip + (size_t)i * bw, ipw) == 0) scan++;
                if (scan != c) FAIL("per-IP count %u, peers at that IP %u", c, scan);
            }
        }
        if (ip_total != f->n || ips != x->ip_used) FAIL("per-IP totals %u/%u, used %u/%u", ip_total, f->n, ips, x->ip_used);
    }
    return 0;
}

int shoal_table_check(shoal_table *t, char *err, size_t errlen) {
    int64_t seeders = 0, leechers = 0, completed = 0;
    uint64_t count = 0;
    for (uint64_t i = 0; i <= t->mask; i++) {
        shoal_swarm *s = bucket_swarm(t->buckets[i]);
        if (s == NULL) continue;
        count++;
        if ((t->buckets[i] & TAG_MASK) != hash_tag(hash_of(t, s->info_hash, 20)))
            FAIL("torrent bucket's tag is not its hash's");
        if (shoal_table_find(t, s->info_hash) != s) FAIL("torrent unreachable in the table");
        for (int k = 0; k < 2; k++) {
            shoal_family *f = fam_of(s, k);
            if (f != NULL && check_family(t, f, k ? 18 : 6, err, errlen) < 0) return -1;
        }
        shoal_swarm_counts c;
        swarm_counts(s, &c);
        seeders += (int64_t)c.seeders;
        leechers += (int64_t)c.leechers;
        completed += s->completed;
        size_t pos = s->order_pos;
        if (pos < t->sweep_pos) {
            if (pos >= t->kept_len || t->kept[pos] != s) FAIL("a kept torrent is not at its place");
            pos = kept_was_at(t, pos);
        }
        if (pos >= t->order_len || t->order[pos] != s) FAIL("a torrent is not at its place in the order");
    }
    if (count != t->count) FAIL("torrent count %llu, held %llu", (unsigned long long)t->count, (unsigned long long)count);
    if (seeders != t->seeders || leechers != t->leechers || completed != t->completed)
        FAIL("totals (%lld, %lld, %lld), recount (%lld, %lld, %lld)", (long long)t->seeders,
             (long long)t->leechers, (long long)t->completed, (long long)seeders, (long long)leechers,
             (long long)completed);
    return 0;
}
