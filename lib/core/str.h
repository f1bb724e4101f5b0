/* str.h: small string helpers shared by the flag parser, the command table
 * and the config loader ("did you mean ...?" hints). */
#ifndef LLM_CORE_STR_H
#define LLM_CORE_STR_H

#include <stddef.h>

/* Levenshtein edit distance between a and b (bytes). */
size_t llm_str_distance(const char *a, const char *b);

/* The candidate closest to s if it is close enough to be a plausible typo
 * (distance <= max(2, strlen(s)/3)), else NULL. Borrowed from cands. */
const char *llm_str_closest(const char *s, const char *const *cands, size_t n);

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF), else 0 and *bad = offset of the first bad byte. */
int llm_utf8_valid(const char *s, size_t n, size_t *bad);

/* strdup that sets an error on failure. Caller frees. */
char *llm_strdup(const char *s);

#endif
