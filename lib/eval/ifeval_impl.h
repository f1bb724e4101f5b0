/* ifeval_impl.h: what the files of lib/eval/ifeval*.c share and nobody else
 * sees: Python-compatible character classes, stripping, word/sentence/
 * capital-word counting (ifeval_text.c) and the language guess
 * (ifeval_lang.c). Text is always well-formed UTF-8 given as (s, n). */
#ifndef LLM_EVAL_IFEVAL_IMPL_H
#define LLM_EVAL_IFEVAL_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the code point at s[i] (i < n, well-formed input); *len = its bytes. */
int32_t ifeval_cp(const char *s, size_t n, size_t i, size_t *len);

/* Python's str.isspace() for one code point. */
int ifeval_isspace(int32_t c);
/* Python's `\w` for str patterns: a letter, a number or '_'. */
int ifeval_isword(int32_t c);
/* Python's Lowercase / Uppercase / titlecase tests for one code point. */
int ifeval_islower(int32_t c);
int ifeval_isupper(int32_t c);

/* Python's s.strip(): sets [*b, *e) to s[0..n) without leading and trailing
 * white space. */
void ifeval_strip(const char *s, size_t n, size_t *b, size_t *e);
/* 1 if s[0..n) is empty or all white space. */
int ifeval_blank(const char *s, size_t n);

/* Python's str.isupper() / str.islower(): every cased character is upper
 * (lower) case and there is at least one. */
int ifeval_str_isupper(const char *s, size_t n);
int ifeval_str_islower(const char *s, size_t n);

/* Lower-cases s[0..n) code point by code point (simple case mapping) into a
 * new NUL-terminated buffer; *out_n = its length. Caller frees; NULL (error
 * set) when out of memory. */
char *ifeval_lower_dup(const char *s, size_t n, size_t *out_n);

/* Number of maximal runs of `\w` characters (nltk RegexpTokenizer(r"\w+")). */
size_t ifeval_count_words(const char *s, size_t n);
/* Number of sentences: an approximation of nltk's English Punkt tokenizer. */
size_t ifeval_count_sentences(const char *s, size_t n);
/* Number of word tokens (an approximation of nltk.word_tokenize) that are
 * str.isupper(). */
size_t ifeval_count_capital_words(const char *s, size_t n);

/* The language of s[0..n) as an ISO 639-1 code ("en", "zh", ...), or NULL
 * when there is nothing to go on (no letters, or Latin letters that match
 * none of the word profiles). An approximation of langdetect. */
const char *ifeval_language(const char *s, size_t n);

#endif
