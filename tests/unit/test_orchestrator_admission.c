/* Unit tests of the orchestrator's admission: workers, a bounded FIFO queue, timeouts, close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "admission.h"
#include "am_error.h"

#include <pthread.h>
#include <time.h>

/* Polls until waiting queries reach want (another thread's state; 10 s at most). */
static void wait_waiting(orch_admission *a, int want)
{
    for (int i = 0; i < 10000; i++) {
        int running, waiting;
        orch_admission_load(a, &running, &waiting);
        if (waiting == want)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("waiting never reached %d", want);
}

struct waiter {
    orch_admission *a;
    int id;
    int rc;
    long timeout_ms;
};

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static int order[8];
static int norder;

static void *enter_then_leave(void *arg)
{
    struct waiter *w = arg;
    w->rc = orch_admission_enter(w->a, w->timeout_ms);
    if (w->rc == AM_OK) {
        pthread_mutex_lock(&order_mu);
        order[norder++] = w->id;
        pthread_mutex_unlock(&order_mu);
        orch_admission_leave(w->a);
    }
    return NULL;
}

static void test_workers_then_queue_then_full(void **state)
{
    orch_admission *a;
    int running, waiting;
    assert_int_equal(orch_admission_new(&a, 2, 1), AM_OK);
    assert_int_equal(orch_admission_enter(a, 1000), AM_OK);
    assert_int_equal(orch_admission_enter(a, 1000), AM_OK);

    struct waiter w = {.a = a, .id = 1, .timeout_ms = 60000};
    pthread_t t;
    norder = 0;
    pthread_create(&t, NULL, enter_then_leave, &w);
    wait_waiting(a, 1);
    /* Two running, one waiting: the queue is full, a newcomer is refused at once. */
    assert_int_equal(orch_admission_enter(a, 60000), AM_EFULL);
    orch_admission_load(a, &running, &waiting);
    assert_int_equal(running, 2);
    assert_int_equal(waiting, 1);

    orch_admission_leave(a); /* goes to the waiter */
    pthread_join(t, NULL);
    assert_int_equal(w.rc, AM_OK);
    orch_admission_leave(a);
    orch_admission_load(a, &running, &waiting);
    assert_int_equal(running, 0);
    assert_int_equal(waiting, 0);
    orch_admission_free(a);
}

static void test_waiters_start_in_arrival_order(void **state)
{
    orch_admission *a;
    struct waiter w[4];
    pthread_t t[4];
    assert_int_equal(orch_admission_new(&a, 1, 4), AM_OK);
    assert_int_equal(orch_admission_enter(a, 0), AM_OK);
    norder = 0;
    for (int i = 0; i < 4; i++) {
        w[i] = (struct waiter){.a = a, .id = i, .timeout_ms = 60000};
        pthread_create(&t[i], NULL, enter_then_leave, &w[i]);
        wait_waiting(a, i + 1);
    }
    orch_admission_leave(a);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(norder, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(order[i], i);
    orch_admission_free(a);
}

static void test_wait_times_out_and_no_wait_means_refuse(void **state)
{
    orch_admission *a;
    int running, waiting;
    assert_int_equal(orch_admission_new(&a, 1, 8), AM_OK);
    assert_int_equal(orch_admission_enter(a, 0), AM_OK);
    assert_int_equal(orch_admission_enter(a, 50), AM_ETIMEDOUT);
    assert_int_equal(orch_admission_enter(a, 0), AM_EFULL);
    orch_admission_load(a, &running, &waiting);
    assert_int_equal(running, 1);
    assert_int_equal(waiting, 0);
    orch_admission_leave(a);
    assert_int_equal(orch_admission_enter(a, 0), AM_OK);
    orch_admission_leave(a);
    orch_admission_free(a);
}

static void test_close_wakes_waiters(void **state)
{
    orch_admission *a;
    assert_int_equal(orch_admission_new(&a, 1, 2), AM_OK);
    assert_int_equal(orch_admission_enter(a, 0), AM_OK);
    struct waiter w = {.a = a, .id = 1, .timeout_ms = 60000};
    pthread_t t;
    pthread_create(&t, NULL, enter_then_leave, &w);
    wait_waiting(a, 1);
    orch_admission_close(a);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, AM_ECLOSED);
    assert_int_equal(orch_admission_enter(a, 1000), AM_ECLOSED);
    orch_admission_leave(a);
    orch_admission_free(a);
    assert_int_equal(orch_admission_new(&a, 0, 1), AM_EINVAL);
    orch_admission_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workers_then_queue_then_full),
        cmocka_unit_test(test_waiters_start_in_arrival_order),
        cmocka_unit_test(test_wait_times_out_and_no_wait_means_refuse),
        cmocka_unit_test(test_close_wakes_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
