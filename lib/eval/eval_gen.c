/* eval_gen.c: the evaluations of generated text: IFEval's instruction
 * checks (ifeval.h) over a model's responses, and an LM judge comparing two
 * responses by its preference log-probability. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/jsonl.h"
#include "core/str.h"
#include "eval/eval.h"
#include "eval/eval_impl.h"
#include "eval/ifeval.h"
#include "eval/score.h"

/* The records of path, each checked: a bad one is LLM_EFORMAT naming its line. */
struct records {
    cJSON **v;
    int n;
    struct llm_jsonl_records all;
};

static void records_release(struct records *r)
{
    llm_jsonl_records_release(&r->all);
    memset(r, 0, sizeof(*r));
}

static int records_read(struct records *rs, const char *path, int limit,
                        int (*check)(const cJSON *o, const char **why))
{
    memset(rs, 0, sizeof(*rs));
    int rc = llm_jsonl_read_all(&rs->all, path, limit);
    for (int i = 0; !rc && check && i < rs->all.n; i++) {
        const char *why = NULL;
        if (!check(rs->all.v[i], &why))
            rc = llm_err(LLM_EFORMAT, "%s:%llu: %s", path, (unsigned long long)rs->all.line[i], why);
    }
    if (!rc && rs->all.n == 0)
        rc = llm_err(LLM_EINVAL, "%s: no records", path);
    if (rc)
        records_release(rs);
    else
        rs->v = rs->all.v, rs->n = rs->all.n;
    return rc;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* ---- IFEval ---- */

static int ifeval_record(const cJSON *o, const char **why)
{
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "instruction_id_list");
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(o, "kwargs");
    if (!str_of(o, "prompt") || !cJSON_IsArray(ids)) {
        *why = "expected IFEval's {\"prompt\", \"instruction_id_list\": [...], \"kwargs\": [...]}";
        return 0;
    }
    if (kw && !cJSON_IsNull(kw) && (!cJSON_IsArray(kw) || cJSON_GetArraySize(kw) != cJSON_GetArraySize(ids))) {
        *why = "\"kwargs\" must be a list as long as \"instruction_id_list\"";
        return 0;
    }
    const cJSON *id;
    cJSON_ArrayForEach(id, ids) {
        if (!cJSON_IsString(id) || !llm_ifeval_supported(id->valuestring)) {
            *why = cJSON_IsString(id) ? "an unknown instruction id (docs/ifeval.md lists them)"
                                      : "instruction ids must be strings";
            return 0;
        }
    }
    return 1;
}

static int response_record(const cJSON *o, const char **why)
{
    if (str_of(o, "prompt") && str_of(o, "response"))
        return 1;
    *why = "expected {\"prompt\": string, \"response\": string}";
    return 0;
}

int llm_eval_ifeval(struct llm_model *m, const struct llm_tokenizer *tok, const char *path,
                    const char *responses_path, const struct llm_eval_opts *o, struct llm_eval_result *r)
{
    memset(r, 0, sizeof(*r));
    struct records recs = {0}, resp = {0};
    int rc = records_read(&recs, path, 0, ifeval_record);
    if (!rc && responses_path)
        rc = records_read(&resp, responses_path, 0, response_record);
    int n = recs.n;
    const char **answer = llm_calloc((size_t)(n ? n : 1), sizeof(char *), "responses");
    char **prompts = llm_calloc((size_t)(n ? n : 1), sizeof(char *), "prompts");
    struct llm_gen_result *res = m ? llm_calloc((size_t)(n ? n : 1), sizeof(*res), "responses") : NULL;
    if (!rc && (!answer || !prompts || (m && !res)))
        rc = LLM_ENOMEM;
    for (int i = 0; !rc && i < n; i++)
        if (!(prompts[i] = llm_strdup(str_of(recs.v[i], "prompt"))))
            rc = LLM_ENOMEM;
    if (!rc && m) {
        struct llm_progress prog;
        eval_progress_start(&prog, o, "gen", (uint64_t)n);
        struct llm_gen_opts go = o->gen;
        go.truncate = LLM_GEN_TRUNCATE_LEFT, go.allow_special = 0;
        rc = eval_generate(m, tok, prompts, n, &go, res, &prog);
        llm_progress_finish(&prog);
        for (int i = 0; !rc && i < n; i++)
            answer[i] = res[i].completion;
    } else if (!rc) {
        /* the response given for each prompt (the first one with its text) */
        for (int i = 0; !rc && i < n; i++) {
            for (int j = 0; j < resp.n && !answer[i]; j++)
                if (!strcmp(str_of(resp.v[j], "prompt"), prompts[i]))
                    answer[i] = str_of(resp.v[j], "response");
            if (!answer[i])
                rc = llm_err(LLM_EINVAL, "%s: no response for the prompt of record %d (\"%.40s...\")",
                             responses_path, i + 1, prompts[i]);
        }
    }
    if (!rc)
        rc = eval_samples_init(r, o);
    double ps = 0, pl = 0, is = 0, il = 0;
    int64_t n_inst = 0;
    for (int i = 0; !rc && i < n; i++) {
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(recs.v[i], "instruction_id_list");
        const cJSON *kws = cJSON_GetObjectItemCaseSensitive(recs.v[i], "kwargs");
        int all_s = 1, all_l = 1, k = 0;
        cJSON *fs = r->samples ? cJSON_CreateArray() : NULL, *fl = r->samples ? cJSON_CreateArray() : NULL;
        const cJSON *id;
        cJSON_ArrayForEach(id, ids) {
            const cJSON *kw = cJSON_IsArray(kws) ? cJSON_GetArrayItem(kws, k) : NULL;
            int s = 0, l = 0;
            if ((rc = llm_ifeval_check(id->valuestring, kw, prompts[i], answer[i], &s, &l))) {
                rc = llm_err_wrap(rc, "%s: record %d", path, i + 1);
                break;
            }
            all_s &= s, all_l &= l, is += s, il += l, k++, n_inst++;
            if (fs && fl) {
                cJSON_AddItemToArray(fs, cJSON_CreateBool(s));
                cJSON_AddItemToArray(fl, cJSON_CreateBool(l));
            }
        }
        ps += all_s, pl += all_l;
        if (!rc && r->samples) {
            cJSON *sm = cJSON_CreateObject();
            cJSON_AddNumberToObject(sm, "doc", i);
            cJSON_AddStringToObject(sm, "prompt", prompts[i]);
            cJSON_AddStringToObject(sm, "response", answer[i]);
            cJSON_AddItemToObject(sm, "instruction_id_list", cJSON_Duplicate(ids, 1));
            cJSON_AddItemToObject(sm, "follow_strict", fs), fs = NULL;
            cJSON_AddItemToObject(sm, "follow_loose", fl), fl = NULL;
            cJSON_AddBoolToObject(sm, "prompt_strict", all_s);
            cJSON_AddBoolToObject(sm, "prompt_loose", all_l);
            rc = eval_sample_add(r, sm);
        }
        cJSON_Delete(fs), cJSON_Delete(fl);
    }
    if (!rc) {
        r->n = n;
        eval_add_rate(r, "prompt_level_strict_acc", ps, n);
        eval_add_rate(r, "inst_level_strict_acc", is, n_inst);
        eval_add_rate(r, "prompt_level_loose_acc", pl, n);
        eval_add_rate(r, "inst_level_loose_acc", il, n_inst);
    }
    for (int i = 0; prompts && i < n; i++)
        free(prompts[i]);
    if (res)
        llm_gen_results_release(res, n);
    free(res), free(prompts), free(answer);
    records_release(&recs), records_release(&resp);
    if (rc)
        llm_eval_result_release(r);
    return rc;
}

/* ---- judge ---- */

/* The comparison prompt; the judge's answer is scored as " A" or " B". */
static const char JUDGE_PROMPT[] = "Below are a question and two responses. Decide which response is better.\n\n"
                                   "### Question:\n%s\n\n### Response A:\n%s\n\n### Response B:\n%s\n\n"
                                   "### Better response:";

static int judge_record(const cJSON *o, const char **why)
{
    if (str_of(o, "prompt") && ((str_of(o, "a") && str_of(o, "b")) || str_of(o, "reference")))
        return 1;
    *why = "expected {\"prompt\", \"a\", \"b\"} (or {\"prompt\", \"reference\"} with --model)";
    return 0;
}

static char *judge_prompt(const char *q, const char *a, const char *b)
{
    size_t n = sizeof(JUDGE_PROMPT) + strlen(q) + strlen(a) + strlen(b);
    char *s = llm_malloc(n, "a judge prompt");
    if (s)
        snprintf(s, n, JUDGE_PROMPT, q, a, b);
    return s;
}

int llm_eval_judge(struct llm_model *judge, const struct llm_tokenizer *judge_tok, struct llm_model *m,
                   const struct llm_tokenizer *tok, const char *path, const struct llm_eval_opts *o,
                   struct llm_eval_result *r)
{
    memset(r, 0, sizeof(*r));
    struct records recs = {0};
    int rc = records_read(&recs, path, 0, judge_record);
    const int n = recs.n;
    const char **a = llm_calloc((size_t)(n ? n : 1), sizeof(char *), "pairs");
    const char **b = llm_calloc((size_t)(n ? n : 1), sizeof(char *), "pairs");
    char **prompts = llm_calloc((size_t)(n ? n : 1), sizeof(char *), "prompts");
    struct llm_gen_result *res = NULL;
    if (!rc && (!a || !b || !prompts))
        rc = LLM_ENOMEM;
    int need_gen = 0;
    for (int i = 0; !rc && i < n; i++) {
        a[i] = str_of(recs.v[i], "a"), b[i] = str_of(recs.v[i], "b");
        if (!a[i] || !b[i])
            need_gen = 1, b[i] = str_of(recs.v[i], "reference"), a[i] = NULL;
        if (!(prompts[i] = llm_strdup(str_of(recs.v[i], "prompt"))))
            rc = LLM_ENOMEM;
    }
    if (!rc && need_gen && !m)
        rc = llm_err(LLM_EUSAGE, "%s has {\"prompt\", \"reference\"} records: --model must generate the responses "
                     "to compare", path);
    if (!rc && need_gen) {
        struct llm_progress prog;
        eval_progress_start(&prog, o, "gen", (uint64_t)n);
        struct llm_gen_opts go = o->gen;
        go.truncate = LLM_GEN_TRUNCATE_LEFT, go.allow_special = 0;
        rc = (res = llm_calloc((size_t)n, sizeof(*res), "responses")) ? eval_generate(m, tok, prompts, n, &go, res,
                                                                                      &prog) : LLM_ENOMEM;
        llm_progress_finish(&prog);
        for (int i = 0; !rc && i < n; i++)
            if (!a[i])
                a[i] = res[i].completion;
    }
    /* 4 requests a pair: (a, b) -> " A", " B"; (b, a) -> " A", " B" */
    struct llm_ids *ids = llm_calloc((size_t)n * 8, sizeof(struct llm_ids), "requests");
    struct llm_ll_req *req = llm_calloc((size_t)n * 4, sizeof(*req), "requests");
    struct llm_ll_out *out = llm_calloc((size_t)n * 4, sizeof(*out), "requests");
    struct llm_tok_encoder *e = NULL;
    if (!rc && (!ids || !req || !out))
        rc = LLM_ENOMEM;
    if (!rc)
        rc = llm_tok_encoder_new(judge_tok, &e);
    int64_t eot = llm_gen_default_eot(judge_tok);
    for (int i = 0; !rc && i < n; i++) {
        for (int order = 0; !rc && order < 2; order++) {
            char *p = order ? judge_prompt(prompts[i], b[i], a[i]) : judge_prompt(prompts[i], a[i], b[i]);
            for (int c = 0; !rc && p && c < 2; c++) {
                int q = 4 * i + 2 * order + c;
                rc = eval_encode_pair(e, eot, p, c ? " B" : " A", &ids[2 * q], &ids[2 * q + 1]);
                req[q] = (struct llm_ll_req){(const int32_t *)ids[2 * q].v, (int)ids[2 * q].n,
                                             (const int32_t *)ids[2 * q + 1].v, (int)ids[2 * q + 1].n};
            }
            if (!p)
                rc = LLM_ENOMEM;
            free(p);
        }
    }
    if (!rc) {
        struct llm_progress prog;
        eval_progress_start(&prog, o, "req", (uint64_t)n * 4);
        rc = llm_eval_loglik(judge, req, n * 4, o->batch, out, &prog);
        llm_progress_finish(&prog);
    }
    if (!rc)
        rc = eval_samples_init(r, o);
    double wins = 0, pref = 0, consistent = 0, agree = 0;
    int64_t labelled = 0;
    double *wv = rc ? NULL : llm_malloc((size_t)(n ? n : 1) * sizeof(double), "outcomes");
    if (!rc && !wv)
        rc = LLM_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        const struct llm_ll_out *x = out + 4 * i;
        /* P(a better) in each order: a 2-way softmax over the answers " A", " B" */
        double p1 = 1 / (1 + exp(x[1].logprob - x[0].logprob));
        double p2 = 1 / (1 + exp(x[2].logprob - x[3].logprob));
        double p = 0.5 * (p1 + p2);
        double win = p > 0.5 ? 1 : p < 0.5 ? 0 : 0.5;
        wins += win, pref += p, wv[i] = win;
        consistent += (p1 > 0.5) == (p2 > 0.5);
        const char *label = str_of(recs.v[i], "label");
        if (label && (!strcmp(label, "a") || !strcmp(label, "b"))) {
            labelled++;
            agree += win == (label[0] == 'a' ? 1 : 0);
        }
        if (r->samples) {
            cJSON *sm = cJSON_CreateObject();
            cJSON_AddNumberToObject(sm, "doc", i);
            cJSON_AddStringToObject(sm, "prompt", prompts[i]);
            cJSON_AddStringToObject(sm, "a", a[i]);
            cJSON_AddStringToObject(sm, "b", b[i]);
            cJSON_AddNumberToObject(sm, "pref_a", p);
            cJSON_AddNumberToObject(sm, "pref_a_ab", p1);
            cJSON_AddNumberToObject(sm, "pref_a_ba", p2);
            rc = eval_sample_add(r, sm);
        }
    }
    if (!rc) {
        r->n = n;
        /* win rate: mean of outcomes in {0, 1/2, 1}; its standard error from
         * the sample variance, which the 1/2s make differ from p (1 - p) */
        double var = 0;
        for (int i = 0; i < n; i++)
            var += (wv[i] - wins / n) * (wv[i] - wins / n);
        eval_add_metric(r, "win_rate", wins / n, n > 1 ? sqrt(var / (n - 1) / n) : NAN);
        eval_add_metric(r, "pref_a", pref / n, NAN);
        eval_add_rate(r, "consistency", consistent, n);
        if (labelled)
            eval_add_rate(r, "agreement", agree, labelled);
    }
    for (int i = 0; ids && i < 8 * n; i++)
        llm_ids_release(&ids[i]);
    for (int i = 0; prompts && i < n; i++)
        free(prompts[i]);
    if (res)
        llm_gen_results_release(res, n);
    free(res), free(prompts), free(a), free(b), free(ids), free(req), free(out), free(wv);
    llm_tok_encoder_free(e);
    records_release(&recs);
    if (rc)
        llm_eval_result_release(r);
    return rc;
}
