/* data.c: `llm data synth`: seeded tasks with exact answers (addition, word sorting) as pretraining text,
 * prompt/answer, SFT or DPO data, with a held-out split (lib/align/synth.h, docs/data-synth.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align/synth.h"
#include "cmd.h"

static int data_synth(int argc, char **argv)
{
    const char *task = NULL, *format = "jsonl", *out = NULL;
    long n = -1, digits = 2, nwords = 4, seed = 1, split = 0;
    const struct llm_opt opts[] = {
        {"task", 0, LLM_OPT_STR, &task, "add|sort", "the task (required)"},
        {"n", 'n', LLM_OPT_INT, &n, "N", "examples to write (required)"},
        {"digits", 0, LLM_OPT_INT, &digits, "D", "add: digits of each operand, 1..9 (default 2)"},
        {"words", 0, LLM_OPT_INT, &nwords, "W", "sort: words per example, 2..12 (default 4)"},
        {"seed", 's', LLM_OPT_INT, &seed, "S", "random seed (default 1): same seed, same file"},
        {"format", 'f', LLM_OPT_STR, &format, "F", "text, jsonl (default), sft or dpo"},
        {"split-eval", 0, LLM_OPT_INT, &split, "K", "also write K more (unseen) examples to <stem>.eval.jsonl"},
        {"output", 'o', LLM_OPT_STR, &out, "FILE", "output file (required; '-' = stdout without --split-eval)"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "data synth",
        .usage = "--task add|sort --n N -o FILE [options]",
        .summary = "Generate a task with exact answers: addition (\"12+34=\" -> \"46\") or word sorting.",
        .opts = opts,
        .min_pos = 0,
        .max_pos = 0,
        .epilog = "Formats: text (\"12+34= 46\" lines, for pretraining), jsonl ({\"prompt\", \"answer\"}: GRPO and\n"
                  "`llm eval --task exact`), sft ({\"prompt\", \"response\": \" <answer>46</answer>\"}), dpo\n"
                  "({\"prompt\", \"chosen\", \"rejected\"}, rejected a plausible wrong answer). See docs/data-synth.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    static const char *const formats[] = {"text", "jsonl", "sft", "dpo"};
    struct llm_synth_opts o = {.n = n, .seed = (uint64_t)seed, .split_eval = split};
    int rc = 0, f = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(format, formats[i]))
            f = i;
    if (!task)
        rc = llm_err(LLM_EUSAGE, "--task is required (add or sort)");
    else if (strcmp(task, "add") && strcmp(task, "sort"))
        rc = llm_err(LLM_EUSAGE, "--task: expected add or sort, got '%s'", task);
    else if (n < 0)
        rc = llm_err(LLM_EUSAGE, "--n is required");
    else if (!out)
        rc = llm_err(LLM_EUSAGE, "-o FILE is required");
    else if (f < 0)
        rc = llm_err(LLM_EUSAGE, "--format: expected text, jsonl, sft or dpo, got '%s'", format);
    else if (digits < 1 || digits > 9)
        rc = llm_err(LLM_EUSAGE, "--digits: expected 1..9, got %ld", digits);
    else if (nwords < 2 || nwords > 12)
        rc = llm_err(LLM_EUSAGE, "--words: expected 2..12, got %ld", nwords);
    else if (split > 0 && !strcmp(out, "-"))
        rc = llm_err(LLM_EUSAGE, "--split-eval needs -o FILE (the held-out file is named after it)");
    char *eval_path = NULL;
    if (!rc) {
        o.task = !strcmp(task, "add") ? LLM_SYNTH_ADD : LLM_SYNTH_SORT;
        o.format = (enum llm_synth_format)f;
        o.digits = (int)digits, o.words = (int)nwords;
        if (split > 0 && !(eval_path = llm_synth_eval_path(out)))
            rc = LLM_ENOMEM;
    }
    if (!rc)
        rc = llm_synth_run(&o, out, eval_path);
    free(eval_path);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: llm data synth [options]\n\n"
                   "  synth    seeded tasks with exact answers (add, sort) as text, jsonl, sft or dpo data\n\n"
                   "See 'llm data synth --help' and docs/data-synth.md.\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "synth"))
        return data_synth(argc - 1, argv + 1);
    fprintf(stderr, "llm data: error: unknown subcommand '%s' (synth)\n", argv[1]);
    return 2;
}
