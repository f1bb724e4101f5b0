/* info.c: parameter, FLOP and memory accounting of a model config, walked
 * from the parameter layout (params.h) so counts and shapes cannot drift
 * from the model; formulas in info.h and docs/info.md. */
#include <string.h>

#include "core/err.h"
#include "model/info.h"

/* "layers.3.attn.wq.weight" -> does the part after "layers.N." start with part? */
static int in_block(const char *name, const char *part)
{
    if (strncmp(name, "layers.", 7))
        return 0;
    const char *dot = strchr(name + 7, '.');
    return dot && !strncmp(dot + 1, part, strlen(part));
}

/* S_keys: the keys one query's scores and weighted values run over. Full
 * causal attention is counted over all S (PaLM's convention; the masked
 * half is not subtracted). Linear attention keeps a HS x HS state per head:
 * per token, k^T v and q S cost 2 * HS * HS each per head, i.e. "HS keys". */
static int64_t attn_keys(const struct llm_model_config *m, int seq)
{
    switch (m->attention) {
    case LLM_ATTENTION_SLIDING: return m->window < seq ? m->window : seq;
    case LLM_ATTENTION_LINEAR: return llm_param_head_size(m);
    case LLM_ATTENTION_FULL: break;
    }
    return seq;
}

/* Activations one block keeps per token for the backward pass, in floats:
 * the estimate of docs/info.md ("Activations"). ns = norm statistics per
 * row (mean and rstd for layernorm, rstd for rmsnorm). */
static double act_layer(const struct llm_model_config *m, int seq)
{
    double C = m->d_model, NH = m->n_heads, HS = llm_param_head_size(m);
    double NKV = llm_config_kv_heads(m), F = m->d_ff;
    double ns = m->norm == LLM_NORM_LAYERNORM ? 2 : 1;
    double a = 0;
    a += C;                    /* the block's input (residual stream) */
    a += C + ns;               /* attn_norm output and statistics */
    if (m->attention_kv == LLM_ATTENTION_KV_MLA) {
        double K = m->kv_lora_rank, R = llm_param_mla_rope_dim(m);
        NKV = NH;
        a += NH * HS;                      /* q */
        a += K + R;                        /* wkv_a output: c_kv, k_rope */
        a += K + 1;                        /* kv_norm output and rstd */
        a += NH * (HS - R) + NH * HS;      /* wkv_b output: k_nope, v */
        a += NH * HS;                      /* assembled keys [k_nope ; k_rope] */
    } else {
        a += NH * HS + 2 * NKV * HS;       /* q, k, v (after bias and rope, in place) */
    }
    if (m->qk_norm)
        a += NH * HS + NKV * HS + NH + NKV; /* normalized q and k, their rstd */
    /* attention probabilities, dense per query: S (full: the S x S matrix),
     * window (sliding); linear attention recomputes its states instead */
    if (m->attention != LLM_ATTENTION_LINEAR)
        a += NH * (double)attn_keys(m, seq);
    a += NH * HS;              /* attention output, input of wo */
    a += C;                    /* residual after attention */
    a += C + ns;               /* mlp_norm output and statistics */
    double hidden = m->activation == LLM_ACTIVATION_SWIGLU ? 3 * F : 2 * F; /* pre, post (gate, up, h) */
    if (m->mlp == LLM_MLP_MOE)
        a += m->n_experts + m->top_k * (hidden + C); /* router probs; per chosen expert: hidden, output */
    else
        a += hidden;
    return a;
}

int llm_model_info_compute(struct llm_model_info *info, const struct llm_model_config *m, int seq, int batch)
{
    memset(info, 0, sizeof(*info));
    if (seq < 0 || batch < 0)
        return llm_err(LLM_EINVAL, "%s: expected an integer >= 1, got %d", seq < 0 ? "seq" : "batch",
                       seq < 0 ? seq : batch);
    struct llm_param_layout l;
    int rc = llm_param_layout_init(&l, m);
    if (rc)
        return rc;
    int moe = m->mlp == LLM_MLP_MOE;
    double attn_mm = 0, mlp_mm = 0, expert_mm = 0;
    for (size_t i = 0; i < l.n; i++) {
        const struct llm_param_spec *s = &l.p[i];
        int64_t n = (int64_t)s->numel;
        info->params += n;
        info->by_kind[s->kind] += n;
        if (s->kind == LLM_PARAM_EMBEDDING || s->kind == LLM_PARAM_POSITION)
            info->embedding += n;
        if (in_block(s->name, "attn.")) {
            info->attention += n;
            if (s->kind == LLM_PARAM_MATRIX)
                attn_mm += n;
        } else if (in_block(s->name, "mlp.") || in_block(s->name, "moe.")) {
            info->mlp += n;
            if (s->expert >= 0) {
                if (s->layer == 0 && s->expert == 0)
                    info->expert += n;
                if (s->kind == LLM_PARAM_MATRIX)
                    expert_mm += n;
            } else if (s->kind == LLM_PARAM_MATRIX || s->kind == LLM_PARAM_ROUTER) {
                mlp_mm += n; /* dense matrices, or the router (every expert is scored) */
            }
        } else if (!strcmp(s->name, "lm_head.weight")) {
            info->lm_head += n;
        } else if (s->kind == LLM_PARAM_NORM) {
            info->norms += n;
        }
    }
    info->non_embedding = info->params - info->embedding;
    info->active = info->params;
    if (moe) {
        /* a token runs top_k of the E experts of each layer */
        info->active -= (int64_t)m->n_layers * (m->n_experts - m->top_k) * info->expert;
        mlp_mm += expert_mm * m->top_k / m->n_experts;
    }
    info->layout_floats = (int64_t)l.total;
    info->n_tensors = l.n;
    llm_param_layout_release(&l);

    double L = m->n_layers, V = m->vocab_size, C = m->d_model;
    info->seq = seq ? seq : m->context_length;
    info->batch = batch ? batch : 1;
    info->attn_keys = attn_keys(m, info->seq);
    info->d_attn = (int64_t)m->n_heads * llm_param_head_size(m);
    info->matmul_params = (int64_t)(attn_mm + mlp_mm) + (int64_t)m->vocab_size * m->d_model;
    /* a matmul by a (out, in) matrix is out*in multiply-adds: 2 FLOPs per weight */
    info->flops_attn_proj = 2 * attn_mm;
    /* QK^T: S_keys dot products of HS per head; AV: the same again */
    info->flops_attn_scores = 2.0 * 2.0 * L * (double)info->attn_keys * (double)info->d_attn;
    info->flops_mlp = 2 * mlp_mm;
    info->flops_lm_head = 2 * V * C;
    info->flops_fwd = info->flops_attn_proj + info->flops_attn_scores + info->flops_mlp + info->flops_lm_head;
    /* backward: each matmul's input grad and weight grad cost one forward each */
    info->flops_bwd = 2 * info->flops_fwd;
    info->flops_train = info->flops_fwd + info->flops_bwd;
    info->attn_share = info->flops_attn_scores / info->flops_fwd;
    info->attn_share_blocks = info->flops_attn_scores / (info->flops_fwd - info->flops_lm_head);
    info->mlp_share = info->flops_mlp / info->flops_fwd;

    double P = (double)info->params;
    info->bytes_params = 4 * P;
    info->bytes_grads = 4 * P;
    info->bytes_adamw = 8 * P;
    double ns = m->norm == LLM_NORM_LAYERNORM ? 2 : 1;
    info->act_floats_layer = act_layer(m, info->seq);
    /* the last block's output, final_norm output and statistics, logits
     * (the fused softmax cross-entropy writes its gradient over them) */
    info->act_floats_other = C + C + ns + V;
    info->bytes_activations = 4.0 * info->batch * info->seq *
                              (L * info->act_floats_layer + info->act_floats_other);
    info->bytes_train = info->bytes_params + info->bytes_grads + info->bytes_adamw + info->bytes_activations;

    info->chinchilla_tokens = LLM_CHINCHILLA_TOKENS_PER_PARAM * P;
    info->chinchilla_flops = info->chinchilla_tokens * info->flops_train;
    return 0;
}

double llm_model_train_flops_per_token(const struct llm_model_config *m, int seq)
{
    struct llm_model_info info;
    return llm_model_info_compute(&info, m, seq, 1) ? 0.0 : info.flops_train;
}
