/* tok_json.c: Hugging Face tokenizer.json for byte-level BPE: the GPT-2
 * form (ByteLevel pre-tokenizer with its regex) and the Llama 3 / Qwen2 /
 * cl100k form (Sequence of Split(regex) + ByteLevel(use_regex false)).
 * Anything we could not reproduce exactly is refused with a reason. */
#include "tok_impl.h"
#include "core/err.h"
#include "core/file.h"
#include "core/str.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

/* GPT-2's pattern (openai/gpt-2 encoder.py), which HF's ByteLevel uses. */
const char *const LLM_TOK_GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define MAX_TOKENIZER_JSON (1u << 30)

static int is_null_or(const cJSON *x, int (*ok)(const cJSON *))
{
    return !x || cJSON_IsNull(x) || ok(x);
}
static int is_empty_string(const cJSON *x) { return cJSON_IsString(x) && !x->valuestring[0]; }

/* Reads a ByteLevel pre-tokenizer object; sets the GPT-2 pattern if use_regex. */
static int read_bytelevel(struct llm_tokenizer *t, const cJSON *pt, int regex_allowed)
{
    const cJSON *aps = cJSON_GetObjectItem(pt, "add_prefix_space");
    const cJSON *ur = cJSON_GetObjectItem(pt, "use_regex");
    t->add_prefix_space = cJSON_IsTrue(aps);
    int use_regex = !ur || cJSON_IsTrue(ur); /* HF's default is true */
    if (use_regex) {
        if (!regex_allowed)
            return llm_err(LLM_EUNSUPPORTED,
                           "pre_tokenizer: a Split followed by ByteLevel with use_regex true is not supported");
        t->pattern = llm_strdup(LLM_TOK_GPT2_PATTERN);
        t->pattern_is_bytelevel = 1;
        if (!t->pattern)
            return LLM_ENOMEM;
    }
    return 0;
}

static int read_pretokenizer(struct llm_tokenizer *t, const cJSON *pt)
{
    if (!pt || cJSON_IsNull(pt))
        return llm_err(LLM_EUNSUPPORTED, "pre_tokenizer: missing (byte-level BPE needs ByteLevel)");
    const cJSON *type = cJSON_GetObjectItem(pt, "type");
    if (!cJSON_IsString(type))
        return llm_err(LLM_EFORMAT, "pre_tokenizer: no type");
    if (!strcmp(type->valuestring, "ByteLevel"))
        return read_bytelevel(t, pt, 1);
    if (strcmp(type->valuestring, "Sequence"))
        return llm_err(LLM_EUNSUPPORTED, "pre_tokenizer type '%s' is not supported (ByteLevel or Sequence of Split + ByteLevel)",
                       type->valuestring);
    const cJSON *seq = cJSON_GetObjectItem(pt, "pretokenizers");
    int n = cJSON_GetArraySize(seq), saw_split = 0, saw_bl = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *p = cJSON_GetArrayItem(seq, i);
        const cJSON *ty = cJSON_GetObjectItem(p, "type");
        const char *ts = cJSON_IsString(ty) ? ty->valuestring : "";
        if (!strcmp(ts, "Split") && !saw_split && !saw_bl) {
            const cJSON *pat = cJSON_GetObjectItem(p, "pattern");
            const cJSON *rx = cJSON_GetObjectItem(pat, "Regex");
            const cJSON *str = cJSON_GetObjectItem(pat, "String");
            const cJSON *beh = cJSON_GetObjectItem(p, "behavior");
            const cJSON *inv = cJSON_GetObjectItem(p, "invert");
            if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || cJSON_IsTrue(inv))
                return llm_err(LLM_EUNSUPPORTED,
                               "pre_tokenizer Split: only behavior Isolated without invert is supported");
            if (cJSON_IsString(rx))
                t->pattern = llm_strdup(rx->valuestring);
            else if (cJSON_IsString(str)) { /* a literal: quote it for PCRE2 */
                size_t len = strlen(str->valuestring);
                t->pattern = llm_malloc(len + 5, "a pattern");
                if (t->pattern)
                    snprintf(t->pattern, len + 5, "\\Q%s\\E", str->valuestring);
            } else
                return llm_err(LLM_EFORMAT, "pre_tokenizer Split: no pattern");
            if (!t->pattern)
                return LLM_ENOMEM;
            saw_split = 1;
        } else if (!strcmp(ts, "ByteLevel") && !saw_bl) {
            int rc = read_bytelevel(t, p, !saw_split);
            if (rc)
                return rc;
            saw_bl = 1;
        } else if (!strcmp(ts, "Digits") || !strcmp(ts, "Punctuation") ||
                   !strcmp(ts, "Whitespace") || !strcmp(ts, "Metaspace") || ts[0]) {
            return llm_err(LLM_EUNSUPPORTED, "pre_tokenizer Sequence: '%s' is not supported", ts);
        }
    }
    if (!saw_bl)
        return llm_err(LLM_EUNSUPPORTED, "pre_tokenizer: no ByteLevel step (not a byte-level BPE)");
    return 0;
}

/* Adds token id -> bytes (growing the id arrays). */
struct builder {
    struct llm_tokenizer *t;
    size_t blob_n, blob_cap;
    uint32_t cap;
};

static int set_token(struct builder *b, uint32_t id, const char *bytes, size_t n)
{
    struct llm_tokenizer *t = b->t;
    if (id >= (1u << 30))
        return llm_err(LLM_EFORMAT, "token id %u is too large", id);
    if (id >= b->cap) {
        uint32_t ncap = b->cap ? b->cap : 1024;
        while (ncap <= id)
            ncap *= 2;
        uint64_t *o = realloc(t->tok_off, ncap * sizeof(*o));
        if (o)
            t->tok_off = o;
        uint32_t *l = realloc(t->tok_len, ncap * sizeof(*l));
        if (l)
            t->tok_len = l;
        if (!o || !l)
            return llm_err(LLM_ENOMEM, "out of memory for the vocabulary");
        for (uint32_t i = b->cap; i < ncap; i++)
            t->tok_len[i] = UINT32_MAX;
        b->cap = ncap;
    }
    if (b->blob_n + n > b->blob_cap) {
        size_t nc = b->blob_cap ? b->blob_cap * 2 : 1 << 20;
        while (nc < b->blob_n + n)
            nc *= 2;
        char *p = realloc(t->blob, nc);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for the vocabulary");
        t->blob = p, b->blob_cap = nc;
    }
    memcpy(t->blob + b->blob_n, bytes, n);
    t->tok_off[id] = b->blob_n;
    t->tok_len[id] = (uint32_t)n;
    b->blob_n += n;
    if (id + 1 > t->n_vocab)
        t->n_vocab = id + 1;
    return 0;
}

static int read_model(struct llm_tokenizer *t, struct builder *b, const cJSON *model)
{
    const cJSON *type = cJSON_GetObjectItem(model, "type");
    if (!cJSON_IsString(type))
        return llm_err(LLM_EFORMAT, "model: no type");
    if (strcmp(type->valuestring, "BPE"))
        return llm_err(LLM_EUNSUPPORTED, "model type '%s' is not supported (only byte-level BPE)",
                       type->valuestring);
    if (cJSON_IsTrue(cJSON_GetObjectItem(model, "byte_fallback")))
        return llm_err(LLM_EUNSUPPORTED, "model.byte_fallback is not supported (SentencePiece-style BPE, not byte-level)");
    if (!is_null_or(cJSON_GetObjectItem(model, "dropout"), NULL) &&
        cJSON_GetObjectItem(model, "dropout")->valuedouble != 0)
        return llm_err(LLM_EUNSUPPORTED, "model.dropout is not supported");
    const cJSON *cs = cJSON_GetObjectItem(model, "continuing_subword_prefix");
    const cJSON *ew = cJSON_GetObjectItem(model, "end_of_word_suffix");
    if (!is_null_or(cs, is_empty_string) || !is_null_or(ew, is_empty_string))
        return llm_err(LLM_EUNSUPPORTED, "model.continuing_subword_prefix / end_of_word_suffix are not supported");
    /* fuse_unk and unk_token only matter for unknown symbols, which byte-level BPE never has. */
    t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItem(model, "ignore_merges"));

    const cJSON *vocab = cJSON_GetObjectItem(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return llm_err(LLM_EFORMAT, "model.vocab: expected an object of token -> id");
    struct tok_strmap spell; /* vocabulary spelling -> id, to resolve merges */
    int rc = tok_strmap_init(&spell);
    if (rc)
        return rc;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= (1u << 30) ||
            v->valuedouble != (double)(uint32_t)v->valuedouble) {
            rc = llm_err(LLM_EFORMAT, "model.vocab: token '%.40s' has no valid id", v->string);
            goto out;
        }
        size_t n = strlen(v->string);
        if (n + 1 > tmp_cap) {
            tmp_cap = 2 * n + 64;
            char *p = realloc(tmp, tmp_cap);
            if (!p) {
                rc = llm_err(LLM_ENOMEM, "out of memory reading the vocabulary");
                goto out;
            }
            tmp = p;
        }
        long len = tok_vocab_to_bytes(v->string, n, tmp);
        if (len < 0) {
            rc = llm_err(LLM_EUNSUPPORTED, "model.vocab: token '%.40s' is not in the byte-level alphabet (not a byte-level BPE)",
                         v->string);
            goto out;
        }
        uint32_t id = (uint32_t)v->valuedouble, old;
        if (id < b->cap && t->tok_len[id] != UINT32_MAX) {
            rc = llm_err(LLM_EFORMAT, "model.vocab: id %u is used twice", id);
            goto out;
        }
        if (tok_strmap_get(&spell, v->string, n, &old)) {
            rc = llm_err(LLM_EFORMAT, "model.vocab: token '%.40s' appears twice", v->string);
            goto out;
        }
        if ((rc = set_token(b, id, tmp, (size_t)len)) || (rc = tok_strmap_put(&spell, v->string, n, id)))
            goto out;
    }

    const cJSON *merges = cJSON_GetObjectItem(model, "merges");
    int nm = cJSON_GetArraySize(merges);
    if (merges && !cJSON_IsArray(merges)) {
        rc = llm_err(LLM_EFORMAT, "model.merges: expected an array");
        goto out;
    }
    t->merges = llm_malloc((size_t)(nm ? nm : 1) * sizeof(*t->merges), "the merges");
    if (!t->merges) {
        rc = LLM_ENOMEM;
        goto out;
    }
    int r = 0;
    for (const cJSON *m = merges ? merges->child : NULL; m; m = m->next, r++) {
        char *left = NULL, *right = NULL, *pair = NULL;
        if (cJSON_IsString(m)) { /* "a b" */
            pair = llm_strdup(m->valuestring);
            char *sp = pair ? strchr(pair, ' ') : NULL;
            if (!sp || strchr(sp + 1, ' ')) {
                free(pair);
                rc = llm_err(LLM_EFORMAT, "model.merges[%d]: expected \"a b\"", r);
                goto out;
            }
            *sp = '\0';
            left = pair, right = sp + 1;
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            left = m->child->valuestring, right = m->child->next->valuestring;
        } else {
            rc = llm_err(LLM_EFORMAT, "model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", r);
            goto out;
        }
        uint32_t a, bb, res;
        size_t la = strlen(left), lb = strlen(right);
        char *cat = llm_malloc(la + lb + 1, "a merge");
        if (!cat) {
            free(pair);
            rc = LLM_ENOMEM;
            goto out;
        }
        memcpy(cat, left, la);
        memcpy(cat + la, right, lb + 1);
        int ok = tok_strmap_get(&spell, left, la, &a) && tok_strmap_get(&spell, right, lb, &bb) &&
                 tok_strmap_get(&spell, cat, la + lb, &res);
        if (!ok)
            rc = llm_err(LLM_EFORMAT, "model.merges[%d]: '%.40s' + '%.40s' are not both in the vocabulary with their concatenation",
                         r, left, right);
        free(cat);
        free(pair);
        if (!ok)
            goto out;
        t->merges[r][0] = a, t->merges[r][1] = bb, t->merges[r][2] = res;
    }
    t->n_merges = (uint32_t)r;
out:
    free(tmp);
    tok_strmap_release(&spell);
    return rc;
}

static int read_added(struct llm_tokenizer *t, struct builder *b, const cJSON *added)
{
    if (!added || cJSON_IsNull(added))
        return 0;
    if (!cJSON_IsArray(added))
        return llm_err(LLM_EFORMAT, "added_tokens: expected an array");
    int n = cJSON_GetArraySize(added);
    t->added = llm_calloc((size_t)(n ? n : 1), sizeof(*t->added), "the added tokens");
    if (!t->added)
        return LLM_ENOMEM;
    for (const cJSON *a = added->child; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItem(a, "id"), *c = cJSON_GetObjectItem(a, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1u << 30) ||
            !cJSON_IsString(c) || !c->valuestring[0])
            return llm_err(LLM_EFORMAT, "added_tokens[%u]: needs an id and a non-empty content",
                           t->n_added);
        struct tok_added *x = &t->added[t->n_added++];
        x->id = (uint32_t)id->valuedouble;
        x->len = (uint32_t)strlen(c->valuestring);
        x->special = cJSON_IsTrue(cJSON_GetObjectItem(a, "special"));
        if (!(x->content = llm_strdup(c->valuestring)))
            return LLM_ENOMEM;
        size_t len;
        const char *have = x->id < b->cap ? llm_tok_token_bytes(t, x->id, &len) : NULL;
        if (have && (len != x->len || memcmp(have, x->content, len)))
            return llm_err(LLM_EFORMAT, "added_tokens: id %u is '%s' but the vocabulary has another token there",
                           x->id, x->content);
        int rc = have ? 0 : set_token(b, x->id, x->content, x->len);
        if (rc)
            return rc;
    }
    return 0;
}

int llm_tok_load_json(struct llm_tokenizer **out, const cJSON *root, const char *name)
{
    int rc = 0;
    struct llm_tokenizer *t = llm_calloc(1, sizeof(*t), "a tokenizer");
    struct builder b = {t, 0, 0, 0};
    if (!t)
        return LLM_ENOMEM;
    if (!cJSON_IsObject(root) || !cJSON_IsObject(cJSON_GetObjectItem(root, "model"))) {
        rc = llm_err(LLM_EFORMAT, "no \"model\" object (not a Hugging Face tokenizer.json)");
        goto out;
    }
    const cJSON *norm = cJSON_GetObjectItem(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const cJSON *ty = cJSON_GetObjectItem(norm, "type");
        const char *nname = cJSON_IsString(ty) ? ty->valuestring : "?";
        if (!strcmp(nname, "NFC")) { /* Qwen2 */
            t->nfc = 1;
        } else {
            rc = llm_err(LLM_EUNSUPPORTED, "normalizer '%s' is not supported (none, or NFC)", nname);
            goto out;
        }
    }
    if ((rc = read_model(t, &b, cJSON_GetObjectItem(root, "model"))) ||
        (rc = read_added(t, &b, cJSON_GetObjectItem(root, "added_tokens"))) ||
        (rc = read_pretokenizer(t, cJSON_GetObjectItem(root, "pre_tokenizer"))) ||
        (rc = tok_finalize(t)))
        goto out;
out:
    if (rc) {
        llm_tok_free(t);
        return llm_err_wrap(rc, "%s", name);
    }
    *out = t;
    return 0;
}

int llm_tok_load(struct llm_tokenizer **out, const char *path)
{
    char *text = NULL;
    size_t len;
    int rc = llm_read_file(path, MAX_TOKENIZER_JSON, &text, &len);
    if (rc)
        return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root)
        return llm_err(LLM_EFORMAT, "'%s' is not valid JSON", path);
    char name[4200];
    snprintf(name, sizeof(name), "'%s'", path);
    rc = llm_tok_load_json(out, root, name);
    cJSON_Delete(root);
    return rc;
}

/* ---- saving ---- */
static cJSON *bytelevel_obj(int use_regex)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", 0);
    cJSON_AddBoolToObject(o, "trim_offsets", 1);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

int llm_tok_save(const struct llm_tokenizer *t, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    /* HF lists added tokens by id. */
    for (uint32_t id = 0; id < t->n_vocab; id++)
        for (uint32_t k = 0; k < t->n_added; k++) {
            const struct tok_added *a = &t->added[k];
            if (a->id != id)
                continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", a->id);
            cJSON_AddStringToObject(o, "content", a->content);
            cJSON_AddBoolToObject(o, "single_word", 0);
            cJSON_AddBoolToObject(o, "lstrip", 0);
            cJSON_AddBoolToObject(o, "rstrip", 0);
            cJSON_AddBoolToObject(o, "normalized", 0);
            cJSON_AddBoolToObject(o, "special", a->special);
            cJSON_AddItemToArray(added, o);
        }
    if (t->nfc) {
        cJSON *nf = cJSON_AddObjectToObject(root, "normalizer");
        cJSON_AddStringToObject(nf, "type", "NFC");
    } else {
        cJSON_AddNullToObject(root, "normalizer");
    }
    if (t->pattern && !t->pattern_is_bytelevel) {
        cJSON *seq = cJSON_CreateObject();
        cJSON_AddStringToObject(seq, "type", "Sequence");
        cJSON *arr = cJSON_AddArrayToObject(seq, "pretokenizers");
        cJSON *split = cJSON_CreateObject();
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON *pat = cJSON_AddObjectToObject(split, "pattern");
        cJSON_AddStringToObject(pat, "Regex", t->pattern);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddBoolToObject(split, "invert", 0);
        cJSON_AddItemToArray(arr, split);
        cJSON_AddItemToArray(arr, bytelevel_obj(0));
        cJSON_AddItemToObject(root, "pre_tokenizer", seq);
    } else {
        cJSON_AddItemToObject(root, "pre_tokenizer", bytelevel_obj(t->pattern != NULL));
    }
    cJSON *post = bytelevel_obj(0);
    cJSON_ReplaceItemInObject(post, "trim_offsets", cJSON_CreateBool(0));
    cJSON_AddItemToObject(root, "post_processor", post);
    cJSON *dec = bytelevel_obj(1);
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", t->ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    int rc = 0;
    char *sp = NULL, *sp2 = NULL;
    size_t maxlen = 0;
    for (uint32_t id = 0; id < t->n_vocab; id++)
        if (t->tok_len[id] != UINT32_MAX && t->tok_len[id] > maxlen)
            maxlen = t->tok_len[id];
    sp = malloc(2 * maxlen + 1);
    sp2 = malloc(2 * maxlen + 1);
    if (!root || !sp || !sp2) {
        rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
        goto out;
    }
    for (uint32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *bytes = llm_tok_token_bytes(t, id, &len);
        if (!bytes)
            continue;
        int special = 0;
        for (uint32_t k = 0; k < t->n_added; k++)
            special |= t->added[k].id == id;
        if (special) { /* HF keeps added tokens in the vocab too, spelled as they are */
            for (uint32_t k = 0; k < t->n_added; k++)
                if (t->added[k].id == id)
                    cJSON_AddNumberToObject(vocab, t->added[k].content, id);
            continue;
        }
        tok_bytes_to_vocab(bytes, len, sp);
        cJSON_AddNumberToObject(vocab, sp, id);
    }
    for (uint32_t r = 0; r < t->n_merges; r++) {
        size_t la, lb;
        const char *a = llm_tok_token_bytes(t, t->merges[r][0], &la);
        const char *b = llm_tok_token_bytes(t, t->merges[r][1], &lb);
        tok_bytes_to_vocab(a, la, sp);
        tok_bytes_to_vocab(b, lb, sp2);
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(sp));
        cJSON_AddItemToArray(pair, cJSON_CreateString(sp2));
        cJSON_AddItemToArray(merges, pair);
    }
    char *json = cJSON_Print(root);
    if (!json) {
        rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
        goto out;
    }
    struct llm_atomic f;
    if (!(rc = llm_atomic_open(&f, path))) {
        rc = llm_fwrite(f.f, json, strlen(json), path);
        if (!rc)
            rc = llm_fwrite(f.f, "\n", 1, path);
        if (rc)
            llm_atomic_abort(&f);
        else
            rc = llm_atomic_commit(&f);
    }
    cJSON_free(json);
out:
    free(sp), free(sp2);
    cJSON_Delete(root);
    return rc;
}
