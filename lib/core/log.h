/* log.h: leveled logging to stderr (never stdout, which carries results).
 * cmd/ sets the level from -q/-v; lib/ may log progress and warnings. */
#ifndef LLM_CORE_LOG_H
#define LLM_CORE_LOG_H

#include <stdio.h>
#include "err.h"

enum llm_log_level { LLM_LOG_ERROR, LLM_LOG_WARN, LLM_LOG_INFO, LLM_LOG_DEBUG };

void llm_log_set_level(enum llm_log_level level);
enum llm_log_level llm_log_get_level(void);
/* Where log lines go (default stderr; tests point it at a file). Borrowed. */
void llm_log_set_stream(FILE *f);
FILE *llm_log_stream(void);

/* One line; a trailing newline is added. "warning: " / "debug: " prefixes. */
void llm_log(enum llm_log_level level, const char *fmt, ...) LLM_PRINTF(2, 3);
#define llm_warn(...) llm_log(LLM_LOG_WARN, __VA_ARGS__)
#define llm_info(...) llm_log(LLM_LOG_INFO, __VA_ARGS__)
#define llm_debug(...) llm_log(LLM_LOG_DEBUG, __VA_ARGS__)

/* Monotonic seconds, for rates and timing. */
double llm_now(void);

#endif
