/* args.h: the one command-line parser of every subcommand: long options
 * (--name=value and --name value), short ones (-o FILE, -oFILE, -qv), "-" as
 * a positional (stdin), "--" to end options; usage text from the same table.
 * -h/--help, -q/--quiet and -v/--verbose are understood by every command. */
#ifndef LLM_CORE_ARGS_H
#define LLM_CORE_ARGS_H

#include <stdio.h>

enum llm_opt_type {
    LLM_OPT_FLAG, /* int*: counts occurrences (no value) */
    LLM_OPT_STR,  /* const char**: borrowed from argv; last one wins */
    LLM_OPT_INT,  /* long*: base-10, whole string must parse */
    LLM_OPT_F64,  /* double*: finite number */
    LLM_OPT_LIST, /* struct llm_strlist*: repeatable, in order */
};

struct llm_strlist {
    const char **v; /* borrowed strings from argv; the array is owned (llm_args_release) */
    int n;
};

struct llm_opt {
    const char *name;       /* long name without "--", e.g. "vocab-size" */
    char short_name;        /* 'o', or 0 */
    enum llm_opt_type type;
    void *dst;
    const char *metavar;    /* shown in usage: "N", "FILE" */
    const char *help;       /* one line */
};

struct llm_cmd_spec {
    const char *name;           /* "tokenize train" */
    const char *usage;          /* after the name: "[options] FILE..." */
    const char *summary;        /* one line, for --help and the command table */
    const struct llm_opt *opts; /* terminated by an entry with name NULL; may be NULL */
    int min_pos, max_pos;       /* bounds on positional arguments; max_pos -1 = any */
    const char *epilog;         /* optional extra text after the options */
};

struct llm_args {
    const char **pos; /* positional arguments in order (borrowed strings; array owned) */
    int npos;
    int help;         /* -h/--help was given: print usage, exit 0 */
    int quiet, verbose;
};

/* Parses argv[1..argc) (argv[0] is the command). Returns 0, or LLM_EUSAGE
 * with a message naming the bad flag and the closest known one. With --help
 * the positional count is not checked. Lists in opts are reset first. */
int llm_args_parse(const struct llm_cmd_spec *spec, int argc, char **argv, struct llm_args *out);
/* Frees the arrays of out and of every LLM_OPT_LIST destination of spec. */
void llm_args_release(const struct llm_cmd_spec *spec, struct llm_args *out);
/* Writes "usage: llm NAME USAGE", the summary and the option table to f. */
void llm_args_usage(FILE *f, const struct llm_cmd_spec *spec);

#endif
