/* info.c: `llm info CONFIG.json|CKPT`: what a model costs: parameters by
 * kind, FLOPs per token (attention vs MLP), training memory and the
 * compute-optimal token count; --sweep shows how they scale with d_model.
 * All numbers come from lib/model/info.c (formulas: docs/info.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "config/config.h"
#include "core/ckpt.h"
#include "model/info.h"

static const uint8_t CKPT_MAGIC[8] = {'L', 'L', 'M', 'C', 'K', 'P', 'T', 0};

static int is_checkpoint(const char *path)
{
    uint8_t buf[8];
    if (!strcmp(path, "-"))
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0; /* llm_config_load reports the missing file */
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return n == sizeof(buf) && !memcmp(buf, CKPT_MAGIC, sizeof(buf));
}

/* The config stored in a checkpoint's header (key "config"), then sets. */
static int load_ckpt_config(struct llm_config *c, const char *path, const char *const *sets, int nsets,
                            size_t *ntensors)
{
    struct llm_ckpt_reader *r = NULL;
    int rc = llm_config_defaults(c);
    if (!rc)
        rc = llm_ckpt_open(&r, path);
    if (rc)
        return rc;
    *ntensors = llm_ckpt_count(r);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(llm_ckpt_header(r), "config");
    if (!cJSON_IsObject(cfg))
        rc = llm_err(LLM_EFORMAT, "%s: the checkpoint header has no \"config\" object, so the model "
                     "is unknown", path);
    else if ((rc = llm_config_from_json(c, cfg)))
        llm_err_wrap(rc, "%s: header \"config\"", path);
    for (int i = 0; !rc && i < nsets; i++)
        rc = llm_config_set(c, sets[i]);
    if (!rc)
        rc = llm_config_validate(c);
    llm_ckpt_close(r);
    return rc;
}

/* 124439808 -> "124,439,808" */
static const char *commas(char *buf, size_t n, double v)
{
    char raw[32];
    snprintf(raw, sizeof(raw), "%.0f", v);
    size_t len = strlen(raw), k = 0;
    for (size_t i = 0; i < len && k + 2 < n; i++) {
        if (i && (len - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = raw[i];
    }
    buf[k] = 0;
    return buf;
}

/* 1.24e8 -> "124.4M": counts use K M B T (1.3B parameters), FLOPs the SI
 * prefixes K M G T P E (2.4P FLOPs). */
static const char *human(char *buf, size_t n, double v, int flops)
{
    static const char *const cnt[] = {"", "K", "M", "B", "T", "Q"};
    static const char *const si[] = {"", "K", "M", "G", "T", "P", "E"};
    int top = flops ? 6 : 5, u = 0;
    while (fabs(v) >= 1000 && u < top)
        v /= 1000, u++;
    if (u)
        snprintf(buf, n, "%.*f%s", fabs(v) < 10 ? 2 : 1, v, flops ? si[u] : cnt[u]);
    else
        snprintf(buf, n, "%.0f", v);
    return buf;
}

/* bytes -> "1.50 GiB" */
static const char *iec(char *buf, size_t n, double b)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (b >= 1024 && u < 5)
        b /= 1024, u++;
    if (u == 0)
        snprintf(buf, n, "%.0f B", b);
    else
        snprintf(buf, n, "%.*f %s", b < 10 ? 2 : 1, b, units[u]);
    return buf;
}

static void print_report(const char *path, const struct llm_model_config *m, const struct llm_model_info *in,
                         long ntensors)
{
    char a[40], b[40], c[40];
    printf("model: %s\n", path);
    printf("  V %d, T %d, C %d, L %d, NH %d (head size %d), kv heads %d, d_ff %d\n", m->vocab_size,
           m->context_length, m->d_model, m->n_layers, m->n_heads, llm_param_head_size(m),
           llm_config_kv_heads(m), m->d_ff);
    printf("  %s, %s (%s), %s positions, %s attention%s, %s mlp", llm_config_choice_name("model.activation", m->activation),
           llm_config_choice_name("model.norm", m->norm), llm_config_choice_name("model.norm_position", m->norm_position),
           llm_config_choice_name("model.position", m->position), llm_config_choice_name("model.attention", m->attention),
           m->attention_kv == LLM_ATTENTION_KV_MLA ? " (mla)" : "", llm_config_choice_name("model.mlp", m->mlp));
    if (m->mlp == LLM_MLP_MOE)
        printf(" (%d experts, top %d)", m->n_experts, m->top_k);
    printf("%s%s%s\n", m->qk_norm ? ", qk_norm" : "", m->bias ? ", bias" : ", no bias",
           m->tie_embeddings ? ", tied embeddings" : ", untied lm_head");
    if (ntensors >= 0)
        printf("  checkpoint: %ld tensors (the model has %zu)\n", ntensors, in->n_tensors);

    double P = (double)in->params;
    printf("\nparameters (%zu tensors)\n", in->n_tensors);
#define ROW(label, v) printf("  %-24s %15s %7s %6.2f%%\n", label, commas(a, sizeof(a), (double)(v)), \
                             human(b, sizeof(b), (double)(v), 0), 100.0 * (double)(v) / P)
    ROW("total", in->params);
    ROW("embedding (tok + pos)", in->embedding);
    ROW("non-embedding", in->non_embedding);
    if (m->mlp == LLM_MLP_MOE)
        ROW("active per token", in->active);
    ROW("  attention", in->attention);
    ROW("  mlp", in->mlp);
    ROW("  norms", in->norms);
    if (in->lm_head)
        ROW("  lm_head", in->lm_head);
    for (int k = 0; k <= LLM_PARAM_ROUTER; k++) {
        char label[40];
        snprintf(label, sizeof(label), "kind %s", llm_param_kind_name((enum llm_param_kind)k));
        if (in->by_kind[k])
            ROW(label, in->by_kind[k]);
    }
#undef ROW

    printf("\nFLOPs per token (seq %d, %lld keys per query)\n", in->seq, (long long)in->attn_keys);
    printf("  %-36s %9s %10s %8s\n", "", "forward", "fwd+bwd", "share");
#define FROW(label, v) printf("  %-36s %9s %10s %7.2f%%\n", label, human(a, sizeof(a), v, 1), \
                              human(b, sizeof(b), 3 * (v), 1), 100.0 * (v) / in->flops_fwd)
    FROW("attention projections", in->flops_attn_proj);
    FROW("attention scores (QK^T, AV)", in->flops_attn_scores);
    FROW(m->mlp == LLM_MLP_MOE ? "mlp (router + top_k experts)" : "mlp", in->flops_mlp);
    FROW("lm head", in->flops_lm_head);
    FROW("total", in->flops_fwd);
#undef FROW
    printf("  attention (projections + scores) %.1f%%, mlp %.1f%% of the forward\n",
           100.0 * (in->flops_attn_proj + in->flops_attn_scores) / in->flops_fwd, 100.0 * in->mlp_share);

    printf("\nmemory (fp32; activations at batch %d, seq %d)\n", in->batch, in->seq);
    printf("  %-24s %12s\n", "parameters", iec(a, sizeof(a), in->bytes_params));
    printf("  %-24s %12s\n", "gradients", iec(a, sizeof(a), in->bytes_grads));
    printf("  %-24s %12s\n", "adamw state (m, v)", iec(a, sizeof(a), in->bytes_adamw));
    printf("  %-24s %12s\n", "activations", iec(a, sizeof(a), in->bytes_activations));
    printf("  %-24s %12s\n", "total (training)", iec(a, sizeof(a), in->bytes_train));

    printf("\ncompute-optimal (Chinchilla, %.0f tokens/parameter): %s tokens, %s FLOPs\n",
           LLM_CHINCHILLA_TOKENS_PER_PARAM, human(a, sizeof(a), in->chinchilla_tokens, 0),
           human(c, sizeof(c), in->chinchilla_flops, 1));
}

/* Integers as raw JSON text, so no count ever prints as 1.2e+10. */
static void add_int(cJSON *o, const char *k, double v)
{
    char num[32];
    snprintf(num, sizeof(num), "%.0f", v);
    cJSON_AddItemToObject(o, k, cJSON_CreateRaw(num));
}

static cJSON *info_json(const char *path, const struct llm_config *c, const struct llm_model_info *in,
                        long ntensors)
{
    cJSON *root = cJSON_CreateObject(), *cfg = llm_config_to_json(c);
    if (!root || !cfg) {
        cJSON_Delete(root);
        cJSON_Delete(cfg);
        return NULL;
    }
    cJSON_AddStringToObject(root, "source", path);
    if (ntensors >= 0)
        add_int(root, "checkpoint_tensors", (double)ntensors);
    cJSON_AddItemToObject(root, "model", cJSON_DetachItemFromObject(cfg, "model"));
    cJSON_Delete(cfg);

    cJSON *p = cJSON_AddObjectToObject(root, "params");
    add_int(p, "total", (double)in->params);
    add_int(p, "embedding", (double)in->embedding);
    add_int(p, "non_embedding", (double)in->non_embedding);
    add_int(p, "active", (double)in->active);
    add_int(p, "attention", (double)in->attention);
    add_int(p, "mlp", (double)in->mlp);
    add_int(p, "norms", (double)in->norms);
    add_int(p, "lm_head", (double)in->lm_head);
    add_int(p, "tensors", (double)in->n_tensors);
    add_int(p, "layout_floats", (double)in->layout_floats);
    cJSON *k = cJSON_AddObjectToObject(p, "by_kind");
    for (int i = 0; i <= LLM_PARAM_ROUTER; i++)
        add_int(k, llm_param_kind_name((enum llm_param_kind)i), (double)in->by_kind[i]);

    cJSON *f = cJSON_AddObjectToObject(root, "flops_per_token");
    add_int(f, "seq", in->seq);
    add_int(f, "attn_keys", (double)in->attn_keys);
    add_int(f, "d_attn", (double)in->d_attn);
    add_int(f, "matmul_params", (double)in->matmul_params);
    cJSON_AddNumberToObject(f, "attn_proj", in->flops_attn_proj);
    cJSON_AddNumberToObject(f, "attn_scores", in->flops_attn_scores);
    cJSON_AddNumberToObject(f, "mlp", in->flops_mlp);
    cJSON_AddNumberToObject(f, "lm_head", in->flops_lm_head);
    cJSON_AddNumberToObject(f, "forward", in->flops_fwd);
    cJSON_AddNumberToObject(f, "backward", in->flops_bwd);
    cJSON_AddNumberToObject(f, "train", in->flops_train);
    cJSON_AddNumberToObject(f, "attn_share", in->attn_share);
    cJSON_AddNumberToObject(f, "attn_share_blocks", in->attn_share_blocks);
    cJSON_AddNumberToObject(f, "mlp_share", in->mlp_share);

    cJSON *mem = cJSON_AddObjectToObject(root, "memory_bytes");
    add_int(mem, "batch", in->batch);
    add_int(mem, "seq", in->seq);
    add_int(mem, "params", in->bytes_params);
    add_int(mem, "grads", in->bytes_grads);
    add_int(mem, "adamw", in->bytes_adamw);
    add_int(mem, "activations", in->bytes_activations);
    add_int(mem, "train_total", in->bytes_train);

    cJSON *ch = cJSON_AddObjectToObject(root, "chinchilla");
    cJSON_AddNumberToObject(ch, "tokens_per_param", LLM_CHINCHILLA_TOKENS_PER_PARAM);
    cJSON_AddNumberToObject(ch, "tokens", in->chinchilla_tokens);
    cJSON_AddNumberToObject(ch, "flops", in->chinchilla_flops);
    return root;
}

/* ---- --sweep d_model=LO..HI ----
 * d_model doubles from LO to HI. Head size 64 (NH = d_model / 64, at least
 * 1). Depth follows GPT-3's family (Brown et al. 2020, Table 2.1): aspect
 * ratio d_model / n_layers of 64 up to d_model 1024, then growing as
 * d_model^(1/3) to reach 128 at 8192: n_layers = round(d_model / aspect),
 * aspect = 64 * max(1, d_model / 1024)^(1/3). d_ff, n_kv_heads and
 * kv_lora_rank keep their ratio to d_model / n_heads from the config;
 * everything else (V, T, activation, moe, ...) is kept. */
static int parse_sweep(const char *s, long *lo, long *hi)
{
    const char *key = "d_model=";
    char *end;
    if (strncmp(s, key, strlen(key)))
        return llm_err(LLM_EUSAGE, "--sweep: expected d_model=LO..HI, got '%s'", s);
    s += strlen(key);
    *lo = strtol(s, &end, 10);
    if (end == s || strncmp(end, "..", 2))
        return llm_err(LLM_EUSAGE, "--sweep: expected d_model=LO..HI, got 'd_model=%s'", s);
    s = end + 2;
    *hi = strtol(s, &end, 10);
    if (end == s || *end)
        return llm_err(LLM_EUSAGE, "--sweep: expected d_model=LO..HI, got a bad HI in '%s'", s);
    if (*lo < 64 || *lo % 64 || *hi < *lo || *hi > (1L << 20))
        return llm_err(LLM_EUSAGE, "--sweep: expected 64 <= LO <= HI <= 1048576 with LO a multiple "
                       "of 64 (head size 64), got %ld..%ld", *lo, *hi);
    return 0;
}

static void sweep_model(struct llm_model_config *m, const struct llm_model_config *base, int d)
{
    *m = *base;
    double aspect = 64.0 * cbrt(d > 1024 ? d / 1024.0 : 1.0);
    m->d_model = d;
    m->n_heads = d / 64;
    m->n_layers = (int)lround(d / aspect);
    if (m->n_layers < 1)
        m->n_layers = 1;
    m->d_ff = (int)lround((double)base->d_ff * d / base->d_model);
    if (base->n_kv_heads) {
        int group = base->n_heads / llm_config_kv_heads(base); /* query heads per kv head */
        m->n_kv_heads = m->n_heads % group ? m->n_heads : m->n_heads / group;
    }
    if (base->kv_lora_rank)
        m->kv_lora_rank = (int)lround((double)base->kv_lora_rank * d / base->d_model);
}

static int run_sweep(const struct llm_model_config *base, const char *arg, int seq, int batch, int as_json)
{
    long lo = 0, hi = 0;
    int rc = parse_sweep(arg, &lo, &hi);
    if (rc)
        return rc;
    cJSON *rows = as_json ? cJSON_CreateArray() : NULL;
    if (as_json && !rows)
        return llm_err(LLM_ENOMEM, "out of memory");
    if (!as_json)
        printf("# head size 64, n_layers = d_model / (64 * max(1, d_model/1024)^(1/3)), other keys as the config;\n"
               "# attention share = QK^T + AV FLOPs / forward FLOPs per token (in blocks: lm head excluded)\n"
               "d_model  n_layers  n_heads   d_ff       params  non-embedding  fwd FLOPs/token  "
               "attention share  in blocks  mlp share\n");
    for (long d = lo; d <= hi; d *= 2) {
        struct llm_model_config m;
        struct llm_model_info in;
        sweep_model(&m, base, (int)d);
        if ((rc = llm_model_info_compute(&in, &m, seq, batch))) {
            llm_err_wrap(rc, "--sweep at d_model %ld", d);
            break;
        }
        if (as_json) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddItemToArray(rows, r);
            add_int(r, "d_model", m.d_model);
            add_int(r, "n_layers", m.n_layers);
            add_int(r, "n_heads", m.n_heads);
            add_int(r, "d_ff", m.d_ff);
            add_int(r, "params", (double)in.params);
            add_int(r, "non_embedding", (double)in.non_embedding);
            add_int(r, "active", (double)in.active);
            cJSON_AddNumberToObject(r, "flops_fwd", in.flops_fwd);
            cJSON_AddNumberToObject(r, "flops_train", in.flops_train);
            cJSON_AddNumberToObject(r, "attn_share", in.attn_share);
            cJSON_AddNumberToObject(r, "attn_share_blocks", in.attn_share_blocks);
            cJSON_AddNumberToObject(r, "mlp_share", in.mlp_share);
        } else {
            char a[32], b[32], c[32];
            printf("%7d  %8d  %7d  %6d  %11s  %13s  %15s  %14.2f%%  %8.2f%%  %8.2f%%\n", m.d_model,
                   m.n_layers, m.n_heads, m.d_ff, human(a, sizeof(a), (double)in.params, 0),
                   human(b, sizeof(b), (double)in.non_embedding, 0), human(c, sizeof(c), in.flops_fwd, 1),
                   100 * in.attn_share, 100 * in.attn_share_blocks, 100 * in.mlp_share);
        }
    }
    if (as_json && !rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "sweep", rows);
        rows = NULL;
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        if (!text)
            return llm_err(LLM_ENOMEM, "out of memory");
        printf("%s\n", text);
        free(text);
    }
    cJSON_Delete(rows);
    return rc;
}

int cmd_info(int argc, char **argv)
{
    struct llm_strlist sets = {0};
    long batch = 0, seq = 0;
    int as_json = 0;
    const char *sweep = NULL;
    const struct llm_opt opts[] = {
        {"set", 0, LLM_OPT_LIST, &sets, "PATH=VALUE", "override one config key, e.g. model.n_layers=12"},
        {"batch", 'b', LLM_OPT_INT, &batch, "B", "batch size for the activation memory (default: train.batch_size)"},
        {"seq", 0, LLM_OPT_INT, &seq, "S", "sequence length for attention FLOPs and activations (default: model.context_length)"},
        {"json", 0, LLM_OPT_FLAG, &as_json, NULL, "print one JSON object with the same numbers"},
        {"sweep", 0, LLM_OPT_STR, &sweep, "d_model=LO..HI", "a table over d_model doubling from LO to HI (see docs/info.md)"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "info",
        .usage = "CONFIG.json|CKPT [--set PATH=VALUE]... [--batch B] [--seq S] [--json] [--sweep d_model=LO..HI]",
        .summary = "parameters, FLOPs per token (attention vs MLP), memory and compute-optimal tokens of a model",
        .opts = opts,
        .min_pos = 1,
        .max_pos = 1,
        .epilog = "A CKPT is read for the config in its header. Formulas and sources: docs/info.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;

    const char *path = a.pos[0];
    struct llm_config c;
    memset(&c, 0, sizeof(c)); /* releasable on every path below */
    long ntensors = -1;
    int rc;
    if (batch < 0 || batch > (1L << 30))
        rc = llm_err(LLM_EUSAGE, "--batch: expected 1..2^30, got %ld", batch);
    else if (seq < 0 || seq > (1L << 30))
        rc = llm_err(LLM_EUSAGE, "--seq: expected 1..2^30, got %ld", seq);
    else if (is_checkpoint(path)) {
        size_t nt = 0;
        rc = load_ckpt_config(&c, path, sets.v, sets.n, &nt);
        ntensors = (long)nt;
    } else {
        rc = llm_config_load(&c, path, sets.v, sets.n);
    }
    if (rc) {
        llm_config_release(&c);
        llm_args_release(&spec, &a);
        return cmd_fail(&spec, rc);
    }
    int b = batch ? (int)batch : c.train.batch_size;
    struct llm_model_info in;
    if (sweep) {
        rc = run_sweep(&c.model, sweep, (int)seq, b, as_json);
    } else if (!(rc = llm_model_info_compute(&in, &c.model, (int)seq, b))) {
        if (as_json) {
            cJSON *o = info_json(path, &c, &in, ntensors);
            char *text = o ? cJSON_Print(o) : NULL;
            cJSON_Delete(o);
            if (!text)
                rc = llm_err(LLM_ENOMEM, "out of memory building the JSON report");
            else
                printf("%s\n", text);
            free(text);
        } else {
            print_report(path, &c.model, &in, ntensors);
        }
    }
    llm_config_release(&c);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
