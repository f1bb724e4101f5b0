/* log.c: the leveled logger of log.h. The level and stream are process-wide
 * settings owned here (set once by cmd/ at start-up). */
#include "log.h"

#include <stdarg.h>
#include <time.h>

static enum llm_log_level log_level = LLM_LOG_INFO;
static FILE *log_stream;

void llm_log_set_level(enum llm_log_level level) { log_level = level; }
enum llm_log_level llm_log_get_level(void) { return log_level; }
void llm_log_set_stream(FILE *f) { log_stream = f; }
FILE *llm_log_stream(void) { return log_stream ? log_stream : stderr; }

void llm_log(enum llm_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    FILE *f = llm_log_stream();
    static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
    /* Build the line first so concurrent threads do not interleave mid-line. */
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(line, sizeof(line), "%s", prefix[level]);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(f, "%s\n", line);
    fflush(f);
}

double llm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
