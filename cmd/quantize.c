/* quantize.c: `llm quantize CKPT -o Q.ckpt`: a model checkpoint with its
 * linear-layer weights in int8 per-group (lib/infer/quant_io.h), for
 * `llm generate`. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "core/log.h"
#include "infer/quant_io.h"
#include "model/model_io.h"
#include "nn/backend.h"

int cmd_quantize(int argc, char **argv)
{
    const char *out = NULL, *method = "int8";
    long group = 32;
    const struct llm_opt opts[] = {
        {"output", 'o', LLM_OPT_STR, &out, "Q.ckpt", "the quantized checkpoint (required)"},
        {"method", 0, LLM_OPT_STR, &method, "int8", "int8 (per-group symmetric; the only one today)"},
        {"group", 0, LLM_OPT_INT, &group, "G", "weights per scale: 32 (default) or 64"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "quantize",
        .usage = "CKPT -o Q.ckpt [--group 32|64]",
        .summary = "Quantize a model's linear-layer weights to int8 with per-group scales.",
        .opts = opts,
        .min_pos = 1,
        .max_pos = 1,
        .epilog = "Every weight matrix whose input width is a multiple of the group (and the embedding, which a\n"
                  "tied head reads) becomes int8 codes + one fp32 scale per group; norms, biases and routers\n"
                  "stay fp32. `llm generate -m Q.ckpt` decodes with it. Format: docs/quant.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    int rc = 0;
    if (!out)
        rc = llm_err(LLM_EUSAGE, "-o Q.ckpt is required");
    else if (strcmp(method, "int8"))
        rc = llm_err(LLM_EUSAGE, "--method: expected int8, got '%s'", method);
    else if (group != 32 && group != 64)
        rc = llm_err(LLM_EUSAGE, "--group: expected 32 or 64, got %ld", group);
    struct llm_backend be;
    struct llm_model m;
    struct llm_q8 q;
    cJSON *h = NULL;
    int have_be = 0, have_m = 0, have_q = 0;
    if (!rc && !(rc = llm_backend_cpu_init(&be, 0, 0)))
        have_be = 1;
    if (!rc && !(rc = llm_model_load(&m, a.pos[0], &be, &h)))
        have_m = 1;
    if (!rc && !(rc = llm_model_quantize_q8(&m, (int)group, &q)))
        have_q = 1;
    if (!rc && !(rc = llm_q8_save(&m, &q, out, h)))
        llm_info("%s: %zu of %zu weights in int8 (groups of %ld)", out, q.quantized, llm_param_count(&m.layout),
                 group);
    cJSON_Delete(h);
    if (have_q)
        llm_q8_release(&q, &m);
    if (have_m)
        llm_model_release(&m);
    if (have_be)
        llm_backend_release(&be);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
