/* answer.h: the final answer of a generated text (the last number, GSM8K's
 * "#### N", or a regex), normalized for comparison, and majority voting
 * over samples (self-consistency, Wang et al. 2023). */
#ifndef LLM_EVAL_ANSWER_H
#define LLM_EVAL_ANSWER_H

enum llm_extract_mode {
    LLM_EXTRACT_LAST_NUMBER, /* the last number in the text (lm-evaluation-harness's "flexible-extract") */
    LLM_EXTRACT_HASH,        /* the number after the first "####" ("strict-match" of gsm8k) */
    LLM_EXTRACT_REGEX,       /* the first match of a PCRE2 pattern: its group 1, else the whole match */
    LLM_EXTRACT_FULL,        /* the whole text, trimmed */
};

struct llm_extractor {
    enum llm_extract_mode mode;
    void *re;                /* pcre2_code for REGEX */
};

/* mode "last-number" | "hash" | "full" | "regex" (with pattern). A pattern
 * that does not compile: LLM_EUSAGE with PCRE2's message and offset. */
int llm_extractor_init(struct llm_extractor *x, const char *mode, const char *pattern);
void llm_extractor_release(struct llm_extractor *x);

/* The normalized answer of text (malloc'd), or NULL when there is none
 * (no number, no match); *err set on out-of-memory. */
char *llm_extract(const struct llm_extractor *x, const char *text, int *err);

/* In place: trims whitespace, drops ',' and '$', a trailing '.', lower-cases
 * ASCII. "$1,234." -> "1234". */
void llm_answer_normalize(char *s);

/* 1 if two normalized answers agree: both parse entirely as numbers and are
 * equal ("18" == "18.0"), or the strings are equal. */
int llm_answer_equal(const char *a, const char *b);

/* The majority answer of k (NULLs, no answer, do not vote): the index of its
 * first occurrence; ties go to the answer seen first; -1 if all are NULL. */
int llm_vote_majority(const char *const *answers, int k);

#endif
