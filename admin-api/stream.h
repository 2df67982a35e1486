/* Server-Sent Events of newly stored metrics, fed by one LISTEN connection. */
#ifndef AA_STREAM_H
#define AA_STREAM_H

#include "am_buf.h"

typedef struct aa_stream aa_stream;

/* Starts the hub: one database connection that LISTENs and fans events out. */
int aa_stream_open(aa_stream **out, const char *database_url);

/* Appends the hub's figures (clients, events) in Prometheus text format. */
void aa_stream_write_prom(aa_stream *hub, struct am_buf *b);

/* Ends every stream and frees the hub; accepts NULL. */
void aa_stream_close(aa_stream *hub);

#endif
