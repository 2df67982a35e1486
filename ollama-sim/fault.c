/* The faults the simulator injects on request, and their names. */
#include "fault.h"
#include "am_error.h"

#include <string.h>

static const char *const names[SIM_FAULT_COUNT] = {"none", "http_500", "error_line", "disconnect",
                                                   "slow"};

int sim_fault_parse(const char *name, enum sim_fault *out)
{
    for (int i = 0; i < SIM_FAULT_COUNT; i++) {
        if (!strcmp(name, names[i])) {
            *out = (enum sim_fault)i;
            return AM_OK;
        }
    }
    return AM_EINVAL;
}

const char *sim_fault_name(enum sim_fault f)
{
    return f >= 0 && f < SIM_FAULT_COUNT ? names[f] : "unknown";
}

size_t sim_fault_parse_list(const char *list, enum sim_fault *out, size_t max)
{
    size_t count = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        char name[32];
        /* Trim the spaces around the name. */
        const char *s = p, *e = p + len;
        while (s < e && *s == ' ')
            s++;
        while (e > s && e[-1] == ' ')
            e--;
        if (e > s) {
            enum sim_fault f;
            if ((size_t)(e - s) >= sizeof name || count == max)
                return 0;
            memcpy(name, s, (size_t)(e - s));
            name[e - s] = '\0';
            if (sim_fault_parse(name, &f) || f == SIM_FAULT_NONE)
                return 0;
            out[count++] = f;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return count;
}
