/* model_io.h: a model on disk: saved as and loaded from a checkpoint
 * (core/ckpt.h: header {"format": "llm-model", "format_version": 1,
 * "config": the full config, ...extra keys} and every parameter tensor by its
 * native name as f32), exported to safetensors (native names, any variant) or
 * to a Hugging Face folder (Llama- or GPT-2-shaped), and imported back from
 * such a folder. Formats and name maps: docs/export.md.
 *
 * Errors are 0 or a negative LLM_E* code with a message naming the file and,
 * where it applies, the tensor. Nothing is ever half-loaded or half-written:
 * on error every output is removed and every model released. */
#ifndef LLM_MODEL_MODEL_IO_H
#define LLM_MODEL_MODEL_IO_H

#include <cjson/cJSON.h>

#include "config/config.h"
#include "core/ckpt.h"
#include "model/model.h"
#include "model/params.h"

#define LLM_MODEL_FORMAT "llm-model"
#define LLM_MODEL_FORMAT_VERSION 1

/* ---- checkpoints ---- */

/* Writes m to path (atomically). The header holds "format",
 * "format_version", "config" (llm_config_defaults with .model = m->cfg) and
 * every key of extra_header (NULL or an object, borrowed; it may not use
 * those three keys): "tokenizer" (a tokenizer.json object), "train", ...
 * Parameters are downloaded from the backend in 1 MiB pieces. */
int llm_model_save(const struct llm_model *m, const char *path, const cJSON *extra_header);

/* Training state stored next to the parameters (optimizer moments, ...):
 * names start with "optim." so they can never collide with a parameter, and
 * readers of the model (load, export, info) skip them. data is device memory
 * (borrowed), numel f32 values. */
#define LLM_STATE_PREFIX "optim."
struct llm_state_tensor {
    const char *name;
    int ndim;
    const int64_t *shape;
    size_t numel;
    const float *data;
};

/* llm_model_save plus the state tensors after the parameters (a training
 * checkpoint). A name without the prefix is LLM_EINVAL. */
int llm_model_save_state(const struct llm_model *m, const char *path, const cJSON *extra_header,
                         const struct llm_state_tensor *state, size_t nstate);
/* Reads tensor i of r (f32; the caller checked its size) into device memory dst of be. */
int llm_model_read_device(struct llm_ckpt_reader *r, size_t i, struct llm_backend *be, float *dst);

/* Builds m (uninitialized) on be from the checkpoint at path: config from
 * the header, then every tensor, checked by name, dtype and shape, none
 * missing or extra (state tensors, "optim.*", are skipped). With header_out non-NULL, *header_out is a copy of the
 * whole header (the caller cJSON_Deletes it). On error m is released (zeroed)
 * and *header_out is NULL. */
int llm_model_load(struct llm_model *m, const char *path, struct llm_backend *be, cJSON **header_out);

/* A model checkpoint opened and checked against its config's parameter
 * layout without building the model (for export, info, conversions). */
struct llm_model_file {
    struct llm_ckpt_reader *r;
    char *path;
    struct llm_config cfg;          /* the full config of the header */
    struct llm_param_layout layout; /* of cfg.model */
    long *index;                    /* (layout.n) checkpoint tensor of layout.p[i] */
};

/* Opens path, checks "format", "format_version", "config" and that the
 * tensors are exactly the layout's (names, f32, shapes). f need not be
 * initialized; on error it is released. */
int llm_model_file_open(struct llm_model_file *f, const char *path);
/* Reads layout tensor i (its numel floats) into dst (host memory). */
int llm_model_file_read(struct llm_model_file *f, size_t i, float *dst);
/* The header (borrowed, valid until close). */
const cJSON *llm_model_file_header(const struct llm_model_file *f);
void llm_model_file_close(struct llm_model_file *f); /* zeroed struct or NULL: no-op */

/* ---- export and import ---- */

/* Which Hugging Face architecture a model config fits. */
enum llm_hf_arch { LLM_HF_NONE, LLM_HF_LLAMA, LLM_HF_GPT2 };

/* The architecture m fits, or LLM_HF_NONE with one line in why (size n)
 * naming what does not fit ("cannot export as LlamaForCausalLM: bias is
 * true (needs false), ..."). */
enum llm_hf_arch llm_hf_arch_of(const struct llm_model_config *m, char *why, size_t n);

struct llm_export_opts {
    const char *tokenizer; /* hf: tokenizer.json to copy (NULL: the header's "tokenizer") */
    int force;             /* overwrite an existing file, or write into a non-empty folder */
};

/* One safetensors file at out: native names, f32, the config as the
 * metadata string "llm_config" (and "format": "pt"). Any variant. */
int llm_export_safetensors(const char *ckpt, const char *out, const struct llm_export_opts *o);
/* A Hugging Face folder at out: model.safetensors (HF names and layouts),
 * config.json, generation_config.json, tokenizer.json. The folder is built
 * as OUT.tmp.XXXXXX and renamed; an existing non-empty folder is refused
 * unless o->force, which writes each file atomically into it instead. */
int llm_export_hf(const char *ckpt, const char *out, const struct llm_export_opts *o);

struct llm_import_opts {
    const char *const *sets;  /* "model.KEY=VALUE" overrides applied after config.json */
    int nsets;
    const char *tokenizer;    /* tokenizer.json to store instead of DIR's (NULL: DIR's, if any) */
    int no_tokenizer;         /* store no tokenizer */
};

/* Reads a Hugging Face folder (config.json with model_type llama or gpt2;
 * model.safetensors or model.safetensors.index.json with its shards; F32,
 * BF16, F16 or F64 tensors) and writes a model checkpoint to out with
 * llm_model_save (the tokenizer.json object in the header as "tokenizer",
 * "import": {"from": DIR, "model_type": ...}). */
int llm_import_hf(const char *dir, const char *out, const struct llm_import_opts *o);

#endif
