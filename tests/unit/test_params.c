/* test_params.c: the parameter layout (lib/model/params.c) and the
 * accounting of `llm info` (lib/model/info.c): known counts (GPT-2 124M),
 * hand-counted Llama, MoE and MLA layouts, the layout's invariants, the
 * errors naming their key, and FLOPs/memory against hand-computed values.
 * `test_params --write-ckpt PATH` writes a checkpoint of the default model
 * whose header holds its config, `--write-ckpt-no-config PATH` the same
 * without it, for tests/cli/info.sh. */
#include "testutil.h"

#include <math.h>

#include "config/config.h"
#include "core/ckpt.h"
#include "core/err.h"
#include "model/info.h"
#include "model/params.h"

/* ---- configs ---- */

/* The library defaults (= configs/tiny.json's model): V 4096, T 256, C 256,
 * L 4, NH 4, F 1024, gelu, layernorm, learned, bias, tied. */
static struct llm_model_config tiny(void)
{
    struct llm_config c;
    assert_int_equal(llm_config_defaults(&c), 0);
    struct llm_model_config m = c.model;
    llm_config_release(&c);
    return m;
}

static struct llm_model_config gpt2_small(void)
{
    struct llm_model_config m = tiny();
    m.vocab_size = 50257;
    m.context_length = 1024;
    m.d_model = 768;
    m.n_layers = 12;
    m.n_heads = 12;
    m.d_ff = 3072;
    return m;
}

/* Llama-style: rope, rmsnorm, swiglu, no bias, untied, GQA 4 -> 2. */
static struct llm_model_config llama_small(void)
{
    struct llm_model_config m = tiny();
    m.vocab_size = 1000;
    m.context_length = 128;
    m.d_model = 64;
    m.n_layers = 2;
    m.n_heads = 4;
    m.n_kv_heads = 2;
    m.d_ff = 176;
    m.activation = LLM_ACTIVATION_SWIGLU;
    m.norm = LLM_NORM_RMSNORM;
    m.position = LLM_POSITION_ROPE;
    m.bias = false;
    m.tie_embeddings = false;
    return m;
}

static const struct llm_param_spec *get(const struct llm_param_layout *l, const char *name)
{
    long i = llm_param_find(l, name);
    if (i < 0)
        fail_msg("no tensor '%s'", name);
    return &l->p[i];
}

static void expect_shape(const struct llm_param_layout *l, const char *name, int64_t d0, int64_t d1)
{
    const struct llm_param_spec *s = get(l, name);
    if (s->shape[0] != d0 || (d1 && s->shape[1] != d1) || s->ndim != (d1 ? 2 : 1))
        fail_msg("%s: shape [%lld, %lld] ndim %d, wanted [%lld, %lld]", name, (long long)s->shape[0],
                 (long long)s->shape[1], s->ndim, (long long)d0, (long long)d1);
}

/* Names unique, offsets aligned, increasing and not overlapping, numel =
 * product of the shape, total covers the last tensor. */
static void check_invariants(const struct llm_param_layout *l)
{
    size_t end = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct llm_param_spec *s = &l->p[i];
        assert_true(s->ndim == 1 || s->ndim == 2);
        assert_int_equal(s->numel, (size_t)s->shape[0] * (size_t)(s->ndim == 2 ? s->shape[1] : 1));
        assert_int_equal(s->offset % LLM_PARAM_ALIGN, 0);
        assert_true(s->offset >= end);
        end = s->offset + s->numel;
        assert_int_equal(llm_param_find(l, s->name), (long)i); /* unique: first match is itself */
        assert_true((s->layer < 0) == (strncmp(s->name, "layers.", 7) != 0));
    }
    assert_true(l->total >= end);
    assert_true(l->total - end < LLM_PARAM_ALIGN);
}

static int64_t count(const struct llm_model_config *m)
{
    struct llm_param_layout l;
    assert_int_equal(llm_param_layout_init(&l, m), 0);
    check_invariants(&l);
    int64_t n = (int64_t)llm_param_count(&l);
    llm_param_layout_release(&l);
    return n;
}

/* ---- layouts ---- */

static void test_gpt2_124m(void **state)
{
    (void)state;
    struct llm_model_config m = gpt2_small();
    struct llm_param_layout l;
    assert_int_equal(llm_param_layout_init(&l, &m), 0);
    check_invariants(&l);
    /* the known GPT-2 small count (HF GPT2LMHeadModel, tied) */
    assert_int_equal(llm_param_count(&l), 124439808);
    /* tok, pos; 16 per layer (2 norms, 6 linears, each weight + bias); final norm w + b */
    assert_int_equal(l.n, 2 + 12 * 16 + 2);
    expect_shape(&l, "tok_emb.weight", 50257, 768);
    expect_shape(&l, "pos_emb.weight", 1024, 768);
    expect_shape(&l, "layers.11.attn.wq.weight", 768, 768);
    expect_shape(&l, "layers.11.attn.wq.bias", 768, 0);
    expect_shape(&l, "layers.0.mlp.w1.weight", 3072, 768);
    expect_shape(&l, "layers.0.mlp.w2.weight", 768, 3072);
    expect_shape(&l, "layers.0.mlp.w2.bias", 768, 0);
    expect_shape(&l, "final_norm.bias", 768, 0);
    assert_int_equal(llm_param_find(&l, "lm_head.weight"), -1);
    assert_int_equal(llm_param_find(&l, "layers.0.mlp.w3.weight"), -1);
    assert_int_equal(llm_param_find(&l, "layers.12.attn.wq.weight"), -1);
    assert_int_equal(get(&l, "tok_emb.weight")->kind, LLM_PARAM_EMBEDDING);
    assert_int_equal(get(&l, "pos_emb.weight")->kind, LLM_PARAM_POSITION);
    assert_int_equal(get(&l, "layers.3.attn_norm.bias")->kind, LLM_PARAM_NORM);
    assert_int_equal(get(&l, "layers.3.attn.wo.bias")->kind, LLM_PARAM_BIAS);
    assert_int_equal(get(&l, "layers.3.attn.wo.weight")->kind, LLM_PARAM_MATRIX);
    assert_int_equal(get(&l, "layers.3.attn.wo.weight")->layer, 3);
    assert_int_equal(get(&l, "final_norm.weight")->layer, -1);
    /* the first tensors sit at the start, in order */
    assert_int_equal(l.p[0].offset, 0);
    assert_string_equal(l.p[0].name, "tok_emb.weight");
    assert_string_equal(l.p[1].name, "pos_emb.weight");
    assert_string_equal(l.p[2].name, "layers.0.attn_norm.weight");
    assert_string_equal(l.p[l.n - 1].name, "final_norm.bias");
    llm_param_layout_release(&l);
    llm_param_layout_release(&l); /* twice is safe */
    assert_null(l.p);
}

static void test_llama(void **state)
{
    (void)state;
    struct llm_model_config m = llama_small();
    struct llm_param_layout l;
    assert_int_equal(llm_param_layout_init(&l, &m), 0);
    check_invariants(&l);
    /* C 64, NH 4, HS 16, NKV 2, F 176, V 1000, L 2, by hand:
     *   per layer: attn_norm 64 + wq 64*64 + wk 32*64 + wv 32*64 + wo 64*64
     *              + mlp_norm 64 + w1, w3: 176*64 each + w2 64*176
     *            = 64 + 4096 + 2048 + 2048 + 4096 + 64 + 3 * 11264 = 46208
     *   total = tok 64000 + 2 * 46208 + final_norm 64 + lm_head 64000 = 220480 */
    assert_int_equal(llm_param_count(&l), 220480);
    static const char *const order[] = {
        "tok_emb.weight", "layers.0.attn_norm.weight", "layers.0.attn.wq.weight",
        "layers.0.attn.wk.weight", "layers.0.attn.wv.weight", "layers.0.attn.wo.weight",
        "layers.0.mlp_norm.weight", "layers.0.mlp.w1.weight", "layers.0.mlp.w3.weight",
        "layers.0.mlp.w2.weight", "layers.1.attn_norm.weight",
    };
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        assert_string_equal(l.p[i].name, order[i]);
    assert_int_equal(l.n, 1 + 2 * 9 + 2);
    assert_string_equal(l.p[l.n - 2].name, "final_norm.weight");
    assert_string_equal(l.p[l.n - 1].name, "lm_head.weight");
    expect_shape(&l, "layers.1.attn.wk.weight", 32, 64);
    expect_shape(&l, "layers.1.attn.wv.weight", 32, 64);
    expect_shape(&l, "layers.1.attn.wo.weight", 64, 64);
    expect_shape(&l, "layers.1.mlp.w3.weight", 176, 64);
    expect_shape(&l, "lm_head.weight", 1000, 64);
    assert_int_equal(llm_param_find(&l, "pos_emb.weight"), -1);
    assert_int_equal(llm_param_find(&l, "layers.0.attn_norm.bias"), -1);
    assert_int_equal(llm_param_find(&l, "layers.0.attn.wq.bias"), -1);
    llm_param_layout_release(&l);

    /* qk_norm adds two HS vectors per layer; layernorm with bias adds norm biases */
    m.qk_norm = true;
    assert_int_equal(count(&m), 220480 + 2 * 2 * 16);
    m.norm = LLM_NORM_LAYERNORM;
    m.bias = true;
    /* + norm biases (2 per layer + final: 5 * 64) + linear biases per layer
     *   (wq 64 + wk 32 + wv 32 + wo 64 + w1 176 + w3 176 + w2 64 = 608) */
    assert_int_equal(count(&m), 220480 + 64 + 5 * 64 + 2 * 608);
}

static void test_moe(void **state)
{
    (void)state;
    struct llm_model_config m = tiny();
    m.d_model = 64;
    m.n_heads = 4;
    m.d_ff = 128;
    m.n_layers = 2;
    m.vocab_size = 100;
    m.context_length = 32;
    m.mlp = LLM_MLP_MOE;
    m.n_experts = 4;
    m.top_k = 2;
    m.bias = true; /* experts get no biases anyway */
    struct llm_param_layout l;
    assert_int_equal(llm_param_layout_init(&l, &m), 0);
    check_invariants(&l);
    expect_shape(&l, "layers.1.moe.router.weight", 4, 64);
    expect_shape(&l, "layers.1.moe.experts.3.w1.weight", 128, 64);
    expect_shape(&l, "layers.1.moe.experts.3.w2.weight", 64, 128);
    assert_int_equal(get(&l, "layers.1.moe.router.weight")->kind, LLM_PARAM_ROUTER);
    assert_int_equal(get(&l, "layers.1.moe.experts.2.w2.weight")->expert, 2);
    assert_int_equal(llm_param_find(&l, "layers.1.moe.experts.3.w3.weight"), -1);
    assert_int_equal(llm_param_find(&l, "layers.1.moe.experts.3.w1.bias"), -1);
    assert_int_equal(llm_param_find(&l, "layers.1.mlp.w1.weight"), -1);
    assert_int_equal(llm_param_find(&l, "layers.1.moe.experts.4.w1.weight"), -1);
    llm_param_layout_release(&l);

    struct llm_model_info in;
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    /* one expert = w1 + w2 = 2 * 64 * 128 = 16384; a token skips 2 of 4 per layer */
    assert_int_equal(in.expert, 16384);
    assert_int_equal(in.active, in.params - 2 * 2 * 16384);
    assert_true(in.active < in.params);
    /* mlp FLOPs = 2 * L * (router 4*64 + top_k 2 * 16384) */
    assert_true(in.flops_mlp == 2.0 * 2 * (4 * 64 + 2 * 16384));

    m.activation = LLM_ACTIVATION_SWIGLU;
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    assert_int_equal(in.expert, 3 * 64 * 128);
    m.top_k = 4; /* all experts: active = total */
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    assert_int_equal(in.active, in.params);
}

static void test_mla(void **state)
{
    (void)state;
    struct llm_model_config m = llama_small(); /* C 64, NH 4, HS 16 */
    m.n_kv_heads = 0;
    m.attention_kv = LLM_ATTENTION_KV_MLA;
    m.kv_lora_rank = 32;
    assert_int_equal(llm_param_mla_rope_dim(&m), 8);
    struct llm_param_layout l;
    assert_int_equal(llm_param_layout_init(&l, &m), 0);
    check_invariants(&l);
    /* R = 8: wkv_a (K + R, C); wkv_b (NH*(HS-R) + NH*HS, K) = (4*8 + 4*16, 32) */
    expect_shape(&l, "layers.0.attn.wq.weight", 64, 64);
    expect_shape(&l, "layers.0.attn.wkv_a.weight", 40, 64);
    expect_shape(&l, "layers.0.attn.kv_norm.weight", 32, 0);
    expect_shape(&l, "layers.0.attn.wkv_b.weight", 96, 32);
    expect_shape(&l, "layers.0.attn.wo.weight", 64, 64);
    assert_int_equal(llm_param_find(&l, "layers.0.attn.wk.weight"), -1);
    assert_int_equal(llm_param_find(&l, "layers.0.attn.wv.weight"), -1);
    /* order: wq, wkv_a, kv_norm, wkv_b, wo */
    long q = llm_param_find(&l, "layers.0.attn.wq.weight");
    assert_string_equal(l.p[q + 1].name, "layers.0.attn.wkv_a.weight");
    assert_string_equal(l.p[q + 2].name, "layers.0.attn.kv_norm.weight");
    assert_string_equal(l.p[q + 3].name, "layers.0.attn.wkv_b.weight");
    assert_string_equal(l.p[q + 4].name, "layers.0.attn.wo.weight");
    llm_param_layout_release(&l);
    /* per layer: the standard wk + wv (2 * 32 * 64 with GQA 2 kv heads -> now 0)
     * replaced by 40*64 + 32 + 96*32 */
    assert_int_equal(count(&m), 220480 - 2 * (2 * 32 * 64) + 2 * (40 * 64 + 32 + 96 * 32));

    /* R = HS/2 rounded down to even */
    m.d_model = 24; /* HS 6 -> R 2 */
    assert_int_equal(llm_param_mla_rope_dim(&m), 2);
    m.d_model = 40; /* HS 10 -> R 4 */
    assert_int_equal(llm_param_mla_rope_dim(&m), 4);
    m.d_model = 32; /* HS 8 -> R 4 */
    assert_int_equal(llm_param_mla_rope_dim(&m), 4);
}

/* Every combination of the switches gives a layout with the invariants. */
static void test_variants(void **state)
{
    (void)state;
    for (int v = 0; v < 1 << 9; v++) {
        struct llm_model_config m = llama_small();
        m.activation = (v & 1) ? LLM_ACTIVATION_SWIGLU : LLM_ACTIVATION_RELU2;
        m.norm = (v & 2) ? LLM_NORM_RMSNORM : LLM_NORM_LAYERNORM;
        m.position = (v & 4) ? LLM_POSITION_ROPE : LLM_POSITION_LEARNED;
        m.bias = (v & 8) != 0;
        m.tie_embeddings = (v & 16) != 0;
        m.qk_norm = (v & 32) != 0;
        m.mlp = (v & 64) ? LLM_MLP_MOE : LLM_MLP_DENSE;
        m.n_experts = 3;
        m.top_k = 1;
        m.attention_kv = (v & 128) ? LLM_ATTENTION_KV_MLA : LLM_ATTENTION_KV_STANDARD;
        m.kv_lora_rank = 8;
        if (v & 128)
            m.n_kv_heads = 0;
        m.attention = (v & 256) ? LLM_ATTENTION_SLIDING : LLM_ATTENTION_FULL;
        m.window = 16;
        struct llm_param_layout l;
        if (llm_param_layout_init(&l, &m))
            fail_msg("variant %d: %s", v, llm_errmsg());
        check_invariants(&l);
        assert_int_equal(llm_param_find(&l, "lm_head.weight") < 0, m.tie_embeddings);
        assert_int_equal(llm_param_find(&l, "pos_emb.weight") < 0, m.position != LLM_POSITION_LEARNED);
        llm_param_layout_release(&l);
        struct llm_model_info in;
        assert_int_equal(llm_model_info_compute(&in, &m, 0, 2), 0);
        assert_int_equal(in.params, in.embedding + in.non_embedding);
        assert_int_equal(in.params, in.attention + in.mlp + in.norms + in.lm_head + in.embedding);
        int64_t kinds = 0;
        for (int k = 0; k < 6; k++)
            kinds += in.by_kind[k];
        assert_int_equal(kinds, in.params);
    }
}

/* ---- errors ---- */

static void expect_error(const struct llm_model_config *m, const char *key)
{
    struct llm_param_layout l;
    int rc = llm_param_layout_init(&l, m);
    if (rc != LLM_EINVAL)
        fail_msg("wanted LLM_EINVAL naming '%s', got %d ('%s')", key, rc, llm_errmsg());
    if (strncmp(llm_errmsg(), key, strlen(key)) || llm_errmsg()[strlen(key)] != ':')
        fail_msg("error '%s' does not start with '%s:'", llm_errmsg(), key);
    assert_null(strchr(llm_errmsg(), '\n'));
    assert_null(l.p);
    llm_param_layout_release(&l);
    struct llm_model_info in;
    assert_int_equal(llm_model_info_compute(&in, m, 0, 1), LLM_EINVAL);
}

static void test_errors(void **state)
{
    (void)state;
    struct llm_model_config m;
    m = tiny(), m.n_heads = 3;
    expect_error(&m, "model.n_heads");
    m = tiny(), m.n_heads = 0;
    expect_error(&m, "model.n_heads");
    m = tiny(), m.n_kv_heads = 3;
    expect_error(&m, "model.n_kv_heads");
    m = tiny(), m.d_model = 0;
    expect_error(&m, "model.d_model");
    m = tiny(), m.vocab_size = -1;
    expect_error(&m, "model.vocab_size");
    m = tiny(), m.d_model = 20, m.n_heads = 4, m.position = LLM_POSITION_ROPE; /* HS 5 */
    expect_error(&m, "model.position");
    m = tiny(), m.attention_kv = LLM_ATTENTION_KV_MLA, m.kv_lora_rank = 0;
    expect_error(&m, "model.kv_lora_rank");
    m = tiny(), m.attention_kv = LLM_ATTENTION_KV_MLA, m.kv_lora_rank = 8, m.d_model = 8; /* HS 2 */
    expect_error(&m, "model.attention_kv");
    m = tiny(), m.attention_kv = LLM_ATTENTION_KV_MLA, m.kv_lora_rank = 8, m.d_model = 20; /* HS 5 */
    expect_error(&m, "model.attention_kv");
    m = tiny(), m.attention_kv = LLM_ATTENTION_KV_MLA, m.kv_lora_rank = 8, m.n_kv_heads = 2;
    expect_error(&m, "model.n_kv_heads");
    m = tiny(), m.mlp = LLM_MLP_MOE, m.n_experts = 2, m.top_k = 3;
    expect_error(&m, "model.top_k");
    m = tiny(), m.mlp = LLM_MLP_MOE, m.n_experts = 0, m.top_k = 0;
    expect_error(&m, "model.n_experts");
    m = tiny(), m.attention = LLM_ATTENTION_SLIDING, m.window = 0;
    expect_error(&m, "model.window");
    /* absurd sizes are refused before anything is allocated */
    m = tiny(), m.mlp = LLM_MLP_MOE, m.n_experts = 1 << 30, m.top_k = 1, m.n_layers = 1 << 30;
    expect_error(&m, "model");
}

/* ---- accounting ---- */

static void test_flops_tiny(void **state)
{
    (void)state;
    struct llm_model_config m = tiny();
    struct llm_model_info in;
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 8), 0);
    /* C 256, L 4, F 1024, V 4096, T 256, d_attn 256:
     *   attention matrices per layer 4 * 256^2 = 262144, mlp 2 * 256 * 1024 = 524288
     *   N_mm = 4 * (262144 + 524288) + lm head 4096 * 256 = 4194304
     *   scores = 4 * L * T * d_attn = 4 * 4 * 256 * 256 = 1048576
     *   fwd = 2 * 4194304 + 1048576 = 9437184 */
    assert_int_equal(in.matmul_params, 4194304);
    assert_true(in.flops_attn_proj == 2.0 * 4 * 262144);
    assert_true(in.flops_mlp == 2.0 * 4 * 524288);
    assert_true(in.flops_lm_head == 2.0 * 4096 * 256);
    assert_true(in.flops_attn_scores == 1048576.0);
    assert_true(in.flops_fwd == 9437184.0);
    assert_true(in.flops_bwd == 2 * 9437184.0);
    assert_true(in.flops_train == 3 * 9437184.0);
    assert_true(in.flops_train == 6.0 * in.matmul_params + 12.0 * 4 * 256 * 256);
    assert_true(fabs(in.attn_share - 1.0 / 9) < 1e-12);
    assert_true(llm_model_train_flops_per_token(&m, 0) == in.flops_train);
    /* parameters: tok 4096*256 + pos 256*256 = 1114112 embedding */
    assert_int_equal(in.params, 4273664);
    assert_int_equal(in.embedding, 1114112);
    assert_int_equal(in.active, in.params);
    assert_int_equal(in.lm_head, 0);
    /* memory: 4 + 4 + 8 bytes per parameter */
    assert_true(in.bytes_params == 4.0 * 4273664);
    assert_true(in.bytes_grads == 4.0 * 4273664);
    assert_true(in.bytes_adamw == 8.0 * 4273664);
    /* activations per token, per layer: input C + ln C+2 + qkv 3C + probs NH*T
     *   + attn out C + residual C + ln C+2 + hidden 2F
     *   = 256 + 258 + 768 + 1024 + 256 + 256 + 258 + 2048 = 5124;
     * outside: last output C + final ln C+2 + logits V = 4610 */
    assert_true(in.act_floats_layer == 5124.0);
    assert_true(in.act_floats_other == 4610.0);
    assert_true(in.bytes_activations == 4.0 * 8 * 256 * (4 * 5124 + 4610));
    assert_true(in.chinchilla_tokens == 20.0 * 4273664);
    assert_true(in.chinchilla_flops == in.chinchilla_tokens * in.flops_train);

    /* a shorter sequence: scores scale with S, matmuls do not */
    assert_int_equal(llm_model_info_compute(&in, &m, 64, 1), 0);
    assert_true(in.flops_attn_scores == 4.0 * 4 * 64 * 256);
    assert_true(in.flops_fwd == 2.0 * 4194304 + 4.0 * 4 * 64 * 256);
}

static void test_flops_attention_kinds(void **state)
{
    (void)state;
    struct llm_model_config m = llama_small(); /* L 2, T 128, d_attn 64, HS 16 */
    struct llm_model_info in;
    /* GQA leaves the scores alone: per query head, T keys of HS */
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    assert_true(in.flops_attn_scores == 4.0 * 2 * 128 * 64);
    /* projections: wq 64*64 + wk, wv 32*64 + wo 64*64 = 12288 per layer */
    assert_true(in.flops_attn_proj == 2.0 * 2 * 12288);
    /* mlp: 3 * 176 * 64 per layer; lm head untied: still V*C */
    assert_true(in.flops_mlp == 2.0 * 2 * 3 * 176 * 64);
    assert_true(in.flops_lm_head == 2.0 * 1000 * 64);
    assert_int_equal(in.lm_head, 64000);
    /* sliding: min(window, T) keys */
    m.attention = LLM_ATTENTION_SLIDING;
    m.window = 32;
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    assert_int_equal(in.attn_keys, 32);
    assert_true(in.flops_attn_scores == 4.0 * 2 * 32 * 64);
    m.window = 1000;
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    assert_int_equal(in.attn_keys, 128);
    /* linear: a HS x HS state, "HS keys" */
    m.attention = LLM_ATTENTION_LINEAR;
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    assert_int_equal(in.attn_keys, 16);
    assert_true(in.flops_attn_scores == 4.0 * 2 * 16 * 64);
}

/* The attention share falls as models widen at a fixed context (depth
 * growing with width). With a large vocabulary the lm head dominates small
 * models, so there only the share within the blocks must fall. */
static void test_attention_share_shrinks(void **state)
{
    (void)state;
    for (int big_vocab = 0; big_vocab < 2; big_vocab++) {
        double prev = 1, prev_blocks = 1;
        for (int d = 256; d <= 8192; d *= 2) {
            struct llm_model_config m = gpt2_small();
            m.vocab_size = big_vocab ? 50257 : 4096;
            m.d_model = d;
            m.n_heads = d / 64;
            m.d_ff = 4 * d;
            m.n_layers = d / 64;
            struct llm_model_info in;
            assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
            if (!big_vocab)
                assert_true(in.attn_share < prev);
            assert_true(in.attn_share_blocks < prev_blocks);
            assert_true(in.attn_share < in.attn_share_blocks);
            prev = in.attn_share;
            prev_blocks = in.attn_share_blocks;
        }
    }
    /* the blocks' share is 4 T C / (24 C^2 + 4 T C) = T / (6 C + T) for a
     * dense 4C GELU MLP, bias-free: T 1024, C 512 -> 1/4 */
    struct llm_model_config m = gpt2_small();
    m.d_model = 512, m.n_heads = 8, m.d_ff = 2048;
    struct llm_model_info in;
    assert_int_equal(llm_model_info_compute(&in, &m, 0, 1), 0);
    assert_true(fabs(in.attn_share_blocks - 0.25) < 1e-12);
}

/* ---- a checkpoint for tests/cli/info.sh ---- */

static int write_ckpt(const char *path, int with_config)
{
    struct llm_config c;
    struct llm_param_layout l = {0};
    struct llm_ckpt_writer *w = NULL;
    cJSON *header = cJSON_CreateObject();
    float *zeros = NULL;
    int rc = llm_config_defaults(&c);
    if (!rc)
        rc = llm_param_layout_init(&l, &c.model);
    if (!rc) {
        if (with_config)
            cJSON_AddItemToObject(header, "config", llm_config_to_json(&c));
        else
            cJSON_AddNumberToObject(header, "step", 7);
        rc = llm_ckpt_writer_open(&w, path, header, NULL);
    }
    if (!rc && !(zeros = calloc(l.total, sizeof(float))))
        rc = LLM_ENOMEM;
    for (size_t i = 0; !rc && i < l.n; i++)
        rc = llm_ckpt_write_tensor(w, l.p[i].name, LLM_CKPT_F32, l.p[i].ndim, l.p[i].shape,
                                   zeros + l.p[i].offset);
    if (w)
        rc = rc ? (llm_ckpt_writer_abort(w), rc) : llm_ckpt_writer_commit(w);
    if (rc)
        fprintf(stderr, "test_params: %s\n", llm_errmsg());
    free(zeros);
    cJSON_Delete(header);
    llm_param_layout_release(&l);
    llm_config_release(&c);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-ckpt"))
        return write_ckpt(argv[2], 1);
    if (argc == 3 && !strcmp(argv[1], "--write-ckpt-no-config"))
        return write_ckpt(argv[2], 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_124m),
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_moe),
        cmocka_unit_test(test_mla),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_flops_tiny),
        cmocka_unit_test(test_flops_attention_kinds),
        cmocka_unit_test(test_attention_share_shrinks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
