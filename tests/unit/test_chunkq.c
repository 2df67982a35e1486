/* Unit tests of the bounded chunk queue between the receiver and the writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_clock.h"
#include "am_error.h"
#include "chunkq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ROW_LEN 10                                  /* bytes of rows in every test chunk */
#define COST    (ROW_LEN + sizeof(struct cl_chunk)) /* what one chunk counts against the bound */

/* A thread blocked in cl_chunkq_take, and what the take returned. */
struct taker {
    struct cl_chunkq *q;
    int timeout_ms;
    pthread_t thread;
    bool started;
    _Atomic pid_t tid;
    _Atomic bool done;
    size_t n;
    struct cl_chunk *out;
};

/* The queue and any taker thread, cleaned up by teardown even when a test fails. */
struct fixture {
    struct cl_chunkq q;
    struct taker t;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    cl_chunkq_init(&f->q, 3 * COST);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->t.started) {
        cl_chunkq_close(&f->q);
        pthread_join(f->t.thread, NULL);
    }
    while (f->t.out) {
        struct cl_chunk *next = f->t.out->next;
        cl_chunkq_release(&f->q, f->t.out);
        f->t.out = next;
    }
    cl_chunkq_destroy(&f->q);
    free(f);
    return 0;
}

/* A chunk whose rows are tag padded to ROW_LEN bytes, so that tests can tell chunks apart. */
static struct cl_chunk *make_chunk(char tag, uint32_t nrows)
{
    struct cl_chunk *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->rows = malloc(ROW_LEN);
    assert_non_null(c->rows);
    memset(c->rows, tag, ROW_LEN);
    c->len = ROW_LEN;
    c->nrows = nrows;
    return c;
}

static void push(struct cl_chunkq *q, char tag, uint32_t nrows)
{
    struct cl_chunk *c = make_chunk(tag, nrows);
    int rc = cl_chunkq_push(q, c);
    if (rc != 0) {
        cl_chunk_free(c);
        fail_msg("push of chunk '%c' failed: %d", tag, rc);
    }
}

/* Checks the taken list holds chunks with exactly the tags of want, in order, then releases it. */
static void assert_taken(struct cl_chunkq *q, struct cl_chunk *list, const char *want)
{
    size_t i = 0;
    while (list) {
        struct cl_chunk *next = list->next;
        if (!want[i])
            fail_msg("more chunks taken than '%s'", want);
        assert_int_equal(list->rows[0], want[i]);
        cl_chunkq_release(q, list);
        list = next;
        i++;
    }
    assert_int_equal(i, strlen(want));
}

static void test_push_past_max_bytes_fails_and_leaves_chunk_with_caller(void **state)
{
    struct fixture *f = *state; /* room for three chunks */
    push(&f->q, 'a', 1);
    push(&f->q, 'b', 1);
    push(&f->q, 'c', 1);
    assert_int_equal(f->q.bytes, 3 * COST);

    struct cl_chunk *d = make_chunk('d', 1);
    assert_int_equal(cl_chunkq_push(&f->q, d), AM_EFULL);
    assert_int_equal(f->q.rows, 3);
    assert_int_equal(f->q.bytes, 3 * COST);
    assert_ptr_not_equal(f->q.tail, d);
    /* Still the caller's: freeing it here must not leave the queue pointing at it. */
    cl_chunk_free(d);

    struct cl_chunk *list = NULL;
    assert_int_equal(cl_chunkq_take(&f->q, 100, 0, &list), 3);
    assert_taken(&f->q, list, "abc");
}

static void test_take_is_fifo_and_respects_max_rows(void **state)
{
    struct fixture *f = *state;
    struct cl_chunk *list = NULL;
    cl_chunkq_destroy(&f->q);
    cl_chunkq_init(&f->q, 10 * COST);
    push(&f->q, 'a', 3);
    push(&f->q, 'b', 3);
    push(&f->q, 'c', 3);
    push(&f->q, 'd', 10);
    push(&f->q, 'e', 1);

    assert_int_equal(cl_chunkq_take(&f->q, 7, 0, &list), 2); /* 3 + 3; a third would make 9 */
    assert_taken(&f->q, list, "ab");
    assert_int_equal(cl_chunkq_take(&f->q, 3, 0, &list), 1); /* exactly max_rows */
    assert_taken(&f->q, list, "c");
    /* One chunk over max_rows is still taken: the writer must always make progress. */
    assert_int_equal(cl_chunkq_take(&f->q, 1, 0, &list), 1);
    assert_taken(&f->q, list, "d");
    assert_int_equal(cl_chunkq_take(&f->q, 100, 0, &list), 1);
    assert_taken(&f->q, list, "e");
    assert_null(f->q.head);
    assert_null(f->q.tail);
    assert_int_equal(f->q.rows, 0);
    assert_int_equal(f->q.bytes, 0);
}

static void test_taken_bytes_stay_counted_until_release(void **state)
{
    struct fixture *f = *state; /* room for three chunks */
    struct cl_chunk *list = NULL;
    push(&f->q, 'a', 2);
    push(&f->q, 'b', 2);
    push(&f->q, 'c', 2);
    assert_int_equal(cl_chunkq_take(&f->q, 100, 0, &list), 3);
    assert_null(f->q.head);
    assert_int_equal(f->q.bytes, 3 * COST);
    assert_int_equal(f->q.rows, 6);

    struct cl_chunk *d = make_chunk('d', 1);
    assert_int_equal(cl_chunkq_push(&f->q, d), AM_EFULL);

    struct cl_chunk *rest = list->next;
    cl_chunkq_release(&f->q, list);
    assert_int_equal(f->q.bytes, 2 * COST);
    assert_int_equal(f->q.rows, 4);
    assert_int_equal(cl_chunkq_push(&f->q, d), 0);
    assert_taken(&f->q, rest, "bc");
    assert_int_equal(f->q.bytes, COST);
    cl_chunkq_release(&f->q, NULL);
    assert_int_equal(f->q.bytes, COST);
}

static void test_take_on_empty_queue_returns_zero_after_timeout(void **state)
{
    struct fixture *f = *state;
    struct cl_chunk sentinel;
    struct cl_chunk *list = &sentinel; /* take must overwrite it */
    int64_t t0 = am_clock_mono_ns();
    assert_int_equal(cl_chunkq_take(&f->q, 100, 50, &list), 0);
    int64_t took_ms = (am_clock_mono_ns() - t0) / 1000000;
    assert_null(list);
    assert_true(took_ms >= 50);
    assert_true(took_ms < 5000);
}

static void *take_main(void *arg)
{
    struct taker *t = arg;
    atomic_store(&t->tid, (pid_t)syscall(SYS_gettid));
    t->n = cl_chunkq_take(t->q, 100, t->timeout_ms, &t->out);
    atomic_store(&t->done, true);
    return NULL;
}

/* The pause between two looks at a condition that another thread will change. */
static void poll_pause(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
    nanosleep(&ts, NULL);
}

/* The scheduler state of thread tid ('R', 'S', ...), from /proc. */
static char thread_state(pid_t tid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return '?';
    char *got = fgets(line, sizeof line, fp);
    fclose(fp);
    char *paren = got ? strrchr(line, ')') : NULL;
    return paren && paren[1] == ' ' ? paren[2] : '?';
}

/*
 * Starts a thread in cl_chunkq_take and returns once it sleeps there: it has
 * announced itself and the kernel reports it asleep. Its timeout is far above
 * what a wake-up takes, yet short enough that a teardown joining a taker that
 * was never woken ends well inside the ctest timeout.
 */
static void start_waiting_taker(struct fixture *f)
{
    f->t.q = &f->q;
    f->t.timeout_ms = 20000;
    assert_int_equal(pthread_create(&f->t.thread, NULL, take_main, &f->t), 0);
    f->t.started = true;
    int64_t deadline = am_clock_mono_ns() + 10 * 1000000000LL;
    for (;;) {
        pid_t tid = atomic_load(&f->t.tid);
        if (tid != 0 && thread_state(tid) == 'S')
            return;
        if (am_clock_mono_ns() > deadline)
            fail_msg("the taker thread never blocked");
        poll_pause();
    }
}

/* Waits for the taker to return; fails if it is still blocked after a few seconds. */
static void wait_taker(struct fixture *f)
{
    int64_t deadline = am_clock_mono_ns() + 5 * 1000000000LL;
    while (!atomic_load(&f->t.done)) {
        if (am_clock_mono_ns() > deadline)
            fail_msg("cl_chunkq_take did not return");
        poll_pause();
    }
    pthread_join(f->t.thread, NULL);
    f->t.started = false;
}

static void test_close_wakes_a_waiting_take(void **state)
{
    struct fixture *f = *state;
    start_waiting_taker(f);
    cl_chunkq_close(&f->q);
    wait_taker(f);
    assert_int_equal(f->t.n, 0);
    assert_null(f->t.out);

    /* Closed for good: a later take does not wait at all. */
    struct cl_chunk *list = NULL;
    int64_t t0 = am_clock_mono_ns();
    assert_int_equal(cl_chunkq_take(&f->q, 100, 60000, &list), 0);
    assert_true(am_clock_mono_ns() - t0 < 5 * 1000000000LL);
}

static void test_push_wakes_a_waiting_take(void **state)
{
    struct fixture *f = *state;
    start_waiting_taker(f);
    push(&f->q, 'a', 4);
    wait_taker(f);
    assert_int_equal(f->t.n, 1);
    struct cl_chunk *list = f->t.out;
    f->t.out = NULL;
    assert_taken(&f->q, list, "a");
}

static void test_closed_queue_still_hands_out_what_it_holds(void **state)
{
    struct fixture *f = *state;
    struct cl_chunk *list = NULL;
    push(&f->q, 'a', 1);
    push(&f->q, 'b', 1);
    cl_chunkq_close(&f->q);
    assert_int_equal(cl_chunkq_take(&f->q, 100, 0, &list), 2);
    assert_taken(&f->q, list, "ab");
    assert_int_equal(cl_chunkq_take(&f->q, 100, 0, &list), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_push_past_max_bytes_fails_and_leaves_chunk_with_caller),
        T(test_take_is_fifo_and_respects_max_rows),
        T(test_taken_bytes_stay_counted_until_release),
        T(test_take_on_empty_queue_returns_zero_after_timeout),
        T(test_close_wakes_a_waiting_take),
        T(test_push_wakes_a_waiting_take),
        T(test_closed_queue_still_hands_out_what_it_holds),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
