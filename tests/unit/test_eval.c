/* test_eval.c: llm eval's scoring against models whose probabilities are
 * known exactly: a uniform model (all logits 0) and a byte-bigram model
 * (hand-set weights: the last token alone decides the next one), with the
 * oracle computed here in double; plus the readers of the published layouts,
 * the few-shot prompts and answer extraction. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/rng.h"
#include "eval/answer.h"
#include "eval/eval.h"
#include "eval/score.h"
#include "eval/task.h"
#include "model/model.h"
#include "nn/backend.h"
#include "testutil.h"

enum { V = 257, C = 264, T = 16 };
#define EMB 100.0 /* the one non-zero of each token's embedding */

static struct llm_backend be;
static struct llm_tokenizer *tok;
static int32_t byte_id[256];
static struct llm_model bigram, uniform;
static double logp[V][V];       /* oracle: log P(next | cur) of the bigram model */
static char *dir;

/* A byte-level tokenizer without merges: 1 special + 256 byte tokens. */
static void make_tokenizer(void)
{
    const char *specials[] = {"<|endoftext|>"};
    struct llm_tok_train_opts o = {.vocab_size = V, .specials = specials, .n_specials = 1, .threads = 1};
    struct llm_tok_trainer *tr;
    assert_int_equal(llm_tok_trainer_new(&o, &tr), 0);
    const char *doc = "abc";
    size_t len = 3;
    assert_int_equal(llm_tok_trainer_feed(tr, &doc, &len, 1), 0);
    assert_int_equal(llm_tok_trainer_finish(tr, &tok, NULL, NULL), 0);
    llm_tok_trainer_free(tr);
    for (int b = 0; b < 256; b++)
        byte_id[b] = -1;
    for (uint32_t id = 1; id < V; id++) {
        size_t n;
        const char *s = llm_tok_token_bytes(tok, id, &n);
        assert_non_null(s);
        assert_int_equal(n, 1);
        byte_id[(unsigned char)s[0]] = (int32_t)id;
    }
    for (int b = 0; b < 256; b++)
        assert_true(byte_id[b] > 0);
}

static void set_param(struct llm_model *m, const char *name, const float *v)
{
    long i = llm_param_find(&m->layout, name);
    assert_true(i >= 0);
    assert_int_equal(be.ops->upload(be.ctx, llm_model_param(m, i), v, m->layout.p[i].numel * sizeof(float)), 0);
}

/* One layer whose attention and MLP outputs are zero (wo = w2 = 0), so the
 * final hidden state is the token's embedding EMB e_t; RMSNorm makes it
 * h e_t with h = EMB / sqrt(EMB^2 / C + eps), and logits[v] = h W[v, t]. */
static void make_model(struct llm_model *m, int is_bigram)
{
    struct llm_config cfg;
    assert_int_equal(llm_config_defaults(&cfg), 0);
    struct llm_model_config *c = &cfg.model;
    c->vocab_size = V, c->context_length = T, c->d_model = C, c->n_layers = 1, c->n_heads = 4;
    c->n_kv_heads = 0, c->d_ff = 16, c->norm = LLM_NORM_RMSNORM, c->position = LLM_POSITION_ROPE;
    c->bias = false, c->tie_embeddings = false, c->dropout = 0;
    assert_int_equal(llm_model_init(m, c, &be, 1), 0);
    double eps = c->norm_eps;
    llm_config_release(&cfg);
    float *zero = calloc(m->layout.total, sizeof(float));
    assert_int_equal(be.ops->upload(be.ctx, m->params, zero, m->layout.total * sizeof(float)), 0);
    free(zero);
    float *ones = malloc(C * sizeof(float));
    for (int i = 0; i < C; i++)
        ones[i] = 1;
    set_param(m, "final_norm.weight", ones);
    set_param(m, "layers.0.attn_norm.weight", ones);
    set_param(m, "layers.0.mlp_norm.weight", ones);
    free(ones);
    if (!is_bigram)
        return;
    float *emb = calloc((size_t)V * C, sizeof(float)), *head = calloc((size_t)V * C, sizeof(float));
    for (int t = 0; t < V; t++)
        emb[(size_t)t * C + t] = (float)EMB;
    /* logits: random in [-2, 2], with planted strong paths for generation:
     * '=' -> '4' -> '2' -> '\n' -> '\n' */
    struct llm_rng r;
    llm_rng_seed(&r, 7);
    static float lg[V][V];
    for (int t = 0; t < V; t++)
        for (int v = 0; v < V; v++)
            lg[t][v] = 4 * llm_rng_float(&r) - 2;
    lg[byte_id['=']][byte_id['4']] = 9, lg[byte_id['4']][byte_id['2']] = 9;
    lg[byte_id['2']][byte_id['\n']] = 9, lg[byte_id['\n']][byte_id['\n']] = 9;
    double h = EMB / sqrt(EMB * EMB / C + eps);
    for (int t = 0; t < V; t++) {
        double mx = -1e300, s = 0, z[V];
        for (int v = 0; v < V; v++) {
            float w = (float)(lg[t][v] / h);
            head[(size_t)v * C + t] = w;
            z[v] = h * w, mx = fmax(mx, z[v]);
        }
        for (int v = 0; v < V; v++)
            s += exp(z[v] - mx);
        for (int v = 0; v < V; v++)
            logp[t][v] = z[v] - mx - log(s);
    }
    set_param(m, "tok_emb.weight", emb);
    set_param(m, "lm_head.weight", head);
    free(emb), free(head);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(llm_backend_cpu_init(&be, 2, 0), 0);
    make_tokenizer();
    make_model(&bigram, 1);
    make_model(&uniform, 0);
    dir = test_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    llm_model_release(&bigram), llm_model_release(&uniform);
    llm_tok_free(tok);
    llm_backend_release(&be);
    test_rmdir(dir);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- perplexity ---- */

static void test_uniform_perplexity(void **state)
{
    (void)state;
    int32_t ids[100];
    for (int i = 0; i < 100; i++)
        ids[i] = (i * 37) % V;
    struct llm_ppl_opts o = {.batch = 4};
    struct llm_ppl_result r;
    assert_int_equal(llm_eval_perplexity(&uniform, ids, 100, &o, &r, NULL), 0);
    assert_int_equal(r.windows, (100 - 1 - T) / T + 1); /* k = 0 .. floor((n-1)/T) - 1 */
    assert_int_equal(r.tokens, r.windows * T);
    assert_float_equal(r.nats / r.tokens, log(V), 1e-5);
    assert_float_equal(exp(r.nats / r.tokens), V, 1e-3);
}

static void test_bigram_perplexity_strides(void **state)
{
    (void)state;
    enum { N = 203 };
    int32_t ids[N];
    struct llm_rng g;
    llm_rng_seed(&g, 3);
    for (int i = 0; i < N; i++)
        ids[i] = 1 + (int32_t)llm_rng_below(&g, V - 1);
    const int strides[] = {T, 5, 1};
    for (int k = 0; k < 3; k++) {
        int S = strides[k];
        for (int batch = 1; batch <= 8; batch += 7) {
            struct llm_ppl_opts o = {.stride = S, .batch = batch};
            struct llm_ppl_result r;
            assert_int_equal(llm_eval_perplexity(&bigram, ids, N, &o, &r, NULL), 0);
            int64_t W = (N - 1 - T) / S + 1;
            assert_int_equal(r.windows, W);
            assert_int_equal(r.tokens, T + (W - 1) * S); /* each target once */
            double want = 0;
            for (int64_t i = 1; i <= r.tokens; i++)
                want -= logp[ids[i - 1]][ids[i]];
            assert_float_equal(r.nats, want, 1e-5 * fabs(want));
        }
    }
    struct llm_ppl_opts o = {.batch = 2, .max_windows = 3};
    struct llm_ppl_result r;
    assert_int_equal(llm_eval_perplexity(&bigram, ids, N, &o, &r, NULL), 0);
    assert_int_equal(r.windows, 3);
    assert_int_equal(llm_eval_perplexity(&bigram, ids, T, &o, &r, NULL), LLM_EINVAL); /* no window */
    o.stride = T + 1;
    assert_int_equal(llm_eval_perplexity(&bigram, ids, N, &o, &r, NULL), LLM_EINVAL);
}

/* ---- log-likelihoods ---- */

static void test_loglik_batched_and_truncated(void **state)
{
    (void)state;
    enum { NR = 23 };
    int32_t ctx[NR][40], cont[NR][8];
    struct llm_ll_req q[NR];
    struct llm_ll_out a[NR], b[NR];
    struct llm_rng g;
    llm_rng_seed(&g, 11);
    for (int i = 0; i < NR; i++) {
        q[i].n_ctx = 1 + (int)llm_rng_below(&g, 30); /* some longer than T: truncated */
        q[i].n_cont = 1 + (int)llm_rng_below(&g, 8);
        for (int j = 0; j < q[i].n_ctx; j++)
            ctx[i][j] = (int32_t)llm_rng_below(&g, V);
        for (int j = 0; j < q[i].n_cont; j++)
            cont[i][j] = (int32_t)llm_rng_below(&g, V);
        q[i].ctx = ctx[i], q[i].cont = cont[i];
    }
    assert_int_equal(llm_eval_loglik(&bigram, q, NR, 1, a, NULL), 0);
    assert_int_equal(llm_eval_loglik(&bigram, q, NR, 7, b, NULL), 0);
    for (int i = 0; i < NR; i++) {
        double want = logp[ctx[i][q[i].n_ctx - 1]][cont[i][0]];
        for (int j = 1; j < q[i].n_cont; j++)
            want += logp[cont[i][j - 1]][cont[i][j]];
        assert_float_equal(a[i].logprob, want, 1e-4);
        assert_float_equal(a[i].logprob, b[i].logprob, 1e-9); /* batching does not change a row */
        assert_int_equal(a[i].truncated, q[i].n_ctx + q[i].n_cont - 1 > T);
    }
    q[0].n_cont = T + 1;
    assert_int_equal(llm_eval_loglik(&bigram, q, 1, 1, a, NULL), LLM_EINVAL);
}

/* ---- multiple choice ---- */

/* The oracle's log-likelihood of " " + choice after context (bytes). */
static double oracle_choice(const char *context, const char *choice)
{
    size_t n = strlen(context);
    int32_t prev = byte_id[(unsigned char)context[n - 1]];
    double lp = logp[prev][byte_id[' ']];
    prev = byte_id[' '];
    for (const char *p = choice; *p; p++) {
        lp += logp[prev][byte_id[(unsigned char)*p]];
        prev = byte_id[(unsigned char)*p];
    }
    return lp;
}

static void test_choice_known_accuracy(void **state)
{
    (void)state;
    char *path = test_path(dir, "choice.jsonl");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    struct llm_rng g;
    llm_rng_seed(&g, 5);
    static const char *const words[] = {"red", "blue", "green", "tea", "coffee", "x", "quartz", "mud"};
    enum { ND = 24 };
    int want_acc = 0, want_norm = 0;
    for (int i = 0; i < ND; i++) {
        char ctx[32];
        snprintf(ctx, sizeof(ctx), "Q%d is", i);
        int c0 = (int)llm_rng_below(&g, 8), c1 = (c0 + 1 + (int)llm_rng_below(&g, 7)) % 8, label = i % 2;
        fprintf(f, "{\"context\": \"%s\", \"choices\": [\"%s\", \"%s\"], \"label\": %d}\n", ctx, words[c0],
                words[c1], label);
        double l0 = oracle_choice(ctx, words[c0]), l1 = oracle_choice(ctx, words[c1]);
        double n0 = l0 / strlen(words[c0]), n1 = l1 / strlen(words[c1]);
        want_acc += (l1 > l0 ? 1 : 0) == label;
        want_norm += (n1 > n0 ? 1 : 0) == label;
    }
    fclose(f);
    assert_true(want_acc > 0 && want_acc < ND); /* not a trivial answer */
    struct llm_eval_docs docs;
    assert_int_equal(llm_eval_docs_read(&docs, path, LLM_EVAL_FMT_PLAIN, LLM_EVAL_CHOICE, 0), 0);
    assert_int_equal(docs.n, ND);
    struct llm_eval_opts o = {.batch = 5, .keep_samples = 1};
    struct llm_eval_result r;
    assert_int_equal(llm_eval_choice(&bigram, tok, &docs, NULL, &o, &r), 0);
    double p = (double)want_acc / ND;
    assert_float_equal(llm_eval_metric(&r, "acc"), p, 1e-12);
    assert_float_equal(llm_eval_metric(&r, "acc_norm"), (double)want_norm / ND, 1e-12);
    assert_float_equal(r.m[0].stderr_, sqrt(p * (1 - p) / (ND - 1)), 1e-12);
    assert_int_equal(cJSON_GetArraySize(r.samples), ND);
    llm_eval_result_release(&r);
    llm_eval_docs_release(&docs);
    free(path);
}

/* ---- exact match, voting ---- */

static void test_exact_known(void **state)
{
    (void)state;
    char *path = test_path(dir, "exact.jsonl");
    /* greedy under the bigram model: "...=" -> "42\n\n" (planted), stopped at "\n\n" */
    write_file(path, "{\"prompt\": \"a=\", \"answer\": \"42\"}\n{\"prompt\": \"b=\", \"answer\": 7}\n"
                     "{\"prompt\": \"c=\", \"answer\": \"42.0\"}\n");
    struct llm_eval_docs docs;
    assert_int_equal(llm_eval_docs_read(&docs, path, LLM_EVAL_FMT_PLAIN, LLM_EVAL_EXACT, 0), 0);
    struct llm_extractor ex;
    assert_int_equal(llm_extractor_init(&ex, "last-number", NULL), 0);
    static const char *const stops[] = {"\n\n"};
    struct llm_eval_opts o = {.batch = 2, .samples = 3, .extract = &ex, .keep_samples = 1,
                              .gen = {.max_tokens = 8, .stops = stops, .n_stops = 1, .eot = -1, .batch = 2,
                                      .sample = {.temperature = 0, .top_p = 1, .repetition_penalty = 1}}};
    struct llm_eval_result r;
    assert_int_equal(llm_eval_exact(&bigram, tok, &docs, NULL, &o, &r), 0);
    assert_float_equal(llm_eval_metric(&r, "exact_match"), 2.0 / 3, 1e-12);
    assert_float_equal(llm_eval_metric(&r, "maj@2"), 2.0 / 3, 1e-12);
    assert_float_equal(llm_eval_metric(&r, "maj@3"), 2.0 / 3, 1e-12);
    assert_float_equal(llm_eval_metric(&r, "pass@3"), 2.0 / 3, 1e-12);
    const cJSON *s0 = cJSON_GetArrayItem(r.samples, 0);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(s0, "completions"), 0);
    assert_string_equal(c0->valuestring, "42"); /* cut before the stop string */
    llm_eval_result_release(&r);
    llm_extractor_release(&ex);
    llm_eval_docs_release(&docs);
    free(path);
}

static void test_answers(void **state)
{
    (void)state;
    struct llm_extractor x;
    int err;
    char *a;
    assert_int_equal(llm_extractor_init(&x, "last-number", NULL), 0);
    a = llm_extract(&x, "She pays $1,234. Then 5 more, so -17.5.", &err);
    assert_string_equal(a, "-17.5");
    free(a);
    a = llm_extract(&x, "It costs $1,234.", &err);
    assert_string_equal(a, "1234");
    free(a);
    assert_null(llm_extract(&x, "no number here. ,.", &err));
    assert_int_equal(err, 0);
    assert_int_equal(llm_extractor_init(&x, "hash", NULL), 0);
    a = llm_extract(&x, "3 + 4 = 7\n#### 7\nthen 9", &err);
    assert_string_equal(a, "7");
    free(a);
    assert_null(llm_extract(&x, "the answer is 7", &err));
    assert_int_equal(llm_extractor_init(&x, "regex", "answer is (\\w+)"), 0);
    a = llm_extract(&x, "The answer is Paris. The answer is Rome.", &err);
    assert_string_equal(a, "paris");
    free(a);
    llm_extractor_release(&x);
    assert_int_equal(llm_extractor_init(&x, "regex", "(unclosed"), LLM_EUSAGE);
    assert_int_equal(llm_extractor_init(&x, "vibes", NULL), LLM_EUSAGE);
    assert_true(llm_answer_equal("18", "18.0"));
    assert_false(llm_answer_equal("18", "19"));
    assert_true(llm_answer_equal("paris", "paris"));
    const char *votes[] = {"3", NULL, "5", "5.0", "3", "7"};
    assert_int_equal(llm_vote_majority(votes, 6), 0); /* 3 and 5 (= 5.0) tie at 2 votes: 3 came first */
    const char *maj[] = {"3", "5", "5"};
    assert_int_equal(llm_vote_majority(maj, 3), 1);
    const char *none[] = {NULL, NULL};
    assert_int_equal(llm_vote_majority(none, 2), -1);
}

/* ---- judge ---- */

static void test_judge_cancels_position_bias(void **state)
{
    (void)state;
    /* A bigram judge's " A" vs " B" depends only on the byte before: the
     * same in both orders, so averaging the orders leaves exactly 1/2. */
    char *path = test_path(dir, "pairs.jsonl");
    write_file(path, "{\"prompt\": \"2+2?\", \"a\": \"4\", \"b\": \"5\", \"label\": \"a\"}\n"
                     "{\"prompt\": \"Capital?\", \"a\": \"Rome\", \"b\": \"cheese\"}\n");
    struct llm_eval_opts o = {.batch = 3};
    struct llm_eval_result r;
    assert_int_equal(llm_eval_judge(&bigram, tok, NULL, NULL, path, &o, &r), 0);
    assert_int_equal(r.n, 2);
    assert_float_equal(llm_eval_metric(&r, "pref_a"), 0.5, 1e-12);
    assert_float_equal(llm_eval_metric(&r, "win_rate"), 0.5, 1e-12);
    assert_float_equal(llm_eval_metric(&r, "consistency"), 0.0, 1e-12);
    assert_float_equal(llm_eval_metric(&r, "agreement"), 0.0, 1e-12);
    llm_eval_result_release(&r);
    free(path);
}

/* ---- readers and prompts ---- */

static void test_hellaswag_and_capitalize(void **state)
{
    (void)state;
    char *s = llm_eval_capitalize("hELLO wORLD");
    assert_string_equal(s, "Hello world");
    free(s);
    s = llm_eval_capitalize("élan");
    assert_string_equal(s, "Élan");
    free(s);
    /* strip; " [title]" -> ". "; [..] removed; "  " -> " " once, left to right */
    s = llm_eval_hellaswag_clean("  A man [title] is here [header]  ok ");
    assert_string_equal(s, "A man. is here  ok");
    free(s);
    char *path = test_path(dir, "hs.jsonl");
    write_file(path, "{\"activity_label\": \"Baking\", \"ctx_a\": \"A chef shows pans.\", \"ctx_b\": \"the PANS\", "
                     "\"endings\": [\"are hot.\", \"fly [away].\"], \"label\": \"1\"}\n");
    struct llm_eval_docs d;
    assert_int_equal(llm_eval_docs_read(&d, path, LLM_EVAL_FMT_HELLASWAG, LLM_EVAL_CHOICE, 0), 0);
    assert_string_equal(d.v[0].context, "Baking: A chef shows pans. The pans");
    assert_string_equal(d.v[0].choices[1], "fly .");
    assert_int_equal(d.v[0].label, 1);
    llm_eval_docs_release(&d);
    free(path);
}

static void test_mmlu_csv_and_shots(void **state)
{
    (void)state;
    char *path = test_path(dir, "college_physics_test.csv");
    write_file(path, "What is 1+1?,1,2,3,4,B\n\"A \"\"quoted\"\"\nquestion, with comma\",x,y,z,w,D\n"
                     "Third?,p,q,r,s,A\n");
    struct llm_eval_docs d;
    assert_int_equal(llm_eval_docs_read(&d, path, LLM_EVAL_FMT_MMLU, LLM_EVAL_CHOICE, 0), 0);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.v[1].context, "A \"quoted\"\nquestion, with comma\nA. x\nB. y\nC. z\nD. w\nAnswer:");
    assert_int_equal(d.v[1].label, 3);
    assert_string_equal(d.v[0].choices[1], "B");
    struct llm_bytes p = {0}, p2 = {0};
    assert_int_equal(llm_eval_prompt(&d, &d.v[0], LLM_EVAL_CHOICE, 5, 1234, 0, &p), 0);
    assert_int_equal(llm_bytes_append(&p, "", 1), 0);
    /* the subject line, then both other questions (k > candidates: all), never itself */
    const char *head = "The following are multiple choice questions (with answers) about college physics.\n\n";
    assert_true(!strncmp(p.v, head, strlen(head)));
    assert_non_null(strstr(p.v, "Answer: D\n\n"));
    assert_non_null(strstr(p.v, "Answer: A\n\n"));
    assert_null(strstr(p.v, "Answer: B\n\n"));
    assert_int_equal(llm_eval_prompt(&d, &d.v[0], LLM_EVAL_CHOICE, 5, 1234, 0, &p2), 0);
    assert_int_equal(llm_bytes_append(&p2, "", 1), 0);
    assert_string_equal(p.v, p2.v); /* seeded */
    llm_bytes_release(&p), llm_bytes_release(&p2);
    llm_eval_docs_release(&d);
    write_file(path, "\"never closed,1,2,3,4,A\n");
    assert_int_equal(llm_eval_docs_read(&d, path, LLM_EVAL_FMT_MMLU, LLM_EVAL_CHOICE, 0), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "never closed"));
    free(path);
}

static void test_gsm8k_and_bad_docs(void **state)
{
    (void)state;
    char *path = test_path(dir, "gsm.jsonl");
    write_file(path, "{\"question\": \"Tom has 3 and gets 4.\", \"answer\": \"3 + 4 = 7\\n#### 1,007\"}\n");
    struct llm_eval_docs d;
    assert_int_equal(llm_eval_docs_read(&d, path, LLM_EVAL_FMT_GSM8K, LLM_EVAL_EXACT, 0), 0);
    assert_string_equal(d.v[0].context, "Question: Tom has 3 and gets 4.\nAnswer:");
    assert_string_equal(d.v[0].answer, "1,007");
    assert_true(llm_answer_equal("1007", "1007"));
    llm_eval_docs_release(&d);
    write_file(path, "{\"context\": \"x\", \"choices\": [\"a\", \"b\"], \"label\": 0}\n"
                     "{\"context\": \"y\", \"choices\": [\"a\", \"b\"], \"label\": 2}\n");
    assert_int_equal(llm_eval_docs_read(&d, path, LLM_EVAL_FMT_PLAIN, LLM_EVAL_CHOICE, 0), LLM_EFORMAT);
    assert_non_null(strstr(llm_errmsg(), "gsm.jsonl:2"));
    assert_non_null(strstr(llm_errmsg(), "label 2"));
    assert_int_equal(llm_eval_docs_read(&d, path, LLM_EVAL_FMT_PLAIN, LLM_EVAL_CHOICE, 1), 0); /* --limit 1 */
    assert_int_equal(d.n, 1);
    llm_eval_docs_release(&d);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_perplexity),
        cmocka_unit_test(test_bigram_perplexity_strides),
        cmocka_unit_test(test_loglik_batched_and_truncated),
        cmocka_unit_test(test_choice_known_accuracy),
        cmocka_unit_test(test_exact_known),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_judge_cancels_position_bias),
        cmocka_unit_test(test_hellaswag_and_capitalize),
        cmocka_unit_test(test_mmlu_csv_and_shots),
        cmocka_unit_test(test_gsm8k_and_bad_docs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
