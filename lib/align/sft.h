/* sft.h: supervised fine-tuning as a task of the training loop (train.h):
 * prompt/response or chat examples, the loss on response tokens only,
 * normalized per token over each optimizer step's accumulated batch. */
#ifndef LLM_ALIGN_SFT_H
#define LLM_ALIGN_SFT_H

#include "align/align.h"
#include "train/train.h"

struct llm_sft {
    struct llm_train_task task;
    struct llm_align_base *base;  /* borrowed */
    struct llm_seq *train, *val;
    int n_train, n_val, n_val_all; /* n_val: the evaluated prefix */
    int B, T, accum;
    int packing;                  /* sft.packing: rows of whole examples (sft.c) */
    struct llm_align_order order;
    /* the step being accumulated */
    int micro;
    float w_scale;                /* accum / learned tokens of the step */
    int32_t *tok, *tgt, *pos;     /* (B, T); pos: packed positions */
    int *used;                    /* (B) packed: tokens of each row before its padding */
    float *w;
    const struct llm_seq **rows;
};

/* Reads data.train (and data.val) JSONL: {"prompt","response"} or
 * {"messages": [...]} per line. Chat examples add the template's special
 * tokens to the tokenizer and grow m's vocabulary (cfg->model follows).
 * Errors name file:line. */
int llm_sft_init(struct llm_sft *s, struct llm_config *cfg, struct llm_align_base *b, struct llm_model *m);
void llm_sft_release(struct llm_sft *s);

#endif
