/* synth.c: the seeded task generators of `llm data synth` (addition, word sorting) and their output
 * formats; how the random streams are used is documented in docs/data-synth.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "align/synth.h"
#include "core/err.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/str.h"
#include "data/hashset.h"
#include "data/shingle.h"

#define MAX_DIGITS 9
#define MAX_WORDS 12

/* Short, concrete English words: distinct, lower-case, in strcmp order. */
static const char *const words[] = {
    "able", "acid", "army", "baby", "back", "ball", "band", "bank", "base", "bath", "bear", "beef", "bell",
    "belt", "bird", "blue", "boat", "body", "bone", "book", "boot", "bowl", "box", "boy", "bread", "brick",
    "bus", "cake", "calm", "camp", "card", "care", "cart", "cash", "cat", "chair", "chalk", "cheese", "chin",
    "city", "clay", "cloud", "coal", "coat", "cold", "cook", "corn", "cow", "crab", "cup", "dark", "deer",
    "desk", "dish", "dog", "door", "dove", "dream", "dress", "drum", "duck", "dust", "eagle", "ear", "earth",
    "egg", "elbow", "farm", "fern", "field", "fire", "fish", "flag", "flame", "floor", "flour", "fog", "foot",
    "fork", "fox", "frog", "fruit", "game", "gate", "gift", "girl", "glass", "glove", "goat", "gold", "grape",
    "grass", "hair", "hand", "hat", "hawk", "heart", "hill", "home", "honey", "horn", "horse", "house", "ice",
    "ink", "iron", "jam", "jar", "jelly", "juice", "key", "king", "kite", "knee", "lake", "lamp", "leaf",
    "lemon", "lily", "lion", "lock", "map", "meat", "milk", "mint", "moon", "moss", "mouse", "mud", "nail",
    "nest", "net", "night", "nose", "nut", "oak", "oil", "onion", "owl", "page", "paint", "pan", "paper", "park",
    "pear", "pen", "pig", "pine", "plum", "pond", "pot", "queen", "rain", "rat", "ring", "river", "road", "rock",
    "roof", "rope", "rose", "salt", "sand", "seed", "sheep", "shell", "ship", "shoe", "silk", "sky", "snow",
    "soap", "sock", "song", "soup", "star", "stone", "sun", "swan", "table", "tail", "tea", "tent", "tiger",
    "toad", "tooth", "tower", "toy", "train", "tree", "van", "vase", "wall", "wave", "whale", "wheat", "wind",
    "wolf", "wood", "wool", "yard", "year", "zebra",
};
#define NWORDS ((int)(sizeof(words) / sizeof(words[0])))

const char *const *llm_synth_words(int *n)
{
    *n = NWORDS;
    return words;
}

int llm_synth_init(struct llm_synth *s, const struct llm_synth_opts *o)
{
    memset(s, 0, sizeof(*s));
    struct llm_synth_opts v = *o;
    if (!v.digits)
        v.digits = 2;
    if (!v.words)
        v.words = 4;
    if (v.task != LLM_SYNTH_ADD && v.task != LLM_SYNTH_SORT)
        return llm_err(LLM_EUSAGE, "--task: expected add or sort");
    if (v.format < LLM_SYNTH_TEXT || v.format > LLM_SYNTH_DPO)
        return llm_err(LLM_EUSAGE, "--format: expected text, jsonl, sft or dpo");
    if (v.n < 1 || v.n > LLM_SYNTH_MAX_N)
        return llm_err(LLM_EUSAGE, "--n: expected 1..%ld examples, got %ld", LLM_SYNTH_MAX_N, v.n);
    if (v.split_eval < 0 || v.split_eval > LLM_SYNTH_MAX_N)
        return llm_err(LLM_EUSAGE, "--split-eval: expected 0..%ld examples, got %ld", LLM_SYNTH_MAX_N, v.split_eval);
    if (v.task == LLM_SYNTH_ADD && (v.digits < 1 || v.digits > MAX_DIGITS))
        return llm_err(LLM_EUSAGE, "--digits: expected 1..%d, got %d", MAX_DIGITS, v.digits);
    if (v.task == LLM_SYNTH_SORT && (v.words < 2 || v.words > MAX_WORDS))
        return llm_err(LLM_EUSAGE, "--words: expected 2..%d, got %d", MAX_WORDS, v.words);
    s->o = v;
    /* two independent streams: the wrong one is the problem stream 2^128 steps ahead */
    llm_rng_seed(&s->problems, v.seed);
    s->wrong = s->problems;
    llm_rng_jump(&s->wrong);
    return 0;
}

/* ---- addition ---- */

static uint64_t pow10u(int d)
{
    uint64_t p = 1;
    while (d-- > 0)
        p *= 10;
    return p;
}

/* A uniform D-digit number: 0..9 for D = 1 (0 is a one-digit number), else 10^(D-1)..10^D-1. */
static uint64_t operand(struct llm_rng *r, int d)
{
    uint64_t lo = d == 1 ? 0 : pow10u(d - 1), hi = pow10u(d) - 1;
    return lo + llm_rng_below(r, hi - lo + 1);
}

/* A plausible wrong sum: half the time off by 1..10 (down when that stays >= 0, chosen by a coin), else
 * one digit replaced by another (never a leading 0). Never equal to the sum. */
static void wrong_sum(struct llm_rng *r, uint64_t sum, char *out, size_t cap)
{
    if (llm_rng_below(r, 2) == 0) {
        uint64_t delta = 1 + llm_rng_below(r, 10);
        int down = llm_rng_below(r, 2) == 0 && sum >= delta;
        snprintf(out, cap, "%llu", (unsigned long long)(down ? sum - delta : sum + delta));
        return;
    }
    snprintf(out, cap, "%llu", (unsigned long long)sum);
    size_t len = strlen(out), pos = (size_t)llm_rng_below(r, len);
    int lead = pos == 0 && len > 1, old = out[pos] - '0';
    /* the other digits allowed here, in order, skipping old (and 0 at the lead) */
    int k = (int)llm_rng_below(r, lead ? 8 : 9), d = lead ? 1 : 0;
    for (;; d++) {
        if (d == old)
            continue;
        if (k-- == 0)
            break;
    }
    out[pos] = (char)('0' + d);
}

static void next_add(struct llm_synth *s, struct llm_synth_example *ex)
{
    uint64_t a = operand(&s->problems, s->o.digits), b = operand(&s->problems, s->o.digits);
    snprintf(ex->prompt, sizeof(ex->prompt), "%llu+%llu=", (unsigned long long)a, (unsigned long long)b);
    snprintf(ex->answer, sizeof(ex->answer), "%llu", (unsigned long long)(a + b));
    wrong_sum(&s->wrong, a + b, ex->rejected, sizeof(ex->rejected));
}

/* ---- sorting ---- */

static int cmp_word(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void join(const char *const *w, int n, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", w[i]);
}

static void next_sort(struct llm_synth *s, struct llm_synth_example *ex)
{
    const char *pick[MAX_WORDS];
    int W = s->o.words;
    /* W distinct words: each uniform over the list, drawn again while already picked */
    for (int i = 0; i < W; i++) {
        int dup;
        do {
            pick[i] = words[llm_rng_below(&s->problems, NWORDS)];
            dup = 0;
            for (int j = 0; j < i; j++)
                dup |= pick[j] == pick[i];
        } while (dup);
    }
    char list[LLM_SYNTH_TEXT_MAX - 16]; /* 12 words of at most 6 letters fit easily */
    join(pick, W, list, sizeof(list));
    snprintf(ex->prompt, sizeof(ex->prompt), "sort: %s =", list);
    qsort(pick, (size_t)W, sizeof(pick[0]), cmp_word);
    join(pick, W, ex->answer, sizeof(ex->answer));
    /* wrong: two neighbours of the sorted list swapped (distinct words, so never the answer) */
    int i = (int)llm_rng_below(&s->wrong, (uint64_t)(W - 1));
    const char *t = pick[i];
    pick[i] = pick[i + 1], pick[i + 1] = t;
    join(pick, W, ex->rejected, sizeof(ex->rejected));
}

void llm_synth_next(struct llm_synth *s, struct llm_synth_example *ex)
{
    if (s->o.task == LLM_SYNTH_ADD)
        next_add(s, ex);
    else
        next_sort(s, ex);
}

/* ---- formats ---- */

static int add_str(cJSON *o, const char *key, const char *val)
{
    return cJSON_AddStringToObject(o, key, val) ? 0 : LLM_ENOMEM;
}

/* " <answer>TEXT</answer>": what SFT teaches and the format verifier checks. */
static void tagged(const char *answer, char *out, size_t cap) { snprintf(out, cap, " <answer>%s</answer>", answer); }

int llm_synth_write(FILE *out, const char *path, enum llm_synth_format f, const struct llm_synth_example *ex)
{
    if (f == LLM_SYNTH_TEXT) {
        char line[2 * LLM_SYNTH_TEXT_MAX + 2];
        int n = snprintf(line, sizeof(line), "%s %s\n", ex->prompt, ex->answer);
        return llm_fwrite(out, line, (size_t)n, path);
    }
    char a[LLM_SYNTH_TEXT_MAX + 32], b[LLM_SYNTH_TEXT_MAX + 32];
    cJSON *o = cJSON_CreateObject();
    int rc = o ? add_str(o, "prompt", ex->prompt) : LLM_ENOMEM;
    if (!rc && f == LLM_SYNTH_JSONL) {
        rc = add_str(o, "answer", ex->answer);
    } else if (!rc && f == LLM_SYNTH_SFT) {
        tagged(ex->answer, a, sizeof(a));
        rc = add_str(o, "response", a);
    } else if (!rc) {
        tagged(ex->answer, a, sizeof(a));
        tagged(ex->rejected, b, sizeof(b));
        if (!(rc = add_str(o, "chosen", a)))
            rc = add_str(o, "rejected", b);
    }
    if (rc == LLM_ENOMEM)
        rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    if (!rc)
        rc = llm_jsonl_write(out, o, path);
    cJSON_Delete(o);
    return rc;
}

/* ---- a run ---- */

/* How many distinct problems the task has (as a double: the sort counts are large). */
static double problem_space(const struct llm_synth_opts *o)
{
    if (o->task == LLM_SYNTH_ADD) {
        double k = o->digits == 1 ? 10 : 9 * pow(10, o->digits - 1);
        return k * k;
    }
    double p = 1;
    for (int i = 0; i < o->words; i++)
        p *= NWORDS - i;
    return p;
}

static uint64_t prompt_hash(const struct llm_synth_example *ex)
{
    return llm_hash64(ex->prompt, strlen(ex->prompt), 0x73796e7468ULL);
}

char *llm_synth_eval_path(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot != base ? (size_t)(dot - path) : strlen(path);
    char *out = llm_malloc(stem + sizeof(".eval.jsonl"), "a path");
    if (out) {
        memcpy(out, path, stem);
        strcpy(out + stem, ".eval.jsonl");
    }
    return out;
}

int llm_synth_run(const struct llm_synth_opts *o, const char *path, const char *eval_path)
{
    struct llm_synth s;
    int rc = llm_synth_init(&s, o);
    if (rc)
        return rc;
    long K = s.o.split_eval;
    if (K > 0 && !eval_path)
        return llm_err(LLM_EUSAGE, "--split-eval needs an output file to put the held-out examples next to");
    struct llm_hashset seen;
    int have_set = 0;
    if (K > 0 && !(rc = llm_hashset_init(&seen, 0)))
        have_set = 1;
    struct llm_atomic out = {0}, ev = {0};
    int have_out = 0, have_ev = 0;
    if (!rc && !(rc = llm_atomic_open(&out, path)))
        have_out = 1;
    if (!rc && K > 0 && !(rc = llm_atomic_open(&ev, eval_path)))
        have_ev = 1;

    struct llm_progress prog;
    llm_progress_init(&prog, NULL, "synth", NULL, (uint64_t)(s.o.n + K), LLM_PROGRESS_AUTO);
    struct llm_synth_example ex;
    for (long i = 0; !rc && i < s.o.n; i++) {
        llm_synth_next(&s, &ex);
        rc = llm_synth_write(out.f, path, s.o.format, &ex);
        if (!rc && have_set && llm_hashset_add(&seen, prompt_hash(&ex), 0, NULL) < 0)
            rc = LLM_ENOMEM;
        if ((i & 65535) == 0)
            llm_progress_set(&prog, (uint64_t)i);
    }
    /* held out: the next K new prompts of the same stream (a prompt seen before is drawn again) */
    if (!rc && K > 0 && problem_space(&s.o) - (double)seen.n < (double)K)
        rc = llm_err(LLM_EUSAGE, "--split-eval %ld: only %.0f problems of this task are not among the %ld "
                     "training examples; use fewer, or more --digits/--words", K,
                     problem_space(&s.o) - (double)seen.n, s.o.n);
    for (long i = 0; !rc && i < K; i++) {
        int was;
        do {
            llm_synth_next(&s, &ex);
            was = llm_hashset_add(&seen, prompt_hash(&ex), 0, NULL);
        } while (was == 1);
        rc = was < 0 ? LLM_ENOMEM : llm_synth_write(ev.f, eval_path, LLM_SYNTH_JSONL, &ex);
        if ((i & 65535) == 0)
            llm_progress_set(&prog, (uint64_t)(s.o.n + i));
    }
    llm_progress_set(&prog, (uint64_t)(s.o.n + K));
    llm_progress_finish(&prog);
    /* the held-out file first: if it fails, the main output is not left behind either */
    if (!rc && have_ev && !(rc = llm_atomic_commit(&ev)))
        have_ev = 0;
    if (!rc && (rc = llm_atomic_commit(&out)) && K > 0)
        remove(eval_path);
    if (!rc) {
        have_out = 0;
        llm_info("synth: wrote %ld examples to %s%s%s", s.o.n, strcmp(path, "-") ? path : "stdout", K > 0 ? " and held-out ones to " : "",
                 K > 0 ? eval_path : "");
    }
    if (have_out)
        llm_atomic_abort(&out);
    if (have_ev)
        llm_atomic_abort(&ev);
    if (have_set)
        llm_hashset_release(&seen);
    return rc;
}
