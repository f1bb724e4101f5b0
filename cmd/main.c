/* main.c: the `llm` entry point: the command table, global help and
 * --version, and the glue every cmd_<sub> shares (flag parsing, errors).
 * To add a command: write cmd/<sub>.c exporting cmd_<sub>(argc, argv),
 * declare it in cmd/cmd.h and add a row to `commands` below. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "core/device.h"
#include "core/log.h"
#include "core/str.h"

#define LLM_VERSION "0.1.0"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help; /* one line for `llm --help` */
};

/* Only commands that work are listed (the rest of DESIGN.md's command line
 * appears here as each lands). */
static const struct command commands[] = {
    {"tokenize", cmd_tokenize, "train a byte-level BPE tokenizer; encode and decode text"},
    {"config", cmd_config, "validate a config and print the effective one (or --docs)"},
    {"ckpt", cmd_ckpt, "inspect or verify a checkpoint file"},
    {"info", cmd_info, "parameters, FLOPs per token, memory and compute-optimal tokens of a model"},
    {"pretrain", cmd_pretrain, "train a model from scratch on token shards (resume, sweeps)"},
    {"generate", cmd_generate, "generate text with a model (KV cache, sampling, batched decoding)"},
    {"quantize", cmd_quantize, "int8 weights with per-group scales, for generate"},
    {"sft", cmd_sft, "supervised fine-tuning of a checkpoint on prompt/response or chat data"},
    {"dpo", cmd_dpo, "direct preference optimization on chosen/rejected pairs"},
    {"grpo", cmd_grpo, "reinforcement learning with verifiable rewards (GRPO)"},
    {"ppo", cmd_ppo, "RLHF with PPO: a value model, GAE, clipped policy and value losses"},
    {"data", cmd_data, "synthetic tasks with exact answers (data synth)"},
    {"eval", cmd_eval, "evaluate a model: perplexity, multiple choice, exact match, ifeval, judge"},
    {"scaling-fit", cmd_scaling_fit, "fit scaling laws to runs; predict the compute-optimal model"},
    {"scaling-sweep", cmd_scaling_sweep, "plan and run an IsoFLOP grid of small pretrain runs, then fit"},
    {"extract", cmd_extract, "HTML, WARC or JSONL-with-html to JSONL text documents"},
    {"filter", cmd_filter, "quality rules, PII masking and a quality classifier over JSONL documents"},
    {"dedup", cmd_dedup, "exact, line-level, Bloom and MinHash-LSH deduplication of JSONL documents"},
    {"export", cmd_export, "write a model checkpoint as a Hugging Face folder or a safetensors file"},
    {"import", cmd_import, "read a Hugging Face Llama or GPT-2 folder into a model checkpoint"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

int cmd_parse(const struct llm_cmd_spec *spec, int argc, char **argv, struct llm_args *a)
{
    int rc = llm_args_parse(spec, argc, argv, a);
    if (rc) {
        int code = cmd_fail(spec, rc);
        llm_args_release(spec, a);
        return code;
    }
    if (a->help) {
        llm_args_usage(stdout, spec);
        llm_args_release(spec, a);
        return 0;
    }
    if (a->quiet)
        llm_log_set_level(LLM_LOG_WARN);
    if (a->verbose)
        llm_log_set_level(LLM_LOG_DEBUG);
    return -1;
}

int cmd_fail(const struct llm_cmd_spec *spec, int rc)
{
    fprintf(stderr, "llm %s: error: %s\n", spec->name,
            llm_errmsg()[0] ? llm_errmsg() : "failed (no message)");
    return rc == LLM_EUSAGE ? 2 : 1;
}

static void print_help(FILE *f)
{
    fprintf(f, "usage: llm COMMAND [options] [args]\n\n"
               "llm takes a language model from raw text to generated text.\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  %-14s %s\n  %-14s %s\n\n"
               "Every command takes --help, -q (quiet) and -v (verbose).\n",
            "help COMMAND", "show the help of a command", "--version",
            "show the version, the backends built in and the devices found");
}

static void print_version(void)
{
    struct llm_device_report r;
    llm_device_probe(&r);
    printf("llm %s\n", LLM_VERSION);
    printf("backends: cpu%s\n", r.cuda_built ? " cuda" : "");
    printf("cpu: %d OpenMP threads, %s\n", r.cpu_threads, r.blas);
    if (!r.cuda_built) {
        printf("cuda: %s\n", r.cuda_status);
        return;
    }
    printf("cuda: runtime %d.%d, cuBLAS %d.%d.%d, cuBLASLt %d, NCCL %d.%d.%d\n",
           r.cuda_runtime / 1000, (r.cuda_runtime % 1000) / 10, r.cublas_version / 10000,
           (r.cublas_version / 100) % 100, r.cublas_version % 100, r.cublaslt_version,
           r.nccl_version / 10000, (r.nccl_version / 100) % 100, r.nccl_version % 100);
    if (r.cuda_driver)
        printf("driver: CUDA %d.%d\n", r.cuda_driver / 1000, (r.cuda_driver % 1000) / 10);
    else
        printf("driver: none found\n");
    if (r.n_gpus == 0)
        printf("gpus: none (%s); running on the CPU backend\n", r.cuda_status);
    for (int i = 0; i < r.n_gpus; i++)
        printf("gpu %d: %s, sm_%d%d, %d SMs, %.1f GiB\n", i, r.gpu[i].name, r.gpu[i].cc_major,
               r.gpu[i].cc_minor, r.gpu[i].sm_count, (double)r.gpu[i].mem_bytes / (1 << 30));
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    const char *names[NCOMMANDS + 1];
    for (size_t i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    names[NCOMMANDS] = "help";
    const char *hint = llm_str_closest(name, names, NCOMMANDS + 1);
    if (hint)
        fprintf(stderr, "llm: error: unknown command '%s' (did you mean '%s'?)\n", name, hint);
    else
        fprintf(stderr, "llm: error: unknown command '%s' (see 'llm --help')\n", name);
    return 2;
}

/* Like git's run_builtin: a result lost on a full disk or closed pipe is an error. */
static int finish(int code)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "llm: error: cannot write to stdout: %s\n", strerror(errno));
        return code ? code : 1;
    }
    return code;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        print_help(stdout);
        return finish(0);
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        print_version();
        return finish(0);
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            print_help(stdout);
            return finish(0);
        }
        const struct command *c = find_command(argv[2]);
        if (!c)
            return unknown_command(argv[2]);
        char *hargv[] = {argv[2], "--help", NULL};
        return finish(c->fn(2, hargv));
    }
    if (cmd[0] == '-') {
        fprintf(stderr, "llm: error: unknown option '%s' (options go after the command; see 'llm --help')\n", cmd);
        return 2;
    }
    const struct command *c = find_command(cmd);
    if (!c)
        return unknown_command(cmd);
    return finish(c->fn(argc - 1, argv + 1));
}
