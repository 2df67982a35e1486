/*
 * The admin-api's query parameters: the input is a decoded query string
 * ("name=value&..."), as libmicrohttpd hands it over, read through the same
 * functions the endpoints use: the metric filters, limits, times, text,
 * enums and booleans. A parameter is either refused with a reason naming it
 * or accepted within its rules: a time reads back as what it says, a
 * filter's since comes before its until, a limit stays within its bounds.
 */
#include "am_error.h"
#include "am_http.h"
#include "metrics_filter.h"
#include "metrics_record.h"
#include "params.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARAMS 16

static struct {
    char *name[MAX_PARAMS], *value[MAX_PARAMS];
    int n;
} query;

/* The request's parameters come from the input instead of libmicrohttpd. */
const char *am_http_query(const struct am_http_request *req, const char *key)
{
    (void)req;
    for (int i = 0; i < query.n; i++)
        if (!strcmp(query.name[i], key))
            return query.value[i];
    return NULL;
}

static void check_time(const char *text)
{
    char out[64];
    int64_t us;
    if (aa_parse_time(text, out, sizeof out) == AM_OK) {
        /* What was accepted reads back as a time. */
        if (aa_metrics_time_us(out, &us) != AM_OK)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    query.n = 0;
    for (char *save = NULL, *pair = strtok_r(text, "&", &save); pair && query.n < MAX_PARAMS;
         pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        query.name[query.n] = pair;
        query.value[query.n] = eq ? eq + 1 : pair + strlen(pair);
        if (eq)
            *eq = '\0';
        query.n++;
    }
    struct am_http_request req = {.method = "GET", .path = "/", .body = "", .request_id = "fuzz"};
    char err[AA_ERR_MAX] = "";

    for (int def = 0; def < 2; def++) {
        struct aa_metrics_filter f;
        err[0] = '\0';
        if (aa_metrics_filter_parse(&req, def, &f, err) == AM_OK) {
            if (f.since[0] && f.until[0] && f.since_us >= f.until_us)
                abort();
            const char *params[16];
            aa_metrics_filter_params(&f, params);
        } else if (!err[0]) {
            abort();
        }
    }
    long long v;
    if (aa_param_limit(&req, "limit", 100, 1000, &v, err) == AM_OK && (v < 1 || v > 1000))
        abort();
    if (aa_param_int(&req, "hours", 24, 1, 8760, &v, err) == AM_OK && (v < 1 || v > 8760))
        abort();
    const char *s;
    if (aa_param_text(&req, "model", 255, &s, err) == AM_OK && s && strlen(s) > 255)
        abort();
    static const char *const kinds[] = {"minute", "hour", "day", NULL};
    if (aa_param_enum(&req, "interval", kinds, "hour", &s, err) == AM_OK && strcmp(s, "minute") &&
        strcmp(s, "hour") && strcmp(s, "day"))
        abort();
    bool b;
    aa_param_bool(&req, "exact", false, &b, err);
    char out[64];
    bool present;
    aa_param_time(&req, "since", out, sizeof out, &present, err);
    for (int i = 0; i < query.n; i++)
        check_time(query.value[i]);
    free(text);
    return 0;
}
