/* Delivery of one alert notification: a JSON POST to a webhook over libcurl. */
#include "alerts_webhook.h"
#include "am_error.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

/* The receiver's answer does not matter beyond its status. */
static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

int aa_webhook_post(void *curl, const char *url, const char *body, int timeout_ms, long *status,
                    char *err, size_t errlen)
{
    CURL *h = curl;
    char curl_err[CURL_ERROR_SIZE] = "";
    /* libcurl only reads the list; "Expect:" sends the body without waiting for 100 Continue. */
    struct curl_slist headers[3] = {
        {.data = "Content-Type: application/json", .next = &headers[1]},
        {.data = "Expect:", .next = &headers[2]},
        {.data = "User-Agent: athena-admin-api", .next = NULL},
    };

    *status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_err[0] ? curl_err : curl_easy_strerror(rc));
        return AM_ENET;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (*status < 200 || *status > 299) {
        snprintf(err, errlen, "HTTP %ld", *status);
        return AM_ENET;
    }
    return AM_OK;
}

bool aa_webhook_retryable(long status)
{
    return status == 0 || status == 408 || status == 429 || status >= 500;
}
