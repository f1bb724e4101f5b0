/* err.h: error codes and the per-thread error message of lib/.
 * lib/ functions return 0 or a negative LLM_E* code and set a message with
 * llm_err(); only cmd/ prints it (as "llm <cmd>: error: <message>") and exits. */
#ifndef LLM_CORE_ERR_H
#define LLM_CORE_ERR_H

#include <stddef.h>

enum llm_status {
    LLM_OK = 0,
    LLM_EIO = -1,          /* a file could not be opened, read or written */
    LLM_ENOMEM = -2,       /* an allocation failed */
    LLM_EINVAL = -3,       /* bad input value: config, argument, data */
    LLM_EFORMAT = -4,      /* a file is corrupt, truncated or of the wrong kind */
    LLM_EUSAGE = -5,       /* bad command line: cmd/ exits 2 for it */
    LLM_EUNSUPPORTED = -6, /* valid but not supported by this build/version */
    LLM_EDEVICE = -7,      /* CUDA, cuBLAS or NCCL failure */
    LLM_EHELP = -8,        /* not an error: --help was asked for */
};

#if defined(__GNUC__)
#define LLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LLM_PRINTF(a, b)
#endif

/* Sets the message of this thread and returns code, so `return llm_err(...)`. */
int llm_err(int code, const char *fmt, ...) LLM_PRINTF(2, 3);
/* Prepends context to the current message: "reading 'x': <old message>". */
int llm_err_wrap(int code, const char *fmt, ...) LLM_PRINTF(2, 3);
/* The message of the last llm_err on this thread ("" if none). Borrowed. */
const char *llm_errmsg(void);
void llm_err_clear(void);

/* malloc/calloc that set "out of memory" (naming what) on failure. */
void *llm_malloc(size_t n, const char *what);
void *llm_calloc(size_t n, size_t size, const char *what);

/* Programmer errors only (never for user input): prints and aborts. */
#define LLM_BUG(msg) llm_bug(__FILE__, __LINE__, msg)
#define LLM_ASSERT(c) do { if (!(c)) llm_bug(__FILE__, __LINE__, #c); } while (0)
void llm_bug(const char *file, int line, const char *msg) __attribute__((noreturn));

#endif
