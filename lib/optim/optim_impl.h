/* optim_impl.h: what optim.c (API, groups, AdamW, SGD, the state list),
 * muon.c and soap.c share: the per-parameter plan and the optimizer struct. */
#ifndef LLM_OPTIM_IMPL_H
#define LLM_OPTIM_IMPL_H

#include "optim/optim.h"

enum optim_rule { RULE_ADAMW, RULE_SGD, RULE_MUON, RULE_SOAP };

/* How one parameter tensor of the layout is updated, and its state (device
 * pointers into the optimizer's state arena; NULL where the rule has none). */
struct optim_param {
    enum optim_rule rule;
    const char *rule_name; /* llm_optim_rule's answer */
    double lr;             /* peak lr of its group */
    double wd;             /* its weight decay: cfg.weight_decay, or 0 outside the decay group */
    int rows, cols;        /* (rows, cols) for 2-D tensors; (n, 1) for 1-D */
    size_t offset, numel;  /* in the model's parameter and gradient buffers */
    float *m, *v;          /* (rows, cols) adamw and soap moments (soap: in the rotated basis) */
    float *mom;            /* (rows, cols) sgd and muon momentum buffer */
    float *L, *QL;         /* soap: (rows, rows), NULL when the left side keeps the identity */
    float *R, *QR;         /* soap: (cols, cols), NULL when the right side keeps the identity */
};

struct llm_optim {
    struct llm_optim_config cfg;
    struct llm_backend *be;     /* borrowed from the model */
    size_t nparams;             /* = the layout's tensor count */
    size_t total;               /* the layout's buffer floats, to recognize the model */
    struct optim_param *p;      /* (nparams) */
    struct llm_optim_tensor *tensors; /* (ntensors) views into state */
    size_t ntensors;
    float *state;               /* device: every state tensor, LLM_PARAM_ALIGN-aligned */
    float *work;                /* device scratch of Muon and SOAP (work_floats) */
    size_t work_floats;
    int64_t t;                  /* steps taken */
};

/* The step t as the int the backend ops take (saturating; bias corrections
 * have long reached 1 by then). */
static inline int optim_op_t(int64_t t)
{
    return t > 0x7fffffff ? 0x7fffffff : (int)t;
}

/* muon.c: scratch floats a Muon step of a (rows, cols) matrix needs, and the
 * step (lr: this step's lr; w, g: the tensor's parameters and gradients). */
size_t optim_muon_work(int rows, int cols);
int optim_muon_step(struct llm_optim *o, const struct optim_param *q, float *w, const float *g,
                    double lr, float grad_scale);

/* soap.c: the same for SOAP; the step refreshes the eigenbases when due.
 * optim_soap_init sets the bases of a new optimizer to the identity. */
size_t optim_soap_work(int rows, int cols);
int optim_soap_init(struct llm_optim *o);
int optim_soap_step(struct llm_optim *o, const struct optim_param *q, float *w, const float *g,
                    double lr, float grad_scale);

#endif
