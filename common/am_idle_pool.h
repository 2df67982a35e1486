/* A bounded stack of idle reusable objects (keep-alive HTTP clients), shared by threads. */
#ifndef AM_IDLE_POOL_H
#define AM_IDLE_POOL_H

typedef struct am_idle_pool am_idle_pool;

/* Makes a new object into *out (0 on success); frees one (accepts NULL). */
typedef int (*am_idle_new_fn)(void **out);
typedef void (*am_idle_free_fn)(void *obj);

/* A pool keeping at most max idle objects made by make_fn and freed by free_fn. */
int am_idle_pool_new(am_idle_pool **out, int max, am_idle_new_fn make_fn, am_idle_free_fn free_fn);

/* An idle object, or a new one; NULL when none can be made. Give it back with am_idle_pool_put. */
void *am_idle_pool_get(am_idle_pool *p);

/* Keeps obj for the next get, or frees it when the pool is full. Accepts NULL. */
void am_idle_pool_put(am_idle_pool *p, void *obj);

/* Frees every idle object and the pool; accepts NULL. */
void am_idle_pool_free(am_idle_pool *p);

#endif
