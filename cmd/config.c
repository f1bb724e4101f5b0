/* config.c: `llm config`: validates a config (file, defaults and --set
 * overrides) and prints the effective one as JSON, or prints the key
 * reference (docs/config.md) with --docs. */
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "config/config.h"

int cmd_config(int argc, char **argv)
{
    struct llm_strlist sets = {0};
    int docs = 0, dry_run = 0;
    const struct llm_opt opts[] = {
        {"set", 0, LLM_OPT_LIST, &sets, "PATH=VALUE", "override one key, e.g. optim.lr=3e-4 (VALUE: JSON or a bare string)"},
        {"dry-run", 0, LLM_OPT_FLAG, &dry_run, NULL, "print the effective config and exit (what this command always does)"},
        {"docs", 0, LLM_OPT_FLAG, &docs, NULL, "print the reference of every key as markdown (docs/config.md)"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "config",
        .usage = "[CONFIG.json] [--set PATH=VALUE]... [--dry-run] | --docs",
        .summary = "Validate a config and print the effective one (every key, defaults filled in).",
        .opts = opts,
        .min_pos = 0,
        .max_pos = 1,
        .epilog = "With no CONFIG.json the defaults are printed. Keys, types and defaults: docs/config.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;

    if (docs) {
        int rc = a.npos || sets.n || dry_run
                     ? llm_err(LLM_EUSAGE, "--docs takes no config, --set or --dry-run")
                     : llm_config_write_docs(stdout);
        llm_args_release(&spec, &a);
        return rc ? cmd_fail(&spec, rc) : 0;
    }

    struct llm_config c;
    int rc = llm_config_load(&c, a.npos ? a.pos[0] : NULL, sets.v, sets.n);
    char *text = rc ? NULL : llm_config_to_string(&c);
    if (!rc && !text)
        rc = LLM_ENOMEM;
    if (text)
        fputs(text, stdout);
    free(text);
    llm_config_release(&c);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
