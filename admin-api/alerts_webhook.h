/* Delivery of one alert notification: a JSON POST to a webhook over libcurl. */
#ifndef AA_ALERTS_WEBHOOK_H
#define AA_ALERTS_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

/*
 * POSTs body (JSON text) to url once on curl (a handle of am_curl_easy_new),
 * within timeout_ms for the whole exchange. AM_OK on a 2xx answer.
 * Otherwise AM_ENET, *status the HTTP status (0 when no answer came) and a
 * one-line reason in err (errlen bytes). The answer's body is read and
 * discarded.
 */
int aa_webhook_post(void *curl, const char *url, const char *body, int timeout_ms, long *status,
                    char *err, size_t errlen);

/* True when a failure with this status (0: no answer) may pass if tried again. */
bool aa_webhook_retryable(long status);

#endif
