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

#endif
