/* TLS for the metric bus's listeners and diallers, from PEM files. */
#include "am_bus_tls.h"
#include "am_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PEM (1 << 20)

static bool set(const char *s)
{
    return s && *s;
}

bool am_bus_url_tls(const char *url)
{
    return url && !strncmp(url, "tls+tcp", 7);
}

/* The whole of a PEM file, NUL-terminated; NULL (err set) when it cannot be read. */
static char *read_pem(const char *var, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open %s", var, path);
        return NULL;
    }
    char *buf = malloc(MAX_PEM + 1);
    size_t n = buf ? fread(buf, 1, MAX_PEM + 1, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n > MAX_PEM) {
        snprintf(err, errlen, "%s: %s is empty, unreadable or over 1 MiB", var, path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The host of scheme://host:port, or of scheme://[v6]:port. */
static void url_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n;
    if (*p == '[') {
        p++;
        n = strcspn(p, "]");
    } else {
        n = strcspn(p, ":/");
    }
    snprintf(out, cap, "%.*s", (int)n, p);
}

int am_bus_tls_config(const struct am_bus_tls *tls, bool server, const char *url,
                      nng_tls_config **out, char *err, size_t errlen)
{
    nng_tls_config *cfg = NULL;
    char *cert = NULL, *key = NULL;
    int rv, rc = AM_EINVAL;

    *out = NULL;
    if (server && (!set(tls->cert) || !set(tls->key))) {
        snprintf(err, errlen,
                 "METRICS_BUS_TLS_CERT and METRICS_BUS_TLS_KEY are needed to listen on %s", url);
        return AM_EINVAL;
    }
    if (!server && !set(tls->ca)) {
        snprintf(err, errlen, "METRICS_BUS_TLS_CA is needed to check the collector at %s", url);
        return AM_EINVAL;
    }
    if (set(tls->cert) != set(tls->key)) {
        snprintf(err, errlen, "METRICS_BUS_TLS_CERT and METRICS_BUS_TLS_KEY go together");
        return AM_EINVAL;
    }
    if ((rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT))) {
        snprintf(err, errlen, "TLS for %s: %s", url, nng_strerror(rv));
        return AM_ENET;
    }
    if (set(tls->ca)) {
        if ((rv = nng_tls_config_ca_file(cfg, tls->ca))) {
            snprintf(err, errlen, "METRICS_BUS_TLS_CA: %s: %s", tls->ca, nng_strerror(rv));
            goto out;
        }
    }
    if (set(tls->cert)) {
        if (!(cert = read_pem("METRICS_BUS_TLS_CERT", tls->cert, err, errlen)) ||
            !(key = read_pem("METRICS_BUS_TLS_KEY", tls->key, err, errlen)))
            goto out;
        if ((rv = nng_tls_config_own_cert(cfg, cert, key, NULL))) {
            snprintf(err, errlen, "METRICS_BUS_TLS_CERT/KEY: %s and %s: %s", tls->cert, tls->key,
                     nng_strerror(rv));
            goto out;
        }
    }
    /* A server with a CA asks every client for a certificate it signed; a client always checks. */
    rv = nng_tls_config_auth_mode(cfg, server && !set(tls->ca) ? NNG_TLS_AUTH_MODE_NONE
                                                               : NNG_TLS_AUTH_MODE_REQUIRED);
    if (!rv && !server) {
        char host[256];
        url_host(url, host, sizeof host);
        rv = nng_tls_config_server_name(cfg, host);
    }
    if (rv) {
        snprintf(err, errlen, "TLS for %s: %s", url, nng_strerror(rv));
        goto out;
    }
    *out = cfg;
    cfg = NULL;
    rc = AM_OK;
out:
    if (cfg)
        nng_tls_config_free(cfg);
    free(cert);
    free(key);
    return rc;
}

int am_bus_listen(nng_socket sock, const char *url, const struct am_bus_tls *tls, char *err,
                  size_t errlen)
{
    nng_listener l;
    nng_tls_config *cfg = NULL;
    int rv, rc;

    if ((rv = nng_listener_create(&l, sock, url))) {
        snprintf(err, errlen, "cannot listen on %s: %s", url, nng_strerror(rv));
        return AM_EINVAL;
    }
    if (am_bus_url_tls(url)) {
        if ((rc = am_bus_tls_config(tls, true, url, &cfg, err, errlen))) {
            nng_listener_close(l);
            return rc;
        }
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg); /* the listener holds its own reference */
        if (rv) {
            snprintf(err, errlen, "TLS for %s: %s", url, nng_strerror(rv));
            nng_listener_close(l);
            return AM_ENET;
        }
    }
    if ((rv = nng_listener_start(l, 0))) {
        snprintf(err, errlen, "cannot listen on %s: %s", url, nng_strerror(rv));
        nng_listener_close(l);
        return AM_ENET;
    }
    return AM_OK;
}

int am_bus_dial(nng_socket sock, const char *url, const struct am_bus_tls *tls, char *err,
                size_t errlen)
{
    nng_dialer d;
    nng_tls_config *cfg = NULL;
    int rv, rc;

    if ((rv = nng_dialer_create(&d, sock, url))) {
        snprintf(err, errlen, "cannot dial %s: %s", url, nng_strerror(rv));
        return AM_EINVAL;
    }
    if (am_bus_url_tls(url)) {
        if ((rc = am_bus_tls_config(tls, false, url, &cfg, err, errlen))) {
            nng_dialer_close(d);
            return rc;
        }
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg);
        if (rv) {
            snprintf(err, errlen, "TLS for %s: %s", url, nng_strerror(rv));
            nng_dialer_close(d);
            return AM_ENET;
        }
    }
    /* Non-blocking: a collector that is not up yet is dialled again in the background. */
    if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK))) {
        snprintf(err, errlen, "cannot dial %s: %s", url, nng_strerror(rv));
        nng_dialer_close(d);
        return AM_EINVAL;
    }
    return AM_OK;
}
