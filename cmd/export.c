/* export.c: `llm export CKPT --format hf|safetensors -o PATH`: a model
 * checkpoint as one safetensors file (native names, any variant) or as a
 * Hugging Face folder (Llama- or GPT-2-shaped). The work is lib/model/model_io.c;
 * formats and name maps: docs/export.md. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "core/log.h"
#include "model/model_io.h"

int cmd_export(int argc, char **argv)
{
    const char *format = NULL, *out = NULL, *tokenizer = NULL;
    int force = 0;
    const struct llm_opt opts[] = {
        {"format", 0, LLM_OPT_STR, &format, "hf|safetensors", "what to write (required)"},
        {"output", 'o', LLM_OPT_STR, &out, "PATH", "the folder (hf) or file (safetensors) to write (required)"},
        {"tokenizer", 0, LLM_OPT_STR, &tokenizer, "FILE",
         "hf: tokenizer.json to include (default: the checkpoint's own)"},
        {"force", 0, LLM_OPT_FLAG, &force, NULL, "replace an existing file; write into a non-empty folder"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "export",
        .usage = "CKPT --format hf|safetensors -o PATH [--tokenizer FILE] [--force]",
        .summary = "write a model checkpoint as a Hugging Face folder or a safetensors file",
        .opts = opts,
        .min_pos = 1,
        .max_pos = 1,
        .epilog = "hf: model.safetensors (HF names), config.json, generation_config.json and\n"
                  "tokenizer.json, for LlamaForCausalLM- and GPT2LMHeadModel-shaped models.\n"
                  "safetensors: one file with llm's native names and the config as metadata.\n"
                  "Details: docs/export.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    int rc;
    struct llm_export_opts o = {tokenizer, force};
    if (!format)
        rc = llm_err(LLM_EUSAGE, "--format is required (hf or safetensors)");
    else if (strcmp(format, "hf") && strcmp(format, "safetensors"))
        rc = llm_err(LLM_EUSAGE, "--format: expected hf or safetensors, got '%s'", format);
    else if (!out || !out[0])
        rc = llm_err(LLM_EUSAGE, "-o PATH is required");
    else if (tokenizer && strcmp(format, "hf"))
        rc = llm_err(LLM_EUSAGE, "--tokenizer applies to --format hf only");
    else if (!strcmp(format, "hf"))
        rc = llm_export_hf(a.pos[0], out, &o);
    else
        rc = llm_export_safetensors(a.pos[0], out, &o);
    if (!rc)
        llm_info("llm export: wrote %s (%s)", out, format);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
