/* Wall-clock and monotonic time in the units the project uses. */
#ifndef AM_CLOCK_H
#define AM_CLOCK_H

#include <stdint.h>

/* Microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t am_clock_now_us(void);

/* Nanoseconds from an arbitrary origin (CLOCK_MONOTONIC), for intervals. */
int64_t am_clock_mono_ns(void);

#endif
