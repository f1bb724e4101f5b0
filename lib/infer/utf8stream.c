/* utf8stream.c: the incremental UTF-8 decoder of utf8stream.h. It follows
 * Table 3-7 of the Unicode Standard (well-formed byte sequences):
 *     00..7F
 *     C2..DF  80..BF
 *     E0      A0..BF  80..BF        (A0: no overlong 3-byte forms)
 *     E1..EC  80..BF  80..BF
 *     ED      80..9F  80..BF        (9F: no surrogates D800..DFFF)
 *     EE..EF  80..BF  80..BF
 *     F0      90..BF  80..BF 80..BF (90: no overlong 4-byte forms)
 *     F1..F3  80..BF  80..BF 80..BF
 *     F4      80..8F  80..BF 80..BF (8F: nothing above U+10FFFF)
 * A byte that does not fit where it stands ends the current maximal subpart:
 * the pending valid prefix (if any) becomes one U+FFFD and the byte is looked
 * at again as a possible lead; a byte that cannot lead (80..C1, F5..FF)
 * becomes one U+FFFD by itself (Unicode §3.9, "U+FFFD Substitution of Maximal
 * Subparts"; WHATWG Encoding, "UTF-8 decoder"). */
#include "infer/utf8stream.h"

#include <string.h>

/* Length of the character a lead byte starts; 0 if it cannot start one. */
static int char_len(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b >= 0xE0 && b <= 0xEF)
        return 3;
    if (b >= 0xF0 && b <= 0xF4)
        return 4;
    return 0;
}

/* Allowed range of the byte after the lead (the second byte); later
 * continuation bytes are always 80..BF. */
static void second_range(unsigned char lead, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80, *hi = 0xBF;
    if (lead == 0xE0)
        *lo = 0xA0;
    else if (lead == 0xED)
        *hi = 0x9F;
    else if (lead == 0xF0)
        *lo = 0x90;
    else if (lead == 0xF4)
        *hi = 0x8F;
}

static size_t replacement(char *out)
{
    memcpy(out, "\xEF\xBF\xBD", 3);
    return 3;
}

/* One byte into the stream; returns the bytes written to out (at most 6: a
 * U+FFFD for the abandoned prefix, then one for the byte itself). */
static size_t feed(struct llm_utf8_stream *s, unsigned char b, char *out)
{
    size_t w = 0;
    if (s->n > 0) {
        unsigned char lo = 0x80, hi = 0xBF;
        if (s->n == 1)
            second_range(s->pend[0], &lo, &hi);
        if (b >= lo && b <= hi) {
            s->pend[s->n++] = b;
            if (s->n < char_len(s->pend[0]))
                return 0;
            memcpy(out, s->pend, (size_t)s->n);
            w = (size_t)s->n;
            s->n = 0;
            return w;
        }
        /* The prefix is a maximal subpart; b starts afresh. */
        w = replacement(out);
        s->n = 0;
    }
    int len = char_len(b);
    if (len == 1)
        out[w++] = (char)b;
    else if (len == 0)
        w += replacement(out + w);
    else
        s->pend[s->n++] = b;
    return w;
}

size_t llm_utf8_stream_push(struct llm_utf8_stream *s, const void *bytes, size_t n, char *out)
{
    const unsigned char *b = bytes;
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += feed(s, b[i], out + w);
    return w;
}

size_t llm_utf8_stream_flush(struct llm_utf8_stream *s, char *out)
{
    if (s->n == 0)
        return 0;
    s->n = 0;
    return replacement(out);
}
