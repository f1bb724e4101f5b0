/* model_io.c: a model on disk (model_io.h): checkpoint save/load over
 * core/ckpt, export to safetensors and to Hugging Face folders, import back.
 * The HF name maps and layouts are one table (hf_maps) read both ways, so
 * export and import cannot disagree; docs/export.md describes them. */
#include "model/model_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/file.h"
#include "model/safetensors.h"
#include "tok/tok.h"

#define PIECE_FLOATS ((size_t)1 << 18) /* 1 MiB of f32: the unit of device transfers */
#define PATH_MAX_LEN 4096

/* dst = a/b, or LLM_EINVAL if it does not fit. */
static int join(char *dst, size_t n, const char *a, const char *b)
{
    int k = snprintf(dst, n, "%s/%s", a, b);
    return k < 0 || (size_t)k >= n ? llm_err(LLM_EINVAL, "path too long: '%s/%s'", a, b) : 0;
}

/* ---- save ---- */

static const char *const reserved_keys[] = {"format", "format_version", "config"};

static int save_header(cJSON **out, const struct llm_model_config *mc, const cJSON *extra, const char *path)
{
    struct llm_config c;
    int rc = llm_config_defaults(&c);
    cJSON *h = cJSON_CreateObject(), *cfg = NULL;
    if (!rc) {
        c.model = *mc;
        cfg = llm_config_to_json(&c);
    }
    llm_config_release(&c);
    if (rc || !h || !cfg) {
        cJSON_Delete(h);
        cJSON_Delete(cfg);
        return rc ? rc : llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    }
    cJSON_AddStringToObject(h, "format", LLM_MODEL_FORMAT);
    cJSON_AddNumberToObject(h, "format_version", LLM_MODEL_FORMAT_VERSION);
    cJSON_AddItemToObject(h, "config", cfg);
    if (extra && !cJSON_IsObject(extra))
        rc = llm_err(LLM_EINVAL, "%s: the extra header is not a JSON object", path);
    for (const cJSON *e = extra ? extra->child : NULL; !rc && e; e = e->next) {
        for (size_t k = 0; k < sizeof(reserved_keys) / sizeof(*reserved_keys); k++)
            if (!strcmp(e->string, reserved_keys[k]))
                rc = llm_err(LLM_EINVAL, "%s: the extra header may not set \"%s\"", path, e->string);
        cJSON *d = rc ? NULL : cJSON_Duplicate(e, 1);
        if (!rc && !d)
            rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
        if (d)
            cJSON_AddItemToObject(h, e->string, d);
    }
    if (rc) {
        cJSON_Delete(h);
        return rc;
    }
    *out = h;
    return 0;
}

/* Streams n floats of device memory at src into the open tensor of w. */
static int write_device(struct llm_ckpt_writer *w, const struct llm_backend *be, float *buf,
                        const float *src, size_t n)
{
    int rc = 0;
    for (size_t at = 0; !rc && at < n; at += PIECE_FLOATS) {
        size_t k = n - at < PIECE_FLOATS ? n - at : PIECE_FLOATS;
        rc = be->ops->download(be->ctx, buf, src + at, k * sizeof(float));
        if (!rc)
            rc = llm_ckpt_writer_append(w, buf, k * sizeof(float));
    }
    return rc;
}

int llm_model_save_state(const struct llm_model *m, const char *path, const cJSON *extra_header,
                         const struct llm_state_tensor *state, size_t nstate)
{
    cJSON *h = NULL;
    struct llm_ckpt_writer *w = NULL;
    float *buf = NULL;
    int rc = 0;
    for (size_t i = 0; !rc && i < nstate; i++)
        if (strncmp(state[i].name, LLM_STATE_PREFIX, strlen(LLM_STATE_PREFIX)))
            rc = llm_err(LLM_EINVAL, "%s: state tensor '%s' does not start with \"" LLM_STATE_PREFIX "\"",
                         path, state[i].name);
    if (!rc)
        rc = save_header(&h, &m->cfg, extra_header, path);
    if (!rc)
        rc = llm_ckpt_writer_open(&w, path, h, NULL);
    cJSON_Delete(h);
    if (!rc && !(buf = llm_malloc(PIECE_FLOATS * sizeof(float), "a download buffer")))
        rc = LLM_ENOMEM;
    const struct llm_backend *be = m->be;
    for (size_t i = 0; !rc && i < m->layout.n + nstate; i++) {
        const char *name;
        int ndim;
        const int64_t *shape;
        const float *src;
        size_t numel;
        if (i < m->layout.n) {
            const struct llm_param_spec *s = &m->layout.p[i];
            name = s->name, ndim = s->ndim, shape = s->shape, src = m->params + s->offset, numel = s->numel;
        } else {
            const struct llm_state_tensor *t = &state[i - m->layout.n];
            name = t->name, ndim = t->ndim, shape = t->shape, src = t->data, numel = t->numel;
        }
        rc = llm_ckpt_writer_begin(w, name, LLM_CKPT_F32, ndim, shape);
        if (!rc)
            rc = write_device(w, be, buf, src, numel);
        if (!rc)
            rc = llm_ckpt_writer_end(w);
        if (rc)
            llm_err_wrap(rc, "saving tensor '%s'", name);
    }
    free(buf);
    if (w)
        rc = rc ? (llm_ckpt_writer_abort(w), rc) : llm_ckpt_writer_commit(w);
    return rc;
}

int llm_model_save(const struct llm_model *m, const char *path, const cJSON *extra_header)
{
    return llm_model_save_state(m, path, extra_header, NULL, 0);
}

/* ---- reading a model checkpoint ---- */

static void fmt_shape(char *b, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(b, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(b + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n)
        snprintf(b + k, n - k, "]");
}

static int check_header(struct llm_model_file *f, const cJSON *h)
{
    const char *p = f->path;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(h, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(h, "format_version");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(h, "config");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, LLM_MODEL_FORMAT))
        return llm_err(LLM_EFORMAT, "%s: not a model checkpoint (header \"format\" is %s%s%s, expected "
                       "\"" LLM_MODEL_FORMAT "\")", p, cJSON_IsString(fmt) ? "\"" : "",
                       cJSON_IsString(fmt) ? fmt->valuestring : "missing", cJSON_IsString(fmt) ? "\"" : "");
    if (!cJSON_IsNumber(ver) || ver->valuedouble != floor(ver->valuedouble) || ver->valuedouble < 1)
        return llm_err(LLM_EFORMAT, "%s: header \"format_version\" is missing or not a version", p);
    if (ver->valuedouble > LLM_MODEL_FORMAT_VERSION)
        return llm_err(LLM_EUNSUPPORTED, "%s: model format version %.0f is newer than this build's %d", p,
                       ver->valuedouble, LLM_MODEL_FORMAT_VERSION);
    if (!cJSON_IsObject(cfg))
        return llm_err(LLM_EFORMAT, "%s: the header has no \"config\" object", p);
    if (cJSON_GetObjectItemCaseSensitive(h, "quantization"))
        return llm_err(LLM_EUNSUPPORTED, "%s: a quantized checkpoint (llm quantize): `llm generate` reads it; "
                       "export and training need the fp32 original", p);
    int rc = llm_config_from_json(&f->cfg, cfg);
    return rc ? llm_err_wrap(rc, "%s: header \"config\"", p) : 0;
}

/* Every layout tensor present as f32 with its shape; nothing else but
 * training state (names starting with LLM_STATE_PREFIX). */
static int check_tensors(struct llm_model_file *f)
{
    const struct llm_param_layout *l = &f->layout;
    const char *p = f->path;
    for (size_t i = 0; i < l->n; i++) {
        const struct llm_param_spec *s = &l->p[i];
        long k = llm_ckpt_find(f->r, s->name);
        if (k < 0)
            return llm_err(LLM_EFORMAT, "%s: tensor '%s' is missing (the config's model has %zu tensors, "
                           "the file %zu)", p, s->name, l->n, llm_ckpt_count(f->r));
        const struct llm_ckpt_tensor *t = llm_ckpt_tensor(f->r, (size_t)k);
        if (t->dtype != LLM_CKPT_F32)
            return llm_err(LLM_EFORMAT, "%s: tensor '%s' is %s, expected f32", p, s->name,
                           llm_ckpt_dtype_name(t->dtype));
        if (t->ndim != s->ndim || t->shape[0] != s->shape[0] || (s->ndim == 2 && t->shape[1] != s->shape[1])) {
            char a[96], b[96];
            fmt_shape(a, sizeof(a), t->ndim, t->shape);
            fmt_shape(b, sizeof(b), s->ndim, s->shape);
            return llm_err(LLM_EFORMAT, "%s: tensor '%s' has shape %s, the config's model needs %s", p,
                           s->name, a, b);
        }
        f->index[i] = k;
    }
    for (size_t k = 0; k < llm_ckpt_count(f->r); k++) {
        const char *name = llm_ckpt_tensor(f->r, k)->name;
        if (llm_param_find(l, name) < 0 && strncmp(name, LLM_STATE_PREFIX, strlen(LLM_STATE_PREFIX)))
            return llm_err(LLM_EFORMAT, "%s: unexpected tensor '%s' (not a parameter of the config's model)",
                           p, name);
    }
    return 0;
}

int llm_model_file_open(struct llm_model_file *f, const char *path)
{
    memset(f, 0, sizeof(*f));
    int rc = llm_config_defaults(&f->cfg);
    if (!rc && !(f->path = strdup(path)))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc)
        rc = llm_ckpt_open(&f->r, path);
    if (!rc)
        rc = check_header(f, llm_ckpt_header(f->r));
    if (!rc && (rc = llm_param_layout_init(&f->layout, &f->cfg.model)))
        llm_err_wrap(rc, "%s: header \"config\"", path);
    if (!rc && !(f->index = llm_calloc(f->layout.n ? f->layout.n : 1, sizeof(long), "the tensor index")))
        rc = LLM_ENOMEM;
    if (!rc)
        rc = check_tensors(f);
    if (rc)
        llm_model_file_close(f);
    return rc;
}

int llm_model_file_read(struct llm_model_file *f, size_t i, float *dst)
{
    if (i >= f->layout.n)
        return llm_err(LLM_EINVAL, "%s: no tensor %zu", f->path, i);
    return llm_ckpt_read(f->r, (size_t)f->index[i], dst, f->layout.p[i].numel * sizeof(float));
}

const cJSON *llm_model_file_header(const struct llm_model_file *f) { return llm_ckpt_header(f->r); }

void llm_model_file_close(struct llm_model_file *f)
{
    if (!f)
        return;
    llm_ckpt_close(f->r);
    llm_config_release(&f->cfg);
    llm_param_layout_release(&f->layout);
    free(f->index);
    free(f->path);
    memset(f, 0, sizeof(*f));
}

/* ---- load ---- */

struct upload_ctx {
    const struct llm_backend *be;
    char *dst; /* device address of the tensor */
};

static int upload_piece(void *ctx, const void *data, size_t n, uint64_t offset)
{
    struct upload_ctx *u = ctx;
    return u->be->ops->upload(u->be->ctx, u->dst + offset, data, n);
}

/* Uploads tensor i of r into n floats of device memory at dst (shape checked by the caller). */
int llm_model_read_device(struct llm_ckpt_reader *r, size_t i, struct llm_backend *be, float *dst)
{
    struct upload_ctx u = {be, (char *)dst};
    return llm_ckpt_read_chunks(r, i, upload_piece, &u);
}

int llm_model_load(struct llm_model *m, const char *path, struct llm_backend *be, cJSON **header_out)
{
    struct llm_model_file f;
    memset(m, 0, sizeof(*m));
    if (header_out)
        *header_out = NULL;
    int rc = llm_model_file_open(&f, path);
    if (rc)
        return rc;
    if ((rc = llm_model_init_zero(m, &f.cfg.model, be)))
        llm_err_wrap(rc, "%s", path);
    for (size_t i = 0; !rc && i < f.layout.n; i++) {
        struct upload_ctx u = {be, (char *)(m->params + m->layout.p[i].offset)};
        if ((rc = llm_ckpt_read_chunks(f.r, (size_t)f.index[i], upload_piece, &u)))
            llm_err_wrap(rc, "loading '%s'", f.layout.p[i].name);
    }
    if (!rc && be->ops->sync)
        rc = be->ops->sync(be->ctx);
    if (!rc && header_out && !(*header_out = cJSON_Duplicate(llm_ckpt_header(f.r), 1)))
        rc = llm_err(LLM_ENOMEM, "out of memory reading '%s'", path);
    llm_model_file_close(&f);
    if (rc)
        llm_model_release(m);
    return rc;
}

/* ---- Hugging Face architectures ---- */

struct feature {
    const char *key;
    int ok;
    const char *have, *need;
};

static const char *choice(const char *key, int v) { return llm_config_choice_name(key, v); }

enum llm_hf_arch llm_hf_arch_of(const struct llm_model_config *m, char *why, size_t n)
{
    int llama = m->position == LLM_POSITION_ROPE || m->norm == LLM_NORM_RMSNORM ||
                m->activation == LLM_ACTIVATION_SWIGLU;
    struct feature fs[] = {
        {"position", m->position == (llama ? LLM_POSITION_ROPE : LLM_POSITION_LEARNED),
         choice("model.position", m->position), llama ? "rope" : "learned"},
        {"norm", m->norm == (llama ? LLM_NORM_RMSNORM : LLM_NORM_LAYERNORM), choice("model.norm", m->norm),
         llama ? "rmsnorm" : "layernorm"},
        {"activation", m->activation == (llama ? LLM_ACTIVATION_SWIGLU : LLM_ACTIVATION_GELU),
         choice("model.activation", m->activation), llama ? "swiglu" : "gelu"},
        {"bias", m->bias == !llama, m->bias ? "true" : "false", llama ? "false" : "true"},
        {"tie_embeddings", llama || m->tie_embeddings, "false", "true"},
        {"norm_position", m->norm_position == LLM_NORM_POSITION_PRE,
         choice("model.norm_position", m->norm_position), "pre"},
        {"attention", m->attention == LLM_ATTENTION_FULL, choice("model.attention", m->attention), "full"},
        {"attention_kv", m->attention_kv == LLM_ATTENTION_KV_STANDARD,
         choice("model.attention_kv", m->attention_kv), "standard"},
        {"mlp", m->mlp == LLM_MLP_DENSE, choice("model.mlp", m->mlp), "dense"},
        {"qk_norm", !m->qk_norm, "true", "false"},
        {"n_kv_heads", llama || llm_config_kv_heads(m) == m->n_heads, "fewer than n_heads", "n_heads"},
    };
    size_t k = (size_t)snprintf(why, n, "cannot export as %s: ", llama ? "LlamaForCausalLM" : "GPT2LMHeadModel");
    int bad = 0;
    for (size_t i = 0; i < sizeof(fs) / sizeof(*fs); i++) {
        if (fs[i].ok)
            continue;
        if (k < n)
            k += (size_t)snprintf(why + k, n - k, "%smodel.%s is %s (needs %s)", bad ? ", " : "", fs[i].key,
                                  fs[i].have, fs[i].need);
        bad++;
    }
    if (!bad) {
        if (n)
            why[0] = 0;
        return llama ? LLM_HF_LLAMA : LLM_HF_GPT2;
    }
    if (k < n)
        snprintf(why + k, n - k, "; --format safetensors writes any variant");
    return LLM_HF_NONE;
}

/* One HF tensor and where it comes from:
 *   COPY   the native tensor as is
 *   T      transposed (GPT-2's Conv1D stores [in, out])
 *   QKV_T  [C, q+k+v]: wq, wk, wv transposed side by side (GPT-2's c_attn)
 *   QKV    bq, bk, bv concatenated */
enum map_kind { MAP_COPY, MAP_T, MAP_QKV_T, MAP_QKV };

struct hf_map {
    char name[128];
    enum map_kind kind;
    long nat[3];
    int ndim;
    int64_t shape[2];
};

struct map_list {
    struct hf_map *v;
    size_t n, cap;
    const struct llm_param_layout *l;
    int rc;
};

static long nat_find(struct map_list *L, const char *name)
{
    long i = llm_param_find(L->l, name);
    if (i < 0 && !L->rc)
        L->rc = llm_err(LLM_EINVAL, "no native tensor '%s' for the HF map", name); /* a bug in hf_maps */
    return i;
}

/* Adds HF tensor hf (a printf format taking the layer) from native fmt0..2. */
static void add_map(struct map_list *L, enum map_kind kind, int layer, const char *hf, const char *n0,
                    const char *n1, const char *n2)
{
    if (L->rc)
        return;
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 64;
        struct hf_map *v = realloc(L->v, cap * sizeof(*v));
        if (!v) {
            L->rc = llm_err(LLM_ENOMEM, "out of memory");
            return;
        }
        L->v = v, L->cap = cap;
    }
    struct hf_map *m = &L->v[L->n];
    const char *fmts[3] = {n0, n1, n2};
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), hf, layer);
    m->kind = kind;
    for (int j = 0; j < 3; j++) {
        char nm[96];
        m->nat[j] = -1;
        if (!fmts[j])
            continue;
        snprintf(nm, sizeof(nm), fmts[j], layer);
        if ((m->nat[j] = nat_find(L, nm)) < 0)
            return;
    }
    const struct llm_param_spec *s = &L->l->p[m->nat[0]];
    m->ndim = s->ndim;
    if (kind == MAP_COPY) {
        m->shape[0] = s->shape[0], m->shape[1] = s->shape[1];
    } else if (kind == MAP_T) {
        m->shape[0] = s->shape[1], m->shape[1] = s->shape[0];
    } else {
        int64_t out = 0;
        for (int j = 0; j < 3; j++)
            out += L->l->p[m->nat[j]].shape[0];
        m->shape[0] = kind == MAP_QKV_T ? s->shape[1] : out;
        m->shape[1] = kind == MAP_QKV_T ? out : 0;
    }
    L->n++;
}

/* The HF tensors of arch for layout l, in HF's usual order. Every native
 * tensor is used exactly once (checked). */
static int hf_maps(const struct llm_model_config *c, const struct llm_param_layout *l, enum llm_hf_arch arch,
                   struct map_list *L)
{
    memset(L, 0, sizeof(*L));
    L->l = l;
    if (arch == LLM_HF_LLAMA) {
        add_map(L, MAP_COPY, 0, "model.embed_tokens.weight", "tok_emb.weight", NULL, NULL);
        for (int i = 0; i < c->n_layers; i++) {
            add_map(L, MAP_COPY, i, "model.layers.%d.input_layernorm.weight", "layers.%d.attn_norm.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.self_attn.q_proj.weight", "layers.%d.attn.wq.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.self_attn.k_proj.weight", "layers.%d.attn.wk.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.self_attn.v_proj.weight", "layers.%d.attn.wv.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.self_attn.o_proj.weight", "layers.%d.attn.wo.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.post_attention_layernorm.weight", "layers.%d.mlp_norm.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.mlp.gate_proj.weight", "layers.%d.mlp.w1.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.mlp.up_proj.weight", "layers.%d.mlp.w3.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "model.layers.%d.mlp.down_proj.weight", "layers.%d.mlp.w2.weight", NULL, NULL);
        }
        add_map(L, MAP_COPY, 0, "model.norm.weight", "final_norm.weight", NULL, NULL);
        if (!c->tie_embeddings)
            add_map(L, MAP_COPY, 0, "lm_head.weight", "lm_head.weight", NULL, NULL);
    } else {
        add_map(L, MAP_COPY, 0, "transformer.wte.weight", "tok_emb.weight", NULL, NULL);
        add_map(L, MAP_COPY, 0, "transformer.wpe.weight", "pos_emb.weight", NULL, NULL);
        for (int i = 0; i < c->n_layers; i++) {
            add_map(L, MAP_COPY, i, "transformer.h.%d.ln_1.weight", "layers.%d.attn_norm.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "transformer.h.%d.ln_1.bias", "layers.%d.attn_norm.bias", NULL, NULL);
            add_map(L, MAP_QKV_T, i, "transformer.h.%d.attn.c_attn.weight", "layers.%d.attn.wq.weight",
                    "layers.%d.attn.wk.weight", "layers.%d.attn.wv.weight");
            add_map(L, MAP_QKV, i, "transformer.h.%d.attn.c_attn.bias", "layers.%d.attn.wq.bias",
                    "layers.%d.attn.wk.bias", "layers.%d.attn.wv.bias");
            add_map(L, MAP_T, i, "transformer.h.%d.attn.c_proj.weight", "layers.%d.attn.wo.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "transformer.h.%d.attn.c_proj.bias", "layers.%d.attn.wo.bias", NULL, NULL);
            add_map(L, MAP_COPY, i, "transformer.h.%d.ln_2.weight", "layers.%d.mlp_norm.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "transformer.h.%d.ln_2.bias", "layers.%d.mlp_norm.bias", NULL, NULL);
            add_map(L, MAP_T, i, "transformer.h.%d.mlp.c_fc.weight", "layers.%d.mlp.w1.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "transformer.h.%d.mlp.c_fc.bias", "layers.%d.mlp.w1.bias", NULL, NULL);
            add_map(L, MAP_T, i, "transformer.h.%d.mlp.c_proj.weight", "layers.%d.mlp.w2.weight", NULL, NULL);
            add_map(L, MAP_COPY, i, "transformer.h.%d.mlp.c_proj.bias", "layers.%d.mlp.w2.bias", NULL, NULL);
        }
        add_map(L, MAP_COPY, 0, "transformer.ln_f.weight", "final_norm.weight", NULL, NULL);
        add_map(L, MAP_COPY, 0, "transformer.ln_f.bias", "final_norm.bias", NULL, NULL);
    }
    /* each native tensor exactly once */
    size_t used = 0;
    for (size_t i = 0; !L->rc && i < L->n; i++)
        used += L->v[i].kind == MAP_QKV || L->v[i].kind == MAP_QKV_T ? 3 : 1;
    if (!L->rc && used != l->n)
        L->rc = llm_err(LLM_EINVAL, "the HF map covers %zu of the model's %zu tensors", used, l->n);
    if (L->rc) {
        free(L->v);
        L->v = NULL;
    }
    return L->rc;
}

/* dst (cols, rows) = src (rows, cols) transposed; dst row stride ld. */
static void transpose(float *dst, size_t ld, const float *src, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++)
            dst[c * ld + r] = src[r * cols + c];
}

/* ---- export ---- */

/* Refuses an existing output unless force; dir says which kind out must be. */
static int check_output(const char *out, int dir, int force)
{
    struct stat st;
    if (stat(out, &st) != 0)
        return errno == ENOENT ? 0 : llm_err(LLM_EIO, "cannot stat '%s': %s", out, strerror(errno));
    if (!dir && S_ISDIR(st.st_mode))
        return llm_err(LLM_EIO, "'%s' is a folder; --format safetensors writes one file", out);
    if (dir && !S_ISDIR(st.st_mode))
        return llm_err(LLM_EIO, "'%s' exists and is not a folder", out);
    int empty = 1;
    if (dir) {
        DIR *d = opendir(out);
        struct dirent *e;
        if (!d)
            return llm_err(LLM_EIO, "cannot read '%s': %s", out, strerror(errno));
        while (empty && (e = readdir(d)))
            empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        closedir(d);
    } else {
        empty = st.st_size == 0;
    }
    if (!empty && !force)
        return llm_err(LLM_EIO, "'%s' exists and is not empty (--force to %s)", out,
                       dir ? "write into it" : "replace it");
    return 0;
}

/* Streams the HF (or native) tensors of f into a safetensors file. */
static int write_tensors(struct llm_model_file *f, const struct hf_map *maps, size_t nmaps, const char *path,
                         const cJSON *meta)
{
    struct llm_st_tensor *ts = llm_calloc(nmaps ? nmaps : 1, sizeof(*ts), "the tensor list");
    if (!ts)
        return LLM_ENOMEM;
    for (size_t i = 0; i < nmaps; i++) {
        ts[i].name = maps[i].name, ts[i].dtype = LLM_ST_F32, ts[i].ndim = maps[i].ndim;
        ts[i].shape[0] = maps[i].shape[0], ts[i].shape[1] = maps[i].shape[1];
    }
    struct llm_st_writer *w = NULL;
    int rc = llm_st_writer_open(&w, path, ts, nmaps, meta);
    free(ts);
    float *src[3] = {NULL, NULL, NULL}, *dst = NULL;
    for (size_t i = 0; !rc && i < nmaps; i++) {
        const struct hf_map *m = &maps[i];
        int parts = m->kind == MAP_QKV || m->kind == MAP_QKV_T ? 3 : 1;
        size_t total = 0;
        for (int j = 0; !rc && j < parts; j++) {
            const struct llm_param_spec *s = &f->layout.p[m->nat[j]];
            total += s->numel;
            if (!(src[j] = llm_malloc(s->numel * sizeof(float) + 1, "a tensor")))
                rc = LLM_ENOMEM;
            else
                rc = llm_model_file_read(f, (size_t)m->nat[j], src[j]);
        }
        if (!rc && m->kind != MAP_COPY && !(dst = llm_malloc(total * sizeof(float) + 1, "a tensor")))
            rc = LLM_ENOMEM;
        if (!rc && m->kind == MAP_COPY) {
            rc = llm_st_writer_append(w, src[0], total * sizeof(float));
        } else if (!rc && m->kind == MAP_T) {
            const struct llm_param_spec *s = &f->layout.p[m->nat[0]];
            transpose(dst, (size_t)s->shape[0], src[0], (size_t)s->shape[0], (size_t)s->shape[1]);
        } else if (!rc) {
            size_t at = 0, ld = (size_t)m->shape[1];
            for (int j = 0; j < 3; j++) {
                const struct llm_param_spec *s = &f->layout.p[m->nat[j]];
                if (m->kind == MAP_QKV)
                    memcpy(dst + at, src[j], s->numel * sizeof(float));
                else
                    transpose(dst + at, ld, src[j], (size_t)s->shape[0], (size_t)s->shape[1]);
                at += (size_t)s->shape[0];
            }
        }
        if (!rc && m->kind != MAP_COPY)
            rc = llm_st_writer_append(w, dst, total * sizeof(float));
        if (rc)
            llm_err_wrap(rc, "exporting '%s'", m->name);
        for (int j = 0; j < 3; j++)
            free(src[j]), src[j] = NULL;
        free(dst), dst = NULL;
    }
    if (w)
        rc = rc ? (llm_st_writer_abort(w), rc) : llm_st_writer_commit(w);
    return rc;
}

int llm_export_safetensors(const char *ckpt, const char *out, const struct llm_export_opts *o)
{
    struct llm_model_file f;
    int rc = check_output(out, 0, o && o->force);
    if (rc || (rc = llm_model_file_open(&f, ckpt)))
        return rc;
    struct hf_map *maps = llm_calloc(f.layout.n ? f.layout.n : 1, sizeof(*maps), "the tensor list");
    cJSON *cj = llm_config_to_json(&f.cfg);
    char *cfg = cj ? cJSON_PrintUnformatted(cj) : NULL;
    cJSON_Delete(cj);
    cJSON *meta = cJSON_CreateObject();
    if (!maps || !cfg || !meta) {
        rc = llm_err(LLM_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < f.layout.n; i++) { /* native names, as they are */
            const struct llm_param_spec *s = &f.layout.p[i];
            snprintf(maps[i].name, sizeof(maps[i].name), "%s", s->name);
            maps[i].kind = MAP_COPY, maps[i].nat[0] = (long)i, maps[i].ndim = s->ndim;
            maps[i].shape[0] = s->shape[0], maps[i].shape[1] = s->shape[1];
        }
        cJSON_AddStringToObject(meta, "format", "pt");
        cJSON_AddStringToObject(meta, "llm_config", cfg);
        rc = write_tensors(&f, maps, f.layout.n, out, meta);
    }
    cJSON_Delete(meta);
    free(cfg);
    free(maps);
    llm_model_file_close(&f);
    return rc;
}

static int write_json(const char *path, const cJSON *j)
{
    char *text = j ? cJSON_Print(j) : NULL;
    if (!text)
        return llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    int rc = llm_write_text(path, text, 1);
    free(text);
    return rc;
}

static void add_id(cJSON *o, const char *key, int64_t id)
{
    if (id >= 0)
        cJSON_AddNumberToObject(o, key, (double)id);
    else
        cJSON_AddNullToObject(o, key);
}

static cJSON *hf_config(const struct llm_model_config *m, enum llm_hf_arch arch, int64_t eot)
{
    cJSON *c = cJSON_CreateObject(), *a = cJSON_CreateArray();
    if (!c || !a) {
        cJSON_Delete(c);
        cJSON_Delete(a);
        return NULL;
    }
    cJSON_AddItemToObject(c, "architectures", a);
    if (arch == LLM_HF_LLAMA) {
        cJSON_AddItemToArray(a, cJSON_CreateString("LlamaForCausalLM"));
        cJSON_AddStringToObject(c, "model_type", "llama");
        cJSON_AddNumberToObject(c, "vocab_size", m->vocab_size);
        cJSON_AddNumberToObject(c, "hidden_size", m->d_model);
        cJSON_AddNumberToObject(c, "intermediate_size", m->d_ff);
        cJSON_AddNumberToObject(c, "num_hidden_layers", m->n_layers);
        cJSON_AddNumberToObject(c, "num_attention_heads", m->n_heads);
        cJSON_AddNumberToObject(c, "num_key_value_heads", llm_config_kv_heads(m));
        cJSON_AddNumberToObject(c, "head_dim", llm_param_head_size(m));
        cJSON_AddNumberToObject(c, "max_position_embeddings", m->context_length);
        cJSON_AddNumberToObject(c, "rms_norm_eps", m->norm_eps);
        cJSON_AddNumberToObject(c, "rope_theta", m->rope_theta);
        cJSON_AddNullToObject(c, "rope_scaling");
        cJSON_AddStringToObject(c, "hidden_act", "silu");
        cJSON_AddBoolToObject(c, "attention_bias", 0);
        cJSON_AddBoolToObject(c, "mlp_bias", 0);
        cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
    } else {
        cJSON_AddItemToArray(a, cJSON_CreateString("GPT2LMHeadModel"));
        cJSON_AddStringToObject(c, "model_type", "gpt2");
        cJSON_AddNumberToObject(c, "vocab_size", m->vocab_size);
        cJSON_AddNumberToObject(c, "n_positions", m->context_length);
        cJSON_AddNumberToObject(c, "n_ctx", m->context_length);
        cJSON_AddNumberToObject(c, "n_embd", m->d_model);
        cJSON_AddNumberToObject(c, "n_layer", m->n_layers);
        cJSON_AddNumberToObject(c, "n_head", m->n_heads);
        cJSON_AddNumberToObject(c, "n_inner", m->d_ff);
        cJSON_AddStringToObject(c, "activation_function", "gelu_new");
        cJSON_AddNumberToObject(c, "layer_norm_epsilon", m->norm_eps);
        cJSON_AddNumberToObject(c, "resid_pdrop", m->dropout);
        cJSON_AddNumberToObject(c, "embd_pdrop", m->dropout);
        cJSON_AddNumberToObject(c, "attn_pdrop", 0.0);
        cJSON_AddBoolToObject(c, "scale_attn_weights", 1);
    }
    cJSON_AddNumberToObject(c, "initializer_range", m->init_std);
    cJSON_AddBoolToObject(c, "tie_word_embeddings", m->tie_embeddings);
    add_id(c, "bos_token_id", eot);
    add_id(c, "eos_token_id", eot);
    cJSON_AddStringToObject(c, "torch_dtype", "float32");
    cJSON_AddBoolToObject(c, "use_cache", 1);
    return c;
}

/* Writes tokenizer.json into dir from the --tokenizer file or the header,
 * checks it loads and fits the vocabulary, and finds <|endoftext|>. */
static int export_tokenizer(const char *dir, const char *ckpt, const cJSON *header, const char *tok_path,
                            const struct llm_model_config *m, int64_t *eot)
{
    char *text = NULL, path[PATH_MAX_LEN];
    int rc = join(path, sizeof(path), dir, "tokenizer.json");
    if (rc)
        return rc;
    if (tok_path) {
        size_t len;
        rc = llm_read_file(tok_path, LLM_CKPT_MAX_JSON, &text, &len);
    } else {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(header, "tokenizer");
        if (!t)
            return llm_err(LLM_EINVAL, "%s: no tokenizer: the header has no \"tokenizer\" and --tokenizer "
                           "was not given", ckpt);
        if (!cJSON_IsObject(t))
            return llm_err(LLM_EFORMAT, "%s: header \"tokenizer\" is not a tokenizer.json object", ckpt);
        if (!(text = cJSON_PrintUnformatted(t)))
            rc = llm_err(LLM_ENOMEM, "out of memory");
    }
    if (!rc)
        rc = llm_write_text(path, text, 1);
    free(text);
    struct llm_tokenizer *tok = NULL;
    if (!rc && (rc = llm_tok_load(&tok, path)))
        llm_err_wrap(rc, "the tokenizer of %s", tok_path ? tok_path : ckpt);
    if (!rc && llm_tok_vocab_size(tok) > (uint32_t)m->vocab_size)
        rc = llm_err(LLM_EINVAL, "the tokenizer of %s has %u ids, more than model.vocab_size %d",
                     tok_path ? tok_path : ckpt, llm_tok_vocab_size(tok), m->vocab_size);
    if (!rc)
        *eot = llm_tok_special_id(tok, "<|endoftext|>");
    llm_tok_free(tok);
    return rc;
}

static const char *const hf_files[] = {"tokenizer.json", "config.json", "generation_config.json",
                                       "model.safetensors"};
#define N_HF_FILES (sizeof(hf_files) / sizeof(*hf_files))

static void remove_tmp_dir(const char *tmp)
{
    char p[PATH_MAX_LEN];
    for (size_t i = 0; i < N_HF_FILES; i++)
        if (!join(p, sizeof(p), tmp, hf_files[i]))
            unlink(p);
    rmdir(tmp);
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Moves the finished folder tmp to out (or its files into out). */
static int publish_dir(const char *tmp, const char *out, int force)
{
    char parent[4096], *slash;
    snprintf(parent, sizeof(parent), "%s", out);
    slash = strrchr(parent, '/');
    if (slash == parent)
        parent[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(parent, sizeof(parent), ".");
    fsync_dir(tmp);
    if (rename(tmp, out) == 0) { /* out absent or an empty folder */
        fsync_dir(parent);
        return 0;
    }
    if (errno != ENOTEMPTY && errno != EEXIST)
        return llm_err(LLM_EIO, "cannot rename '%s' to '%s': %s", tmp, out, strerror(errno));
    if (!force)
        return llm_err(LLM_EIO, "'%s' exists and is not empty (--force to write into it)", out);
    for (size_t i = 0; i < N_HF_FILES; i++) { /* --force into a non-empty folder */
        char a[PATH_MAX_LEN], b[PATH_MAX_LEN];
        int rc = join(a, sizeof(a), tmp, hf_files[i]);
        if (rc || (rc = join(b, sizeof(b), out, hf_files[i])))
            return rc;
        if (rename(a, b) != 0)
            return llm_err(LLM_EIO, "cannot move '%s' to '%s': %s", a, b, strerror(errno));
    }
    rmdir(tmp);
    fsync_dir(out);
    return 0;
}

int llm_export_hf(const char *ckpt, const char *out_arg, const struct llm_export_opts *o)
{
    char out[PATH_MAX_LEN - 16], tmp[PATH_MAX_LEN], why[512], p[PATH_MAX_LEN];
    struct llm_model_file f;
    struct map_list L = {0};
    size_t len = strlen(out_arg);
    while (len > 1 && out_arg[len - 1] == '/')
        len--;
    if (len == 0 || len >= sizeof(out))
        return llm_err(LLM_EINVAL, "bad output path '%s'", out_arg);
    memcpy(out, out_arg, len);
    out[len] = 0;
    int rc = check_output(out, 1, o && o->force);
    if (rc || (rc = llm_model_file_open(&f, ckpt)))
        return rc;
    enum llm_hf_arch arch = llm_hf_arch_of(&f.cfg.model, why, sizeof(why));
    if (arch == LLM_HF_NONE) {
        llm_model_file_close(&f);
        return llm_err(LLM_EUNSUPPORTED, "%s: %s", ckpt, why);
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", out);
    if (!mkdtemp(tmp)) {
        rc = llm_err(LLM_EIO, "cannot create a folder next to '%s': %s", out, strerror(errno));
        llm_model_file_close(&f);
        return rc;
    }
    int64_t eot = -1;
    cJSON *cfg = NULL, *gen = NULL;
    rc = export_tokenizer(tmp, ckpt, llm_model_file_header(&f), o ? o->tokenizer : NULL, &f.cfg.model, &eot);
    if (!rc && (!(cfg = hf_config(&f.cfg.model, arch, eot)) || !(gen = cJSON_CreateObject())))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc) {
        add_id(gen, "bos_token_id", eot);
        add_id(gen, "eos_token_id", eot);
        if (!(rc = join(p, sizeof(p), tmp, "config.json")))
            rc = write_json(p, cfg);
    }
    if (!rc) {
        if (!(rc = join(p, sizeof(p), tmp, "generation_config.json")))
            rc = write_json(p, gen);
    }
    if (!rc && !(rc = hf_maps(&f.cfg.model, &f.layout, arch, &L))) {
        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "format", "pt");
        if (!(rc = join(p, sizeof(p), tmp, "model.safetensors")))
            rc = write_tensors(&f, L.v, L.n, p, meta);
        cJSON_Delete(meta);
    }
    if (!rc)
        rc = publish_dir(tmp, out, o && o->force);
    if (rc)
        remove_tmp_dir(tmp);
    cJSON_Delete(cfg);
    cJSON_Delete(gen);
    free(L.v);
    llm_model_file_close(&f);
    return rc;
}

/* ---- import ---- */

/* A config.json value: absent and null both give the default. */
static const cJSON *cfg_get(const cJSON *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static int cfg_int(const cJSON *c, const char *key, int def, int lo, int *out, const char *path)
{
    const cJSON *v = cfg_get(c, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > INT_MAX)
        return llm_err(LLM_EFORMAT, "%s: \"%s\" must be an integer >= %d", path, key, lo);
    *out = (int)v->valuedouble;
    return 0;
}

static int cfg_num(const cJSON *c, const char *key, double def, double *out, const char *path)
{
    const cJSON *v = cfg_get(c, key);
    if (v && !cJSON_IsNumber(v))
        return llm_err(LLM_EFORMAT, "%s: \"%s\" must be a number", path, key);
    *out = v ? v->valuedouble : def;
    return 0;
}

static int cfg_bool(const cJSON *c, const char *key, int def, int *out, const char *path)
{
    const cJSON *v = cfg_get(c, key);
    if (v && !cJSON_IsBool(v))
        return llm_err(LLM_EFORMAT, "%s: \"%s\" must be true or false", path, key);
    *out = v ? cJSON_IsTrue(v) : def;
    return 0;
}

static const char *cfg_str(const cJSON *c, const char *key, const char *def)
{
    const cJSON *v = cfg_get(c, key);
    return cJSON_IsString(v) ? v->valuestring : v ? "(not a string)" : def;
}

/* config.json -> the model section; HF's defaults for absent keys. */
static int hf_to_model(const cJSON *c, const char *path, struct llm_model_config *m, enum llm_hf_arch *arch)
{
    const char *type = cfg_str(c, "model_type", "(missing)");
    const cJSON *archs = cfg_get(c, "architectures");
    const char *want = !strcmp(type, "llama") ? "LlamaForCausalLM" : "GPT2LMHeadModel";
    int rc = 0, b1 = 0, b2 = 0, b3 = 0, kv = 0;
    if (strcmp(type, "llama") && strcmp(type, "gpt2"))
        return llm_err(LLM_EUNSUPPORTED, "%s: model_type \"%s\" is not supported (llama and gpt2 are)",
                       path, type);
    if (archs && (!cJSON_IsArray(archs) || cJSON_GetArraySize(archs) != 1 || !cJSON_IsString(archs->child) ||
                  strcmp(archs->child->valuestring, want)))
        return llm_err(LLM_EUNSUPPORTED, "%s: architectures must be [\"%s\"]", path, want);
    m->position = LLM_POSITION_ROPE, m->norm = LLM_NORM_RMSNORM, m->activation = LLM_ACTIVATION_SWIGLU;
    m->norm_position = LLM_NORM_POSITION_PRE, m->attention = LLM_ATTENTION_FULL;
    m->attention_kv = LLM_ATTENTION_KV_STANDARD, m->mlp = LLM_MLP_DENSE, m->qk_norm = false;
    m->bias = false, m->dropout = 0;
    if ((rc = cfg_num(c, "initializer_range", 0.02, &m->init_std, path)))
        return rc;
    if (!strcmp(type, "llama")) {
        *arch = LLM_HF_LLAMA;
        const cJSON *rs = cfg_get(c, "rope_scaling");
        int hd = 0;
        if ((rc = cfg_int(c, "vocab_size", 32000, 1, &m->vocab_size, path)) ||
            (rc = cfg_int(c, "hidden_size", 4096, 1, &m->d_model, path)) ||
            (rc = cfg_int(c, "intermediate_size", 11008, 1, &m->d_ff, path)) ||
            (rc = cfg_int(c, "num_hidden_layers", 32, 1, &m->n_layers, path)) ||
            (rc = cfg_int(c, "num_attention_heads", 32, 1, &m->n_heads, path)) ||
            (rc = cfg_int(c, "num_key_value_heads", m->n_heads, 1, &kv, path)) ||
            (rc = cfg_int(c, "head_dim", 0, 1, &hd, path)) ||
            (rc = cfg_int(c, "max_position_embeddings", 2048, 1, &m->context_length, path)) ||
            (rc = cfg_num(c, "rms_norm_eps", 1e-6, &m->norm_eps, path)) ||
            (rc = cfg_num(c, "rope_theta", 10000.0, &m->rope_theta, path)) ||
            (rc = cfg_bool(c, "tie_word_embeddings", 0, &b1, path)) ||
            (rc = cfg_bool(c, "attention_bias", 0, &b2, path)) || (rc = cfg_bool(c, "mlp_bias", 0, &b3, path)))
            return rc;
        if (rs)
            return llm_err(LLM_EUNSUPPORTED, "%s: rope_scaling is set; llm's rope has no scaling", path);
        if (b2 || b3)
            return llm_err(LLM_EUNSUPPORTED, "%s: %s is true; llm's Llama shape has no biases", path,
                           b2 ? "attention_bias" : "mlp_bias");
        if (strcmp(cfg_str(c, "hidden_act", "silu"), "silu"))
            return llm_err(LLM_EUNSUPPORTED, "%s: hidden_act \"%s\" is not supported (silu is)", path,
                           cfg_str(c, "hidden_act", ""));
        if (hd && (m->d_model % m->n_heads || hd != m->d_model / m->n_heads))
            return llm_err(LLM_EUNSUPPORTED, "%s: head_dim %d is not hidden_size / num_attention_heads", path, hd);
        m->n_kv_heads = kv == m->n_heads ? 0 : kv;
        m->tie_embeddings = b1;
        return 0;
    }
    *arch = LLM_HF_GPT2;
    int inner = 0, ctx = 0;
    const char *act = cfg_str(c, "activation_function", "gelu_new");
    m->position = LLM_POSITION_LEARNED, m->norm = LLM_NORM_LAYERNORM, m->activation = LLM_ACTIVATION_GELU;
    m->bias = true, m->n_kv_heads = 0;
    if ((rc = cfg_int(c, "vocab_size", 50257, 1, &m->vocab_size, path)) ||
        (rc = cfg_int(c, "n_ctx", 1024, 1, &ctx, path)) ||
        (rc = cfg_int(c, "n_positions", ctx, 1, &m->context_length, path)) ||
        (rc = cfg_int(c, "n_embd", 768, 1, &m->d_model, path)) ||
        (rc = cfg_int(c, "n_layer", 12, 1, &m->n_layers, path)) ||
        (rc = cfg_int(c, "n_head", 12, 1, &m->n_heads, path)) ||
        (rc = cfg_int(c, "n_inner", 0, 1, &inner, path)) ||
        (rc = cfg_num(c, "layer_norm_epsilon", 1e-5, &m->norm_eps, path)) ||
        (rc = cfg_bool(c, "tie_word_embeddings", 1, &b1, path)) ||
        (rc = cfg_bool(c, "scale_attn_weights", 1, &b2, path)) ||
        (rc = cfg_bool(c, "scale_attn_by_inverse_layer_idx", 0, &b3, path)) ||
        (rc = cfg_bool(c, "add_cross_attention", 0, &kv, path)))
        return rc;
    if (inner > INT_MAX / 4 || m->d_model > INT_MAX / 4)
        return llm_err(LLM_EFORMAT, "%s: n_inner or n_embd is too large", path);
    m->d_ff = inner ? inner : 4 * m->d_model;
    m->tie_embeddings = true;
    if (strcmp(act, "gelu_new") && strcmp(act, "gelu_pytorch_tanh") && strcmp(act, "gelu_fast"))
        return llm_err(LLM_EUNSUPPORTED, "%s: activation_function \"%s\" is not supported (llm's gelu is the "
                       "tanh approximation: gelu_new, gelu_pytorch_tanh, gelu_fast)", path, act);
    if (!b1 || !b2 || b3 || kv)
        return llm_err(LLM_EUNSUPPORTED, "%s: %s is not supported", path,
                       !b1 ? "tie_word_embeddings false" : !b2 ? "scale_attn_weights false"
                       : b3 ? "scale_attn_by_inverse_layer_idx" : "add_cross_attention");
    return 0;
}

/* The safetensors files of the folder, and which tensors a map consumed. */
struct st_set {
    struct llm_st_set set;
    unsigned char **used; /* (set.n) per file, per tensor */
};

static void st_set_close(struct st_set *s)
{
    for (size_t i = 0; s->used && i < s->set.n; i++)
        free(s->used[i]);
    free(s->used);
    llm_st_set_close(&s->set);
    s->used = NULL;
}

static int st_set_open(struct st_set *s, const char *dir)
{
    int rc = llm_st_set_open(&s->set, dir);
    if (rc)
        return rc;
    if (!(s->used = llm_calloc(s->set.n, sizeof(*s->used), "the tensor flags")))
        return LLM_ENOMEM;
    for (size_t i = 0; i < s->set.n; i++)
        if (!(s->used[i] = llm_calloc(llm_st_count(s->set.f[i]) + 1, 1, "the tensor flags")))
            return LLM_ENOMEM;
    return 0;
}

/* A buffer tensor HF keeps in some files that is not a parameter. */
static int ignorable(const char *name)
{
    int i, end = -1;
    if (!strncmp(name, "transformer.", 12))
        name += 12;
    if ((sscanf(name, "h.%d.attn.bias%n", &i, &end) == 1 && end == (int)strlen(name)) ||
        (end = -1, sscanf(name, "h.%d.attn.masked_bias%n", &i, &end) == 1 && end == (int)strlen(name)) ||
        (end = -1, sscanf(name, "model.layers.%d.self_attn.rotary_emb.inv_freq%n", &i, &end) == 1 &&
                       end == (int)strlen(name)))
        return 1;
    return 0;
}

/* Finds HF tensor name (GPT-2 files may lack "transformer.") and checks
 * its shape (ndim, shape) and that its dtype converts to f32. */
static int find_hf(struct st_set *s, const char *name, int ndim, const int64_t *shape, size_t *fi, long *ti)
{
    int rc = llm_st_set_find(&s->set, name, fi, ti);
    if (!rc && *ti < 0 && !strncmp(name, "transformer.", 12))
        rc = llm_st_set_find(&s->set, name + 12, fi, ti);
    if (rc)
        return rc;
    if (*ti < 0)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s' is missing", s->set.n ? llm_st_path(s->set.f[0]) : "?", name);
    const struct llm_st_tensor *t = llm_st_get(s->set.f[*fi], (size_t)*ti);
    const char *p = llm_st_path(s->set.f[*fi]);
    if (t->ndim != ndim || t->shape[0] != shape[0] || (ndim == 2 && t->shape[1] != shape[1])) {
        char a[160], b[96];
        fmt_shape(a, sizeof(a), t->ndim, t->shape);
        fmt_shape(b, sizeof(b), ndim, shape);
        return llm_err(LLM_EFORMAT, "%s: tensor '%s' has shape %s, config.json gives %s", p, t->name, a, b);
    }
    if (t->dtype != LLM_ST_F32 && t->dtype != LLM_ST_BF16 && t->dtype != LLM_ST_F16 && t->dtype != LLM_ST_F64)
        return llm_err(LLM_EUNSUPPORTED, "%s: tensor '%s' is %s; only F32, BF16, F16 and F64 are read", p,
                       t->name, llm_st_dtype_name(t->dtype));
    return 0;
}

/* Every HF tensor of the maps present with its shape (before allocating). */
static int check_present(struct st_set *s, const struct map_list *L)
{
    size_t fi = 0;
    long ti;
    int rc = 0;
    for (size_t i = 0; !rc && i < L->n; i++)
        rc = find_hf(s, L->v[i].name, L->v[i].ndim, L->v[i].shape, &fi, &ti);
    return rc;
}

/* Reads HF tensor name into a new f32 buffer *out (marks it used). */
static int read_hf(struct st_set *s, const char *name, int ndim, const int64_t *shape, float **out)
{
    size_t fi = 0;
    long ti;
    int rc = find_hf(s, name, ndim, shape, &fi, &ti);
    if (rc)
        return rc;
    size_t n = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
    if (!(*out = llm_malloc(n * sizeof(float) + 1, "a tensor")))
        return LLM_ENOMEM;
    s->used[fi][ti] = 1;
    if ((rc = llm_st_read_f32(s->set.f[fi], (size_t)ti, *out, n))) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Native tensor i of m from host memory. */
static int put_native(struct llm_model *m, long i, const float *src)
{
    const struct llm_param_spec *s = &m->layout.p[i];
    return m->be->ops->upload(m->be->ctx, m->params + s->offset, src, s->numel * sizeof(float));
}

/* Fills m's parameters from the HF tensors of maps (the inverse of export). */
static int import_tensors(struct llm_model *m, struct st_set *s, const struct map_list *L)
{
    int rc = 0;
    float *tmp = NULL;
    for (size_t i = 0; !rc && i < L->n; i++) {
        const struct hf_map *h = &L->v[i];
        float *src = NULL;
        if ((rc = read_hf(s, h->name, h->ndim, h->shape, &src)))
            break;
        if (h->kind == MAP_COPY) {
            rc = put_native(m, h->nat[0], src);
        } else {
            size_t col = 0, ld = (size_t)h->shape[1]; /* HF row stride of the T kinds */
            for (int j = 0; !rc && j < (h->kind == MAP_T ? 1 : 3); j++) {
                const struct llm_param_spec *p = &m->layout.p[h->nat[j]];
                if (!(tmp = llm_malloc(p->numel * sizeof(float) + 1, "a tensor"))) {
                    rc = LLM_ENOMEM;
                    break;
                }
                if (h->kind == MAP_QKV)
                    memcpy(tmp, src + col, p->numel * sizeof(float));
                else /* native (out, in) from HF (in, ld) columns col.. */
                    for (size_t r = 0; r < (size_t)p->shape[0]; r++)
                        for (size_t c = 0; c < (size_t)p->shape[1]; c++)
                            tmp[r * (size_t)p->shape[1] + c] = src[c * ld + col + r];
                rc = put_native(m, h->nat[j], tmp);
                col += (size_t)p->shape[0];
                free(tmp), tmp = NULL;
            }
        }
        free(src);
        if (rc)
            llm_err_wrap(rc, "importing '%s'", h->name);
    }
    return rc;
}

/* Leftover tensors: HF's buffers are skipped; a tied lm_head.weight must
 * equal the embeddings; anything else is an error. */
static int check_leftovers(struct llm_model *m, struct st_set *s, enum llm_hf_arch arch)
{
    for (size_t f = 0; f < s->set.n; f++) {
        for (size_t i = 0; i < llm_st_count(s->set.f[f]); i++) {
            const struct llm_st_tensor *t = llm_st_get(s->set.f[f], i);
            if (s->used[f][i] || ignorable(t->name))
                continue;
            if (strcmp(t->name, "lm_head.weight") || !m->cfg.tie_embeddings)
                return llm_err(LLM_EFORMAT, "%s: unexpected tensor '%s' for a %s model with this config.json",
                               llm_st_path(s->set.f[f]), t->name, arch == LLM_HF_LLAMA ? "llama" : "gpt2");
            const struct llm_param_spec *e = &m->layout.p[llm_param_find(&m->layout, "tok_emb.weight")];
            float *a = NULL, *b = llm_malloc(e->numel * sizeof(float) + 1, "a tensor");
            int rc = b ? read_hf(s, "lm_head.weight", 2, e->shape, &a) : LLM_ENOMEM;
            if (!rc)
                rc = m->be->ops->download(m->be->ctx, b, m->params + e->offset, e->numel * sizeof(float));
            if (!rc && memcmp(a, b, e->numel * sizeof(float)))
                rc = llm_err(LLM_EUNSUPPORTED, "%s: lm_head.weight differs from the embeddings but the "
                             "embeddings are tied", llm_st_path(s->set.f[f]));
            free(a);
            free(b);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* tokenizer.json (if any) as a JSON object, after checking that it loads. */
static int import_tokenizer(const char *dir, const struct llm_import_opts *o, int vocab, cJSON **out)
{
    char p[PATH_MAX_LEN];
    const char *path = o->tokenizer;
    struct stat st;
    *out = NULL;
    if (o->no_tokenizer)
        return 0;
    if (!path) {
        if (join(p, sizeof(p), dir, "tokenizer.json") || stat(p, &st) != 0)
            return 0;
        path = p;
    }
    struct llm_tokenizer *t = NULL;
    int rc = llm_tok_load(&t, path);
    if (rc)
        return llm_err_wrap(rc, "%s (--no-tokenizer imports without it)", path);
    uint32_t tv = llm_tok_vocab_size(t);
    llm_tok_free(t);
    if (tv > (uint32_t)vocab)
        return llm_err(LLM_EINVAL, "%s has %u ids, more than the model's vocab_size %d", path, tv, vocab);
    char *text = NULL;
    size_t len;
    if ((rc = llm_read_file(path, LLM_CKPT_MAX_JSON, &text, &len)))
        return rc;
    *out = cJSON_ParseWithLength(text, len);
    free(text);
    return *out ? 0 : llm_err(LLM_EFORMAT, "%s: not JSON", path);
}

int llm_import_hf(const char *dir, const char *out, const struct llm_import_opts *o)
{
    static const struct llm_import_opts none = {0};
    char p[PATH_MAX_LEN], why[512];
    struct llm_config c;
    struct st_set s = {0};
    struct map_list L = {0};
    struct llm_param_layout layout = {0};
    struct llm_backend be = {0};
    struct llm_model m = {0};
    cJSON *cj = NULL, *tok = NULL, *extra = NULL;
    enum llm_hf_arch arch = LLM_HF_NONE;
    char *text = NULL;
    size_t len;
    if (!o)
        o = &none;
    int rc = llm_config_defaults(&c);
    if (!rc)
        rc = join(p, sizeof(p), dir, "config.json");
    if (!rc && !(rc = llm_read_file(p, 16u << 20, &text, &len)) && !(cj = cJSON_ParseWithLength(text, len)))
        rc = llm_err(LLM_EFORMAT, "%s: not JSON", p);
    free(text);
    if (!rc && !cJSON_IsObject(cj))
        rc = llm_err(LLM_EFORMAT, "%s: not a JSON object", p);
    if (!rc)
        rc = hf_to_model(cj, p, &c.model, &arch);
    for (int i = 0; !rc && i < o->nsets; i++) {
        if (strncmp(o->sets[i], "model.", 6))
            rc = llm_err(LLM_EUSAGE, "--set %s: import stores only the model section (model.KEY=VALUE)",
                         o->sets[i]);
        else
            rc = llm_config_set(&c, o->sets[i]);
    }
    if (!rc && (rc = llm_config_validate(&c)))
        llm_err_wrap(rc, "%s", p);
    if (!rc && llm_hf_arch_of(&c.model, why, sizeof(why)) != arch)
        rc = llm_err(LLM_EUNSUPPORTED, "%s: after --set, %s", p, why[0] ? why : "the model changed shape");
    if (!rc)
        rc = import_tokenizer(dir, o, c.model.vocab_size, &tok);
    if (!rc)
        rc = st_set_open(&s, dir);
    if (!rc && (rc = llm_param_layout_init(&layout, &c.model)))
        llm_err_wrap(rc, "%s", p);
    if (!rc)
        rc = hf_maps(&c.model, &layout, arch, &L);
    if (!rc) /* shapes first: a wrong config.json is refused before allocating the model */
        rc = check_present(&s, &L);
    if (!rc)
        rc = llm_backend_cpu_init(&be, 0, 0);
    if (!rc && (rc = llm_model_init(&m, &c.model, &be, 0)))
        llm_err_wrap(rc, "%s", p);
    if (!rc)
        rc = import_tensors(&m, &s, &L);
    if (!rc)
        rc = check_leftovers(&m, &s, arch);
    if (!rc) {
        cJSON *from = NULL;
        if (!(extra = cJSON_CreateObject()) || !(from = cJSON_AddObjectToObject(extra, "import")))
            rc = llm_err(LLM_ENOMEM, "out of memory");
        if (!rc) {
            cJSON_AddStringToObject(from, "from", dir);
            cJSON_AddStringToObject(from, "model_type", arch == LLM_HF_LLAMA ? "llama" : "gpt2");
            if (tok)
                cJSON_AddItemToObject(extra, "tokenizer", tok), tok = NULL;
            rc = llm_model_save(&m, out, extra);
        }
    }
    cJSON_Delete(extra);
    cJSON_Delete(tok);
    cJSON_Delete(cj);
    free(L.v);
    llm_param_layout_release(&layout);
    llm_model_release(&m);
    if (be.ops)
        llm_backend_release(&be);
    st_set_close(&s);
    llm_config_release(&c);
    return rc;
}
