/*
 * netset.h: sets of IPv4 and IPv6 networks with a lookup of one bisection per prefix
 * length (the compiled copy of shoal.engine.rules.NetworkSet: banned networks, trusted
 * proxies). Plain C.
 */
#ifndef SHOAL_NETSET_H
#define SHOAL_NETSET_H

#include <stddef.h>
#include <stdint.h>

/* Big-endian reads (network order), for the data planes' parsers too. */
static inline uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Banned networks: per address family, groups of network prefixes by shift, each sorted. */
typedef struct {
    uint64_t hi, lo;   /* a prefix value (address >> shift) as 128 bits */
} shoal_prefix;

typedef struct {
    unsigned shift;    /* bits dropped from the address before the lookup */
    size_t count;
    shoal_prefix *items;
} shoal_net_group;

typedef struct {
    shoal_net_group *v4, *v6;
    size_t nv4, nv6;
} shoal_netset;

/* Whether a packed address (4 or 16 bytes) is in one of the networks. */
int shoal_netset_contains(const shoal_netset *set, const uint8_t *ip, size_t iplen);
void shoal_netset_free(shoal_netset *set);
/* Sort each group's prefixes (pairs) so lookups can bisect; call after filling them. */
void shoal_netset_sort(shoal_netset *set);

#endif
