/* l2c_export.c: writes a Llama model with random weights in llama2.c's run.c
 * checkpoint format, and a 32000-token tokenizer.bin that run.c loads, so
 * bench/generate_bench.sh can time run.c on the shapes it times `llm generate`.
 *
 *   build/cpu/bench/l2c_export --dim 288 --hidden 768 --layers 6 --heads 6
 *       --vocab 32000 --seq-len 256 [--kv-heads H] [--seed 1] -o MODEL.bin
 *       [--tokenizer TOK.bin]
 *
 * MODEL.bin (read from run.c, karpathy/llama2.c): seven int32, the Config
 * {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}, with
 * vocab_size negative (an untied classifier, as our bench models), then fp32
 * arrays in this order, each layer-major, matrices [out, in]:
 *   token_embedding (V, C), rms_att (L, C), wq (L, C, C), wk (L, KV, C),
 *   wv (L, KV, C), wo (L, C, C), rms_ffn (L, C), w1 (L, F, C), w2 (L, C, F),
 *   w3 (L, F, C), rms_final (C), freq_cis_real (T, hs/2), freq_cis_imag
 *   (T, hs/2), wcls (V, C)            (KV = n_kv_heads * hs, hs = C / n_heads)
 * Values: decode speed does not depend on them, so they are uniform in
 * +-1/sqrt(fan_in) from a seeded xoshiro256** (lib/core/rng.h), embeddings in
 * +-1, norm gains 1, the freq_cis tables cos/sin(t * 10000^(-2i/hs)) (RoPE, Su
 * et al. 2021; current run.c recomputes them and skips these). Row 1 of wcls is
 * zero: run.c stops when it samples token 1 (BOS), and with a zero logit
 * against 31999 random ones greedy decoding never picks it, so every run
 * lasts its -n steps.
 *
 * TOK.bin: int32 max_token_length, then per id: float score, int32 length,
 * the bytes. Ids 0-2 "<unk>" "<s>" "</s>", 3-258 the byte tokens "<0xXX>"
 * (run.c's byte fallback is byte + 3), 259-353 the printable ASCII characters
 * (so " " exists for run.c's dummy prefix and a plain prompt encodes to one
 * token per character), then fillers "<tN>" up to the vocabulary: no two
 * pieces concatenate to another, so run.c's BPE merges nothing. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/args.h"
#include "core/err.h"
#include "core/file.h"
#include "core/rng.h"

struct shape {
    long dim, hidden, layers, heads, kv_heads, vocab, seq_len;
};

/* rows x cols floats, uniform in +-scale (scale 0 with fill: every value
 * = fill); row zero_row (or -1: none) all zeros. buf holds cols floats. */
static int write_matrix(FILE *f, const char *path, struct llm_rng *rng, float *buf, long rows,
                        long cols, float scale, float fill, long zero_row)
{
    for (long r = 0; r < rows; r++) {
        for (long c = 0; c < cols; c++)
            buf[c] = r == zero_row ? 0.0f
                   : scale > 0.0f ? scale * (2.0f * llm_rng_float(rng) - 1.0f) : fill;
        int rc = llm_fwrite(f, buf, (size_t)cols * sizeof(float), path);
        if (rc)
            return rc;
    }
    return 0;
}

/* RoPE tables as llama2.c's export stored them: real then imaginary parts of
 * exp(i t theta_j), theta_j = 10000^(-2j/hs), t < seq_len, j < hs/2. */
static int write_freq_cis(FILE *f, const char *path, float *buf, const struct shape *s)
{
    long hs = s->dim / s->heads;
    for (int part = 0; part < 2; part++)
        for (long t = 0; t < s->seq_len; t++) {
            for (long j = 0; j < hs / 2; j++) {
                double a = (double)t * pow(10000.0, -2.0 * (double)j / (double)hs);
                buf[j] = (float)(part == 0 ? cos(a) : sin(a));
            }
            int rc = llm_fwrite(f, buf, (size_t)(hs / 2) * sizeof(float), path);
            if (rc)
                return rc;
        }
    return 0;
}

static int write_model(const char *path, const struct shape *s, uint64_t seed)
{
    long C = s->dim, F = s->hidden, L = s->layers, V = s->vocab;
    long KV = s->kv_heads * (C / s->heads);
    int32_t cfg[7] = {(int32_t)C, (int32_t)F, (int32_t)L, (int32_t)s->heads,
                      (int32_t)s->kv_heads, (int32_t)-V, (int32_t)s->seq_len};
    float *buf = llm_malloc((size_t)(C > F ? C : F) * sizeof(float), "a row");
    if (!buf)
        return LLM_ENOMEM;
    struct llm_rng rng;
    llm_rng_seed(&rng, seed);
    float sc = 1.0f / sqrtf((float)C), sf = 1.0f / sqrtf((float)F);
    struct llm_atomic a;
    int rc = llm_atomic_open(&a, path);
    if (rc) {
        free(buf);
        return rc;
    }
    FILE *f = a.f;
    rc = llm_fwrite(f, cfg, sizeof cfg, path);
    /* (count, rows, cols, scale, fill): rows x cols written count times */
    const struct { long n, rows, cols; float scale, fill; } parts[] = {
        {1, V, C, 1.0f, 0},   /* token embedding */
        {L, 1, C, 0, 1.0f},   /* rms_att */
        {L, C, C, sc, 0},     /* wq */
        {L, KV, C, sc, 0},    /* wk */
        {L, KV, C, sc, 0},    /* wv */
        {L, C, C, sc, 0},     /* wo */
        {L, 1, C, 0, 1.0f},   /* rms_ffn */
        {L, F, C, sc, 0},     /* w1 */
        {L, C, F, sf, 0},     /* w2 */
        {L, F, C, sc, 0},     /* w3 */
        {1, 1, C, 0, 1.0f},   /* rms_final */
    };
    for (size_t p = 0; !rc && p < sizeof parts / sizeof parts[0]; p++)
        for (long i = 0; !rc && i < parts[p].n; i++)
            rc = write_matrix(f, path, &rng, buf, parts[p].rows, parts[p].cols, parts[p].scale,
                              parts[p].fill, -1);
    if (!rc)
        rc = write_freq_cis(f, path, buf, s);
    if (!rc) /* the classifier; row 1 (BOS) zero so greedy never stops early */
        rc = write_matrix(f, path, &rng, buf, V, C, sc, 0, 1);
    free(buf);
    if (rc) {
        llm_atomic_abort(&a);
        return rc;
    }
    return llm_atomic_commit(&a);
}

static int write_piece(FILE *f, const char *path, float score, const char *str)
{
    int32_t len = (int32_t)strlen(str);
    int rc = llm_fwrite(f, &score, sizeof score, path);
    if (!rc)
        rc = llm_fwrite(f, &len, sizeof len, path);
    if (!rc)
        rc = llm_fwrite(f, str, (size_t)len, path);
    return rc;
}

static int write_tokenizer(const char *path, long vocab)
{
    char piece[32];
    snprintf(piece, sizeof piece, "<t%ld>", vocab - 1);
    int32_t max_len = (int32_t)strlen(piece); /* the longest: the last filler */
    struct llm_atomic a;
    int rc = llm_atomic_open(&a, path);
    if (rc)
        return rc;
    rc = llm_fwrite(a.f, &max_len, sizeof max_len, path);
    for (long id = 0; !rc && id < vocab; id++) {
        if (id < 3)
            snprintf(piece, sizeof piece, "%s", id == 0 ? "<unk>" : id == 1 ? "<s>" : "</s>");
        else if (id < 259)
            snprintf(piece, sizeof piece, "<0x%02lX>", id - 3);
        else if (id < 259 + 95)
            snprintf(piece, sizeof piece, "%c", (int)(' ' + (id - 259)));
        else
            snprintf(piece, sizeof piece, "<t%ld>", id);
        rc = write_piece(a.f, path, -(float)id, piece);
    }
    if (rc) {
        llm_atomic_abort(&a);
        return rc;
    }
    return llm_atomic_commit(&a);
}

/* run.c indexes with int: every product it forms must fit. */
static int check_shape(const struct shape *s)
{
    if (s->dim <= 0 || s->hidden <= 0 || s->layers <= 0 || s->heads <= 0 || s->kv_heads <= 0 ||
        s->vocab < 512 || s->seq_len <= 0)
        return llm_err(LLM_EUSAGE, "--dim, --hidden, --layers, --heads, --kv-heads, --seq-len "
                                   "must be > 0 and --vocab >= 512");
    if (s->dim % s->heads || (s->dim / s->heads) % 2 || s->heads % s->kv_heads)
        return llm_err(LLM_EUSAGE, "--dim must be a multiple of --heads with an even head size, "
                                   "and --heads a multiple of --kv-heads");
    double big = (double)INT_MAX;
    if ((double)s->vocab * s->dim >= big || (double)s->layers * s->dim * s->hidden >= big ||
        (double)s->layers * s->seq_len * s->dim >= big || s->hidden > 1 << 20 || s->dim > 1 << 20)
        return llm_err(LLM_EUSAGE, "shape too large for run.c's int indexing");
    return 0;
}

int main(int argc, char **argv)
{
    struct shape s = {0, 0, 0, 0, 0, 32000, 0};
    long seed = 1;
    const char *out = NULL, *tok = NULL;
    const struct llm_opt opts[] = {
        {"dim", 0, LLM_OPT_INT, &s.dim, "C", "model width"},
        {"hidden", 0, LLM_OPT_INT, &s.hidden, "F", "feed-forward width"},
        {"layers", 0, LLM_OPT_INT, &s.layers, "L", "layers"},
        {"heads", 0, LLM_OPT_INT, &s.heads, "H", "query heads"},
        {"kv-heads", 0, LLM_OPT_INT, &s.kv_heads, "H", "key/value heads (default: --heads)"},
        {"vocab", 0, LLM_OPT_INT, &s.vocab, "V", "vocabulary (default 32000)"},
        {"seq-len", 0, LLM_OPT_INT, &s.seq_len, "T", "context length"},
        {"seed", 0, LLM_OPT_INT, &seed, "N", "weights' seed (default 1)"},
        {"output", 'o', LLM_OPT_STR, &out, "FILE", "the model, run.c's format"},
        {"tokenizer", 0, LLM_OPT_STR, &tok, "FILE", "also write a tokenizer.bin of V tokens"},
        {NULL, 0, 0, NULL, NULL, NULL},
    };
    const struct llm_cmd_spec spec = {
        "l2c_export", "--dim C --hidden F --layers L --heads H --seq-len T -o FILE [options]",
        "random-weight Llama model (and tokenizer) in llama2.c's run.c format", opts, 0, 0, NULL,
    };
    struct llm_args a;
    int rc = llm_args_parse(&spec, argc, argv, &a);
    if (!rc && a.help) {
        llm_args_usage(stdout, &spec);
        llm_args_release(&spec, &a);
        return 0;
    }
    if (!rc && s.kv_heads == 0)
        s.kv_heads = s.heads;
    if (!rc)
        rc = check_shape(&s);
    if (!rc && !out)
        rc = llm_err(LLM_EUSAGE, "-o FILE is required");
    if (!rc)
        rc = write_model(out, &s, (uint64_t)seed);
    if (!rc && tok)
        rc = write_tokenizer(tok, s.vocab);
    if (rc)
        fprintf(stderr, "l2c_export: error: %s\n", llm_errmsg());
    llm_args_release(&spec, &a);
    return rc == LLM_EUSAGE ? 2 : rc ? 1 : 0;
}
