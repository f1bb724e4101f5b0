/* optim.c: the optimizer API: parameter groups (weight decay, Muon's AdamW
 * fallback), the state arena and its tensor list, and the step, with AdamW
 * (Loshchilov & Hutter 2019) and SGD with momentum done here by one backend op
 * per tensor; Muon and SOAP are in muon.c and soap.c. docs/optim.md has the
 * math. */
#include "optim/optim_impl.h"
#include "core/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const optim_names[] = {
    [LLM_OPTIM_ADAMW] = "adamw", [LLM_OPTIM_MUON] = "muon", [LLM_OPTIM_SOAP] = "soap",
    [LLM_OPTIM_SGD] = "sgd"};

/* ---- configuration ---- */

static int check_config(const struct llm_optim_config *c)
{
    if ((unsigned)c->name >= sizeof(optim_names) / sizeof(optim_names[0]))
        return llm_err(LLM_EINVAL, "optim.name: unknown optimizer (%d)", (int)c->name);
    if (!(c->lr > 0.0 && isfinite(c->lr)))
        return llm_err(LLM_EINVAL, "optim.lr: expected a positive number, got %g", c->lr);
    for (int i = 0; i < 2; i++)
        if (!(c->betas[i] >= 0.0 && c->betas[i] < 1.0))
            return llm_err(LLM_EINVAL, "optim.betas: expected values in [0, 1), got %g",
                           c->betas[i]);
    if (!(c->eps > 0.0 && isfinite(c->eps)))
        return llm_err(LLM_EINVAL, "optim.eps: expected a positive number, got %g", c->eps);
    if (!(c->weight_decay >= 0.0 && isfinite(c->weight_decay)))
        return llm_err(LLM_EINVAL, "optim.weight_decay: expected a number >= 0, got %g",
                       c->weight_decay);
    if (!(c->momentum >= 0.0 && c->momentum < 1.0))
        return llm_err(LLM_EINVAL, "optim.momentum: expected a value in [0, 1), got %g",
                       c->momentum);
    if (c->precondition_frequency < 1)
        return llm_err(LLM_EINVAL, "optim.precondition_frequency: expected >= 1, got %d",
                       c->precondition_frequency);
    if (c->max_precond_dim < 1)
        return llm_err(LLM_EINVAL, "optim.max_precond_dim: expected >= 1, got %d",
                       c->max_precond_dim);
    if (!(c->adamw_lr >= 0.0 && isfinite(c->adamw_lr)))
        return llm_err(LLM_EINVAL, "optim.adamw_lr: expected a number >= 0, got %g", c->adamw_lr);
    return 0;
}

/* The backend ops each optimizer calls (all optimizers may fall back to adamw). */
static int check_ops(const struct llm_backend_ops *ops, enum llm_optim_name name)
{
    struct {
        const char *op;
        int present;
        unsigned need; /* bit per enum llm_optim_name */
    } req[] = {
        {"adamw", ops->adamw != NULL,
         1u << LLM_OPTIM_ADAMW | 1u << LLM_OPTIM_MUON | 1u << LLM_OPTIM_SOAP},
        {"sgd", ops->sgd != NULL, 1u << LLM_OPTIM_SGD},
        {"momentum", ops->momentum != NULL, 1u << LLM_OPTIM_MUON},
        {"sumsq", ops->sumsq != NULL, 1u << LLM_OPTIM_MUON},
        {"scale", ops->scale != NULL, 1u << LLM_OPTIM_MUON},
        {"copy", ops->copy != NULL, 1u << LLM_OPTIM_MUON},
        {"sync", ops->sync != NULL, 1u << LLM_OPTIM_MUON | 1u << LLM_OPTIM_SOAP},
        {"gemm", ops->gemm != NULL, 1u << LLM_OPTIM_MUON | 1u << LLM_OPTIM_SOAP},
        {"scale_add", ops->scale_add != NULL, 1u << LLM_OPTIM_MUON | 1u << LLM_OPTIM_SOAP},
        {"adam_direction", ops->adam_direction != NULL, 1u << LLM_OPTIM_SOAP},
        {"download", ops->download != NULL, 1u << LLM_OPTIM_SOAP},
        {"upload", ops->upload != NULL, 1u << LLM_OPTIM_SOAP},
    };
    for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
        if ((req[i].need >> name & 1u) && !req[i].present)
            return llm_err(LLM_EUNSUPPORTED, "optimizer %s: the %s backend has no '%s' op",
                           optim_names[name], ops->name, req[i].op);
    return 0;
}

/* ---- parameter groups ---- */

/* Decoupled weight decay goes to the 2-D weights of linear layers (lm_head
 * included) and the router; embeddings, norm gains and biases are left alone
 * unless asked (decaying a gain pulls it towards 0, not towards its init 1). */
static int decays(const struct llm_optim_config *c, enum llm_param_kind k)
{
    switch (k) {
    case LLM_PARAM_MATRIX:
    case LLM_PARAM_ROUTER:
        return 1;
    case LLM_PARAM_EMBEDDING:
    case LLM_PARAM_POSITION:
        return c->decay_embeddings;
    case LLM_PARAM_NORM:
    case LLM_PARAM_BIAS:
    default:
        return c->decay_norms_biases;
    }
}

/* Muon orthogonalizes the hidden 2-D weights only (Jordan et al. 2024): the
 * embedding, the output head, the router and every 1-D tensor go to AdamW. */
static int is_muon(const struct llm_param_spec *s)
{
    return s->kind == LLM_PARAM_MATRIX && s->ndim == 2 && strcmp(s->name, "lm_head.weight") != 0;
}

/* Fills q's rule, group lr and decay, and shape from spec s. */
static void plan(const struct llm_optim_config *c, const struct llm_param_spec *s,
                 struct optim_param *q)
{
    int dec = decays(c, s->kind);
    memset(q, 0, sizeof(*q));
    q->rows = (int)s->shape[0];
    q->cols = s->ndim == 2 ? (int)s->shape[1] : 1;
    q->offset = s->offset;
    q->numel = s->numel;
    q->lr = c->lr;
    q->wd = dec ? c->weight_decay : 0.0;
    q->rule = RULE_ADAMW;
    q->rule_name = dec ? "adamw" : "adamw_nodecay";
    switch (c->name) {
    case LLM_OPTIM_SGD:
        q->rule = RULE_SGD;
        q->rule_name = dec ? "sgd" : "sgd_nodecay";
        break;
    case LLM_OPTIM_MUON:
        if (is_muon(s)) {
            q->rule = RULE_MUON;
            q->rule_name = "muon"; /* a MATRIX: always in the decay group */
        } else if (c->adamw_lr > 0.0) {
            q->lr = c->adamw_lr;
        }
        break;
    case LLM_OPTIM_SOAP:
        /* 2-D tensors with at least one side rotated; with both sides kept at
         * the identity SOAP is exactly AdamW, and runs as AdamW */
        if (s->ndim == 2 && (q->rows <= c->max_precond_dim || q->cols <= c->max_precond_dim)) {
            q->rule = RULE_SOAP;
            q->rule_name = dec ? "soap" : "soap_nodecay";
        }
        break;
    case LLM_OPTIM_ADAMW:
    default:
        break;
    }
}

/* ---- the state list ---- */

static size_t aligned(size_t n)
{
    return (n + LLM_PARAM_ALIGN - 1) / LLM_PARAM_ALIGN * LLM_PARAM_ALIGN;
}

/* One state tensor of parameter q named <param>.<slot>, 1-D or (r, c). When
 * o->tensors is NULL only counts (*nt, *floats); otherwise also fills the
 * view and points *slot at it. */
static void add_tensor(struct llm_optim *o, size_t *nt, size_t *floats, const char *pname,
                       const char *slot, int ndim, int64_t r, int64_t c, float **dst)
{
    size_t numel = (size_t)r * (size_t)(ndim == 2 ? c : 1);
    if (o->tensors) {
        struct llm_optim_tensor *T = &o->tensors[*nt];
        snprintf(T->name, sizeof(T->name), "optim.%s.%s", pname, slot);
        T->ndim = ndim;
        T->shape[0] = r;
        T->shape[1] = ndim == 2 ? c : 0;
        T->numel = numel;
        T->data = o->state + *floats;
        *dst = T->data;
    }
    (*nt)++;
    *floats += aligned(numel);
}

/* Walks the plan in the fixed order (parameters in layout order; per
 * parameter m, v, momentum, L, R, QL, QR as the rule has them): counts, or
 * points the tensors and slots into the arena. Also sizes the scratch. */
static void walk_state(struct llm_optim *o, const struct llm_param_layout *l, size_t *nt,
                       size_t *floats)
{
    *nt = *floats = 0;
    o->work_floats = 0;
    for (size_t i = 0; i < o->nparams; i++) {
        struct optim_param *q = &o->p[i];
        const struct llm_param_spec *s = &l->p[i];
        int nd = s->ndim;
        int64_t r = s->shape[0], c = nd == 2 ? s->shape[1] : 0;
        size_t work = 0;
        switch (q->rule) {
        case RULE_ADAMW:
            add_tensor(o, nt, floats, s->name, "m", nd, r, c, &q->m);
            add_tensor(o, nt, floats, s->name, "v", nd, r, c, &q->v);
            break;
        case RULE_SGD:
            add_tensor(o, nt, floats, s->name, "momentum", nd, r, c, &q->mom);
            break;
        case RULE_MUON:
            add_tensor(o, nt, floats, s->name, "momentum", nd, r, c, &q->mom);
            work = optim_muon_work(q->rows, q->cols);
            break;
        case RULE_SOAP: {
            int left = r <= o->cfg.max_precond_dim, right = c <= o->cfg.max_precond_dim;
            add_tensor(o, nt, floats, s->name, "m", nd, r, c, &q->m);
            add_tensor(o, nt, floats, s->name, "v", nd, r, c, &q->v);
            if (left)
                add_tensor(o, nt, floats, s->name, "L", 2, r, r, &q->L);
            if (right)
                add_tensor(o, nt, floats, s->name, "R", 2, c, c, &q->R);
            if (left)
                add_tensor(o, nt, floats, s->name, "QL", 2, r, r, &q->QL);
            if (right)
                add_tensor(o, nt, floats, s->name, "QR", 2, c, c, &q->QR);
            work = optim_soap_work(q->rows, q->cols);
            break;
        }
        }
        if (work > o->work_floats)
            o->work_floats = work;
    }
}

/* ---- API ---- */

int llm_optim_new(struct llm_optim **out, const struct llm_optim_config *cfg,
                  const struct llm_model *m)
{
    *out = NULL;
    int rc = check_config(cfg);
    if (rc || (rc = check_ops(m->be->ops, cfg->name)))
        return rc;
    const struct llm_param_layout *l = &m->layout;
    for (size_t i = 0; i < l->n; i++)
        if (l->p[i].ndim == 2 && (l->p[i].shape[0] > 0x7fffffff || l->p[i].shape[1] > 0x7fffffff))
            return llm_err(LLM_EINVAL, "optimizer: '%s' is too large", l->p[i].name);
    struct llm_optim *o = llm_calloc(1, sizeof(*o), "the optimizer");
    if (!o)
        return LLM_ENOMEM;
    o->cfg = *cfg;
    o->be = m->be;
    o->nparams = l->n;
    o->total = l->total;
    o->p = llm_calloc(l->n ? l->n : 1, sizeof(*o->p), "the optimizer's plan");
    if (!o->p) {
        llm_optim_free(o);
        return LLM_ENOMEM;
    }
    for (size_t i = 0; i < l->n; i++)
        plan(cfg, &l->p[i], &o->p[i]);
    size_t nt, floats;
    walk_state(o, l, &nt, &floats); /* count */
    o->tensors = llm_calloc(nt ? nt : 1, sizeof(*o->tensors), "the optimizer's tensor list");
    if (!o->tensors) {
        llm_optim_free(o);
        return LLM_ENOMEM;
    }
    void *ctx = o->be->ctx;
    if ((rc = o->be->ops->alloc(ctx, (void **)&o->state, (floats ? floats : 1) * sizeof(float))) ||
        (o->work_floats &&
         (rc = o->be->ops->alloc(ctx, (void **)&o->work, o->work_floats * sizeof(float))))) {
        llm_optim_free(o);
        return llm_err_wrap(rc, "allocating the optimizer state (%zu floats)", floats);
    }
    walk_state(o, l, &o->ntensors, &floats); /* point */
    if (cfg->name == LLM_OPTIM_SOAP && (rc = optim_soap_init(o))) {
        llm_optim_free(o);
        return rc;
    }
    *out = o;
    return 0;
}

void llm_optim_free(struct llm_optim *o)
{
    if (!o)
        return;
    if (o->state)
        o->be->ops->free(o->be->ctx, o->state);
    if (o->work)
        o->be->ops->free(o->be->ctx, o->work);
    free(o->tensors);
    free(o->p);
    free(o);
}

int llm_optim_step(struct llm_optim *o, struct llm_model *m, double lr_factor, float grad_scale)
{
    if (m->layout.n != o->nparams || m->layout.total != o->total)
        return llm_err(LLM_EINVAL, "optimizer step: the model's layout is not the one the "
                                   "optimizer was built for");
    if (!m->grads)
        return llm_err(LLM_EINVAL, "optimizer step: the model has no gradients yet");
    if (!(lr_factor >= 0.0 && lr_factor <= 1.0))
        return llm_err(LLM_EINVAL, "optimizer step: lr factor %g is not in [0, 1]", lr_factor);
    if (!isfinite(grad_scale))
        return llm_err(LLM_EINVAL, "optimizer step: gradient scale %g is not finite",
                       (double)grad_scale);
    const struct llm_optim_config *c = &o->cfg;
    const struct llm_backend_ops *ops = o->be->ops;
    void *ctx = o->be->ctx;
    o->t++;
    int t = optim_op_t(o->t);
    for (size_t i = 0; i < o->nparams; i++) {
        const struct optim_param *q = &o->p[i];
        float *w = m->params + q->offset;
        const float *g = m->grads + q->offset;
        double lr = q->lr * lr_factor;
        int rc = 0;
        switch (q->rule) {
        case RULE_ADAMW:
            rc = ops->adamw(ctx, w, g, q->m, q->v, q->numel, (float)lr, (float)c->betas[0],
                            (float)c->betas[1], (float)c->eps, (float)q->wd, t, grad_scale);
            break;
        case RULE_SGD:
            rc = ops->sgd(ctx, w, g, q->mom, q->numel, (float)lr, (float)c->momentum,
                          c->nesterov, (float)q->wd, grad_scale);
            break;
        case RULE_MUON:
            rc = optim_muon_step(o, q, w, g, lr, grad_scale);
            break;
        case RULE_SOAP:
            rc = optim_soap_step(o, q, w, g, lr, grad_scale);
            break;
        }
        if (rc)
            return llm_err_wrap(rc, "optimizer step %lld, '%s'", (long long)o->t,
                                m->layout.p[i].name);
    }
    return 0;
}

int64_t llm_optim_t(const struct llm_optim *o)
{
    return o->t;
}

void llm_optim_set_t(struct llm_optim *o, int64_t t)
{
    o->t = t < 0 ? 0 : t;
}

size_t llm_optim_tensor_count(const struct llm_optim *o)
{
    return o->ntensors;
}

const struct llm_optim_tensor *llm_optim_tensor(const struct llm_optim *o, size_t i)
{
    return i < o->ntensors ? &o->tensors[i] : NULL;
}

const char *llm_optim_rule(const struct llm_optim *o, size_t i)
{
    return i < o->nparams ? o->p[i].rule_name : "";
}
