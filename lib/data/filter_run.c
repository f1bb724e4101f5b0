/* filter_run.c: the `llm filter` pipeline of filter.h: JSONL batches parsed
 * and judged in parallel (rules, PII masking, classifier, rendering), then
 * written, counted and reported in input order, so the output does not depend
 * on the thread count. */
#include "filter.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "docs.h"
#include "pii.h"
#include "quality.h"

#define BATCH_BYTES (16u << 20)

/* What happened to one document of a batch. */
struct verdict {
    struct llm_filter_result r; /* r.text is not used past the parallel loop */
    double score;
    int scored;
    uint32_t pii[LLM_PII_COUNT];
    size_t out_len;             /* text bytes written */
    int changed;                /* the text field was rewritten */
};

/* Per-thread buffers. */
struct worker {
    struct llm_filter_scratch *fs;
    char *pii;
    size_t pii_cap;
    uint32_t *feat;
    size_t feat_cap;
};

/* Judges document d; thread-safe for distinct documents. */
static int judge(const struct llm_filter_run_opts *o, struct worker *w, struct llm_doc *d,
                 struct verdict *v)
{
    memset(v, 0, sizeof(*v));
    int rc = llm_filter_text(&o->rules, w->fs, d->text, d->text_len, &v->r);
    if (rc || v->r.reason)
        return rc;
    const char *t = v->r.text ? v->r.text : d->text;
    size_t n = v->r.text ? v->r.len : d->text_len;
    v->changed = v->r.text != NULL;
    if (o->mask_pii) {
        size_t len;
        long k = llm_pii_mask(t, n, &w->pii, &w->pii_cap, &len, v->pii);
        if (k < 0)
            return (int)k;
        if (k > 0)
            t = w->pii, n = len, v->changed = 1;
    }
    if (o->classifier) {
        v->score = llm_quality_score(o->classifier, t, n, &w->feat, &w->feat_cap);
        if (isnan(v->score))
            return LLM_ENOMEM;
        v->scored = 1;
        if (!(v->score > o->threshold)) {
            v->r.reason = LLM_FR_QUALITY;
            v->r.value = v->score, v->r.threshold = o->threshold;
            return 0;
        }
    }
    v->out_len = n;
    if (v->changed && (rc = llm_doc_set_str(d, d->field, t, n)))
        return rc;
    if (v->scored) {
        const char *key = o->score_field ? o->score_field : "quality";
        if ((rc = llm_doc_set_num(d, key, round(v->score * 1e4) / 1e4)))
            return rc;
    }
    return llm_doc_render(d);
}

/* One line of the --report file. */
static int report(const struct llm_filter_run_opts *o, const struct llm_doc *d,
                  const struct verdict *v)
{
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL;
    ok = ok && (d->id ? cJSON_AddStringToObject(j, "id", d->id) : cJSON_AddNullToObject(j, "id"));
    ok = ok && cJSON_AddBoolToObject(j, "kept", !v->r.reason);
    if (ok && v->r.reason) {
        ok = cJSON_AddStringToObject(j, "reason", llm_filter_reason_name(v->r.reason)) &&
             cJSON_AddNumberToObject(j, "value", round(v->r.value * 1e4) / 1e4) &&
             cJSON_AddNumberToObject(j, "threshold", v->r.threshold);
    }
    uint32_t lines = 0;
    for (int k = 0; k < LLM_C4L_COUNT; k++)
        lines += v->r.c4_lines[k];
    if (ok && !v->r.reason && lines)
        ok = cJSON_AddNumberToObject(j, "c4_lines_removed", lines) != NULL;
    uint32_t pii = v->pii[0] + v->pii[1] + v->pii[2];
    if (ok && pii)
        ok = cJSON_AddNumberToObject(j, "pii_masked", pii) != NULL;
    if (ok && v->scored)
        ok = cJSON_AddNumberToObject(j, "quality", round(v->score * 1e4) / 1e4) != NULL;
    int rc = ok ? llm_jsonl_write(o->report, j, o->report_path)
                : llm_err(LLM_ENOMEM, "out of memory writing the report");
    cJSON_Delete(j);
    return rc;
}

int llm_filter_run(const char *const *paths, int npaths, const struct llm_filter_run_opts *o,
                   FILE *out, const char *path, struct llm_progress *progress,
                   struct llm_filter_stats *st)
{
    memset(st, 0, sizeof(*st));
    int nt = o->threads > 0 ? o->threads : omp_get_max_threads();
    struct worker *w = calloc((size_t)nt, sizeof(*w));
    if (!w)
        return llm_err(LLM_ENOMEM, "out of memory for the filter");
    int rc = 0;
    for (int t = 0; t < nt && !rc; t++)
        rc = llm_filter_scratch_new(&w[t].fs);
    struct llm_docs_reader r;
    struct llm_docs_opts dopt = {.field = o->field ? o->field : "text", .strict = o->strict};
    int opened = 0;
    if (!rc && !(rc = llm_docs_open(&r, paths, npaths, &dopt)))
        opened = 1;
    if (progress && opened)
        progress->total = r.size;
    struct llm_doc_batch b = {0};
    struct verdict *v = NULL;
    size_t v_cap = 0;
    while (!rc && (rc = llm_docs_read_batch(&r, &b, BATCH_BYTES, nt)) == 1) {
        rc = 0;
        if (b.n > v_cap) {
            struct verdict *nv = realloc(v, b.n * sizeof(*nv));
            if (!nv) {
                rc = llm_err(LLM_ENOMEM, "out of memory filtering");
                break;
            }
            v = nv, v_cap = b.n;
        }
        int fail = 0;
        long n = (long)b.n;
        #pragma omp parallel for schedule(dynamic, 8) num_threads(nt) reduction(| : fail) if (n > 1)
        for (long i = 0; i < n; i++)
            if (judge(o, &w[omp_get_thread_num()], &b.docs[i], &v[i]))
                fail = 1;
        if (fail) {
            rc = llm_err(LLM_ENOMEM, "out of memory filtering");
            break;
        }
        for (size_t i = 0; i < b.n && !rc; i++) {
            const struct verdict *vi = &v[i];
            st->docs_in++;
            st->bytes_in += b.docs[i].text_len;
            if (vi->scored)
                st->score_sum += vi->score, st->scored++;
            if (vi->r.reason) {
                st->removed[vi->r.reason]++;
            } else {
                st->docs_out++;
                st->bytes_out += vi->out_len;
                for (int k = 0; k < LLM_C4L_COUNT; k++)
                    st->c4_lines[k] += vi->r.c4_lines[k];
                st->c4_changed += vi->r.text != NULL;
                for (int k = 0; k < LLM_PII_COUNT; k++)
                    st->pii[k] += vi->pii[k];
                rc = llm_doc_write(out, &b.docs[i], path);
            }
            if (!rc && o->report)
                rc = report(o, &b.docs[i], vi);
        }
        if (progress)
            llm_progress_set(progress, r.bytes);
    }
    if (opened) {
        st->bad = r.skipped;
        llm_docs_close(&r);
    }
    llm_doc_batch_release(&b);
    free(v);
    for (int t = 0; t < nt; t++) {
        llm_filter_scratch_free(w[t].fs);
        free(w[t].pii), free(w[t].feat);
    }
    free(w);
    return rc;
}
