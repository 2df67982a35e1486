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
    struct hole {
        int64_t from, to; /* [from, to): counted missing, not seen since */
        int64_t first_ns; /* when cl_streams_due first walked it; 0: not yet */
        int64_t next_ns;  /* when to ask for it next */
        int asked;        /* requests made */
    } holes[CL_STREAM_HOLES];
    int nholes; /* oldest first */
};

struct cl_streams {
    struct stream **buckets;
    size_t nbuckets;
    size_t count;
    size_t max;
    uint64_t clock;
    int64_t pending; /* metrics in all holes */
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

static int64_t hole_sum(const struct stream *st)
{
    int64_t n = 0;
    for (int i = 0; i < st->nholes; i++)
        n += st->holes[i].to - st->holes[i].from;
    return n;
}

/* Forgets the least recently seen stream and its holes (returned); a linear scan, run only at the
 * bound. */
static int64_t evict_oldest(cl_streams *s)
{
    int64_t forgotten = 0;
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
        forgotten = hole_sum(st);
        s->pending -= forgotten;
        free(st->source_id);
        free(st);
        s->count--;
    }
    return forgotten;
}

/*
 * Remembers [from, to) as missing, forgetting the oldest hole when all
 * slots are taken; returns the metrics of the hole forgotten.
 */
static int64_t add_hole(cl_streams *s, struct stream *st, int64_t from, int64_t to)
{
    int64_t forgotten = 0;
    if (st->nholes == CL_STREAM_HOLES) {
        forgotten = st->holes[0].to - st->holes[0].from;
        memmove(st->holes, st->holes + 1, (CL_STREAM_HOLES - 1) * sizeof st->holes[0]);
        st->nholes--;
    }
    st->holes[st->nholes] = (struct hole){.from = from, .to = to};
    st->nholes++;
    s->pending += to - from - forgotten;
    return forgotten;
}

/*
 * Takes [from, to) out of the stream's holes; returns how many missing
 * metrics it covered, and in *forgotten those of a hole part it had no
 * slot to keep.
 */
static int64_t fill_holes(cl_streams *s, struct stream *st, int64_t from, int64_t to,
                          int64_t *forgotten)
{
    int64_t filled = 0;
    int64_t before = hole_sum(st);
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
            *forgotten += lo - a;
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
    s->pending -= before - hole_sum(st);
    return filled;
}

static struct stream *find(cl_streams *s, const char *source_id, int64_t epoch, size_t *bucket)
{
    size_t b = hash(source_id, epoch) % s->nbuckets;
    struct stream *st = s->buckets[b];
    while (st && (st->epoch != epoch || strcmp(st->source_id, source_id) != 0))
        st = st->next;
    if (bucket)
        *bucket = b;
    return st;
}

/* Starts tracking a stream whose next sequence number is next_seq; NULL when out of memory. */
static struct stream *track(cl_streams *s, const char *source_id, int64_t epoch, int64_t next_seq,
                            size_t b, int64_t *forgotten)
{
    if (s->count >= s->max)
        *forgotten += evict_oldest(s);
    struct stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL; /* tracking is best effort; the metrics are stored regardless */
    st->source_id = strdup(source_id);
    if (!st->source_id) {
        free(st);
        return NULL;
    }
    st->epoch = epoch;
    st->next_seq = next_seq;
    st->last_seen = s->clock;
    st->next = s->buckets[b];
    s->buckets[b] = st;
    s->count++;
    return st;
}

void cl_streams_see(cl_streams *s, const char *source_id, int64_t epoch, int64_t first_seq,
                    size_t n, struct cl_seen *seen)
{
    memset(seen, 0, sizeof *seen);
    size_t b;
    struct stream *st = find(s, source_id, epoch, &b);

    int64_t end = first_seq + (int64_t)n;
    s->clock++;
    if (!st) {
        if (track(s, source_id, epoch, end, b, &seen->forgotten))
            seen->new_stream = 1;
        return;
    }
    st->last_seen = s->clock;
    if (first_seq > st->next_seq) {
        seen->gap = first_seq - st->next_seq;
        seen->gap_from = st->next_seq;
        seen->forgotten += add_hole(s, st, st->next_seq, first_seq);
    } else {
        if (first_seq < st->next_seq && st->nholes > 0)
            seen->filled = fill_holes(s, st, first_seq, end < st->next_seq ? end : st->next_seq,
                                      &seen->forgotten);
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

bool cl_streams_known(cl_streams *s, const char *source_id, int64_t epoch)
{
    return find(s, source_id, epoch, NULL) != NULL;
}

int64_t cl_streams_add_hole(cl_streams *s, const char *source_id, int64_t epoch, int64_t from,
                            int64_t to)
{
    size_t b;
    int64_t forgotten = 0;
    struct stream *st = find(s, source_id, epoch, &b);
    s->clock++;
    if (!st && !(st = track(s, source_id, epoch, to, b, &forgotten)))
        return forgotten + (to - from); /* not tracked: given up at once */
    forgotten += add_hole(s, st, from, to);
    if (to > st->next_seq)
        st->next_seq = to;
    return forgotten;
}

int64_t cl_streams_gone(cl_streams *s, const char *source_id, int64_t epoch, int64_t from,
                        int64_t to)
{
    struct stream *st = find(s, source_id, epoch, NULL);
    int64_t forgotten = 0;
    if (!st)
        return 0;
    return fill_holes(s, st, from, to, &forgotten) + forgotten;
}

int64_t cl_streams_pending(const cl_streams *s)
{
    return s->pending;
}

void cl_streams_due(cl_streams *s, int64_t now_ns, int64_t delay_ns, int64_t give_up_ns,
                    cl_streams_ask_fn *ask, cl_streams_give_up_fn *give_up, void *arg)
{
    if (s->pending == 0)
        return;
    for (size_t b = 0; b < s->nbuckets; b++) {
        for (struct stream *st = s->buckets[b]; st; st = st->next) {
            int64_t ranges[CL_STREAM_HOLES][2];
            int n = 0;
            for (int i = 0; i < st->nholes; i++) {
                struct hole *h = &st->holes[i];
                if (h->first_ns == 0) {
                    h->first_ns = now_ns;
                    h->next_ns = now_ns + delay_ns;
                }
                if (give_up_ns > 0 && now_ns - h->first_ns >= give_up_ns) {
                    give_up(arg, st->source_id, st->epoch, h->from, h->to);
                    s->pending -= h->to - h->from;
                    memmove(h, h + 1, (size_t)(st->nholes - i - 1) * sizeof *h);
                    st->nholes--;
                    i--;
                    continue;
                }
                if (now_ns < h->next_ns)
                    continue;
                ranges[n][0] = h->from;
                ranges[n][1] = h->to;
                n++;
                int64_t backoff = 250000000LL << (h->asked < 5 ? h->asked : 5);
                h->next_ns = now_ns + (backoff < 5000000000LL ? backoff : 5000000000LL);
                h->asked++;
            }
            if (n > 0)
                ask(arg, st->source_id, st->epoch, (const int64_t(*)[2])ranges, n);
        }
    }
}
