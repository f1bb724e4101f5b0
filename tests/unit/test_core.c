/* test_core.c: errors, string helpers (hints, UTF-8), atomic files, the flag
 * parser and the logger. */
#include "testutil.h"

#include <sys/stat.h>
#include "core/args.h"
#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/str.h"

static void test_err_messages(void **state)
{
    (void)state;
    assert_int_equal(llm_err(LLM_EIO, "cannot open '%s'", "x"), LLM_EIO);
    assert_string_equal(llm_errmsg(), "cannot open 'x'");
    assert_int_equal(llm_err_wrap(LLM_EINVAL, "reading '%s'", "cfg"), LLM_EINVAL);
    assert_string_equal(llm_errmsg(), "reading 'cfg': cannot open 'x'");
    llm_err_clear();
    assert_string_equal(llm_errmsg(), "");
    assert_null(llm_malloc((size_t)-1 / 2, "a huge thing"));
    assert_non_null(strstr(llm_errmsg(), "a huge thing"));
}

static void test_distance_and_hints(void **state)
{
    (void)state;
    assert_int_equal(llm_str_distance("", ""), 0);
    assert_int_equal(llm_str_distance("kitten", "sitting"), 3);
    assert_int_equal(llm_str_distance("abc", ""), 3);
    const char *cands[] = {"pretrain", "generate", "tokenize", "eval"};
    assert_string_equal(llm_str_closest("pretrian", cands, 4), "pretrain");
    assert_string_equal(llm_str_closest("evl", cands, 4), "eval");
    assert_null(llm_str_closest("frobnicate", cands, 4));
}

static void test_utf8(void **state)
{
    (void)state;
    size_t bad = 99;
    assert_true(llm_utf8_valid("plain ascii", 11, &bad));
    assert_true(llm_utf8_valid("\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 9, &bad)); /* é 中 😀 */
    struct { const char *s; size_t n, at; } badcases[] = {
        {"a\x80", 2, 1},             /* lone continuation byte */
        {"\xc0\xaf", 2, 0},          /* overlong '/' */
        {"\xe0\x80\xaf", 3, 0},      /* overlong, 3 bytes */
        {"\xed\xa0\x80", 3, 0},      /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, 0},  /* above U+10FFFF */
        {"ab\xe4\xb8", 4, 2},        /* truncated sequence */
        {"\xff", 1, 0},
    };
    for (size_t i = 0; i < sizeof(badcases) / sizeof(badcases[0]); i++) {
        assert_false(llm_utf8_valid(badcases[i].s, badcases[i].n, &bad));
        assert_int_equal(bad, badcases[i].at);
    }
}

static int count_entries(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void test_atomic_commit_and_abort(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "out.txt");
    struct llm_atomic a;
    assert_int_equal(llm_atomic_open(&a, path), 0);
    fputs("first", a.f);
    /* Before commit the final path does not exist; only the temp file does. */
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_equal(count_entries(dir), 1);
    assert_int_equal(llm_atomic_commit(&a), 0);
    char *buf;
    size_t len;
    assert_int_equal(llm_read_file(path, 1 << 20, &buf, &len), 0);
    assert_string_equal(buf, "first");
    free(buf);

    /* An aborted rewrite leaves the old content and no temp file. */
    assert_int_equal(llm_atomic_open(&a, path), 0);
    fputs("second, longer", a.f);
    llm_atomic_abort(&a);
    assert_int_equal(llm_read_file(path, 1 << 20, &buf, &len), 0);
    assert_string_equal(buf, "first");
    free(buf);
    assert_int_equal(count_entries(dir), 1);

    /* A folder that does not exist: an error naming the path, nothing created. */
    char *bad = test_path(dir, "nope/out.txt");
    assert_int_equal(llm_atomic_open(&a, bad), LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "nope/out.txt"));
    free(bad);
    free(path);
    test_rmdir(dir);
}

static void test_read_file_limits(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "big");
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 10000; i++)
        fputc('x', f);
    fclose(f);
    char *buf;
    size_t len;
    assert_int_equal(llm_read_file(path, 9999, &buf, &len), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "larger than"));
    assert_int_equal(llm_read_file(path, 10000, &buf, &len), 0);
    assert_int_equal(len, 10000);
    free(buf);
    assert_int_equal(llm_read_file(dir, 100, &buf, &len), LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "is a directory"));
    char *missing = test_path(dir, "missing");
    assert_int_equal(llm_read_file(missing, 100, &buf, &len), LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "cannot open"));
    free(missing);
    free(path);
    test_rmdir(dir);
}

/* The parser, on a command with every kind of option. */
static int flag_force;
static const char *opt_out;
static long opt_n;
static double opt_t;
static struct llm_strlist opt_set;
static const struct llm_opt opts[] = {
    {"force", 'f', LLM_OPT_FLAG, &flag_force, NULL, "overwrite"},
    {"output", 'o', LLM_OPT_STR, &opt_out, "FILE", "write here"},
    {"max-tokens", 'n', LLM_OPT_INT, &opt_n, "N", "how many"},
    {"temperature", 0, LLM_OPT_F64, &opt_t, "T", "sampling temperature"},
    {"set", 0, LLM_OPT_LIST, &opt_set, "K=V", "override"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const struct llm_cmd_spec spec = {
    .name = "demo", .usage = "[options] FILE...", .summary = "a test command",
    .opts = opts, .min_pos = 1, .max_pos = 2,
};

static int parse(int argc, char **argv, struct llm_args *a)
{
    flag_force = 0, opt_out = NULL, opt_n = 0, opt_t = 0;
    return llm_args_parse(&spec, argc, argv, a);
}

static void test_args_forms(void **state)
{
    (void)state;
    struct llm_args a;
    char *v1[] = {"demo", "--output=x.bin", "--max-tokens", "12", "-", "--temperature=-0.5",
                  "-f", "--set", "a.b=1", "--set=c=2", NULL};
    assert_int_equal(parse(10, v1, &a), 0);
    assert_string_equal(opt_out, "x.bin");
    assert_int_equal(opt_n, 12);
    assert_true(opt_t == -0.5);
    assert_int_equal(flag_force, 1);
    assert_int_equal(a.npos, 1);
    assert_string_equal(a.pos[0], "-");
    assert_int_equal(opt_set.n, 2);
    assert_string_equal(opt_set.v[0], "a.b=1");
    assert_string_equal(opt_set.v[1], "c=2");
    llm_args_release(&spec, &a);

    char *v2[] = {"demo", "-oout", "-fqv", "a", "--", "-b", NULL};
    assert_int_equal(parse(6, v2, &a), 0);
    assert_string_equal(opt_out, "out");
    assert_int_equal(flag_force, 1);
    assert_int_equal(a.quiet, 1);
    assert_int_equal(a.verbose, 1);
    assert_int_equal(a.npos, 2);
    assert_string_equal(a.pos[1], "-b");
    llm_args_release(&spec, &a);

    char *v3[] = {"demo", "--help", NULL}; /* help skips the positional count */
    assert_int_equal(parse(2, v3, &a), 0);
    assert_int_equal(a.help, 1);
    llm_args_release(&spec, &a);
}

static void test_args_errors(void **state)
{
    (void)state;
    struct llm_args a;
    struct { int argc; char *argv[5]; const char *msg; } cases[] = {
        {3, {"demo", "--outptu", "x"}, "unknown option '--outptu' (did you mean '--output'?)"},
        {3, {"demo", "--zzzzzzzz", "x"}, "unknown option '--zzzzzzzz'"},
        {3, {"demo", "-x", "f"}, "unknown option '-x'"},
        {3, {"demo", "f", "--max-tokens"}, "option '--max-tokens' needs a value"},
        {4, {"demo", "--max-tokens", "1.5", "f"}, "option '--max-tokens' expects an integer, got '1.5'"},
        {4, {"demo", "--temperature", "hot", "f"}, "expects a number, got 'hot'"},
        {3, {"demo", "--force=yes", "f"}, "option '--force' takes no value"},
        {1, {"demo"}, "missing argument"},
        {4, {"demo", "a", "b", "c"}, "unexpected argument 'c'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(cases[i].argc, cases[i].argv, &a), LLM_EUSAGE);
        if (!strstr(llm_errmsg(), cases[i].msg))
            fail_msg("case %zu: got '%s', wanted '%s'", i, llm_errmsg(), cases[i].msg);
        llm_args_release(&spec, &a);
    }
}

static void test_args_usage(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    llm_args_usage(f, &spec);
    fclose(f);
    assert_non_null(strstr(buf, "usage: llm demo [options] FILE..."));
    assert_non_null(strstr(buf, "-o, --output FILE"));
    assert_non_null(strstr(buf, "--set K=V"));
    assert_non_null(strstr(buf, "(repeatable)"));
    assert_non_null(strstr(buf, "-h, --help"));
    free(buf);
}

static void test_log_levels(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    llm_log_set_stream(f);
    llm_log_set_level(LLM_LOG_WARN);
    llm_info("hidden %d", 1);
    llm_warn("shown %d", 2);
    llm_log_set_level(LLM_LOG_DEBUG);
    llm_debug("detail");
    llm_log_set_level(LLM_LOG_INFO);
    llm_log_set_stream(NULL);
    fclose(f);
    assert_string_equal(buf, "warning: shown 2\ndebug: detail\n");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_messages),
        cmocka_unit_test(test_distance_and_hints),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_atomic_commit_and_abort),
        cmocka_unit_test(test_read_file_limits),
        cmocka_unit_test(test_args_forms),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_args_usage),
        cmocka_unit_test(test_log_levels),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
