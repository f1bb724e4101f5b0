/* quant_io.c: quantized model checkpoints (quant_io.h) over core/ckpt.h. */
#include "infer/quant_io.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/ckpt.h"
#include "core/err.h"
#include "model/model_io.h"

#define SCALES_SUFFIX ".q8_scales"

int llm_q8_is_quantized(const cJSON *header)
{
    return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(header, "quantization"));
}

int llm_q8_save(const struct llm_model *m, const struct llm_q8 *q, const char *path, const cJSON *extra_header)
{
    if (q->bits != 8)
        return llm_err(LLM_EUNSUPPORTED, "%s: only int8 weights can be saved (Q4 is quantized at load)", path);
    const struct llm_backend *be = m->be;
    struct llm_config c;
    int rc = llm_config_defaults(&c);
    cJSON *h = cJSON_CreateObject(), *cfg = NULL, *qj = cJSON_CreateObject();
    if (!rc) {
        c.model = m->cfg;
        cfg = llm_config_to_json(&c);
    }
    llm_config_release(&c);
    if (rc || !h || !cfg || !qj) {
        cJSON_Delete(h), cJSON_Delete(cfg), cJSON_Delete(qj);
        return rc ? rc : llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    }
    cJSON_AddStringToObject(h, "format", LLM_MODEL_FORMAT);
    cJSON_AddNumberToObject(h, "format_version", LLM_MODEL_FORMAT_VERSION);
    cJSON_AddItemToObject(h, "config", cfg);
    cJSON_AddStringToObject(qj, "method", "q8");
    cJSON_AddNumberToObject(qj, "group", q->G);
    cJSON_AddItemToObject(h, "quantization", qj);
    for (const cJSON *e = extra_header ? extra_header->child : NULL; e; e = e->next) {
        if (!strcmp(e->string, "format") || !strcmp(e->string, "format_version") || !strcmp(e->string, "config") ||
            !strcmp(e->string, "quantization") || !strcmp(e->string, "train") || !strcmp(e->string, "run_config"))
            continue; /* a training checkpoint's state does not carry over */
        cJSON_AddItemToObject(h, e->string, cJSON_Duplicate(e, 1));
    }
    struct llm_ckpt_writer *w = NULL;
    rc = llm_ckpt_writer_open(&w, path, h, NULL);
    cJSON_Delete(h);
    size_t big = 0;
    for (size_t i = 0; i < m->layout.n; i++)
        big = m->layout.p[i].numel > big ? m->layout.p[i].numel : big;
    void *buf = NULL;
    if (!rc && !(buf = malloc(big * sizeof(float) + 1)))
        rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    for (size_t i = 0; !rc && i < m->layout.n; i++) {
        const struct llm_param_spec *p = &m->layout.p[i];
        if (q->wq_off[i] == SIZE_MAX) {
            if (!(rc = be->ops->download(be->ctx, buf, m->params + p->offset, p->numel * sizeof(float))))
                rc = llm_ckpt_write_tensor(w, p->name, LLM_CKPT_F32, p->ndim, p->shape, buf);
        } else {
            char name[sizeof(p->name) + sizeof(SCALES_SUFFIX)];
            int64_t sshape[2] = {p->shape[0], p->shape[1] / q->G};
            snprintf(name, sizeof(name), "%s%s", p->name, SCALES_SUFFIX);
            if (!(rc = be->ops->download(be->ctx, buf, q->wq + q->wq_off[i], p->numel)) &&
                !(rc = llm_ckpt_write_tensor(w, p->name, LLM_CKPT_I8, 2, p->shape, buf)) &&
                !(rc = be->ops->download(be->ctx, buf, q->scales + q->sc_off[i],
                                         p->numel / (size_t)q->G * sizeof(float))))
                rc = llm_ckpt_write_tensor(w, name, LLM_CKPT_F32, 2, sshape, buf);
        }
        if (rc)
            llm_err_wrap(rc, "saving tensor '%s'", p->name);
    }
    free(buf);
    if (w)
        rc = rc ? (llm_ckpt_writer_abort(w), rc) : llm_ckpt_writer_commit(w);
    return rc;
}

/* Tensor `name` of r, checked: dtype and exactly nbytes. */
static int find(struct llm_ckpt_reader *r, const char *path, const char *name, enum llm_ckpt_dtype dt,
                size_t nbytes, size_t *k)
{
    long i = llm_ckpt_find(r, name);
    if (i < 0)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s' is missing", path, name);
    const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, (size_t)i);
    if (t->dtype != dt || t->nbytes != nbytes)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s' is %s of %llu bytes, expected %s of %zu", path, name,
                       llm_ckpt_dtype_name(t->dtype), (unsigned long long)t->nbytes, llm_ckpt_dtype_name(dt),
                       nbytes);
    *k = (size_t)i;
    return 0;
}

int llm_q8_load(struct llm_model *m, struct llm_q8 *q, const char *path, struct llm_backend *be,
                cJSON **header_out)
{
    memset(m, 0, sizeof(*m));
    memset(q, 0, sizeof(*q));
    q->bits = 8;
    if (header_out)
        *header_out = NULL;
    struct llm_ckpt_reader *r;
    int rc = llm_ckpt_open(&r, path);
    if (rc)
        return rc;
    const cJSON *h = llm_ckpt_header(r);
    const cJSON *qj = cJSON_GetObjectItemCaseSensitive(h, "quantization");
    const cJSON *meth = cJSON_GetObjectItemCaseSensitive(qj, "method");
    const cJSON *grp = cJSON_GetObjectItemCaseSensitive(qj, "group");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(h, "format");
    struct llm_config c;
    int have_c = 0, have_m = 0;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, LLM_MODEL_FORMAT))
        rc = llm_err(LLM_EFORMAT, "%s: not a model checkpoint", path);
    else if (!cJSON_IsString(meth) || strcmp(meth->valuestring, "q8") || !cJSON_IsNumber(grp) ||
             (grp->valuedouble != 32 && grp->valuedouble != 64))
        rc = llm_err(LLM_EUNSUPPORTED, "%s: header \"quantization\" is not {\"method\": \"q8\", \"group\": 32|64}",
                     path);
    if (!rc && !(rc = llm_config_defaults(&c))) {
        have_c = 1;
        if ((rc = llm_config_from_json(&c, cJSON_GetObjectItemCaseSensitive(h, "config"))))
            llm_err_wrap(rc, "%s: header \"config\"", path);
    }
    if (!rc && !(rc = llm_model_init_zero(m, &c.model, be)))
        have_m = 1;
    /* The codes and scales of every weight quantize_q8 would quantize: the
     * same layout as llm_model_quantize_q8 builds (quantized by it, then
     * overwritten from the file). */
    if (!rc)
        rc = llm_model_quantize_q8(m, (int)grp->valuedouble, q);
    size_t big = 0;
    for (size_t i = 0; have_m && i < m->layout.n; i++)
        big = m->layout.p[i].numel > big ? m->layout.p[i].numel : big;
    float *w = NULL, *sc = NULL;
    int8_t *codes = NULL;
    if (!rc && (!(w = malloc(big * sizeof(float) + 4)) || !(sc = malloc(big * sizeof(float) / 32 + 4)) ||
                !(codes = malloc(big + 1))))
        rc = llm_err(LLM_ENOMEM, "out of memory reading '%s'", path);
    for (size_t i = 0; !rc && i < m->layout.n; i++) {
        const struct llm_param_spec *p = &m->layout.p[i];
        size_t k, ks;
        if (q->wq_off[i] == SIZE_MAX) {
            if (!(rc = find(r, path, p->name, LLM_CKPT_F32, p->numel * sizeof(float), &k)))
                rc = llm_model_read_device(r, k, be, m->params + p->offset);
            continue;
        }
        char name[sizeof(p->name) + sizeof(SCALES_SUFFIX)];
        snprintf(name, sizeof(name), "%s%s", p->name, SCALES_SUFFIX);
        size_t ns = p->numel / (size_t)q->G;
        if ((rc = find(r, path, p->name, LLM_CKPT_I8, p->numel, &k)) ||
            (rc = find(r, path, name, LLM_CKPT_F32, ns * sizeof(float), &ks)) ||
            (rc = llm_ckpt_read(r, k, codes, p->numel)) || (rc = llm_ckpt_read(r, ks, sc, ns * sizeof(float))))
            break;
        for (size_t j = 0; j < ns; j++)
            if (!isfinite(sc[j]) || sc[j] < 0) {
                rc = llm_err(LLM_EFORMAT, "%s: tensor '%s' has a bad scale", path, name);
                break;
            }
        if (rc)
            break;
        llm_dequant_q8(codes, sc, (int)p->shape[0], (int)p->shape[1], q->G, w);
        if ((rc = be->ops->upload(be->ctx, q->wq + q->wq_off[i], codes, p->numel)) ||
            (rc = be->ops->upload(be->ctx, q->scales + q->sc_off[i], sc, ns * sizeof(float))) ||
            (rc = be->ops->upload(be->ctx, m->params + p->offset, w, p->numel * sizeof(float))))
            break;
    }
    if (!rc && be->ops->sync)
        rc = be->ops->sync(be->ctx);
    if (!rc && header_out && !(*header_out = cJSON_Duplicate(h, 1)))
        rc = llm_err(LLM_ENOMEM, "out of memory reading '%s'", path);
    free(w), free(sc), free(codes);
    if (rc) {
        if (have_m) {
            llm_q8_release(q, m);
            llm_model_release(m);
        }
        memset(m, 0, sizeof(*m));
    }
    if (have_c)
        llm_config_release(&c);
    llm_ckpt_close(r);
    return rc;
}
