/* test_filter.c: known answers for every Gopher quality, Gopher repetition and
 * C4 rule, PII masking, the quality classifier (training on a synthetic
 * corpus, held-out accuracy, file format and corrupt files) and the filter
 * pipeline (pass-through, scores, reports, thread-count independence). */
#include "testutil.h"

#include <math.h>

#include "core/err.h"
#include "core/rng.h"
#include "data/filter.h"
#include "data/pii.h"
#include "data/quality.h"

/* 112 words of ordinary prose in three paragraphs: passes every rule. */
static const char *good =
    "The river town woke slowly on Sunday morning. Fishermen carried their nets down to the "
    "water, and the baker opened his shop with the smell of fresh bread. Children ran along the "
    "narrow streets that led to the old stone bridge.\n\n"
    "By noon the market square was full of people. Farmers from the hills sold apples, cheese "
    "and honey, while a musician played a quiet song near the fountain. Nobody seemed to be in a "
    "hurry that day.\n\n"
    "In the evening the lamps were lit one by one. Families gathered at long tables to share "
    "dinner with their neighbours, and the conversation turned to the harvest that was coming "
    "in the autumn.";

static struct llm_filter_scratch *scratch;

static int setup(void **state)
{
    (void)state;
    return llm_filter_scratch_new(&scratch);
}

static int teardown(void **state)
{
    (void)state;
    llm_filter_scratch_free(scratch);
    return 0;
}

static size_t words(const char *s)
{
    size_t c = 0;
    for (size_t i = 0; s[i]; i++)
        c += s[i] != ' ' && s[i] != '\n' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\n');
    return c;
}

/* Runs the rules of `rules` with defaults changed by the caller's o (NULL: defaults). */
static struct llm_filter_result judge(const char *text, unsigned rules, struct llm_filter_opts *o)
{
    struct llm_filter_opts d;
    if (!o) {
        llm_filter_defaults(&d);
        o = &d;
    }
    o->rules = rules;
    struct llm_filter_result r;
    assert_int_equal(llm_filter_text(o, scratch, text, strlen(text), &r), 0);
    return r;
}

static char *repeat(const char *unit, int n)
{
    size_t k = strlen(unit);
    char *s = malloc(k * (size_t)n + 1);
    for (int i = 0; i < n; i++)
        memcpy(s + k * (size_t)i, unit, k);
    s[k * (size_t)n] = '\0';
    return s;
}

static char *concat(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 1);
    strcpy(s, a);
    strcat(s, b);
    return s;
}

#define EXPECT_REASON(r, why, v) do { \
        assert_int_equal((r).reason, (why)); \
        assert_true(fabs((r).value - (v)) < 1e-9); \
    } while (0)

static void test_good_text_passes(void **state)
{
    (void)state;
    struct llm_filter_result r = judge(good, LLM_RULES_GOPHER | LLM_RULES_GOPHER_REP | LLM_RULES_C4, NULL);
    assert_int_equal(r.reason, LLM_FR_KEPT);
    assert_null(r.text); /* the C4 rules changed nothing: paragraph breaks are kept */
    assert_int_equal(words(good), 112);
}

static void test_gopher_quality(void **state)
{
    (void)state;
    struct llm_filter_result r = judge("only ten words in this text so it is short", LLM_RULES_GOPHER, NULL);
    EXPECT_REASON(r, LLM_FR_WORD_COUNT, 10);
    assert_true(r.threshold == 50);
    struct llm_filter_opts o;
    llm_filter_defaults(&o);
    o.max_words = 100;
    r = judge(good, LLM_RULES_GOPHER, &o);
    EXPECT_REASON(r, LLM_FR_WORD_COUNT, 112);
    char *s = repeat("it is to be so ", 12); /* 60 words of 2 letters */
    EXPECT_REASON(judge(s, LLM_RULES_GOPHER, NULL), LLM_FR_MEAN_WORD_LEN, 2);
    free(s);
    s = repeat("internationalization ", 60);
    EXPECT_REASON(judge(s, LLM_RULES_GOPHER, NULL), LLM_FR_MEAN_WORD_LEN, 20);
    free(s);
    /* mean length counts code points: "café" is 4 */
    s = repeat("café ", 60);
    r = judge(s, LLM_RULES_GOPHER, NULL);
    assert_int_equal(r.reason, LLM_FR_STOP_WORDS); /* the length (4) passed */
    free(s);
    char *tags = repeat(" #tag", 20);
    s = concat(good, tags);
    EXPECT_REASON(judge(s, LLM_RULES_GOPHER, NULL), LLM_FR_HASH_RATIO, 20.0 / 132);
    free(s), free(tags);
    tags = repeat(" wait...", 20);
    s = concat(good, tags);
    EXPECT_REASON(judge(s, LLM_RULES_GOPHER, NULL), LLM_FR_ELLIPSIS_RATIO, 20.0 / 132);
    free(s), free(tags);
    s = repeat("- the item is one of many things\n", 10);
    EXPECT_REASON(judge(s, LLM_RULES_GOPHER, NULL), LLM_FR_BULLET_LINES, 1);
    free(s);
    tags = repeat("\nand then it went on\xe2\x80\xa6", 4);
    s = concat(good, tags);
    EXPECT_REASON(judge(s, LLM_RULES_GOPHER, NULL), LLM_FR_ELLIPSIS_LINES, 4.0 / 7);
    free(s), free(tags);
    tags = repeat(" 1234", 40);
    s = concat(good, tags);
    EXPECT_REASON(judge(s, LLM_RULES_GOPHER, NULL), LLM_FR_ALPHA_WORDS, 112.0 / 152);
    free(s), free(tags);
    /* letters of other scripts count as letters */
    s = repeat("Привет мир, как дела сегодня? ", 12);
    assert_int_equal(judge(s, LLM_RULES_GOPHER, NULL).reason, LLM_FR_STOP_WORDS);
    free(s);
    s = repeat("Quick brown foxes jump over lazy dogs near houses. ", 7);
    tags = concat(s, " (The end.)");
    EXPECT_REASON(judge(tags, LLM_RULES_GOPHER, NULL), LLM_FR_STOP_WORDS, 1);
    free(s), free(tags);
}

static void test_gopher_repetition(void **state)
{
    (void)state;
    const char *lines = "Same line here.\nFirst other line.\nSame line here.\nSecond other line.\n"
                        "Same line here.\nThird other line.\nSame line here.\nFourth one.\n"
                        "Same line here.\nFifth one.";
    EXPECT_REASON(judge(lines, LLM_RULES_GOPHER_REP, NULL), LLM_FR_DUP_LINE_FRAC, 0.4);
    struct llm_filter_opts o;
    llm_filter_defaults(&o);
    o.max_dup_line_frac = 1;
    const char *paras = "Para one\nhas two lines.\n\nPara two.\n\nPara one\nhas two lines.\n\n"
                        "Para three.\n\nPara one\nhas two lines.";
    EXPECT_REASON(judge(paras, LLM_RULES_GOPHER_REP, &o), LLM_FR_DUP_PARA_FRAC, 0.4);
    o.max_dup_para_frac = 1;
    size_t n = strlen(paras);
    /* repeated lines: "Para one" (8 bytes) and "has two lines." (14), twice each */
    EXPECT_REASON(judge(paras, LLM_RULES_GOPHER_REP, &o), LLM_FR_DUP_LINE_CHARS, 44.0 / n);
    o.max_dup_line_chars = 1;
    /* the repeated paragraph: 23 bytes, twice */
    EXPECT_REASON(judge(paras, LLM_RULES_GOPHER_REP, &o), LLM_FR_DUP_PARA_CHARS, 46.0 / n);
    /* "aa bb" three times: 3 * 4 characters of 12 * 2 */
    const char *bi = "aa bb cc dd aa bb ee ff aa bb gg hh";
    EXPECT_REASON(judge(bi, LLM_RULES_GOPHER_REP, NULL), LLM_FR_TOP_2GRAM, 0.5);
    llm_filter_defaults(&o);
    o.max_top_ngram[0] = o.max_top_ngram[1] = o.max_top_ngram[2] = 1;
    /* a 5-word phrase twice: 10 of 20 words covered */
    const char *five = "w1 w2 w3 w4 w5 x1 w1 w2 w3 w4 w5 x2 y1 y2 y3 y4 y5 y6 y7 y8";
    EXPECT_REASON(judge(five, LLM_RULES_GOPHER_REP, &o), LLM_FR_DUP_5GRAM, 0.5);
    o.max_dup_ngram[0] = 1; /* no 6-gram repeats: kept */
    assert_int_equal(judge(five, LLM_RULES_GOPHER_REP, &o).reason, LLM_FR_KEPT);
    /* a 7-word phrase twice (overlapping 5- and 6-grams counted once) */
    const char *seven = "p1 p2 p3 p4 p5 p6 p7 q1 p1 p2 p3 p4 p5 p6 p7 q2 r1 r2 r3 r4 r5 r6 r7 r8 "
                        "r9 s1 s2 s3";
    o.max_dup_ngram[1] = 1;
    EXPECT_REASON(judge(seven, LLM_RULES_GOPHER_REP, &o), LLM_FR_DUP_7GRAM, 0.5);
    o.max_dup_ngram[2] = 1; /* no 8-gram repeats */
    assert_int_equal(judge(seven, LLM_RULES_GOPHER_REP, &o).reason, LLM_FR_KEPT);
    /* the good text has no repetition worth a rule */
    assert_int_equal(judge(good, LLM_RULES_GOPHER_REP, NULL).reason, LLM_FR_KEPT);
}

static void test_c4(void **state)
{
    (void)state;
    const char *page =
        "Home | About | Contact\n"
        "This line has enough words and ends well.\n"
        "Short line.\n"
        "Please enable JavaScript to view this page properly.\n"
        "We use cookies, see our privacy policy for details today.\n"
        "\n"
        "Another good line with plenty of words here!\n"
        "A third proper sentence ends right here. And a fourth one.\n"
        "Citations are removed from this line[1] as well[citation needed].\n"
        "Dots at the end do not count as an end...";
    struct llm_filter_result r = judge(page, LLM_RULES_C4, NULL);
    assert_int_equal(r.reason, LLM_FR_KEPT);
    assert_non_null(r.text);
    assert_string_equal(r.text, "This line has enough words and ends well.\n\n"
                                "Another good line with plenty of words here!\n"
                                "A third proper sentence ends right here. And a fourth one.\n"
                                "Citations are removed from this line as well.");
    assert_int_equal(r.c4_lines[LLM_C4L_NO_PUNCT], 2);
    assert_int_equal(r.c4_lines[LLM_C4L_FEW_WORDS], 1);
    assert_int_equal(r.c4_lines[LLM_C4L_JAVASCRIPT], 1);
    assert_int_equal(r.c4_lines[LLM_C4L_POLICY], 1);
    struct llm_filter_opts o;
    llm_filter_defaults(&o);
    o.c4_min_words = 2; /* now "Short line." stays */
    r = judge(page, LLM_RULES_C4, &o);
    assert_int_equal(r.c4_lines[LLM_C4L_FEW_WORDS], 0);
    assert_non_null(strstr(r.text, "Short line."));
    char *s = concat(good, "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.");
    EXPECT_REASON(judge(s, LLM_RULES_C4, NULL), LLM_FR_C4_LOREM, 1);
    free(s);
    s = concat(good, "\nThe function is defined as int f() { return 1; } here.");
    EXPECT_REASON(judge(s, LLM_RULES_C4, NULL), LLM_FR_C4_CURLY, 1);
    free(s);
    /* a "{" on a line that is dropped anyway does not drop the page */
    s = concat(good, "\nfunction f() { return 1 }");
    assert_int_equal(judge(s, LLM_RULES_C4, NULL).reason, LLM_FR_KEPT);
    free(s);
    EXPECT_REASON(judge("One sentence with five words here. And another one is here!",
                        LLM_RULES_C4, NULL), LLM_FR_C4_SENTENCES, 2);
    o.c4_min_sentences = 2;
    assert_int_equal(judge("One sentence with five words here. And another one is here!",
                           LLM_RULES_C4, &o).reason, LLM_FR_KEPT);
}

static void test_rules_parse(void **state)
{
    (void)state;
    unsigned r;
    assert_int_equal(llm_filter_parse_rules("gopher,c4", &r), 0);
    assert_int_equal(r, LLM_RULES_GOPHER | LLM_RULES_C4);
    assert_int_equal(llm_filter_parse_rules("none", &r), 0);
    assert_int_equal(r, 0);
    assert_int_equal(llm_filter_parse_rules("gopher,c5", &r), LLM_EUSAGE);
    assert_non_null(strstr(llm_errmsg(), "'c5'"));
    assert_string_equal(llm_filter_reason_name(LLM_FR_STOP_WORDS), "gopher_stop_words");
    /* no rules: every text is kept as it is */
    assert_int_equal(judge("x", 0, NULL).reason, LLM_FR_KEPT);
}

static void expect_masked(const char *in, const char *want, uint32_t e, uint32_t p, uint32_t ip)
{
    char *out = NULL;
    size_t cap = 0, len;
    uint32_t c[LLM_PII_COUNT];
    long k = llm_pii_mask(in, strlen(in), &out, &cap, &len, c);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    assert_int_equal(k, (long)(e + p + ip));
    assert_int_equal(c[LLM_PII_EMAIL], e);
    assert_int_equal(c[LLM_PII_PHONE], p);
    assert_int_equal(c[LLM_PII_IP], ip);
    free(out);
}

static void test_pii(void **state)
{
    (void)state;
    expect_masked("Mail john.doe+x@mail.example.com or a_b@c.io.", 
                  "Mail |||EMAIL_ADDRESS||| or |||EMAIL_ADDRESS|||.", 2, 0, 0);
    expect_masked("not emails: @home, a@b, x@y.z1, me@localhost",
                  "not emails: @home, a@b, x@y.z1, me@localhost", 0, 0, 0);
    expect_masked("Call (283) 182-3829, (283)-182-3829, +1 283-182-3829, 283.182.3829 or 2831823829.",
                  "Call |||PHONE_NUMBER|||, |||PHONE_NUMBER|||, |||PHONE_NUMBER|||, "
                  "|||PHONE_NUMBER||| or |||PHONE_NUMBER|||.", 0, 5, 0);
    expect_masked("not phones: 12831823829, 283-182-38290, 283-18-3829, x2831823829",
                  "not phones: 12831823829, 283-182-38290, 283-18-3829, x2831823829", 0, 0, 0);
    expect_masked("Hosts 192.168.0.1, 8.8.8.8; not 10.0.0.256, 1.2.3.4.5, v1.2.3.4 or 1.2.3",
                  "Hosts |||IP_ADDRESS|||, |||IP_ADDRESS|||; not 10.0.0.256, 1.2.3.4.5, v1.2.3.4 or 1.2.3",
                  0, 0, 2);
    expect_masked("", "", 0, 0, 0);
    expect_masked("ünïcödé mail: ü@exämple.com x@exämple.com",
                  "ünïcödé mail: ü@exämple.com x@exämple.com", 0, 0, 0);
}

/* ---- classifier ---- */

static const char *const good_words[] = {"theory", "analysis", "experiment", "measured",
    "results", "method", "physics", "energy", "careful", "study", "evidence", "model",
    "history", "research", "describes", "observed", "chapter", "paper", "students", "data"};
static const char *const bad_words[] = {"click", "free", "winner", "cheap", "buy", "now",
    "deal", "casino", "bonus", "offer", "subscribe", "prize", "viagra", "discount", "hot",
    "sale", "limited", "cash", "loans", "win"};
static const char *const shared[] = {"the", "a", "and", "of", "to", "is", "in", "for", "you",
                                     "this"};

/* A document: 20-60 words, 70% from its class, 30% shared. Caller frees. */
static char *synth(struct llm_rng *g, int positive)
{
    size_t n = 20 + (size_t)llm_rng_below(g, 41), len = 0;
    char *s = malloc(n * 16);
    for (size_t i = 0; i < n; i++) {
        const char *w = llm_rng_below(g, 10) < 7
                            ? (positive ? good_words : bad_words)[llm_rng_below(g, 20)]
                            : shared[llm_rng_below(g, 10)];
        len += (size_t)sprintf(s + len, "%s%s", i ? " " : "", w);
    }
    return s;
}

static void test_quality_classifier(void **state)
{
    (void)state;
    enum { N = 1000, V = 400 };
    struct llm_rng g;
    llm_rng_seed(&g, 42);
    char *docs[N + V];
    size_t lens[N + V];
    unsigned char y[N + V];
    for (int i = 0; i < N + V; i++) {
        y[i] = (unsigned char)(i % 2);
        docs[i] = synth(&g, y[i]);
        lens[i] = strlen(docs[i]);
    }
    struct llm_quality_train_opts o = {.bits = 16, .epochs = 5, .lr = 0.5, .seed = 3, .threads = 2};
    struct llm_quality q, q2;
    assert_int_equal(llm_quality_train((const char *const *)docs, lens, y, N, &o, &q, NULL, NULL), 0);
    o.threads = 1; /* same model for any thread count */
    assert_int_equal(llm_quality_train((const char *const *)docs, lens, y, N, &o, &q2, NULL, NULL), 0);
    assert_memory_equal(q.w, q2.w, sizeof(float) << 16);
    assert_true(q.bias == q2.bias);
    llm_quality_release(&q2);
    uint32_t *f = NULL;
    size_t cap = 0;
    int right = 0;
    for (int i = N; i < N + V; i++)
        right += (llm_quality_score(&q, docs[i], lens[i], &f, &cap) > 0.5) == y[i];
    double acc = (double)right / V;
    assert_true(acc >= 0.95);
    /* save, load: the same scores */
    char *dir = test_mkdtemp(), *path = test_path(dir, "q.bin");
    assert_int_equal(llm_quality_save(&q, path), 0);
    assert_int_equal(llm_quality_load(&q2, path), 0);
    assert_int_equal(q2.bits, 16);
    for (int i = N; i < N + 20; i++)
        assert_true(llm_quality_score(&q, docs[i], lens[i], &f, &cap) ==
                    llm_quality_score(&q2, docs[i], lens[i], &f, &cap));
    llm_quality_release(&q2);
    /* a flipped byte, a cut file, another file: refused with a clear error */
    FILE *fp = fopen(path, "r+b");
    fseek(fp, 100, SEEK_SET);
    fputc(0x55, fp);
    fclose(fp);
    assert_int_equal(llm_quality_load(&q2, path), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "checksum"));
    assert_int_equal(truncate(path, 1000), 0);
    assert_int_equal(llm_quality_load(&q2, path), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "truncated"));
    fp = fopen(path, "wb");
    fputs("{\"not\": \"a model\"}", fp);
    fclose(fp);
    assert_int_equal(llm_quality_load(&q2, path), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "not a quality classifier"));
    free(path);
    test_rmdir(dir);
    free(f);
    llm_quality_release(&q);
    for (int i = 0; i < N + V; i++)
        free(docs[i]);
}

/* ---- the pipeline ---- */

static char *run_filter(const char *path, struct llm_filter_run_opts *o,
                        struct llm_filter_stats *st, char **report)
{
    char *buf = NULL, *rbuf = NULL;
    size_t len = 0, rlen = 0;
    FILE *f = open_memstream(&buf, &len), *rf = report ? open_memstream(&rbuf, &rlen) : NULL;
    o->report = rf, o->report_path = "report";
    assert_int_equal(llm_filter_run(&path, 1, o, f, "out", NULL, st), 0);
    fclose(f);
    if (rf)
        fclose(rf), *report = rbuf;
    return buf;
}

static void test_pipeline(void **state)
{
    (void)state;
    char *dir = test_mkdtemp(), *path = test_path(dir, "in.jsonl");
    FILE *f = fopen(path, "w");
    /* 1: good, kept byte for byte (odd spacing and key order survive) */
    fprintf(f, "{ \"id\" : \"a\", \"meta\": {\"x\": [1, 2]}, \"text\": \"%s\" }\n", "GOOD");
    fprintf(f, "{\"id\":\"b\",\"text\":\"too short\"}\n");
    fprintf(f, "{\"id\":\"c\",\"text\":\"GOOD\\nplease write to bob@example.com with any questions today.\"}\n");
    fprintf(f, "{\"id\":\"d\"}\n");
    fclose(f);
    /* put the good text in (JSON-escaped newlines) */
    char *raw = NULL;
    size_t rl = 0;
    FILE *in = fopen(path, "r");
    char line[4096];
    FILE *mem = open_memstream(&raw, &rl);
    while (fgets(line, sizeof(line), in)) {
        for (char *p = line; *p; p++) {
            if (!strncmp(p, "GOOD", 4)) {
                for (const char *g = good; *g; g++)
                    fputs(*g == '\n' ? "\\n" : (char[2]){*g, 0}, mem);
                p += 3;
            } else {
                fputc(*p, mem);
            }
        }
    }
    fclose(mem);
    fclose(in);
    f = fopen(path, "w");
    fputs(raw, f);
    fclose(f);
    struct llm_filter_run_opts o = {.threads = 2, .mask_pii = 1};
    llm_filter_defaults(&o.rules);
    struct llm_filter_stats st;
    char *report = NULL;
    char *out = run_filter(path, &o, &st, &report);
    char *first_line = strndup(raw, (size_t)(strchr(raw, '\n') - raw + 1));
    assert_true(!strncmp(out, first_line, strlen(first_line))); /* byte for byte */
    assert_non_null(strstr(out, "|||EMAIL_ADDRESS|||"));
    assert_int_equal(st.docs_in, 3);
    assert_int_equal(st.docs_out, 2);
    assert_int_equal(st.bad, 1);
    assert_int_equal(st.removed[LLM_FR_WORD_COUNT], 1);
    assert_int_equal(st.pii[LLM_PII_EMAIL], 1);
    assert_non_null(strstr(report, "{\"id\":\"b\",\"kept\":false,\"reason\":\"gopher_word_count\",\"value\":2,\"threshold\":50}"));
    assert_non_null(strstr(report, "{\"id\":\"c\",\"kept\":true,\"pii_masked\":1}"));
    /* one thread: the same bytes */
    o.threads = 1;
    char *report1 = NULL, *out1 = run_filter(path, &o, &st, &report1);
    assert_string_equal(out, out1);
    assert_string_equal(report, report1);
    free(out1), free(report1);
    /* a classifier that likes everything: scores are added after the other fields */
    struct llm_quality q = {.bits = 8, .bias = 2.0f};
    q.w = calloc(256, sizeof(float));
    o.classifier = &q, o.threshold = 0.5, o.rules.rules = 0, o.mask_pii = 0;
    out1 = run_filter(path, &o, &st, NULL);
    assert_non_null(strstr(out1, "\"text\":\"too short\",\"quality\":0.8808}"));
    assert_non_null(strstr(out1, "in the autumn.\" ,\"quality\":0.8808}")); /* before the '}' */
    assert_int_equal(st.docs_out, 3);
    free(out1);
    q.bias = -2.0f; /* ... and one that likes nothing */
    out1 = run_filter(path, &o, &st, NULL);
    assert_string_equal(out1, "");
    assert_int_equal(st.removed[LLM_FR_QUALITY], 3);
    free(out1);
    free(q.w);
    free(out), free(report), free(first_line), free(raw), free(path);
    test_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_text_passes),
        cmocka_unit_test(test_gopher_quality),
        cmocka_unit_test(test_gopher_repetition),
        cmocka_unit_test(test_c4),
        cmocka_unit_test(test_rules_parse),
        cmocka_unit_test(test_pii),
        cmocka_unit_test(test_quality_classifier),
        cmocka_unit_test(test_pipeline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
