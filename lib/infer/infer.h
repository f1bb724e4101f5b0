/* infer.h: the inference forward pass of a model (lib/model) with a cache:
 * prefill a prompt in batched chunks, then decode token by token reusing each
 * sequence's cached keys and values, several sequences at once. Every model
 * variant llm_model_forward runs is supported; docs/infer.md has the cache
 * layouts and their bytes per token.
 *
 * Per layer and sequence the cache holds, in backend memory:
 *   softmax attention   keys and values after qk_norm and rope, NKV heads:
 *                       (cap, NKV*HS) each; cap = max_len, or with a sliding
 *                       window a ring of cap = min(max_len, window +
 *                       LLM_INFER_CHUNK - 1 + LLM_INFER_SLACK) rows
 *   mla                 only the normalized latent c_kv (cap, K) and the
 *                       shared rope key before rope (cap, R); keys and values
 *                       are expanded from them with wkv_b when attending
 *   linear attention    no cache: the recurrent state S (HS x HS) and z (HS)
 *                       per kv head, kept on the host with snapshots of the
 *                       last LLM_INFER_SLACK steps (for truncate)
 *
 * Determinism: decode and short prefills (<= LLM_INFER_ROWS tokens) run only
 * row-independent ops (linear_rows, row norms, attention_cached per query),
 * so a sequence's logits do not depend on the other sequences of a decode
 * batch, and prefilling k <= LLM_INFER_ROWS tokens gives the bits of decoding
 * them one at a time (speculative decoding's draft scores equal the decode's).
 * Longer prefill chunks use matmul_forward (sgemm): equal within float
 * rounding. */
#ifndef LLM_INFER_INFER_H
#define LLM_INFER_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* Tokens per prefill chunk: the rows of one batched forward pass. */
#define LLM_INFER_CHUNK 64
/* Chunks of at most this many rows (and every decode step) use linear_rows. */
#define LLM_INFER_ROWS 16
/* Extra ring rows of a sliding window (and linear attention's snapshots):
 * how far truncate can go back (see llm_infer_truncate). */
#define LLM_INFER_SLACK 16

struct llm_infer; /* opaque: per-sequence caches and scratch for one model */

/* Caches for up to max_seqs sequences of up to max_len tokens each (1 <=
 * max_len <= context_length) for the model m (borrowed: its params and
 * backend; m must outlive x). LLM_EINVAL for bad sizes, LLM_ENOMEM. Free
 * with llm_infer_free. */
int llm_infer_new(struct llm_infer **out, const struct llm_model *m, int max_seqs, int max_len);
void llm_infer_free(struct llm_infer *x); /* NULL ok */

/* Appends tokens (n >= 1, host, each in [0, V)) to sequence seq (0 <= seq <
 * max_seqs) and computes their logits: with all = 0 only the last token's (V
 * floats) into logits (host), with all = 1 all n rows (n, V). Long inputs are
 * processed in chunks of LLM_INFER_CHUNK tokens. A sequence that would
 * exceed max_len is LLM_EINVAL (nothing appended); so are bad arguments. On a
 * backend failure the sequence is truncated back to its old length (reset to
 * 0 where that is impossible). */
int llm_infer_prefill(struct llm_infer *x, int seq, const int32_t *tokens, int n, float *logits,
                      int all);

/* One decode step for n distinct sequences at once (1 <= n <= max_seqs):
 * tokens[i] appended to seqs[i]; logits (n, V) host. The logits of each
 * sequence are bit-identical to decoding it alone (n = 1) and to
 * llm_infer_prefill of that one token. Duplicate or out-of-range sequences,
 * a full sequence or a bad token are LLM_EINVAL (nothing appended). */
int llm_infer_decode(struct llm_infer *x, const int *seqs, const int32_t *tokens, int n,
                     float *logits);

/* Tokens in sequence seq (0 for an out-of-range seq). */
int llm_infer_len(const struct llm_infer *x, int seq);

/* Drops positions >= len of seq (0 <= len <= its length; 0 resets it):
 * speculative decoding's rejected draft tokens. Limits (LLM_EUNSUPPORTED,
 * nothing changed, when exceeded; len = 0 always works):
 *   full attention, MLA: none;
 *   sliding window: once the ring has wrapped, len >= hw - (cap - window + 1),
 *     hw being the highest length the sequence reached since its last reset
 *     (at least LLM_INFER_CHUNK + LLM_INFER_SLACK positions can go);
 *   linear attention: len >= length - LLM_INFER_SLACK (the snapshots kept),
 *     counted from the most recent overwrite of a snapshot.
 * LLM_EINVAL for a bad seq or len. */
int llm_infer_truncate(struct llm_infer *x, int seq, int len);

/* Decode (and prefill chunks of <= LLM_INFER_ROWS rows) with the int8
 * weights of q (quant.h: llm_model_quantize_q8 of the same model; borrowed,
 * must outlive x) through linear_rows_q8; NULL goes back to fp32. The
 * results equal linear_rows over the dequantized weights (which q left in the
 * model) within float rounding, not bit for bit: linear_rows_q8 sums
 * per-group partial sums and scales each once (docs/quant.md). A sequence's
 * logits still do not depend on the other sequences of a decode batch or on
 * the thread count. */
struct llm_q8;
void llm_infer_use_q8(struct llm_infer *x, const struct llm_q8 *q);
/* on = 1: with int8 weights (llm_infer_use_q8), quantize the activations
 * too, per group, and take the integer dot products of linear_rows_q8a8
 * (W8A8: faster where the int8 step is bound by arithmetic, and no longer
 * within float rounding of the dequantized model: docs/quant.md). */
void llm_infer_use_a8(struct llm_infer *x, int on);

/* Bytes of cache per token per sequence (all layers), for reports: K+V
 * floats (2 NKV HS per layer), MLA's latent and rope key (K + R per layer);
 * 0 for linear attention, whose state does not grow with the sequence
 * (llm_infer_state_bytes). */
size_t llm_infer_cache_bytes_per_token(const struct llm_model *m);

/* Bytes of fixed per-sequence state (all layers): linear attention's S and z
 * with its snapshots; 0 for the other variants. */
size_t llm_infer_state_bytes(const struct llm_model *m);

#endif
