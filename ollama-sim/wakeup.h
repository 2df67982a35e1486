/* Wake-ups for suspended connections: one timer thread resumes each when its next line is due. */
#ifndef SIM_WAKEUP_H
#define SIM_WAKEUP_H

#include <stddef.h>
#include <stdint.h>

struct MHD_Connection;
typedef struct sim_wakeup sim_wakeup;

/*
 * Starts the timer thread; at most capacity connections sleep at once (one
 * entry per connection, so the connection limit is enough). On success *out
 * owns it; stop it with sim_wakeup_stop, then free it with sim_wakeup_free.
 */
int sim_wakeup_start(sim_wakeup **out, size_t capacity);

/*
 * Suspends conn (MHD_suspend_connection) and resumes it at due_ns
 * (am_clock_mono_ns). Call it only where libmicrohttpd allows suspending: in
 * the access handler or in a content reader callback. Returns 0;
 * AM_ECLOSED once sim_wakeup_stop has begun, or AM_EFULL at capacity, and
 * then conn is left running.
 */
int sim_wakeup_at(sim_wakeup *s, struct MHD_Connection *conn, int64_t due_ns);

/*
 * Refuses further sleeps, resumes every sleeping connection at once (so the
 * daemon may then be stopped) and ends the thread. Later sim_wakeup_at
 * calls return AM_ECLOSED; accepts NULL.
 */
void sim_wakeup_stop(sim_wakeup *s);

/* Frees s once no thread can call sim_wakeup_at any more; accepts NULL. */
void sim_wakeup_free(sim_wakeup *s);

#endif
