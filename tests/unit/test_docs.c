/* test_docs.c: the JSONL document stream of the data tools: ids, raw
 * pass-through, added and replaced fields, bad lines (counted, or strict
 * errors naming path:line), several inputs, and batches equal to one-by-one
 * reading for any thread count. */
#include "testutil.h"

#include "core/err.h"
#include "core/log.h"
#include "data/docs.h"

static char *dir;

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

static char *put(const char *name, const char *body)
{
    char *p = test_path(dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
    return p;
}

/* The line d is written as (caller frees). */
static char *written(const struct llm_doc *d)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_int_equal(llm_doc_write(f, d, "mem"), 0);
    fclose(f);
    return buf;
}

static const char *lines =
    "{\"id\": \"a\",  \"text\": \"first\", \"x\": [1, 2.50]}\n"
    "\n"
    "{\"id\":7,\"text\":\"caf\\u00e9\"}\r\n"
    "not json\n"
    "[1, 2]\n"
    "{\"id\":2.5,\"text\":3}\n"
    "{\"text\":\"no id\"} trailing\n"
    "{\"id\":null,\"text\":\"\"}\n"
    "{\"id\":\"bad\",\"text\":\"\xff\"}\n"
    "{}\n";

static void test_read_and_write(void **state)
{
    (void)state;
    char *p = put("a.jsonl", lines);
    const char *paths[] = {p};
    struct llm_docs_reader r;
    assert_int_equal(llm_docs_open(&r, paths, 1, NULL), 0);
    struct llm_doc d;
    assert_int_equal(llm_docs_next(&r, &d), 1);
    assert_string_equal(d.id, "a");
    assert_string_equal(d.text, "first");
    assert_int_equal(d.line, 1);
    char *w = written(&d); /* unchanged: byte for byte, spacing and "2.50" kept */
    assert_string_equal(w, "{\"id\": \"a\",  \"text\": \"first\", \"x\": [1, 2.50]}\n");
    free(w);
    assert_int_equal(llm_doc_set_num(&d, "quality", 0.934567), 0);
    assert_int_equal(llm_doc_set_str(&d, "lang", "e\"n\n", 4), 0);
    w = written(&d); /* added fields go before the closing brace */
    assert_string_equal(w, "{\"id\": \"a\",  \"text\": \"first\", \"x\": [1, 2.50],"
                           "\"quality\":0.934567,\"lang\":\"e\\\"n\\n\"}\n");
    free(w);
    assert_int_equal(llm_doc_set_str(&d, "text", "second", 6), 0); /* replaced: re-printed */
    assert_string_equal(d.text, "second");
    w = written(&d);
    assert_string_equal(w, "{\"id\":\"a\",\"text\":\"second\",\"x\":[1,2.5],"
                           "\"quality\":0.934567,\"lang\":\"e\\\"n\\n\"}\n");
    free(w);
    llm_doc_remove(&d, "x");
    assert_int_equal(llm_doc_render(&d), 0);
    assert_string_equal(d.out, "{\"id\":\"a\",\"text\":\"second\",\"quality\":0.934567,"
                               "\"lang\":\"e\\\"n\\n\"}");
    llm_doc_release(&d);
    assert_int_equal(llm_docs_next(&r, &d), 1); /* the blank line is not a document */
    assert_string_equal(d.id, "7");
    assert_string_equal(d.text, "café");
    assert_int_equal(d.line, 3);
    llm_doc_release(&d);
    assert_int_equal(llm_docs_next(&r, &d), 1);
    assert_int_equal(d.line, 8);
    assert_null(d.id);
    assert_int_equal(d.text_len, 0);
    llm_doc_release(&d);
    assert_int_equal(llm_docs_next(&r, &d), 0);
    assert_int_equal(r.read, 9);
    assert_int_equal(r.skipped, 6);
    llm_docs_close(&r);
    free(p);
}

static void test_strict_and_fields(void **state)
{
    (void)state;
    char *p = put("b.jsonl", lines);
    const char *paths[] = {p};
    struct llm_docs_reader r;
    struct llm_docs_opts o = {.strict = 1};
    struct llm_doc d;
    assert_int_equal(llm_docs_open(&r, paths, 1, &o), 0);
    assert_int_equal(llm_docs_next(&r, &d), 1);
    llm_doc_release(&d);
    assert_int_equal(llm_docs_next(&r, &d), 1);
    llm_doc_release(&d);
    assert_int_equal(llm_docs_next(&r, &d), LLM_EINVAL);
    char want[512];
    snprintf(want, sizeof(want), "%s:4: invalid JSON near column 1", p);
    assert_string_equal(llm_errmsg(), want);
    llm_docs_close(&r);
    /* another text field; a number id that is not an integer */
    o.strict = 0, o.field = "x";
    assert_int_equal(llm_docs_open(&r, paths, 1, &o), 0);
    assert_int_equal(llm_docs_next(&r, &d), 0); /* "x" is never a string */
    llm_docs_close(&r);
    char *q = put("c.jsonl", "{\"id\":2.5,\"text\":\"t\"}\n{\"id\":-3,\"text\":\"u\"}\n{}\n");
    paths[0] = q;
    assert_int_equal(llm_docs_open(&r, paths, 1, NULL), 0);
    assert_int_equal(llm_docs_next(&r, &d), 1);
    assert_string_equal(d.id, "2.5");
    llm_doc_release(&d);
    assert_int_equal(llm_docs_next(&r, &d), 1);
    assert_string_equal(d.id, "-3");
    llm_doc_release(&d);
    llm_docs_close(&r);
    /* a field added to an empty object: no stray comma */
    struct llm_doc e = {0};
    e.obj = cJSON_CreateObject();
    e.raw = "{ }", e.raw_len = 3, e.field = "text";
    assert_int_equal(llm_doc_set_str(&e, "text", "t", 1), 0);
    char *w = written(&e);
    assert_string_equal(w, "{ \"text\":\"t\"}\n");
    free(w);
    llm_doc_release(&e);
    /* new documents; a missing input is an error naming it */
    assert_int_equal(llm_doc_new(&e, "id1", "text", "a\tb", 3), 0);
    w = written(&e);
    assert_string_equal(w, "{\"id\":\"id1\",\"text\":\"a\\tb\"}\n");
    free(w);
    llm_doc_release(&e);
    paths[0] = "/nonexistent/x.jsonl";
    assert_int_equal(llm_docs_open(&r, paths, 1, NULL), LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "/nonexistent/x.jsonl"));
    free(p), free(q);
}

static void test_batches(void **state)
{
    (void)state;
    /* two inputs: batches (any size, any thread count) give what next() gives */
    char *p = put("d.jsonl", lines), *q = test_path(dir, "e.jsonl");
    FILE *f = fopen(q, "w");
    for (int i = 0; i < 500; i++)
        fprintf(f, i % 7 == 3 ? "broken %d\n" : "{\"id\":%d,\"text\":\"doc\"}\n", i);
    fclose(f);
    const char *paths[] = {p, q};
    char *ref = NULL, *got = NULL;
    size_t rn = 0, gn = 0;
    FILE *rf = open_memstream(&ref, &rn);
    struct llm_docs_reader r;
    struct llm_doc d;
    llm_log_set_level(LLM_LOG_ERROR); /* the skips are expected */
    assert_int_equal(llm_docs_open(&r, paths, 2, NULL), 0);
    while (llm_docs_next(&r, &d) == 1) {
        fprintf(rf, "%s:%llu ", d.path, (unsigned long long)d.line);
        assert_int_equal(llm_doc_write(rf, &d, "mem"), 0);
        llm_doc_release(&d);
    }
    uint64_t read = r.read, skipped = r.skipped;
    llm_docs_close(&r);
    fclose(rf);
    for (int threads = 1; threads <= 2; threads++) {
        for (size_t bytes = 1; bytes <= 1u << 20; bytes *= 64) {
            FILE *gf = open_memstream(&got, &gn);
            assert_int_equal(llm_docs_open(&r, paths, 2, NULL), 0);
            struct llm_doc_batch b = {0};
            int rc;
            while ((rc = llm_docs_read_batch(&r, &b, bytes, threads)) == 1)
                for (size_t i = 0; i < b.n; i++) {
                    fprintf(gf, "%s:%llu ", b.docs[i].path, (unsigned long long)b.docs[i].line);
                    assert_int_equal(llm_doc_write(gf, &b.docs[i], "mem"), 0);
                }
            assert_int_equal(rc, 0);
            assert_int_equal(r.read, read);
            assert_int_equal(r.skipped, skipped);
            llm_doc_batch_release(&b);
            llm_docs_close(&r);
            fclose(gf);
            assert_string_equal(got, ref);
            free(got);
        }
    }
    llm_log_set_level(LLM_LOG_INFO);
    /* strict in a batch: the first bad line in input order */
    struct llm_docs_opts o = {.strict = 1};
    struct llm_doc_batch b = {0};
    assert_int_equal(llm_docs_open(&r, paths + 1, 1, &o), 0);
    assert_int_equal(llm_docs_read_batch(&r, &b, 1u << 20, 2), LLM_EINVAL);
    char want[512];
    snprintf(want, sizeof(want), "%s:4: invalid JSON near column 1", q);
    assert_string_equal(llm_errmsg(), want);
    llm_doc_batch_release(&b);
    llm_docs_close(&r);
    free(ref), free(p), free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_and_write),
        cmocka_unit_test(test_strict_and_fields),
        cmocka_unit_test(test_batches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
