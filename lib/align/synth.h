/* synth.h: seeded generators of small tasks with exact answers (multi-digit addition, word sorting) written
 * as pretraining text, prompt/answer JSONL, SFT or DPO records: the data of the alignment demo
 * (docs/data-synth.md). */
#ifndef LLM_ALIGN_SYNTH_H
#define LLM_ALIGN_SYNTH_H

#include <stdint.h>
#include <stdio.h>

#include "core/rng.h"

enum llm_synth_task { LLM_SYNTH_ADD, LLM_SYNTH_SORT };

enum llm_synth_format {
    LLM_SYNTH_TEXT,  /* "12+34= 46\n" (plain text, for pretraining) */
    LLM_SYNTH_JSONL, /* {"prompt": "12+34=", "answer": "46"} */
    LLM_SYNTH_SFT,   /* {"prompt": "12+34=", "response": " <answer>46</answer>"} */
    LLM_SYNTH_DPO,   /* {"prompt", "chosen": " <answer>46</answer>", "rejected": " <answer>47</answer>"} */
};

#define LLM_SYNTH_MAX_N 100000000L /* examples per run (and held out) */
#define LLM_SYNTH_TEXT_MAX 256     /* bytes of a prompt or answer, NUL included */

struct llm_synth_opts {
    enum llm_synth_task task;
    enum llm_synth_format format;
    long n;          /* examples written to the output, 1..LLM_SYNTH_MAX_N */
    int digits;      /* add: digits of each operand, 1..9 (0 = 2) */
    int words;       /* sort: words per example, 2..12 (0 = 4) */
    uint64_t seed;
    long split_eval; /* held-out examples written as JSONL to the eval file, 0..LLM_SYNTH_MAX_N */
};

/* One example. */
struct llm_synth_example {
    char prompt[LLM_SYNTH_TEXT_MAX];   /* "12+34=" or "sort: b c a =" */
    char answer[LLM_SYNTH_TEXT_MAX];   /* "46" or "a b c" */
    char rejected[LLM_SYNTH_TEXT_MAX]; /* a plausible wrong answer, never equal to answer */
};

/* The generator's state: problems come from one stream, wrong answers from another (so the same seed
 * gives the same problems in every format). Embedded; nothing to release. */
struct llm_synth {
    struct llm_synth_opts o; /* validated, defaults filled in */
    struct llm_rng problems, wrong;
};

/* Validates o (LLM_EUSAGE naming the bad value) and seeds the streams. */
int llm_synth_init(struct llm_synth *s, const struct llm_synth_opts *o);
/* The next example of the stream. */
void llm_synth_next(struct llm_synth *s, struct llm_synth_example *ex);
/* Writes ex in format f to out (path names out in errors). */
int llm_synth_write(FILE *out, const char *path, enum llm_synth_format f, const struct llm_synth_example *ex);

/* The whole run: o->n examples to path ("-" = stdout) and, when o->split_eval > 0, the next split_eval
 * examples whose prompts are not among the n (redrawn until new) as JSONL to eval_path. Both files are
 * written atomically: on error neither is left behind. */
int llm_synth_run(const struct llm_synth_opts *o, const char *path, const char *eval_path);

/* "<stem of path>.eval.jsonl" next to path ("data/add.sft.jsonl" -> "data/add.sft.eval.jsonl"); malloc'd. */
char *llm_synth_eval_path(const char *path);

/* The fixed word list of the sort task (sorted, distinct, lower-case ASCII); *n gets its length. */
const char *const *llm_synth_words(int *n);

#endif
