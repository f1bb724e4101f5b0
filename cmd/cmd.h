/* cmd.h: the subcommands (one cmd/<sub>.c each, exporting only cmd_<sub>)
 * and the glue they share, defined in cmd/main.c. */
#ifndef LLM_CMD_H
#define LLM_CMD_H

#include "core/args.h"
#include "core/err.h"

/* Parses flags for spec. Returns -1 to go on, or an exit code to return now:
 * 0 after printing --help to stdout, 2 after printing a usage error. */
int cmd_parse(const struct llm_cmd_spec *spec, int argc, char **argv, struct llm_args *a);
/* Prints "llm NAME: error: <llm_errmsg()>" to stderr; returns 2 for
 * LLM_EUSAGE, else 1. */
int cmd_fail(const struct llm_cmd_spec *spec, int rc);

/* ---- the training commands' shared part (cmd/train_run.c) ---- */
#include <signal.h>
#include <cjson/cJSON.h>
#include "train/train.h"

/* Set by SIGINT/SIGTERM once cmd_catch_signals ran (the signal number). */
extern volatile sig_atomic_t cmd_stop_signal;
void cmd_catch_signals(void);
/* Prints j (formatted) and a newline on stdout. */
int cmd_print_json(const cJSON *j);

struct cmd_train_run {
    const struct llm_config *c;
    struct llm_model *m;              /* built or loaded by the command */
    const struct llm_train_task *task;
    const cJSON *extra_header;        /* into every checkpoint ("tokenizer", ...); may be NULL */
    const char *resume;               /* --resume, or NULL */
    long stop_after;                  /* --stop-after, or 0 */
    int json;                         /* print the summary as JSON on stdout */
    const char *label;                /* of the progress bar: "train", "sft", ... */
    void (*summary)(void *ctx, cJSON *summary); /* adds fields to the summary; may be NULL */
    void *summary_ctx;
};
/* Runs the loop with a progress bar and graceful SIGINT/SIGTERM, then logs a
 * closing line and (json) prints the summary. *sig = the signal that stopped
 * the run early, else 0. */
int cmd_train(const struct cmd_train_run *t, int *sig);
/* Starts `llm pretrain CONFIG --set S...` (this very binary) as a child
 * training in dir (--set train.out_dir=dir; train.threads=threads when > 0),
 * stdout to /dev/null, stderr to dir/log.txt: one point of a sweep. */
#include <sys/types.h>
int cmd_spawn_pretrain(const char *config, const char *const *sets, int nsets, const char *dir, int threads,
                       pid_t *pid);

int cmd_config(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_ckpt(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_scaling_fit(int argc, char **argv);
int cmd_scaling_sweep(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_filter(int argc, char **argv);
int cmd_dedup(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_dpo(int argc, char **argv);
int cmd_grpo(int argc, char **argv);
int cmd_ppo(int argc, char **argv);

#endif
