/* soap.c: SOAP (Vyas et al. 2024, arXiv 2409.11321, "SOAP: Improving and
 * Stabilizing Shampoo using Adam"): Adam run in the eigenbasis of Shampoo's
 * preconditioners L = E[G G^T] and R = E[G^T G], the bases refreshed every
 * precondition_frequency steps. The eigenvectors are computed exactly on the
 * host (LAPACK dsyevd, in double) instead of the paper's one power-iteration
 * step plus QR; docs/optim.md says why. */
#include "optim/optim_impl.h"
#include "core/err.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (exported by Debian's OpenBLAS): eigenvalues (ascending) and
 * eigenvectors of a symmetric matrix. Fortran: arguments by reference,
 * column-major, trailing hidden lengths of the two character arguments. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

/* T1 and T2 (rows, cols): the rotated gradient and direction. */
size_t optim_soap_work(int rows, int cols)
{
    return 2 * (size_t)rows * cols;
}

/* ---- the eigenbasis refresh (host) ---- */

/* Downloads a device buffer of n floats into a new double array. */
static double *download_double(const struct llm_backend *be, const float *src, size_t n, int *rc)
{
    float *f = llm_malloc((n ? n : 1) * sizeof(float), "a SOAP host buffer");
    double *d = f ? llm_malloc((n ? n : 1) * sizeof(double), "a SOAP host buffer") : NULL;
    if (!d) {
        free(f);
        *rc = LLM_ENOMEM;
        return NULL;
    }
    if ((*rc = be->ops->download(be->ctx, f, src, n * sizeof(float))) ||
        (*rc = be->ops->sync(be->ctx))) {
        free(f);
        free(d);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

static int upload_double(const struct llm_backend *be, float *dst, const double *src, size_t n)
{
    float *f = llm_malloc((n ? n : 1) * sizeof(float), "a SOAP host buffer");
    if (!f)
        return LLM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        f[i] = (float)src[i];
    int rc = be->ops->upload(be->ctx, dst, f, n * sizeof(float));
    if (!rc)
        rc = be->ops->sync(be->ctx); /* f is freed next */
    free(f);
    return rc;
}

/* Q (d, d) row-major, column j = the eigenvector of the j-th smallest
 * eigenvalue of the symmetric S (d, d) (destroyed). */
static int eigenvectors(double *Q, double *S, int d, const char *side)
{
    for (size_t i = 0; i < (size_t)d * d; i++)
        if (!isfinite(S[i]))
            return llm_err(LLM_EINVAL, "soap: the preconditioner %s is not finite "
                                       "(NaN or infinite gradients)", side);
    if (d > 16384) /* dsyevd's int workspace size 1 + 6d + 2d^2 would overflow */
        return llm_err(LLM_EINVAL, "soap: preconditioner %s of side %d is too large "
                                   "(lower optim.max_precond_dim)", side, d);
    /* dsyevd's documented workspace for eigenvectors */
    int lwork = 1 + 6 * d + 2 * d * d, liwork = 3 + 5 * d, info = 0;
    double *wr = llm_malloc(((size_t)lwork + d) * sizeof(double), "the SOAP eigensolver");
    int *iwork = wr ? llm_malloc((size_t)liwork * sizeof(int), "the SOAP eigensolver") : NULL;
    if (!iwork) {
        free(wr);
        return LLM_ENOMEM;
    }
    /* S is symmetric, so its row-major array is also its column-major one */
    dsyevd_("V", "U", &d, S, &d, wr + lwork, wr, &lwork, iwork, &liwork, &info, 1, 1);
    free(iwork);
    free(wr);
    if (info != 0)
        return llm_err(LLM_EINVAL, "soap: the eigendecomposition of %s failed (LAPACK info %d)",
                       side, info);
    /* column-major eigenvectors: vector j is S[j*d .. j*d + d) */
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++)
            Q[(size_t)i * d + j] = S[(size_t)j * d + i];
    return 0;
}

/* New eigenbases of L and R (those present), and the first moment carried
 * into them: M' <- QLnew^T QLold M' QRold^T QRnew (the same M in the original
 * space, expressed in the new basis). V' is kept as it is (the paper's
 * Algorithm; V' has no exact image in a new basis). */
static int refresh(struct llm_optim *o, const struct optim_param *q)
{
    const struct llm_backend *be = o->be;
    int m = q->rows, n = q->cols, rc = 0;
    size_t mn = (size_t)m * n;
    double *S[2] = {NULL, NULL}, *Qn[2] = {NULL, NULL}, *Qo[2] = {NULL, NULL};
    double *M = NULL, *T = NULL;
    const float *acc[2] = {q->L, q->R};
    float *basis[2] = {q->QL, q->QR};
    const int dim[2] = {m, n};
    const char *sname[2] = {"L", "R"};
    for (int k = 0; k < 2 && !rc; k++) {
        if (!acc[k])
            continue;
        size_t dd = (size_t)dim[k] * dim[k];
        if (!(S[k] = download_double(be, acc[k], dd, &rc)))
            break;
        if (!(Qn[k] = llm_malloc(dd * sizeof(double), "a SOAP basis"))) {
            rc = LLM_ENOMEM;
            break;
        }
        if ((rc = eigenvectors(Qn[k], S[k], dim[k], sname[k])))
            break;
        if (!(Qo[k] = download_double(be, basis[k], dd, &rc)))
            break;
    }
    if (!rc) {
        if (!(M = download_double(be, q->m, mn, &rc)))
            goto out;
        if (!(T = llm_malloc(mn * sizeof(double), "a SOAP host buffer"))) {
            rc = LLM_ENOMEM;
            goto out;
        }
        if (Qn[0]) { /* M <- QLnew^T (QLold M): two (m, m) x (m, n) products */
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, m, 1.0, Qo[0], m, M, n,
                        0.0, T, n);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, m, 1.0, Qn[0], m, T, n,
                        0.0, M, n);
        }
        if (Qn[1]) { /* M <- (M QRold^T) QRnew */
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, n, 1.0, M, n, Qo[1], n,
                        0.0, T, n);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0, T, n, Qn[1], n,
                        0.0, M, n);
        }
        rc = upload_double(be, q->m, M, mn);
    }
    for (int k = 0; k < 2 && !rc; k++)
        if (Qn[k])
            rc = upload_double(be, basis[k], Qn[k], (size_t)dim[k] * dim[k]);
out:
    for (int k = 0; k < 2; k++) {
        free(S[k]);
        free(Qn[k]);
        free(Qo[k]);
    }
    free(M);
    free(T);
    return rc;
}

/* ---- the step ---- */

/* For W (m, n) with gradient G (scaled by grad_scale); QL, QR start as the
 * identity (also the fixed basis of a side without L or R), so the first
 * step is an Adam step in the original basis:
 *   G' = QL^T G QR
 *   M' = b1 M' + (1-b1) G';  V' = b2 V' + (1-b2) G'^2
 *   N' = (M' / (1-b1^t)) / (sqrt(V' / (1-b2^t)) + eps)
 *   N = QL N' QR^T;  W = W (1 - lr wd) - lr N
 *   L = b2 L + (1-b2) G G^T;  R = b2 R + (1-b2) G^T G
 *   at t = 1, 1 + f, 1 + 2f, ...: QL, QR = eigenvectors of L, R, M' carried
 * The preconditioners are updated after the step, as in the paper's
 * Algorithm 3 (lines 10-14): a gradient is never rotated by a basis computed
 * from itself alone (at t = 1 that basis is its own singular vectors, so G'
 * would be diagonal up to float roundoff, and Adam's normalization would
 * blow the roundoff up into O(1) steps). */
int optim_soap_step(struct llm_optim *o, const struct optim_param *q, float *w, const float *g,
                    double lr, float grad_scale)
{
    const struct llm_backend_ops *ops = o->be->ops;
    void *ctx = o->be->ctx;
    const struct llm_optim_config *c = &o->cfg;
    int m = q->rows, n = q->cols, rc = 0;
    size_t mn = (size_t)m * n;
    float *T1 = o->work, *T2 = T1 + mn;
    float b1 = (float)c->betas[0], b2 = (float)c->betas[1];
    float gs = grad_scale;
    /* G' (m, n) = QL^T (gs G) QR into T2 */
    if (q->QL && q->QR) {
        if ((rc = ops->gemm(ctx, 1, 0, m, n, m, gs, q->QL, m, g, n, 0.0f, T1, n)) ||
            (rc = ops->gemm(ctx, 0, 0, m, n, n, 1.0f, T1, n, q->QR, n, 0.0f, T2, n)))
            return rc;
    } else if (q->QL) {
        rc = ops->gemm(ctx, 1, 0, m, n, m, gs, q->QL, m, g, n, 0.0f, T2, n);
    } else {
        rc = ops->gemm(ctx, 0, 0, m, n, n, gs, g, n, q->QR, n, 0.0f, T2, n);
    }
    /* N' in place of G' */
    if (rc || (rc = ops->adam_direction(ctx, T2, T2, q->m, q->v, mn, b1, b2, (float)c->eps,
                                        optim_op_t(o->t), 1.0f)))
        return rc;
    /* N = QL N' QR^T */
    float *N = T1;
    if (q->QL && q->QR) {
        if ((rc = ops->gemm(ctx, 0, 0, m, n, m, 1.0f, q->QL, m, T2, n, 0.0f, T1, n)) ||
            (rc = ops->gemm(ctx, 0, 1, m, n, n, 1.0f, T1, n, q->QR, n, 0.0f, T2, n)))
            return rc;
        N = T2;
    } else if (q->QL) {
        rc = ops->gemm(ctx, 0, 0, m, n, m, 1.0f, q->QL, m, T2, n, 0.0f, T1, n);
    } else {
        rc = ops->gemm(ctx, 0, 1, m, n, n, 1.0f, T2, n, q->QR, n, 0.0f, T1, n);
    }
    if (rc || (rc = ops->scale_add(ctx, w, (float)(1.0 - lr * q->wd), N, (float)-lr, mn)))
        return rc;
    /* the preconditioners, then the bases when due */
    float acc = (1.0f - b2) * gs * gs;
    if (q->L)
        rc = ops->gemm(ctx, 0, 1, m, m, n, acc, g, n, g, n, b2, q->L, m);
    if (!rc && q->R)
        rc = ops->gemm(ctx, 1, 0, n, n, m, acc, g, n, g, n, b2, q->R, n);
    if (!rc && (o->t - 1) % c->precondition_frequency == 0)
        rc = refresh(o, q);
    return rc;
}

/* Sets every basis of the plan to the identity (a new optimizer's state). */
int optim_soap_init(struct llm_optim *o)
{
    int dmax = 0;
    for (size_t i = 0; i < o->nparams; i++) {
        const struct optim_param *q = &o->p[i];
        if (q->QL && q->rows > dmax)
            dmax = q->rows;
        if (q->QR && q->cols > dmax)
            dmax = q->cols;
    }
    if (dmax == 0)
        return 0;
    float *eye = llm_calloc((size_t)dmax * dmax, sizeof(float), "a SOAP identity basis");
    if (!eye)
        return LLM_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < o->nparams && !rc; i++) {
        const struct optim_param *q = &o->p[i];
        float *basis[2] = {q->QL, q->QR};
        int dim[2] = {q->rows, q->cols};
        for (int k = 0; k < 2 && !rc; k++) {
            if (!basis[k])
                continue;
            int d = dim[k];
            for (int j = 0; j < d; j++)
                eye[(size_t)j * d + j] = 1.0f;
            rc = o->be->ops->upload(o->be->ctx, basis[k], eye, (size_t)d * d * sizeof(float));
            if (!rc)
                rc = o->be->ops->sync(o->be->ctx); /* eye is rewritten next */
            memset(eye, 0, (size_t)d * d * sizeof(float));
        }
    }
    free(eye);
    return rc;
}
