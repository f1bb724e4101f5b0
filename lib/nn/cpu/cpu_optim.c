/* cpu_optim.c: the CPU backend's optimizer ops (contracts in backend.h): a
 * general matrix product for Muon's Newton-Schulz iteration and SOAP's
 * rotations, SGD with momentum, Muon's momentum step, SOAP's Adam direction,
 * and p = a p + b x.
 *
 * Determinism: the elementwise ops compute each element by one thread with
 * the same float expression on every path, so their bits never depend on the
 * thread count (nor on ref). gemm with ref = 0 runs OpenBLAS single-threaded
 * on a fixed grid of output tiles (cpu_gemm_tiled; see cpu_ops.c), each tile
 * keeping the whole K sum; with ref = 1 it is the plain triple loop, threaded
 * over whole output rows. */
#include "cpu_impl.h"
#include "core/err.h"

#include <cblas.h>
#include <math.h>

/* The output tiles of gemm when alpha != 1 (cpu_gemm_tiled has no alpha);
 * the same size as cpu_gemm_tiled's, for the same reasons. */
#define OPT_TILE 256

/* ------------------------------------------------------------------------ */
/* gemm                                                                     */

static int gemm_check(int ta, int tb, int M, int N, int K, int lda, int ldb, int ldc)
{
    if (M < 0 || N < 0 || K < 0)
        return llm_err(LLM_EINVAL, "gemm: dims M=%d N=%d K=%d must be >= 0", M, N, K);
    int a_cols = ta ? M : K, b_cols = tb ? K : N;
    if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) ||
        ldc < (N > 1 ? N : 1))
        return llm_err(LLM_EINVAL,
                       "gemm: leading dims lda=%d ldb=%d ldc=%d too small for M=%d N=%d K=%d "
                       "(ta=%d tb=%d)",
                       lda, ldb, ldc, M, N, K, ta, tb);
    return 0;
}

/* C[i,j] = alpha sum_k op(A)[i,k] op(B)[k,j] + beta C[i,j], each element by
 * one thread, k in order. */
static void gemm_ref(const struct cpu_ctx *c, int ta, int tb, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc)
{
    CPU_PARFOR(cpu_nthreads(c, (size_t)M * N * (K + 1)),
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                float acc = 0.0f;
                for (int k = 0; k < K; k++) {
                    float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                    float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                    acc += a * b;
                }
                float *cij = C + (size_t)i * ldc + j;
                *cij = beta == 0.0f ? alpha * acc : alpha * acc + beta * *cij;
            }
        });
}

/* As cpu_gemm_tiled, with alpha: one single-threaded sgemm per output tile. */
static void gemm_tiled_alpha(const struct cpu_ctx *c, int ta, int tb, int M, int N, int K,
                             float alpha, const float *A, int lda, const float *B, int ldb,
                             float beta, float *C, int ldc)
{
    int tm = (M + OPT_TILE - 1) / OPT_TILE, tn = (N + OPT_TILE - 1) / OPT_TILE;
    long ntiles = (long)tm * tn;
    int nt = ntiles < c->threads ? (int)ntiles : c->threads;
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
    CPU_PARFOR_DYNAMIC(nt,
        for (long k = 0; k < ntiles; k++) {
            int i0 = (int)(k / tn) * OPT_TILE, j0 = (int)(k % tn) * OPT_TILE;
            int mm = M - i0 < OPT_TILE ? M - i0 : OPT_TILE;
            int nn = N - j0 < OPT_TILE ? N - j0 : OPT_TILE;
            const float *at = ta ? A + i0 : A + (size_t)i0 * lda;
            const float *bt = tb ? B + (size_t)j0 * ldb : B + j0;
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                        mm, nn, K, alpha, at, lda, bt, ldb, beta, C + (size_t)i0 * ldc + j0, ldc);
        });
}

int cpu_gemm(void *ctx, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = gemm_check(ta, tb, M, N, K, lda, ldb, ldc);
    if (rc)
        return rc;
    if (M == 0 || N == 0)
        return 0;
    if (K == 0) { /* an empty sum: C = beta C (beta = 0 writes zeros) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *cij = C + (size_t)i * ldc + j;
                *cij = beta == 0.0f ? 0.0f : beta * *cij;
            }
        return 0;
    }
    if (c->ref)
        gemm_ref(c, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else if (alpha == 1.0f)
        cpu_gemm_tiled(c, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, NULL);
    else
        gemm_tiled_alpha(c, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Elementwise optimizer steps. ref runs the same loops on one thread.      */

static int elem_threads(const struct cpu_ctx *c, size_t n)
{
    return c->ref ? 1 : cpu_nthreads(c, n);
}

/* gs = g grad_scale; b = mu b + gs; u = nesterov ? gs + mu b : b;
 * p -= lr wd p + lr u  (Sutskever et al. 2013's momentum in PyTorch's form:
 * the buffer sums raw gradients, lr multiplies the result). */
int cpu_sgd(void *ctx, float *p, const float *g, float *b, size_t n, float lr, float mu,
            int nesterov, float wd, float grad_scale)
{
    struct cpu_ctx *c = cpu(ctx);
    CPU_PARFOR(elem_threads(c, n),
        for (size_t i = 0; i < n; i++) {
            float gs = g[i] * grad_scale;
            float bi = mu * b[i] + gs;
            b[i] = bi;
            float u = nesterov ? gs + mu * bi : bi;
            p[i] -= lr * wd * p[i] + lr * u;
        });
    return 0;
}

/* The same momentum, with the update u written out for Muon to orthogonalize. */
int cpu_momentum(void *ctx, float *u, float *b, const float *g, size_t n, float mu, int nesterov,
                 float grad_scale)
{
    struct cpu_ctx *c = cpu(ctx);
    if (u == b && n)
        return llm_err(LLM_EINVAL, "momentum: the update may not alias the buffer");
    CPU_PARFOR(elem_threads(c, n),
        for (size_t i = 0; i < n; i++) {
            float gs = g[i] * grad_scale;
            float bi = mu * b[i] + gs;
            b[i] = bi;
            u[i] = nesterov ? gs + mu * bi : bi;
        });
    return 0;
}

/* Adam (Kingma & Ba 2015) with the bias corrections 1 - b^t computed once in
 * double, as the adamw op does; the direction is written, not applied. */
int cpu_adam_direction(void *ctx, float *out, const float *g, float *m, float *v, size_t n,
                       float b1, float b2, float eps, int t, float grad_scale)
{
    struct cpu_ctx *c = cpu(ctx);
    if (t < 1)
        return llm_err(LLM_EINVAL, "adam_direction: step %d must be >= 1", t);
    if (!(b1 >= 0.0f && b1 < 1.0f && b2 >= 0.0f && b2 < 1.0f))
        return llm_err(LLM_EINVAL, "adam_direction: betas (%g, %g) must be in [0, 1)",
                       (double)b1, (double)b2);
    float bc1 = (float)(1.0 - pow((double)b1, t));
    float bc2 = (float)(1.0 - pow((double)b2, t));
    CPU_PARFOR(elem_threads(c, n),
        for (size_t i = 0; i < n; i++) {
            float gs = g[i] * grad_scale;
            float mi = b1 * m[i] + (1.0f - b1) * gs;
            float vi = b2 * v[i] + (1.0f - b2) * gs * gs;
            m[i] = mi;
            v[i] = vi;
            out[i] = (mi / bc1) / (sqrtf(vi / bc2) + eps);
        });
    return 0;
}

int cpu_scale_add(void *ctx, float *p, float a, const float *x, float b, size_t n)
{
    struct cpu_ctx *c = cpu(ctx);
    CPU_PARFOR(elem_threads(c, n),
        for (size_t i = 0; i < n; i++)
            p[i] = a * p[i] + b * x[i];);
    return 0;
}
