/* task.h: evaluation data in its published layouts (our JSONL, HellaSwag,
 * MMLU, GSM8K), read into documents, and the k-shot prompts built from them
 * the way EleutherAI's lm-evaluation-harness builds them (docs/eval.md). */
#ifndef LLM_EVAL_TASK_H
#define LLM_EVAL_TASK_H

#include <stdint.h>

#include "tok/tok.h"

enum llm_eval_kind { LLM_EVAL_CHOICE, LLM_EVAL_EXACT };

enum llm_eval_format {
    LLM_EVAL_FMT_PLAIN,     /* choice {"context","choices","label"}; exact {"prompt","answer"} */
    LLM_EVAL_FMT_HELLASWAG, /* {"ctx_a","ctx_b","activity_label","endings","label"} */
    LLM_EVAL_FMT_MMLU,      /* CSV question,A,B,C,D,answer (file <subject>_test.csv), or JSONL
                               {"question","choices","answer","subject"} */
    LLM_EVAL_FMT_GSM8K,     /* {"question","answer"}, the answer's final value after "####" */
};

/* "plain", "hellaswag", "mmlu", "gsm8k" -> *f; LLM_EUSAGE naming the bad one. */
int llm_eval_format_parse(const char *s, enum llm_eval_format *f);
const char *llm_eval_format_name(enum llm_eval_format f);

struct llm_eval_doc {
    char *context;       /* choice: the query; exact: the prompt (doc_to_text) */
    char **choices;      /* choice: the continuations, without the leading space */
    int n_choices;
    int label;           /* choice: index of the right one */
    char *target;        /* exact: the reference text as published (a few-shot example's answer) */
    char *answer;        /* exact: the gold final answer (GSM8K: after "####") */
    char *description;   /* text before the few-shot examples (MMLU's subject line), or NULL */
    char *subject;       /* MMLU; NULL otherwise */
};

struct llm_eval_docs {
    struct llm_eval_doc *v;
    int n, cap;
};

/* Reads the documents of path (MMLU: a CSV file, or a folder of
 * <subject>_<split>.csv files read in name order; every other layout: JSONL)
 * for a task of that kind. Errors name the file and line: a missing field,
 * a label out of range, fewer than 2 choices, invalid UTF-8. limit > 0 keeps
 * the first limit documents. */
int llm_eval_docs_read(struct llm_eval_docs *d, const char *path, enum llm_eval_format f,
                       enum llm_eval_kind kind, int limit);
void llm_eval_docs_release(struct llm_eval_docs *d);

/* The prompt of doc (a context to score choices after, or to generate from):
 *   description + k examples + doc's context,
 * each example "context" + " " + (its gold choice | its target) + "\n\n"
 * (lm-evaluation-harness's target and few-shot delimiters). The k examples
 * are drawn without replacement from dev (documents whose context equals
 * doc's are skipped; with subjects, only dev documents of doc's subject),
 * by an RNG seeded from (seed, doc_index): the same prompt whatever the
 * batch or --limit. Fewer candidates than k: all of them. Appends to out. */
int llm_eval_prompt(const struct llm_eval_docs *dev, const struct llm_eval_doc *doc, enum llm_eval_kind kind,
                    int k, uint64_t seed, int64_t doc_index, struct llm_bytes *out);

/* Python's str.capitalize (first character upper case, the rest lower) and
 * lm-evaluation-harness's HellaSwag clean-up ("[title]" -> ". ", bracketed
 * spans removed, double spaces halved), exposed for tests. malloc'd. */
char *llm_eval_capitalize(const char *s);
char *llm_eval_hellaswag_clean(const char *s);

/* Splits a CSV text (RFC 4180: quoted fields with "" escapes and line
 * breaks) into rows; calls fn(ctx, fields, n, line) per row; a non-zero
 * return stops with it. Unterminated quotes: LLM_EFORMAT naming name:line. */
int llm_eval_csv(const char *text, size_t len, const char *name,
                 int (*fn)(void *ctx, char **fields, int n, int line), void *ctx);

#endif
