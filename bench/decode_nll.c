/* decode_nll.c: the loss of a model through the decode path (llm_infer: the
 * kernels `llm generate` runs), in fp32, int8 weights and W8A8, on the same
 * tokens, and with 4-bit weights (Q4, int8 activations): what quantizing
 * the activations costs, which `llm eval` (the
 * training forward on dequantized weights) cannot show.
 *
 *   build/cpu/bench/decode_nll MODEL.llm SHARD.bin [--tokens N] [--group G] [--threads N]
 *
 * The shard's first N tokens (default 16384) in windows of the model's
 * context length; each window prefilled in chunks of LLM_INFER_ROWS tokens
 * (the row-independent decode kernels: linear_rows, _q8, _q8a8) with the
 * logits of every position; mean next-token cross-entropy in nats and its
 * perplexity, one "RESULT" line per mode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "data/shard.h"
#include "infer/infer.h"
#include "infer/load.h"
#include "nn/backend.h"

static void die(const char *what)
{
    fprintf(stderr, "decode_nll: %s: %s\n", what, llm_errmsg());
    exit(1);
}

/* -log softmax(l)[y] in double. */
static double nll(const float *l, int V, int y)
{
    double m = l[0], s = 0;
    for (int v = 1; v < V; v++)
        m = l[v] > m ? l[v] : m;
    for (int v = 0; v < V; v++)
        s += exp(l[v] - m);
    return log(s) + m - l[y];
}

int main(int argc, char **argv)
{
    const char *model = NULL, *shard = NULL;
    long ntok = 16384;
    int group = 32, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            ntok = atol(argv[++i]);
        else if (!strcmp(argv[i], "--group") && i + 1 < argc)
            group = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!model)
            model = argv[i];
        else
            shard = argv[i];
    }
    if (!model || !shard || ntok < 2) {
        fprintf(stderr, "usage: decode_nll MODEL.llm SHARD.bin [--tokens N] [--group G] [--threads N]\n");
        return 2;
    }
    struct llm_shard sh;
    if (llm_shard_open(&sh, shard))
        die(shard);
    if ((uint64_t)ntok > sh.n_tokens)
        ntok = (long)sh.n_tokens;
    int32_t *tok = malloc((size_t)ntok * sizeof(int32_t));
    for (long i = 0; i < ntok; i++)
        tok[i] = (int32_t)llm_shard_token(&sh, (uint64_t)i);
    static const char *const names[4] = {"fp32", "int8", "w8a8", "q4"};
    for (int mode = 0; mode < 4; mode++) {
        struct llm_backend be;
        struct llm_loaded l;
        struct llm_infer *x;
        if (llm_backend_cpu_init(&be, threads, 0))
            die("backend");
        if (llm_loaded_open(&l, model, &be, mode == 3 ? LLM_LOAD_Q4 : mode ? LLM_LOAD_INT8 : LLM_LOAD_STORED,
                            group, LLM_TOK_NONE, NULL))
            die(model);
        int T = l.m.cfg.context_length, V = l.m.cfg.vocab_size;
        if (llm_infer_new(&x, &l.m, 1, T))
            die("caches");
        if (mode) {
            llm_infer_use_q8(x, llm_loaded_q8(&l));
            llm_infer_use_a8(x, mode == 2);
        }
        float *lg = malloc((size_t)LLM_INFER_ROWS * V * sizeof(float));
        double sum = 0;
        long n = 0;
        for (long w0 = 0; w0 + 1 < ntok; w0 += T) {
            long len = ntok - w0 < T ? ntok - w0 : T;
            if (llm_infer_truncate(x, 0, 0))
                die("truncate");
            for (long c = 0; c < len; c += LLM_INFER_ROWS) {
                int k = len - c < LLM_INFER_ROWS ? (int)(len - c) : LLM_INFER_ROWS;
                if (llm_infer_prefill(x, 0, tok + w0 + c, k, lg, 1))
                    die("prefill");
                for (int r = 0; r < k; r++)
                    if (w0 + c + r + 1 < w0 + len)
                        sum += nll(lg + (size_t)r * V, V, tok[w0 + c + r + 1]), n++;
            }
        }
        printf("RESULT mode=%s tokens=%ld nll=%.6f ppl=%.4f\n", names[mode], n, sum / n, exp(sum / n));
        fflush(stdout);
        free(lg);
        llm_infer_free(x);
        llm_loaded_release(&l);
        llm_backend_release(&be);
    }
    free(tok);
    llm_shard_close(&sh);
    return 0;
}
