/* generate.c: `llm generate`: completions of one prompt (streamed to stdout
 * as produced) or of a JSONL file of prompts (one JSONL result per prompt),
 * with the KV-cache engine, sampling and batched decoding (lib/infer). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "core/log.h"
#include "infer/generate.h"
#include "infer/load.h"
#include "model/model_io.h"
#include "nn/backend.h"

#define MAX_PROMPT_FILE (256u << 20)

static int stream_out(void *ctx, int i, const char *text, size_t n)
{
    (void)ctx, (void)i;
    if (fwrite(text, 1, n, stdout) != n || fflush(stdout))
        return llm_err(LLM_EIO, "cannot write to stdout");
    return 0;
}

/* The prompts of a JSONL file: each line an object with a string "prompt". */
struct prompts {
    char **v;
    size_t *lens;
    int n, cap;
};

static int add_prompt(struct prompts *p, const char *s, size_t n)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        char **v = realloc(p->v, (size_t)cap * sizeof(*v));
        size_t *l = v ? realloc(p->lens, (size_t)cap * sizeof(*l)) : NULL;
        if (v)
            p->v = v;
        if (!l)
            return llm_err(LLM_ENOMEM, "out of memory reading prompts");
        p->lens = l, p->cap = cap;
    }
    if (!(p->v[p->n] = malloc(n + 1)))
        return llm_err(LLM_ENOMEM, "out of memory reading prompts");
    memcpy(p->v[p->n], s, n);
    p->v[p->n][n] = 0;
    p->lens[p->n++] = n;
    return 0;
}

static void prompts_release(struct prompts *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v), free(p->lens);
    memset(p, 0, sizeof(*p));
}

static int read_jsonl(const char *path, struct prompts *p)
{
    struct llm_jsonl_reader r;
    int rc = llm_jsonl_open(&r, path, 0);
    if (rc)
        return rc;
    cJSON *o;
    while (!rc && (rc = llm_jsonl_next(&r, &o)) == 1) {
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        if (!cJSON_IsString(pr))
            rc = llm_err(LLM_EFORMAT, "%s:%llu: no string \"prompt\"", path, (unsigned long long)r.line);
        else
            rc = add_prompt(p, pr->valuestring, strlen(pr->valuestring));
        cJSON_Delete(o);
    }
    llm_jsonl_close(&r);
    if (!rc && p->n == 0)
        rc = llm_err(LLM_EINVAL, "%s: no prompts", path);
    return rc < 0 ? rc : 0;
}

static cJSON *timing_json(const struct llm_gen_stats *s)
{
    cJSON *t = cJSON_CreateObject();
    if (!t)
        return NULL;
    cJSON_AddNumberToObject(t, "prompt_tokens", (double)s->prompt_tokens);
    cJSON_AddNumberToObject(t, "generated_tokens", (double)s->gen_tokens);
    cJSON_AddNumberToObject(t, "prefill_tokens_per_s", s->prefill_s > 0 ? s->prompt_tokens / s->prefill_s : 0);
    /* decode: tokens sampled after decode steps (each prompt's first comes from its prefill) */
    cJSON_AddNumberToObject(t, "decode_tokens_per_s", s->decode_s > 0 ? (double)s->decode_tokens / s->decode_s : 0);
    cJSON_AddNumberToObject(t, "time_to_first_token_s", s->ttft_s);
    cJSON_AddNumberToObject(t, "prefill_s", s->prefill_s);
    cJSON_AddNumberToObject(t, "decode_s", s->decode_s);
    if (s->draft_proposed > 0) {
        cJSON_AddNumberToObject(t, "speculative_rounds", (double)s->decode_steps);
        cJSON_AddNumberToObject(t, "draft_proposed", (double)s->draft_proposed);
        cJSON_AddNumberToObject(t, "draft_accepted", (double)s->draft_accepted);
        cJSON_AddNumberToObject(t, "acceptance_rate", (double)s->draft_accepted / (double)s->draft_proposed);
    }
    return t;
}

static cJSON *result_json(const char *prompt, const struct llm_gen_result *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "prompt", prompt);
    cJSON_AddStringToObject(o, "completion", r->completion ? r->completion : "");
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)r->prompt_tokens);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddStringToObject(o, "finish_reason", llm_gen_finish_name(r->finish));
    return o;
}

static int print_json(const cJSON *j, int pretty)
{
    char *s = pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    if (!s)
        return llm_err(LLM_ENOMEM, "out of memory");
    printf("%s\n", s);
    free(s);
    return 0;
}

/* A --quantize or --draft-quantize value (NULL: not given). */
static int known_quant(const char *q)
{
    return !q || !strcmp(q, "int8") || !strcmp(q, "w8a8") || !strcmp(q, "q4");
}

int cmd_generate(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *prompt_file = NULL, *prompts_path = NULL, *tok_path = NULL;
    const char *truncate = "error", *device = NULL, *draft = NULL, *quantize = NULL, *draft_quantize = NULL;
    struct llm_strlist stops = {0};
    double temperature = 1.0, top_p = 1.0, min_p = 0.0, rep = 1.0, draft_p_min = 0.0;
    long top_k = 0, max_tokens = 256, seed = 1, batch = 1, threads = 0, draft_tokens = 4, group = 32;
    long draft_threads = 0;
    int json = 0, no_eot = 0, no_special = 0;
    const struct llm_opt opts[] = {
        {"model", 'm', LLM_OPT_STR, &model, "CKPT", "model checkpoint (required)"},
        {"prompt", 'p', LLM_OPT_STR, &prompt, "TEXT", "the prompt; the completion streams to stdout"},
        {"prompt-file", 0, LLM_OPT_STR, &prompt_file, "FILE", "the prompt from a file ('-' = stdin)"},
        {"prompts", 0, LLM_OPT_STR, &prompts_path, "F.jsonl", "many prompts ({\"prompt\": ...} per line); "
                                                               "JSONL results on stdout"},
        {"max-tokens", 'n', LLM_OPT_INT, &max_tokens, "N", "new tokens per prompt (default 256)"},
        {"temperature", 't', LLM_OPT_F64, &temperature, "T", "0 = greedy (default 1)"},
        {"top-k", 0, LLM_OPT_INT, &top_k, "K", "sample among the K most likely (0 = off)"},
        {"top-p", 0, LLM_OPT_F64, &top_p, "P", "nucleus: the most likely tokens with mass P (1 = off)"},
        {"min-p", 0, LLM_OPT_F64, &min_p, "P", "drop tokens below P x the top probability (0 = off)"},
        {"repetition-penalty", 0, LLM_OPT_F64, &rep, "R", "CTRL-style penalty on seen tokens (1 = off)"},
        {"seed", 's', LLM_OPT_INT, &seed, "N", "sampling seed (default 1): same seed, same output"},
        {"stop", 0, LLM_OPT_LIST, &stops, "STR", "end the completion before STR (repeatable)"},
        {"no-eot", 0, LLM_OPT_FLAG, &no_eot, NULL, "do not stop at the end-of-text token"},
        {"batch", 'b', LLM_OPT_INT, &batch, "N", "prompts decoded at once (default 1)"},
        {"draft", 0, LLM_OPT_STR, &draft, "CKPT", "speculative decoding with this smaller model (same vocabulary)"},
        {"draft-tokens", 0, LLM_OPT_INT, &draft_tokens, "K", "tokens the draft proposes per round (1..15, default 4)"},
        {"draft-p-min", 0, LLM_OPT_F64, &draft_p_min, "P", "end a round's draft early when the draft's top "
                                                            "probability falls below P (0 = off, default)"},
        {"draft-threads", 0, LLM_OPT_INT, &draft_threads, "N", "the draft's CPU threads (default: --threads; a small "
                                                               "draft's step is mostly fork/join, 1 can be faster)"},
        {"draft-quantize", 0, LLM_OPT_STR, &draft_quantize, "int8|w8a8|q4", "the draft decodes with int8 weights "
                                                                              "(--group's groups; an int8 --draft needs "
                                                                              "no flag); w8a8: int8 activations too; q4: "
                                                                              "4-bit weights, int8 activations"},
        {"truncate", 0, LLM_OPT_STR, &truncate, "error|left", "a prompt longer than the context: fail "
                                                              "(default) or keep its end"},
        {"quantize", 0, LLM_OPT_STR, &quantize, "int8|w8a8|q4", "decode with int8 weights (per-group "
                                                                  "scales; docs/quant.md); w8a8: int8 activations "
                                                                  "too; q4: 4-bit weights (groups of 32), int8 "
                                                                  "activations"},
        {"group", 0, LLM_OPT_INT, &group, "G", "--quantize: weights per scale, 32 (default) or 64"},
        {"tokenizer", 0, LLM_OPT_STR, &tok_path, "FILE", "tokenizer.json (default: the checkpoint's)"},
        {"no-special", 0, LLM_OPT_FLAG, &no_special, NULL, "encode special-token text in prompts as plain text"},
        {"threads", 0, LLM_OPT_INT, &threads, "N", "CPU threads (default: all cores)"},
        {"device", 0, LLM_OPT_STR, &device, "D", "cpu (default) or cuda"},
        {"json", 0, LLM_OPT_FLAG, &json, NULL, "print the completion and timing as JSON instead of streaming"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "generate",
        .usage = "--model CKPT (--prompt TEXT | --prompt-file F | --prompts F.jsonl) [options]",
        .summary = "Generate text with a model: KV cache, sampling, batched decoding.",
        .opts = opts,
        .min_pos = 0,
        .max_pos = 0,
        .epilog = "Sampling applies the repetition penalty, temperature, top-k, top-p and min-p in that order\n"
                  "(docs/sampling.md). Timing (--json, or with -v on stderr): prefill and decode tokens/s,\n"
                  "time to first token. See docs/generate.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    int rc = 0, nsrc = !!prompt + !!prompt_file + !!prompts_path;
    if (!model)
        rc = llm_err(LLM_EUSAGE, "--model is required");
    else if (nsrc != 1)
        rc = llm_err(LLM_EUSAGE, "give exactly one of --prompt, --prompt-file, --prompts");
    else if (max_tokens < 1 || max_tokens > (1L << 30))
        rc = llm_err(LLM_EUSAGE, "--max-tokens: expected a count >= 1, got %ld", max_tokens);
    else if (batch < 1 || batch > 4096)
        rc = llm_err(LLM_EUSAGE, "--batch: expected 1..4096, got %ld", batch);
    else if (top_k < 0 || top_k > (1L << 30))
        rc = llm_err(LLM_EUSAGE, "--top-k: expected a count >= 0, got %ld", top_k);
    else if (!known_quant(quantize))
        rc = llm_err(LLM_EUSAGE, "--quantize: expected int8, w8a8 or q4, got '%s'", quantize);
    else if (!known_quant(draft_quantize))
        rc = llm_err(LLM_EUSAGE, "--draft-quantize: expected int8, w8a8 or q4, got '%s'", draft_quantize);
    else if (draft_quantize && !draft)
        rc = llm_err(LLM_EUSAGE, "--draft-quantize needs --draft");
    else if (group != 32 && group != 64)
        rc = llm_err(LLM_EUSAGE, "--group: expected 32 or 64, got %ld", group);
    else if (draft_threads < 0 || draft_threads > 1024)
        rc = llm_err(LLM_EUSAGE, "--draft-threads: expected 0..1024, got %ld", draft_threads);
    else if (!(draft_p_min >= 0 && draft_p_min <= 1))
        rc = llm_err(LLM_EUSAGE, "--draft-p-min: expected 0..1, got %g", draft_p_min);
    else if (draft_p_min > 0 && !draft)
        rc = llm_err(LLM_EUSAGE, "--draft-p-min needs --draft");
    else if (draft_tokens < 1 || draft_tokens > 15)
        rc = llm_err(LLM_EUSAGE, "--draft-tokens: expected 1..15, got %ld", draft_tokens);
    else if (threads < 0)
        rc = llm_err(LLM_EUSAGE, "--threads: expected >= 0, got %ld", threads);
    else if (strcmp(truncate, "error") && strcmp(truncate, "left"))
        rc = llm_err(LLM_EUSAGE, "--truncate: expected error or left, got '%s'", truncate);
    else if (device && strcmp(device, "cpu") && strcmp(device, "auto"))
        rc = llm_err(device && !strcmp(device, "cuda") ? LLM_EUNSUPPORTED : LLM_EUSAGE,
                     "--device: %s", !strcmp(device, "cuda") ? "the CUDA backend is not built yet; use cpu"
                                                              : "expected cpu, cuda or auto");
    struct llm_gen_opts go = {
        .sample = {.temperature = temperature, .top_k = (int)top_k, .top_p = top_p, .min_p = min_p,
                   .repetition_penalty = rep, .seed = (uint64_t)seed},
        .max_tokens = (int)max_tokens,
        .stops = stops.v,
        .n_stops = stops.n,
        .batch = (int)batch,
        .truncate = !strcmp(truncate, "left") ? LLM_GEN_TRUNCATE_LEFT : LLM_GEN_TRUNCATE_ERROR,
        .allow_special = !no_special,
        .draft_tokens = (int)draft_tokens,
        .draft_p_min = draft_p_min,
    };
    for (int i = 0; !rc && i < stops.n; i++)
        if (!stops.v[i][0])
            rc = llm_err(LLM_EUSAGE, "--stop: an empty string");
    if (!rc && (rc = llm_sampler_check(&go.sample)))
        rc = LLM_EUSAGE; /* a flag out of range; the message names it */
    struct prompts ps = {0};
    if (!rc && prompt)
        rc = add_prompt(&ps, prompt, strlen(prompt));
    if (!rc && prompt_file) {
        char *text;
        size_t n;
        if (!(rc = llm_read_file(prompt_file, MAX_PROMPT_FILE, &text, &n))) {
            rc = add_prompt(&ps, text, n);
            free(text);
        }
    }
    if (!rc && prompts_path)
        rc = read_jsonl(prompts_path, &ps);

    struct llm_backend be, dbe;
    int have_be = 0, have_dbe = 0;
    struct llm_loaded lm = {0}, dm = {0};
    if (!rc && !(rc = llm_backend_cpu_init(&be, (int)threads, 0)))
        have_be = 1;
    if (!rc)
        rc = llm_loaded_open(&lm, model, &be, llm_load_weights_for(quantize), (int)group, LLM_TOK_NEEDED,
                             tok_path);
    struct llm_model *mp = &lm.m;
    const struct llm_tokenizer *tok = lm.tok;
    if (!rc) {
        go.q8 = llm_loaded_q8(&lm);
        go.a8 = quantize && !strcmp(quantize, "w8a8");
    }
    if (!rc && draft && draft_threads > 0 && !(rc = llm_backend_cpu_init(&dbe, (int)draft_threads, 0)))
        have_dbe = 1;
    if (!rc && draft &&
        !(rc = llm_loaded_open(&dm, draft, have_dbe ? &dbe : &be, llm_load_weights_for(draft_quantize),
                               (int)group, LLM_TOK_NONE, NULL))) {
        go.draft = &dm.m;
        go.draft_q8 = llm_loaded_q8(&dm);
        go.draft_a8 = draft_quantize && !strcmp(draft_quantize, "w8a8");
        if (dm.m.cfg.vocab_size != mp->cfg.vocab_size)
            rc = llm_err(LLM_EINVAL, "--draft: %s has vocab_size %d, the model %d: the draft must share the "
                         "model's vocabulary", draft, dm.m.cfg.vocab_size, mp->cfg.vocab_size);
    }
    if (!rc)
        go.eot = no_eot ? -1 : llm_gen_default_eot(tok);
    struct llm_gen_result *res = NULL;
    struct llm_gen_stats st;
    if (!rc && !(res = calloc((size_t)ps.n, sizeof(*res))))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    int streaming = !rc && prompts_path == NULL && !json;
    if (!rc)
        rc = llm_generate(mp, tok, (const char *const *)ps.v, ps.lens, ps.n, &go, streaming ? stream_out : NULL,
                          NULL, res, &st);
    if (!rc && streaming) {
        if (res[0].len && res[0].completion[res[0].len - 1] != '\n' && isatty(1))
            putchar('\n');
    } else if (!rc && prompts_path) {
        for (int i = 0; !rc && i < ps.n; i++) {
            cJSON *o = result_json(ps.v[i], &res[i]);
            rc = o ? print_json(o, 0) : LLM_ENOMEM;
            cJSON_Delete(o);
        }
        if (!rc && json) {
            cJSON *t = timing_json(&st);
            rc = t ? print_json(t, 0) : LLM_ENOMEM;
            cJSON_Delete(t);
        }
    } else if (!rc) {
        cJSON *o = result_json(ps.v[0], &res[0]), *t = timing_json(&st);
        if (o && t)
            cJSON_AddItemToObject(o, "timing", t), t = NULL;
        rc = o ? print_json(o, 1) : LLM_ENOMEM;
        cJSON_Delete(o), cJSON_Delete(t);
    }
    if (!rc)
        llm_debug("generate: %lld prompt tokens, %lld generated; prefill %.1f tok/s, decode %.1f tok/s, "
                  "first token after %.3f s", (long long)st.prompt_tokens, (long long)st.gen_tokens,
                  st.prefill_s > 0 ? st.prompt_tokens / st.prefill_s : 0,
                  st.decode_s > 0 ? st.decode_tokens / st.decode_s : 0, st.ttft_s);
    if (res)
        llm_gen_results_release(res, ps.n);
    free(res);
    llm_loaded_release(&lm);
    llm_loaded_release(&dm); /* zeroed when there is no draft, as lm after a failed open */
    if (have_dbe)
        llm_backend_release(&dbe);
    if (have_be)
        llm_backend_release(&be);
    prompts_release(&ps);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
