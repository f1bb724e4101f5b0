/* quant.h: weight-only quantization of linear-layer weights for decoding
 * (int8 per-group symmetric, Q8; 4-bit groups of 32, Q4): a decode step reads
 * every weight once, so 1 or 0.5 bytes per weight instead of 4 is the speed-up.
 * Formats, error bounds and costs: docs/quant.md. The int8 matmul is the
 * backend op linear_rows_q8 (nn/backend.h). */
#ifndef LLM_INFER_QUANT_H
#define LLM_INFER_QUANT_H

#include <stddef.h>
#include <stdint.h>

struct llm_model;

/* ---- Q8: symmetric per-group int8 ----
 * For each row o and group g of G consecutive columns (G 32 or 64, C % G == 0):
 *   scale = max_{c in g} |w[o,c]| / 127   (0 for an all-zero group),
 *   wq[o,c] = round-half-away-from-zero(w[o,c] / scale), clamped to [-127, 127]
 *   (-128 is never produced: the code is symmetric).
 * w (OC, C) fp32; wq (OC, C) int8 and scales (OC, C / G) are written by the
 * caller's buffers. Dequantized: w'[o,c] = wq[o,c] * scale (one float
 * product), |w - w'| <= scale / 2 up to float rounding (docs/quant.md).
 * Errors (LLM_EINVAL, nothing written): OC or C < 1, G not 32 or 64, C % G,
 * a NaN or infinite weight. */
int llm_quant_q8(const float *w, int OC, int C, int G, int8_t *wq, float *scales);
/* w (OC, C) = wq * scales, as linear_rows_q8 uses them (the same float
 * products). Arguments are those llm_quant_q8 accepted. */
void llm_dequant_q8(const int8_t *wq, const float *scales, int OC, int C, int G, float *w);

/* ---- Q4: 4-bit groups of 32 (LLM_Q4_GROUP) ----
 * After llama.cpp's Q4_0 (ggml's block_q4_0: 32 weights, one scale, 4-bit
 * codes with an offset of 8); the code here is our own and so is the nibble
 * order. Per row o and group g of 32 columns: m = the weight of largest |w|
 * (the first one on a tie), d = m / -8 (0 for an all-zero group), q =
 * clamp(round-half-away(w / d), -8, 7); the max-magnitude weight maps to -8
 * exactly, so the 16 levels -8..7 all serve. Stored as q + 8 in [0, 15], two
 * per byte: packed[o, c/2] holds column c (even) in its low nibble and c + 1
 * in its high nibble. packed (OC, C / 2) bytes, scales (OC, C / 32) = d.
 * |w - q d| <= |d| / 2, or <= |d| for the weights of sign opposite to m
 * near |m| that clamp to 7 (up to float rounding). Errors (LLM_EINVAL,
 * nothing written): OC or C < 1, C % 32, a NaN or infinite weight. */
#define LLM_Q4_GROUP 32
int llm_quant_q4(const float *w, int OC, int C, uint8_t *packed, float *scales);
/* w (OC, C) = (nibble - 8) * d. */
void llm_dequant_q4(const uint8_t *packed, const float *scales, int OC, int C, float *w);

/* ---- a whole model in Q8 ----
 * Every 2-D weight of a linear layer (params.h kinds MATRIX and EMBEDDING:
 * the tied output head reads tok_emb) whose input width is a multiple of G
 * is quantized; routers, norms, biases and position tables stay fp32. The
 * int8 codes and scales go to backend memory (one buffer each, per-tensor
 * offsets), and the model's fp32 parameters are overwritten with the
 * dequantized values, so every path (sgemm prefill, embedding lookups,
 * linear_rows_q8 decode, which computes exactly linear_rows over the
 * dequantized weights) runs the same quantized model. */
struct llm_q8 {
    int G;
    int bits;          /* 8: int8 codes (OC, C); 4: Q4 (G = 32), packed nibbles (OC, C / 2) */
    int8_t *wq;        /* backend memory */
    float *scales;     /* backend memory */
    size_t *wq_off;    /* (layout.n) offset of tensor i's codes in wq, SIZE_MAX if not quantized */
    size_t *sc_off;    /* (layout.n) offset of its scales */
    size_t n;          /* layout.n */
    size_t quantized;  /* weights quantized (elements) */
};
/* Quantizes m in place (see above); q need not be initialized. Release with
 * llm_q8_release (m's backend must still be alive). */
int llm_model_quantize_q8(struct llm_model *m, int G, struct llm_q8 *q);
/* The same in Q4 (groups of 32, llm_quant_q4): q->bits = 4, q->wq the packed
 * codes; decoded by linear_rows_q4a8 (int8 activations). */
int llm_model_quantize_q4(struct llm_model *m, struct llm_q8 *q);
void llm_q8_release(struct llm_q8 *q, struct llm_model *m);

#endif
