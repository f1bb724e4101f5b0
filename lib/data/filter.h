/* filter.h: heuristic quality filters for web text, each rule switchable with
 * its threshold configurable (defaults from the papers):
 *   gopher      the MassiveText quality filter (Rae et al. 2021, "Scaling
 *               Language Models: Methods, Analysis & Insights from Training
 *               Gopher", appendix A.1.1): word count, mean word length,
 *               symbol-to-word ratios, bullet and ellipsis lines, words with a
 *               letter, English stop words;
 *   gopher-rep  its repetition filter (table A1): duplicate lines and
 *               paragraphs (by count and by characters), the most frequent
 *               2..4-gram, and characters in duplicated 5..10-grams;
 *   c4          the C4 cleaning rules (Raffel et al. 2020, "Exploring the
 *               Limits of Transfer Learning ...", section 2.2): lines without
 *               terminal punctuation, short lines, "javascript" and cookie/policy
 *               lines removed; pages with "lorem ipsum" or "{" or fewer than 3
 *               sentences dropped;
 * and the pipeline of `llm filter` over JSONL documents, which adds PII
 * masking (pii.h) and the quality classifier (quality.h). */
#ifndef LLM_DATA_FILTER_H
#define LLM_DATA_FILTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/progress.h"

enum llm_filter_rules {
    LLM_RULES_GOPHER = 1 << 0,
    LLM_RULES_GOPHER_REP = 1 << 1,
    LLM_RULES_C4 = 1 << 2,
};

/* Why a document was removed: 0 kept; the first failing rule otherwise, in
 * the order they run (gopher-rep, gopher, c4, then the classifier). */
enum llm_filter_reason {
    LLM_FR_KEPT = 0,
    LLM_FR_DUP_LINE_FRAC,       /* gopher-rep */
    LLM_FR_DUP_PARA_FRAC,
    LLM_FR_DUP_LINE_CHARS,
    LLM_FR_DUP_PARA_CHARS,
    LLM_FR_TOP_2GRAM,
    LLM_FR_TOP_3GRAM,
    LLM_FR_TOP_4GRAM,
    LLM_FR_DUP_5GRAM,
    LLM_FR_DUP_6GRAM,
    LLM_FR_DUP_7GRAM,
    LLM_FR_DUP_8GRAM,
    LLM_FR_DUP_9GRAM,
    LLM_FR_DUP_10GRAM,
    LLM_FR_WORD_COUNT,          /* gopher */
    LLM_FR_MEAN_WORD_LEN,
    LLM_FR_HASH_RATIO,
    LLM_FR_ELLIPSIS_RATIO,
    LLM_FR_BULLET_LINES,
    LLM_FR_ELLIPSIS_LINES,
    LLM_FR_ALPHA_WORDS,
    LLM_FR_STOP_WORDS,
    LLM_FR_C4_LOREM,            /* c4 */
    LLM_FR_C4_CURLY,
    LLM_FR_C4_SENTENCES,
    LLM_FR_QUALITY,             /* classifier score at or below the threshold */
    LLM_FR_COUNT
};

/* "gopher_stop_words", "c4_too_few_sentences", ... (stable: used in reports). */
const char *llm_filter_reason_name(int reason);

/* Lines the C4 rules removed from kept documents, by cause. */
enum llm_c4_line_cause {
    LLM_C4L_NO_PUNCT,   /* no terminal punctuation (or ends in an ellipsis) */
    LLM_C4L_FEW_WORDS,  /* fewer than c4_min_words words */
    LLM_C4L_JAVASCRIPT, /* mentions javascript */
    LLM_C4L_POLICY,     /* terms of use, privacy/cookie policy, uses cookies, ... */
    LLM_C4L_COUNT
};

struct llm_filter_opts {
    unsigned rules;                /* LLM_RULES_* bits */
    /* gopher quality */
    long min_words, max_words;     /* 50, 100000 */
    double min_mean_word_len, max_mean_word_len; /* 3, 10 */
    double max_hash_ratio;         /* '#' per word: 0.1 */
    double max_ellipsis_ratio;     /* "..." or U+2026 per word: 0.1 */
    double max_bullet_lines;       /* fraction of lines starting with a bullet: 0.9 */
    double max_ellipsis_lines;     /* fraction of lines ending in an ellipsis: 0.3 */
    double min_alpha_words;        /* fraction of words with a letter: 0.8 */
    long min_stop_words;           /* occurrences of the, be, to, of, and, that, have, with: 2 */
    /* gopher repetition (table A1) */
    double max_dup_line_frac, max_dup_para_frac;   /* 0.30, 0.30 */
    double max_dup_line_chars, max_dup_para_chars; /* 0.20, 0.20 */
    double max_top_ngram[3];       /* n = 2, 3, 4: 0.20, 0.18, 0.16 */
    double max_dup_ngram[6];       /* n = 5..10: 0.15, 0.14, 0.13, 0.12, 0.11, 0.10 */
    /* c4 */
    long c4_min_words;             /* words a kept line needs: 5 */
    long c4_min_sentences;         /* sentences a kept page needs: 3 */
};

/* The papers' defaults, all rules on. */
void llm_filter_defaults(struct llm_filter_opts *o);

/* Parses "gopher,gopher-rep,c4" (also "all", "none") into LLM_RULES_* bits. */
int llm_filter_parse_rules(const char *s, unsigned *rules);

/* The verdict on one text. */
struct llm_filter_result {
    int reason;        /* LLM_FR_*: 0 kept */
    double value;      /* the measured value that failed (or 0) */
    double threshold;  /* the threshold it failed */
    const char *text;  /* the text after the C4 line rules when changed (in the
                        * scratch, valid until its next use), else NULL */
    size_t len;
    uint32_t c4_lines[LLM_C4L_COUNT]; /* lines removed, by cause */
};

/* Buffers and hash tables reused between documents: one per thread. */
struct llm_filter_scratch;
int llm_filter_scratch_new(struct llm_filter_scratch **out);
void llm_filter_scratch_free(struct llm_filter_scratch *s); /* NULL ok */

/* Runs the enabled rules on text[0..n) (valid UTF-8). Deterministic; fails
 * only with LLM_ENOMEM. */
int llm_filter_text(const struct llm_filter_opts *o, struct llm_filter_scratch *s,
                    const char *text, size_t n, struct llm_filter_result *r);

/* ---- the `llm filter` pipeline ---- */

struct llm_quality;

struct llm_filter_run_opts {
    struct llm_filter_opts rules;
    const char *field;            /* text field (NULL = "text") */
    int mask_pii;                 /* replace emails, phone numbers and IPv4 addresses */
    const struct llm_quality *classifier; /* or NULL */
    double threshold;             /* keep documents scoring above it */
    const char *score_field;      /* where the score goes (NULL = "quality") */
    int strict;                   /* a bad JSONL line is an error */
    int threads;                  /* 0 = all */
    FILE *report;                 /* per-document verdicts as JSONL, or NULL */
    const char *report_path;
};

struct llm_filter_stats {
    uint64_t docs_in, docs_out, bad;    /* bad: JSONL lines skipped */
    uint64_t bytes_in, bytes_out;       /* text bytes */
    uint64_t removed[LLM_FR_COUNT];     /* documents removed, by reason */
    uint64_t c4_lines[LLM_C4L_COUNT];   /* lines removed from kept documents */
    uint64_t c4_changed;                /* kept documents whose text the C4 rules changed */
    uint64_t pii[3];                    /* emails, phone numbers, IPv4 addresses masked */
    double score_sum;                   /* classifier scores, summed over documents scored */
    uint64_t scored;
};

/* Filters the JSONL documents of paths (none = stdin) to out (path names it).
 * Kept documents pass through byte-for-byte unless their text changed or a
 * score was added. progress may be NULL. */
int llm_filter_run(const char *const *paths, int npaths, const struct llm_filter_run_opts *o,
                   FILE *out, const char *path, struct llm_progress *progress,
                   struct llm_filter_stats *st);

#endif
