/* optim.h: the optimizers that update a model's parameters from its
 * gradients: AdamW, SGD with momentum, Muon and SOAP, with parameter groups
 * (who gets weight decay, who Muon leaves to AdamW). The math, the groups and
 * the state tensors are in docs/optim.md.
 *
 * The optimizer runs on the model's backend: its state lives in one
 * device allocation and every update is backend ops (SOAP's eigenbases are
 * computed on the host with LAPACK and uploaded). Its state is exactly the
 * tensors listed by llm_optim_tensor plus the step t: writing them back into
 * a fresh optimizer continues a run bit-identically. */
#ifndef LLM_OPTIM_OPTIM_H
#define LLM_OPTIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "model/model.h"

struct llm_optim; /* opaque */

/* Builds the optimizer for model m's parameters (m->layout, m->be): state
 * zeroed (SOAP's bases: the identity), t = 0. cfg is copied; m is only read (the optimizer remembers its
 * backend, which must outlive it). LLM_EINVAL for a bad config (unknown
 * name, betas or momentum outside [0, 1), ...), LLM_EUNSUPPORTED if the
 * backend lacks an op the optimizer needs, LLM_ENOMEM. Free with
 * llm_optim_free. */
int llm_optim_new(struct llm_optim **out, const struct llm_optim_config *cfg,
                  const struct llm_model *m);
void llm_optim_free(struct llm_optim *o); /* NULL ok */

/* One update of m->params from m->grads, the gradients multiplied by
 * grad_scale first (the trainer folds gradient averaging and clipping into
 * it). Each parameter group's peak lr is multiplied by lr_factor (the
 * schedule, in [0, 1]). Increments t first (the first step has t = 1).
 * m must be the model (same layout) the optimizer was built for, with
 * gradients. */
int llm_optim_step(struct llm_optim *o, struct llm_model *m, double lr_factor, float grad_scale);
int64_t llm_optim_t(const struct llm_optim *o);
void llm_optim_set_t(struct llm_optim *o, int64_t t); /* resume */

/* The state for checkpoints: every tensor the optimizer keeps, in a fixed
 * order, in device memory (borrowed; read and written through the backend's
 * download/upload). Names are "optim.<param name>.<slot>" (docs/optim.md). */
struct llm_optim_tensor {
    char name[160];
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* [n, 0] for 1-D */
    size_t numel;
    float *data;
};
size_t llm_optim_tensor_count(const struct llm_optim *o);
/* Tensor i < count (NULL past the end). */
const struct llm_optim_tensor *llm_optim_tensor(const struct llm_optim *o, size_t i);

/* Which rule updates parameter i of the layout, for reports and tests:
 * "adamw", "adamw_nodecay", "sgd", "sgd_nodecay", "muon", "soap",
 * "soap_nodecay" (a static string; "" for i out of range). */
const char *llm_optim_rule(const struct llm_optim *o, size_t i);

#endif
