/* Unit tests of per-publisher sequence tracking: new streams, gaps, replays and eviction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "streams.h"

#include <stdio.h>
#include <string.h>

static int setup(void **state)
{
    cl_streams *s = NULL;
    if (cl_streams_new(&s, 4) != 0)
        return -1;
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    cl_streams_free(*state);
    return 0;
}

static void assert_seen(const struct cl_seen *seen, int new_stream, int64_t gap, int64_t gap_from,
                        int replayed)
{
    assert_int_equal(seen->new_stream, new_stream);
    assert_int_equal(seen->gap, gap);
    if (gap > 0)
        assert_int_equal(seen->gap_from, gap_from);
    assert_int_equal(seen->replayed, replayed);
}

static void test_first_batch_is_a_new_stream_without_gap(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    /* A collector that starts late sees a stream mid-way: that is not a gap. */
    cl_streams_see(s, "gw@a", 1, 500, 10, &seen);
    assert_seen(&seen, 1, 0, 0, 0);
    assert_int_equal(cl_streams_count(s), 1);
}

static void test_contiguous_batches_report_nothing(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    for (int64_t seq = 10; seq < 100; seq += 10) {
        cl_streams_see(s, "gw@a", 1, seq, 10, &seen);
        assert_seen(&seen, 0, 0, 0, 0);
    }
    assert_int_equal(cl_streams_count(s), 1);
}

static void test_gap_reports_its_size_and_first_missing_seq(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    cl_streams_see(s, "gw@a", 1, 25, 5, &seen); /* 10..24 never arrived */
    assert_seen(&seen, 0, 15, 10, 0);
    cl_streams_see(s, "gw@a", 1, 30, 5, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
}

/* Out of order: the rest of a dropped connection arrives after the new one started. */
static void test_late_batches_fill_their_gap_once(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    cl_streams_see(s, "gw@a", 1, 40, 10, &seen); /* 10..39 counted missing */
    assert_int_equal(seen.gap, 30);
    cl_streams_see(s, "gw@a", 1, 10, 10, &seen); /* its start after all */
    assert_int_equal(seen.filled, 10);
    assert_int_equal(seen.gap, 0);
    cl_streams_see(s, "gw@a", 1, 25, 5, &seen); /* the middle: 20..24 and 30..39 left */
    assert_int_equal(seen.filled, 5);
    cl_streams_see(s, "gw@a", 1, 10, 10, &seen); /* a true repeat fills nothing */
    assert_int_equal(seen.filled, 0);
    assert_int_equal(seen.replayed, 1);
    cl_streams_see(s, "gw@a", 1, 15, 30, &seen); /* 20..24 and 30..39, plus seen ones */
    assert_int_equal(seen.filled, 15);
    cl_streams_see(s, "gw@a", 1, 20, 20, &seen); /* nothing left to fill */
    assert_int_equal(seen.filled, 0);
}

/*
 * Past CL_STREAM_HOLES gaps, the oldest is forgotten, and said so (given
 * up): a late batch there fills nothing.
 */
static void test_only_the_latest_gaps_are_remembered(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 1, &seen);
    for (int i = 0; i <= CL_STREAM_HOLES; i++) {
        cl_streams_see(s, "gw@a", 1, 2 + 2 * i, 1, &seen); /* 1, 3, 5, ... missing */
        assert_int_equal(seen.gap, 1);
        assert_int_equal(seen.forgotten, i == CL_STREAM_HOLES ? 1 : 0);
    }
    assert_int_equal(cl_streams_pending(s), CL_STREAM_HOLES);
    cl_streams_see(s, "gw@a", 1, 1, 1, &seen); /* the first gap: forgotten */
    assert_int_equal(seen.filled, 0);
    cl_streams_see(s, "gw@a", 1, 3, 1, &seen); /* the second: remembered */
    assert_int_equal(seen.filled, 1);
}

static void test_replayed_batch_does_not_move_next_seq_back(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    cl_streams_see(s, "gw@a", 1, 10, 10, &seen);
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 1);
    cl_streams_see(s, "gw@a", 1, 10, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 1);
    /* Had the replay rewound the stream, this batch would look like a replay or a gap. */
    cl_streams_see(s, "gw@a", 1, 20, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
}

static void test_partly_new_batch_is_neither_gap_nor_replay(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    cl_streams_see(s, "gw@a", 1, 5, 10, &seen); /* 5..9 again, 10..14 new */
    assert_seen(&seen, 0, 0, 0, 0);
    cl_streams_see(s, "gw@a", 1, 15, 1, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
}

static void test_new_epoch_of_same_source_is_a_new_stream(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 100, &seen);
    /* The publisher restarted: its sequence starts again at 0 under a new epoch. */
    cl_streams_see(s, "gw@a", 2, 0, 10, &seen);
    assert_seen(&seen, 1, 0, 0, 0);
    assert_int_equal(cl_streams_count(s), 2);
    /* Both streams are tracked apart. */
    cl_streams_see(s, "gw@a", 2, 10, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
    cl_streams_see(s, "gw@a", 1, 100, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
    /* Another source with the same epoch is yet another stream. */
    cl_streams_see(s, "gw@b", 1, 0, 10, &seen);
    assert_seen(&seen, 1, 0, 0, 0);
    assert_int_equal(cl_streams_count(s), 3);
}

static void test_eviction_at_max_keeps_the_most_recently_seen(void **state)
{
    cl_streams *s = *state; /* max 4 */
    struct cl_seen seen;
    char id[16];
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "src-%d", i);
        cl_streams_see(s, id, 1, 0, 10, &seen);
    }
    /* src-0 is seen again, so src-1 is now the least recently seen. */
    cl_streams_see(s, "src-0", 1, 10, 10, &seen);
    cl_streams_see(s, "src-4", 1, 0, 10, &seen);
    assert_int_equal(seen.new_stream, 1);
    assert_int_equal(cl_streams_count(s), 4);

    /* The survivors still know where they were: no new stream, no gap. */
    cl_streams_see(s, "src-0", 1, 20, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
    cl_streams_see(s, "src-2", 1, 10, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
    cl_streams_see(s, "src-3", 1, 10, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
    cl_streams_see(s, "src-4", 1, 10, 10, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
    /* src-1 was forgotten: it comes back as a new stream, evicting src-0 (now the oldest). */
    cl_streams_see(s, "src-1", 1, 10, 10, &seen);
    assert_seen(&seen, 1, 0, 0, 0);
    assert_int_equal(cl_streams_count(s), 4);
    cl_streams_see(s, "src-0", 1, 30, 10, &seen);
    assert_int_equal(seen.new_stream, 1);
}

static void test_gone_settles_holes_and_nothing_else(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    cl_streams_see(s, "gw@a", 1, 40, 10, &seen); /* 10..39 missing */
    assert_int_equal(cl_streams_pending(s), 30);
    /* The publisher has 10..19 no more; 0..9 were never missing. */
    assert_int_equal(cl_streams_gone(s, "gw@a", 1, 0, 20), 10);
    assert_int_equal(cl_streams_pending(s), 20);
    assert_int_equal(cl_streams_gone(s, "gw@a", 1, 0, 20), 0);
    assert_int_equal(cl_streams_gone(s, "gw@b", 1, 0, 100), 0);
    /* What is left arrives resent. */
    cl_streams_see(s, "gw@a", 1, 20, 20, &seen);
    assert_int_equal(seen.filled, 20);
    assert_int_equal(cl_streams_pending(s), 0);
}

/* A gap found below a restarted collector's first message joins the holes to ask for. */
static void test_added_hole_is_filled_like_a_gap(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    cl_streams_see(s, "gw@a", 1, 500, 10, &seen);
    assert_int_equal(cl_streams_add_hole(s, "gw@a", 1, 300, 500), 0);
    assert_int_equal(cl_streams_pending(s), 200);
    cl_streams_see(s, "gw@a", 1, 300, 100, &seen);
    assert_int_equal(seen.filled, 100);
    assert_int_equal(seen.gap, 0);
    /* A stream not tracked any more is tracked again from the hole's end. */
    assert_int_equal(cl_streams_add_hole(s, "gw@z", 3, 0, 5), 0);
    assert_true(cl_streams_known(s, "gw@z", 3));
    cl_streams_see(s, "gw@z", 3, 5, 1, &seen);
    assert_int_equal(seen.gap, 0);
}

struct asked {
    int asks, give_ups;
    int64_t ranges[CL_STREAM_HOLES][2];
    int n;
    int64_t given_up;
};

static void on_ask(void *arg, const char *source_id, int64_t epoch, const int64_t (*ranges)[2],
                   int n)
{
    struct asked *a = arg;
    a->asks++;
    a->n = n;
    memcpy(a->ranges, ranges, (size_t)n * sizeof ranges[0]);
}

static void on_give_up(void *arg, const char *source_id, int64_t epoch, int64_t from, int64_t to)
{
    struct asked *a = arg;
    a->give_ups++;
    a->given_up += to - from;
}

/* A hole is asked for after the delay, again on a doubling backoff, and given up at the bound. */
static void test_due_asks_with_backoff_then_gives_up(void **state)
{
    cl_streams *s = *state;
    struct cl_seen seen;
    struct asked a = {0};
    const int64_t ms = 1000000;
    cl_streams_see(s, "gw@a", 1, 0, 10, &seen);
    cl_streams_see(s, "gw@a", 1, 20, 10, &seen); /* 10..19 */

    cl_streams_due(s, 1000 * ms, 100 * ms, 10000 * ms, on_ask, on_give_up, &a);
    assert_int_equal(a.asks, 0); /* first walked: waits the delay */
    cl_streams_due(s, 1100 * ms, 100 * ms, 10000 * ms, on_ask, on_give_up, &a);
    assert_int_equal(a.asks, 1);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.ranges[0][0], 10);
    assert_int_equal(a.ranges[0][1], 20);
    cl_streams_due(s, 1200 * ms, 100 * ms, 10000 * ms, on_ask, on_give_up, &a);
    assert_int_equal(a.asks, 1); /* 250 ms not yet passed */
    cl_streams_due(s, 1350 * ms, 100 * ms, 10000 * ms, on_ask, on_give_up, &a);
    assert_int_equal(a.asks, 2);
    cl_streams_due(s, 1700 * ms, 100 * ms, 10000 * ms, on_ask, on_give_up, &a);
    assert_int_equal(a.asks, 2); /* now 500 ms */
    cl_streams_due(s, 1850 * ms, 100 * ms, 10000 * ms, on_ask, on_give_up, &a);
    assert_int_equal(a.asks, 3);
    assert_int_equal(a.give_ups, 0);

    cl_streams_due(s, 11000 * ms, 100 * ms, 10000 * ms, on_ask, on_give_up, &a);
    assert_int_equal(a.give_ups, 1);
    assert_int_equal(a.given_up, 10);
    assert_int_equal(cl_streams_pending(s), 0);
    /* Given up means forgotten: a late arrival no longer fills it. */
    cl_streams_see(s, "gw@a", 1, 10, 10, &seen);
    assert_int_equal(seen.filled, 0);
}

static void test_max_of_zero_still_tracks_one_stream(void **state)
{
    cl_streams *s = NULL;
    struct cl_seen seen;
    assert_int_equal(cl_streams_new(&s, 0), 0);
    cl_streams_see(s, "a", 1, 0, 1, &seen);
    cl_streams_see(s, "a", 1, 1, 1, &seen);
    assert_seen(&seen, 0, 0, 0, 0);
    cl_streams_see(s, "b", 1, 0, 1, &seen);
    assert_int_equal(cl_streams_count(s), 1);
    cl_streams_free(s);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_first_batch_is_a_new_stream_without_gap),
        T(test_contiguous_batches_report_nothing),
        T(test_gap_reports_its_size_and_first_missing_seq),
        T(test_replayed_batch_does_not_move_next_seq_back),
        T(test_late_batches_fill_their_gap_once),
        T(test_only_the_latest_gaps_are_remembered),
        T(test_partly_new_batch_is_neither_gap_nor_replay),
        T(test_new_epoch_of_same_source_is_a_new_stream),
        T(test_eviction_at_max_keeps_the_most_recently_seen),
        T(test_gone_settles_holes_and_nothing_else),
        T(test_added_hole_is_filled_like_a_gap),
        T(test_due_asks_with_backoff_then_gives_up),
        cmocka_unit_test(test_max_of_zero_still_tracks_one_stream),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
