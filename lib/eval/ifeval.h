/* ifeval.h: the verifiable instruction checks of IFEval (Zhou et al. 2023,
 * "Instruction-Following Evaluation for Large Language Models"): all 25
 * instruction types of the published set, strict and loose. docs/ifeval.md
 * says how each one is checked and where this departs from the reference. */
#ifndef LLM_EVAL_IFEVAL_H
#define LLM_EVAL_IFEVAL_H

#include <cjson/cJSON.h>

/* Checks one instruction. id: e.g. "punctuation:no_comma"; kwargs: its JSON
 * object (may be NULL; keys whose value is null count as absent, keys the
 * instruction does not use are ignored); prompt: the prompt (used by
 * combination:repeat_prompt when kwargs has no "prompt_to_repeat"; may be
 * NULL otherwise); response: the model's text (UTF-8; ill-formed bytes are
 * read as U+FFFD).
 * Sets *strict to 1/0 (followed on the response as is) and *loose to 1/0
 * (followed on any of the loose variants of the response: as is, without its
 * first line, without its last line, without both, each also with all '*'
 * removed: the 8 variants of the paper's loose accuracy). A blank response
 * follows nothing. Returns 0, or LLM_EINVAL with a message naming the id for
 * an unknown instruction id or missing/ill-typed kwargs (LLM_ENOMEM when out
 * of memory). Thread-safe: no state is kept between calls. */
int llm_ifeval_check(const char *id, const cJSON *kwargs, const char *prompt, const char *response,
                     int *strict, int *loose);

/* 1 if id is one of the supported instruction ids, else 0. */
int llm_ifeval_supported(const char *id);

#endif
