/* muon.c: Muon (Keller Jordan et al. 2024, "Muon: An optimizer for hidden
 * layers in neural networks"): momentum, then the update replaced by the
 * nearest semi-orthogonal matrix, approximated by a quintic Newton-Schulz
 * iteration, for the hidden 2-D weights (the groups are in optim.c). */
#include "optim/optim_impl.h"
#include "core/err.h"

#include <math.h>

/* The quintic's coefficients (Jordan's tuning): phi(x) = a x + b x^3 + c x^5
 * has a large slope a at 0, so small singular values grow fast, and 5
 * iterations put every singular value of a Frobenius-normalized matrix
 * roughly in [0.7, 1.2] (not exactly 1: speed was preferred over precision). */
#define NS_A 3.4445f
#define NS_B (-4.7750f)
#define NS_C 2.0315f
#define NS_STEPS 5
#define NS_EPS 1e-7 /* X = u / (||u||_F + eps) */

/* X and Y (rows, cols) plus A and B (s, s), s = min(rows, cols). */
size_t optim_muon_work(int rows, int cols)
{
    size_t s = (size_t)(rows < cols ? rows : cols);
    return 2 * (size_t)rows * cols + 2 * s * s;
}

/* One Newton-Schulz iteration on X (m, n), written into Y (A, B scratch):
 * with m <= n, X X^T is the small Gram matrix:
 *   A = X X^T (m, m);  B = b A + c A A;  Y = a X + B X = phi(X)
 * with m > n the iteration runs on X^T, which is the same thing written with
 * the (n, n) Gram matrix X^T X and without moving X:
 *   A = X^T X;  B = b A + c A A;  Y^T = a X^T + B X^T, i.e. Y = a X + X B^T. */
static int ns_iteration(const struct llm_backend *be, float *Y, const float *X, float *A,
                        float *B, int m, int n)
{
    const struct llm_backend_ops *ops = be->ops;
    void *ctx = be->ctx;
    int tall = m > n, s = tall ? n : m;
    size_t ss = (size_t)s * s, mn = (size_t)m * n;
    int rc;
    if (tall)
        rc = ops->gemm(ctx, 1, 0, n, n, m, 1.0f, X, n, X, n, 0.0f, A, n);
    else
        rc = ops->gemm(ctx, 0, 1, m, m, n, 1.0f, X, n, X, n, 0.0f, A, m);
    if (rc || (rc = ops->copy(ctx, B, A, ss * sizeof(float))) ||
        (rc = ops->gemm(ctx, 0, 0, s, s, s, NS_C, A, s, A, s, NS_B, B, s)) ||
        (rc = ops->copy(ctx, Y, X, mn * sizeof(float))))
        return rc;
    if (tall)
        return ops->gemm(ctx, 0, 1, m, n, n, 1.0f, X, n, B, n, NS_A, Y, n);
    return ops->gemm(ctx, 0, 0, m, n, m, 1.0f, B, m, X, n, NS_A, Y, n);
}

/* b = mu b + g; u = nesterov ? g + mu b : b; X = u / (||u||_F + 1e-7);
 * X = NS^5(X); W = W (1 - lr wd) - lr max(1, rows/cols)^0.5 X.
 * The scale keeps the update's RMS per element comparable across shapes
 * (Jordan's reference code; tall matrices have fewer singular directions
 * than rows). */
int optim_muon_step(struct llm_optim *o, const struct optim_param *q, float *w, const float *g,
                    double lr, float grad_scale)
{
    const struct llm_backend_ops *ops = o->be->ops;
    void *ctx = o->be->ctx;
    int m = q->rows, n = q->cols;
    size_t mn = (size_t)m * n, s = (size_t)(m < n ? m : n);
    float *X = o->work, *Y = X + mn, *A = Y + mn, *B = A + s * s;
    double ss = 0.0;
    int rc = ops->momentum(ctx, X, q->mom, g, mn, (float)o->cfg.momentum, o->cfg.nesterov,
                           grad_scale);
    if (rc || (rc = ops->sumsq(ctx, &ss, X, mn)) || (rc = ops->sync(ctx)))
        return rc;
    if ((rc = ops->scale(ctx, X, (float)(1.0 / (sqrt(ss) + NS_EPS)), mn)))
        return rc;
    for (int k = 0; k < NS_STEPS; k++) {
        if ((rc = ns_iteration(o->be, Y, X, A, B, m, n)))
            return rc;
        float *tmp = X;
        X = Y;
        Y = tmp;
    }
    double shape_scale = sqrt(m > n ? (double)m / n : 1.0);
    return ops->scale_add(ctx, w, (float)(1.0 - lr * q->wd), X, (float)(-lr * shape_scale), mn);
}
