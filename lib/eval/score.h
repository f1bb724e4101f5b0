/* score.h: what evaluation asks of a model: the log-likelihood of
 * continuations given contexts (batched; multiple choice and judges), and
 * the loss of a token stream over context-length windows (perplexity). */
#ifndef LLM_EVAL_SCORE_H
#define LLM_EVAL_SCORE_H

#include <stdint.h>

#include "core/progress.h"
#include "model/model.h"

/* One request: log P(cont | ctx) = sum_i log P(cont[i] | ctx, cont[<i]). */
struct llm_ll_req {
    const int32_t *ctx;   /* (n_ctx) borrowed, n_ctx >= 1 (callers put end-of-text first when empty) */
    int n_ctx;
    const int32_t *cont;  /* (n_cont) borrowed, 1 <= n_cont <= context_length */
    int n_cont;
};

struct llm_ll_out {
    double logprob;       /* summed natural-log probability of the continuation */
    int truncated;        /* the context was cut on the left to fit the window */
};

/* Scores n requests with m (eval mode). Each is one row x = (ctx ++ cont)[:-1]
 * with targets shifted by one, only the continuation's targets counted; a row
 * longer than the context length keeps its last T tokens (lm-evaluation-
 * harness's left truncation). Rows are sorted by length (longest first) and
 * packed up to `batch` per forward pass, padded on the right: causal
 * attention makes a row's scores independent of padding and of its
 * neighbours. progress (may be NULL) advances by one per request. */
int llm_eval_loglik(struct llm_model *m, const struct llm_ll_req *reqs, int n, int batch,
                    struct llm_ll_out *out, struct llm_progress *progress);

/* Perplexity windows over ids (n): window k reads x = ids[kS : kS+T] and
 * predicts y = ids[kS+1 : kS+T+1] (T = context length, S = stride), for
 * every k with kS + T + 1 <= n. The first window scores all its T targets,
 * each later one only the S targets past the previous window's end, so every
 * scored token is scored once, with at least T - S tokens of context after
 * the first window; S = T is the plain split into disjoint windows. The
 * scored targets are ids[1 .. 1 + tokens). */
struct llm_ppl_opts {
    int stride;           /* 1..T; 0 = T */
    int batch;            /* windows per forward pass (>= 1) */
    int64_t max_windows;  /* 0 = all */
};

struct llm_ppl_result {
    double nats;          /* summed loss */
    int64_t tokens;       /* scored targets */
    int64_t windows;
};

/* Errors: fewer than T + 1 tokens (no window), an id outside the vocabulary.
 * progress (may be NULL) counts scored tokens. */
int llm_eval_perplexity(struct llm_model *m, const int32_t *ids, int64_t n, const struct llm_ppl_opts *o,
                        struct llm_ppl_result *r, struct llm_progress *progress);

#endif
