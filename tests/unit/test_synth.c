/* test_synth.c: the task generators of `llm data synth`: seeded determinism, right answers, D-digit
 * operands, distinct sorted words, wrong DPO answers, the record formats, and the held-out split (disjoint,
 * refused when the task runs out of problems, no partial output). */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <dirent.h>

#include "align/synth.h"
#include "core/err.h"
#include "core/log.h"

static struct llm_synth_opts opts(enum llm_synth_task t, long n, uint64_t seed)
{
    return (struct llm_synth_opts){.task = t, .format = LLM_SYNTH_JSONL, .n = n, .seed = seed};
}

static void test_determinism(void **state)
{
    (void)state;
    struct llm_synth a, b, c;
    struct llm_synth_opts o = opts(LLM_SYNTH_SORT, 10, 7);
    assert_int_equal(llm_synth_init(&a, &o), 0);
    assert_int_equal(llm_synth_init(&b, &o), 0);
    o.seed = 8;
    assert_int_equal(llm_synth_init(&c, &o), 0);
    int differ = 0;
    for (int i = 0; i < 50; i++) {
        struct llm_synth_example x, y, z;
        llm_synth_next(&a, &x), llm_synth_next(&b, &y), llm_synth_next(&c, &z);
        assert_string_equal(x.prompt, y.prompt);
        assert_string_equal(x.rejected, y.rejected);
        differ |= strcmp(x.prompt, z.prompt) != 0;
    }
    assert_true(differ);
}

/* The number of decimal digits of x. */
static int ndigits(unsigned long long x)
{
    int d = 1;
    while (x >= 10)
        x /= 10, d++;
    return d;
}

static void test_add(void **state)
{
    (void)state;
    for (int D = 1; D <= 9; D++) {
        struct llm_synth s;
        struct llm_synth_opts o = opts(LLM_SYNTH_ADD, 1, (uint64_t)D);
        o.digits = D;
        assert_int_equal(llm_synth_init(&s, &o), 0);
        int small = 0, offby = 0;
        for (int i = 0; i < 400; i++) {
            struct llm_synth_example ex;
            llm_synth_next(&s, &ex);
            unsigned long long a, b, sum, wrong;
            char eq;
            assert_int_equal(sscanf(ex.prompt, "%llu+%llu%c", &a, &b, &eq), 3);
            assert_int_equal(eq, '=');
            assert_int_equal(ex.prompt[strlen(ex.prompt) - 1], '=');
            assert_int_equal(ndigits(a), D);
            assert_int_equal(ndigits(b), D);
            assert_int_equal(sscanf(ex.answer, "%llu", &sum), 1);
            assert_true(sum == a + b);
            char back[32];
            snprintf(back, sizeof(back), "%llu", sum);
            assert_string_equal(back, ex.answer);
            /* wrong but plausible: a number without a leading zero, off by a little or in one digit */
            assert_string_not_equal(ex.rejected, ex.answer);
            assert_int_equal(sscanf(ex.rejected, "%llu", &wrong), 1);
            snprintf(back, sizeof(back), "%llu", wrong);
            assert_string_equal(back, ex.rejected);
            unsigned long long diff = wrong > sum ? wrong - sum : sum - wrong;
            int digits_off = 0;
            if (strlen(ex.rejected) == strlen(ex.answer))
                for (size_t k = 0; k < strlen(ex.answer); k++)
                    digits_off += ex.rejected[k] != ex.answer[k];
            assert_true((diff >= 1 && diff <= 10) || digits_off == 1);
            small += diff <= 10, offby += digits_off == 1;
        }
        assert_true(small > 50 && offby > 50); /* both kinds of error occur */
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Splits s at spaces into w (pointers into s); returns the count. */
static int split(char *s, char **w, int max)
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(s, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save))
        w[n++] = t;
    return n;
}

static void test_sort(void **state)
{
    (void)state;
    int nw;
    const char *const *list = llm_synth_words(&nw);
    assert_true(nw >= 200);
    for (int i = 1; i < nw; i++)
        assert_true(strcmp(list[i - 1], list[i]) < 0); /* sorted, distinct */
    for (int W = 2; W <= 12; W += 5) {
        struct llm_synth s;
        struct llm_synth_opts o = opts(LLM_SYNTH_SORT, 1, 3);
        o.words = W;
        assert_int_equal(llm_synth_init(&s, &o), 0);
        for (int i = 0; i < 200; i++) {
            struct llm_synth_example ex;
            llm_synth_next(&s, &ex);
            assert_true(!strncmp(ex.prompt, "sort: ", 6));
            size_t len = strlen(ex.prompt);
            assert_true(len > 8 && !strcmp(ex.prompt + len - 2, " ="));
            char p[LLM_SYNTH_TEXT_MAX], a[LLM_SYNTH_TEXT_MAX], r[LLM_SYNTH_TEXT_MAX];
            snprintf(p, sizeof(p), "%.*s", (int)(len - 8), ex.prompt + 6);
            strcpy(a, ex.answer), strcpy(r, ex.rejected);
            char *pw[16], *aw[16], *rw[16];
            assert_int_equal(split(p, pw, 16), W);
            assert_int_equal(split(a, aw, 16), W);
            assert_int_equal(split(r, rw, 16), W);
            qsort(pw, (size_t)W, sizeof(char *), cmp_str);
            int swapped = 0;
            for (int k = 0; k < W; k++) {
                assert_string_equal(pw[k], aw[k]); /* the answer is the prompt's words, sorted */
                assert_true(k == 0 || strcmp(aw[k - 1], aw[k]) < 0); /* distinct */
                assert_non_null(bsearch(&aw[k], list, (size_t)nw, sizeof(char *), cmp_str));
                swapped += strcmp(aw[k], rw[k]) != 0;
            }
            assert_int_equal(swapped, 2); /* rejected: two words swapped */
            assert_string_not_equal(ex.answer, ex.rejected);
        }
    }
}

static char *written(enum llm_synth_format f, const struct llm_synth_example *ex)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    assert_int_equal(llm_synth_write(m, "mem", f, ex), 0);
    fclose(m);
    return buf;
}

static void test_formats(void **state)
{
    (void)state;
    struct llm_synth_example ex = {.prompt = "12+34=", .answer = "46", .rejected = "47"};
    const char *want[] = {
        "12+34= 46\n",
        "{\"prompt\":\"12+34=\",\"answer\":\"46\"}\n",
        "{\"prompt\":\"12+34=\",\"response\":\" <answer>46</answer>\"}\n",
        "{\"prompt\":\"12+34=\",\"chosen\":\" <answer>46</answer>\",\"rejected\":\" <answer>47</answer>\"}\n",
    };
    for (int f = LLM_SYNTH_TEXT; f <= LLM_SYNTH_DPO; f++) {
        char *s = written((enum llm_synth_format)f, &ex);
        assert_string_equal(s, want[f]);
        free(s);
    }
}

static void test_options(void **state)
{
    (void)state;
    struct llm_synth s;
    struct llm_synth_opts o = opts(LLM_SYNTH_ADD, 0, 1);
    assert_int_equal(llm_synth_init(&s, &o), LLM_EUSAGE);
    o.n = 1, o.digits = 10;
    assert_int_equal(llm_synth_init(&s, &o), LLM_EUSAGE);
    assert_non_null(strstr(llm_errmsg(), "--digits"));
    o = opts(LLM_SYNTH_SORT, 1, 1);
    o.words = 13;
    assert_int_equal(llm_synth_init(&s, &o), LLM_EUSAGE);
    o.words = 0, o.split_eval = -1;
    assert_int_equal(llm_synth_init(&s, &o), LLM_EUSAGE);
    char *p = llm_synth_eval_path("data/add.sft.jsonl");
    assert_string_equal(p, "data/add.sft.eval.jsonl");
    free(p);
    p = llm_synth_eval_path("./d.x/train");
    assert_string_equal(p, "./d.x/train.eval.jsonl");
    free(p);
    p = llm_synth_eval_path(".hidden");
    assert_string_equal(p, ".hidden.eval.jsonl");
    free(p);
}

/* The "prompt" of every JSONL line of path (or the text before " " of a text line). */
static int prompts_of(const char *path, char ***out)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int n = 0;
    char **v = NULL;
    while (fgets(line, sizeof(line), f)) {
        v = realloc(v, (size_t)(n + 1) * sizeof(*v));
        cJSON *o = cJSON_Parse(line);
        if (cJSON_IsObject(o)) {
            v[n++] = strdup(cJSON_GetObjectItemCaseSensitive(o, "prompt")->valuestring);
            cJSON_Delete(o);
        } else {
            cJSON_Delete(o);
            *strstr(line, "= ") = 0;
            size_t k = strlen(line);
            v[n] = malloc(k + 2);
            snprintf(v[n++], k + 2, "%s=", line);
        }
    }
    fclose(f);
    *out = v;
    return n;
}

static void free_all(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void test_split(void **state)
{
    (void)state;
    llm_log_set_level(LLM_LOG_WARN);
    char *dir = test_mkdtemp();
    char *out = test_path(dir, "add.txt"), *ev = test_path(dir, "add.eval.jsonl");
    /* one-digit sums: 100 problems, 60 drawn for training (with repeats), 30 held out */
    struct llm_synth_opts o = opts(LLM_SYNTH_ADD, 60, 5);
    o.digits = 1, o.split_eval = 30, o.format = LLM_SYNTH_TEXT;
    assert_int_equal(llm_synth_run(&o, out, ev), 0);
    char **tr, **he;
    int ntr = prompts_of(out, &tr), nhe = prompts_of(ev, &he);
    assert_int_equal(ntr, 60);
    assert_int_equal(nhe, 30);
    for (int i = 0; i < nhe; i++) {
        for (int j = 0; j < ntr; j++)
            if (!strcmp(he[i], tr[j]))
                fail_msg("held-out '%s' is also training example %d", he[i], j);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(he[i], he[j]);
    }
    /* the same seed gives the same problems in another format */
    char *out2 = test_path(dir, "add.jsonl");
    o.format = LLM_SYNTH_JSONL, o.split_eval = 0;
    assert_int_equal(llm_synth_run(&o, out2, NULL), 0);
    char **tr2;
    assert_int_equal(prompts_of(out2, &tr2), 60);
    for (int i = 0; i < 60; i++)
        assert_string_equal(tr[i], tr2[i]);
    free_all(tr, ntr), free_all(he, nhe), free_all(tr2, 60);

    /* more held out than the task has left: refused, and neither file is written */
    char *out3 = test_path(dir, "full.jsonl"), *ev3 = test_path(dir, "full.eval.jsonl");
    o.n = 2000, o.split_eval = 1;
    assert_int_equal(llm_synth_run(&o, out3, ev3), LLM_EUSAGE);
    assert_non_null(strstr(llm_errmsg(), "--split-eval"));
    assert_int_equal(access(out3, F_OK), -1);
    assert_int_equal(access(ev3, F_OK), -1);
    DIR *d = opendir(dir);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));)
        files += e->d_name[0] != '.' || strncmp(e->d_name, ".full", 5) == 0; /* no temp files left either */
    closedir(d);
    assert_int_equal(files, 3);
    free(out), free(ev), free(out2), free(out3), free(ev3);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism), cmocka_unit_test(test_add),     cmocka_unit_test(test_sort),
        cmocka_unit_test(test_formats),     cmocka_unit_test(test_options), cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
