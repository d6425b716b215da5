/*
 * store.h: the compiled swarm table's core, as the Python binding (store_module.c) uses it.
 * Plain C, no Python API. Other compiled modules use store_api.h instead, which is the
 * stable contract; this header may change with the binding.
 *
 * Layout (the reference semantics are shoal/engine/swarm.py and shoal/storage/memory.py):
 * - the table is an open-addressing hash table of swarms keyed by their 20-byte info_hash
 *   (SipHash-1-3 under a random key, so clients cannot aim collisions), plus the arrival
 *   order the sweep, the full scrape and snapshots walk in bounded steps;
 * - a swarm holds one family of peers per address family: a header and dense records,
 *   seeders in slots 0..seeders-1 and leechers after them. A torrent is one allocation,
 *   its header (72 bytes) with its IPv4 family's records after it; an IPv6 family is a
 *   block of its own. Families below SHOAL_INDEX_MIN peers grow by exactly what they need,
 *   larger ones by a quarter;
 * - a record is the compact address (the bytes a reply carries), the 20-byte peer id, the
 *   last announce time as seconds since the table's epoch (31 bits, the top bit flags a
 *   counted completion) and the 32-bit key: 34 bytes for IPv4, 46 for IPv6. When the table
 *   keeps totals (private mode, tracker.peer_totals), a family's records grow by the
 *   uploaded and downloaded totals its peers last reported (16 bytes) once one of them
 *   reports a non-zero total; otherwise they are not held and announces report 0 for them.
 *   A family keeps its records in two arrays, the addresses then the rest (id, time, key,
 *   totals): a reply's peers are a run of slots, whose addresses are then a few cache lines
 *   (300 bytes for 50 IPv4 peers) instead of a whole record's worth each;
 * - families past SHOAL_INDEX_MIN peers keep hash indexes from address and from peer id to
 *   slot and a count per IP; smaller ones are searched, which is faster at that size.
 */
#ifndef SHOAL_STORE_H
#define SHOAL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "store_api.h"

#define SHOAL_ID 20
#define SHOAL_INDEX_MIN 24

typedef struct shoal_family shoal_family;
typedef struct shoal_swarm shoal_swarm;

typedef struct {
    int finished;
    uint64_t swarms_examined;
    uint64_t peers_removed;
    uint64_t torrents_removed;
} shoal_sweep_progress;

/* A family as a snapshot image: `meta` holds, per slot, four little-endian u64 words: last
 * seen (absolute seconds), key | completed-flag << 32, uploaded, downloaded. */
typedef struct {
    uint64_t n;
    uint64_t seeders;
    const uint8_t *addrs;
    const uint8_t *ids;
    const uint8_t *meta;
} shoal_family_image;

shoal_table *shoal_table_new(uint64_t seed, uint64_t k0, uint64_t k1);
void shoal_table_free(shoal_table *t);
/* keep_totals: hold each peer's reported uploaded/downloaded (prev_* of the outcome, 0 when
 * not held). Turned off, totals held stay but read as 0; new reports are stored as 0. */
void shoal_table_configure(shoal_table *t, int64_t peer_timeout, uint64_t max_torrents,
                           uint64_t max_peers, uint64_t max_per_ip, int keep_totals);

int shoal_table_announce(shoal_table *t, const shoal_announce_request *q,
                         shoal_announce_outcome *o);
int shoal_table_scrape(shoal_table *t, const uint8_t *info_hash, shoal_swarm_counts *c);
const char *shoal_status_reason(int status);
int shoal_status_retry(int status);

void shoal_table_totals(const shoal_table *t, uint64_t *torrents, int64_t *seeders,
                        int64_t *leechers, int64_t *completed);
size_t shoal_table_memory(const shoal_table *t);

/* The arrival order: entries may be NULL (torrents the running sweep pass dropped). */
size_t shoal_order_len(const shoal_table *t);
shoal_swarm *shoal_order_at(const shoal_table *t, size_t pos);
shoal_swarm *shoal_table_find(shoal_table *t, const uint8_t *info_hash);

const uint8_t *shoal_swarm_hash(const shoal_swarm *s);
void shoal_swarm_counts_of(const shoal_swarm *s, shoal_swarm_counts *c);
uint64_t shoal_swarm_size(const shoal_swarm *s);
int64_t shoal_swarm_last_seen(const shoal_table *t, const shoal_swarm *s);
shoal_family *shoal_swarm_family(const shoal_swarm *s, int v6);

uint64_t shoal_family_len(const shoal_family *f);
uint64_t shoal_family_seeders(const shoal_family *f);
const uint8_t *shoal_family_addr(const shoal_family *f, uint64_t slot);
const uint8_t *shoal_family_id(const shoal_family *f, uint64_t slot);
int64_t shoal_family_seen(const shoal_table *t, const shoal_family *f, uint64_t slot);
uint32_t shoal_family_key(const shoal_family *f, uint64_t slot);
int shoal_family_counted(const shoal_family *f, uint64_t slot);
void shoal_family_reported(const shoal_family *f, uint64_t slot, uint64_t *up, uint64_t *down);

/* One sweep step (MemoryStore.sweep). When a pass finishes, the positions it dropped from
 * the order are kept for shoal_table_dropped until the next step. */
int shoal_table_sweep(shoal_table *t, int64_t now, uint64_t budget, shoal_sweep_progress *p);
const size_t *shoal_table_dropped(const shoal_table *t, size_t *count);

/* Put back a torrent from a snapshot (replacing one of that hash): 0, -1 for an inconsistent
 * image (nothing changed), -2 out of memory (nothing changed). */
int shoal_table_restore(shoal_table *t, const uint8_t *info_hash, int64_t completed,
                        int64_t last_seen, const shoal_family_image *v4,
                        const shoal_family_image *v6);
/* 0, or -2 out of memory. */
int shoal_table_set_completed(shoal_table *t, const uint8_t *info_hash, int64_t completed,
                              int64_t now);

/* Checks every internal invariant; 0, or -1 with a message in err. */
int shoal_table_check(shoal_table *t, char *err, size_t errlen);

#endif /* SHOAL_STORE_H */
