/* filter.c: `llm filter`: quality rules (Gopher, Gopher repetition, C4), PII
 * masking and a quality classifier over JSONL documents; `llm filter train`
 * trains that classifier. The work is in lib/data/filter.h and quality.h. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "core/file.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "data/docs.h"
#include "data/filter.h"
#include "data/quality.h"

/* ---- filter ---- */
static const char *fl_rules, *fl_field, *fl_classifier, *fl_score_field, *fl_report, *fl_out;
static double fl_threshold;
static long fl_threads;
static int fl_pii, fl_strict;
/* thresholds: NAN / LONG_MIN mean "the paper's default" */
static long fl_min_words, fl_max_words, fl_min_stop, fl_c4_words, fl_c4_sentences;
static double fl_min_mwl, fl_max_mwl, fl_hash, fl_ell, fl_bullet, fl_ell_lines, fl_alpha;
static double fl_dup_line, fl_dup_para, fl_dup_line_chars, fl_dup_para_chars;
static double fl_top[3], fl_dup[6];

static const struct llm_opt filter_opts[] = {
    {"rules", 0, LLM_OPT_STR, &fl_rules, "LIST", "rules to run: gopher,gopher-rep,c4 (default all; or none)"},
    {"mask-pii", 0, LLM_OPT_FLAG, &fl_pii, NULL, "mask emails, phone numbers and IPv4 addresses in kept documents"},
    {"classifier", 0, LLM_OPT_STR, &fl_classifier, "FILE", "quality classifier from `llm filter train`"},
    {"threshold", 0, LLM_OPT_F64, &fl_threshold, "X", "keep documents scoring above X (default 0.5)"},
    {"score-field", 0, LLM_OPT_STR, &fl_score_field, "NAME", "field the score is written to (default quality)"},
    {"field", 0, LLM_OPT_STR, &fl_field, "NAME", "the text field (default text)"},
    {"report", 0, LLM_OPT_STR, &fl_report, "FILE", "write every document's verdict as JSONL"},
    {"strict", 0, LLM_OPT_FLAG, &fl_strict, NULL, "a bad JSONL line is an error, not a skip"},
    {"jobs", 'j', LLM_OPT_INT, &fl_threads, "N", "threads (default: all cores)"},
    {"output", 'o', LLM_OPT_STR, &fl_out, "FILE", "output file (default stdout)"},
    {"min-words", 0, LLM_OPT_INT, &fl_min_words, "N", "gopher: fewest words (50)"},
    {"max-words", 0, LLM_OPT_INT, &fl_max_words, "N", "gopher: most words (100000)"},
    {"min-mean-word-length", 0, LLM_OPT_F64, &fl_min_mwl, "X", "gopher: shortest mean word length (3)"},
    {"max-mean-word-length", 0, LLM_OPT_F64, &fl_max_mwl, "X", "gopher: longest mean word length (10)"},
    {"max-hash-ratio", 0, LLM_OPT_F64, &fl_hash, "X", "gopher: '#' per word (0.1)"},
    {"max-ellipsis-ratio", 0, LLM_OPT_F64, &fl_ell, "X", "gopher: ellipses per word (0.1)"},
    {"max-bullet-lines", 0, LLM_OPT_F64, &fl_bullet, "X", "gopher: fraction of lines starting with a bullet (0.9)"},
    {"max-ellipsis-lines", 0, LLM_OPT_F64, &fl_ell_lines, "X", "gopher: fraction of lines ending in an ellipsis (0.3)"},
    {"min-alpha-words", 0, LLM_OPT_F64, &fl_alpha, "X", "gopher: fraction of words with a letter (0.8)"},
    {"min-stop-words", 0, LLM_OPT_INT, &fl_min_stop, "N", "gopher: fewest English stop words (2)"},
    {"max-dup-line-frac", 0, LLM_OPT_F64, &fl_dup_line, "X", "gopher-rep: duplicate lines (0.30)"},
    {"max-dup-para-frac", 0, LLM_OPT_F64, &fl_dup_para, "X", "gopher-rep: duplicate paragraphs (0.30)"},
    {"max-dup-line-chars", 0, LLM_OPT_F64, &fl_dup_line_chars, "X", "gopher-rep: characters in duplicate lines (0.20)"},
    {"max-dup-para-chars", 0, LLM_OPT_F64, &fl_dup_para_chars, "X", "gopher-rep: characters in duplicate paragraphs (0.20)"},
    {"max-top-2gram", 0, LLM_OPT_F64, &fl_top[0], "X", "gopher-rep: characters in the top 2-gram (0.20)"},
    {"max-top-3gram", 0, LLM_OPT_F64, &fl_top[1], "X", "gopher-rep: ... top 3-gram (0.18)"},
    {"max-top-4gram", 0, LLM_OPT_F64, &fl_top[2], "X", "gopher-rep: ... top 4-gram (0.16)"},
    {"max-dup-5gram", 0, LLM_OPT_F64, &fl_dup[0], "X", "gopher-rep: characters in duplicate 5-grams (0.15)"},
    {"max-dup-6gram", 0, LLM_OPT_F64, &fl_dup[1], "X", "gopher-rep: ... 6-grams (0.14)"},
    {"max-dup-7gram", 0, LLM_OPT_F64, &fl_dup[2], "X", "gopher-rep: ... 7-grams (0.13)"},
    {"max-dup-8gram", 0, LLM_OPT_F64, &fl_dup[3], "X", "gopher-rep: ... 8-grams (0.12)"},
    {"max-dup-9gram", 0, LLM_OPT_F64, &fl_dup[4], "X", "gopher-rep: ... 9-grams (0.11)"},
    {"max-dup-10gram", 0, LLM_OPT_F64, &fl_dup[5], "X", "gopher-rep: ... 10-grams (0.10)"},
    {"c4-min-words", 0, LLM_OPT_INT, &fl_c4_words, "N", "c4: words a kept line needs (5)"},
    {"c4-min-sentences", 0, LLM_OPT_INT, &fl_c4_sentences, "N", "c4: sentences a kept page needs (3)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const struct llm_cmd_spec filter_spec = {
    .name = "filter", .usage = "[options] [FILE...]   |   llm filter train --help",
    .summary = "drop low-quality documents (Gopher, C4 rules; a classifier), mask PII",
    .opts = filter_opts, .min_pos = 0, .max_pos = -1,
    .epilog = "JSONL in and out ('-' or no FILE: stdin); kept documents pass through unchanged\n"
              "unless the C4 rules removed lines, PII was masked or a score was added. A\n"
              "summary (documents in/out, removals per rule) goes to stderr. See docs/filter.md.",
};

static int set_d(double *dst, double v, const char *name, double lo, double hi)
{
    if (isnan(v))
        return 0;
    if (v < lo || v > hi)
        return llm_err(LLM_EUSAGE, "--%s: expected %g to %g, got %g", name, lo, hi, v);
    *dst = v;
    return 0;
}

static int set_l(long *dst, long v, const char *name)
{
    if (v == LONG_MIN)
        return 0;
    if (v < 0)
        return llm_err(LLM_EUSAGE, "--%s: expected a number >= 0, got %ld", name, v);
    *dst = v;
    return 0;
}

static int filter_config(struct llm_filter_run_opts *o)
{
    memset(o, 0, sizeof(*o));
    struct llm_filter_opts *f = &o->rules;
    llm_filter_defaults(f);
    int rc = fl_rules ? llm_filter_parse_rules(fl_rules, &f->rules) : 0;
    static const char *const top[3] = {"max-top-2gram", "max-top-3gram", "max-top-4gram"};
    static const char *const dup[6] = {"max-dup-5gram", "max-dup-6gram", "max-dup-7gram",
                                       "max-dup-8gram", "max-dup-9gram", "max-dup-10gram"};
    if (!rc)
        rc = set_l(&f->min_words, fl_min_words, "min-words");
    if (!rc)
        rc = set_l(&f->max_words, fl_max_words, "max-words");
    if (!rc)
        rc = set_l(&f->min_stop_words, fl_min_stop, "min-stop-words");
    if (!rc)
        rc = set_l(&f->c4_min_words, fl_c4_words, "c4-min-words");
    if (!rc)
        rc = set_l(&f->c4_min_sentences, fl_c4_sentences, "c4-min-sentences");
    if (!rc)
        rc = set_d(&f->min_mean_word_len, fl_min_mwl, "min-mean-word-length", 0, 1e9);
    if (!rc)
        rc = set_d(&f->max_mean_word_len, fl_max_mwl, "max-mean-word-length", 0, 1e9);
    if (!rc)
        rc = set_d(&f->max_hash_ratio, fl_hash, "max-hash-ratio", 0, 1e9);
    if (!rc)
        rc = set_d(&f->max_ellipsis_ratio, fl_ell, "max-ellipsis-ratio", 0, 1e9);
    if (!rc)
        rc = set_d(&f->max_bullet_lines, fl_bullet, "max-bullet-lines", 0, 1);
    if (!rc)
        rc = set_d(&f->max_ellipsis_lines, fl_ell_lines, "max-ellipsis-lines", 0, 1);
    if (!rc)
        rc = set_d(&f->min_alpha_words, fl_alpha, "min-alpha-words", 0, 1);
    if (!rc)
        rc = set_d(&f->max_dup_line_frac, fl_dup_line, "max-dup-line-frac", 0, 1);
    if (!rc)
        rc = set_d(&f->max_dup_para_frac, fl_dup_para, "max-dup-para-frac", 0, 1);
    if (!rc)
        rc = set_d(&f->max_dup_line_chars, fl_dup_line_chars, "max-dup-line-chars", 0, 1);
    if (!rc)
        rc = set_d(&f->max_dup_para_chars, fl_dup_para_chars, "max-dup-para-chars", 0, 1);
    for (int k = 0; k < 3 && !rc; k++)
        rc = set_d(&f->max_top_ngram[k], fl_top[k], top[k], 0, 1);
    for (int k = 0; k < 6 && !rc; k++)
        rc = set_d(&f->max_dup_ngram[k], fl_dup[k], dup[k], 0, 1);
    if (!rc && f->min_words > f->max_words)
        rc = llm_err(LLM_EUSAGE, "--min-words %ld is above --max-words %ld", f->min_words, f->max_words);
    if (!rc && !isnan(fl_threshold) && (fl_threshold < 0 || fl_threshold > 1))
        rc = llm_err(LLM_EUSAGE, "--threshold: expected a probability in [0, 1], got %g", fl_threshold);
    if (!rc && !isnan(fl_threshold) && !fl_classifier)
        rc = llm_err(LLM_EUSAGE, "--threshold needs --classifier FILE");
    if (!rc && (fl_threads < 0 || fl_threads > 1024))
        rc = llm_err(LLM_EUSAGE, "-j: expected 0 (all cores) to 1024 threads");
    o->field = fl_field;
    o->mask_pii = fl_pii;
    o->threshold = isnan(fl_threshold) ? 0.5 : fl_threshold;
    o->score_field = fl_score_field;
    o->strict = fl_strict;
    o->threads = (int)fl_threads;
    return rc;
}

static void summary(const struct llm_filter_stats *st, double dt)
{
    llm_info("filter: %llu documents in, %llu out (%.1f%%), %llu bad lines skipped; %.1f MB -> "
             "%.1f MB of text in %.2fs (%.1f MB/s)",
             (unsigned long long)st->docs_in, (unsigned long long)st->docs_out,
             st->docs_in ? 100.0 * st->docs_out / st->docs_in : 0.0, (unsigned long long)st->bad,
             st->bytes_in / 1e6, st->bytes_out / 1e6, dt, dt > 0 ? st->bytes_in / 1e6 / dt : 0.0);
    for (int k = 1; k < LLM_FR_COUNT; k++)
        if (st->removed[k])
            llm_info("  removed by %-26s %llu", llm_filter_reason_name(k),
                     (unsigned long long)st->removed[k]);
    const uint64_t *l = st->c4_lines;
    if (l[0] + l[1] + l[2] + l[3])
        llm_info("  c4 lines removed from %llu kept documents: %llu without terminal punctuation, "
                 "%llu short, %llu javascript, %llu policy", (unsigned long long)st->c4_changed,
                 (unsigned long long)l[0], (unsigned long long)l[1], (unsigned long long)l[2],
                 (unsigned long long)l[3]);
    if (st->pii[0] + st->pii[1] + st->pii[2])
        llm_info("  pii masked: %llu email addresses, %llu phone numbers, %llu IP addresses",
                 (unsigned long long)st->pii[0], (unsigned long long)st->pii[1],
                 (unsigned long long)st->pii[2]);
    if (st->scored)
        llm_info("  classifier: mean score %.3f over %llu documents", st->score_sum / st->scored,
                 (unsigned long long)st->scored);
}

static int filter_train(int argc, char **argv);

int cmd_filter(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "train"))
        return filter_train(argc - 1, argv + 1);
    struct llm_args a;
    fl_rules = fl_field = fl_classifier = fl_score_field = fl_report = fl_out = NULL;
    fl_threshold = NAN, fl_threads = 0, fl_pii = fl_strict = 0;
    fl_min_words = fl_max_words = fl_min_stop = fl_c4_words = fl_c4_sentences = LONG_MIN;
    fl_min_mwl = fl_max_mwl = fl_hash = fl_ell = fl_bullet = fl_ell_lines = fl_alpha = NAN;
    fl_dup_line = fl_dup_para = fl_dup_line_chars = fl_dup_para_chars = NAN;
    for (int k = 0; k < 3; k++)
        fl_top[k] = NAN;
    for (int k = 0; k < 6; k++)
        fl_dup[k] = NAN;
    int ex = cmd_parse(&filter_spec, argc, argv, &a);
    if (ex >= 0)
        return ex;
    struct llm_filter_run_opts o;
    struct llm_quality q = {0};
    struct llm_atomic out = {0}, rep = {0};
    int out_open = 0, rep_open = 0;
    int rc = filter_config(&o);
    if (!rc && fl_classifier && !(rc = llm_quality_load(&q, fl_classifier)))
        o.classifier = &q;
    if (!rc && !(rc = llm_atomic_open(&out, fl_out ? fl_out : "-")))
        out_open = 1;
    if (!rc && fl_report && !(rc = llm_atomic_open(&rep, fl_report))) {
        rep_open = 1;
        o.report = rep.f, o.report_path = rep.path;
    }
    if (!rc) {
        struct llm_progress p;
        struct llm_filter_stats st;
        llm_progress_init(&p, stderr, "filter", "B", 0, LLM_PROGRESS_AUTO);
        double t0 = llm_now();
        rc = llm_filter_run(a.pos, a.npos, &o, out.f, out.path, &p, &st);
        llm_progress_finish(&p);
        if (!rc && rep_open) {
            rc = llm_atomic_commit(&rep);
            rep_open = 0;
        }
        if (!rc) {
            rc = llm_atomic_commit(&out);
            out_open = 0;
        }
        if (!rc)
            summary(&st, llm_now() - t0);
    }
    if (out_open)
        llm_atomic_abort(&out);
    if (rep_open)
        llm_atomic_abort(&rep);
    llm_quality_release(&q);
    llm_args_release(&filter_spec, &a);
    return rc ? cmd_fail(&filter_spec, rc) : 0;
}

/* ---- filter train ---- */
static struct llm_strlist tr_pos, tr_neg;
static const char *tr_out, *tr_valid, *tr_field;
static long tr_epochs, tr_bits, tr_seed, tr_threads, tr_max_words;
static double tr_lr, tr_split;
static const struct llm_opt train_opts[] = {
    {"positive", 0, LLM_OPT_LIST, &tr_pos, "FILE", "JSONL of high-quality documents (repeatable)"},
    {"negative", 0, LLM_OPT_LIST, &tr_neg, "FILE", "JSONL of low-quality documents (repeatable)"},
    {"output", 'o', LLM_OPT_STR, &tr_out, "FILE", "where to write the classifier (required)"},
    {"valid", 0, LLM_OPT_STR, &tr_valid, "FILE", "held-out JSONL with a \"label\" (1/0, true/false, positive/negative)"},
    {"valid-split", 0, LLM_OPT_F64, &tr_split, "X", "hold out this fraction of the training documents instead"},
    {"epochs", 0, LLM_OPT_INT, &tr_epochs, "N", "passes over the data (default 5)"},
    {"lr", 0, LLM_OPT_F64, &tr_lr, "X", "initial learning rate, decaying linearly to 0 (default 0.5)"},
    {"bits", 0, LLM_OPT_INT, &tr_bits, "N", "2^N hash buckets (default 20)"},
    {"max-words", 0, LLM_OPT_INT, &tr_max_words, "N", "words read per document (default 4096)"},
    {"seed", 0, LLM_OPT_INT, &tr_seed, "S", "shuffling seed (default 1)"},
    {"field", 0, LLM_OPT_STR, &tr_field, "NAME", "the text field (default text)"},
    {"jobs", 'j', LLM_OPT_INT, &tr_threads, "N", "threads for reading and hashing (default: all cores)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const struct llm_cmd_spec train_spec = {
    .name = "filter train", .usage = "--positive P.jsonl --negative N.jsonl -o quality.bin",
    .summary = "train the quality classifier (hashed word 1-2-grams, logistic regression by SGD)",
    .opts = train_opts, .min_pos = 0, .max_pos = 0,
    .epilog = "Use it with `llm filter --classifier quality.bin --threshold 0.5`. See docs/filter.md.",
};

/* Documents held in memory for training: texts and labels. */
struct corpus {
    char **text;
    size_t *len;
    unsigned char *y;
    size_t n, cap;
};

static int corpus_add(struct corpus *c, struct llm_doc *d, int label)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        char **t = realloc(c->text, nc * sizeof(*t));
        if (t)
            c->text = t;
        size_t *l = realloc(c->len, nc * sizeof(*l));
        if (l)
            c->len = l;
        unsigned char *y = realloc(c->y, nc);
        if (y)
            c->y = y;
        if (!t || !l || !y)
            return llm_err(LLM_ENOMEM, "out of memory reading training documents");
        c->cap = nc;
    }
    char *s = malloc(d->text_len + 1);
    if (!s)
        return llm_err(LLM_ENOMEM, "out of memory reading training documents");
    memcpy(s, d->text, d->text_len + 1);
    c->text[c->n] = s, c->len[c->n] = d->text_len, c->y[c->n++] = (unsigned char)label;
    return 0;
}

static void corpus_release(struct corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->text[i]);
    free(c->text), free(c->len), free(c->y);
    memset(c, 0, sizeof(*c));
}

/* The label of a validation document: 1, 0, or -1 when missing or unreadable. */
static int doc_label(const struct llm_doc *d)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(d->obj, "label");
    if (cJSON_IsBool(l))
        return cJSON_IsTrue(l);
    if (cJSON_IsNumber(l) && (l->valuedouble == 0 || l->valuedouble == 1))
        return (int)l->valuedouble;
    if (cJSON_IsString(l)) {
        if (!strcmp(l->valuestring, "positive") || !strcmp(l->valuestring, "pos") ||
            !strcmp(l->valuestring, "1"))
            return 1;
        if (!strcmp(l->valuestring, "negative") || !strcmp(l->valuestring, "neg") ||
            !strcmp(l->valuestring, "0"))
            return 0;
    }
    return -1;
}

/* Reads files (label 0/1, or -1: from each document's "label") into c. */
static int read_docs(struct corpus *c, const char *const *paths, int n, int label)
{
    struct llm_docs_reader r;
    struct llm_docs_opts o = {.field = tr_field};
    int rc = llm_docs_open(&r, paths, n, &o);
    if (rc)
        return rc;
    struct llm_doc d;
    while ((rc = llm_docs_next(&r, &d)) == 1) {
        int y = label >= 0 ? label : doc_label(&d);
        if (y < 0) {
            rc = llm_err(LLM_EINVAL, "%s:%llu: no \"label\" (1/0, true/false or positive/negative)",
                         d.path, (unsigned long long)d.line);
        } else {
            rc = corpus_add(c, &d, y);
        }
        llm_doc_release(&d);
        if (rc)
            break;
    }
    llm_docs_close(&r);
    return rc;
}

static double accuracy(const struct llm_quality *q, const struct corpus *c, size_t from, size_t to)
{
    size_t ok = 0;
    uint32_t *f = NULL;
    size_t cap = 0;
    for (size_t i = from; i < to; i++)
        ok += (llm_quality_score(q, c->text[i], c->len[i], &f, &cap) > 0.5) == (c->y[i] == 1);
    free(f);
    return to > from ? (double)ok / (double)(to - from) : 0;
}

static void epoch_log(void *ctx, int epoch, double loss)
{
    (void)ctx;
    llm_info("epoch %d: mean log loss %.4f", epoch, loss);
}

static int filter_train(int argc, char **argv)
{
    struct llm_args a;
    tr_out = tr_valid = tr_field = NULL;
    tr_epochs = 5, tr_bits = 20, tr_seed = 1, tr_threads = 0, tr_max_words = 4096;
    tr_lr = 0.5, tr_split = 0;
    int ex = cmd_parse(&train_spec, argc, argv, &a);
    if (ex >= 0)
        return ex;
    struct corpus c = {0}, v = {0};
    struct llm_quality q = {0};
    int rc = 0;
    if (!tr_pos.n || !tr_neg.n)
        rc = llm_err(LLM_EUSAGE, "need --positive FILE and --negative FILE");
    else if (!tr_out)
        rc = llm_err(LLM_EUSAGE, "missing -o FILE (where to write the classifier)");
    else if (tr_epochs < 1 || tr_epochs > 1000)
        rc = llm_err(LLM_EUSAGE, "--epochs: expected 1 to 1000, got %ld", tr_epochs);
    else if (tr_bits < 8 || tr_bits > 28)
        rc = llm_err(LLM_EUSAGE, "--bits: expected 8 to 28, got %ld", tr_bits);
    else if (!(tr_lr > 0 && tr_lr <= 100))
        rc = llm_err(LLM_EUSAGE, "--lr: expected a positive rate, got %g", tr_lr);
    else if (!(tr_split >= 0 && tr_split < 1))
        rc = llm_err(LLM_EUSAGE, "--valid-split: expected a fraction in [0, 1), got %g", tr_split);
    else if (tr_split > 0 && tr_valid)
        rc = llm_err(LLM_EUSAGE, "--valid and --valid-split: choose one");
    else if (tr_max_words < 1 || tr_threads < 0 || tr_threads > 1024)
        rc = llm_err(LLM_EUSAGE, "--max-words must be >= 1 and -j 0 to 1024");
    if (rc)
        goto out;
    if ((rc = read_docs(&c, tr_pos.v, tr_pos.n, 1)) || (rc = read_docs(&c, tr_neg.v, tr_neg.n, 0)))
        goto out;
    if (tr_valid && (rc = read_docs(&v, &tr_valid, 1, -1)))
        goto out;
    size_t npos = 0;
    for (size_t i = 0; i < c.n; i++)
        npos += c.y[i];
    if (!npos || npos == c.n) {
        rc = llm_err(LLM_EINVAL, "training needs documents of both classes (%zu positive, %zu "
                     "negative)", npos, c.n - npos);
        goto out;
    }
    /* --valid-split: a seeded shuffle, the tail held out */
    size_t ntrain = c.n;
    if (tr_split > 0) {
        struct llm_rng rng;
        llm_rng_seed(&rng, (uint64_t)tr_seed ^ 0x5eed);
        for (size_t i = c.n - 1; i > 0; i--) {
            size_t j = (size_t)llm_rng_below(&rng, i + 1);
            char *t = c.text[i];
            c.text[i] = c.text[j], c.text[j] = t;
            size_t l = c.len[i];
            c.len[i] = c.len[j], c.len[j] = l;
            unsigned char y = c.y[i];
            c.y[i] = c.y[j], c.y[j] = y;
        }
        ntrain = c.n - (size_t)(tr_split * (double)c.n);
    }
    npos = 0;
    for (size_t i = 0; i < ntrain; i++)
        npos += c.y[i];
    if (!npos || npos == ntrain) {
        rc = llm_err(LLM_EINVAL, "the training part has documents of one class only (use a "
                     "smaller --valid-split)");
        goto out;
    }
    llm_info("training on %zu documents (%zu positive), %zu held out", ntrain, npos,
             tr_valid ? v.n : c.n - ntrain);
    struct llm_quality_train_opts to = {
        .bits = (uint32_t)tr_bits, .epochs = (int)tr_epochs, .lr = tr_lr,
        .seed = (uint64_t)tr_seed, .max_words = (size_t)tr_max_words, .threads = (int)tr_threads,
    };
    double t0 = llm_now();
    if ((rc = llm_quality_train((const char *const *)c.text, c.len, c.y, ntrain, &to, &q,
                                epoch_log, NULL)))
        goto out;
    double dt = llm_now() - t0;
    if ((rc = llm_quality_save(&q, tr_out)))
        goto out;
    llm_info("trained in %.2fs; training accuracy %.4f", dt, accuracy(&q, &c, 0, ntrain));
    if (tr_valid)
        llm_info("held-out accuracy %.4f on %zu documents of %s", accuracy(&q, &v, 0, v.n), v.n,
                 tr_valid);
    else if (ntrain < c.n)
        llm_info("held-out accuracy %.4f on %zu documents (--valid-split %g)",
                 accuracy(&q, &c, ntrain, c.n), c.n - ntrain, tr_split);
    llm_info("wrote %s (2^%u buckets)", tr_out, q.bits);
out:
    corpus_release(&c);
    corpus_release(&v);
    llm_quality_release(&q);
    llm_args_release(&train_spec, &a);
    return rc ? cmd_fail(&train_spec, rc) : 0;
}
