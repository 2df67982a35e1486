/* The disk spool: checksummed row records in numbered segment files, replayed oldest first. */
#include "spool.h"
#include "am_clock.h"
#include "am_error.h"
#include "am_log.h"
#include "stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define REC_MAGIC       0x31525341u /* "ASR1" in a little-endian file: rows only */
#define REC_MAGIC_CHECK 0x31435341u /* "ASC1": a struct rec_check and a source id, then rows */

/*
 * One record: this header, then len bytes: COPY rows, preceded for
 * REC_MAGIC_CHECK by the chunk's gap check (struct rec_check and the
 * source id). Host byte order: a spool never moves between machines.
 */
struct rec_hdr {
    uint32_t magic;
    uint32_t nrows;
    uint32_t len;
    uint32_t crc; /* CRC-32 of nrows, len and the rows */
};

struct rec_check {
    int64_t epoch;
    int64_t seq;
    uint32_t id_len;
    uint32_t pad;
};

/* A record's rows are one bus message's, far below this; anything larger is a damaged header. */
#define REC_MAX_LEN (64u << 20)

struct segment {
    uint64_t number;
    uint64_t bytes;
    uint64_t rows;
};

struct cl_spool {
    struct cl_spool_config cfg;
    pthread_mutex_t mu;
    int dirfd;
    int lockfd;
    struct segment *sealed; /* oldest first */
    size_t nsealed, cap;
    int open_fd; /* -1 when no segment is open */
    struct segment open;
    int64_t open_since_ns;
    uint64_t next_number;
    uint64_t bytes, rows; /* every segment, the open one included */
    char *err;            /* while opening: where the reason for failing goes */
    size_t errlen;
};

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t rec_crc(uint32_t nrows, uint32_t len, const void *data)
{
    uint32_t head[2] = {nrows, len};
    return crc_update(crc_update(0, head, sizeof head), data, len);
}

/* Fills c from a record's data; returns AM_EPROTO when its check prefix does not fit. */
static int rec_to_chunk(const struct rec_hdr *h, const char *data, struct cl_chunk *c)
{
    size_t len = h->len;
    if (h->magic == REC_MAGIC_CHECK) {
        struct rec_check rc;
        if (len < sizeof rc)
            return AM_EPROTO;
        memcpy(&rc, data, sizeof rc);
        if (rc.id_len == 0 || rc.id_len > len - sizeof rc)
            return AM_EPROTO;
        c->check_source_id = strndup(data + sizeof rc, rc.id_len);
        if (!c->check_source_id)
            return AM_ENOMEM;
        c->check_epoch = rc.epoch;
        c->check_seq = rc.seq;
        data += sizeof rc + rc.id_len;
        len -= sizeof rc + rc.id_len;
    }
    c->rows = malloc(len + 1);
    if (!c->rows)
        return AM_ENOMEM;
    memcpy(c->rows, data, len);
    c->len = len;
    c->nrows = h->nrows;
    return AM_OK;
}

/* Records why opening failed, for the caller's one-line message; the first reason counts. */
static void open_error(cl_spool *s, const char *fmt, ...)
{
    va_list ap;
    if (!s->err || s->errlen == 0 || s->err[0])
        return;
    va_start(ap, fmt);
    vsnprintf(s->err, s->errlen, fmt, ap);
    va_end(ap);
}

static void publish(cl_spool *s)
{
    atomic_store_explicit(&cl_stats.spool_bytes, s->bytes, memory_order_relaxed);
    atomic_store_explicit(&cl_stats.spool_rows, s->rows, memory_order_relaxed);
    atomic_store_explicit(&cl_stats.spool_segments, s->nsealed + (s->open_fd >= 0),
                          memory_order_relaxed);
}

static void seg_name(char *out, size_t cap, uint64_t number, const char *ext)
{
    snprintf(out, cap, "%016" PRIx64 ".%s", number, ext);
}

/* mkdir -p for the spool directory. */
static int make_dirs(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return errno;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return errno;
    return 0;
}

static int read_all(int fd, char **out, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return AM_EIO;
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf)
        return AM_ENOMEM;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return AM_EIO;
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = n;
    return AM_OK;
}

/*
 * Walks the records of buf. Whole records with a good checksum are counted
 * in *rows and, when chunks is not NULL, copied into a list there. A
 * record whose checksum fails but whose length is plausible is skipped and
 * its rows counted in *lost. Returns the offset where the readable records
 * end (len when the file is whole).
 */
static size_t scan(const char *buf, size_t len, uint64_t *rows, uint64_t *lost,
                   struct cl_chunk **chunks, int *err)
{
    size_t off = 0;
    struct cl_chunk **tail = chunks;
    *rows = *lost = 0;
    *err = AM_OK;
    while (len - off >= sizeof(struct rec_hdr)) {
        struct rec_hdr h;
        memcpy(&h, buf + off, sizeof h);
        if ((h.magic != REC_MAGIC && h.magic != REC_MAGIC_CHECK) || h.len > REC_MAX_LEN ||
            h.len > len - off - sizeof h)
            break;
        const char *data = buf + off + sizeof h;
        if (rec_crc(h.nrows, h.len, data) != h.crc) {
            *lost += h.nrows;
            off += sizeof h + h.len;
            continue;
        }
        if (tail) {
            struct cl_chunk *c = calloc(1, sizeof *c);
            int rc = c ? rec_to_chunk(&h, data, c) : AM_ENOMEM;
            if (rc == AM_EPROTO) {
                /* A good checksum over a bad layout: not written by this code. */
                cl_chunk_free(c);
                *lost += h.nrows;
                off += sizeof h + h.len;
                continue;
            }
            if (rc != AM_OK) {
                cl_chunk_free(c);
                *err = rc;
                return off;
            }
            *tail = c;
            tail = &c->next;
        }
        *rows += h.nrows;
        off += sizeof h + h.len;
    }
    return off;
}

/* Adds a sealed segment at the end of the list (numbers only grow). */
static int push_sealed(cl_spool *s, const struct segment *seg)
{
    if (s->nsealed == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct segment *a = realloc(s->sealed, cap * sizeof *a);
        if (!a)
            return AM_ENOMEM;
        s->sealed = a;
        s->cap = cap;
    }
    s->sealed[s->nsealed++] = *seg;
    return AM_OK;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct segment *x = a, *y = b;
    return (x->number > y->number) - (x->number < y->number);
}

/*
 * Checks one file left by an earlier run: truncates a torn tail, seals an
 * open segment, deletes an empty one, and lists what remains.
 */
static int recover_file(cl_spool *s, const char *name, uint64_t number, bool open,
                        struct cl_spool_recovery *rec)
{
    char sealed_name[64];
    char *buf = NULL;
    size_t len = 0;
    int rc;
    int fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        open_error(s, "cannot open %s/%s: %s", s->cfg.dir, name, strerror(errno));
        return AM_EIO;
    }
    if ((rc = read_all(fd, &buf, &len)) != AM_OK)
        goto out;
    uint64_t rows, lost;
    int err;
    size_t good = scan(buf, len, &rows, &lost, NULL, &err);
    if (good < len) {
        /* What follows the last whole record was being written when the collector died. */
        uint64_t torn_rows = 0;
        struct rec_hdr h;
        if (len - good >= sizeof h) {
            memcpy(&h, buf + good, sizeof h);
            if (h.magic == REC_MAGIC || h.magic == REC_MAGIC_CHECK)
                torn_rows = h.nrows;
        }
        am_log_warn("spool: %s/%s ends in %zu bytes of an incomplete record (%" PRIu64
                    " metrics); truncated",
                    s->cfg.dir, name, len - good, torn_rows);
        if (ftruncate(fd, (off_t)good) != 0) {
            open_error(s, "cannot truncate %s/%s: %s", s->cfg.dir, name, strerror(errno));
            rc = AM_EIO;
            goto out;
        }
        lost += torn_rows;
        rec->torn++;
    }
    if (lost > 0)
        am_log_warn("spool: %" PRIu64 " metrics in %s/%s failed their check and are dropped", lost,
                    s->cfg.dir, name);
    rec->lost_rows += lost;
    if (rows == 0) {
        if (unlinkat(s->dirfd, name, 0) != 0) {
            open_error(s, "cannot delete %s/%s: %s", s->cfg.dir, name, strerror(errno));
            rc = AM_EIO;
        }
        goto out;
    }
    if (fsync(fd) != 0) {
        open_error(s, "cannot sync %s/%s: %s", s->cfg.dir, name, strerror(errno));
        rc = AM_EIO;
        goto out;
    }
    if (open) {
        seg_name(sealed_name, sizeof sealed_name, number, "seg");
        if (renameat(s->dirfd, name, s->dirfd, sealed_name) != 0) {
            open_error(s, "cannot seal %s/%s: %s", s->cfg.dir, name, strerror(errno));
            rc = AM_EIO;
            goto out;
        }
    }
    struct segment seg = {.number = number, .bytes = good, .rows = rows};
    if ((rc = push_sealed(s, &seg)) != AM_OK)
        goto out;
    s->bytes += good;
    s->rows += rows;
    rec->segments++;
    rec->rows += rows;
out:
    free(buf);
    close(fd);
    return rc;
}

static int recover(cl_spool *s, struct cl_spool_recovery *rec)
{
    int dfd = dup(s->dirfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *e;
    int rc = AM_OK;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        open_error(s, "cannot list %s: %s", s->cfg.dir, strerror(errno));
        return AM_EIO;
    }
    while ((e = readdir(d)) != NULL) {
        char ext[8];
        uint64_t number;
        int used = 0;
        if (sscanf(e->d_name, "%16" SCNx64 ".%5s%n", &number, ext, &used) != 2 ||
            strlen(e->d_name) != 16 + 1 + strlen(ext) || (size_t)used != strlen(e->d_name))
            continue;
        bool open = !strcmp(ext, "open");
        if (!open && strcmp(ext, "seg") != 0)
            continue;
        if ((rc = recover_file(s, e->d_name, number, open, rec)) != AM_OK)
            break;
        if (number >= s->next_number)
            s->next_number = number + 1;
    }
    closedir(d);
    if (rc == AM_OK && fsync(s->dirfd) != 0) {
        open_error(s, "cannot sync %s: %s", s->cfg.dir, strerror(errno));
        rc = AM_EIO;
    }
    if (s->nsealed > 1)
        qsort(s->sealed, s->nsealed, sizeof *s->sealed, cmp_seg);
    return rc;
}

int cl_spool_open(cl_spool **out, const struct cl_spool_config *cfg, struct cl_spool_recovery *rec,
                  char *err, size_t errlen)
{
    struct cl_spool_recovery ignored;
    int rc = AM_OK, e;
    cl_spool *s = calloc(1, sizeof *s);
    if (!s)
        return AM_ENOMEM;
    if (!rec)
        rec = &ignored;
    memset(rec, 0, sizeof *rec);
    pthread_once(&crc_once, crc_init);
    s->cfg = *cfg;
    s->err = err;
    s->errlen = errlen;
    if (err && errlen > 0)
        err[0] = '\0';
    s->dirfd = s->lockfd = s->open_fd = -1;
    pthread_mutex_init(&s->mu, NULL);

    if ((e = make_dirs(cfg->dir)) != 0) {
        open_error(s, "cannot create %s: %s", cfg->dir, strerror(e));
        rc = AM_EIO;
        goto fail;
    }
    if ((s->dirfd = open(cfg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        open_error(s, "cannot open %s: %s", cfg->dir, strerror(errno));
        rc = AM_EIO;
        goto fail;
    }
    s->lockfd = openat(s->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0) {
        open_error(s, "cannot create %s/.lock: %s", cfg->dir, strerror(errno));
        rc = AM_EIO;
        goto fail;
    }
    /* Two collectors replaying one spool would each believe the other's files are theirs. */
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
        open_error(s, "%s is in use by another collector", cfg->dir);
        rc = AM_EIO;
        goto fail;
    }
    if ((rc = recover(s, rec)) != AM_OK)
        goto fail;
    publish(s);
    s->err = NULL;
    *out = s;
    return AM_OK;
fail:
    cl_spool_close(s);
    return rc;
}

/* Seals the open segment; s->mu held. */
static int seal_locked(cl_spool *s)
{
    char from[64], to[64];
    if (s->open_fd < 0)
        return AM_OK;
    seg_name(from, sizeof from, s->open.number, "open");
    seg_name(to, sizeof to, s->open.number, "seg");
    if (fsync(s->open_fd) != 0 || renameat(s->dirfd, from, s->dirfd, to) != 0 ||
        fsync(s->dirfd) != 0) {
        /* The file stays as .open: the next start checks and seals it. */
        am_log_error("spool: cannot seal %s/%s: %s", s->cfg.dir, from, strerror(errno));
        return AM_EIO;
    }
    close(s->open_fd);
    s->open_fd = -1;
    if (push_sealed(s, &s->open) != AM_OK) {
        /* Out of memory for the list: the segment is safe on disk for the next start. */
        s->bytes -= s->open.bytes;
        s->rows -= s->open.rows;
        am_log_error("spool: out of memory listing %s/%s; left for the next start", s->cfg.dir, to);
    }
    publish(s);
    return AM_OK;
}

void cl_spool_close(cl_spool *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    seal_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (s->open_fd >= 0)
        close(s->open_fd);
    if (s->lockfd >= 0)
        close(s->lockfd);
    if (s->dirfd >= 0)
        close(s->dirfd);
    pthread_mutex_destroy(&s->mu);
    free(s->sealed);
    free(s);
}

bool cl_spool_holds(cl_spool *s)
{
    pthread_mutex_lock(&s->mu);
    bool holds = s->rows > 0;
    pthread_mutex_unlock(&s->mu);
    return holds;
}

static int write_full(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        ssize_t n = writev(fd, iov, iovcnt);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int cl_spool_append(cl_spool *s, const struct cl_chunk *c)
{
    char name[64];
    int rc = AM_OK, e;
    uint64_t size = sizeof(struct rec_hdr) + c->len;
    if (c->len > REC_MAX_LEN)
        return AM_EFULL;
    pthread_mutex_lock(&s->mu);
    if (s->bytes + size > s->cfg.max_bytes) {
        rc = AM_EFULL;
        goto out;
    }
    if (s->open_fd < 0) {
        seg_name(name, sizeof name, s->next_number, "open");
        s->open_fd = openat(s->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (s->open_fd < 0) {
            am_log_error("spool: cannot create %s/%s: %s", s->cfg.dir, name, strerror(errno));
            rc = AM_EIO;
            goto out;
        }
        s->open = (struct segment){.number = s->next_number++};
        s->open_since_ns = am_clock_mono_ns();
    }
    struct rec_hdr h = {.magic = REC_MAGIC, .nrows = c->nrows, .len = (uint32_t)c->len};
    struct rec_check check = {0};
    struct iovec iov[4] = {{&h, sizeof h}};
    int iovcnt = 1;
    if (c->check_source_id) {
        check.epoch = c->check_epoch;
        check.seq = c->check_seq;
        check.id_len = (uint32_t)strlen(c->check_source_id);
        h.magic = REC_MAGIC_CHECK;
        h.len += (uint32_t)(sizeof check + check.id_len);
        iov[iovcnt++] = (struct iovec){&check, sizeof check};
        iov[iovcnt++] = (struct iovec){c->check_source_id, check.id_len};
    }
    iov[iovcnt++] = (struct iovec){c->rows, c->len};
    uint32_t head[2] = {h.nrows, h.len};
    h.crc = crc_update(0, head, sizeof head);
    for (int i = 1; i < iovcnt; i++)
        h.crc = crc_update(h.crc, iov[i].iov_base, iov[i].iov_len);
    size = sizeof h + h.len;
    if (s->bytes + size > s->cfg.max_bytes) {
        rc = AM_EFULL;
        goto out;
    }
    if ((e = write_full(s->open_fd, iov, iovcnt)) != 0) {
        /* Leave no partial record behind: the next record starts where this one did. */
        if (ftruncate(s->open_fd, (off_t)s->open.bytes) != 0 ||
            lseek(s->open_fd, (off_t)s->open.bytes, SEEK_SET) < 0)
            am_log_error("spool: cannot cut a failed record off segment %" PRIu64 ": %s",
                         s->open.number, strerror(errno));
        am_log_error("spool: cannot write segment %" PRIu64 " in %s: %s", s->open.number,
                     s->cfg.dir, strerror(e));
        rc = AM_EIO;
        goto out;
    }
    s->open.bytes += size;
    s->open.rows += c->nrows;
    s->bytes += size;
    s->rows += c->nrows;
    if (s->open.bytes >= s->cfg.segment_bytes)
        rc = seal_locked(s);
    publish(s);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void cl_spool_tick(cl_spool *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->open_fd >= 0 &&
        am_clock_mono_ns() - s->open_since_ns >= (int64_t)s->cfg.segment_ms * 1000000)
        seal_locked(s);
    pthread_mutex_unlock(&s->mu);
}

int cl_spool_seal(cl_spool *s)
{
    pthread_mutex_lock(&s->mu);
    int rc = seal_locked(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int cl_spool_take(cl_spool *s, struct cl_spool_segment **out)
{
    char name[64];
    char *buf = NULL;
    size_t len = 0;
    struct segment seg;
    int fd = -1, rc;

    pthread_mutex_lock(&s->mu);
    if (s->nsealed == 0 && (rc = seal_locked(s)) != AM_OK) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    if (s->nsealed == 0) {
        pthread_mutex_unlock(&s->mu);
        return AM_ENOTFOUND;
    }
    seg = s->sealed[0];
    pthread_mutex_unlock(&s->mu);

    /* Only this thread removes sealed segments, so seg stays valid without the lock. */
    struct cl_spool_segment *sg = calloc(1, sizeof *sg);
    if (!sg)
        return AM_ENOMEM;
    sg->number = seg.number;
    seg_name(name, sizeof name, seg.number, "seg");
    fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        am_log_error("spool: cannot open %s/%s: %s", s->cfg.dir, name, strerror(errno));
        rc = AM_EIO;
        goto fail;
    }
    if ((rc = read_all(fd, &buf, &len)) != AM_OK)
        goto fail;
    uint64_t rows, lost;
    size_t good = scan(buf, len, &rows, &lost, &sg->chunks, &rc);
    if (rc != AM_OK)
        goto fail;
    if (good < len) {
        am_log_error("spool: %s/%s is damaged after byte %zu; the rest of it is dropped",
                     s->cfg.dir, name, good);
        lost += seg.rows > rows + lost ? seg.rows - rows - lost : 0;
    }
    sg->rows = rows;
    sg->lost_rows = lost;
    free(buf);
    close(fd);
    *out = sg;
    return AM_OK;
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    cl_spool_release(s, sg);
    return rc;
}

static void free_segment(struct cl_spool_segment *seg)
{
    struct cl_chunk *c = seg->chunks;
    while (c) {
        struct cl_chunk *next = c->next;
        cl_chunk_free(c);
        c = next;
    }
    free(seg);
}

void cl_spool_done(cl_spool *s, struct cl_spool_segment *seg)
{
    char name[64];
    if (!seg)
        return;
    seg_name(name, sizeof name, seg->number, "seg");
    pthread_mutex_lock(&s->mu);
    /* A file that cannot be deleted is replayed again at the next start: duplicates, not loss. */
    if (unlinkat(s->dirfd, name, 0) != 0)
        am_log_error("spool: cannot delete %s/%s: %s", s->cfg.dir, name, strerror(errno));
    if (s->nsealed > 0 && s->sealed[0].number == seg->number) {
        s->bytes -= s->sealed[0].bytes;
        s->rows -= s->sealed[0].rows;
        memmove(s->sealed, s->sealed + 1, (s->nsealed - 1) * sizeof *s->sealed);
        s->nsealed--;
    }
    publish(s);
    pthread_mutex_unlock(&s->mu);
    free_segment(seg);
}

uint64_t cl_spool_discard_oldest(cl_spool *s)
{
    char name[64];
    uint64_t rows = 0;
    pthread_mutex_lock(&s->mu);
    if (s->nsealed > 0) {
        seg_name(name, sizeof name, s->sealed[0].number, "seg");
        if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT)
            am_log_error("spool: cannot delete %s/%s: %s", s->cfg.dir, name, strerror(errno));
        rows = s->sealed[0].rows;
        s->bytes -= s->sealed[0].bytes;
        s->rows -= rows;
        memmove(s->sealed, s->sealed + 1, (s->nsealed - 1) * sizeof *s->sealed);
        s->nsealed--;
        publish(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rows;
}

void cl_spool_release(cl_spool *s, struct cl_spool_segment *seg)
{
    if (!seg)
        return;
    free_segment(seg);
}
