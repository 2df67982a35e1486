/*
 * Replay requests: the collector's PUB socket on which it asks publishers
 * to resend the metrics it is missing, and the holes it learns of from the
 * writer (a restarted collector's first message of a stream).
 */
#ifndef CL_REPLAY_H
#define CL_REPLAY_H

#include "am_bus_tls.h"
#include "streams.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cl_replay cl_replay;

struct cl_replay_config {
    const char *listen_url;       /* METRICS_REPLAY_LISTEN; NULL or empty: no requests are made */
    const struct am_bus_tls *tls; /* for a tls+tcp:// listen URL, as for the bus */
    int give_up_s; /* COLLECTOR_REPLAY_GIVE_UP_S: a hole unanswered this long is lost */
};

/*
 * Listens on cfg->listen_url. On success *out is freed with
 * cl_replay_close. Returns AM_EINVAL or AM_ENET with a one-line reason in
 * err when it cannot listen.
 */
int cl_replay_open(cl_replay **out, const struct cl_replay_config *cfg, char *err, size_t errlen);

/* Closes the socket and frees r. Accepts NULL. */
void cl_replay_close(cl_replay *r);

/*
 * Reports [from, to) of a stream as missing from the table (the writer's
 * look-up below a restarted collector's first message): counts and logs
 * it at once; the receiver asks for it from its next tick. Thread-safe; r
 * NULL only counts.
 */
void cl_replay_report_gap(cl_replay *r, const char *source_id, int64_t epoch, int64_t from,
                          int64_t to);

/*
 * The receiver's turn, called often (at least every 100 ms): takes in the
 * reported gaps, asks for holes that are due, gives up those unanswered
 * for give_up_s. s is the receiver's.
 */
void cl_replay_tick(cl_replay *r, cl_streams *s);

/*
 * Counts n metrics of a stream as lost for good, with a log line saying
 * why; from < 0 when they are the stream's oldest holes, forgotten to make
 * room.
 */
void cl_replay_count_given_up(const char *source_id, int64_t epoch, int64_t from, int64_t n,
                              const char *why);

#endif
