/* netset.c: network sets (netset.h). */
#include "netset.h"

#include <stdlib.h>
#include <string.h>

static int prefix_cmp(const void *x, const void *y)
{
    const shoal_prefix *a = x, *b = y;
    if (a->hi != b->hi)
        return a->hi < b->hi ? -1 : 1;
    if (a->lo != b->lo)
        return a->lo < b->lo ? -1 : 1;
    return 0;
}

static int group_contains(const shoal_net_group *g, uint64_t hi, uint64_t lo)
{
    shoal_prefix key = {hi, lo};
    return g->count && bsearch(&key, g->items, g->count, sizeof key, prefix_cmp) != NULL;
}

int shoal_netset_contains(const shoal_netset *set, const uint8_t *ip, size_t iplen)
{
    const shoal_net_group *groups = iplen == 4 ? set->v4 : set->v6;
    size_t n = iplen == 4 ? set->nv4 : set->nv6;
    if (!n || (iplen != 4 && iplen != 16))
        return 0;
    uint64_t hi = 0, lo = 0;
    if (iplen == 4) {
        lo = be32(ip);
    } else {
        hi = be64(ip);
        lo = be64(ip + 8);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned s = groups[i].shift;
        uint64_t h, l;
        if (s == 0) {
            h = hi;
            l = lo;
        } else if (s < 64) {
            h = hi >> s;
            l = (lo >> s) | (hi << (64 - s));
        } else if (s < 128) {
            h = 0;
            l = hi >> (s - 64);
        } else {
            h = l = 0;
        }
        if (group_contains(&groups[i], h, l))
            return 1;
    }
    return 0;
}

static void free_groups(shoal_net_group *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(g[i].items);
    free(g);
}

void shoal_netset_free(shoal_netset *set)
{
    free_groups(set->v4, set->nv4);
    free_groups(set->v6, set->nv6);
    memset(set, 0, sizeof *set);
}

void shoal_netset_sort(shoal_netset *set)
{
    for (size_t i = 0; i < set->nv4; i++)
        qsort(set->v4[i].items, set->v4[i].count, sizeof(shoal_prefix), prefix_cmp);
    for (size_t i = 0; i < set->nv6; i++)
        qsort(set->v6[i].items, set->v6[i].count, sizeof(shoal_prefix), prefix_cmp);
}
