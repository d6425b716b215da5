/*
 * answer.h: the compiled answer shared by the UDP and HTTP data planes.
 *
 * What the logic layer does for an announce on the native in-memory store, in C: the
 * access rules in AccessRules.announce_rules' order (banned networks, torrent list, client
 * prefixes), the policy's numwant and interval (with the same jitter), the store's C API
 * (store_api.h), and the completions persistence records. The Python side builds it from
 * the logic layer's state (shoal.server.compiled.fast_plan) and swaps it whole on reload;
 * it never applies a rule it has no copy of (the plan is refused and Python answers).
 * Both extensions compile this file; it needs the Python API only to be built from
 * Python objects.
 */
#ifndef SHOAL_ANSWER_H
#define SHOAL_ANSWER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#include "netset.h"
#include "store_api.h"

/* Refusals a compiled answer counts, in the order of the attach result's texts. */
enum { SHOAL_F_BANNED = 0, SHOAL_F_TORRENT, SHOAL_F_CLIENT, SHOAL_F_SWARM_FULL,
       SHOAL_F_ADDRESS_FULL, SHOAL_F_TRACKER_FULL, SHOAL_FAILURES };

/* BEP 31 minutes the access refusals carry (shoal.engine.rules.RETRY_LATER). */
#define SHOAL_RETRY_LATER 60

typedef struct {
    const shoal_store_api *api;
    shoal_table *table;
    PyObject *capsule; /* keeps the table alive */
    int64_t interval, jitter, min_interval, default_numwant, max_numwant;
    int torrents;      /* 0: open, 1: allow listed, 2: deny listed */
    uint8_t *hashes;   /* sorted 20-byte info_hashes */
    size_t nhashes;
    PyObject *client_allow, *client_deny; /* tuples of bytes (empty: no check) */
    char *reasons[SHOAL_FAILURES]; /* refusal texts (UTF-8), SHOAL_F_* order */
    int retry[SHOAL_FAILURES];     /* their BEP 31 minutes, -1: none */
    int record_completed;
    uint8_t *completed; /* info_hashes whose announce counted a completion */
    size_t ncompleted, capcompleted;
    uint64_t rng;
} shoal_answer;

/* Build from attach_store's arguments (see shoal._native_udp.Engine.attach_store); on
 * success *texts is the tuple of the refusal texts (SHOAL_F_* order). NULL with a Python
 * error set on failure. */
shoal_answer *shoal_answer_new(PyObject *args, PyObject *kwds, PyObject **texts);
void shoal_answer_free(shoal_answer *f);
/* Move the completions `old` recorded and were not taken yet to `fresh` (on a swap). */
void shoal_answer_inherit(shoal_answer *fresh, shoal_answer *old);
/* The completions recorded since the last call (20 bytes each, concatenated); b"" for
 * NULL. */
PyObject *shoal_answer_take_completed(shoal_answer *f);

/* Policy.next_interval. */
int64_t shoal_answer_interval(shoal_answer *f);
/* Policy.numwant: the default for a negative request, capped at the maximum. */
int64_t shoal_answer_numwant(const shoal_answer *f, int64_t asked);
/* TorrentList.permits (true when there is no list). */
int shoal_answer_permits(const shoal_answer *f, const uint8_t *info_hash);
/* The access rules for an announce from packed address `ip` (4 or 16 bytes): -1 when
 * every rule passes, else the SHOAL_F_* refusal. */
int shoal_answer_rules(const shoal_answer *f, const shoal_netset *banned, const uint8_t *ip,
                       size_t iplen, const uint8_t *info_hash, const uint8_t *peer_id);
/* The store's announce (numwant already resolved), and the completion recorded when it
 * counted one: the store's status, or SHOAL_NO_MEMORY when the completion could not be
 * recorded (the announce is applied: an internal error, as Python's MemoryError). */
int shoal_answer_store(shoal_answer *f, const shoal_announce_request *q,
                       shoal_announce_outcome *o);

/* ---- counters, kept in C and collected by Python (both data planes) ---------------- */

#define SHOAL_MAX_BOUNDS 32

/* The latency histogram: bucket i counts what took at most bounds[i] (the last, more). */
typedef struct {
    double bounds[SHOAL_MAX_BOUNDS];
    int n;
    unsigned long long counts[SHOAL_MAX_BOUNDS + 1];
    double sum;
} shoal_latency;

/* The bounds from a tuple of at most SHOAL_MAX_BOUNDS floats: 0, or -1 with an error. */
int shoal_latency_bounds(shoal_latency *h, PyObject *bounds);
void shoal_latency_observe(shoal_latency *h, double seconds);
/* Zero the counts and the sum (the bounds stay). */
void shoal_latency_reset(shoal_latency *h);
/* CLOCK_MONOTONIC in seconds. */
double shoal_monotonic(void);
/* (pairs, latency_sum): pairs a tuple of (slot, count) for the nonzero of flat[0..n), so
 * collecting after a little work costs little. NULL with an error. */
PyObject *shoal_count_pairs(const unsigned long long *flat, int n, double latency_sum);

/* A network set from Python's NetworkSet.v4 / .v6 specs ([(shift, [prefix, ...]), ...]):
 * 0, or -1 with a Python error set (and *out left empty). */
int shoal_netset_load(PyObject *v4, PyObject *v6, shoal_netset *out);

#endif
