/* err.c: the per-thread error message behind llm_err() (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char errbuf[1024];

int llm_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
    va_end(ap);
    return code;
}

int llm_err_wrap(int code, const char *fmt, ...)
{
    char prefix[512], old[sizeof(errbuf)];
    va_list ap;
    memcpy(old, errbuf, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (old[0])
        snprintf(errbuf, sizeof(errbuf), "%.500s: %.500s", prefix, old);
    else
        snprintf(errbuf, sizeof(errbuf), "%s", prefix);
    return code;
}

const char *llm_errmsg(void) { return errbuf; }

void llm_err_clear(void) { errbuf[0] = '\0'; }

void *llm_malloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        llm_err(LLM_ENOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *llm_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        llm_err(LLM_ENOMEM, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void llm_bug(const char *file, int line, const char *msg)
{
    fprintf(stderr, "llm: BUG at %s:%d: %s\n", file, line, msg);
    abort();
}
