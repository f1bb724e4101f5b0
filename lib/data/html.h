/* html.h: HTML to plain text for training data, in one pass over the bytes:
 * content and its structure kept (blocks become line breaks, paragraphs blank
 * lines, list items "- " bullets, <pre> verbatim), scripts, styles, <head> and
 * obvious boilerplate (nav, footer, aside, forms, hidden elements) dropped,
 * every named and numeric character reference decoded, the declared charset
 * converted to UTF-8. Malformed HTML (unclosed tags, stray '<', broken
 * comments, binary garbage) never fails: it is read the way browsers recover. */
#ifndef LLM_DATA_HTML_H
#define LLM_DATA_HTML_H

#include <stddef.h>

#include "charset.h"

struct llm_html_opts {
    enum llm_charset charset; /* declared by the transport (HTTP or WARC header): wins
                               * over <meta>; AUTO = sniff (BOM, <meta>, else UTF-8
                               * when valid, else windows-1252) */
    int keep_boilerplate;     /* keep nav, footer, aside, form, menu and hidden elements */
};

struct llm_html_info {
    enum llm_charset charset; /* the one used to decode */
    size_t replaced;          /* U+FFFD written for invalid UTF-8 */
};

/* A converter and its buffers (reused between pages): one per thread. */
struct llm_html;

int llm_html_new(struct llm_html **out);
void llm_html_free(struct llm_html *h); /* NULL ok */

/* Converts html[0..n) to text. *text points into h (NUL-terminated, valid
 * UTF-8 with no control characters but '\n' and '\t', valid until the next
 * call on h); info may be NULL. Fails only with LLM_ENOMEM. */
int llm_html_to_text(struct llm_html *h, const char *html, size_t n,
                     const struct llm_html_opts *o, const char **text, size_t *len,
                     struct llm_html_info *info);

/* The charset a page declares in its first 4 KiB: a byte-order mark or a
 * <meta charset=...> / <meta http-equiv content="...; charset=...">; AUTO if none. */
enum llm_charset llm_html_declared_charset(const char *html, size_t n);

#endif
