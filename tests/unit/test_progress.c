/* test_progress.c: the progress reporter as a bar (terminal) and as plain
 * periodic lines (file), driven by a fake clock; auto mode on a real pty. */
#include "testutil.h"

#include <pty.h>
#include "core/log.h"
#include "core/progress.h"

static double fake_time;
static double fake_clock(void) { return fake_time; }

static char *run_progress(enum llm_progress_mode mode, uint64_t total)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    struct llm_progress p;
    fake_time = 100.0;
    llm_progress_init(&p, f, "train", "steps", total, mode);
    p.clock = fake_clock;
    p.t0 = p.last = fake_time;
    p.interval = 5.0;
    for (int i = 1; i <= 20; i++) { /* one step a second for 20 s */
        fake_time += 1.0;
        llm_progress_fields(&p, "loss %.2f", 4.0 - 0.1 * i);
        llm_progress_set(&p, (uint64_t)i);
    }
    llm_progress_finish(&p);
    llm_progress_set(&p, 99); /* after finish: nothing more is drawn */
    fclose(f);
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_plain_lines(void **state)
{
    (void)state;
    char *out = run_progress(LLM_PROGRESS_LINES, 40);
    /* A line every 5 s of 20 s, plus the final line; no control characters. */
    if (count(out, "\n") != 5) fail_msg("output:\n%s", out);
    assert_int_equal(count(out, "\n"), 5);
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\033'));
    assert_non_null(strstr(out, "train:  12% 5/40 steps  1 steps/s  ETA 35s  5s  loss 3.50\n"));
    assert_non_null(strstr(out, "train:  50% 20/40 steps  1 steps/s  ETA 20s  20s  loss 2.00 (done)\n"));
    free(out);
}

static void test_bar(void **state)
{
    (void)state;
    char *out = run_progress(LLM_PROGRESS_BAR, 40);
    /* Redrawn in place at every update (each is >= 0.1 s apart), one newline at the end. */
    assert_int_equal(count(out, "\r"), 21);
    assert_int_equal(count(out, "\n"), 1);
    assert_non_null(strstr(out, "\rtrain [############............]  50% 20/40 steps"));
    assert_non_null(strstr(out, "loss 2.00\033[K\n"));
    free(out);
}

static void test_unknown_total_and_bytes(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    struct llm_progress p;
    fake_time = 0;
    llm_progress_init(&p, f, "read", "B", 0, LLM_PROGRESS_LINES);
    p.clock = fake_clock;
    p.t0 = p.last = 0;
    fake_time = 2.0;
    llm_progress_set(&p, 3000000000ULL);
    llm_progress_finish(&p);
    fclose(f);
    assert_string_equal(buf, "read: 3.00GB  1.50GB/s  2s (done)\n");
    free(buf);
}

static void test_quiet_is_off(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    llm_log_set_level(LLM_LOG_WARN);
    struct llm_progress p;
    llm_progress_init(&p, f, "x", "steps", 10, LLM_PROGRESS_LINES);
    llm_progress_set(&p, 5);
    llm_progress_finish(&p);
    llm_log_set_level(LLM_LOG_INFO);
    fclose(f);
    assert_int_equal(n, 0);
    free(buf);
}

static void test_auto_mode(void **state)
{
    (void)state;
    int master, slave;
    if (openpty(&master, &slave, NULL, NULL, NULL) != 0)
        SKIP_BECAUSE("openpty failed: no pseudo-terminals in this sandbox");
    FILE *tty = fdopen(slave, "w");
    struct llm_progress p;
    const char *term = getenv("TERM");
    char *saved = term ? strdup(term) : NULL;
    setenv("TERM", "xterm", 1);
    llm_progress_init(&p, tty, "x", "steps", 10, LLM_PROGRESS_AUTO);
    assert_int_equal(p.mode, LLM_PROGRESS_BAR);
    setenv("TERM", "dumb", 1); /* a dumb terminal cannot redraw: plain lines */
    llm_progress_init(&p, tty, "x", "steps", 10, LLM_PROGRESS_AUTO);
    assert_int_equal(p.mode, LLM_PROGRESS_LINES);
    if (saved)
        setenv("TERM", saved, 1), free(saved);
    else
        unsetenv("TERM");
    FILE *file = tmpfile();
    llm_progress_init(&p, file, "x", "steps", 10, LLM_PROGRESS_AUTO);
    assert_int_equal(p.mode, LLM_PROGRESS_LINES);
    fclose(file);
    fclose(tty);
    close(master);
}

static void test_formatting(void **state)
{
    (void)state;
    char b[32];
    llm_format_count(b, sizeof(b), 999);
    assert_string_equal(b, "999");
    llm_format_count(b, sizeof(b), 0.5);
    assert_string_equal(b, "0.50");
    llm_format_count(b, sizeof(b), 1234);
    assert_string_equal(b, "1.23k");
    llm_format_count(b, sizeof(b), 45600000);
    assert_string_equal(b, "45.6M");
    llm_format_duration(b, sizeof(b), 187);
    assert_string_equal(b, "3m07s");
    llm_format_duration(b, sizeof(b), 7500);
    assert_string_equal(b, "2h05m");
    llm_format_duration(b, sizeof(b), -1);
    assert_string_equal(b, "--");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_lines),
        cmocka_unit_test(test_bar),
        cmocka_unit_test(test_unknown_total_and_bytes),
        cmocka_unit_test(test_quiet_is_off),
        cmocka_unit_test(test_auto_mode),
        cmocka_unit_test(test_formatting),
    };
    return cmocka_run_group_tests_name("progress", tests, NULL, NULL);
}
