/* test_verify.c: the GRPO/PPO verifiers: exact (last number, marker, tags), regex, format, weighted sums,
 * spec errors, and the command protocol with small shell scripts (good, failing, short, slow, not numbers,
 * big input and output through the pipes, a child that stops reading). */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include "align/verify.h"
#include "core/err.h"

/* Items {"prompt", "completion", "answer"} for the given completions (answer a string, or a number if the
 * string is NULL). */
static cJSON **items_of(const char *const *completions, const char *answer, double num, int n)
{
    cJSON **it = calloc((size_t)n, sizeof(*it));
    for (int i = 0; i < n; i++) {
        it[i] = cJSON_CreateObject();
        cJSON_AddStringToObject(it[i], "prompt", "12+34=");
        cJSON_AddStringToObject(it[i], "completion", completions[i]);
        if (answer)
            cJSON_AddStringToObject(it[i], "answer", answer);
        else
            cJSON_AddNumberToObject(it[i], "answer", num);
    }
    return it;
}

static void items_free(cJSON **it, int n)
{
    for (int i = 0; i < n; i++)
        cJSON_Delete(it[i]);
    free(it);
}

/* Scores completions against answer with spec/opts; the rewards into r. */
static int score(const char *spec, const struct llm_verifier_opts *o, const char *const *comp, int n,
                 const char *answer, double *r)
{
    struct llm_verifier *v;
    int rc = llm_verifier_new(&v, spec, o);
    if (rc)
        return rc;
    cJSON **it = items_of(comp, answer, 0, n);
    rc = llm_verifier_score(v, (const cJSON *const *)it, n, r);
    items_free(it, n);
    llm_verifier_free(v);
    return rc;
}

static void test_exact_last_number(void **state)
{
    (void)state;
    const char *c[] = {"12+34 is 46.", "46.0", "the answer: 4,6", "no number", "46 or 47", "-46", "$46"};
    double r[7];
    assert_int_equal(score("exact", NULL, c, 7, "46", r), 0);
    double want[] = {1, 1, 1, 0, 0, 0, 1};
    for (int i = 0; i < 7; i++)
        assert_true(r[i] == want[i]);
    /* a numeric gold answer, "18" == "18.0" */
    struct llm_verifier *v;
    assert_int_equal(llm_verifier_new(&v, "exact", NULL), 0);
    const char *c2[] = {"so 18", "18.000", "1,234.5", "1234.50"};
    cJSON **it = items_of(c2, NULL, 18, 2);
    assert_int_equal(llm_verifier_score(v, (const cJSON *const *)it, 2, r), 0);
    assert_true(r[0] == 1 && r[1] == 1);
    items_free(it, 2);
    it = items_of(c2 + 2, NULL, 1234.5, 2);
    assert_int_equal(llm_verifier_score(v, (const cJSON *const *)it, 2, r), 0);
    assert_true(r[0] == 1 && r[1] == 1);
    /* no "answer": an error naming the item */
    cJSON_DeleteItemFromObject(it[1], "answer");
    assert_int_equal(llm_verifier_score(v, (const cJSON *const *)it, 2, r), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "item 1"));
    items_free(it, 2);
    llm_verifier_free(v);
}

static void test_exact_marker(void **state)
{
    (void)state;
    struct llm_verifier_opts o = {.marker = "####"};
    const char *c[] = {"12 and 34 #### 46\nthen 99", "#### 45 #### 46", "46 but no marker", "#### ", "####46."};
    double r[5];
    assert_int_equal(score("exact", &o, c, 5, "46", r), 0);
    double want[] = {1, 1, 0, 0, 1};
    for (int i = 0; i < 5; i++)
        assert_true(r[i] == want[i]);
    /* a tag marker ends at its closing tag; text answers are compared after normalization */
    o.marker = "<answer>";
    const char *s[] = {" <answer>apple Bird cat</answer>", "<answer>x</answer> <answer>apple bird cat</answer> ok",
                       "<answer>apple bird</answer>", "apple bird cat"};
    assert_int_equal(score("exact", &o, s, 4, "apple bird cat", r), 0);
    assert_true(r[0] == 1 && r[1] == 1 && r[2] == 0 && r[3] == 0);
    int err;
    char *a = llm_verifier_extract("x <answer> 1,234 </answer>", "<answer>", &err);
    assert_int_equal(err, 0);
    assert_string_equal(a, "1234");
    free(a);
    assert_null(llm_verifier_extract("nothing", NULL, &err));
    assert_int_equal(err, 0);
}

static void test_regex(void **state)
{
    (void)state;
    struct llm_verifier_opts o = {.regex = "^\\s*<answer>\\d+</answer>$"};
    const char *c[] = {" <answer>46</answer>", "<answer>4a</answer>", "x <answer>46</answer>", "caf\xc3\xa9 \xff\xfe"};
    double r[4];
    assert_int_equal(score("regex", &o, c, 4, "46", r), 0);
    assert_true(r[0] == 1 && r[1] == 0 && r[2] == 0 && r[3] == 0);
    /* UTF: "." is one character, even in a completion with invalid bytes elsewhere */
    o.regex = "^caf.$";
    const char *u[] = {"caf\xc3\xa9", "caf\xc3\xa9\xff"};
    assert_int_equal(score("regex", &o, u, 2, "", r), 0);
    assert_true(r[0] == 1 && r[1] == 0);
}

static void test_format(void **state)
{
    (void)state;
    const char *c[] = {" <answer>46</answer>", "think <answer>46</answer> done", "<answer></answer>",
                       "<answer> \n </answer>", "<answer>1</answer><answer>2</answer>", "</answer>46<answer>",
                       "<answer>46", "46</answer>", "<answer>4<answer>6</answer>", ""};
    double want[] = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    double r[10];
    assert_int_equal(score("format", NULL, c, 10, "46", r), 0); /* default tags <answer>,</answer> */
    for (int i = 0; i < 10; i++)
        if (r[i] != want[i])
            fail_msg("format of '%s': %g, wanted %g", c[i], r[i], want[i]);
    struct llm_verifier_opts o = {.format_tags = ""}; /* empty: the default tags too */
    assert_int_equal(score("format", &o, c, 2, "46", r), 0);
    assert_true(r[0] == 1 && r[1] == 1);
    o.format_tags = "```,```";
    const char *f[] = {"```x = 1```", "``````", "```a``` ```b```", "```a"};
    assert_int_equal(score("format", &o, f, 4, "", r), 0);
    assert_true(r[0] == 1 && r[1] == 0 && r[2] == 0 && r[3] == 0);
}

static void test_weights_and_terms(void **state)
{
    (void)state;
    struct llm_verifier *v;
    assert_int_equal(llm_verifier_new(&v, " exact:1 , format:0.25,regex:-0.5", &(struct llm_verifier_opts){
                                                                                   .regex = "sorry"}),
                     0);
    assert_int_equal(llm_verifier_terms(v), 3);
    assert_string_equal(llm_verifier_term_name(v, 0), "exact");
    assert_string_equal(llm_verifier_term_name(v, 1), "format");
    assert_string_equal(llm_verifier_term_name(v, 2), "regex");
    assert_true(llm_verifier_term_weight(v, 2) == -0.5);
    assert_null(llm_verifier_term_name(v, 3));
    const char *c[] = {" <answer>46</answer>", "46", "<answer>sorry</answer>", "sorry, 47"};
    cJSON **it = items_of(c, "46", 0, 4);
    double r[4];
    assert_int_equal(llm_verifier_score(v, (const cJSON *const *)it, 4, r), 0);
    double want[] = {1.25, 1, 0.25 - 0.5, -0.5};
    for (int i = 0; i < 4; i++)
        assert_true(fabs(r[i] - want[i]) < 1e-12);
    const double *ex = llm_verifier_term_rewards(v, 0), *fm = llm_verifier_term_rewards(v, 1);
    assert_true(ex[0] == 1 && ex[1] == 1 && ex[2] == 0 && ex[3] == 0);
    assert_true(fm[0] == 1 && fm[1] == 0 && fm[2] == 1 && fm[3] == 0);
    /* no items: nothing to do */
    assert_int_equal(llm_verifier_score(v, NULL, 0, r), 0);
    /* an item without a completion */
    cJSON_DeleteItemFromObject(it[2], "completion");
    assert_int_equal(llm_verifier_score(v, (const cJSON *const *)it, 4, r), LLM_EINVAL);
    assert_non_null(strstr(llm_errmsg(), "item 2"));
    items_free(it, 4);
    llm_verifier_free(v);
    llm_verifier_free(NULL);
}

/* llm_verifier_new fails with code and a message holding want. */
static void expect_spec_error(const char *spec, const struct llm_verifier_opts *o, int code, const char *want)
{
    struct llm_verifier *v = (struct llm_verifier *)1;
    int rc = llm_verifier_new(&v, spec, o);
    if (rc != code || !strstr(llm_errmsg(), want))
        fail_msg("spec '%s': rc %d, message '%s' (wanted %d and '%s')", spec, rc, llm_errmsg(), code, want);
    assert_null(v);
}

static void test_spec_errors(void **state)
{
    (void)state;
    expect_spec_error("exakt", NULL, LLM_EUSAGE, "did you mean 'exact'");
    expect_spec_error("exact,bleu", NULL, LLM_EUSAGE, "unknown verifier 'bleu'");
    expect_spec_error("exact:abc", NULL, LLM_EUSAGE, "weight 'abc'");
    expect_spec_error("exact:inf", NULL, LLM_EUSAGE, "not a finite number");
    expect_spec_error("exact:", NULL, LLM_EUSAGE, "weight ''");
    expect_spec_error("", NULL, LLM_EUSAGE, "expected comma-separated");
    expect_spec_error("exact,", NULL, LLM_EUSAGE, "expected comma-separated");
    expect_spec_error("exact,,format", NULL, LLM_EUSAGE, "empty term");
    expect_spec_error("exact,exact:2", NULL, LLM_EUSAGE, "given twice");
    expect_spec_error("regex", NULL, LLM_EUSAGE, "no pattern");
    expect_spec_error("regex", &(struct llm_verifier_opts){.regex = "a(b"}, LLM_EUSAGE, "at offset 3");
    expect_spec_error("format", &(struct llm_verifier_opts){.format_tags = "<answer>"}, LLM_EUSAGE, "open,close");
    expect_spec_error("command", NULL, LLM_EUSAGE, "no program");
    const char *nope[] = {"/nonexistent/verifier"};
    expect_spec_error("command", &(struct llm_verifier_opts){.argv = nope, .argc = 1}, LLM_EUSAGE,
                      "'/nonexistent/verifier' is not an executable file");
    const char *notonpath[] = {"llm-no-such-verifier-xyz"};
    expect_spec_error("command", &(struct llm_verifier_opts){.argv = notonpath, .argc = 1}, LLM_EUSAGE,
                      "not found on PATH");
    const char *dir[] = {"/tmp"};
    expect_spec_error("command", &(struct llm_verifier_opts){.argv = dir, .argc = 1}, LLM_EUSAGE,
                      "not an executable file");
}

/* ---- the command ---- */

static char *script(const char *dir, const char *name, const char *body)
{
    char *p = test_path(dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(p, 0755), 0);
    return p;
}

/* Runs script body on the completions; returns llm_verifier_score's code. */
static int run_script(const char *dir, const char *body, double timeout, const char *const *comp, int n, double *r)
{
    char *p = script(dir, "v.sh", body);
    const char *argv[] = {p, "extra-arg"};
    struct llm_verifier_opts o = {.argv = argv, .argc = 2, .timeout_s = timeout};
    int rc = score("command", &o, comp, n, "46", r);
    free(p);
    return rc;
}

static void test_command_good(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    /* one line per item: 1 if its completion is "46", 0.25 if it holds the answer field, and $1 must be
     * the extra argument (no shell splitting on the way) */
    const char *body = "[ \"$1\" = extra-arg ] || exit 3\n"
                       "while IFS= read -r line; do\n"
                       "  case \"$line\" in\n"
                       "    *'\"completion\":\"46\"'*) echo 1 ;;\n"
                       "    *'\"answer\":\"46\"'*) printf ' 0.25\\r\\n' ;;\n"
                       "    *) echo x ;;\n"
                       "  esac\n"
                       "done";
    const char *c[] = {"46", "47", "46"};
    double r[3];
    assert_int_equal(run_script(dir, body, 0, c, 3, r), 0);
    assert_true(r[0] == 1 && r[1] == 0.25 && r[2] == 1);
    /* extra fields pass through, and the last line may lack its newline */
    char *p = script(dir, "x.sh", "grep -c '\"level\":3' >/dev/null && printf '2\\n-1.5e0'");
    const char *argv[] = {p};
    struct llm_verifier *v;
    assert_int_equal(llm_verifier_new(&v, "command:0.5,exact", &(struct llm_verifier_opts){.argv = argv, .argc = 1}),
                     0);
    cJSON **it = items_of(c, "46", 0, 2);
    cJSON_AddNumberToObject(it[1], "level", 3);
    assert_int_equal(llm_verifier_score(v, (const cJSON *const *)it, 2, r), 0);
    assert_true(r[0] == 0.5 * 2 + 1 && r[1] == 0.5 * -1.5);
    assert_true(llm_verifier_term_rewards(v, 0)[1] == -1.5);
    items_free(it, 2);
    llm_verifier_free(v);
    free(p);
    test_rmdir(dir);
}

static void test_command_failures(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    const char *c[] = {"46", "47", "48"};
    double r[3];
    assert_int_equal(run_script(dir, "cat >/dev/null; echo 'bad things happened' >&2; exit 1", 0, c, 3, r),
                     LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "v.sh' exited with status 1"));
    assert_non_null(strstr(llm_errmsg(), "its stderr: 'bad things happened'"));

    assert_int_equal(run_script(dir, "cat >/dev/null; echo 1; echo 1", 0, c, 3, r), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "printed 2 lines for 3 items"));
    assert_int_equal(run_script(dir, "cat >/dev/null; for i in 1 2 3 4; do echo 1; done", 0, c, 3, r), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "printed 4 lines for 3 items"));

    assert_int_equal(run_script(dir, "cat >/dev/null; echo 1; echo abc; echo 1", 0, c, 3, r), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "line 2 of its output is not a finite number: 'abc'"));
    assert_int_equal(run_script(dir, "cat >/dev/null; echo 1; echo 2; echo nan", 0, c, 3, r), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "line 3"));

    /* past the timeout: killed (with what it started) and reaped */
    assert_int_equal(run_script(dir, "echo starting >&2; sleep 30", 0.5, c, 3, r), LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "timed out after 0.5 s"));
    assert_non_null(strstr(llm_errmsg(), "starting"));

    assert_int_equal(run_script(dir, "kill -KILL $$", 0, c, 3, r), LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "killed by signal 9"));

    /* executable but not runnable: exec's own error */
    char *p = test_path(dir, "bad.sh");
    FILE *f = fopen(p, "w");
    fputs("#!/nonexistent/interpreter\n", f);
    fclose(f);
    chmod(p, 0755);
    const char *argv[] = {p};
    assert_int_equal(score("command", &(struct llm_verifier_opts){.argv = argv, .argc = 1}, c, 3, "46", r),
                     LLM_EIO);
    assert_non_null(strstr(llm_errmsg(), "cannot run it"));
    free(p);
    test_rmdir(dir);
}

/* More than a pipe buffer both ways: the command prints all its output before it reads its input, so
 * a writer that blocked on stdin would deadlock. And a command that exits without reading its input. */
static void test_command_pipes(void **state)
{
    (void)state;
    char *dir = test_mkdtemp();
    enum { N = 20000 };
    char **comp = malloc(N * sizeof(*comp));
    char text[200];
    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = 0;
    for (int i = 0; i < N; i++)
        comp[i] = text;
    double *r = malloc(N * sizeof(*r));
    char body[200];
    snprintf(body, sizeof(body), "i=0; while [ $i -lt %d ]; do echo 0.500000; i=$((i+1)); done; wc -l >&2", N);
    assert_int_equal(run_script(dir, body, 0, (const char *const *)comp, N, r), 0);
    assert_true(r[0] == 0.5 && r[N - 1] == 0.5);
    /* it never reads stdin: our write fails with EPIPE (no SIGPIPE), and its output counts */
    snprintf(body, sizeof(body), "exec 0<&-; i=0; while [ $i -lt %d ]; do echo 1; i=$((i+1)); done", N);
    assert_int_equal(run_script(dir, body, 0, (const char *const *)comp, N, r), 0);
    assert_true(r[N - 1] == 1);
    free(r), free(comp);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_last_number), cmocka_unit_test(test_exact_marker),
        cmocka_unit_test(test_regex),             cmocka_unit_test(test_format),
        cmocka_unit_test(test_weights_and_terms), cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_command_good),      cmocka_unit_test(test_command_failures),
        cmocka_unit_test(test_command_pipes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
