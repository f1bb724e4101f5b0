/* eval.c: `llm eval`: perplexity, multiple choice, exact match (with
 * self-consistency), IFEval and LM-judge evaluations of a checkpoint, with a
 * results report in the spirit of lm-evaluation-harness's (lib/eval). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "core/log.h"
#include "eval/eval.h"
#include "infer/load.h"
#include "nn/backend.h"

static const char *const TASKS[] = {"perplexity", "choice", "exact", "ifeval", "judge"};
enum { T_PPL, T_CHOICE, T_EXACT, T_IFEVAL, T_JUDGE, N_TASKS };

/* Zero-shot chain-of-thought trigger (Kojima et al. 2022). */
#define COT_TRIGGER " Let's think step by step."

/* The metrics as the harness's results file has them: "acc", "acc_stderr", ... */
static cJSON *report(const char *task, const struct llm_eval_result *r, cJSON *config,
                     const struct llm_loaded *x, const char *model_path)
{
    cJSON *root = cJSON_CreateObject(), *results = cJSON_AddObjectToObject(root, "results");
    cJSON *t = cJSON_AddObjectToObject(results, task);
    for (int i = 0; t && i < r->n_metrics; i++) {
        const struct llm_metric *m = &r->m[i];
        char name[64];
        cJSON_AddNumberToObject(t, m->name, m->value);
        if (!isnan(m->stderr_)) {
            snprintf(name, sizeof(name), "%s_stderr", m->name);
            cJSON_AddNumberToObject(t, name, m->stderr_);
        }
    }
    cJSON_AddNumberToObject(t, "n", (double)r->n);
    cJSON_AddItemToObject(root, "config", config);
    if (x && x->have_m) {
        cJSON *mo = cJSON_AddObjectToObject(root, "model");
        cJSON_AddStringToObject(mo, "path", model_path);
        cJSON_AddNumberToObject(mo, "params", (double)x->m.layout.total);
        cJSON_AddNumberToObject(mo, "vocab_size", x->m.cfg.vocab_size);
        cJSON_AddNumberToObject(mo, "context_length", x->m.cfg.context_length);
        cJSON_AddNumberToObject(mo, "n_layers", x->m.cfg.n_layers);
        cJSON_AddNumberToObject(mo, "d_model", x->m.cfg.d_model);
        cJSON_AddStringToObject(mo, "weights", x->have_q8 ? "int8" : "fp32");
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(root, "date", date);
    cJSON_AddNumberToObject(root, "date_unix", (double)now);
    return root;
}

/* A table on stderr: | task | metric | value | stderr | n | */
static void table(const char *task, const struct llm_eval_result *r)
{
    fprintf(stderr, "| %-10s | %-24s | %10s | %8s | %8s |\n", "task", "metric", "value", "stderr", "n");
    fprintf(stderr, "|------------|--------------------------|------------|----------|----------|\n");
    for (int i = 0; i < r->n_metrics; i++) {
        char se[24] = "";
        if (!isnan(r->m[i].stderr_))
            snprintf(se, sizeof(se), "%.4f", r->m[i].stderr_);
        fprintf(stderr, "| %-10s | %-24s | %10.4f | %8s | %8lld |\n", i ? "" : task, r->m[i].name, r->m[i].value,
                se, (long long)r->m[i].n);
    }
}

static int write_samples(const char *path, const cJSON *samples)
{
    struct llm_atomic a;
    int rc = llm_atomic_open(&a, path);
    const cJSON *s;
    cJSON_ArrayForEach(s, samples) {
        if (rc)
            break;
        rc = llm_jsonl_write(a.f, s, path);
    }
    if (!rc)
        return llm_atomic_commit(&a);
    llm_atomic_abort(&a);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *task = NULL, *data = NULL, *format = "plain", *dev = NULL, *out = NULL;
    const char *log_samples = NULL, *responses = NULL, *judge = NULL, *tok_path = NULL, *quantize = NULL;
    const char *extract = "last-number", *regex = NULL, *vote = "majority", *device = NULL;
    struct llm_strlist stops = {0};
    long shots = 0, limit = 0, batch = 8, seed = 1234, stride = 0, max_windows = 0, max_tokens = 0;
    long samples = 1, top_k = 0, threads = 0, group = 32;
    double temperature = NAN, top_p = 1.0;
    int cot = 0;
    const struct llm_opt opts[] = {
        {"model", 'm', LLM_OPT_STR, &model, "CKPT", "the model (not needed for ifeval --responses, or judge on "
                                                    "given pairs)"},
        {"task", 0, LLM_OPT_STR, &task, "TASK", "perplexity, choice, exact, ifeval or judge (required)"},
        {"data", 'd', LLM_OPT_STR, &data, "FILE", "the examples (required; layouts in docs/eval.md)"},
        {"format", 'f', LLM_OPT_STR, &format, "F", "plain (default), hellaswag, mmlu (CSV file/folder or JSONL), "
                                                   "gsm8k"},
        {"dev", 0, LLM_OPT_STR, &dev, "FILE", "few-shot examples (same layout as --data; default --data itself)"},
        {"shots", 'k', LLM_OPT_INT, &shots, "K", "k-shot prompts, examples drawn per document (seeded)"},
        {"limit", 0, LLM_OPT_INT, &limit, "N", "only the first N examples"},
        {"batch", 'b', LLM_OPT_INT, &batch, "N", "rows scored / sequences generated at once (default 8)"},
        {"seed", 's', LLM_OPT_INT, &seed, "N", "few-shot draws and sampling (default 1234)"},
        {"stride", 0, LLM_OPT_INT, &stride, "S", "perplexity: window stride (default the context length)"},
        {"max-windows", 0, LLM_OPT_INT, &max_windows, "N", "perplexity: only the first N windows"},
        {"max-tokens", 'n', LLM_OPT_INT, &max_tokens, "N", "generation: new tokens per answer (default 256; ifeval "
                                                          "1280)"},
        {"temperature", 't', LLM_OPT_F64, &temperature, "T", "generation: 0 = greedy (default; 0.7 with "
                                                             "--samples > 1)"},
        {"top-k", 0, LLM_OPT_INT, &top_k, "K", "generation: sample among the K most likely"},
        {"top-p", 0, LLM_OPT_F64, &top_p, "P", "generation: nucleus sampling"},
        {"stop", 0, LLM_OPT_LIST, &stops, "STR", "end answers before STR (default \"\\n\\n\", "
                                                 "gsm8k \"Question:\", ifeval none)"},
        {"samples", 0, LLM_OPT_INT, &samples, "K", "exact: K sampled answers per question (self-consistency)"},
        {"vote", 0, LLM_OPT_STR, &vote, "majority", "exact: how the K answers decide (majority)"},
        {"cot", 0, LLM_OPT_FLAG, &cot, NULL, "exact: append \"" COT_TRIGGER "\" to each prompt"},
        {"extract", 0, LLM_OPT_STR, &extract, "MODE", "exact: last-number (default), hash (GSM8K's ####), full "
                                                     "or regex"},
        {"regex", 0, LLM_OPT_STR, &regex, "RE", "exact: the answer is RE's group 1 (or match) in the text"},
        {"responses", 0, LLM_OPT_STR, &responses, "F.jsonl", "ifeval: score these {\"prompt\",\"response\"} "
                                                            "instead of generating"},
        {"judge", 0, LLM_OPT_STR, &judge, "CKPT", "judge: the judging model"},
        {"tokenizer", 0, LLM_OPT_STR, &tok_path, "FILE", "tokenizer.json (default: the checkpoint's)"},
        {"quantize", 0, LLM_OPT_STR, &quantize, "int8|q4",
         "evaluate the model with int8 or 4-bit weights (docs/quant.md)"},
        {"group", 0, LLM_OPT_INT, &group, "G", "--quantize: weights per scale, 32 (default) or 64"},
        {"output", 'o', LLM_OPT_STR, &out, "FILE", "write the JSON report here (default: stdout)"},
        {"log-samples", 0, LLM_OPT_STR, &log_samples, "F.jsonl", "write one record per example"},
        {"threads", 0, LLM_OPT_INT, &threads, "N", "CPU threads (default: all cores)"},
        {"device", 0, LLM_OPT_STR, &device, "D", "cpu (default) or cuda"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "eval",
        .usage = "--task TASK --data FILE [--model CKPT] [options]",
        .summary = "Evaluate a model: perplexity, multiple choice, exact match, IFEval, LM judge.",
        .opts = opts,
        .min_pos = 0,
        .max_pos = 0,
        .epilog = "Scoring follows lm-evaluation-harness: acc / acc_norm by summed log-likelihood of \" \" + choice,\n"
                  "exact match on the extracted answer, standard errors of the mean. The report (JSON) goes to\n"
                  "stdout or -o; a table goes to stderr. See docs/eval.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    int t = -1, rc = 0;
    for (int i = 0; task && i < N_TASKS; i++)
        if (!strcmp(task, TASKS[i]))
            t = i;
    enum llm_eval_format fmt = LLM_EVAL_FMT_PLAIN;
    if (!task)
        rc = llm_err(LLM_EUSAGE, "--task is required (perplexity, choice, exact, ifeval or judge)");
    else if (t < 0)
        rc = llm_err(LLM_EUSAGE, "--task: expected perplexity, choice, exact, ifeval or judge, got '%s'", task);
    else if (!data)
        rc = llm_err(LLM_EUSAGE, "--data is required");
    else if (!model && !(t == T_IFEVAL && responses) && t != T_JUDGE)
        rc = llm_err(LLM_EUSAGE, "--model is required for --task %s", task);
    else if (t == T_JUDGE && !judge)
        rc = llm_err(LLM_EUSAGE, "--task judge needs --judge CKPT");
    else if (shots < 0 || shots > 1000)
        rc = llm_err(LLM_EUSAGE, "--shots: expected 0..1000, got %ld", shots);
    else if (limit < 0 || limit > (1L << 30))
        rc = llm_err(LLM_EUSAGE, "--limit: expected a count >= 0, got %ld", limit);
    else if (batch < 1 || batch > 4096)
        rc = llm_err(LLM_EUSAGE, "--batch: expected 1..4096, got %ld", batch);
    else if (stride < 0 || max_windows < 0)
        rc = llm_err(LLM_EUSAGE, "--%s: expected a count >= 0", stride < 0 ? "stride" : "max-windows");
    else if (max_tokens < 0 || max_tokens > (1L << 30))
        rc = llm_err(LLM_EUSAGE, "--max-tokens: expected a count >= 1, got %ld", max_tokens);
    else if (samples < 1 || samples > 1024)
        rc = llm_err(LLM_EUSAGE, "--samples: expected 1..1024, got %ld", samples);
    else if (strcmp(vote, "majority"))
        rc = llm_err(LLM_EUSAGE, "--vote: expected majority, got '%s'", vote);
    else if (quantize && !strcmp(quantize, "w8a8"))
        rc = llm_err(LLM_EUSAGE, "--quantize w8a8: llm eval scores with float activations, so it can show "
                                 "int8 or q4 weights only (bench/decode_nll measures W8A8)");
    else if (quantize && strcmp(quantize, "int8") && strcmp(quantize, "q4"))
        rc = llm_err(LLM_EUSAGE, "--quantize: expected int8 or q4, got '%s'", quantize);
    else if (group != 32 && group != 64)
        rc = llm_err(LLM_EUSAGE, "--group: expected 32 or 64, got %ld", group);
    else if (threads < 0)
        rc = llm_err(LLM_EUSAGE, "--threads: expected >= 0, got %ld", threads);
    else if (device && strcmp(device, "cpu") && strcmp(device, "auto"))
        rc = llm_err(!strcmp(device, "cuda") ? LLM_EUNSUPPORTED : LLM_EUSAGE, "--device: %s",
                     !strcmp(device, "cuda") ? "the CUDA backend is not built yet; use cpu"
                                             : "expected cpu, cuda or auto");
    else
        rc = llm_eval_format_parse(format, &fmt);
    if (!rc && fmt != LLM_EVAL_FMT_PLAIN &&
        !((t == T_CHOICE && (fmt == LLM_EVAL_FMT_HELLASWAG || fmt == LLM_EVAL_FMT_MMLU)) ||
          (t == T_EXACT && fmt == LLM_EVAL_FMT_GSM8K)))
        rc = llm_err(LLM_EUSAGE, "--format %s does not go with --task %s (hellaswag and mmlu are choice tasks, "
                     "gsm8k an exact one)", format, task);
    for (int i = 0; !rc && i < stops.n; i++)
        if (!stops.v[i][0])
            rc = llm_err(LLM_EUSAGE, "--stop: an empty string");
    if (max_tokens == 0) /* the harness's budgets: ifeval's answers run to 1,000+ words */
        max_tokens = t == T_IFEVAL ? 1280 : 256;
    if (isnan(temperature))
        temperature = samples > 1 ? 0.7 : 0.0;
    struct llm_extractor ex = {0};
    if (!rc)
        rc = llm_extractor_init(&ex, regex && !strcmp(extract, "last-number") ? "regex" : extract, regex);
    static const char *const gsm8k_stops[] = {"Question:", "</s>", "<|im_end|>"};
    static const char *const plain_stops[] = {"\n\n"};
    struct llm_eval_opts eo = {
        .batch = (int)batch,
        .shots = (int)shots,
        .seed = (uint64_t)seed,
        .keep_samples = log_samples != NULL,
        .show_progress = 1,
        .stride = (int)stride,
        .max_windows = max_windows,
        .samples = (int)samples,
        .cot = cot ? COT_TRIGGER : NULL,
        .extract = &ex,
        .gen = {
            .sample = {.temperature = temperature, .top_k = (int)top_k, .top_p = top_p, .repetition_penalty = 1.0,
                       .seed = (uint64_t)seed},
            .max_tokens = (int)max_tokens,
            /* ifeval: paragraphs are part of the instructions; only end-of-text ends them */
            .stops = stops.n ? stops.v : fmt == LLM_EVAL_FMT_GSM8K ? gsm8k_stops : t == T_IFEVAL ? NULL : plain_stops,
            .n_stops = stops.n ? stops.n : fmt == LLM_EVAL_FMT_GSM8K ? 3 : t == T_IFEVAL ? 0 : 1,
            .batch = (int)batch,
        },
    };
    if (!rc && (rc = llm_sampler_check(&eo.gen.sample)))
        rc = LLM_EUSAGE;

    struct llm_backend be;
    int have_be = 0;
    struct llm_loaded lm = {0}, lj = {0};
    if (!rc && !(rc = llm_backend_cpu_init(&be, (int)threads, 0)))
        have_be = 1;
    if (!rc && model)
        /* perplexity on a shard needs no tokenizer: take the checkpoint's if it has one */
        rc = llm_loaded_open(&lm, model, &be, llm_load_weights_for(quantize), (int)group,
                             t == T_PPL ? LLM_TOK_IF_ANY : LLM_TOK_NEEDED, tok_path);
    if (!rc && judge)
        rc = llm_loaded_open(&lj, judge, &be, LLM_LOAD_STORED, 0, LLM_TOK_NEEDED, NULL);
    if (!rc && lm.tok)
        eo.gen.eot = llm_gen_default_eot(lm.tok);
    else
        eo.gen.eot = -1;

    struct llm_eval_docs docs = {0}, devd = {0};
    int have_dev = 0;
    if (!rc && (t == T_CHOICE || t == T_EXACT)) {
        enum llm_eval_kind kind = t == T_CHOICE ? LLM_EVAL_CHOICE : LLM_EVAL_EXACT;
        rc = llm_eval_docs_read(&docs, data, fmt, kind, (int)limit);
        if (!rc && shots > 0 && !(rc = llm_eval_docs_read(&devd, dev ? dev : data, fmt, kind, 0)))
            have_dev = 1;
    }
    struct llm_eval_result r = {0};
    if (!rc) {
        switch (t) {
        case T_PPL: rc = llm_eval_perplexity_task(&lm.m, lm.tok, data, &eo, &r); break;
        case T_CHOICE: rc = llm_eval_choice(&lm.m, lm.tok, &docs, have_dev ? &devd : NULL, &eo, &r); break;
        case T_EXACT: rc = llm_eval_exact(&lm.m, lm.tok, &docs, have_dev ? &devd : NULL, &eo, &r); break;
        case T_IFEVAL:
            rc = llm_eval_ifeval(model ? &lm.m : NULL, lm.tok, data, model ? NULL : responses, &eo, &r);
            break;
        default:
            rc = llm_eval_judge(&lj.m, lj.tok, model ? &lm.m : NULL, lm.tok, data, &eo, &r);
            break;
        }
    }
    const char *name = fmt != LLM_EVAL_FMT_PLAIN ? format : task;
    if (!rc) {
        cJSON *cfg = cJSON_CreateObject();
        cJSON_AddStringToObject(cfg, "task", task);
        cJSON_AddStringToObject(cfg, "data", data);
        cJSON_AddStringToObject(cfg, "format", format);
        if (model)
            cJSON_AddStringToObject(cfg, "model", model);
        if (judge)
            cJSON_AddStringToObject(cfg, "judge", judge);
        cJSON_AddNumberToObject(cfg, "shots", (double)shots);
        cJSON_AddNumberToObject(cfg, "limit", (double)limit);
        cJSON_AddNumberToObject(cfg, "seed", (double)seed);
        cJSON_AddNumberToObject(cfg, "batch_size", (double)batch);
        if (t == T_PPL)
            cJSON_AddNumberToObject(cfg, "stride", (double)(stride ? stride : lm.m.cfg.context_length));
        if (t == T_EXACT || t == T_IFEVAL || (t == T_JUDGE && model)) {
            cJSON_AddNumberToObject(cfg, "max_tokens", (double)max_tokens);
            cJSON_AddNumberToObject(cfg, "temperature", temperature);
            cJSON_AddNumberToObject(cfg, "samples", (double)samples);
            cJSON_AddItemToObject(cfg, "stop", eo.gen.n_stops ? cJSON_CreateStringArray(eo.gen.stops, eo.gen.n_stops)
                                                              : cJSON_CreateArray());
        }
        if (t == T_EXACT)
            cJSON_AddStringToObject(cfg, "extract", regex ? "regex" : extract);
        if (quantize)
            cJSON_AddStringToObject(cfg, "quantize", quantize);
        cJSON *rep = report(name, &r, cfg, model ? &lm : NULL, model);
        char *text = rep ? cJSON_Print(rep) : NULL;
        cJSON_Delete(rep);
        if (!text)
            rc = llm_err(LLM_ENOMEM, "out of memory");
        else if (out)
            rc = llm_write_text(out, text, 1);
        else
            printf("%s\n", text);
        free(text);
        if (!rc && log_samples)
            rc = write_samples(log_samples, r.samples);
        if (!rc && llm_log_get_level() >= LLM_LOG_INFO)
            table(name, &r);
    }
    llm_eval_result_release(&r);
    llm_eval_docs_release(&docs);
    if (have_dev)
        llm_eval_docs_release(&devd);
    llm_extractor_release(&ex);
    llm_loaded_release(&lm);
    llm_loaded_release(&lj);
    if (have_be)
        llm_backend_release(&be);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
