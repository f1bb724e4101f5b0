/* verify.h: rewards of completions for GRPO/PPO: built-in verifiers (exact, regex, format) and an external
 * command, combined with weights. The math of each and the command's protocol are in docs/verify.md. */
#ifndef LLM_ALIGN_VERIFY_H
#define LLM_ALIGN_VERIFY_H

#include <cjson/cJSON.h>

struct llm_verifier; /* opaque; one caller at a time (not thread-safe) */

/* What the terms of a spec need. Everything is copied by llm_verifier_new. */
struct llm_verifier_opts {
    const char *marker;        /* exact: the final answer is the text after the LAST occurrence of marker in
                                  the completion (to the end of that line; with a marker "<tag>", to "</tag>"
                                  when it comes first), e.g. "####", "Answer:"; NULL or "" = the last number */
    const char *regex;         /* regex: reward 1 if the completion matches (PCRE2, UTF) */
    const char *format_tags;   /* format: "open,close" e.g. "<answer>,</answer>" (the default, NULL or ""):
                                  reward 1 if the completion holds exactly one well-ordered open...close pair
                                  with non-blank content */
    const char *const *argv;   /* command: program and arguments (run without a shell) */
    int argc;
    double timeout_s;          /* command: per call; 0 = 60 s */
};

/* spec: comma-separated "name[:weight]" terms, name in exact | regex | format | command, weight a finite
 * number (default 1; negative = a penalty), e.g. "exact", "exact:1,format:0.2". Each name at most once.
 * Errors (LLM_EUSAGE with a message naming the term): unknown name, bad weight, a regex that does not
 * compile (PCRE2's message and offset), command without argv, a command that is not an executable file
 * (a name without '/' is looked up on PATH now). On success *out is the caller's (llm_verifier_free). */
int llm_verifier_new(struct llm_verifier **out, const char *spec, const struct llm_verifier_opts *o);
void llm_verifier_free(struct llm_verifier *v); /* NULL ok */

/* Rewards of n items. items[i] is a JSON object {"prompt": str, "completion": str, "answer": str or number,
 * ...extra fields, passed through}. rewards[i] = sum over terms of weight * term reward (0 or 1 for the
 * built-ins, any finite number from a command). A missing "completion" (or "answer" for exact) is
 * LLM_EINVAL naming the item. The command is started once per call (not at all when n == 0) with the
 * items as JSONL on its stdin and must print n numbers, one a line; its failure (exit status != 0, a
 * signal, timeout_s passed, too few or too many lines, a line that is not a finite number) is LLM_EIO or
 * LLM_EFORMAT naming the program, what went wrong and the first line of its stderr. */
int llm_verifier_score(struct llm_verifier *v, const cJSON *const *items, int n, double *rewards);

/* Per-term rewards of the last successful llm_verifier_score call (for metrics): unweighted values of
 * term t (in spec order), n of them, valid until the next call. Names are "exact", "regex", ... */
int llm_verifier_terms(const struct llm_verifier *v);
const char *llm_verifier_term_name(const struct llm_verifier *v, int t);
double llm_verifier_term_weight(const struct llm_verifier *v, int t);
const double *llm_verifier_term_rewards(const struct llm_verifier *v, int t);

/* The answer the exact verifier reads from a completion (normalized, malloc'd), or NULL when there is
 * none; marker as in llm_verifier_opts. *err is set (negative) only on out-of-memory. */
char *llm_verifier_extract(const char *completion, const char *marker, int *err);

#endif
