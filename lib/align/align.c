/* align.c: the starting checkpoint and tokenizer, chat templates, and
 * examples tokenized with loss masks, for the alignment tasks. */
#include <stdlib.h>
#include <string.h>

#include "align/align.h"
#include "core/jsonl.h"
#include "core/rng.h"
#include "core/err.h"
#include "core/log.h"
#include "infer/generate.h"
#include "model/model_io.h"

void llm_align_base_release(struct llm_align_base *b)
{
    llm_tok_encoder_free(b->enc);
    llm_tok_free(b->tok);
    cJSON_Delete(b->tok_json);
    memset(b, 0, sizeof(*b));
}

static int base_from_json(struct llm_align_base *b, cJSON *tj, const char *name)
{
    llm_tok_encoder_free(b->enc);
    llm_tok_free(b->tok);
    b->enc = NULL, b->tok = NULL;
    int rc = llm_tok_load_json(&b->tok, tj, name);
    if (!rc)
        rc = llm_tok_encoder_new(b->tok, &b->enc);
    if (!rc)
        b->eot = llm_gen_default_eot(b->tok);
    return rc;
}

int llm_align_load(struct llm_config *cfg, struct llm_backend *be, struct llm_model *m, struct llm_align_base *b)
{
    memset(b, 0, sizeof(*b));
    const char *path = cfg->train.init_from;
    if (!path[0])
        return llm_err(LLM_EINVAL, "train.init_from: the checkpoint to start from is required (a pretrain "
                       "run's final.llm, or `llm import` of a Hugging Face model)");
    if (cfg->distill.teacher && cfg->distill.teacher[0])
        return llm_err(LLM_EINVAL, "distill.teacher: only `llm pretrain` distills; unset it for alignment");
    cJSON *header = NULL;
    int rc = llm_model_load(m, path, be, &header);
    if (rc)
        return llm_err_wrap(rc, "train.init_from");
    cJSON *tj = cJSON_DetachItemFromObjectCaseSensitive(header, "tokenizer");
    cJSON_Delete(header);
    if (!tj)
        rc = llm_err(LLM_EINVAL, "train.init_from: %s has no tokenizer in its header", path);
    else if (!(rc = base_from_json(b, tj, path)))
        b->tok_json = tj, tj = NULL;
    cJSON_Delete(tj);
    if (!rc && llm_tok_vocab_size(b->tok) > (uint32_t)m->cfg.vocab_size)
        rc = llm_err(LLM_EINVAL, "train.init_from: the tokenizer has %u ids, the model %d", llm_tok_vocab_size(b->tok),
                     m->cfg.vocab_size);
    if (rc) {
        llm_model_release(m);
        llm_align_base_release(b);
        return rc;
    }
    cfg->model = m->cfg; /* no strings in the model section: a plain copy */
    return 0;
}

cJSON *llm_align_header(const struct llm_align_base *b)
{
    cJSON *h = cJSON_CreateObject();
    cJSON *t = cJSON_Duplicate(b->tok_json, 1);
    if (!h || !t) {
        cJSON_Delete(h), cJSON_Delete(t);
        llm_err(LLM_ENOMEM, "out of memory");
        return NULL;
    }
    cJSON_AddItemToObject(h, "tokenizer", t);
    return h;
}

/* ---- chat templates ----
 * simple:  "<|system|>\n" / "<|user|>\n" / "<|assistant|>\n" + content + "<|end|>\n"
 * chatml:  "<|im_start|>" + role + "\n" + content + "<|im_end|>\n"
 * Learned: an assistant's content and its end token. */

struct chat_style {
    const char *const *specials;
    int n_specials;
    const char *end;      /* after the content; learned */
};

static const char *const simple_specials[] = {"<|system|>", "<|user|>", "<|assistant|>", "<|end|>"};
static const char *const chatml_specials[] = {"<|im_start|>", "<|im_end|>"};
static const struct chat_style styles[] = {
    [LLM_CHAT_SIMPLE] = {simple_specials, 4, "<|end|>"},
    [LLM_CHAT_CHATML] = {chatml_specials, 2, "<|im_end|>"},
};

/* The markup before a message's content (malloc'd), or NULL for an unknown role. */
static char *chat_head(enum llm_chat_template t, const char *role)
{
    if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
        return NULL;
    size_t n = strlen(role) + 32;
    char *s = malloc(n);
    if (s && t == LLM_CHAT_SIMPLE)
        snprintf(s, n, "<|%s|>\n", role);
    else if (s)
        snprintf(s, n, "<|im_start|>%s\n", role);
    return s;
}

char *llm_align_chat_prompt(enum llm_chat_template t, const char *user)
{
    char *h = chat_head(t, "user"), *a = chat_head(t, "assistant");
    size_t n = strlen(user) + (h ? strlen(h) : 0) + (a ? strlen(a) : 0) + 32;
    char *s = h && a ? malloc(n) : NULL;
    if (s)
        snprintf(s, n, "%s%s%s\n%s", h, user, styles[t].end, a);
    free(h), free(a);
    return s;
}

int llm_align_add_template_tokens(struct llm_align_base *b, struct llm_model *m, enum llm_chat_template t)
{
    return llm_align_add_specials(b, m, styles[t].specials, styles[t].n_specials);
}

int llm_align_add_specials(struct llm_align_base *b, struct llm_model *m, const char *const *names, int n)
{
    uint32_t V = llm_tok_vocab_size(b->tok);
    int added = 0;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(b->tok_json, "added_tokens");
    cJSON *model = cJSON_GetObjectItemCaseSensitive(b->tok_json, "model");
    cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!arr && !(arr = cJSON_AddArrayToObject(b->tok_json, "added_tokens")))
        return llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        if (llm_tok_special_id(b->tok, names[i]) >= 0)
            continue;
        /* HF's added_tokens entry; the vocab lists added tokens too */
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return llm_err(LLM_ENOMEM, "out of memory");
        cJSON_AddNumberToObject(o, "id", V + added);
        cJSON_AddStringToObject(o, "content", names[i]);
        cJSON_AddBoolToObject(o, "single_word", 0);
        cJSON_AddBoolToObject(o, "lstrip", 0);
        cJSON_AddBoolToObject(o, "rstrip", 0);
        cJSON_AddBoolToObject(o, "normalized", 0);
        cJSON_AddBoolToObject(o, "special", 1);
        cJSON_AddItemToArray(arr, o);
        if (cJSON_IsObject(vocab))
            cJSON_AddNumberToObject(vocab, names[i], V + added);
        added++;
    }
    if (!added)
        return 0;
    int rc = base_from_json(b, b->tok_json, "the tokenizer with added special tokens");
    uint32_t V2 = rc ? 0 : llm_tok_vocab_size(b->tok);
    if (!rc && V2 > (uint32_t)m->cfg.vocab_size) {
        llm_info("added %d special tokens; vocabulary %d -> %u", added, m->cfg.vocab_size, V2);
        rc = llm_model_resize_vocab(m, (int)V2);
    }
    return rc;
}

/* ---- sequences ---- */

void llm_seq_release(struct llm_seq *s)
{
    free(s->ids), free(s->learn);
    memset(s, 0, sizeof(*s));
}

/* Appends ids with a learn flag. */
static int seq_push(struct llm_seq *s, int *cap, const uint32_t *ids, size_t n, int learn)
{
    if ((size_t)s->n + n > (size_t)*cap) {
        int c = *cap ? *cap : 64;
        while ((size_t)c < (size_t)s->n + n)
            c *= 2;
        int32_t *v = realloc(s->ids, (size_t)c * sizeof(int32_t));
        if (v)
            s->ids = v;
        uint8_t *l = v ? realloc(s->learn, (size_t)c) : NULL;
        if (!l)
            return llm_err(LLM_ENOMEM, "out of memory tokenizing");
        s->learn = l, *cap = c;
    }
    for (size_t i = 0; i < n; i++) {
        s->ids[s->n] = (int32_t)ids[i];
        s->learn[s->n++] = (uint8_t)learn;
    }
    s->n_learn += learn ? (int)n : 0;
    return 0;
}

/* Cuts s to max_len ids (the start kept); counts what stays learned. */
static int seq_cut(struct llm_seq *s, int max_len)
{
    if (s->n > max_len) {
        s->n = max_len, s->truncated = 1, s->n_learn = 0;
        for (int i = 0; i < s->n; i++)
            s->n_learn += s->learn[i];
    }
    /* the first id is never a target (nothing precedes it) */
    if (s->n && s->learn[0])
        s->learn[0] = 0, s->n_learn--;
    return s->n_learn > 0 ? 0 : llm_err(LLM_EINVAL, "nothing left to learn within %d tokens", max_len);
}

int llm_align_encode_pair(struct llm_align_base *b, const char *prompt, const char *response, int add_eot,
                          int max_len, struct llm_seq *out)
{
    memset(out, 0, sizeof(*out));
    struct llm_ids p = {0}, w = {0};
    size_t np = strlen(prompt), nr = strlen(response);
    char *whole = malloc(np + nr + 1);
    int rc = whole ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    int cap = 0;
    if (!rc) {
        memcpy(whole, prompt, np);
        memcpy(whole + np, response, nr + 1);
        rc = llm_tok_encode(b->enc, prompt, np, 0, &p);
    }
    if (!rc)
        rc = llm_tok_encode(b->enc, whole, np + nr, 0, &w);
    if (!rc && w.n <= p.n)
        rc = llm_err(LLM_EINVAL, "the response adds no tokens to its prompt");
    if (!rc && p.n == 0 && b->eot >= 0) { /* an empty prompt: condition on end-of-text */
        uint32_t e = (uint32_t)b->eot;
        rc = seq_push(out, &cap, &e, 1, 0);
    }
    if (!rc)
        rc = seq_push(out, &cap, w.v, p.n, 0);
    if (!rc)
        rc = seq_push(out, &cap, w.v + p.n, w.n - p.n, 1);
    if (!rc && add_eot && b->eot >= 0) {
        uint32_t e = (uint32_t)b->eot;
        rc = seq_push(out, &cap, &e, 1, 1);
    }
    if (!rc)
        rc = seq_cut(out, max_len);
    llm_ids_release(&p), llm_ids_release(&w);
    free(whole);
    if (rc)
        llm_seq_release(out);
    return rc;
}

static int push_text(struct llm_align_base *b, struct llm_seq *s, int *cap, const char *text, int special, int learn)
{
    struct llm_ids ids = {0};
    int rc = llm_tok_encode(b->enc, text, strlen(text), special, &ids);
    if (!rc)
        rc = seq_push(s, cap, ids.v, ids.n, learn);
    llm_ids_release(&ids);
    return rc;
}

int llm_align_encode_chat(struct llm_align_base *b, enum llm_chat_template t, const cJSON *messages, int max_len,
                          struct llm_seq *out)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return llm_err(LLM_EINVAL, "\"messages\": expected a non-empty array");
    int cap = 0, rc = 0, i = 0;
    const cJSON *msg;
    if (b->eot >= 0) { /* a document start, as in pretraining data */
        uint32_t e = (uint32_t)b->eot;
        rc = seq_push(out, &cap, &e, 1, 0);
    }
    cJSON_ArrayForEach(msg, messages) {
        if (rc)
            break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        char *head = cJSON_IsString(role) ? chat_head(t, role->valuestring) : NULL;
        if (!head || !cJSON_IsString(content)) {
            free(head);
            rc = llm_err(LLM_EINVAL, "messages[%d]: expected {\"role\": system|user|assistant, \"content\": string}", i);
            break;
        }
        int learn = !strcmp(role->valuestring, "assistant");
        if (!(rc = push_text(b, out, &cap, head, 1, 0)) && !(rc = push_text(b, out, &cap, content->valuestring, 0, learn)) &&
            !(rc = push_text(b, out, &cap, styles[t].end, 1, learn)))
            rc = push_text(b, out, &cap, "\n", 0, 0);
        free(head);
        i++;
    }
    if (!rc && out->n_learn == 0)
        rc = llm_err(LLM_EINVAL, "\"messages\": no assistant message to learn");
    if (!rc)
        rc = seq_cut(out, max_len);
    if (rc)
        llm_seq_release(out);
    return rc;
}

void llm_align_batch(const struct llm_seq *const *seqs, int rows, int32_t *tok, int32_t *tgt, int *Tb)
{
    int T = 1;
    for (int r = 0; r < rows; r++)
        if (seqs[r]->n - 1 > T)
            T = seqs[r]->n - 1;
    for (int r = 0; r < rows; r++) {
        const struct llm_seq *s = seqs[r];
        for (int t = 0; t < T; t++) {
            int in = t < s->n - 1;
            tok[(size_t)r * T + t] = in ? s->ids[t] : 0;
            tgt[(size_t)r * T + t] = in && s->learn && s->learn[t + 1] ? s->ids[t + 1] : -1;
        }
    }
    *Tb = T;
}

/* ---- example order ---- */

static void make_perm(uint32_t *perm, int n, uint64_t seed, int64_t epoch)
{
    struct llm_rng r;
    llm_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)(epoch + 1) * 0xD1B54A32D192ED03ull);
    for (int i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)llm_rng_below(&r, (uint64_t)i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

int llm_align_order_init(struct llm_align_order *o, int n, uint64_t seed)
{
    memset(o, 0, sizeof(*o));
    o->n = n, o->seed = seed, o->perm_epoch = -1;
    if (n < 1)
        return llm_err(LLM_EINVAL, "no examples");
    if (!(o->perm = malloc((size_t)n * sizeof(uint32_t))))
        return llm_err(LLM_ENOMEM, "out of memory");
    return 0;
}

void llm_align_order_release(struct llm_align_order *o)
{
    free(o->perm);
    memset(o, 0, sizeof(*o));
}

int llm_align_order_at(struct llm_align_order *o, int64_t epoch, int pos)
{
    if (o->perm_epoch != epoch) {
        make_perm(o->perm, o->n, o->seed, epoch);
        o->perm_epoch = epoch;
    }
    return (int)o->perm[pos];
}

int llm_align_order_next(struct llm_align_order *o)
{
    int i = llm_align_order_at(o, o->epoch, o->pos);
    if (++o->pos == o->n)
        o->pos = 0, o->epoch++;
    return i;
}

cJSON *llm_align_order_state(const struct llm_align_order *o)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) {
        llm_err(LLM_ENOMEM, "out of memory");
        return NULL;
    }
    cJSON_AddNumberToObject(j, "epoch", (double)o->epoch);
    cJSON_AddNumberToObject(j, "pos", o->pos);
    cJSON_AddNumberToObject(j, "examples", o->n);
    return j;
}

int llm_align_order_restore(struct llm_align_order *o, const cJSON *st)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(st, "epoch"), *p = cJSON_GetObjectItemCaseSensitive(st, "pos");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(st, "examples");
    if (!cJSON_IsNumber(e) || !cJSON_IsNumber(p) || !cJSON_IsNumber(n) || e->valuedouble < 0 || p->valuedouble < 0)
        return llm_err(LLM_EFORMAT, "the checkpoint's data position is not an alignment one");
    if ((int)n->valuedouble != o->n)
        llm_warn("the checkpoint was trained on %d examples, the data has %d: the order differs from an "
                 "uninterrupted run", (int)n->valuedouble, o->n);
    o->epoch = (int64_t)e->valuedouble;
    o->pos = (int)p->valuedouble % o->n;
    return 0;
}
