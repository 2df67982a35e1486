/* The faults the simulator injects on request, and their names. */
#ifndef SIM_FAULT_H
#define SIM_FAULT_H

#include <stddef.h>
#include <stdint.h>

enum sim_fault {
    SIM_FAULT_NONE = 0,
    SIM_FAULT_HTTP_500,   /* answer HTTP 500 {"error": ...} at once */
    SIM_FAULT_ERROR_LINE, /* a 200 stream that carries {"error": ...} after some tokens */
    SIM_FAULT_DISCONNECT, /* close the connection after some tokens, without an end */
    SIM_FAULT_SLOW,       /* stall for the stall time after some tokens, then go on */
    SIM_FAULT_COUNT,
};

/* Parses "none", "http_500", "error_line", "disconnect" or "slow"; returns 0 or AM_EINVAL. */
int sim_fault_parse(const char *name, enum sim_fault *out);

/* The name of f, as sim_fault_parse takes it; never NULL. */
const char *sim_fault_name(enum sim_fault f);

/*
 * Parses a comma-separated list of fault names other than "none" into at most
 * max entries of out; returns the count, or 0 when the list is empty or holds
 * a bad name.
 */
size_t sim_fault_parse_list(const char *list, enum sim_fault *out, size_t max);

#endif
