/* testutil.h: what every unit test includes: cmocka, plus helpers for
 * temporary folders and skips that say why. */
#ifndef LLM_TESTUTIL_H
#define LLM_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A skip always says why (the runner prints these lines). */
#define SKIP_BECAUSE(...) do { printf("# SKIP reason: "); printf(__VA_ARGS__); printf("\n"); skip(); } while (0)

/* A fresh temporary folder under $TMPDIR (or /tmp); removed by test_rmdir. */
static inline char *test_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    static char buf[4096];
    snprintf(buf, sizeof(buf), "%s/llm-test-XXXXXX", base ? base : "/tmp");
    char *d = mkdtemp(buf);
    assert_non_null(d);
    return strdup(d);
}

static inline void test_rmdir(char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

/* Joins dir and name into a static-per-call malloc'd path. Caller frees. */
static inline char *test_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

#endif
