/* test_dedup.c: the Bloom filter (sizing, no false negatives, measured
 * false-positive rate), the compact hash set, and llm_dedup_run's known
 * answers for each mode (exact, Bloom, lines, minhash), their reports, bad
 * input, and output independent of the thread count. */
#include "testutil.h"

#include <math.h>

#include "core/err.h"
#include "core/log.h"
#include "core/rng.h"
#include "data/bloom.h"
#include "data/dedup.h"
#include "data/hashset.h"

static void test_bloom(void **state)
{
    (void)state;
    struct llm_bloom b;
    /* m = -n ln p / ln^2 2 = 9585.1 -> 9600 (whole words), k = (m/n) ln 2 = 6.6 -> 7 */
    assert_int_equal(llm_bloom_init(&b, 1000, 0.01), 0);
    assert_int_equal(b.m, 9600);
    assert_int_equal(b.k, 7);
    assert_int_equal(llm_bloom_bytes(&b), 1200);
    llm_bloom_release(&b);
    enum { N = 20000, Q = 200000 };
    assert_int_equal(llm_bloom_init(&b, N, 0.01), 0);
    struct llm_rng r;
    llm_rng_seed(&r, 1);
    int seen = 0; /* false positives while filling: below p on average */
    for (int i = 0; i < N; i++)
        seen += llm_bloom_add(&b, llm_rng_u64(&r));
    assert_true(seen < N / 100);
    assert_int_equal(b.added, N - seen);
    llm_rng_seed(&r, 1);
    for (int i = 0; i < N; i++) { /* no false negatives; adding again reports "seen" */
        uint64_t h = llm_rng_u64(&r);
        assert_int_equal(llm_bloom_has(&b, h), 1);
        assert_int_equal(llm_bloom_add(&b, h), 1);
    }
    assert_int_equal(b.added, N - seen);
    int fp = 0;
    for (int i = 0; i < Q; i++)
        fp += llm_bloom_has(&b, llm_rng_u64(&r));
    double rate = (double)fp / Q;
    printf("# Bloom filter sized for %d at p = 0.01: measured false-positive rate %.4f (theory %.4f)\n", N, rate,
           llm_bloom_fp_now(&b));
    assert_true(rate > 0.005 && rate < 0.015);
    assert_true(fabs(llm_bloom_fp_now(&b) - 0.01) < 0.002);
    llm_bloom_release(&b);
    assert_int_equal(llm_bloom_init(&b, 0, 0.01), LLM_EINVAL);
    assert_int_equal(llm_bloom_init(&b, 10, 0), LLM_EINVAL);
    assert_int_equal(llm_bloom_init(&b, 10, 0.9), LLM_EINVAL);
    assert_int_equal(llm_bloom_init(&b, 1ULL << 50, 1e-9), LLM_EINVAL); /* petabytes: refused, not tried */
    assert_non_null(strstr(llm_errmsg(), "GiB"));
}

static void test_hashset(void **state)
{
    (void)state;
    struct llm_hashset s;
    assert_int_equal(llm_hashset_init(&s, 1), 0);
    uint64_t first = 99;
    assert_int_equal(llm_hashset_add(&s, 42, 7, &first), 0);
    assert_int_equal(llm_hashset_count(&s, 42), 1);
    assert_int_equal(llm_hashset_add(&s, 42, 8, &first), 1);
    assert_int_equal(first, 7); /* the first value stays */
    assert_int_equal(llm_hashset_count(&s, 42), 2);
    assert_int_equal(llm_hashset_count(&s, 43 << 1), 0);
    assert_int_equal(llm_hashset_add(&s, 0, 1, NULL), 0); /* 0 is a hash like any other */
    assert_int_equal(llm_hashset_count(&s, 0), 1);
    /* growth keeps everything */
    struct llm_rng r;
    llm_rng_seed(&r, 4);
    for (uint64_t i = 0; i < 100000; i++)
        assert_int_equal(llm_hashset_add(&s, llm_rng_u64(&r), i, NULL), 0);
    assert_int_equal(s.n, 100002);
    llm_rng_seed(&r, 4);
    for (uint64_t i = 0; i < 100000; i++) {
        uint64_t h = llm_rng_u64(&r);
        assert_int_equal(llm_hashset_count(&s, h), 1);
        assert_int_equal(llm_hashset_add(&s, h, 0, &first), 1);
        assert_int_equal(first, i);
    }
    assert_true(s.n * 4 <= s.cap * 3);
    assert_int_equal(llm_hashset_bytes(&s), s.cap * 16);
    llm_hashset_release(&s);
}

/* ---- llm_dedup_run on files ---- */

static char *dir;

static char *write_bytes(const char *name, const char *data, size_t n)
{
    char *p = test_path(dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

static char *write_file(const char *name, const char *text)
{
    return write_bytes(name, text, strlen(text));
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

/* Runs dedup over in (one file) and returns the output text; rc checked. */
static char *run(struct llm_dedup_opts *o, const char *in, int want_rc, struct llm_dedup_stats *st)
{
    char *out = test_path(dir, "out.jsonl");
    FILE *f = fopen(out, "wb");
    assert_non_null(f);
    const char *paths[] = {in};
    o->progress = LLM_PROGRESS_OFF;
    int rc = llm_dedup_run(o, paths, 1, f, out, st);
    fclose(f);
    if (rc != want_rc)
        fail_msg("llm_dedup_run: %d (%s), wanted %d", rc, llm_errmsg(), want_rc);
    char *s = slurp(out);
    free(out);
    return s;
}

static const char *const EXACT_IN =
    "{\"id\":\"a\",\"text\":\"Hello, World! This is a test.\"}\n"
    "{\"id\":\"b\",\"text\":\"hello world   this is a TEST\",\"lang\":\"en\"}\n"
    "\n"
    "{\"id\":\"c\",\"text\":\"Something else entirely.\"}\n"
    "{\"id\":\"d\",\"text\":\"H\xc3\xa9llo w\xc3\xb6rld, this is \xc3\xa0 test\"}\n"
    "{\"id\":5,\"text\":\"Something else, entirely!\",\"meta\":{\"x\":[1,2]}}\n"
    "{\"id\":\"f\",\"text\":\"something else entirely. and more\"}\n";

static const char *const EXACT_OUT = "{\"id\":\"a\",\"text\":\"Hello, World! This is a test.\"}\n"
                                     "{\"id\":\"c\",\"text\":\"Something else entirely.\"}\n"
                                     "{\"id\":\"f\",\"text\":\"something else entirely. and more\"}\n";

static void test_exact(void **state)
{
    (void)state;
    char *in = write_file("exact.jsonl", EXACT_IN), *rep = test_path(dir, "rep.jsonl");
    struct llm_dedup_opts o = {.mode = LLM_DEDUP_EXACT, .report = rep};
    struct llm_dedup_stats st;
    char *out = run(&o, in, 0, &st);
    assert_string_equal(out, EXACT_OUT);
    free(out);
    out = slurp(rep);
    assert_string_equal(out, "{\"id\":\"b\",\"duplicate_of\":\"a\",\"jaccard\":1}\n"
                             "{\"id\":\"d\",\"duplicate_of\":\"a\",\"jaccard\":1}\n"
                             "{\"id\":5,\"duplicate_of\":\"c\",\"jaccard\":1}\n");
    free(out);
    assert_int_equal(st.docs_in, 6);
    assert_int_equal(st.docs_out, 3);
    assert_int_equal(st.removed, 3);
    assert_int_equal(st.skipped, 0);
    /* the Bloom filter gives the same documents; its report cannot name the first */
    o.bloom = 1, o.expected = 100, o.fp_rate = 1e-6;
    out = run(&o, in, 0, &st);
    assert_string_equal(out, EXACT_OUT);
    free(out);
    out = slurp(rep);
    assert_non_null(strstr(out, "{\"id\":\"b\",\"duplicate_of\":null,\"jaccard\":1}\n"));
    free(out);
    assert_int_equal(st.removed, 3);
    assert_true(st.mem_bytes > 0 && st.bloom_fp < 1e-6);
    free(in), free(rep);
}

static void test_lines(void **state)
{
    (void)state;
    char *in = write_file("lines.jsonl",
                          "{\"id\":1,\"text\":\"Home | About | Contact\\nFirst story.\\n\\nIt was good.\\nCopyright 2024 ACME\"}\n"
                          "{\"id\":2,\"text\":\"Home | About | Contact\\nSecond story, quite different.\\n  Copyright 2024 ACME  \"}\n"
                          "{\"id\":3,\"text\":\"Nothing shared here.\\n\\nAt all.\"}\n"
                          "{\"id\":4,\"text\":\"Home | About | Contact\\nCopyright 2024 ACME\\n\"}\n"
                          "{\"id\":5,\"text\":\"Twice in one. \\nTwice in one.\"}\n");
    char *rep = test_path(dir, "rep.jsonl");
    struct llm_dedup_opts o = {.mode = LLM_DEDUP_LINES, .report = rep};
    struct llm_dedup_stats st;
    char *out = run(&o, in, 0, &st);
    assert_string_equal(out, "{\"id\":1,\"text\":\"First story.\\n\\nIt was good.\"}\n"
                             "{\"id\":2,\"text\":\"Second story, quite different.\"}\n"
                             "{\"id\":3,\"text\":\"Nothing shared here.\\n\\nAt all.\"}\n");
    free(out);
    out = slurp(rep);
    assert_string_equal(out, "{\"id\":1,\"lines_removed\":2,\"emptied\":false}\n"
                             "{\"id\":2,\"lines_removed\":2,\"emptied\":false}\n"
                             "{\"id\":4,\"lines_removed\":2,\"emptied\":true}\n"
                             "{\"id\":5,\"lines_removed\":2,\"emptied\":true}\n");
    free(out);
    assert_int_equal(st.docs_in, 5);
    assert_int_equal(st.docs_out, 3);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.lines_in, 13);
    assert_int_equal(st.lines_removed, 8);
    assert_int_equal(st.docs_changed, 2);
    free(in), free(rep);
}

/* 200 words drawn from 10^4 ("w1234"): their 196 shingles are distinct. */
static void words200(struct llm_rng *r, char **w)
{
    for (int i = 0; i < 200; i++) {
        w[i] = malloc(8);
        snprintf(w[i], 8, "w%u", (unsigned)llm_rng_below(r, 10000));
    }
}

static void put_doc(FILE *f, const char *id, char **w, int n, int upper_from)
{
    fprintf(f, "{\"id\":\"%s\",\"text\":\"", id);
    for (int i = 0; i < n; i++)
        fprintf(f, i >= upper_from ? "W%s%s" : "%s%s", w[i] + (i >= upper_from), i + 1 < n ? (i % 9 == 8 ? ". " : " ") : "");
    fprintf(f, "\"}\n");
}

/* Known answers: p1, its copy in upper case, p1 with two words replaced (exact
 * Jaccard 186/206 = 0.903: far from 0.8 and from 0.99 for 128 permutations,
 * sd 0.026), an unrelated p2 and a p2 with 40% of its words replaced (~0.05),
 * short texts (one shingle) and texts without words. */
static void test_minhash_mode(void **state)
{
    (void)state;
    struct llm_rng r;
    llm_rng_seed(&r, 77);
    char *p1[200], *p2[200], *e1[200], *e2[200];
    words200(&r, p1), words200(&r, p2);
    memcpy(e1, p1, sizeof(p1)), memcpy(e2, p2, sizeof(p2));
    e1[60] = "changed", e1[140] = "edited";
    for (int i = 0; i < 200; i += 5)
        e2[i] = "x", e2[i + 2] = "y";
    char *in = test_path(dir, "near.jsonl"), *rep = test_path(dir, "rep.jsonl");
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    put_doc(f, "p1", p1, 200, 200);
    put_doc(f, "p2", p2, 200, 200);
    put_doc(f, "p1-case", p1, 200, 100); /* second half in upper case: equal once normalized */
    put_doc(f, "p1-edit", e1, 200, 200);
    fprintf(f, "{\"id\":\"short\",\"text\":\"a few words\"}\n");
    fprintf(f, "{\"id\":\"empty\",\"text\":\"...\"}\n");
    fprintf(f, "{\"id\":\"empty2\",\"text\":\"\"}\n");
    fprintf(f, "{\"id\":\"short2\",\"text\":\"A few, words!\"}\n");
    put_doc(f, "p2-far", e2, 200, 200);
    fclose(f);
    struct llm_dedup_opts o = {.mode = LLM_DEDUP_MINHASH, .report = rep};
    struct llm_dedup_stats st;
    char *out = run(&o, in, 0, &st);
    assert_non_null(strstr(out, "\"id\":\"p1\""));
    assert_non_null(strstr(out, "\"id\":\"p2\""));
    assert_null(strstr(out, "\"id\":\"p1-case\""));
    assert_null(strstr(out, "\"id\":\"p1-edit\""));
    assert_non_null(strstr(out, "\"id\":\"short\""));
    assert_null(strstr(out, "\"id\":\"short2\"")); /* same words: one shingle, equal */
    assert_non_null(strstr(out, "\"id\":\"empty\"")); /* no words: never a duplicate */
    assert_non_null(strstr(out, "\"id\":\"empty2\""));
    assert_non_null(strstr(out, "\"id\":\"p2-far\""));
    assert_true(strstr(out, "\"id\":\"p1\"") < strstr(out, "\"id\":\"p2\"")); /* input order */
    free(out);
    out = slurp(rep);
    assert_non_null(strstr(out, "{\"id\":\"p1-case\",\"duplicate_of\":\"p1\",\"jaccard\":1}\n"));
    assert_non_null(strstr(out, "{\"id\":\"short2\",\"duplicate_of\":\"short\",\"jaccard\":1}\n"));
    const char *key = "{\"id\":\"p1-edit\",\"duplicate_of\":\"p1\",\"jaccard\":", *e = strstr(out, key);
    assert_non_null(e);
    double j = strtod(e + strlen(key), NULL);
    printf("# p1-edit: estimated Jaccard %.4f (exact %.4f)\n", j, 186.0 / 206);
    assert_true(fabs(j - 186.0 / 206) < 0.1);
    free(out);
    assert_int_equal(st.docs_in, 9);
    assert_int_equal(st.removed, 3);
    assert_int_equal(st.docs_out, 6);
    assert_int_equal(st.clusters, 2);
    assert_int_equal(st.bands, 14);
    assert_int_equal(st.rows, 9);
    /* a stricter threshold keeps the edit */
    o.threshold = 0.99;
    out = run(&o, in, 0, &st);
    assert_non_null(strstr(out, "\"id\":\"p1-edit\""));
    assert_int_equal(st.removed, 2);
    free(out), free(in), free(rep);
    for (int i = 0; i < 200; i++)
        free(p1[i]), free(p2[i]);
}

/* Bad lines are skipped and counted (or fail with strict); no crash. */
static void test_bad_input(void **state)
{
    (void)state;
    static const char lines[] = "{\"id\":1,\"text\":\"ok one\"}\n"
                              "not json at all\n"
                              "{\"id\":2,\"body\":\"no text field\"}\n"
                              "{\"id\":3,\"text\":42}\n"
                              "{\"id\":4,\"text\":\"bad \xff\xfe utf8\"}\n"
                              "\x01\x02\x03\x00\x04 binary\n"
                              "[1,2,3]\n"
                              "{\"id\":5,\"text\":\"ok one\"}\n"
                              "{\"id\":6,\"text\":\"truncated";
    char *in = write_bytes("bad.jsonl", lines, sizeof(lines) - 1);
    FILE *saved = llm_log_stream();
    char *logp = test_path(dir, "log.txt");
    FILE *log = fopen(logp, "w+");
    llm_log_set_stream(log);
    const enum llm_dedup_mode modes[] = {LLM_DEDUP_EXACT, LLM_DEDUP_LINES, LLM_DEDUP_MINHASH};
    for (int m = 0; m < 3; m++) {
        struct llm_dedup_opts o = {.mode = modes[m]};
        struct llm_dedup_stats st;
        char *out = run(&o, in, 0, &st);
        assert_int_equal(st.docs_in, 2);
        assert_int_equal(st.skipped, 7);
        assert_int_equal(st.docs_out, modes[m] == LLM_DEDUP_LINES ? 0 : 1); /* lines: "ok one" twice */
        free(out);
        o.docs.strict = 1;
        out = run(&o, in, LLM_EINVAL, &st);
        assert_non_null(strstr(llm_errmsg(), "bad.jsonl:2:"));
        free(out);
    }
    llm_log_set_stream(saved);
    fclose(log);
    char *l = slurp(logp);
    assert_non_null(strstr(l, "skipped 7 bad documents"));
    free(l), free(logp), free(in);
    /* a missing file and bad options: errors, not crashes */
    struct llm_dedup_opts o = {.mode = LLM_DEDUP_EXACT};
    char *missing = test_path(dir, "missing.jsonl");
    free(run(&o, missing, LLM_EIO, NULL));
    free(missing);
    struct llm_dedup_opts bad[] = {
        {.mode = LLM_DEDUP_MINHASH, .threshold = 1.5},
        {.mode = LLM_DEDUP_MINHASH, .num_perm = 5000},
        {.mode = LLM_DEDUP_MINHASH, .bands = 20, .rows = 10},
        {.mode = LLM_DEDUP_MINHASH, .bands = 4},
        {.mode = LLM_DEDUP_LINES, .bloom = 1},
        {.mode = LLM_DEDUP_EXACT, .bloom = 1, .fp_rate = 2},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_int_equal(llm_dedup_check(&bad[i]), LLM_EUSAGE);
}

/* The output and report do not depend on the thread count or batch size. */
static void test_threads(void **state)
{
    (void)state;
    char *in = test_path(dir, "many.jsonl");
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    struct llm_rng r;
    llm_rng_seed(&r, 5);
    static const char *const vocab[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
                                        "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi"};
    char base[64][400];
    for (int b = 0; b < 64; b++) {
        size_t n = 0;
        for (int w = 0; w < 50; w++)
            n += (size_t)sprintf(base[b] + n, "%s ", vocab[llm_rng_below(&r, 16)]);
    }
    for (int i = 0; i < 3000; i++) { /* copies of 64 bases with a few words changed, or not */
        char t[400];
        strcpy(t, base[llm_rng_below(&r, 64)]);
        if (llm_rng_below(&r, 2))
            t[llm_rng_below(&r, 300)] = 'q';
        fprintf(f, "{\"id\":%d,\"text\":\"%s\\nline %d\"}\n", i, t, i % 7);
    }
    fclose(f);
    const enum llm_dedup_mode modes[] = {LLM_DEDUP_EXACT, LLM_DEDUP_LINES, LLM_DEDUP_MINHASH};
    char *rep = test_path(dir, "rep.jsonl");
    for (int m = 0; m < 3; m++) {
        struct llm_dedup_opts o = {.mode = modes[m], .threads = 1, .report = rep};
        char *one = run(&o, in, 0, NULL), *rep1 = slurp(rep);
        o.threads = 2, o.batch_bytes = 10000;
        char *two = run(&o, in, 0, NULL), *rep2 = slurp(rep);
        assert_string_equal(one, two);
        assert_string_equal(rep1, rep2);
        assert_true(strlen(one) > 0 && strlen(rep1) > 0);
        free(one), free(two), free(rep1), free(rep2);
    }
    free(rep), free(in);
}

static int setup(void **state)
{
    (void)state;
    dir = test_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_rmdir(dir);
    return 0;
}

int main(void)
{
    llm_log_set_level(LLM_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bloom),
        cmocka_unit_test(test_hashset),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_minhash_mode),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
