/* load.c: checkpoint -> model (+ int8 weights) + tokenizer for inference. */
#include <stdio.h>
#include <string.h>

#include "core/ckpt.h"
#include "core/err.h"
#include "core/log.h"
#include "infer/load.h"
#include "infer/quant_io.h"
#include "model/model_io.h"

void llm_loaded_release(struct llm_loaded *x)
{
    llm_tok_free(x->tok);
    if (x->have_q8)
        llm_q8_release(&x->q8, &x->m);
    if (x->have_m)
        llm_model_release(&x->m);
    memset(x, 0, sizeof(*x));
}

int llm_loaded_open(struct llm_loaded *x, const char *path, struct llm_backend *be,
                    enum llm_load_weights weights, int group, enum llm_tok_want want_tok,
                    const char *tok_path)
{
    memset(x, 0, sizeof(*x));
    struct llm_ckpt_reader *peek;
    int rc = llm_ckpt_open(&peek, path);
    if (rc)
        return rc;
    x->prequantized = llm_q8_is_quantized(llm_ckpt_header(peek));
    llm_ckpt_close(peek);
    cJSON *header = NULL;
    if (x->prequantized) {
        if (!(rc = llm_q8_load(&x->m, &x->q8, path, be, &header))) {
            x->have_m = x->have_q8 = 1;
            if (weights != LLM_LOAD_STORED)
                llm_info("%s is already quantized (int8, groups of %d)", path, x->q8.G);
        }
    } else if (!(rc = llm_model_load(&x->m, path, be, &header))) {
        x->have_m = 1;
        if (weights == LLM_LOAD_Q4 && !(rc = llm_model_quantize_q4(&x->m, &x->q8))) {
            x->have_q8 = 1;
            llm_info("quantized %zu weights to 4 bits (Q4, groups of %d)", x->q8.quantized, LLM_Q4_GROUP);
        } else if (weights == LLM_LOAD_INT8 && !(rc = llm_model_quantize_q8(&x->m, group, &x->q8))) {
            x->have_q8 = 1;
            llm_info("quantized %zu weights to int8 (groups of %d)", x->q8.quantized, group);
        }
    }
    const cJSON *tj = cJSON_GetObjectItemCaseSensitive(header, "tokenizer");
    if (!rc && want_tok != LLM_TOK_NONE && tok_path) {
        rc = llm_tok_load(&x->tok, tok_path);
    } else if (!rc && (want_tok == LLM_TOK_NEEDED || (want_tok == LLM_TOK_IF_ANY && tj))) {
        char name[4200];
        snprintf(name, sizeof(name), "%s: header \"tokenizer\"", path);
        rc = tj ? llm_tok_load_json(&x->tok, tj, name)
                : llm_err(LLM_EINVAL, "%s has no tokenizer: pass --tokenizer tokenizer.json", path);
    }
    cJSON_Delete(header);
    if (rc)
        llm_loaded_release(x);
    return rc;
}
