/*
 * am-slow-clients: holds many connections open to an HTTP server for tests
 * of its limits. Idle clients connect and send nothing; slow clients send a
 * request line and then one header byte a second, never finishing. Prints
 * "open=N" once all are connected, keeps them until SIGTERM, then prints how
 * many the server had closed ("closed=N").
 */
#include "am_clock.h"
#include "am_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *host;
static long long port;
static long long idle;
static long long slow;

static const struct am_setting settings[] = {
    {"host", NULL, AM_SET_STRING, "127.0.0.1", 0, 0, "server address (IPv4)", &host},
    {"port", NULL, AM_SET_INT, "80", 1, 65535, "server port", &port},
    {"idle", NULL, AM_SET_INT, "0", 0, 100000, "connections that send nothing", &idle},
    {"slow", NULL, AM_SET_INT, "0", 0, 100000,
     "connections that send a request one header byte a second", &slow},
};

int main(int argc, char **argv)
{
    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, "am-slow-clients",
                   "Holds idle and slow connections open to an HTTP server.");
    int n = (int)(idle + slow);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, 0);

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "am-slow-clients: bad host %s\n", host);
        return 2;
    }
    struct pollfd *fds = calloc((size_t)n + 1, sizeof *fds);
    if (!fds)
        return 1;
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            fprintf(stderr, "am-slow-clients: connection %d: %s\n", i, strerror(errno));
            return 1;
        }
        if (i >= idle) {
            static const char start[] = "GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ";
            if (send(fd, start, sizeof start - 1, MSG_NOSIGNAL) < 0) {
                close(fd);
                fd = -1;
            }
        }
        fds[i].fd = fd;
        fds[i].events = POLLIN;
    }
    fds[n].fd = sfd;
    fds[n].events = POLLIN;
    printf("open=%d\n", n);
    fflush(stdout);

    int closed = 0;
    int64_t next_byte = am_clock_mono_ns() + 1000000000;
    for (;;) {
        int rv = poll(fds, (nfds_t)n + 1, 200);
        if (rv < 0 && errno != EINTR)
            break;
        if (fds[n].revents)
            break;
        for (int i = 0; i < n && rv > 0; i++) {
            if (fds[i].fd < 0 || !fds[i].revents)
                continue;
            char buf[4096];
            ssize_t got = recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got <= 0 && !(got < 0 && (errno == EAGAIN || errno == EINTR))) {
                close(fds[i].fd);
                fds[i].fd = -1;
                closed++;
            }
        }
        if (am_clock_mono_ns() >= next_byte) {
            next_byte += 1000000000;
            for (int i = (int)idle; i < n; i++)
                if (fds[i].fd >= 0 && send(fds[i].fd, "x", 1, MSG_NOSIGNAL) < 0) {
                    close(fds[i].fd);
                    fds[i].fd = -1;
                    closed++;
                }
        }
    }
    printf("closed=%d\n", closed);
    for (int i = 0; i < n; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    close(sfd);
    free(fds);
    return 0;
}
