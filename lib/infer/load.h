/* load.h: a model ready for inference from a checkpoint path: fp32 or int8
 * (`llm quantize`) weights, quantized on load when asked, and its tokenizer
 * (the checkpoint header's, or a tokenizer.json). Shared by generate and
 * eval. */
#ifndef LLM_INFER_LOAD_H
#define LLM_INFER_LOAD_H

#include <string.h>

#include "infer/quant.h"
#include "model/model.h"
#include "tok/tok.h"

struct llm_loaded {
    struct llm_model m;
    struct llm_q8 q8;
    int have_m, have_q8;
    int prequantized;          /* the checkpoint itself was int8 */
    struct llm_tokenizer *tok; /* NULL when not asked for */
};

enum llm_tok_want {
    LLM_TOK_NONE,   /* no tokenizer */
    LLM_TOK_NEEDED, /* tok_path's, else the header's, else an error ("pass --tokenizer") */
    LLM_TOK_IF_ANY, /* tok_path's, else the header's if it has one, else none */
};

/* The weights to decode with. */
enum llm_load_weights {
    LLM_LOAD_STORED, /* the checkpoint's own (fp32, or int8 from `llm quantize`) */
    LLM_LOAD_INT8,   /* fp32 quantized to int8 at load (llm_model_quantize_q8, groups of `group`) */
    LLM_LOAD_Q4,     /* fp32 quantized to 4 bits at load (llm_model_quantize_q4, groups of 32) */
};

/* The weights a --quantize value decodes with: NULL stored, "q4" Q4, "int8"
 * and "w8a8" int8 (W8A8 quantizes the activations at decode, not the
 * weights; the caller has checked the name). */
static inline enum llm_load_weights llm_load_weights_for(const char *quantize)
{
    return !quantize ? LLM_LOAD_STORED : !strcmp(quantize, "q4") ? LLM_LOAD_Q4 : LLM_LOAD_INT8;
}

/* Loads path on be with the weights asked for (group: 32 or 64, used by
 * LLM_LOAD_INT8 only; an int8 checkpoint stays as it is whatever is asked).
 * On error everything is released. */
int llm_loaded_open(struct llm_loaded *x, const char *path, struct llm_backend *be,
                    enum llm_load_weights weights, int group, enum llm_tok_want want_tok,
                    const char *tok_path);
void llm_loaded_release(struct llm_loaded *x);
/* The int8 weights to decode with, or NULL. */
static inline const struct llm_q8 *llm_loaded_q8(const struct llm_loaded *x) { return x->have_q8 ? &x->q8 : NULL; }

#endif
