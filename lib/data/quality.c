/* quality.c: the hashed bag-of-n-grams logistic classifier of quality.h:
 * featurization, seeded SGD training, scoring, and the checksummed file. */
#include "quality.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/err.h"
#include "core/file.h"
#include "core/rng.h"
#include "shingle.h"

#define MAGIC "LLMQUAL1"
#define VERSION 1u
#define HEADER_BYTES 28 /* magic, version, bits, max_words, flags, bias */

static inline int word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c >= 0x80;
}

long llm_quality_features(const char *text, size_t n, uint32_t bits, size_t max_words,
                          uint32_t **f, size_t *cap)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t mask = (1u << bits) - 1;
    size_t k = 0, words = 0;
    uint64_t prev = 0;
    if (!max_words)
        max_words = 4096;
    for (size_t i = 0; i < n && words < max_words;) {
        while (i < n && !word_byte(s[i]))
            i++;
        if (i == n)
            break;
        uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the case-folded word */
        while (i < n && word_byte(s[i])) {
            unsigned char c = s[i++];
            h = (h ^ (c >= 'A' && c <= 'Z' ? c | 0x20 : c)) * 0x100000001b3ull;
        }
        h = llm_hash_mix64(h);
        if (k + 2 > *cap) {
            size_t nc = *cap ? *cap * 2 : 1024;
            uint32_t *p = realloc(*f, nc * sizeof(*p));
            if (!p)
                return llm_err(LLM_ENOMEM, "out of memory hashing features");
            *f = p, *cap = nc;
        }
        (*f)[k++] = (uint32_t)h & mask;
        if (words)
            (*f)[k++] = (uint32_t)llm_hash_mix64(prev * 31 + h + 0x9e3779b97f4a7c15ull) & mask; /* bigram */
        prev = h;
        words++;
    }
    return (long)k;
}

static double sigmoid(double z)
{
    return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

/* b + (1/sqrt k) sum w[f]: the bag scaled to unit length. */
static double raw_score(const struct llm_quality *q, const uint32_t *f, size_t k)
{
    double z = 0;
    for (size_t i = 0; i < k; i++)
        z += q->w[f[i]];
    return q->bias + (k ? z / sqrt((double)k) : 0);
}

double llm_quality_score(const struct llm_quality *q, const char *text, size_t n, uint32_t **f,
                         size_t *cap)
{
    long k = llm_quality_features(text, n, q->bits, q->max_words, f, cap);
    if (k < 0)
        return NAN;
    return sigmoid(raw_score(q, *f, (size_t)k));
}

int llm_quality_train(const char *const *docs, const size_t *lens, const unsigned char *y,
                      size_t n, const struct llm_quality_train_opts *o, struct llm_quality *out,
                      void (*progress)(void *ctx, int epoch, double loss), void *ctx)
{
    memset(out, 0, sizeof(*out));
    uint32_t bits = o->bits ? o->bits : 20;
    if (bits < 8 || bits > 28)
        return llm_err(LLM_EINVAL, "classifier buckets: 2^%u is outside 2^8..2^28", bits);
    if (!n)
        return llm_err(LLM_EINVAL, "no training documents");
    out->bits = bits;
    out->max_words = (uint32_t)(o->max_words ? o->max_words : 4096);
    out->w = calloc((size_t)1 << bits, sizeof(*out->w));
    uint32_t **feat = calloc(n, sizeof(*feat));
    size_t *nf = calloc(n, sizeof(*nf)), *order = malloc(n * sizeof(*order));
    int rc = 0;
    if (!out->w || !feat || !nf || !order) {
        rc = llm_err(LLM_ENOMEM, "out of memory training the classifier");
        goto done;
    }
    /* features once, in parallel: the SGD below is sequential and seeded, so
     * the model is the same for any thread count */
    int fail = 0;
    long nn = (long)n;
    int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    #pragma omp parallel for schedule(dynamic, 64) num_threads(nt) reduction(| : fail)
    for (long i = 0; i < nn; i++) {
        size_t cap = 0;
        long k = llm_quality_features(docs[i], lens[i], bits, out->max_words, &feat[i], &cap);
        if (k < 0)
            fail = 1;
        else
            nf[i] = (size_t)k;
    }
    if (fail) {
        rc = llm_err(LLM_ENOMEM, "out of memory hashing features");
        goto done;
    }
    struct llm_rng rng;
    llm_rng_seed(&rng, o->seed);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    int epochs = o->epochs > 0 ? o->epochs : 5;
    double lr0 = o->lr > 0 ? o->lr : 0.5, steps = (double)epochs * (double)n, t = 0;
    for (int e = 0; e < epochs; e++) {
        for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
            size_t j = (size_t)llm_rng_below(&rng, i + 1), tmp = order[i];
            order[i] = order[j], order[j] = tmp;
        }
        double loss = 0;
        for (size_t s = 0; s < n; s++, t++) {
            size_t d = order[s];
            double p = sigmoid(raw_score(out, feat[d], nf[d])), lr = lr0 * (1 - t / steps);
            loss -= log(y[d] ? fmax(p, 1e-12) : fmax(1 - p, 1e-12));
            double g = p - (double)y[d]; /* d(log loss)/dz */
            out->bias -= (float)(lr * g);
            if (nf[d]) {
                float step = (float)(lr * g / sqrt((double)nf[d]));
                for (size_t k = 0; k < nf[d]; k++)
                    out->w[feat[d][k]] -= step;
            }
        }
        if (progress)
            progress(ctx, e + 1, loss / (double)n);
    }
done:
    for (size_t i = 0; feat && i < n; i++)
        free(feat[i]);
    free(feat), free(nf), free(order);
    if (rc)
        llm_quality_release(out);
    return rc;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_f32(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}

static float get_f32(const unsigned char *p)
{
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

int llm_quality_save(const struct llm_quality *q, const char *path)
{
    size_t nw = (size_t)1 << q->bits, size = HEADER_BYTES + 4 * nw + 4;
    unsigned char *buf = malloc(size);
    if (!buf)
        return llm_err(LLM_ENOMEM, "out of memory saving the classifier");
    memcpy(buf, MAGIC, 8);
    put_u32(buf + 8, VERSION);
    put_u32(buf + 12, q->bits);
    put_u32(buf + 16, q->max_words);
    put_u32(buf + 20, 0);
    put_f32(buf + 24, q->bias);
    for (size_t i = 0; i < nw; i++)
        put_f32(buf + HEADER_BYTES + 4 * i, q->w[i]);
    put_u32(buf + size - 4, (uint32_t)crc32(0L, buf, (uInt)(size - 4)));
    struct llm_atomic a;
    int rc = llm_atomic_open(&a, path);
    if (!rc) {
        rc = llm_fwrite(a.f, buf, size, path);
        if (!rc)
            rc = llm_atomic_commit(&a);
        else
            llm_atomic_abort(&a);
    }
    free(buf);
    return rc;
}

int llm_quality_load(struct llm_quality *q, const char *path)
{
    memset(q, 0, sizeof(*q));
    char *buf;
    size_t size;
    int rc = llm_read_file(path, HEADER_BYTES + 4 * ((size_t)1 << 28) + 4, &buf, &size);
    if (rc)
        return rc;
    const unsigned char *u = (const unsigned char *)buf;
    if (size < HEADER_BYTES + 4 || memcmp(u, MAGIC, 8)) {
        rc = llm_err(LLM_EFORMAT, "'%s' is not a quality classifier (no \"" MAGIC "\" magic; "
                     "make one with `llm filter train`)", path);
    } else if (get_u32(u + 8) != VERSION) {
        rc = llm_err(LLM_EFORMAT, "'%s': classifier format version %u; this build reads %u",
                     path, get_u32(u + 8), VERSION);
    } else if (get_u32(u + 12) < 8 || get_u32(u + 12) > 28 ||
               size != HEADER_BYTES + 4 * ((size_t)1 << get_u32(u + 12)) + 4) {
        rc = llm_err(LLM_EFORMAT, "'%s': truncated or corrupt classifier (%zu bytes for 2^%u "
                     "buckets)", path, size, get_u32(u + 12));
    } else if (crc32(0L, u, (uInt)(size - 4)) != get_u32(u + size - 4)) {
        rc = llm_err(LLM_EFORMAT, "'%s': corrupt classifier (checksum mismatch)", path);
    }
    if (!rc) {
        q->bits = get_u32(u + 12);
        q->max_words = get_u32(u + 16);
        q->bias = get_f32(u + 24);
        size_t nw = (size_t)1 << q->bits;
        if (!(q->w = malloc(nw * sizeof(*q->w))))
            rc = llm_err(LLM_ENOMEM, "out of memory loading the classifier");
        for (size_t i = 0; !rc && i < nw; i++)
            q->w[i] = get_f32(u + HEADER_BYTES + 4 * i);
    }
    free(buf);
    return rc;
}

void llm_quality_release(struct llm_quality *q)
{
    free(q->w);
    memset(q, 0, sizeof(*q));
}
