/* html_entities.h: the table of HTML named character references ("&amp;" ->
 * "&"), sorted bytewise by name, for html.c's entity decoder. */
#ifndef LLM_DATA_HTML_ENTITIES_H
#define LLM_DATA_HTML_ENTITIES_H

#include <stddef.h>

struct llm_html_entity {
    const char *name; /* without '&' and ';' */
    const char *utf8; /* the characters it stands for, UTF-8 (1 or 2 code points) */
    int legacy;       /* 1: also valid without the ';' ("&copy 2024") */
};

extern const struct llm_html_entity llm_html_entities[];
extern const size_t llm_html_n_entities;

#endif
