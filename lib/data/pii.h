/* pii.h: masking of personal information in text, as in the CS336 data
 * assignment and Dolma's PII rules: email addresses, phone numbers and IPv4
 * addresses are replaced with |||EMAIL_ADDRESS|||, |||PHONE_NUMBER||| and
 * |||IP_ADDRESS|||. Hand-written scanners (no regex engine) in one pass. */
#ifndef LLM_DATA_PII_H
#define LLM_DATA_PII_H

#include <stddef.h>
#include <stdint.h>

enum llm_pii_kind { LLM_PII_EMAIL, LLM_PII_PHONE, LLM_PII_IP, LLM_PII_COUNT };

/* Masks s[0..n) into *out (grown with realloc as needed; the caller frees it),
 * *out_len bytes plus a NUL. counts[kind] gets the number of replacements;
 * returns their total (0: *out holds a copy of s), or LLM_ENOMEM.
 *   email  local@domain.tld: local [A-Za-z0-9._%+-]+, domain labels of
 *          [A-Za-z0-9-] with at least one dot and a final label of 2+ letters;
 *   phone  North American style: an optional +CC, a 3-digit area code (bare
 *          or in parentheses), 3 and 4 digits, each group optionally
 *          separated by a space, '-' or '.' ("(283) 182-3829", "2831823829");
 *   ipv4   four decimal numbers 0..255 joined by dots.
 * A match must not touch other letters or digits on either side. */
long llm_pii_mask(const char *s, size_t n, char **out, size_t *out_cap, size_t *out_len,
                  uint32_t counts[LLM_PII_COUNT]);

#endif
