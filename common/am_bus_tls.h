/*
 * TLS on the metric bus: tls+tcp:// URLs with certificates from files, for
 * the collector (server) and the publishers (clients), through NNG's TLS
 * (mbedTLS). With a CA on both sides it is mutual: each side refuses a peer
 * whose certificate that CA did not sign, during the handshake, before any
 * bus message of it is read.
 */
#ifndef AM_BUS_TLS_H
#define AM_BUS_TLS_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stdbool.h>
#include <stddef.h>

/* Paths of PEM files; NULL or "" when not set. */
struct am_bus_tls {
    const char *ca;   /* CA certificates that sign the peers */
    const char *cert; /* this side's certificate (chain) */
    const char *key;  /* its private key, unencrypted */
};

/* Rows of a settings table (am_config.h) for s, a struct am_bus_tls: METRICS_BUS_TLS_CA/CERT/KEY.
 */
#define AM_BUS_TLS_SETTINGS(s)                                                                     \
    {"bus-tls-ca",                                                                                 \
     "METRICS_BUS_TLS_CA",                                                                         \
     AM_SET_STRING,                                                                                \
     "",                                                                                           \
     0,                                                                                            \
     0,                                                                                            \
     "PEM file of the CA that signs bus peers' certificates (tls+tcp:// URLs); a collector "       \
     "with one requires publishers to present a certificate it signed",                            \
     &(s).ca},                                                                                     \
        {"bus-tls-cert",                                                                           \
         "METRICS_BUS_TLS_CERT",                                                                   \
         AM_SET_STRING,                                                                            \
         "",                                                                                       \
         0,                                                                                        \
         0,                                                                                        \
         "PEM file of this process's certificate on the bus (tls+tcp:// URLs)",                    \
         &(s).cert},                                                                               \
    {                                                                                              \
        "bus-tls-key", "METRICS_BUS_TLS_KEY", AM_SET_STRING, "", 0, 0,                             \
            "PEM file of the private key of METRICS_BUS_TLS_CERT", &(s).key                        \
    }

/* True for a tls+tcp:// (or tls+tcp4/6) URL. */
bool am_bus_url_tls(const char *url);

/*
 * A TLS configuration for one listener (server) or one dialler of url
 * (client; the server's certificate must then name url's host). A server
 * needs cert and key, and with ca requires client certificates; a client
 * needs ca, and presents cert and key when both are set. Returns 0 with
 * *out (free with nng_tls_config_free), or AM_EINVAL with a one-line reason
 * naming the variable in err.
 */
int am_bus_tls_config(const struct am_bus_tls *tls, bool server, const char *url,
                      nng_tls_config **out, char *err, size_t errlen);

/* nng_listen for url, with TLS from tls when url is tls+tcp://. Returns 0 or AM_EINVAL/AM_ENET
 * (err). */
int am_bus_listen(nng_socket sock, const char *url, const struct am_bus_tls *tls, char *err,
                  size_t errlen);

/* nng_dial (non-blocking, retried in the background) for url, with TLS as above. */
int am_bus_dial(nng_socket sock, const char *url, const struct am_bus_tls *tls, char *err,
                size_t errlen);

#endif
