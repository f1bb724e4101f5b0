/* eval_impl.h: helpers shared by the task runners (eval.c, eval_gen.c);
 * not part of the module's API. */
#ifndef LLM_EVAL_EVAL_IMPL_H
#define LLM_EVAL_EVAL_IMPL_H

#include "core/progress.h"
#include "eval/eval.h"

void eval_add_metric(struct llm_eval_result *r, const char *name, double value, double se);
void eval_add_rate(struct llm_eval_result *r, const char *name, double k, int64_t n);
int eval_samples_init(struct llm_eval_result *r, const struct llm_eval_opts *o);
int eval_sample_add(struct llm_eval_result *r, cJSON *s);
void eval_progress_start(struct llm_progress *p, const struct llm_eval_opts *o, const char *unit,
                         uint64_t total);
/* Context and continuation ids as the harness forms them (eval.c). */
int eval_encode_pair(struct llm_tok_encoder *e, int64_t eot, const char *context, const char *cont,
                     struct llm_ids *ctx_ids, struct llm_ids *cont_ids);
/* Completions of n prompts, in chunks that advance prog (may be NULL). */
int eval_generate(struct llm_model *m, const struct llm_tokenizer *tok, char **prompts, int n,
                  const struct llm_gen_opts *go, struct llm_gen_result *res, struct llm_progress *prog);

#endif
