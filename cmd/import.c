/* import.c: `llm import DIR -o CKPT`: a Hugging Face folder (Llama or GPT-2:
 * config.json, model.safetensors or its shards, tokenizer.json) as a model
 * checkpoint. The work is lib/model/model_io.c; details: docs/export.md. */
#include <stdio.h>

#include "cmd.h"
#include "core/log.h"
#include "model/model_io.h"

int cmd_import(int argc, char **argv)
{
    const char *out = NULL, *tokenizer = NULL;
    int no_tokenizer = 0;
    struct llm_strlist sets = {0};
    const struct llm_opt opts[] = {
        {"output", 'o', LLM_OPT_STR, &out, "CKPT", "the checkpoint to write (required)"},
        {"set", 0, LLM_OPT_LIST, &sets, "model.KEY=VALUE",
         "override a model key after config.json, e.g. model.dropout=0.1"},
        {"tokenizer", 0, LLM_OPT_STR, &tokenizer, "FILE", "store this tokenizer.json instead of DIR's"},
        {"no-tokenizer", 0, LLM_OPT_FLAG, &no_tokenizer, NULL, "store no tokenizer"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "import",
        .usage = "DIR -o CKPT [--set model.KEY=VALUE]... [--tokenizer FILE | --no-tokenizer]",
        .summary = "read a Hugging Face Llama or GPT-2 folder into a model checkpoint",
        .opts = opts,
        .min_pos = 1,
        .max_pos = 1,
        .epilog = "DIR holds config.json (model_type llama or gpt2), model.safetensors (or\n"
                  "model.safetensors.index.json and its shards; F32, BF16, F16 or F64) and\n"
                  "optionally tokenizer.json. Details: docs/export.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    int rc;
    struct llm_import_opts o = {sets.v, sets.n, tokenizer, no_tokenizer};
    if (!out || !out[0])
        rc = llm_err(LLM_EUSAGE, "-o CKPT is required");
    else if (tokenizer && no_tokenizer)
        rc = llm_err(LLM_EUSAGE, "--tokenizer and --no-tokenizer exclude each other");
    else
        rc = llm_import_hf(a.pos[0], out, &o);
    if (!rc)
        llm_info("llm import: wrote %s", out);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
