/* quant.c: Q8 (per-group symmetric int8) and Q4 (4-bit groups of 32) weight
 * quantization and dequantization; formats in quant.h and docs/quant.md.
 * Plain scalar loops: quantizing is done once per model load, O(OC C). */
#include "infer/quant.h"

#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* Every weight finite, or LLM_EINVAL naming the first bad one (checked
 * before anything is written). */
static int check_finite(const char *fn, const float *w, int OC, int C)
{
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++)
            if (!isfinite(w[(size_t)o * C + c]))
                return llm_err(LLM_EINVAL, "%s: weight [%d, %d] is not finite (%g)", fn, o, c,
                               (double)w[(size_t)o * C + c]);
    return 0;
}

/* round-half-away-from-zero(v) clamped to [lo, hi]; v is finite here. */
static int round_clamp(float v, int lo, int hi)
{
    float r = roundf(v); /* C99 round: halfway cases away from zero */
    return r < lo ? lo : r > hi ? hi : (int)r;
}

int llm_quant_q8(const float *w, int OC, int C, int G, int8_t *wq, float *scales)
{
    if (OC < 1 || C < 1)
        return llm_err(LLM_EINVAL, "quant_q8: shape (%d, %d) must be positive", OC, C);
    if (G != 32 && G != 64)
        return llm_err(LLM_EINVAL, "quant_q8: group size %d must be 32 or 64", G);
    if (C % G)
        return llm_err(LLM_EINVAL, "quant_q8: width %d is not a multiple of the group size %d", C,
                       G);
    int rc = check_finite("quant_q8", w, OC, C);
    if (rc)
        return rc;
    int NG = C / G;
    for (int o = 0; o < OC; o++)
        for (int g = 0; g < NG; g++) {
            const float *wg = w + (size_t)o * C + (size_t)g * G;
            int8_t *qg = wq + (size_t)o * C + (size_t)g * G;
            float amax = 0.0f;
            for (int i = 0; i < G; i++)
                amax = fmaxf(amax, fabsf(wg[i]));
            /* scale rounds to 0 only for amax < 127 * 2^-149 (or amax = 0):
             * the group is then stored as zeros, an error below 2e-43 */
            float s = amax / 127.0f;
            scales[(size_t)o * NG + g] = s;
            for (int i = 0; i < G; i++)
                qg[i] = (int8_t)(s > 0.0f ? round_clamp(wg[i] / s, -127, 127) : 0);
        }
    return 0;
}

void llm_dequant_q8(const int8_t *wq, const float *scales, int OC, int C, int G, float *w)
{
    int NG = C / G;
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++)
            w[(size_t)o * C + c] = (float)wq[(size_t)o * C + c] * scales[(size_t)o * NG + c / G];
}

int llm_quant_q4(const float *w, int OC, int C, uint8_t *packed, float *scales)
{
    enum { G = LLM_Q4_GROUP };
    if (OC < 1 || C < 1)
        return llm_err(LLM_EINVAL, "quant_q4: shape (%d, %d) must be positive", OC, C);
    if (C % G)
        return llm_err(LLM_EINVAL, "quant_q4: width %d is not a multiple of %d", C, G);
    int rc = check_finite("quant_q4", w, OC, C);
    if (rc)
        return rc;
    int NG = C / G;
    for (int o = 0; o < OC; o++)
        for (int g = 0; g < NG; g++) {
            const float *wg = w + (size_t)o * C + (size_t)g * G;
            uint8_t *pg = packed + (size_t)o * (C / 2) + (size_t)g * (G / 2);
            float m = 0.0f; /* the signed weight of largest magnitude, first on ties */
            for (int i = 0; i < G; i++)
                if (fabsf(wg[i]) > fabsf(m))
                    m = wg[i];
            float d = m / -8.0f;
            scales[(size_t)o * NG + g] = d;
            for (int i = 0; i < G; i += 2) {
                int q0 = d != 0.0f ? round_clamp(wg[i] / d, -8, 7) : 0;
                int q1 = d != 0.0f ? round_clamp(wg[i + 1] / d, -8, 7) : 0;
                pg[i / 2] = (uint8_t)((q0 + 8) | (q1 + 8) << 4);
            }
        }
    return 0;
}

void llm_dequant_q4(const uint8_t *packed, const float *scales, int OC, int C, float *w)
{
    enum { G = LLM_Q4_GROUP };
    int NG = C / G;
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c += 2) {
            uint8_t b = packed[(size_t)o * (C / 2) + c / 2];
            float d = scales[(size_t)o * NG + c / G];
            w[(size_t)o * C + c] = (float)((b & 15) - 8) * d;
            w[(size_t)o * C + c + 1] = (float)((b >> 4) - 8) * d;
        }
}

/* ---- a whole model ---- */

static int eligible(const struct llm_param_spec *p, int G)
{
    return p->ndim == 2 && (p->kind == LLM_PARAM_MATRIX || p->kind == LLM_PARAM_EMBEDDING) &&
           p->shape[1] % G == 0;
}

void llm_q8_release(struct llm_q8 *q, struct llm_model *m)
{
    if (q->wq)
        m->be->ops->free(m->be->ctx, q->wq);
    if (q->scales)
        m->be->ops->free(m->be->ctx, q->scales);
    free(q->wq_off), free(q->sc_off);
    memset(q, 0, sizeof(*q));
}

/* Both formats: bits 8 (llm_quant_q8, groups of G) or 4 (llm_quant_q4, G = 32). */
static int quantize_model(struct llm_model *m, int G, int bits, struct llm_q8 *q)
{
    memset(q, 0, sizeof(*q));
    const struct llm_param_layout *l = &m->layout;
    const struct llm_backend *be = m->be;
    size_t nw = 0, ns = 0, big = 0;
    q->G = G;
    q->bits = bits;
    q->n = l->n;
    q->wq_off = malloc((l->n ? l->n : 1) * sizeof(size_t));
    q->sc_off = malloc((l->n ? l->n : 1) * sizeof(size_t));
    if (!q->wq_off || !q->sc_off) {
        llm_q8_release(q, m);
        return llm_err(LLM_ENOMEM, "out of memory quantizing");
    }
    for (size_t i = 0; i < l->n; i++) {
        const struct llm_param_spec *p = &l->p[i];
        q->wq_off[i] = q->sc_off[i] = SIZE_MAX;
        if (!eligible(p, G))
            continue;
        q->wq_off[i] = nw, q->sc_off[i] = ns;
        nw += (p->numel * (size_t)bits / 8 + 63) & ~(size_t)63; /* 64-byte aligned codes */
        ns += (p->numel / (size_t)G + 15) & ~(size_t)15;
        big = p->numel > big ? p->numel : big;
    }
    int rc = 0;
    float *w = NULL, *sc = NULL;
    int8_t *codes = NULL;
    if (nw && ((rc = be->ops->alloc(be->ctx, (void **)&q->wq, nw)) ||
               (rc = be->ops->alloc(be->ctx, (void **)&q->scales, ns * sizeof(float)))))
        goto out;
    if (big && (!(w = malloc(big * sizeof(float))) || !(sc = malloc(big / (size_t)G * sizeof(float))) ||
                !(codes = malloc(big)))) {
        rc = llm_err(LLM_ENOMEM, "out of memory quantizing");
        goto out;
    }
    for (size_t i = 0; !rc && i < l->n; i++) {
        const struct llm_param_spec *p = &l->p[i];
        if (q->wq_off[i] == SIZE_MAX)
            continue;
        int OC = (int)p->shape[0], C = (int)p->shape[1];
        float *dev = m->params + p->offset;
        if ((rc = be->ops->download(be->ctx, w, dev, p->numel * sizeof(float))) ||
            (rc = bits == 4 ? llm_quant_q4(w, OC, C, (uint8_t *)codes, sc) : llm_quant_q8(w, OC, C, G, codes, sc)))
            break;
        if (bits == 4)
            llm_dequant_q4((const uint8_t *)codes, sc, OC, C, w);
        else
            llm_dequant_q8(codes, sc, OC, C, G, w);
        if ((rc = be->ops->upload(be->ctx, q->wq + q->wq_off[i], codes, p->numel * (size_t)bits / 8)) ||
            (rc = be->ops->upload(be->ctx, q->scales + q->sc_off[i], sc, p->numel / (size_t)G * sizeof(float))) ||
            (rc = be->ops->upload(be->ctx, dev, w, p->numel * sizeof(float))))
            break;
        q->quantized += p->numel;
    }
    if (!rc && be->ops->sync)
        rc = be->ops->sync(be->ctx);
    if (rc)
        llm_err_wrap(rc, "quantizing the model");
out:
    free(w), free(sc), free(codes);
    if (rc)
        llm_q8_release(q, m);
    return rc;
}

int llm_model_quantize_q8(struct llm_model *m, int G, struct llm_q8 *q)
{
    memset(q, 0, sizeof(*q));
    if (G != 32 && G != 64)
        return llm_err(LLM_EINVAL, "quantization group: expected 32 or 64, got %d", G);
    return quantize_model(m, G, 8, q);
}

int llm_model_quantize_q4(struct llm_model *m, struct llm_q8 *q) { return quantize_model(m, LLM_Q4_GROUP, 4, q); }
