/* backend.h: the operations the model is written against, once, and that
 * each backend implements: the CPU (lib/nn/cpu, OpenMP + OpenBLAS) and CUDA
 * (kernels/, a later issue). The model never touches tensor memory itself: it
 * allocates buffers through the backend and calls ops on them.
 *
 * Conventions (llm.c's):
 * - Buffers are device pointers of the backend (host memory on the CPU). They
 *   hold fp32 values in this version of the API; a backend that computes in
 *   bf16 keeps fp32 buffers at its boundary and converts inside its ops (the
 *   CUDA backend keeps fp32 master weights and may stage bf16 copies).
 * - Dimension letters: B batch, T time, C channels (d_model), V vocabulary,
 *   NH query heads, NKV key/value heads, HS head size, OC output channels,
 *   N = B*T rows, F = d_ff, E experts.
 * - Layouts are row-major; weights are PyTorch's [out, in].
 * - Forward: outputs first, then inputs, then dimensions.
 * - Backward: activation gradients are written (=), parameter gradients are
 *   accumulated (+=), so gradient accumulation over micro-batches is free.
 * - Every op returns 0 or a negative LLM_E* code with a message; an op a
 *   backend lacks is NULL and the llm_backend_* wrapper reports it.
 * - Ops are asynchronous on a backend with a stream; sync() waits.
 * - A backend context is used by one thread at a time (it may keep state
 *   between calls: the CPU backend's rope tables). */
#ifndef LLM_NN_BACKEND_H
#define LLM_NN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#define LLM_BACKEND_API_VERSION 1

/* One matrix of linear_rows_multi: out (N, OC) = x @ w (OC, C)^T + bias (OC,
 * or NULL); of linear_rows_q8_multi: the same with w[o,c] = wq[o,c] *
 * scales[o, c / G] instead of w. */
struct llm_rows_seg {
    const float *w, *bias;
    float *out;
    int OC;
    const int8_t *wq;
    const float *scales;
};
#define LLM_ROWS_MAX_SEGS 4

struct llm_backend_ops {
    int version; /* LLM_BACKEND_API_VERSION */
    const char *name;

    /* ---- memory ---- */
    int (*alloc)(void *ctx, void **p, size_t bytes);         /* zero-filled */
    void (*free)(void *ctx, void *p);
    /* host -> device; returns once src may be reused (the device may still be copying) */
    int (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
    int (*download)(void *ctx, void *dst, const void *src, size_t bytes); /* device -> host */
    int (*copy)(void *ctx, void *dst, const void *src, size_t bytes);     /* device -> device */
    int (*zero)(void *ctx, void *dst, size_t bytes);
    int (*sync)(void *ctx);

    /* ---- embeddings ----
     * out[n,:] = wte[tokens[n],:] (N, C); tokens < V is checked. */
    int (*embedding_forward)(void *ctx, float *out, const int32_t *tokens, const float *wte, int N,
                             int C, int V);
    /* dwte[tokens[n],:] += dout[n,:] */
    int (*embedding_backward)(void *ctx, float *dwte, const float *dout, const int32_t *tokens, int N,
                              int C);
    /* Position table added to x (B, T, C): x[b,t,:] += wpe[p(b,t),:] with
     * p(b,t) = pos0 + t, or pos0 + pos[b,t] when pos (B, T) is given: packed
     * sequences, whose positions restart at 0 at each example (see attention). */
    int (*add_positions)(void *ctx, float *x, const float *wpe, const int32_t *pos, int B, int T,
                         int C, int pos0);
    /* dwpe[p(b,t),:] += dx[b,t,:] */
    int (*add_positions_backward)(void *ctx, float *dwpe, const float *dx, const int32_t *pos,
                                  int B, int T, int C, int pos0);

    /* ---- norms, over the last dimension C of N rows ----
     * layernorm: out = (x - mean) * rstd * w + b (b may be NULL); saves mean, rstd (N). */
    int (*layernorm_forward)(void *ctx, float *out, float *mean, float *rstd, const float *x,
                             const float *w, const float *b, int N, int C, float eps);
    int (*layernorm_backward)(void *ctx, float *dx, float *dw, float *db, const float *dout,
                              const float *x, const float *w, const float *mean, const float *rstd,
                              int N, int C);
    /* rmsnorm: out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); saves rstd (N).
     * Also used per head for qk_norm (N = B*T*NH, C = HS). */
    int (*rmsnorm_forward)(void *ctx, float *out, float *rstd, const float *x, const float *w,
                           int N, int C, float eps);
    int (*rmsnorm_backward)(void *ctx, float *dx, float *dw, const float *dout, const float *x,
                            const float *w, const float *rstd, int N, int C);

    /* ---- linear layers ----
     * out (N, OC) = x (N, C) @ w (OC, C)^T + bias (OC, may be NULL). */
    int (*matmul_forward)(void *ctx, float *out, const float *x, const float *w, const float *bias,
                          int N, int C, int OC);
    /* dx (N, C) = dout @ w (dx may be NULL: not needed); dw (OC, C) += dout^T @ x;
     * dbias (OC) += column sums of dout (may be NULL). */
    int (*matmul_backward)(void *ctx, float *dx, float *dw, float *dbias, const float *dout,
                           const float *x, const float *w, int N, int C, int OC);

    /* ---- activations, elementwise over n values ----
     * kind: LLM_ACT_RELU, LLM_ACT_GELU (tanh approximation), LLM_ACT_RELU2 (relu(x)^2). */
    int (*activation_forward)(void *ctx, int kind, float *out, const float *x, size_t n);
    /* dx = dout * f'(x) */
    int (*activation_backward)(void *ctx, int kind, float *dx, const float *dout, const float *x,
                               size_t n);
    /* swiglu: out = silu(gate) * up */
    int (*swiglu_forward)(void *ctx, float *out, const float *gate, const float *up, size_t n);
    int (*swiglu_backward)(void *ctx, float *dgate, float *dup, const float *dout,
                           const float *gate, const float *up, size_t n);

    /* ---- attention ----
     * q (B, T, NH, HS), k and v (B, T, NKV, HS) with NH % NKV == 0 (GQA: query
     * head h reads kv head h / (NH / NKV)); causal; window > 0 limits each
     * query to the last `window` keys (itself included). out (B, T, NH, HS);
     * lse (B, NH, T) saves each row's log-sum-exp of the scaled scores for the
     * backward pass (no T x T matrix is kept).
     * pos (B, T), or NULL for one sequence per row: packed sequences. Each
     * row holds whole examples one after another, pos[b,t] the position of
     * token t within its example (0 where one starts, else pos[b,t-1] + 1),
     * and query t sees only the keys of its own example, s >= t - pos[b,t]
     * (as if each example ran alone). */
    int (*attention_forward)(void *ctx, float *out, float *lse, const float *q, const float *k,
                             const float *v, const int32_t *pos, int B, int T, int NH, int NKV,
                             int HS, int window, float scale);
    /* dq, dk, dv are written (=). */
    int (*attention_backward)(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v, const float *out,
                              const float *lse, const int32_t *pos, int B, int T, int NH, int NKV,
                              int HS, int window, float scale);
    /* Causal linear attention (Katharopoulos et al. 2020) with phi(x) = elu(x) + 1:
     * out_t = phi(q_t) S_t / (phi(q_t) . z_t), S_t = sum_{s<=t} phi(k_s) v_s^T,
     * z_t = sum_{s<=t} phi(k_s). Same layouts as attention (GQA allowed). */
    int (*linear_attention_forward)(void *ctx, float *out, const float *q, const float *k,
                                    const float *v, int B, int T, int NH, int NKV, int HS);
    int (*linear_attention_backward)(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                     const float *q, const float *k, const float *v, int B, int T,
                                     int NH, int NKV, int HS);
    /* Rotary embedding of x (B, T, H, HS) in place, HF's rotate_half layout:
     * pairs (i, i + rot_dims/2) for i < rot_dims/2, angle
     * p * theta^(-2i/rot_dims) at position p = pos0 + t (pos0 + pos[b,t] with
     * pos (B, T): packed sequences); channels >= rot_dims untouched (MLA's
     * decoupled key rotates part of a head). rot_dims is even, in 2..HS.
     * Only channels < rot_dims of each head are read or written, so x may
     * point into the head: MLA rotates each head's last R channels with
     * x + HS - R and rot_dims = R (the last head then ends at the buffer's end).
     * backward: the same rotation by the negative angle, in place on dx. */
    int (*rope_forward)(void *ctx, float *x, const int32_t *pos, int B, int T, int H, int HS,
                        int rot_dims, float theta, int pos0);
    int (*rope_backward)(void *ctx, float *dx, const int32_t *pos, int B, int T, int H, int HS,
                         int rot_dims, float theta, int pos0);

    /* ---- rows: softmax, gather and scatter by index, column blocks ----
     * (The mixture-of-experts router and dispatch, and MLA's key assembly.)
     * Row softmax of x (N, C): out[n,j] = exp(x[n,j] - max_i x[n,i]) / sum_i exp(x[n,i] - max).
     * out may alias x. */
    int (*softmax_forward)(void *ctx, float *out, const float *x, int N, int C);
    /* dx[n,j] = out[n,j] * (dout[n,j] - sum_i dout[n,i] out[n,i]) (written); dx may alias dout. */
    int (*softmax_backward)(void *ctx, float *dx, const float *dout, const float *out, int N, int C);
    /* out[m,:] = w[m] * x[idx[m],:] for m < M (w (M) may be NULL: 1); x (N, C),
     * out (M, C), idx (M) in [0, N) is checked before anything is written.
     * The backward of scatter_add_rows with respect to its rows y. */
    int (*gather_rows)(void *ctx, float *out, const float *x, const int32_t *idx, const float *w,
                       int M, int N, int C);
    /* out[idx[m],:] += w[m] * y[m,:] for m < M (w may be NULL: 1); out (N, C),
     * y (M, C), idx (M) in [0, N), checked. An index may repeat: each row of out
     * receives its terms in the order m = 0, 1, ..., M-1 on every backend and
     * thread count (deterministic; no atomics). The backward of gather_rows. */
    int (*scatter_add_rows)(void *ctx, float *out, const float *y, const int32_t *idx,
                            const float *w, int M, int N, int C);
    /* out[m] = a[idx[m],:] . b[m,:] for m < M; a (N, C), b (M, C), idx (M) in
     * [0, N) (checked), or NULL: row m of a (N >= M). The backward of
     * scatter_add_rows with respect to its weights w. */
    int (*rows_dot)(void *ctx, float *out, const float *a, const int32_t *idx, const float *b,
                    int M, int N, int C);
    /* A block of columns: dst[r*dst_stride + j] = src[r*src_stride + j]
     * (accumulate: +=) for r < rows, j < cols; dst_stride >= cols, src_stride
     * >= 0 (0 repeats one source row); dst and src do not overlap. Its
     * backward is the copy the other way (with accumulate where a source
     * block fed several destinations). */
    int (*copy_cols)(void *ctx, float *dst, int dst_stride, const float *src, int src_stride,
                     int rows, int cols, int accumulate);

    /* ---- elementwise helpers ---- */
    int (*add)(void *ctx, float *out, const float *a, const float *b, size_t n); /* out = a + b */
    int (*axpy)(void *ctx, float *y, float alpha, const float *x, size_t n);      /* y += alpha x */
    int (*scale)(void *ctx, float *x, float alpha, size_t n);                      /* x *= alpha */
    /* x (N, D): row i scaled by w[i] (w device, N floats); per-token loss weights. */
    int (*scale_rows)(void *ctx, float *x, const float *w, int N, int D);
    /* Inverted dropout, p in [0, 1): keep with probability 1 - p, scaled by
     * 1 / (1 - p). The mask is a pure function of (seed, index), the same on
     * every backend and thread count, so backward regenerates it:
     *   u_i = (splitmix64 output number i+1 from state seed) >> 40, times 2^-24
     *   keep_i = u_i >= p */
    int (*dropout_forward)(void *ctx, float *out, const float *x, size_t n, float p,
                           uint64_t seed);
    int (*dropout_backward)(void *ctx, float *dx, const float *dout, size_t n, float p,
                            uint64_t seed);

    /* ---- loss ----
     * Softmax cross-entropy, fused: losses (N) = -log softmax(logits)[target];
     * targets < 0 are ignored (loss 0, gradient 0); a target >= V is LLM_EINVAL.
     * With dlogits non-NULL it also writes dlogits = (softmax - onehot) * dloss
     * (dlogits may alias logits); losses may be NULL. */
    int (*cross_entropy)(void *ctx, float *losses, float *dlogits, const float *logits,
                         const int32_t *targets, int N, int V, float dloss);

    /* ---- optimizer and reductions ---- */
    /* sum of squares of x (n), added to *out on the host after a sync. */
    int (*sumsq)(void *ctx, double *out, const float *x, size_t n);
    /* AdamW (Loshchilov & Hutter), step t >= 1, bias-corrected, decoupled decay:
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * p); g scaled by grad_scale first. */
    int (*adamw)(void *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr,
                 float b1, float b2, float eps, float wd, int t, float grad_scale);

    /* ---- optimizers: Muon, SOAP, SGD (lib/optim; docs/optim.md) ----
     * General row-major matrix product C (M, N) = alpha op(A) op(B) + beta C,
     * op(A) (M, K) being A stored (M, K) with row stride lda >= K, or with ta
     * A^T for A stored (K, M), lda >= M; op(B) (K, N) being B stored (K, N),
     * ldb >= N, or with tb B^T for B stored (N, K), ldb >= K; ldc >= N.
     * M, N, K >= 0 (K = 0: C = beta C). beta = 0 writes C without reading it
     * (it may hold NaN). C overlaps neither A nor B. Deterministic: the same
     * bits for any thread count. */
    int (*gemm)(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float beta, float *C, int ldc);
    /* SGD with momentum, decoupled decay, g scaled by grad_scale first:
     * b = mu b + g; u = nesterov ? g + mu b : b; p -= lr wd p + lr u. */
    int (*sgd)(void *ctx, float *p, const float *g, float *b, size_t n, float lr, float mu,
               int nesterov, float wd, float grad_scale);
    /* The momentum step alone (Muon), g scaled by grad_scale first:
     * b = mu b + g; u = nesterov ? g + mu b : b. u (n) is written; it may not alias b. */
    int (*momentum)(void *ctx, float *u, float *b, const float *g, size_t n, float mu,
                    int nesterov, float grad_scale);
    /* Adam's direction without applying it (SOAP's rotated space), step t >= 1,
     * g scaled by grad_scale first: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * out = (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps). out may alias g. */
    int (*adam_direction)(void *ctx, float *out, const float *g, float *m, float *v, size_t n,
                          float b1, float b2, float eps, int t, float grad_scale);
    /* p = a p + b x (n): decay and step in one pass, p = (1 - lr wd) p - lr u. */
    int (*scale_add)(void *ctx, float *p, float a, const float *x, float b, size_t n);
    /* ---- inference (lib/infer) ----
     * A linear layer whose rows are independent: out (N, OC) = x (N, C) @ w (OC, C)^T
     * + bias (OC, may be NULL). Each out[n,:] is bit-identical whatever N and the
     * other rows are (a fixed summation order per element, the same for any
     * thread count), so a sequence decoded in a batch gives the same tokens as
     * decoded alone. Built for the memory-bound decode (N small): w is read
     * once for all N rows. */
    int (*linear_rows)(void *ctx, float *out, const float *x, const float *w, const float *bias,
                       int N, int C, int OC);
    /* linear_rows of nseg (1..LLM_ROWS_MAX_SEGS) matrices that read the same
     * x (N, C): seg[m].out (N, seg[m].OC) = x @ seg[m].w^T + seg[m].bias, each
     * bit-identical to its own linear_rows call. One pass over all the weights
     * (a layer's q, k and v; SwiGLU's two up projections): a decode step then
     * splits work over the threads and waits for them once per group rather
     * than once per matrix. Optional: callers fall back to one linear_rows per
     * matrix. */
    int (*linear_rows_multi)(void *ctx, const float *x, int N, int C, const struct llm_rows_seg *seg,
                             int nseg);
    /* Attention of Tq new queries of one sequence over its cached keys and
     * values. q (Tq, NH, HS) are positions pos0 .. pos0+Tq-1; position p's key
     * and value are rows p % cap of k and v (cap, NKV, HS) (a ring when cap is
     * smaller than the sequence), holding every position the queries see. The
     * query at p sees keys max(0, p - window + 1) .. p (window 0: all of
     * 0 .. p; then cap >= pos0 + Tq; with a window, cap >= window + Tq - 1).
     * GQA as attention_forward; scores scaled by scale, exact softmax with
     * the max subtracted. out (Tq, NH, HS). Each query's result depends only
     * on its own inputs (not on Tq or the thread count). */
    int (*attention_cached)(void *ctx, float *out, const float *q, const float *k, const float *v,
                            int Tq, int pos0, int cap, int NH, int NKV, int HS, int window,
                            float scale);
    /* linear_rows with int8 weights and per-group scales (weight-only
     * quantization): w[o,c] = wq[o,c] * scales[o, c / G], wq (OC, C) int8,
     * scales (OC, C / G), C % G == 0, G in {32, 64}. Activations stay fp32.
     * Same contract as linear_rows (rows independent, fixed order). */
    int (*linear_rows_q8)(void *ctx, float *out, const float *x, const int8_t *wq,
                          const float *scales, const float *bias, int N, int C, int OC, int G);
    /* linear_rows_q8 of nseg (1..LLM_ROWS_MAX_SEGS) matrices (seg[m].wq,
     * seg[m].scales, seg[m].bias, seg[m].out, seg[m].OC) over the same x
     * (N, C), group size G: what linear_rows_multi is to linear_rows, each
     * output bit-identical to its own linear_rows_q8 call. Optional. */
    int (*linear_rows_q8_multi)(void *ctx, const float *x, int N, int C, int G,
                                const struct llm_rows_seg *seg, int nseg);
    /* linear_rows_q8's weights with the activations quantized too (W8A8):
     * each row's groups of G columns to int8 with their own scale (largest
     * |x| / 127), integer dot products per group, then the two scales:
     * out[n,o] = sum_g fmaf(D_g, sx[n,g] * scales[o,g]) + bias[o], D_g the
     * exact int32 dot (lib/nn/cpu/cpu_q8a8.c has the exact math). Rows
     * independent; the same bits on every path of a backend. A NaN or an
     * infinity in a group of x makes that row's outputs NaN. */
    int (*linear_rows_q8a8)(void *ctx, float *out, const float *x, const int8_t *wq,
                            const float *scales, const float *bias, int N, int C, int OC, int G);
    /* The same with 4-bit weights (W4A8): wq (OC, C / 2) packed Q4 codes
     * (infer/quant.h: llm_quant_q4; w = (nibble - 8) * scales[o, c / 32]),
     * scales (OC, C / 32), C % 32 == 0; x quantized per group of 32 as in
     * linear_rows_q8a8. */
    int (*linear_rows_q4a8)(void *ctx, float *out, const float *x, const uint8_t *wq,
                            const float *scales, const float *bias, int N, int C, int OC);
};

enum llm_activation_kind { LLM_ACT_RELU, LLM_ACT_GELU, LLM_ACT_RELU2 };

struct llm_backend {
    const struct llm_backend_ops *ops;
    void *ctx;        /* the backend's own state (threads, stream, handles) */
    int threads;      /* CPU threads it uses */
};

/* The CPU backend (lib/nn/cpu): threads 0 = all cores. ref != 0 selects the
 * plain reference loops instead of the optimized paths (tests use both). */
int llm_backend_cpu_init(struct llm_backend *b, int threads, int ref);
void llm_backend_release(struct llm_backend *b);

#endif
