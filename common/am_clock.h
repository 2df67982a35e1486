/* Wall-clock and monotonic time in the units the project uses. */
#ifndef AM_CLOCK_H
#define AM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t am_clock_now_us(void);

/* Nanoseconds from an arbitrary origin (CLOCK_MONOTONIC), for intervals. */
int64_t am_clock_mono_ns(void);

/* Sets *ts to ms milliseconds from now on CLOCK_MONOTONIC, for pthread_cond_timedwait. */
void am_clock_mono_deadline(struct timespec *ts, int64_t ms);

#endif
