/* A bounded stack of idle reusable objects, shared by threads. */
#include "am_idle_pool.h"
#include "am_error.h"

#include <pthread.h>
#include <stdlib.h>

struct am_idle_pool {
    pthread_mutex_t mu;
    void **idle;
    int n, max;
    am_idle_new_fn make_fn;
    am_idle_free_fn free_fn;
};

int am_idle_pool_new(am_idle_pool **out, int max, am_idle_new_fn make_fn, am_idle_free_fn free_fn)
{
    am_idle_pool *p = calloc(1, sizeof *p);
    if (!p)
        return AM_ENOMEM;
    p->max = max > 0 ? max : 1;
    p->idle = calloc((size_t)p->max, sizeof *p->idle);
    if (!p->idle) {
        free(p);
        return AM_ENOMEM;
    }
    p->make_fn = make_fn;
    p->free_fn = free_fn;
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return AM_OK;
}

void *am_idle_pool_get(am_idle_pool *p)
{
    void *obj = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        obj = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    if (!obj && p->make_fn(&obj) != AM_OK)
        return NULL;
    return obj;
}

void am_idle_pool_put(am_idle_pool *p, void *obj)
{
    if (!obj)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->n < p->max) {
        p->idle[p->n++] = obj;
        obj = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    p->free_fn(obj);
}

void am_idle_pool_free(am_idle_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        p->free_fn(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p);
}
