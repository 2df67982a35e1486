/* Per-publisher sequence tracking in a small hash table. */
#include "streams.h"
#include "am_error.h"

#include <stdlib.h>
#include <string.h>

struct stream {
    struct stream *next; /* hash chain */
    char *source_id;
    int64_t epoch;
    int64_t next_seq;   /* one past the highest sequence number seen */
    uint64_t last_seen; /* the table's clock when last seen */
    struct {
        int64_t from, to; /* [from, to): counted missing, not seen since */
    } holes[CL_STREAM_HOLES];
    int nholes; /* oldest first */
};

struct cl_streams {
    struct stream **buckets;
    size_t nbuckets;
    size_t count;
    size_t max;
    uint64_t clock;
};

static uint64_t hash(const char *s, int64_t epoch)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)epoch;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int cl_streams_new(cl_streams **out, size_t max)
{
    cl_streams *s = calloc(1, sizeof *s);
    if (!s)
        return AM_ENOMEM;
    s->max = max ? max : 1;
    s->nbuckets = 1024;
    s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    if (!s->buckets) {
        free(s);
        return AM_ENOMEM;
    }
    *out = s;
    return AM_OK;
}

void cl_streams_free(cl_streams *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct stream *st = s->buckets[i];
        while (st) {
            struct stream *next = st->next;
            free(st->source_id);
            free(st);
            st = next;
        }
    }
    free(s->buckets);
    free(s);
}

/* Forgets the least recently seen stream; a linear scan, run only at the bound. */
static void evict_oldest(cl_streams *s)
{
    struct stream **victim = NULL;
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (struct stream **pp = &s->buckets[i]; *pp; pp = &(*pp)->next) {
            if (!victim || (*pp)->last_seen < (*victim)->last_seen)
                victim = pp;
        }
    }
    if (victim) {
        struct stream *st = *victim;
        *victim = st->next;
        free(st->source_id);
        free(st);
        s->count--;
    }
}

/* Remembers [from, to) as missing, forgetting the oldest hole when all slots are taken. */
static void add_hole(struct stream *st, int64_t from, int64_t to)
{
    if (st->nholes == CL_STREAM_HOLES) {
        memmove(st->holes, st->holes + 1, (CL_STREAM_HOLES - 1) * sizeof st->holes[0]);
        st->nholes--;
    }
    st->holes[st->nholes].from = from;
    st->holes[st->nholes].to = to;
    st->nholes++;
}

/* Takes [from, to) out of the stream's holes; returns how many missing metrics it covered. */
static int64_t fill_holes(struct stream *st, int64_t from, int64_t to)
{
    int64_t filled = 0;
    for (int i = 0; i < st->nholes; i++) {
        int64_t a = st->holes[i].from, b = st->holes[i].to;
        int64_t lo = from > a ? from : a, hi = to < b ? to : b;
        if (lo >= hi)
            continue;
        filled += hi - lo;
        if (lo > a && hi < b && st->nholes < CL_STREAM_HOLES) {
            /* The batch lands inside the hole: what is left is two holes. */
            memmove(&st->holes[i + 2], &st->holes[i + 1],
                    (size_t)(st->nholes - i - 1) * sizeof st->holes[0]);
            st->holes[i].to = lo;
            st->holes[i + 1].from = hi;
            st->holes[i + 1].to = b;
            st->nholes++;
            i++;
        } else if (hi < b) {
            /* The rest after the batch (with no slot to split, the part before it is forgotten). */
            st->holes[i].from = hi;
        } else if (lo > a) {
            st->holes[i].to = lo;
        } else {
            memmove(&st->holes[i], &st->holes[i + 1],
                    (size_t)(st->nholes - i - 1) * sizeof st->holes[0]);
            st->nholes--;
            i--;
        }
    }
    return filled;
}

void cl_streams_see(cl_streams *s, const char *source_id, int64_t epoch, int64_t first_seq,
                    size_t n, struct cl_seen *seen)
{
    memset(seen, 0, sizeof *seen);
    size_t b = hash(source_id, epoch) % s->nbuckets;
    struct stream *st = s->buckets[b];
    while (st && (st->epoch != epoch || strcmp(st->source_id, source_id) != 0))
        st = st->next;

    int64_t end = first_seq + (int64_t)n;
    s->clock++;
    if (!st) {
        if (s->count >= s->max)
            evict_oldest(s);
        st = calloc(1, sizeof *st);
        if (!st)
            return; /* tracking is best effort; the metrics are stored regardless */
        st->source_id = strdup(source_id);
        if (!st->source_id) {
            free(st);
            return;
        }
        st->epoch = epoch;
        st->next_seq = end;
        st->last_seen = s->clock;
        st->next = s->buckets[b];
        s->buckets[b] = st;
        s->count++;
        seen->new_stream = 1;
        return;
    }
    st->last_seen = s->clock;
    if (first_seq > st->next_seq) {
        seen->gap = first_seq - st->next_seq;
        seen->gap_from = st->next_seq;
        add_hole(st, st->next_seq, first_seq);
    } else {
        if (first_seq < st->next_seq && st->nholes > 0)
            seen->filled = fill_holes(st, first_seq, end < st->next_seq ? end : st->next_seq);
        if (end <= st->next_seq)
            seen->replayed = 1;
    }
    if (end > st->next_seq)
        st->next_seq = end;
}

size_t cl_streams_count(const cl_streams *s)
{
    return s->count;
}
