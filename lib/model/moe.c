/* moe.c: the mixture-of-experts MLP sublayer of model.c (mlp = moe).
 *
 * Router (Switch Transformer, Fedus et al. 2021, generalized to top-k):
 *   logits (N, E) = x @ router^T;  p = softmax(logits) per token;
 *   token n goes to its top_k experts by p (ties: the lower expert index);
 *   out_n = sum over the chosen e of p[n,e] * expert_e(x_n).
 * The gate is the softmax probability itself, not renormalized over the
 * chosen experts, so top_k = 1 still trains the router (as Switch does). No
 * capacity limit: no token is dropped. An expert is the dense MLP without
 * biases (w1, w3 for swiglu, w2) applied to the rows routed to it.
 *
 * Load-balancing loss (Switch eq. 4, generalized to top-k):
 *   aux = E * sum_e f_e P_e,  f_e = (rows routed to e) / (N top_k),
 *                             P_e = (1/N) sum_n p[n,e];
 * 1 for perfectly balanced routing. model.c adds aux_loss_coef * (sum over
 * layers) to the loss. f counts routing decisions (piecewise constant), so
 * the gradient flows through P only: d aux / d p[n,e] = E f_e / N.
 *
 * Dispatch. The top-k choice runs on the host over the probabilities
 * downloaded through ops->download (N * E floats per layer), so any backend
 * works. It builds one list of M = N top_k rows, sorted by expert, then by
 * token: idx[m] = the token of row m, flat[m] = idx[m] * E + its expert;
 * expert e owns rows off_e .. off_e + count_e - 1. The lists go up once per
 * layer, then everything runs on the backend:
 *   xe (M, C)  = x[idx]                        gather_rows
 *   gate (M)   = p viewed as (N*E, 1), at flat gather_rows
 *   per expert e, on its rows: h = xe @ w1_e^T [, u = xe @ w3_e^T]
 *   a (M, F)   = act(h) or silu(h) * u         one call over all M rows
 *   per expert e, on its rows: y = a @ w2_e^T
 *   out (N, C) = 0; out[idx[m]] += gate[m] y[m] scatter_add_rows
 * A token's k terms are added in list order (expert order), so the result
 * does not depend on threads.
 *
 * Backward, g = dL/dout (N, C):
 *   dy[m] = gate[m] g[idx[m]]                  gather_rows with weights
 *   dgate[m] = g[idx[m]] . y[m]                rows_dot
 *   each expert's MLP backward on its rows (weight gradients accumulate)
 *   dx = scatter of dxe by idx (summing each token's k rows), plus:
 *   dp (N, E) = aux_loss_coef * E f_e / N in every row (uploaded), plus the
 *               scatter of dgate by flat;
 *   dlogits = softmax_backward(dp); drouter += dlogits^T x; dx += dlogits @ router. */
#include "model_impl.h"

#include <stdlib.h>
#include <string.h>

int moe_ensure(struct llm_model *m, int N)
{
    moe_release(m);
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    /* every count is >= 1 (params.c and llm_model_forward check) */
    size_t L = (size_t)c->n_layers, E = (size_t)c->n_experts, M = (size_t)N * c->top_k;
    A->route = llm_calloc(L, sizeof(*A->route), "the expert routing");
    A->route_host = llm_malloc(L * M * sizeof(int32_t), "the expert routing");
    A->count_host = llm_calloc(L * E, sizeof(int), "the expert routing");
    A->mark = llm_calloc(E, sizeof(int), "the expert routing");
    A->host_p = llm_malloc((size_t)N * E * sizeof(float), "the expert routing");
    A->host_idx = llm_malloc(2 * M * sizeof(int32_t), "the expert routing");
    if (!A->route || !A->route_host || !A->count_host || !A->mark || !A->host_p || !A->host_idx) {
        moe_release(m);
        return LLM_ENOMEM;
    }
    int rc = m->be->ops->alloc(m->be->ctx, (void **)&A->route_dev, L * 2 * M * sizeof(int32_t));
    if (rc) {
        moe_release(m);
        return rc;
    }
    for (size_t l = 0; l < L; l++) {
        A->route[l].choice = A->route_host + l * M;
        A->route[l].count = A->count_host + l * E;
        A->route[l].idx = A->route_dev + l * 2 * M;
    }
    A->routed = 0;
    return 0;
}

void moe_release(struct llm_model *m)
{
    struct llm_model_acts *A = m->acts;
    if (!A)
        return;
    if (A->route_dev && m->be)
        m->be->ops->free(m->be->ctx, A->route_dev);
    free(A->route), free(A->route_host), free(A->count_host), free(A->mark);
    free(A->host_p), free(A->host_idx);
    A->route = NULL, A->route_dev = NULL, A->route_host = NULL, A->count_host = NULL;
    A->mark = NULL, A->host_p = NULL, A->host_idx = NULL;
    A->routed = 0;
}

const int32_t *llm_model_routing(const struct llm_model *m, int layer)
{
    if (!is_moe(m) || !m->acts || !m->acts->routed || layer < 0 ||
        layer >= m->cfg.n_layers)
        return NULL;
    return m->acts->route[layer].choice;
}

/* Routes layer l's tokens from its probabilities a->probs (N, E): the top-k
 * choice, the counts, the aux loss, and the index lists (uploaded). */
static int route(struct llm_model *m, int l)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct moe_route *r = &A->route[l];
    int N = m->B * m->T, E = c->n_experts, K = c->top_k, M = N * K;
    float *hp = A->host_p;
    int rc;
    if ((rc = m->be->ops->download(m->be->ctx, hp, A->la[l].probs, (size_t)N * E * sizeof(float))) ||
        (rc = m->be->ops->sync(m->be->ctx)))
        return rc;
    /* top-k per token: k passes of an argmax over the experts not yet taken;
     * strict > keeps the lower index on ties (and NaNs, from a diverged model,
     * still give k distinct valid experts). mark[e] == n + 1: e already taken
     * for token n. O(N k E) on the host. */
    memset(r->count, 0, (size_t)E * sizeof(int));
    memset(A->mark, 0, (size_t)E * sizeof(int));
    for (int n = 0; n < N; n++) {
        const float *pn = hp + (size_t)n * E;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (A->mark[e] != n + 1 && (best < 0 || pn[e] > pn[best]))
                    best = e;
            A->mark[best] = n + 1;
            r->choice[(size_t)n * K + k] = best;
            r->count[best]++;
        }
    }
    /* aux = E sum_e f_e P_e, sums in double in a fixed order */
    double aux = 0.0;
    for (int e = 0; e < E; e++) {
        double Pe = 0.0;
        for (int n = 0; n < N; n++)
            Pe += hp[(size_t)n * E + e];
        aux += (double)r->count[e] / ((double)N * K) * (Pe / N);
    }
    r->aux = E * aux;
    /* the lists, by expert then token: mark becomes each expert's next row */
    int32_t *idx = A->host_idx, *flat = A->host_idx + M;
    for (int e = 0, off = 0; e < E; e++)
        A->mark[e] = off, off += r->count[e];
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int e = r->choice[(size_t)n * K + k], row = A->mark[e]++;
            idx[row] = n;
            flat[row] = n * E + e;
        }
    return m->be->ops->upload(m->be->ctx, r->idx, A->host_idx, (size_t)2 * M * sizeof(int32_t));
}

/* Each expert's slice of a per-row buffer: rows off .. off + count[e] - 1. */
#define ROWS(buf, off, width) ((buf) + (size_t)(off) * (width))

int moe_forward(struct llm_model *m, int l, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct llm_param_block *p = &A->lp[l];
    struct layer_acts *a = &A->la[l];
    struct moe_route *r = &A->route[l];
    int N = m->B * m->T, C = c->d_model, F = c->d_ff, E = c->n_experts, M = N * c->top_k;
    const int32_t *idx = r->idx, *flat = r->idx + M;
    int rc;
    A->routed = 0;
    if ((rc = OP(m, matmul_forward, a->probs, in, P(m, p->router), NULL, N, C, E)) ||
        (rc = OP(m, softmax_forward, a->probs, a->probs, N, E)) || (rc = route(m, l)) ||
        (rc = OP(m, gather_rows, a->xe, in, idx, NULL, M, N, C)) ||
        (rc = OP(m, gather_rows, a->gate, a->probs, flat, NULL, M, N * E, 1)))
        return rc;
    for (int e = 0, off = 0, ne; e < E; e++, off += ne) {
        ne = r->count[e];
        const long *w = &p->expert[e * 3];
        if (ne && ((rc = OP(m, matmul_forward, ROWS(a->h, off, F), ROWS(a->xe, off, C), P(m, w[0]),
                            NULL, ne, C, F)) ||
                   (is_swiglu(m) && (rc = OP(m, matmul_forward, ROWS(a->u, off, F),
                                             ROWS(a->xe, off, C), P(m, w[1]), NULL, ne, C, F)))))
            return rc;
    }
    if (is_swiglu(m))
        rc = OP(m, swiglu_forward, a->a, a->h, a->u, (size_t)M * F);
    else
        rc = OP(m, activation_forward, act_kind(m), a->a, a->h, (size_t)M * F);
    if (rc)
        return rc;
    for (int e = 0, off = 0, ne; e < E; e++, off += ne) {
        ne = r->count[e];
        if (ne && (rc = OP(m, matmul_forward, ROWS(a->y, off, C), ROWS(a->a, off, F),
                           P(m, p->expert[e * 3 + 2]), NULL, ne, F, C)))
            return rc;
    }
    if ((rc = m->be->ops->zero(m->be->ctx, A->scratch, (size_t)N * C * sizeof(float))) ||
        (rc = OP(m, scatter_add_rows, A->scratch, a->y, idx, a->gate, M, N, C)))
        return rc;
    A->routed = l == c->n_layers - 1;
    return 0;
}

int moe_backward(struct llm_model *m, int l, float *dx, const float *dout, const float *in)
{
    const struct llm_model_config *c = &m->cfg;
    struct llm_model_acts *A = m->acts;
    struct llm_param_block *p = &A->lp[l];
    struct layer_acts *a = &A->la[l];
    struct moe_route *r = &A->route[l];
    int N = m->B * m->T, C = c->d_model, F = c->d_ff, E = c->n_experts, K = c->top_k, M = N * K;
    const int32_t *idx = r->idx, *flat = r->idx + M;
    size_t nc = (size_t)N * C;
    int rc;
    /* the combine: dy = gate * g[idx], dgate = g[idx] . y */
    if ((rc = OP(m, gather_rows, A->dy, dout, idx, a->gate, M, N, C)) ||
        (rc = OP(m, rows_dot, A->dgate, dout, idx, a->y, M, N, C)))
        return rc;
    /* the experts, each on its rows: down projection, activation, up projections */
    for (int e = 0, off = 0, ne; e < E; e++, off += ne) {
        ne = r->count[e];
        long w2 = p->expert[e * 3 + 2];
        if (ne && (rc = OP(m, matmul_backward, ROWS(A->da, off, F), G(m, w2), NULL,
                           ROWS(A->dy, off, C), ROWS(a->a, off, F), P(m, w2), ne, F, C)))
            return rc;
    }
    if (is_swiglu(m))
        rc = OP(m, swiglu_backward, A->dh, A->du, A->da, a->h, a->u, (size_t)M * F);
    else
        rc = OP(m, activation_backward, act_kind(m), A->dh, A->da, a->h, (size_t)M * F);
    if (rc)
        return rc;
    /* dxe (M, C) into dy (consumed above), the swiglu up part into dy2 */
    for (int e = 0, off = 0, ne; e < E; e++, off += ne) {
        ne = r->count[e];
        long w1 = p->expert[e * 3], w3 = p->expert[e * 3 + 1];
        if (ne && ((rc = OP(m, matmul_backward, ROWS(A->dy, off, C), G(m, w1), NULL,
                            ROWS(A->dh, off, F), ROWS(a->xe, off, C), P(m, w1), ne, C, F)) ||
                   (is_swiglu(m) &&
                    (rc = OP(m, matmul_backward, ROWS(A->dy2, off, C), G(m, w3), NULL,
                             ROWS(A->du, off, F), ROWS(a->xe, off, C), P(m, w3), ne, C, F)))))
            return rc;
    }
    if ((is_swiglu(m) && (rc = OP(m, add, A->dy, A->dy, A->dy2, (size_t)M * C))) ||
        (rc = m->be->ops->zero(m->be->ctx, dx, nc * sizeof(float))) ||
        (rc = OP(m, scatter_add_rows, dx, A->dy, idx, NULL, M, N, C)))
        return rc;
    /* the router: dp = coef E f_e / N (aux, every row) + dgate at (token, expert) */
    double coef = c->aux_loss_coef;
    for (int e = 0; e < E; e++) {
        float ge = (float)(coef * E * ((double)r->count[e] / ((double)N * K)) / N);
        for (int n = 0; n < N; n++)
            A->host_p[(size_t)n * E + e] = ge;
    }
    if ((rc = m->be->ops->upload(m->be->ctx, A->dp, A->host_p, (size_t)N * E * sizeof(float))) ||
        (rc = OP(m, scatter_add_rows, A->dp, A->dgate, flat, NULL, M, N * E, 1)) ||
        (rc = OP(m, softmax_backward, A->dp, A->dp, a->probs, N, E)) ||
        (rc = OP(m, matmul_backward, A->dB, G(m, p->router), NULL, A->dp, in, P(m, p->router), N,
                 C, E)))
        return rc;
    return OP(m, add, dx, dx, A->dB, nc);
}
