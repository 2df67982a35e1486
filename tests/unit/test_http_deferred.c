/* Unit tests of am_http's deferred responses, with the server's own threads and in a caller's loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_http.h"
#include "am_ollama.h"

#include <curl/curl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the handler left behind, for the test to reply to from another thread. */
struct pending {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    am_http_deferred *d;
    bool reply_at_once; /* the handler replies itself, before it returns */
};

static void handler(void *arg, const struct am_http_request *req, struct am_http_response *resp)
{
    struct pending *p = arg;
    am_http_deferred *d = NULL;
    (void)req;
    assert_int_equal(am_http_defer(resp, &d), 0);
    if (p->reply_at_once) {
        struct am_http_response r = {0};
        am_http_reply(&r, 201, "text/plain", "at once");
        am_http_deferred_reply(d, &r);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->d = d;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static am_http_deferred *wait_deferred(struct pending *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->d)
        pthread_cond_wait(&p->cv, &p->mu);
    am_http_deferred *d = p->d;
    p->d = NULL;
    pthread_mutex_unlock(&p->mu);
    return d;
}

/* A client request on its own thread. */
struct client {
    pthread_t thread;
    int port;
    long status;
    char body[256];
    size_t len;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct client *c = arg;
    size_t n = size * nmemb;
    size_t room = sizeof c->body - 1 - c->len;
    memcpy(c->body + c->len, ptr, n < room ? n : room);
    c->len += n < room ? n : room;
    c->body[c->len] = '\0';
    return n;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    char url[64];
    CURL *h = am_curl_easy_new();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow", c->port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    else
        fprintf(stderr, "client: %s\n", curl_easy_strerror(cc));
    curl_easy_cleanup(h);
    return NULL;
}

static void client_start(struct client *c, int port)
{
    memset(c, 0, sizeof *c);
    c->port = port;
    assert_int_equal(pthread_create(&c->thread, NULL, client_main, c), 0);
}

static void client_join(struct client *c)
{
    pthread_join(c->thread, NULL);
}

static am_http_server *start(struct pending *p, bool external)
{
    am_http_server *srv = NULL;
    struct am_http_options opt = {.threads = 2, .external_loop = external};
    assert_int_equal(am_http_start(&srv, "127.0.0.1:0", &opt, handler, p), 0);
    return srv;
}

static void pending_init(struct pending *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
}

/* A server with its own threads, and a client's request to it under way. */
static am_http_server *serve(struct pending *p, bool reply_at_once, struct client *c)
{
    pending_init(p);
    p->reply_at_once = reply_at_once;
    am_http_server *srv = start(p, false);
    client_start(c, am_http_port(srv));
    return srv;
}

static void test_reply_from_another_thread_reaches_the_client(void **state)
{
    struct pending p;
    struct client c;
    (void)state;
    am_http_server *srv = serve(&p, false, &c);
    am_http_deferred *d = wait_deferred(&p);
    struct am_http_response r = {0};
    am_http_reply(&r, 200, "text/plain", "later");
    am_http_deferred_reply(d, &r);
    assert_null(r.body);
    client_join(&c);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.body, "later");
    am_http_stop(srv);
}

static void test_reply_inside_the_handler_is_sent(void **state)
{
    struct pending p;
    struct client c;
    (void)state;
    am_http_server *srv = serve(&p, true, &c);
    client_join(&c);
    assert_int_equal(c.status, 201);
    assert_string_equal(c.body, "at once");
    am_http_stop(srv);
}

static void test_stop_lets_a_waiting_client_go_and_drops_a_late_reply(void **state)
{
    struct pending p;
    struct client c;
    (void)state;
    am_http_server *srv = serve(&p, false, &c);
    am_http_deferred *d = wait_deferred(&p);
    am_http_stop(srv);
    client_join(&c);
    /* Answered 503 if a server thread got to it before the stop, else closed: never left waiting.
     */
    assert_true(c.status == 503 || c.status == 0);
    /* The producer's reference outlives the server; its reply goes nowhere. */
    struct am_http_response r = {0};
    am_http_reply(&r, 200, "text/plain", "too late");
    am_http_deferred_reply(d, &r);
    assert_null(r.body);
}

/*
 * The caller's loop: waits on am_http_fd, as the gateway's does, and on a
 * pipe that stops it. It never wakes on a timer of its own, so a reply
 * reaches the client only if it wakes the loop.
 */
struct loop {
    am_http_server *srv;
    int stop[2];
};

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    struct pollfd pfd[2] = {{.fd = am_http_fd(l->srv), .events = POLLIN},
                            {.fd = l->stop[0], .events = POLLIN}};
    for (;;) {
        am_http_run(l->srv);
        long t = am_http_timeout_ms(l->srv);
        poll(pfd, 2, t < 0 || t > 60000 ? 60000 : (int)t);
        if (pfd[1].revents)
            return NULL;
    }
}

static void test_external_loop_wakes_for_a_reply_from_another_thread(void **state)
{
    struct pending p;
    struct client c;
    struct loop l;
    pthread_t t;
    (void)state;
    pending_init(&p);
    l.srv = start(&p, true);
    assert_int_equal(pipe(l.stop), 0);
    assert_true(am_http_fd(l.srv) >= 0);
    assert_int_equal(pthread_create(&t, NULL, loop_main, &l), 0);
    client_start(&c, am_http_port(l.srv));
    am_http_deferred *d = wait_deferred(&p);
    struct am_http_response r = {0};
    am_http_reply(&r, 200, "text/plain", "from the loop");
    am_http_deferred_reply(d, &r);
    client_join(&c);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.body, "from the loop");
    assert_int_equal(write(l.stop[1], "x", 1), 1);
    pthread_join(t, NULL);
    am_http_stop(l.srv);
    close(l.stop[0]);
    close(l.stop[1]);
}

/*
 * A loop like the gateway's: what its handler deferred it answers itself,
 * on its own thread, after am_http_run. Such a resume writes no wake-up;
 * the loop runs again because am_http_pending says so. Its wait has no
 * timer of its own, so a reply left unserved would keep the client
 * waiting until its timeout.
 */
struct own_loop {
    struct loop base;
    struct pending *p;
    bool pending_after_reply, pending_after_run;
};

static void *own_loop_main(void *arg)
{
    struct own_loop *l = arg;
    struct pollfd pfd[2] = {{.fd = am_http_fd(l->base.srv), .events = POLLIN},
                            {.fd = l->base.stop[0], .events = POLLIN}};
    for (;;) {
        am_http_run(l->base.srv);
        pthread_mutex_lock(&l->p->mu);
        am_http_deferred *d = l->p->d;
        l->p->d = NULL;
        pthread_mutex_unlock(&l->p->mu);
        if (d) {
            struct am_http_response r = {0};
            am_http_reply(&r, 200, "text/plain", "from the loop's own thread");
            am_http_deferred_reply(d, &r);
            l->pending_after_reply = am_http_pending(l->base.srv);
        }
        if (am_http_pending(l->base.srv)) {
            am_http_run(l->base.srv);
            l->pending_after_run = am_http_pending(l->base.srv);
        }
        long t = am_http_timeout_ms(l->base.srv);
        poll(pfd, 2, t < 0 || t > 60000 ? 60000 : (int)t);
        if (pfd[1].revents)
            return NULL;
    }
}

static void test_external_loop_serves_a_reply_from_its_own_thread_when_pending(void **state)
{
    struct pending p;
    struct client c;
    struct own_loop l = {0};
    pthread_t t;
    (void)state;
    pending_init(&p);
    l.p = &p;
    l.base.srv = start(&p, true);
    assert_int_equal(pipe(l.base.stop), 0);
    assert_int_equal(pthread_create(&t, NULL, own_loop_main, &l), 0);
    client_start(&c, am_http_port(l.base.srv));
    client_join(&c);
    assert_int_equal(c.status, 200);
    assert_string_equal(c.body, "from the loop's own thread");
    assert_int_equal(write(l.base.stop[1], "x", 1), 1);
    pthread_join(t, NULL);
    assert_true(l.pending_after_reply);
    assert_false(l.pending_after_run);
    am_http_stop(l.base.srv);
    close(l.base.stop[0]);
    close(l.base.stop[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_from_another_thread_reaches_the_client),
        cmocka_unit_test(test_reply_inside_the_handler_is_sent),
        cmocka_unit_test(test_stop_lets_a_waiting_client_go_and_drops_a_late_reply),
        cmocka_unit_test(test_external_loop_wakes_for_a_reply_from_another_thread),
        cmocka_unit_test(test_external_loop_serves_a_reply_from_its_own_thread_when_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
