/* charset.h: the character encodings of crawled pages, converted to UTF-8:
 * UTF-8 itself (invalid bytes become U+FFFD) and windows-1252, which per the
 * WHATWG Encoding Standard also covers the ISO-8859-1, Latin-1 and ASCII labels
 * (browsers decode them all as windows-1252). Other declared charsets are read
 * as UTF-8 and reported as unsupported. */
#ifndef LLM_DATA_CHARSET_H
#define LLM_DATA_CHARSET_H

#include <stddef.h>
#include <stdint.h>

enum llm_charset {
    LLM_CHARSET_AUTO,        /* not declared: UTF-8 when valid, else windows-1252 */
    LLM_CHARSET_UTF8,
    LLM_CHARSET_CP1252,      /* windows-1252, ISO-8859-1, Latin-1, US-ASCII */
    LLM_CHARSET_UNSUPPORTED, /* declared but not one of the above: read as UTF-8 */
};

/* The charset of a label such as "ISO-8859-1" or "utf8" (case and surrounding
 * spaces or quotes ignored; n bytes, need not be NUL-terminated). */
enum llm_charset llm_charset_from_label(const char *s, size_t n);

/* Finds "charset=NAME" in a Content-Type value (HTTP header or <meta content>)
 * within s[0..n); LLM_CHARSET_AUTO when there is none. */
enum llm_charset llm_charset_from_content_type(const char *s, size_t n);

/* Converts src[0..n) to UTF-8 into dst, which must hold 3 * n + 1 bytes; returns
 * the length written (dst is NUL-terminated). UTF8 and UNSUPPORTED copy valid
 * sequences and write U+FFFD for each maximal invalid subpart (the WHATWG
 * decoder's rule); CP1252 maps every byte. *replaced counts U+FFFD written
 * (may be NULL). */
size_t llm_charset_to_utf8(const char *src, size_t n, enum llm_charset cs, char *dst,
                           size_t *replaced);

/* The code point of windows-1252 byte c (HTML also maps numeric references
 * &#128;..&#159; through this table). */
uint32_t llm_charset_cp1252(unsigned char c);

/* Appends code point cp as UTF-8 to p (1 to 4 bytes); returns the bytes written.
 * Surrogates and values above U+10FFFF are written as U+FFFD. */
size_t llm_charset_put_utf8(char *p, uint32_t cp);

#endif
