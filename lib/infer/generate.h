/* generate.h: text generation over the KV-cache engine (infer.h): prompts
 * encoded, prefilled in one pass each, then decoded together (continuous
 * batching: up to `batch` sequences at once, a finished one's slot goes to
 * the next prompt), sampled (sample.h), detokenized as complete UTF-8 and
 * cut at stop strings. Each sequence has its own sampler seeded with the
 * same seed, and batched decoding is row-independent, so a prompt gives the
 * same completion alone or in any batch. */
#ifndef LLM_INFER_GENERATE_H
#define LLM_INFER_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "infer/infer.h"
#include "infer/quant.h"
#include "infer/sample.h"
#include "model/model.h"
#include "tok/tok.h"

enum llm_gen_truncate { LLM_GEN_TRUNCATE_ERROR, LLM_GEN_TRUNCATE_LEFT };

struct llm_gen_opts {
    struct llm_sampler_opts sample;
    int max_tokens;             /* new tokens per prompt (>= 1) */
    const char *const *stops;   /* stop strings (borrowed); the completion ends before the first match */
    int n_stops;
    int64_t eot;                /* end-of-text id: generation stops there (not part of the text); -1 = none */
    int batch;                  /* sequences decoded at once (>= 1) */
    enum llm_gen_truncate truncate; /* a prompt that leaves no room in the context */
    int allow_special;          /* special-token text in prompts becomes its id */
    /* Speculative decoding (speculative.h): a draft model with the same
     * vocabulary proposes draft_tokens (1..15) tokens per round, the target
     * scores them in one pass. Prompts then run one at a time (batch 1). */
    struct llm_model *draft;    /* NULL = none */
    int draft_tokens;
    double draft_p_min;         /* end a round's draft early: a token drawn where the draft's most likely
                                 * token has probability < draft_p_min (softmax of its raw logits) is the
                                 * round's last; 0 = always draft_tokens */
    const struct llm_q8 *draft_q8; /* int8 weights of the draft (a cheaper proposal; exactness is the
                                    * target's), or NULL */
    const struct llm_q8 *q8;    /* int8 weights of the model for decoding (quant.h), or NULL */
    int a8, draft_a8;           /* with q8 / draft_q8: int8 activations too (W8A8, llm_infer_use_a8) */
    const uint64_t *seeds;      /* (n) a sampling seed per prompt, or NULL: sample.seed for all */
};

enum llm_gen_finish { LLM_GEN_STOP, LLM_GEN_LENGTH };

struct llm_gen_result {
    char *completion;           /* malloc'd, NUL-terminated (also counted by len) */
    size_t len;
    int64_t prompt_tokens;      /* after truncation */
    int64_t tokens;             /* generated (the end-of-text token included when it ended the text) */
    enum llm_gen_finish finish; /* stop: end-of-text or a stop string; length: max_tokens or the context */
    double ttft_s;              /* from the start of its prefill to its first token */
    int32_t *ids;               /* (n_ids, malloc'd) the generated ids, the end-of-text or the token that
                                   completed a stop string included: what the model sampled (RL needs them) */
    int n_ids;
};

struct llm_gen_stats {
    int64_t prompt_tokens, gen_tokens;
    int64_t decode_tokens;      /* of gen_tokens, those sampled after decode steps (not after a prefill) */
    double prefill_s, decode_s; /* wall time in prefills and in decode steps */
    double ttft_s;              /* of the first prompt */
    int64_t decode_steps;       /* batched steps, or speculative rounds */
    int64_t draft_proposed, draft_accepted; /* speculative decoding: acceptance = accepted / proposed */
};

/* Called with text of prompt i as it becomes final (complete characters,
 * never part of a possible stop string); a non-zero return stops everything
 * with that code. NULL = no streaming. */
typedef int (*llm_gen_stream_fn)(void *ctx, int i, const char *text, size_t n);

/* Completes n prompts (prompts[i] of lens[i] bytes) with model m and
 * tokenizer tok; results (n) are filled in (release with
 * llm_gen_results_release). Errors: an empty prompt, a prompt too long for
 * the context (with LLM_GEN_TRUNCATE_ERROR), a tokenizer larger than the
 * model's vocabulary: LLM_EINVAL naming the prompt. */
int llm_generate(struct llm_model *m, const struct llm_tokenizer *tok, const char *const *prompts,
                 const size_t *lens, int n, const struct llm_gen_opts *o, llm_gen_stream_fn fn, void *ctx,
                 struct llm_gen_result *results, struct llm_gen_stats *stats);
void llm_gen_results_release(struct llm_gen_result *r, int n);

/* "stop" or "length". */
const char *llm_gen_finish_name(enum llm_gen_finish f);

/* The end-of-text id of a tokenizer: the first of <|endoftext|>,
 * <|end_of_text|>, </s>, <|im_end|>, <eos> it has, or -1. */
int64_t llm_gen_default_eot(const struct llm_tokenizer *tok);

#endif
