/* cpu_rows.c: the CPU backend's row ops (contracts in backend.h): the row
 * softmax of the mixture-of-experts router, gathering rows by an index list
 * (dispatching tokens to experts), scatter-adding them back (combining the
 * experts' outputs), per-row dot products (the gate gradient), and strided
 * copies of column blocks (assembling MLA's keys).
 *
 * Threads and determinism as in cpu_ops.c: OpenMP over rows with
 * num_threads = ctx->threads (one thread for small problems), each output
 * element computed by one thread in a fixed order, so results are
 * bit-identical for any thread count. scatter_add_rows is the one op whose
 * output rows may receive several terms (an index may repeat): it is split
 * over column chunks, and each chunk walks m = 0..M-1 in order, so every
 * element sums its terms in list order whatever the split. ctx->ref = 1 runs
 * the same loops on one thread (these ops have no faster variant to check).
 *
 * Validation: row counts may be 0 (nothing to do), widths must be > 0, and
 * indices are range-checked before anything is written. */
#include "cpu_impl.h"
#include "core/err.h"

#include <math.h>
#include <string.h>


/* idx (M) must lie in [0, N); N must be >= 0. */
static int check_index(const char *op, const int32_t *idx, int M, int N)
{
    if (N < 0)
        return llm_err(LLM_EINVAL, "%s: row count %d of the indexed tensor is negative", op, N);
    for (int m = 0; m < M; m++)
        if (idx[m] < 0 || idx[m] >= N)
            return llm_err(LLM_EINVAL, "%s: index %d at position %d is outside [0, %d)", op, idx[m],
                           m, N);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Row softmax                                                              */

int cpu_softmax_forward(void *ctx, float *out, const float *x, int N, int C)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("softmax_forward", N, C);
    if (rc)
        return rc;
    /* Per row, with mx = max_j x_j (no exp overflows) and S = sum_j exp(x_j - mx)
     * in double (1 <= S <= C): out_j = exp(x_j - mx) / S. Every x_j is read
     * before out_j is written, so out may alias x. */
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C;
            float *o = out + (size_t)n * C;
            float mx = xr[0];
            for (int j = 1; j < C; j++)
                mx = xr[j] > mx ? xr[j] : mx;
            double sum = 0.0;
            for (int j = 0; j < C; j++)
                sum += expf(xr[j] - mx);
            float k = (float)(1.0 / sum);
            for (int j = 0; j < C; j++)
                o[j] = expf(xr[j] - mx) * k;
        });
    return 0;
}

int cpu_softmax_backward(void *ctx, float *dx, const float *dout, const float *out, int N, int C)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("softmax_backward", N, C);
    if (rc)
        return rc;
    /* y = softmax(x): dy_j/dx_i = y_j ([i == j] - y_i), so
     * dx_i = sum_j dout_j y_j ([i == j] - y_i) = y_i (dout_i - s), s = sum_j dout_j y_j
     * (s in double, formed before any write: dx may alias dout). */
    CPU_PARFOR(cpu_nthreads(c, (size_t)N * C),
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * C, *y = out + (size_t)n * C;
            float *g = dx + (size_t)n * C;
            double s = 0.0;
            for (int j = 0; j < C; j++)
                s += (double)d[j] * y[j];
            float sf = (float)s;
            for (int j = 0; j < C; j++)
                g[j] = y[j] * (d[j] - sf);
        });
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Gather, scatter-add, row dots                                            */

int cpu_gather_rows(void *ctx, float *out, const float *x, const int32_t *idx, const float *w, int M,
                    int N, int C)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("gather_rows", M, C);
    if (rc || (rc = check_index("gather_rows", idx, M, N)))
        return rc;
    /* out[m,:] = w[m] * x[idx[m],:]  (M, C) <- (N, C) */
    CPU_PARFOR(cpu_nthreads(c, (size_t)M * C),
        for (int m = 0; m < M; m++) {
            const float *src = x + (size_t)idx[m] * C;
            float *dst = out + (size_t)m * C;
            if (!w) {
                memcpy(dst, src, (size_t)C * sizeof(float));
            } else {
                float wm = w[m];
                for (int j = 0; j < C; j++)
                    dst[j] = wm * src[j];
            }
        });
    return 0;
}

int cpu_scatter_add_rows(void *ctx, float *out, const float *y, const int32_t *idx, const float *w,
                         int M, int N, int C)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("scatter_add_rows", M, C);
    if (rc || (rc = check_index("scatter_add_rows", idx, M, N)))
        return rc;
    /* out[idx[m],:] += w[m] * y[m,:]. Rows of out may repeat in idx, so the
     * split is over column chunks; each chunk adds the terms of m = 0..M-1 in
     * order (the sum order of an element never depends on the threads). */
    int nchunks = (C + CPU_COL_CHUNK - 1) / CPU_COL_CHUNK;
    CPU_PARFOR(cpu_nthreads(c, (size_t)M * C),
        for (int k = 0; k < nchunks; k++) {
            int j0 = k * CPU_COL_CHUNK, j1 = j0 + CPU_COL_CHUNK < C ? j0 + CPU_COL_CHUNK : C;
            for (int m = 0; m < M; m++) {
                float *dst = out + (size_t)idx[m] * C;
                const float *src = y + (size_t)m * C;
                float wm = w ? w[m] : 1.0f;
                for (int j = j0; j < j1; j++)
                    dst[j] += wm * src[j];
            }
        });
    return 0;
}

int cpu_rows_dot(void *ctx, float *out, const float *a, const int32_t *idx, const float *b, int M,
                 int N, int C)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("rows_dot", M, C);
    if (rc)
        return rc;
    if (idx)
        rc = check_index("rows_dot", idx, M, N);
    else if (N < M)
        rc = llm_err(LLM_EINVAL, "rows_dot: without an index, a needs M = %d rows, has %d", M, N);
    if (rc)
        return rc;
    /* out[m] = sum_j a[idx[m], j] b[m, j], in float, j in order */
    CPU_PARFOR(cpu_nthreads(c, (size_t)M * C),
        for (int m = 0; m < M; m++) {
            const float *ar = a + (size_t)(idx ? idx[m] : m) * C, *br = b + (size_t)m * C;
            float acc = 0.0f;
            for (int j = 0; j < C; j++)
                acc += ar[j] * br[j];
            out[m] = acc;
        });
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Column blocks                                                            */

int cpu_copy_cols(void *ctx, float *dst, int dst_stride, const float *src, int src_stride, int rows,
                  int cols, int accumulate)
{
    struct cpu_ctx *c = cpu(ctx);
    int rc = cpu_check_dims("copy_cols", rows, cols);
    if (rc)
        return rc;
    if (dst_stride < cols || src_stride < 0)
        return llm_err(LLM_EINVAL, "copy_cols: strides %d (dst) and %d (src) for %d columns: need "
                       "dst_stride >= cols and src_stride >= 0", dst_stride, src_stride, cols);
    /* dst[r, 0:cols] (=|+=) src[r, 0:cols], rows strided */
    CPU_PARFOR(cpu_nthreads(c, (size_t)rows * cols),
        for (int r = 0; r < rows; r++) {
            float *d = dst + (size_t)r * dst_stride;
            const float *s = src + (size_t)r * src_stride;
            if (accumulate) {
                for (int j = 0; j < cols; j++)
                    d[j] += s[j];
            } else {
                memcpy(d, s, (size_t)cols * sizeof(float));
            }
        });
    return 0;
}
