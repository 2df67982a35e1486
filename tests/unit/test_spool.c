/* Unit tests of the disk spool: order, bound, lock, and segments torn or damaged by a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "am_error.h"
#include "spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char dir[256];
    struct cl_spool_config cfg;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/am-spool-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    /* A directory two levels down that does not exist yet, as .data/spool is at first. */
    strncat(f->dir, "/a/spool", sizeof f->dir - strlen(f->dir) - 1);
    f->cfg = (struct cl_spool_config){
        .dir = f->dir, .max_bytes = 1 << 20, .segment_bytes = 1 << 20, .segment_ms = 3600000};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[600];
    /* The fixture's own mkdtemp directory, two levels above the spool. */
    char *cut = strstr(f->dir, "/a/spool");
    *cut = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* A chunk of n rows "tag-i\n"; the caller frees it. */
static struct cl_chunk *make_chunk(const char *tag, unsigned n)
{
    struct cl_chunk *c = calloc(1, sizeof *c);
    size_t cap = n * 32 + 1, len = 0;
    c->rows = malloc(cap);
    for (unsigned i = 0; i < n; i++)
        len += (size_t)snprintf(c->rows + len, cap - len, "%s-%u\n", tag, i);
    c->len = len;
    c->nrows = n;
    return c;
}

static void append(cl_spool *s, const char *tag, unsigned n)
{
    struct cl_chunk *c = make_chunk(tag, n);
    assert_int_equal(cl_spool_append(s, c), AM_OK);
    cl_chunk_free(c);
}

/* Takes the oldest segment and checks its chunks are the tags given, in order. */
static struct cl_spool_segment *take_expect(cl_spool *s, const char *const *tags, size_t ntags)
{
    struct cl_spool_segment *seg = NULL;
    assert_int_equal(cl_spool_take(s, &seg), AM_OK);
    struct cl_chunk *c = seg->chunks;
    for (size_t i = 0; i < ntags; i++) {
        assert_non_null(c);
        assert_int_equal(strncmp(c->rows, tags[i], strlen(tags[i])), 0);
        c = c->next;
    }
    assert_null(c);
    return seg;
}

/* Counts the files of the spool directory with the given extension. */
static int count_files(const char *dir, const char *ext)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');
        if (dot && dot != e->d_name && !strcmp(dot + 1, ext))
            n++;
    }
    closedir(d);
    return n;
}

/* Path of the only file of dir with extension ext. */
static void only_file(const char *dir, const char *ext, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    out[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        const char *dot = strrchr(e->d_name, '.');
        if (dot && dot != e->d_name && !strcmp(dot + 1, ext))
            snprintf(out, cap, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    assert_true(out[0] != '\0');
}

static void test_segments_replay_in_order_and_go_after_done(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    assert_false(cl_spool_holds(s));
    struct cl_spool_segment *seg = NULL;
    assert_int_equal(cl_spool_take(s, &seg), AM_ENOTFOUND);

    append(s, "a", 3);
    append(s, "b", 2);
    assert_true(cl_spool_holds(s));
    assert_int_equal(cl_spool_seal(s), AM_OK);
    append(s, "c", 1);
    assert_int_equal(count_files(f->dir, "seg"), 1);
    assert_int_equal(count_files(f->dir, "open"), 1);

    const char *first[] = {"a-0", "b-0"};
    seg = take_expect(s, first, 2);
    assert_int_equal(seg->rows, 5);
    /* Released, not done: the same segment comes back. */
    cl_spool_release(s, seg);
    seg = take_expect(s, first, 2);
    cl_spool_done(s, seg);
    assert_true(cl_spool_holds(s));

    /* No sealed segment left: take seals the open one. */
    const char *second[] = {"c-0"};
    seg = take_expect(s, second, 1);
    assert_int_equal(count_files(f->dir, "open"), 0);
    cl_spool_done(s, seg);
    assert_false(cl_spool_holds(s));
    assert_int_equal(count_files(f->dir, "seg"), 0);
    cl_spool_close(s);
}

static void test_bound_refuses_what_does_not_fit(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    f->cfg.max_bytes = 1000;
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    struct cl_chunk *big = make_chunk("big", 60); /* about 480 bytes with its header */
    assert_int_equal(cl_spool_append(s, big), AM_OK);
    assert_int_equal(cl_spool_append(s, big), AM_OK);
    assert_int_equal(cl_spool_append(s, big), AM_EFULL);
    /* Room comes back once a segment is done. */
    struct cl_spool_segment *seg = NULL;
    assert_int_equal(cl_spool_take(s, &seg), AM_OK);
    assert_int_equal(seg->rows, 120);
    cl_spool_done(s, seg);
    assert_int_equal(cl_spool_append(s, big), AM_OK);
    cl_chunk_free(big);
    cl_spool_close(s);
}

static void test_second_opener_is_refused(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL, *t = NULL;
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    char err[256];
    assert_int_equal(cl_spool_open(&t, &f->cfg, NULL, err, sizeof err), AM_EIO);
    assert_non_null(strstr(err, "in use by another collector"));
    cl_spool_close(s);
    assert_int_equal(cl_spool_open(&t, &f->cfg, NULL, NULL, 0), AM_OK);
    cl_spool_close(t);
}

static void test_next_start_replays_what_is_left_after_it(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    struct cl_spool_recovery rec;
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    append(s, "old1", 2);
    assert_int_equal(cl_spool_seal(s), AM_OK);
    append(s, "old2", 2);
    cl_spool_close(s); /* seals the open segment */

    assert_int_equal(cl_spool_open(&s, &f->cfg, &rec, NULL, 0), AM_OK);
    assert_int_equal(rec.segments, 2);
    assert_int_equal(rec.rows, 4);
    assert_int_equal(rec.torn, 0);
    append(s, "new", 1);
    const char *a[] = {"old1-0"}, *b[] = {"old2-0"}, *c[] = {"new-0"};
    cl_spool_done(s, take_expect(s, a, 1));
    cl_spool_done(s, take_expect(s, b, 1));
    cl_spool_done(s, take_expect(s, c, 1));
    assert_false(cl_spool_holds(s));
    cl_spool_close(s);
}

/* A crash while a record was being written leaves an open segment with half a record. */
static void test_torn_open_segment_is_truncated_and_counted(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    struct cl_spool_recovery rec;
    char path[600], open_path[600];
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    append(s, "whole", 4);
    append(s, "torn", 7);
    cl_spool_close(s);
    only_file(f->dir, "seg", path, sizeof path);

    /* Cut the second record in half and make the file an open segment again. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 20), 0);
    snprintf(open_path, sizeof open_path, "%.*sopen", (int)(strlen(path) - 3), path);
    assert_int_equal(rename(path, open_path), 0);

    assert_int_equal(cl_spool_open(&s, &f->cfg, &rec, NULL, 0), AM_OK);
    assert_int_equal(rec.segments, 1);
    assert_int_equal(rec.rows, 4);
    assert_int_equal(rec.torn, 1);
    assert_int_equal(rec.lost_rows, 7);
    assert_int_equal(count_files(f->dir, "open"), 0);
    const char *whole[] = {"whole-0"};
    struct cl_spool_segment *seg = take_expect(s, whole, 1);
    assert_int_equal(seg->lost_rows, 0);
    cl_spool_done(s, seg);
    cl_spool_close(s);
}

/* A segment holding only part of a record header has nothing to replay and is removed. */
static void test_segment_with_no_whole_record_is_removed(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    struct cl_spool_recovery rec;
    char path[600];
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    append(s, "x", 1);
    cl_spool_close(s);
    only_file(f->dir, "seg", path, sizeof path);
    assert_int_equal(truncate(path, 6), 0);

    assert_int_equal(cl_spool_open(&s, &f->cfg, &rec, NULL, 0), AM_OK);
    assert_int_equal(rec.segments, 0);
    assert_int_equal(rec.torn, 1);
    assert_int_equal(count_files(f->dir, "seg"), 0);
    assert_false(cl_spool_holds(s));
    cl_spool_close(s);
}

/* A damaged byte inside a sealed record: that record is counted lost, its neighbours replayed. */
static void test_damaged_record_is_skipped_and_counted(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    char path[600];
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    append(s, "first", 2);
    append(s, "bad", 5);
    append(s, "third", 3);
    assert_int_equal(cl_spool_seal(s), AM_OK);
    only_file(f->dir, "seg", path, sizeof path);

    /* The first record is 16 + 16 bytes; flip a byte in the second record's rows. */
    int fd = open(path, O_RDWR);
    char byte;
    assert_int_equal(pread(fd, &byte, 1, 32 + 16 + 2), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, 32 + 16 + 2), 1);
    close(fd);

    const char *good[] = {"first-0", "third-0"};
    struct cl_spool_segment *seg = take_expect(s, good, 2);
    assert_int_equal(seg->rows, 5);
    assert_int_equal(seg->lost_rows, 5);
    cl_spool_done(s, seg);
    cl_spool_close(s);
}

/* The gap check of a stream's first message survives the spool. */
static void test_gap_check_goes_through_the_spool(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    struct cl_chunk *c = make_chunk("checked", 3);
    c->check_source_id = strdup("gateway@host");
    c->check_epoch = 1234567890123LL;
    c->check_seq = 4096;
    assert_int_equal(cl_spool_append(s, c), AM_OK);
    cl_chunk_free(c);
    append(s, "plain", 2);
    cl_spool_close(s);

    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    const char *tags[] = {"checked-0", "plain-0"};
    struct cl_spool_segment *seg = take_expect(s, tags, 2);
    assert_int_equal(seg->rows, 5);
    c = seg->chunks;
    assert_string_equal(c->check_source_id, "gateway@host");
    assert_int_equal(c->check_epoch, 1234567890123LL);
    assert_int_equal(c->check_seq, 4096);
    assert_int_equal(c->nrows, 3);
    assert_int_equal(c->len, strlen("checked-0\nchecked-1\nchecked-2\n"));
    assert_null(c->next->check_source_id);
    cl_spool_done(s, seg);
    cl_spool_close(s);
}

/* A segment that cannot be read back is given up, its rows returned for counting. */
static void test_unreadable_segment_is_discarded_and_counted(void **state)
{
    struct fixture *f = *state;
    cl_spool *s = NULL;
    char path[600];
    assert_int_equal(cl_spool_open(&s, &f->cfg, NULL, NULL, 0), AM_OK);
    append(s, "gone", 4);
    assert_int_equal(cl_spool_seal(s), AM_OK);
    append(s, "kept", 2);
    assert_int_equal(cl_spool_seal(s), AM_OK);
    /* The oldest segment's file disappears behind the spool's back. */
    snprintf(path, sizeof path, "%s/0000000000000000.seg", f->dir);
    assert_int_equal(unlink(path), 0);

    struct cl_spool_segment *seg = NULL;
    assert_int_equal(cl_spool_take(s, &seg), AM_EIO);
    assert_int_equal(cl_spool_discard_oldest(s), 4);
    const char *kept[] = {"kept-0"};
    cl_spool_done(s, take_expect(s, kept, 1));
    assert_false(cl_spool_holds(s));
    assert_int_equal(cl_spool_discard_oldest(s), 0);
    cl_spool_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_segments_replay_in_order_and_go_after_done, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bound_refuses_what_does_not_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_opener_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_start_replays_what_is_left_after_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_torn_open_segment_is_truncated_and_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_segment_with_no_whole_record_is_removed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damaged_record_is_skipped_and_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gap_check_goes_through_the_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_segment_is_discarded_and_counted, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
