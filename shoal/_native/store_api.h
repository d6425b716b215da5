/*
 * store_api.h: the C contract of Shoal's compiled swarm table (module shoal._native_store).
 *
 * This header is the whole interface another compiled module (the UDP data plane) may use
 * to apply announces and scrapes to the very table that MemoryStore uses, without creating a
 * Python object per request. It is plain C: nothing here touches the Python API.
 *
 * How to reach it from another extension module (holding the GIL, on the event loop thread):
 *
 *     const shoal_store_api *api = PyCapsule_Import(SHOAL_STORE_API_CAPSULE, 0);
 *     if (api == NULL || api->version != SHOAL_STORE_API_VERSION) ... fall back to Python
 *     PyObject *cap = PyObject_CallMethod(store, "native_table", NULL);
 *     shoal_table *table = PyCapsule_GetPointer(cap, SHOAL_TABLE_CAPSULE);
 *
 * `store.native_table()` (on a MemoryStore running the native engine) returns a capsule that
 * holds a reference to the table's owner, so the table lives as long as the capsule does:
 * keep the capsule, not only the pointer.
 *
 * Threading: the table is not locked. Call it only where Python would call the store (the
 * thread running the event loop, holding the GIL), never concurrently with Python code
 * that uses the same store.
 *
 * Semantics are exactly those of MemoryStore.announce / scrape (shoal/engine/swarm.py is the
 * reference): identity rules, keys, per-IP and per-swarm caps, completed counted once,
 * lazy expiry, peers picked in O(numwant) of the right role, the requester never sent back.
 * The limits (peer timeout, max torrents, caps) are those last set by MemoryStore.configure.
 */
#ifndef SHOAL_STORE_API_H
#define SHOAL_STORE_API_H

#include <stddef.h>
#include <stdint.h>

#define SHOAL_STORE_API_CAPSULE "shoal._native_store._C_API"
#define SHOAL_TABLE_CAPSULE "shoal._native_store.table"
#define SHOAL_STORE_API_VERSION 1

typedef struct shoal_table shoal_table;

/* Announce events: BEP 15's numbers; PAUSED is BEP 21's (HTTP only). Same as shoal.types.Event. */
enum {
    SHOAL_EVENT_NONE = 0,
    SHOAL_EVENT_COMPLETED = 1,
    SHOAL_EVENT_STARTED = 2,
    SHOAL_EVENT_STOPPED = 3,
    SHOAL_EVENT_PAUSED = 4
};

/* Roles in the outcome, as shoal.types.ROLE_*. */
enum { SHOAL_ROLE_NONE = 0, SHOAL_ROLE_LEECHER = 1, SHOAL_ROLE_SEEDER = 2 };

/* What announce returns. Non-zero statuses below SHOAL_NO_MEMORY are refusals that the
 * tracker sends to the client as a failure reason (reason() gives the text, retry() the
 * BEP 31 minutes); a refused announce changes no peer entry. */
enum {
    SHOAL_OK = 0,
    SHOAL_SWARM_FULL = 1,   /* "swarm is full", retry in 5 */
    SHOAL_ADDRESS_FULL = 2, /* "too many peers from your address in this swarm", retry 5 */
    SHOAL_TRACKER_FULL = 3, /* "tracker is full: no new torrents accepted", retry 30 */
    SHOAL_NO_MEMORY = 4,    /* allocation failed: nothing changed; an internal error */
    SHOAL_BAD_REQUEST = 5   /* addr_len not 6 or 18, or a NULL pointer: a caller bug */
};

/* One announce, already validated and with numwant resolved by the policy (as Python's
 * AnnounceRequest reaches MemoryStore.announce). */
typedef struct {
    const uint8_t *info_hash; /* 20 bytes */
    const uint8_t *peer_id;   /* 20 bytes */
    const uint8_t *addr;      /* compact address: 4-byte IPv4 or 16-byte IPv6, then port, network order */
    uint32_t addr_len;        /* 6 or 18: the family */
    uint32_t key;             /* BEP 7 key reduced to 32 bits; 0 means "no key" */
    uint64_t uploaded;        /* as reported (Python: value & (2**64 - 1)) */
    uint64_t downloaded;
    int32_t seeder;           /* 1 when left == 0 */
    int32_t event;            /* SHOAL_EVENT_* */
    int64_t numwant;          /* peers wanted; <= 0: none */
    int32_t mixed_families;   /* 1: may add peers of the other family (HTTP); UDP: 0 */
    int32_t want_peer_ids;    /* 1: also return the 20-byte ids of the peers picked */
    int64_t now;              /* whole seconds, the clock MemoryStore.announce is given */
} shoal_announce_request;

/* The outcome, filled by announce when it returns SHOAL_OK.
 *
 * peers4/peers6 point to n4 * 6 and n6 * 18 bytes of compact peers (exactly the bytes a
 * reply carries), ids4/ids6 to n4 * 20 and n6 * 20 bytes of matching peer ids (only when
 * want_peer_ids; else NULL). They live in a buffer owned by the table and stay valid until
 * the next call into the table: copy them out before that. Without mixed_families only the
 * requester's own family is filled. */
typedef struct {
    const uint8_t *peers4;
    const uint8_t *peers6;
    const uint8_t *ids4;
    const uint8_t *ids6;
    size_t n4;
    size_t n6;
    uint64_t seeders;          /* the swarm's counts after the announce (scrape figures) */
    uint64_t leechers;
    uint64_t completed;
    int32_t role_before;       /* SHOAL_ROLE_*: the requester's entry before ... */
    int32_t role_after;        /* ... and after this announce */
    int32_t counted_completed; /* 1 when this announce counted a completed download */
    uint64_t prev_uploaded;    /* totals the entry last reported (0 for a new peer) */
    uint64_t prev_downloaded;
} shoal_announce_outcome;

/* A swarm's scrape figures; all zero for an unknown torrent. */
typedef struct {
    uint64_t seeders;
    uint64_t leechers;
    uint64_t completed;
} shoal_swarm_counts;

/* The exported function table (the capsule's pointer). Fields are only ever added at the
 * end, with `size` growing and `version` bumped on incompatible change. */
typedef struct {
    uint32_t version; /* SHOAL_STORE_API_VERSION */
    uint32_t size;    /* sizeof(shoal_store_api) */
    /* Apply one announce; returns SHOAL_OK or a status above. */
    int (*announce)(shoal_table *table, const shoal_announce_request *request,
                    shoal_announce_outcome *outcome);
    /* Counts of one torrent (20-byte info_hash) into *counts; returns 1 when the torrent is
     * known, 0 (and zeros) when not. Changes nothing. */
    int (*scrape)(shoal_table *table, const uint8_t *info_hash, shoal_swarm_counts *counts);
    /* The failure reason for a refusal status (static text), NULL for SHOAL_OK. */
    const char *(*reason)(int status);
    /* The BEP 31 retry-in minutes for a refusal status, -1 when none. */
    int (*retry)(int status);
} shoal_store_api;

#endif /* SHOAL_STORE_API_H */
