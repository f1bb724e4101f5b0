/* test_loader.c: the data loader on small shards: exact sequential windows
 * (packed and document-aligned), random draws, resume, rewind, file lists
 * and every error a user can cause. */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>
#include "core/err.h"
#include "data/loader.h"
#include "data/shard.h"

static char *write_shard(const char *dir, const char *name, const uint32_t *ids, size_t n, uint32_t vocab)
{
    char *p = test_path(dir, name);
    struct llm_shard_writer w;
    assert_int_equal(llm_shard_writer_open(&w, p, vocab), 0);
    assert_int_equal(llm_shard_write(&w, ids, n), 0);
    assert_int_equal(llm_shard_writer_commit(&w), 0);
    return p;
}

/* A shard holding base, base+1, ..., base+n-1. */
static char *write_range(const char *dir, const char *name, uint32_t base, size_t n, uint32_t vocab)
{
    uint32_t *ids = malloc((n ? n : 1) * sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        ids[i] = base + (uint32_t)i;
    char *p = write_shard(dir, name, ids, n, vocab);
    free(ids);
    return p;
}

static struct llm_loader_opts opts(int B, int T, enum llm_data_order order, int eot, uint64_t seed)
{
    struct llm_loader_opts o = {.B = B, .T = T, .order = order, .eot = eot,
                                .boundaries = LLM_DATA_BOUNDARIES_AUTO, .seed = seed, .vocab_size = 4096};
    return o;
}

static struct llm_loader *open_ok(const char *spec, const struct llm_loader_opts *o)
{
    struct llm_loader *l;
    int rc = llm_loader_new(&l, spec, o);
    if (rc)
        fail_msg("llm_loader_new('%s'): %d %s", spec, rc, llm_errmsg());
    return l;
}

static void next_ok(struct llm_loader *l, int32_t *x, int32_t *y)
{
    int rc = llm_loader_next(l, x, y);
    if (rc)
        fail_msg("llm_loader_next: %d %s", rc, llm_errmsg());
}

static void expect_window(const int32_t *x, const int32_t *y, const int32_t *wx, const int32_t *wy, int T)
{
    for (int t = 0; t < T; t++)
        if (x[t] != wx[t] || y[t] != wy[t])
            fail_msg("t=%d: got x=%d y=%d, want x=%d y=%d", t, x[t], y[t], wx[t], wy[t]);
}

static void test_cross_sequential(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    /* a: 0..20 (5 windows of 4), empty: none, b: 100..109 (2 windows). */
    char *a = write_range(dir, "a.bin", 0, 21, 4096), *e = write_range(dir, "e.bin", 0, 0, 4096),
         *b = write_range(dir, "b.bin", 100, 10, 4096);
    char spec[8192];
    snprintf(spec, sizeof(spec), "%s,%s,%s", a, e, b);
    struct llm_loader_opts o = opts(2, 4, LLM_DATA_SEQUENTIAL, -1, 1);
    struct llm_loader *l = open_ok(spec, &o);
    assert_int_equal(llm_loader_n_tokens(l), 31);
    assert_int_equal(llm_loader_n_windows(l), 7);
    assert_true(fabs(llm_loader_unigram_entropy(l) - log(31)) < 1e-12); /* 31 distinct ids */
    const int starts[] = {0, 4, 8, 12, 16, 100, 104, 0, 4, 8, 12, 16, 100, 104, 0, 4};
    int32_t x[8], y[8];
    for (int k = 0; k < 8; k++) {
        assert_int_equal(llm_loader_epoch(l), (2 * k) / 7);
        next_ok(l, x, y);
        for (int w = 0; w < 2; w++) {
            int32_t wx[4], wy[4];
            for (int t = 0; t < 4; t++)
                wx[t] = starts[2 * k + w] + t, wy[t] = wx[t] + 1;
            expect_window(x + 4 * w, y + 4 * w, wx, wy, 4);
        }
    }
    assert_int_equal(llm_loader_epoch(l), 2);
    llm_loader_free(l);
    free(a), free(e), free(b);
    test_rmdir(dir);
}

/* Documents (eot 99): [5 6 7 99] [8 99] [99] [9 10 11 12 13 14 99] [15 16]. */
static const uint32_t docs[] = {5, 6, 7, 99, 8, 99, 99, 9, 10, 11, 12, 13, 14, 99, 15, 16};
static const int32_t align_x[5][4] = {{5, 6, 7, 99}, {8, 99, 99, 99}, {9, 10, 11, 12},
                                      {13, 14, 99, 99}, {15, 16, 99, 99}};
static const int32_t align_y[5][4] = {{6, 7, 99, -1}, {99, -1, -1, -1}, {10, 11, 12, 13},
                                      {14, 99, -1, -1}, {16, -1, -1, -1}};

static void test_align_sequential(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *p = write_shard(dir, "d.bin", docs, sizeof(docs) / sizeof(docs[0]), 4096);
    struct llm_loader_opts o = opts(5, 4, LLM_DATA_SEQUENTIAL, 99, 1);
    struct llm_loader *l = open_ok(p, &o);
    assert_int_equal(llm_loader_n_windows(l), 5);
    assert_true(fabs(llm_loader_unigram_entropy(l) - (log(16) - 4 * log(4) / 16)) < 1e-12); /* 99 4x */
    int32_t x[20], y[20];
    for (int e = 0; e < 2; e++) {
        assert_int_equal(llm_loader_epoch(l), e);
        next_ok(l, x, y);
        for (int w = 0; w < 5; w++)
            expect_window(x + 4 * w, y + 4 * w, align_x[w], align_y[w], 4);
    }
    llm_loader_free(l);
    /* The same data packed (cross): plain windows that run over the eots. */
    o.boundaries = LLM_DATA_BOUNDARIES_CROSS;
    o.B = 1;
    l = open_ok(p, &o);
    assert_int_equal(llm_loader_n_windows(l), 3);
    next_ok(l, x, y);
    next_ok(l, x, y);
    const int32_t wx[4] = {8, 99, 99, 9}, wy[4] = {99, 99, 9, 10};
    expect_window(x, y, wx, wy, 4);
    llm_loader_free(l);
    free(p);
    test_rmdir(dir);
}

static void test_random(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    /* Starts: a 0..41 (42), b 0..21 (22): 64 in all, drawn 50 times each on average. */
    char *a = write_range(dir, "a.bin", 0, 50, 4096), *b = write_range(dir, "b.bin", 1000, 30, 4096);
    char spec[8192];
    snprintf(spec, sizeof(spec), "%s,%s", a, b);
    enum { B = 16, T = 8, N = 200 };
    struct llm_loader_opts o = opts(B, T, LLM_DATA_RANDOM, -1, 7);
    struct llm_loader *l1 = open_ok(spec, &o), *l2 = open_ok(spec, &o);
    o.seed = 8;
    struct llm_loader *l3 = open_ok(spec, &o);
    int32_t x1[B * T], y1[B * T], x2[B * T], y2[B * T], x3[B * T], y3[B * T];
    int hits[64] = {0}, differ = 0;
    for (int k = 0; k < N; k++) {
        next_ok(l1, x1, y1);
        next_ok(l2, x2, y2);
        next_ok(l3, x3, y3);
        assert_memory_equal(x1, x2, sizeof(x1));
        assert_memory_equal(y1, y2, sizeof(y1));
        differ |= memcmp(x1, x3, sizeof(x1)) != 0;
        for (int w = 0; w < B; w++) {
            int32_t s = x1[w * T];
            for (int t = 0; t < T; t++) {
                assert_int_equal(x1[w * T + t], s + t);
                assert_int_equal(y1[w * T + t], s + t + 1);
            }
            if (s >= 0 && s <= 41)
                hits[s]++;
            else if (s >= 1000 && s <= 1021)
                hits[42 + s - 1000]++;
            else
                fail_msg("window start %d is not a valid start", s);
        }
    }
    assert_true(differ);
    assert_int_equal(llm_loader_epoch(l1), 0);
    for (int i = 0; i < 64; i++)
        if (hits[i] < 15 || hits[i] > 100) /* mean 50: a loose band, not a test of the rng */
            fail_msg("start bucket %d drawn %d times", i, hits[i]);
    llm_loader_free(l1), llm_loader_free(l2), llm_loader_free(l3);

    /* Random aligned chunks: every draw is one of the sequential chunks, each drawn. */
    char *d = write_shard(dir, "d.bin", docs, sizeof(docs) / sizeof(docs[0]), 4096);
    o = opts(10, 4, LLM_DATA_RANDOM, 99, 3);
    l1 = open_ok(d, &o);
    int chunk_hits[5] = {0};
    for (int k = 0; k < 20; k++) {
        next_ok(l1, x1, y1);
        for (int w = 0; w < 10; w++) {
            int c = 0;
            while (c < 5 && (memcmp(x1 + 4 * w, align_x[c], sizeof(align_x[c])) ||
                             memcmp(y1 + 4 * w, align_y[c], sizeof(align_y[c]))))
                c++;
            assert_true(c < 5);
            chunk_hits[c]++;
        }
    }
    for (int c = 0; c < 5; c++)
        assert_true(chunk_hits[c] > 10);
    llm_loader_free(l1);
    free(a), free(b), free(d);
    test_rmdir(dir);
}

/* Reads n batches from each of l and r: they must be equal. */
static void expect_same_batches(struct llm_loader *l, struct llm_loader *r, int n, int BT)
{
    int32_t *a = malloc(4 * sizeof(int32_t) * (size_t)BT);
    int32_t *ay = a + BT, *b = a + 2 * BT, *by = a + 3 * BT;
    for (int k = 0; k < n; k++) {
        next_ok(l, a, ay);
        next_ok(r, b, by);
        assert_memory_equal(a, b, sizeof(int32_t) * (size_t)BT);
        assert_memory_equal(ay, by, sizeof(int32_t) * (size_t)BT);
    }
    assert_int_equal(llm_loader_epoch(l), llm_loader_epoch(r));
    free(a);
}

static void test_state_restore_rewind(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *a = write_range(dir, "a.bin", 0, 40, 4096), *d = write_shard(dir, "d.bin", docs, 16, 4096);
    struct { const char *spec; int order, eot; } cases[] = {
        {a, LLM_DATA_SEQUENTIAL, -1}, {a, LLM_DATA_RANDOM, -1},
        {d, LLM_DATA_SEQUENTIAL, 99}, {d, LLM_DATA_RANDOM, 99},
    };
    int32_t x[3 * 4], y[3 * 4], x0[3 * 4], y0[3 * 4];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct llm_loader_opts o = opts(3, 4, (enum llm_data_order)cases[i].order, cases[i].eot, 11);
        struct llm_loader *l = open_ok(cases[i].spec, &o), *fresh = open_ok(cases[i].spec, &o);
        next_ok(l, x0, y0);
        for (int k = 0; k < 6; k++)
            next_ok(l, x, y);
        /* Through text, as a checkpoint carries it, into a fresh loader. */
        cJSON *st = llm_loader_state(l);
        assert_non_null(st);
        char *text = cJSON_PrintUnformatted(st);
        cJSON *back = cJSON_Parse(text);
        assert_int_equal(llm_loader_restore(fresh, back), 0);
        expect_same_batches(l, fresh, 5, 3 * 4);
        /* Back to the saved point on the same loader. */
        assert_int_equal(llm_loader_restore(l, st), 0);
        struct llm_loader *again = open_ok(cases[i].spec, &o);
        assert_int_equal(llm_loader_restore(again, back), 0);
        expect_same_batches(l, again, 3, 3 * 4);
        /* Rewind: the first batch again, epoch 0. */
        llm_loader_rewind(l);
        assert_int_equal(llm_loader_epoch(l), 0);
        next_ok(l, x, y);
        assert_memory_equal(x, x0, sizeof(x));
        assert_memory_equal(y, y0, sizeof(y));
        if (cases[i].order == LLM_DATA_SEQUENTIAL)
            assert_true(llm_loader_epoch(again) > 0); /* the tests crossed an epoch */
        cJSON_Delete(st), cJSON_Delete(back), free(text);
        llm_loader_free(l), llm_loader_free(fresh), llm_loader_free(again);
    }
    free(a), free(d);
    test_rmdir(dir);
}

static void test_glob_and_lists(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    /* Each shard is one window of T=2 whose first token names the file. */
    char *s1 = write_range(dir, "s1.bin", 1, 3, 4096), *s2 = write_range(dir, "s2.bin", 2, 3, 4096),
         *s10 = write_range(dir, "s10.bin", 10, 3, 4096);
    char spec[8192];
    struct { const char *fmt; int first[3]; int n; } cases[] = {
        {"%s/s*.bin", {1, 10, 2}, 3},          /* sorted bytewise */
        {"%s/s2.bin,%s/s1*.bin", {2, 1, 10}, 3}, /* list order, each pattern sorted */
        {"%s/s1?.bin", {10}, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(spec, sizeof(spec), cases[i].fmt, dir, dir);
        struct llm_loader_opts o = opts(1, 2, LLM_DATA_SEQUENTIAL, -1, 1);
        struct llm_loader *l = open_ok(spec, &o);
        assert_int_equal(llm_loader_n_windows(l), cases[i].n);
        int32_t x[2], y[2];
        for (int k = 0; k < cases[i].n; k++) {
            next_ok(l, x, y);
            assert_int_equal(x[0], cases[i].first[k]);
        }
        llm_loader_free(l);
    }
    free(s1), free(s2), free(s10);
    test_rmdir(dir);
}

static void expect_new_error(const char *spec, const struct llm_loader_opts *o, int code, const char *msg)
{
    struct llm_loader *l = (struct llm_loader *)1;
    int rc = llm_loader_new(&l, spec, o);
    if (rc != code || !strstr(llm_errmsg(), msg))
        fail_msg("'%s': got %d '%s', want %d '%s'", spec, rc, llm_errmsg(), code, msg);
    assert_null(l);
}

static void test_open_errors(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *ok = write_range(dir, "ok.bin", 0, 20, 300), *shortp = write_range(dir, "short.bin", 0, 4, 300);
    uint32_t eots[] = {7, 7, 7};
    char *only_eot = write_shard(dir, "eot.bin", eots, 3, 300), *big = write_range(dir, "big.bin", 0, 20, 500);
    char *missing = test_path(dir, "missing.bin"), *pattern = test_path(dir, "nothing*.bin");
    char spec[8192];
    struct llm_loader_opts o = opts(2, 4, LLM_DATA_SEQUENTIAL, -1, 1);
    o.vocab_size = 300;
    expect_new_error(missing, &o, LLM_EIO, "missing.bin");
    expect_new_error(pattern, &o, LLM_EIO, "no file matches");
    expect_new_error(pattern, &o, LLM_EIO, "nothing*.bin");
    snprintf(spec, sizeof(spec), "%s,%s", ok, missing);
    expect_new_error(spec, &o, LLM_EIO, "missing.bin");
    snprintf(spec, sizeof(spec), "%s,,%s", ok, ok);
    expect_new_error(spec, &o, LLM_EINVAL, "empty path");
    expect_new_error("", &o, LLM_EINVAL, "no data files");
    expect_new_error(shortp, &o, LLM_EINVAL, "no complete window");
    expect_new_error(big, &o, LLM_EINVAL, "big.bin");
    expect_new_error(big, &o, LLM_EINVAL, "vocabulary size 500");
    o.eot = 7;
    expect_new_error(only_eot, &o, LLM_EINVAL, "no complete window");
    o.eot = -1;
    o.boundaries = LLM_DATA_BOUNDARIES_ALIGN;
    expect_new_error(ok, &o, LLM_EINVAL, "end-of-text");
    o.boundaries = LLM_DATA_BOUNDARIES_AUTO;
    o.eot = 300;
    expect_new_error(ok, &o, LLM_EINVAL, "end-of-text id 300");
    o.eot = -1;
    o.B = 0;
    expect_new_error(ok, &o, LLM_EINVAL, "positive");
    free(ok), free(shortp), free(only_eot), free(big), free(missing), free(pattern);
    test_rmdir(dir);
}

/* A token past the model vocabulary (a corrupt shard: the writer refuses
 * one) fails next() naming shard and position, and the position stays. */
static void test_bad_token(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *p = write_range(dir, "bad.bin", 0, 20, 300);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, LLM_SHARD_HEADER + 2 * 6, SEEK_SET), 0);
    const unsigned char v[2] = {0x2c, 0x01}; /* 300 */
    assert_int_equal(fwrite(v, 1, 2, f), 2);
    fclose(f);
    struct llm_loader_opts o = opts(1, 4, LLM_DATA_SEQUENTIAL, -1, 1);
    o.vocab_size = 300;
    struct llm_loader *l = open_ok(p, &o);
    int32_t x[4], y[4];
    next_ok(l, x, y); /* tokens 0..4 */
    int rc = llm_loader_next(l, x, y);
    assert_int_equal(rc, LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "bad.bin"));
    assert_non_null(strstr(llm_errmsg(), "position 6"));
    cJSON *st = llm_loader_state(l);
    assert_string_equal(cJSON_GetObjectItem(st, "window")->valuestring, "1");
    cJSON_Delete(st);
    llm_loader_free(l);
    free(p);
    test_rmdir(dir);
}

static void test_bad_restore(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    char *p = write_range(dir, "a.bin", 0, 40, 4096);
    struct { const char *json; int order; const char *msg; } cases[] = {
        {"[1]", LLM_DATA_SEQUENTIAL, "JSON object"},
        {"{\"window\":\"0\",\"rng\":[\"1\",\"2\",\"3\",\"4\"]}", LLM_DATA_SEQUENTIAL, "'epoch'"},
        {"{\"epoch\":\"0\",\"window\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"]}", LLM_DATA_SEQUENTIAL, "'window'"},
        {"{\"epoch\":\"0\",\"window\":\"-1\",\"rng\":[\"1\",\"2\",\"3\",\"4\"]}", LLM_DATA_SEQUENTIAL, "'window'"},
        {"{\"epoch\":\"0\",\"window\":\"9\",\"rng\":[\"1\",\"2\",\"3\",\"4\"]}", LLM_DATA_SEQUENTIAL, "'window' 9"},
        {"{\"epoch\":\"99999999999999999999\",\"window\":\"0\",\"rng\":[\"1\",\"2\",\"3\",\"4\"]}",
         LLM_DATA_SEQUENTIAL, "'epoch'"},
        {"{\"epoch\":\"1\",\"window\":\"0\",\"rng\":[\"1\",\"2\",\"3\",\"4\"]}", LLM_DATA_RANDOM, "'epoch'"},
        {"{\"epoch\":\"0\",\"window\":\"0\",\"rng\":[\"1\",\"2\",\"3\"]}", LLM_DATA_SEQUENTIAL, "'rng'"},
        {"{\"epoch\":\"0\",\"window\":\"0\",\"rng\":[\"0\",\"0\",\"0\",\"0\"]}", LLM_DATA_RANDOM, "'rng'"},
        {"{\"epoch\":\"0\",\"window\":\"0\",\"rng\":[\"1\",\"2\",\"x\",\"4\"]}", LLM_DATA_RANDOM, "'rng'"},
        {"{\"epoch\":\"0\",\"window\":\"0\",\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"step\":\"1\"}",
         LLM_DATA_SEQUENTIAL, "'step'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct llm_loader_opts o = opts(1, 4, (enum llm_data_order)cases[i].order, -1, 1);
        struct llm_loader *l = open_ok(p, &o), *ref = open_ok(p, &o);
        cJSON *j = cJSON_Parse(cases[i].json);
        assert_non_null(j);
        int rc = llm_loader_restore(l, j);
        if (rc != LLM_EFORMAT || !strstr(llm_errmsg(), cases[i].msg))
            fail_msg("case %zu: got %d '%s'", i, rc, llm_errmsg());
        expect_same_batches(l, ref, 2, 4); /* a refused state changes nothing */
        cJSON_Delete(j);
        llm_loader_free(l), llm_loader_free(ref);
    }
    llm_loader_free(NULL);
    free(p);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_sequential),
        cmocka_unit_test(test_align_sequential),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_state_restore_rewind),
        cmocka_unit_test(test_glob_and_lists),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_bad_token),
        cmocka_unit_test(test_bad_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
