/*
 * Every JSON body the services accept from outside, chosen by the first
 * byte: the gateway's chat completion, the orchestrator's query, the
 * admin-api's metric record, array and NDJSON batches, and a backend
 * registry entry. A body is either refused with a reason or accepted; what
 * the gateway builds from an accepted one must itself be valid JSON.
 */
#include "am_error.h"
#include "metrics_record.h"
#include "models.h"
#include "openai.h"
#include "pipeline.h"
#include "registry.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static gw_models *models;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    if (gw_models_load(&models, NULL, "gpt-4=llama3.1:8b", err, sizeof err) != AM_OK)
        abort();
    return 0;
}

static void gateway(const char *body, size_t len)
{
    struct gw_request r;
    char err[512], param[512];
    if (gw_parse_request(body, len, models, &r, err, param, sizeof err) != AM_OK) {
        if (!err[0] || r.ollama_body)
            abort();
        return;
    }
    json_error_t jerr;
    json_t *o = json_loads(r.ollama_body, 0, &jerr);
    if (!json_is_object(o) || !json_is_array(json_object_get(o, "messages")) ||
        !json_is_boolean(json_object_get(o, "stream")))
        abort();
    json_decref(o);
    gw_request_free(&r);
}

static void metrics(const char *body, size_t len, enum aa_metrics_body kind)
{
    struct aa_metrics_rows rows;
    char err[512] = "";
    const char *params[AA_METRICS_NCOLS];
    aa_metrics_rows_init(&rows);
    int rc = aa_metrics_parse(body, len, kind, 100, &rows, err, sizeof err);
    if (rc == AM_EINVAL && !err[0])
        abort();
    if (rc == AM_OK && aa_metrics_rows_params(&rows, params) == AM_OK) {
        for (int i = 0; i < AA_METRICS_NCOLS; i++)
            if (!params[i] || params[i][0] != '{')
                abort(); /* every column is an array literal */
    }
    aa_metrics_rows_free(&rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* The services hand their parsers NUL-terminated bodies. */
    char *body = malloc(size);
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    body[size - 1] = '\0';
    size_t len = size - 1;
    char err[512] = "";

    switch (data[0] % 6) {
    case 0:
        gateway(body, len);
        break;
    case 1: {
        struct orch_query q;
        if (orch_query_parse(body, len, &q, err, sizeof err) == AM_OK) {
            if (!q.query || !q.query[0])
                abort();
            orch_query_free(&q);
        } else if (!err[0]) {
            abort();
        }
        break;
    }
    case 2:
        metrics(body, len, AA_METRICS_OBJECT);
        break;
    case 3:
        metrics(body, len, AA_METRICS_ARRAY);
        break;
    case 4:
        metrics(body, len, AA_METRICS_NDJSON);
        break;
    case 5: {
        struct orch_backend b;
        if (orch_registry_parse(body, len, &b, err, sizeof err) != AM_OK && !err[0])
            abort();
        break;
    }
    }
    free(body);
    return 0;
}
