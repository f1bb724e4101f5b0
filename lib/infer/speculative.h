/* speculative.h: the accept/reject rule of speculative sampling (Leviathan
 * et al. 2023, "Fast Inference from Transformers via Speculative Decoding";
 * Chen et al. 2023, "Accelerating Large Language Model Decoding with
 * Speculative Sampling"): a draft model proposes K tokens x_1..x_K drawn from
 * its distributions q_1..q_K; the target scores them in one pass, giving
 * p_1..p_{K+1}; x_i is accepted with probability min(1, p_i(x_i) / q_i(x_i));
 * at the first rejection a token is drawn from norm(max(0, p_i - q_i)) and
 * the round ends; if all K pass, a bonus token is drawn from p_{K+1}. Each
 * emitted token is then distributed exactly as the target's p (the lemma of
 * both papers), so sampling with a draft changes the speed, not the output
 * distribution; with greedy p and q (one-hot) the output is the target's
 * greedy output. */
#ifndef LLM_INFER_SPECULATIVE_H
#define LLM_INFER_SPECULATIVE_H

#include <stdint.h>

#include "infer/sample.h"

/* One round. p (K+1, V) and q (K, V) are the distributions the target and
 * the draft sample from (llm_sampler_probs: the same transforms on both);
 * x (K) the draft's tokens. Writes the emitted tokens to out (K+1 at most:
 * the accepted ones, then the replacement or the bonus) and their count to
 * *n_out; *accepted = how many of x were accepted. Uniforms come from s (the
 * target's sampler). scratch: V floats. */
int llm_spec_round(struct llm_sampler *s, const float *p, const float *q, const int32_t *x, int K, int V,
                   float *scratch, int32_t *out, int *n_out, int *accepted);

#endif
