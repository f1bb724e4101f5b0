/* test_jsonl.c: the streaming JSONL reader (line numbers in errors, bounded
 * buffer on big files) and writer. */
#include "testutil.h"

#include "core/err.h"
#include "core/file.h"
#include "core/jsonl.h"

static char *write_tmp(const char *dir, const char *name, const char *data, size_t n)
{
    char *p = test_path(dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return p;
}

static void test_reads_objects(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    const char data[] = "{\"id\":1,\"text\":\"a\"}\n\n  \r\n{\"id\":2,\"text\":\"b\\n\"}\r\n{\"id\":3}";
    char *p = write_tmp(dir, "a.jsonl", data, sizeof(data) - 1);
    struct llm_jsonl_reader r;
    assert_int_equal(llm_jsonl_open(&r, p, 0), 0);
    cJSON *o;
    int ids[3], n = 0, rc;
    while ((rc = llm_jsonl_next(&r, &o)) == 1) {
        ids[n++] = cJSON_GetObjectItem(o, "id")->valueint;
        if (n == 2)
            assert_string_equal(cJSON_GetObjectItem(o, "text")->valuestring, "b\n");
        cJSON_Delete(o);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 3);
    assert_int_equal(r.line, 5);
    llm_jsonl_close(&r);
    free(p);
    test_rmdir(dir);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    struct { const char *data; const char *msg; } cases[] = {
        {"{\"a\":1}\n{\"a\":\n", "bad.jsonl:2: invalid JSON"},
        {"{}\n{}\n[1,2]\n", "bad.jsonl:3: expected a JSON object"},
        {"{\"t\":\"\xff\"}\n", "bad.jsonl:1: invalid UTF-8 at byte 7"},
        {"{} {}\n", "bad.jsonl:1: text after the JSON value at column 4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *p = write_tmp(dir, "bad.jsonl", cases[i].data, strlen(cases[i].data));
        struct llm_jsonl_reader r;
        assert_int_equal(llm_jsonl_open(&r, p, 0), 0);
        cJSON *o;
        int rc;
        while ((rc = llm_jsonl_next(&r, &o)) == 1)
            cJSON_Delete(o);
        assert_int_equal(rc, LLM_EINVAL);
        if (!strstr(llm_errmsg(), cases[i].msg))
            fail_msg("case %zu: got '%s'", i, llm_errmsg());
        llm_jsonl_close(&r);
        free(p);
    }
    struct llm_jsonl_reader r;
    char *missing = test_path(dir, "missing.jsonl");
    assert_int_equal(llm_jsonl_open(&r, missing, 0), LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "missing.jsonl"));
    free(missing);
    test_rmdir(dir);
}

static void test_bounded_buffer(void **state)
{
    (void)state;
    /* 16 MiB of 100-byte lines: the buffer never grows past its first size. */
    char *dir = test_mkdtemp(), *p = test_path(dir, "big.jsonl");
    FILE *f = fopen(p, "wb");
    char line[101];
    memset(line, 'x', sizeof(line));
    memcpy(line, "{\"t\":\"", 6);
    memcpy(line + 97, "\"}\n", 3);
    int lines = (16 << 20) / 100;
    for (int i = 0; i < lines; i++)
        fwrite(line, 1, 100, f);
    /* then one line longer than the 1 MiB limit given below */
    for (int i = 0; i < (1 << 20) + 10; i++)
        fputc('y', f);
    fputc('\n', f);
    fclose(f);
    struct llm_jsonl_reader r;
    assert_int_equal(llm_jsonl_open(&r, p, 1 << 20), 0);
    size_t cap0 = r.cap;
    char *s;
    size_t n;
    int got = 0, rc;
    while ((rc = llm_jsonl_next_line(&r, &s, &n)) == 1) {
        assert_int_equal(n, 99);
        got++;
    }
    assert_int_equal(got, lines);
    assert_int_equal(rc, LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "line is longer than 1048576 bytes"));
    char want[64];
    snprintf(want, sizeof(want), ":%d:", lines + 1);
    assert_non_null(strstr(llm_errmsg(), want));
    assert_true(r.cap <= cap0 + 2);
    llm_jsonl_close(&r);
    free(p);
    test_rmdir(dir);
}

static void test_long_line_grows_buffer(void **state)
{
    (void)state;
    /* A 3 MiB line with a 4 MiB limit is read whole. */
    char *dir = test_mkdtemp();
    size_t len = 3u << 20;
    char *data = malloc(len + 16);
    memcpy(data, "{\"t\":\"", 6);
    memset(data + 6, 'z', len - 8);
    memcpy(data + len - 2, "\"}", 2);
    data[len] = '\n';
    char *p = write_tmp(dir, "long.jsonl", data, len + 1);
    struct llm_jsonl_reader r;
    assert_int_equal(llm_jsonl_open(&r, p, 4u << 20), 0);
    cJSON *o;
    assert_int_equal(llm_jsonl_next(&r, &o), 1);
    assert_int_equal(strlen(cJSON_GetObjectItem(o, "t")->valuestring), len - 8);
    cJSON_Delete(o);
    assert_int_equal(llm_jsonl_next(&r, &o), 0);
    llm_jsonl_close(&r);
    free(data);
    free(p);
    test_rmdir(dir);
}

static void test_writer_roundtrip(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *p = test_path(dir, "out.jsonl");
    struct llm_atomic a;
    assert_int_equal(llm_atomic_open(&a, p), 0);
    for (int i = 0; i < 3; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", i);
        cJSON_AddStringToObject(o, "text", "line\nbreak \"quoted\" \xc3\xa9");
        assert_int_equal(llm_jsonl_write(a.f, o, p), 0);
        cJSON_Delete(o);
    }
    assert_int_equal(llm_atomic_commit(&a), 0);
    struct llm_jsonl_reader r;
    assert_int_equal(llm_jsonl_open(&r, p, 0), 0);
    cJSON *o;
    int n = 0;
    while (llm_jsonl_next(&r, &o) == 1) {
        assert_int_equal(cJSON_GetObjectItem(o, "id")->valueint, n++);
        assert_string_equal(cJSON_GetObjectItem(o, "text")->valuestring,
                            "line\nbreak \"quoted\" \xc3\xa9");
        cJSON_Delete(o);
    }
    assert_int_equal(n, 3);
    assert_int_equal(r.line, 3);
    llm_jsonl_close(&r);
    free(p);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_objects),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_bounded_buffer),
        cmocka_unit_test(test_long_line_grows_buffer),
        cmocka_unit_test(test_writer_roundtrip),
    };
    return cmocka_run_group_tests_name("jsonl", tests, NULL, NULL);
}
