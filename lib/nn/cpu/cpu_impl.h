/* cpu_impl.h: the CPU backend's op functions, shared by the files of
 * lib/nn/cpu (cpu.c fills the ops table with them). Signatures are those of
 * struct llm_backend_ops (backend.h), ctx being a struct cpu_ctx. */
#ifndef LLM_NN_CPU_IMPL_H
#define LLM_NN_CPU_IMPL_H

#include "nn/backend.h"

#include <immintrin.h>
#include <stddef.h>
#include "core/err.h"

/* The cosines and sines of rope for positions 0 .. npos-1 at one (theta,
 * rot_dims), kept between calls (cpu_attention.c): row p holds the n =
 * rot_dims / 2 cosines then the n sines. */
struct cpu_rope_table {
    float theta;
    int rot, npos;
    float *cs;
    unsigned long used; /* the ctx's call count at the last use */
};
#define CPU_ROPE_TABLES 2

struct cpu_ctx {
    int threads; /* OpenMP threads for our loops and OpenBLAS */
    int ref;     /* 1: the plain reference loops (no BLAS, no blocking) */
    struct cpu_rope_table rope[CPU_ROPE_TABLES];
    unsigned long rope_calls;
};

/* Columns per task of column-sum and scatter reductions (a 64-byte cache line). */
#define CPU_COL_CHUNK 16
/* Below this much work (elements touched) a loop runs on one thread. */
#define CPU_PAR_MIN 16384

static inline struct cpu_ctx *cpu(void *ctx) { return (struct cpu_ctx *)ctx; }

/* Threads for a loop touching `work` elements: 1 when threading cannot pay.
 * Results never depend on it: every op is bit-identical for any count. */
static inline int cpu_nthreads(const struct cpu_ctx *c, size_t work)
{
    return work < CPU_PAR_MIN ? 1 : c->threads;
}

/* CPU_PARFOR(nt, for-statement): the loop on nt OpenMP threads (static
 * schedule), or as a plain loop when nt <= 1; CPU_PARFOR_DYNAMIC the same
 * with schedule(dynamic, 1) (tasks of uneven cost). Why not always through
 * OpenMP: a parallel region costs ~1.3 us even with one thread (libgomp
 * ends it with a barrier whose futex wake is a system call: 1.34 us against
 * 0.04 us for the bare loop on this VM: bench/omp_region.c), which is as
 * much as the small ops of a decode step take; a one-thread draft model
 * spent about half its step there. Either way each iteration runs whole on
 * one thread (omp_get_thread_num() is 0 in the plain loop), so no result
 * depends on which branch ran. */
#define CPU_PRAGMA_(x) _Pragma(#x)
#define CPU_PARFOR_(nt, sched, ...)                                               \
    do {                                                                        \
        int cpu_parfor_nt_ = (nt);                                              \
        if (cpu_parfor_nt_ > 1) {                                               \
            CPU_PRAGMA_(omp parallel for num_threads(cpu_parfor_nt_) sched)     \
            __VA_ARGS__                                                         \
        } else {                                                                \
            __VA_ARGS__                                                         \
        }                                                                       \
    } while (0)
#define CPU_PARFOR(nt, ...) CPU_PARFOR_(nt, schedule(static), __VA_ARGS__)
#define CPU_PARFOR_DYNAMIC(nt, ...) CPU_PARFOR_(nt, schedule(dynamic, 1), __VA_ARGS__)

/* cpu_par.c: fn(arg, i0, i1) over [0, n) in pieces, on up to nt OpenMP
 * threads: each thread walks its own contiguous range front to back in
 * chunks of `chunk` indices, then takes chunks from the back of the ranges
 * not yet done (the decode matmuls: long sequential weight reads, no thread
 * left waiting for a slower one). fn must give the same result for an index
 * whichever call and thread do it. */
void cpu_parfor_steal(int nt, int n, int chunk, void (*fn)(void *arg, int i0, int i1), void *arg);

/* cpu_par.c: the output blocks of a multi-matrix decode matmul
 * (linear_rows_multi, linear_rows_q8_multi): blocks of oblk outputs of each
 * segment numbered one after another, segment m holding blocks first[m] ..
 * first[m+1]-1, so one cpu_parfor_steal covers them all. cpu_seg_plan_init
 * checks nseg and each segment's dims (named op in errors), and sets
 * *touched to the weights read (OC C summed). */
struct cpu_seg_plan {
    const struct llm_rows_seg *seg;
    int nseg, oblk;
    int first[LLM_ROWS_MAX_SEGS + 1];
};
int cpu_seg_plan_init(struct cpu_seg_plan *p, const char *op, const struct llm_rows_seg *seg, int nseg,
                      int N, int C, int oblk, size_t *touched);
/* Block b (b increasing from call to call, *m starting at 0): its segment,
 * first output *o0 and output count *O. */
static inline const struct llm_rows_seg *cpu_seg_block(const struct cpu_seg_plan *p, int b, int *m,
                                                       int *o0, int *O)
{
    while (b >= p->first[*m + 1])
        (*m)++;
    const struct llm_rows_seg *s = &p->seg[*m];
    *o0 = (b - p->first[*m]) * p->oblk;
    *O = s->OC - *o0 < p->oblk ? s->OC - *o0 : p->oblk;
    return s;
}

/* Indices per chunk of cpu_parfor_steal when one index reads block_bytes
 * of weights: about CPU_STEAL_BYTES, long enough a sequential run for the
 * prefetchers, short enough to even out the threads' finishing times. */
#define CPU_STEAL_BYTES 65536
static inline int cpu_steal_chunk(size_t block_bytes)
{
    size_t k = CPU_STEAL_BYTES / (block_bytes ? block_bytes : 1);
    return k < 1 ? 1 : (int)k;
}

/* The fixed reduction of 8 lanes of the decode matmuls (cpu_gemv.c,
 * cpu_q8.c, cpu_q8a8.c): ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)). */
__attribute__((target("avx2,fma"), always_inline)) static inline float cpu_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 16 lanes of an AVX-512 accumulator reduced as the AVX2 paths reduce
 * their two 8-lane halves: m = lanes 0-7 + lanes 8-15, then cpu_hsum8. */
__attribute__((target("avx512f,avx2,fma"), always_inline)) static inline float cpu_hsum16(__m512 a)
{
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    return cpu_hsum8(_mm256_add_ps(_mm512_castps512_ps256(a), hi));
}

/* cpu_ops.c: vector math shared by the CPU op files. cpu_has_avx2: 1 when
 * the CPU runs AVX2 + FMA (the fast paths), checked once at run time.
 * cpu_exp_row: y[j] = exp(a x[j] - b) for j < n (y may be x, or NULL: only
 * the sum), returning sum_j y[j] in double, summed in an order that depends
 * only on n; with AVX2 a polynomial exp of relative error < 1e-7 (expf
 * otherwise), exactly 0 below exp(-87.3), NaN kept. */
int cpu_has_avx2(void);
/* cpu_has_avx512: AVX2 + FMA and AVX-512F; cpu_has_avxvnni: AVX2 + FMA and
 * AVX-VNNI; both 0 while cpu_avx2_only is set (tests: the AVX2 kernels run
 * on a CPU that has more, and must give the bits each op promises). */
int cpu_has_avx512(void);
int cpu_has_avxvnni(void);
extern int cpu_avx2_only;
double cpu_exp_row(float *y, const float *x, int n, float a, float b);

/* rows >= 0 and width > 0, or LLM_EINVAL naming op. */
static inline int cpu_check_dims(const char *op, long rows, long width)
{
    if (rows < 0)
        return llm_err(LLM_EINVAL, "%s: row count %ld is negative", op, rows);
    if (width <= 0)
        return llm_err(LLM_EINVAL, "%s: width %ld must be positive", op, width);
    return 0;
}

/* cpu_ops.c: embeddings, norms, matmul, activations, elementwise, loss, optimizer */
int cpu_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte, int N,
                          int C, int V);
int cpu_embedding_backward(void *ctx, float *dwte, const float *dout, const int32_t *tokens, int N,
                           int C);
int cpu_add_positions(void *ctx, float *x, const float *wpe, const int32_t *pos, int B, int T,
                      int C, int pos0);
int cpu_add_positions_backward(void *ctx, float *dwpe, const float *dx, const int32_t *pos, int B,
                               int T, int C, int pos0);
/* Packed positions (backend.h, attention): 0 where an example starts, else
 * the previous position + 1, in every row; 0 or LLM_EINVAL naming op. */
int cpu_check_packed(const char *op, const int32_t *pos, int B, int T);
int cpu_layernorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int N, int C, float eps);
int cpu_layernorm_backward(void *ctx, float *dx, float *dw, float *db, const float *dout,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int N, int C);
int cpu_rmsnorm_forward(void *ctx, float *out, float *rstd, const float *x, const float *w, int N,
                        int C, float eps);
int cpu_rmsnorm_backward(void *ctx, float *dx, float *dw, const float *dout, const float *x,
                         const float *w, const float *rstd, int N, int C);
int cpu_matmul_forward(void *ctx, float *out, const float *x, const float *w, const float *bias,
                       int N, int C, int OC);
int cpu_matmul_backward(void *ctx, float *dx, float *dw, float *dbias, const float *dout,
                        const float *x, const float *w, int N, int C, int OC);
int cpu_activation_forward(void *ctx, int kind, float *out, const float *x, size_t n);
int cpu_activation_backward(void *ctx, int kind, float *dx, const float *dout, const float *x,
                            size_t n);
int cpu_swiglu_forward(void *ctx, float *out, const float *gate, const float *up, size_t n);
int cpu_swiglu_backward(void *ctx, float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, size_t n);
int cpu_add(void *ctx, float *out, const float *a, const float *b, size_t n);
int cpu_axpy(void *ctx, float *y, float alpha, const float *x, size_t n);
int cpu_scale(void *ctx, float *x, float alpha, size_t n);
int cpu_scale_rows(void *ctx, float *x, const float *w, int N, int D);
int cpu_dropout_forward(void *ctx, float *out, const float *x, size_t n, float p, uint64_t seed);
int cpu_dropout_backward(void *ctx, float *dx, const float *dout, size_t n, float p, uint64_t seed);
int cpu_cross_entropy(void *ctx, float *losses, float *dlogits, const float *logits,
                      const int32_t *targets, int N, int V, float dloss);
int cpu_sumsq(void *ctx, double *out, const float *x, size_t n);
int cpu_adamw(void *ctx, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
              float b2, float eps, float wd, int t, float grad_scale);

/* cpu_attention.c: softmax attention, linear attention, rotary embeddings */
int cpu_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                          const float *v, const int32_t *pos, int B, int T, int NH, int NKV, int HS,
                          int window, float scale);
int cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *out,
                           const float *lse, const int32_t *pos, int B, int T, int NH, int NKV,
                           int HS, int window, float scale);
int cpu_linear_attention_forward(void *ctx, float *out, const float *q, const float *k,
                                 const float *v, int B, int T, int NH, int NKV, int HS);
int cpu_linear_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, int B, int T,
                                  int NH, int NKV, int HS);
int cpu_rope_forward(void *ctx, float *x, const int32_t *pos, int B, int T, int H, int HS,
                     int rot_dims, float theta, int pos0);
int cpu_rope_backward(void *ctx, float *dx, const int32_t *pos, int B, int T, int H, int HS,
                      int rot_dims, float theta, int pos0);

/* cpu_ops.c: row-major C (M, Nc) = A' (M, K) @ B' (K, Nc) + beta C on a fixed
 * grid of output tiles, each an OpenBLAS single-thread sgemm (bit-identical for
 * any thread count). ta: A stored (K, M); tb: B stored (Nc, K). bias (Nc) or
 * NULL: rows start at bias and beta is taken as 1. */
void cpu_gemm_tiled(const struct cpu_ctx *c, int ta, int tb, int M, int Nc, int K, const float *A,
                    int lda, const float *B, int ldb, float beta, float *Cm, int ldc,
                    const float *bias);

/* cpu_rows.c: row softmax, gather/scatter by index, row dots, column blocks */
int cpu_softmax_forward(void *ctx, float *out, const float *x, int N, int C);
int cpu_softmax_backward(void *ctx, float *dx, const float *dout, const float *out, int N, int C);
int cpu_gather_rows(void *ctx, float *out, const float *x, const int32_t *idx, const float *w, int M,
                    int N, int C);
int cpu_scatter_add_rows(void *ctx, float *out, const float *y, const int32_t *idx, const float *w,
                         int M, int N, int C);
int cpu_rows_dot(void *ctx, float *out, const float *a, const int32_t *idx, const float *b, int M,
                 int N, int C);
int cpu_copy_cols(void *ctx, float *dst, int dst_stride, const float *src, int src_stride, int rows,
                  int cols, int accumulate);

/* cpu_optim.c: the optimizer ops (gemm, sgd, momentum, adam_direction, scale_add) */
int cpu_gemm(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);
int cpu_sgd(void *ctx, float *p, const float *g, float *b, size_t n, float lr, float mu,
            int nesterov, float wd, float grad_scale);
int cpu_momentum(void *ctx, float *u, float *b, const float *g, size_t n, float mu, int nesterov,
                 float grad_scale);
int cpu_adam_direction(void *ctx, float *out, const float *g, float *m, float *v, size_t n,
                       float b1, float b2, float eps, int t, float grad_scale);
int cpu_scale_add(void *ctx, float *p, float a, const float *x, float b, size_t n);

/* cpu_gemv.c: linear_rows, the decode matmul (rows independent, weights read once) */
int cpu_linear_rows(void *ctx, float *out, const float *x, const float *w, const float *bias, int N,
                    int C, int OC);
int cpu_linear_rows_multi(void *ctx, const float *x, int N, int C, const struct llm_rows_seg *seg,
                          int nseg);

/* cpu_kv.c: attention of new queries over a sequence's key/value cache */
int cpu_attention_cached(void *ctx, float *out, const float *q, const float *k, const float *v,
                         int Tq, int pos0, int cap, int NH, int NKV, int HS, int window,
                         float scale);

/* cpu_q8.c: linear_rows_q8, the decode matmul over int8 weights */
int cpu_linear_rows_q8(void *ctx, float *out, const float *x, const int8_t *wq, const float *scales,
                       const float *bias, int N, int C, int OC, int G);
int cpu_linear_rows_q8_multi(void *ctx, const float *x, int N, int C, int G, const struct llm_rows_seg *seg,
                             int nseg);
/* cpu_q8a8.c */
int cpu_linear_rows_q8a8(void *ctx, float *out, const float *x, const int8_t *wq, const float *scales,
                         const float *bias, int N, int C, int OC, int G);
int cpu_linear_rows_q4a8(void *ctx, float *out, const float *x, const uint8_t *wq, const float *scales,
                         const float *bias, int N, int C, int OC);

#endif
