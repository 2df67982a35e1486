/* am-flap-proxy: a TCP relay that drops every connection and its listener now and then. */
#include "am_clock.h"
#include "am_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long long listen_port;
static long long target_port;
static long long flaps;
static long long period_ms;
static long long down_ms;
static long long first_ms;

static const struct am_setting settings[] = {
    {"listen-port", NULL, AM_SET_INT, "0", 0, 65535, "port on 127.0.0.1 to accept on",
     &listen_port},
    {"target-port", NULL, AM_SET_INT, "0", 0, 65535, "port on 127.0.0.1 to relay to", &target_port},
    {"flaps", NULL, AM_SET_INT, "100", 0, 1000000, "how many times to drop everything", &flaps},
    {"first-ms", NULL, AM_SET_INT, "2000", 0, 3600000, "time before the first flap", &first_ms},
    {"period-ms", NULL, AM_SET_INT, "300", 1, 3600000, "time from one flap to the next",
     &period_ms},
    {"down-ms", NULL, AM_SET_INT, "50", 0, 3600000,
     "how long the listener stays closed at each flap", &down_ms},
};

#define MAX_PAIRS 64
#define BUF_SIZE  (256 * 1024)

/* One relayed connection: what each side sent that the other has not taken yet. */
struct pair {
    int fd[2]; /* 0: the client that dialled us, 1: our connection to the target */
    char *buf[2];
    size_t len[2]; /* bytes read from fd[i], waiting to go to fd[1 - i] */
};

static struct pair pairs[MAX_PAIRS];
static int npairs;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = 1;
}

static int open_listener(void)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
        fprintf(stderr, "am-flap-proxy: cannot listen on port %lld: %s\n", listen_port,
                strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Connects to the target, blocking: it is on the loopback and either there or refusing. */
static int dial_target(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)target_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void close_pair(int i)
{
    for (int s = 0; s < 2; s++) {
        close(pairs[i].fd[s]);
        free(pairs[i].buf[s]);
    }
    pairs[i] = pairs[--npairs];
}

static void accept_one(int lfd)
{
    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return;
    int t = npairs < MAX_PAIRS ? dial_target() : -1;
    if (t < 0) {
        close(c);
        return;
    }
    struct pair *p = &pairs[npairs++];
    p->fd[0] = c;
    p->fd[1] = t;
    p->buf[0] = malloc(BUF_SIZE);
    p->buf[1] = malloc(BUF_SIZE);
    p->len[0] = p->len[1] = 0;
}

/* Moves bytes of pair i in both directions; false when a side closed or failed. */
static bool pump(int i, const struct pollfd *pf)
{
    struct pair *p = &pairs[i];
    for (int s = 0; s < 2; s++) {
        if ((pf[s].revents & (POLLIN | POLLHUP | POLLERR)) && p->len[s] < BUF_SIZE) {
            ssize_t n = read(p->fd[s], p->buf[s] + p->len[s], BUF_SIZE - p->len[s]);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                return false;
            if (n > 0)
                p->len[s] += (size_t)n;
        }
        if (p->len[s] > 0) {
            ssize_t n = write(p->fd[1 - s], p->buf[s], p->len[s]);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return false;
            if (n > 0) {
                memmove(p->buf[s], p->buf[s] + n, p->len[s] - (size_t)n);
                p->len[s] -= (size_t)n;
            }
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, "am-flap-proxy",
                   "Relays TCP on the loopback and drops every connection, and its listener, "
                   "--flaps times, --period-ms apart; then relays until SIGTERM.");
    if (listen_port == 0 || target_port == 0) {
        fprintf(stderr, "am-flap-proxy: --listen-port and --target-port are required\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int lfd = open_listener();
    if (lfd < 0)
        return 1;
    long long done = 0;
    int64_t next_flap = am_clock_mono_ns() + first_ms * 1000000;
    int64_t reopen_at = 0;
    printf("relaying 127.0.0.1:%lld to 127.0.0.1:%lld\n", listen_port, target_port);
    fflush(stdout);

    while (!stop) {
        int64_t now = am_clock_mono_ns();
        if (done < flaps && lfd >= 0 && now >= next_flap) {
            /* Everything goes at once, as when a link drops: what is in flight is lost. */
            while (npairs > 0)
                close_pair(npairs - 1);
            close(lfd);
            lfd = -1;
            reopen_at = now + down_ms * 1000000;
            done++;
            next_flap = now + period_ms * 1000000;
            printf("flap=%lld%s\n", done, done == flaps ? " last" : "");
            fflush(stdout);
        }
        if (lfd < 0 && now >= reopen_at && (lfd = open_listener()) < 0)
            return 1;

        struct pollfd pf[1 + 2 * MAX_PAIRS];
        int n = 0;
        if (lfd >= 0)
            pf[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        int base = n;
        for (int i = 0; i < npairs; i++) {
            for (int s = 0; s < 2; s++) {
                short ev = pairs[i].len[s] < BUF_SIZE ? POLLIN : 0;
                if (pairs[i].len[1 - s] > 0)
                    ev |= POLLOUT;
                pf[n++] = (struct pollfd){.fd = pairs[i].fd[s], .events = ev};
            }
        }
        if (poll(pf, (nfds_t)n, 10) < 0 && errno != EINTR)
            return 1;
        if (lfd >= 0 && base == 1 && (pf[0].revents & POLLIN))
            accept_one(lfd);
        /* Backwards, so that close_pair's move of the last pair into i does not skip one. */
        for (int i = (n - base) / 2 - 1; i >= 0; i--) {
            if (i < npairs && !pump(i, &pf[base + 2 * i]))
                close_pair(i);
        }
    }
    while (npairs > 0)
        close_pair(npairs - 1);
    if (lfd >= 0)
        close(lfd);
    printf("flaps=%lld\n", done);
    return 0;
}
