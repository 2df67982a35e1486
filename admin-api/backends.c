/* The backend registry the LLM router reads. */
#include "api.h"

const struct aa_route aa_backend_routes[] = {
    {0},
};
