/* The HTTP side of the simulator: Ollama's routes over libmicrohttpd, streaming paced by wakeup. */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include "fault.h"
#include "gen.h"
#include "models.h"

#include <stddef.h>

struct sim_server_config {
    const char *listen_addr;  /* "host:port", IPv4; port 0 picks one */
    const sim_models *models; /* borrowed; must outlive the server */
    struct sim_plan defaults; /* timing and seed for requests without X-Sim-* headers */
    double fail_rate;         /* share of generation requests given a random fault, 0..1 */
    enum sim_fault fail_modes[SIM_FAULT_COUNT]; /* the faults fail_rate picks from */
    size_t nfail_modes;
    unsigned threads;   /* libmicrohttpd worker threads */
    unsigned max_conns; /* connections at once; more are refused at accept */
    unsigned timeout_s; /* idle connections are closed after it */
    size_t max_body;    /* request bodies past it get 413 */
};

typedef struct sim_server sim_server;
struct sockaddr_in;

/* Parses "host:port" (an IPv4 address, localhost, * or nothing for any); 0 or AM_EINVAL. */
int sim_server_parse_addr(const char *addr, struct sockaddr_in *out);

/*
 * Starts serving. On success *out owns the server; stop it with
 * sim_server_stop. AM_EINVAL for a bad address, AM_EIO when it cannot listen
 * (libmicrohttpd says why on stderr).
 */
int sim_server_start(sim_server **out, const struct sim_server_config *cfg);

/* The port the server listens on. */
int sim_server_port(const sim_server *s);

/*
 * Stops accepting, cuts the answers in progress (their connections are
 * closed), stops the threads and frees s; accepts NULL.
 */
void sim_server_stop(sim_server *s);

#endif
