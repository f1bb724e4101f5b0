/* test_minhash.c: near-duplicate detection: the hash, normalized words,
 * shingles, MinHash signatures (vector paths = plain C; estimates unbiased
 * with the binomial variance), the LSH banding, the LSH index with
 * union-find, and recall / precision on a corpus with planted near
 * duplicates built from the repository's docs (the .md files), against exact Jaccard
 * similarities computed here. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>

#include "core/err.h"
#include "core/rng.h"
#include "data/dedup.h"
#include "data/lsh.h"
#include "data/minhash.h"
#include "data/shingle.h"

static void test_hash(void **state)
{
    (void)state;
    const char *s = "the quick brown fox jumps over the lazy dog";
    uint64_t h = llm_hash64(s, strlen(s), 1);
    assert_true(h == llm_hash64(s, strlen(s), 1));
    assert_true(h != llm_hash64(s, strlen(s), 2));
    assert_true(llm_hash64("a", 1, 0) != llm_hash64("a\0", 2, 0));
    assert_true(llm_hash64("", 0, 0) != llm_hash64("", 0, 1));
    /* every prefix length hashes differently, across the 8-byte blocks */
    for (size_t i = 1; i < strlen(s); i++)
        assert_true(llm_hash64(s, i, 0) != llm_hash64(s, i + 1, 0));
    /* avalanche: flipping one input bit flips about half the output bits */
    double flips = 0;
    int trials = 0;
    for (size_t i = 0; i < 16; i++)
        for (int b = 0; b < 8; b++, trials++) {
            char t[16];
            memcpy(t, s, 16);
            t[i] ^= (char)(1 << b);
            flips += __builtin_popcountll(llm_hash64(s, 16, 0) ^ llm_hash64(t, 16, 0));
        }
    assert_true(fabs(flips / trials - 32) < 2);
}

/* The words of text joined by '|'. */
static void words_of(const char *text, char *out, size_t cap)
{
    struct llm_words w;
    llm_words_init(&w);
    llm_words_reset(&w, text, strlen(text));
    size_t n = 0;
    out[0] = '\0';
    while (llm_words_next(&w) == 1) {
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "|" : "", w.word);
        assert_true(n < cap);
    }
    llm_words_release(&w);
}

static void test_words(void **state)
{
    (void)state;
    char got[512];
    words_of("Héllo, WORLD!  don't", got, sizeof(got));
    assert_string_equal(got, "hello|world|dont");
    /* decomposed accents, ligatures, right quotes, digits, dashes, symbols */
    words_of("E\xcc\x81te \xef\xac\x81ve it\xe2\x80\x99s 3.14 foo\xe2\x80\x94" "bar a+b", got, sizeof(got));
    assert_string_equal(got, "ete|five|its|3|14|foo|bar|a|b");
    /* case folding beyond ASCII; a soft hyphen stays inside its word */
    words_of("STRASSE Straße \xce\xa3\xce\x99\xce\x93\xce\x9c\xce\x91 co\xc2\xad" "operate", got, sizeof(got));
    assert_string_equal(got, "strasse|strasse|σιγμα|cooperate");
    /* scripts without spaces: one word per character */
    words_of("日本語です ok", got, sizeof(got));
    assert_string_equal(got, "日|本|語|で|す|ok");
    words_of("  \t\n ,;-- ", got, sizeof(got));
    assert_string_equal(got, "");
    words_of("", got, sizeof(got));
    assert_string_equal(got, "");
}

static uint64_t text_hash(const char *s)
{
    struct llm_words w;
    uint64_t h;
    llm_words_init(&w);
    assert_int_equal(llm_text_hash(&w, s, strlen(s), &h), 0);
    llm_words_release(&w);
    return h;
}

static void test_text_hash(void **state)
{
    (void)state;
    assert_true(text_hash("Hello, World!") == text_hash("  hello\n\nWORLD "));
    assert_true(text_hash("Crème brûlée") == text_hash("creme brulee"));
    assert_true(text_hash("hello world") != text_hash("world hello"));
    assert_true(text_hash("ab c") != text_hash("a bc"));
    assert_true(text_hash("") == text_hash(" ... "));
    assert_true(text_hash("") != text_hash("a"));
}

static void test_shingles(void **state)
{
    (void)state;
    struct llm_shingler s, t;
    assert_int_equal(llm_shingler_init(&s, 3, 7), 0);
    assert_int_equal(llm_shingler_init(&t, 3, 7), 0);
    const char *a = "a b c a b c d";
    assert_int_equal(llm_shingler_run(&s, a, strlen(a)), 0);
    assert_int_equal(s.n, 5); /* abc bca cab abc bcd */
    assert_true(s.hash[0] == s.hash[3]);
    assert_true(s.hash[0] != s.hash[1] && s.hash[1] != s.hash[2] && s.hash[3] != s.hash[4]);
    /* normalization first: the same words give the same shingles */
    const char *b = "A, b! C... a B c (d)";
    assert_int_equal(llm_shingler_run(&t, b, strlen(b)), 0);
    assert_int_equal(t.n, 5);
    assert_memory_equal(s.hash, t.hash, 5 * sizeof(*s.hash));
    /* a shingle is the window, wherever it is */
    const char *c = "x y a b c";
    assert_int_equal(llm_shingler_run(&t, c, strlen(c)), 0);
    assert_int_equal(t.n, 3);
    assert_true(t.hash[2] == s.hash[0]);
    /* short texts: one shingle of all their words; none without words */
    assert_int_equal(llm_shingler_run(&t, "a b", 3), 0);
    assert_int_equal(t.n, 1);
    uint32_t ab = t.hash[0];
    assert_int_equal(llm_shingler_run(&t, "b a", 3), 0);
    assert_true(t.n == 1 && t.hash[0] != ab);
    assert_int_equal(llm_shingler_run(&t, "--", 2), 0);
    assert_int_equal(t.n, 0);
    /* another seed, other hashes */
    struct llm_shingler u;
    assert_int_equal(llm_shingler_init(&u, 3, 8), 0);
    assert_int_equal(llm_shingler_run(&u, a, strlen(a)), 0);
    assert_true(u.hash[0] != s.hash[0]);
    llm_shingler_release(&u);
    assert_int_equal(llm_shingler_init(&u, 0, 1), LLM_EINVAL);
    assert_int_equal(llm_shingler_init(&u, LLM_SHINGLE_MAX_NGRAM + 1, 1), LLM_EINVAL);
    llm_shingler_release(&s);
    llm_shingler_release(&t);
}

/* The vector paths give the plain path's bits, for every permutation count
 * (tails of 8 and 16 included) and shingle count. */
static void test_sign_paths(void **state)
{
    (void)state;
    struct llm_rng r;
    llm_rng_seed(&r, 3);
    uint32_t x[300], want[LLM_MINHASH_MAX_PERM], got[LLM_MINHASH_MAX_PERM];
    for (size_t i = 0; i < 300; i++)
        x[i] = llm_rng_u32(&r);
    const int perms[] = {1, 7, 8, 9, 15, 16, 17, 24, 128, 131, LLM_MINHASH_MAX_PERM};
    const size_t ns[] = {0, 1, 2, 77, 300};
    __builtin_cpu_init();
    int top = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
    if (top < 2)
        printf("# this CPU has %s: the AVX-512%s path is not tested here\n", top ? "AVX2 only" : "no AVX2",
               top ? "" : " and AVX2");
    for (size_t p = 0; p < sizeof(perms) / sizeof(*perms); p++) {
        struct llm_minhash m;
        assert_int_equal(llm_minhash_init(&m, perms[p], 11), 0);
        for (size_t k = 0; k < sizeof(ns) / sizeof(*ns); k++) {
            llm_minhash_sign_ref(&m, x, ns[k], want);
            if (ns[k] == 0)
                for (int i = 0; i < perms[p]; i++)
                    assert_true(want[i] == UINT32_MAX);
            for (int path = 0; path <= top; path++) {
                m.simd = path;
                memset(got, 0, sizeof(got));
                llm_minhash_sign(&m, x, ns[k], got);
                assert_memory_equal(got, want, (size_t)perms[p] * sizeof(*got));
            }
        }
        llm_minhash_release(&m);
    }
    struct llm_minhash m;
    assert_int_equal(llm_minhash_init(&m, 0, 1), LLM_EINVAL);
    assert_int_equal(llm_minhash_init(&m, LLM_MINHASH_MAX_PERM + 1, 1), LLM_EINVAL);
}

/* Estimates of known Jaccard similarities: unbiased, with the variance
 * J(1-J)/K of independent permutations (so the hash functions behave as
 * independent ones), and the same signature for the same set in any order. */
static void test_estimate(void **state)
{
    (void)state;
    enum { K = 256, PAIRS = 400, U = 600 };
    struct llm_minhash m;
    assert_int_equal(llm_minhash_init(&m, K, 5), 0);
    struct llm_rng r;
    llm_rng_seed(&r, 9);
    static uint32_t a[2 * U], b[2 * U], sa[K], sb[K];
    double bias = 0, z2 = 0;
    for (int p = 0; p < PAIRS; p++) {
        /* |A| = |B| = U sharing `common` elements: J = common / (2U - common) */
        int common = (int)llm_rng_below(&r, U + 1);
        for (int i = 0; i < U; i++) { /* random 32-bit values, as shingle hashes are */
            a[i] = llm_rng_u32(&r);
            b[i] = i < common ? a[i] : llm_rng_u32(&r);
        }
        double J = (double)common / (2 * U - common);
        llm_minhash_sign(&m, a, U, sa);
        llm_minhash_sign(&m, b, U, sb);
        double e = llm_minhash_jaccard(sa, sb, K) - J;
        bias += e;
        if (J > 0.02 && J < 0.98)
            z2 += e * e / (J * (1 - J) / K);
        else
            z2 += 1; /* near 0 or 1 the variance vanishes: count as expected */
    }
    bias /= PAIRS, z2 /= PAIRS;
    printf("# MinHash estimates, %d pairs, %d permutations: mean error %+.4f, variance / binomial %.3f\n", PAIRS,
           K, bias, z2);
    assert_true(fabs(bias) < 0.005);
    assert_true(z2 > 0.75 && z2 < 1.3);
    /* order and repeats do not matter */
    for (int i = 0; i < U; i++)
        b[i] = a[U - 1 - i], b[U + i] = a[i];
    llm_minhash_sign(&m, a, U, sa);
    llm_minhash_sign(&m, b, 2 * U, sb);
    assert_memory_equal(sa, sb, sizeof(sa));
    assert_true(llm_minhash_jaccard(sa, sb, K) == 1.0);
    llm_minhash_release(&m);
}

static void test_lsh_params(void **state)
{
    (void)state;
    int b, r;
    llm_lsh_params(0.8, 128, 0.5, 0.5, &b, &r); /* datasketch's equal weights */
    assert_int_equal(b, 9);
    assert_int_equal(r, 13);
    llm_lsh_params(0.8, 128, 0.1, 0.9, &b, &r); /* ours */
    assert_int_equal(b, 14);
    assert_int_equal(r, 9);
    llm_lsh_params(0.5, 128, 0.1, 0.9, &b, &r);
    assert_int_equal(b, 32);
    assert_int_equal(r, 4);
    llm_lsh_params(0.7, 64, 0.1, 0.9, &b, &r);
    assert_int_equal(b, 12);
    assert_int_equal(r, 5);
    assert_true(fabs(llm_lsh_prob(0.85, 14, 9) - 0.9749) < 1e-3);
    assert_true(fabs(llm_lsh_prob(0.5, 1, 1) - 0.5) < 1e-12);
    assert_true(llm_lsh_prob(0, 14, 9) == 0 && llm_lsh_prob(1, 14, 9) == 1);
    /* what dedup picks by default */
    struct llm_dedup_opts o = {.mode = LLM_DEDUP_MINHASH};
    assert_int_equal(llm_dedup_check(&o), 0);
    assert_true(o.num_perm == 128 && o.ngram == 5 && o.threshold == 0.8 && o.bands == 14 && o.rows == 9);
    /* the band key sees exactly its rows */
    uint32_t s1[8] = {1, 2, 3, 4, 5, 6, 7, 8}, s2[8] = {1, 2, 3, 4, 5, 6, 7, 9}, s3[8] = {0, 0, 0, 0, 5, 6, 7, 8};
    assert_true(llm_lsh_band_key(s1, 0, 4) == llm_lsh_band_key(s2, 0, 4));
    assert_true(llm_lsh_band_key(s1, 1, 4) != llm_lsh_band_key(s2, 1, 4));
    assert_true(llm_lsh_band_key(s1, 0, 4) != llm_lsh_band_key(s1 + 4, 0, 4)); /* bands differ by index */
    assert_true(llm_lsh_band_key(s3, 1, 4) == llm_lsh_band_key(s1, 1, 4));
}

/* Known answers with hand-made signatures: 10 values, 2 bands of 5 rows. */
static void test_lsh_index(void **state)
{
    (void)state;
    struct llm_lsh l;
    assert_int_equal(llm_lsh_init(&l, 10, 3, 4, 0.8), LLM_EINVAL);
    assert_int_equal(llm_lsh_init(&l, 10, 2, 5, 0), LLM_EINVAL);
    assert_int_equal(llm_lsh_init(&l, 10, 2, 5, 0.8), 0);
    uint32_t a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    uint32_t b[10] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0};    /* J 0.8 with a: joined */
    uint32_t c[10] = {1, 2, 3, 4, 5, 6, 7, 0, 0, 0};    /* J 0.7 with a, 0.9 with b */
    uint32_t d[10] = {0, 0, 0, 0, 0, 6, 7, 8, 9, 10};   /* J 0.5 with a: a candidate, not joined */
    uint32_t e[10] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9};    /* nothing in common */
    assert_int_equal(llm_lsh_add(&l, a), 0);
    assert_int_equal(llm_lsh_add(&l, e), 0);
    assert_int_equal(llm_lsh_add(&l, b), 0);
    assert_int_equal(llm_lsh_add(&l, c), 0);
    assert_int_equal(llm_lsh_add(&l, d), 0);
    assert_int_equal(llm_lsh_add(&l, NULL), 0); /* no shingles */
    assert_int_equal(llm_lsh_add(&l, NULL), 0);
    assert_int_equal(llm_lsh_add(&l, a), 0);    /* an exact copy */
    assert_int_equal(l.n, 8);
    assert_int_equal(llm_lsh_find(&l, 0), 0);
    assert_int_equal(llm_lsh_find(&l, 1), 1);
    assert_int_equal(llm_lsh_find(&l, 2), 0);
    /* c shares band 0 with a and b, but the bucket holds one document of
     * their cluster, a (the first there): c is checked against a (0.7) and
     * kept, as it is not a near duplicate of what dedup keeps */
    assert_int_equal(llm_lsh_find(&l, 3), 3);
    assert_int_equal(llm_lsh_find(&l, 4), 4);
    assert_int_equal(llm_lsh_find(&l, 5), 5);
    assert_int_equal(llm_lsh_find(&l, 6), 6);
    assert_int_equal(llm_lsh_find(&l, 7), 0);
    assert_memory_equal(llm_lsh_sig(&l, 3), c, sizeof(c));
    assert_true(llm_lsh_sig(&l, 5)[0] == UINT32_MAX);
    /* candidates: b-a (joined), c-a, d-a, copy-a (joined), copy-c, copy-d */
    assert_int_equal(l.joined, 2);
    assert_int_equal(l.candidates, 6);
    assert_true(llm_lsh_bytes(&l) > 0);
    llm_lsh_release(&l);

    /* many documents: the first of each group of copies is every root */
    assert_int_equal(llm_lsh_init(&l, 10, 2, 5, 0.8), 0);
    for (uint32_t i = 0; i < 3 * LLM_LSH_CHUNK; i++) {
        uint32_t s[10];
        for (int k = 0; k < 10; k++)
            s[k] = (i % 1000) * 10 + (uint32_t)k;
        assert_int_equal(llm_lsh_add(&l, s), 0);
    }
    for (uint32_t i = 0; i < 3 * LLM_LSH_CHUNK; i++)
        assert_int_equal(llm_lsh_find(&l, i), i % 1000);
    assert_int_equal(l.candidates, 3 * LLM_LSH_CHUNK - 1000);
    llm_lsh_release(&l);
}

/* ---- planted near duplicates in real text ---- */

struct corpus {
    char **w; /* words of the docs: lowercase ASCII letters and digits */
    size_t n, cap;
};

static void add_word(struct corpus *c, const char *s, size_t n)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4096;
        c->w = realloc(c->w, c->cap * sizeof(*c->w));
        assert_non_null(c->w);
    }
    c->w[c->n] = strndup(s, n);
    assert_non_null(c->w[c->n]);
    c->n++;
}

/* The words of every .md file of docs/, in file-name order; 0 when there is no docs/. */
static int load_docs(struct corpus *c)
{
    const char *dirs[] = {"docs", "../docs", "../../docs"};
    for (size_t k = 0; k < 3; k++) {
        struct dirent **ents;
        int ne = scandir(dirs[k], &ents, NULL, alphasort);
        if (ne < 0)
            continue;
        for (int i = 0; i < ne; i++) {
            size_t L = strlen(ents[i]->d_name);
            if (L > 3 && !strcmp(ents[i]->d_name + L - 3, ".md")) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", dirs[k], ents[i]->d_name);
                FILE *f = fopen(path, "rb");
                char word[64];
                size_t wl = 0;
                for (int ch; f && (ch = fgetc(f)) != EOF;) {
                    int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
                    if (alnum && wl < sizeof(word))
                        word[wl++] = (char)(ch | 0x20);
                    else if (!alnum && wl)
                        add_word(c, word, wl), wl = 0;
                }
                if (wl)
                    add_word(c, word, wl);
                if (f)
                    fclose(f);
            }
            free(ents[i]);
        }
        free(ents);
        return c->n > 0;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact set of 5-word shingles of words[0..n) (FNV-1a of the words
 * joined by spaces, sorted, unique): the reference, independent of
 * lib/data/shingle.c. */
static size_t shingle_set(char *const *words, size_t n, uint64_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i + 5 <= n; i++) {
        uint64_t h = 14695981039346656037ULL;
        for (size_t j = i; j < i + 5; j++)
            for (const char *p = words[j];; p++) {
                h = (h ^ (unsigned char)(*p ? *p : ' ')) * 1099511628211ULL;
                if (!*p)
                    break;
            }
        out[k++] = h;
    }
    qsort(out, k, sizeof(*out), cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (!u || out[u - 1] != out[i])
            out[u++] = out[i];
    return u;
}

static double exact_jaccard(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    size_t i = 0, j = 0, both = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j])
            both++, i++, j++;
        else if (a[i] < b[j])
            i++;
        else
            j++;
    }
    return na + nb - both ? (double)both / (double)(na + nb - both) : 1.0;
}

#define DOC_WORDS 80

/* Rounds of: base documents (consecutive 80-word runs of the docs, offset
 * by round), then one variant of each with a fraction of its words replaced
 * by random corpus words, the fraction set so the expected Jaccard is
 * uniform in [0.3, 1]; all in one stream through shingles, MinHash and LSH
 * as llm dedup runs them. A planted pair with exact Jaccard >= t + 0.05
 * must land in one cluster (recall); a removed document must have exact
 * Jaccard >= t - 0.05 with the document it was removed for (precision). */
static void test_planted(void **state)
{
    (void)state;
    struct corpus c = {0};
    if (!load_docs(&c))
        SKIP_BECAUSE("no docs/ folder with .md files here (run from the repository root)");
    size_t all = c.n;
    if (c.n > 40000) /* a bounded test as the docs grow */
        c.n = 40000;
    struct llm_dedup_opts o = {.mode = LLM_DEDUP_MINHASH};
    assert_int_equal(llm_dedup_check(&o), 0);
    const double t = o.threshold;
    size_t nbase = c.n / DOC_WORDS;
    assert_true(nbase >= 100);
    const int ROUNDS = 4;
    size_t ndoc = 2 * nbase;
    char **text = calloc(ndoc, sizeof(*text));
    char ***words = calloc(ndoc, sizeof(*words));
    uint64_t **set = calloc(ndoc, sizeof(*set));
    size_t *nset = calloc(ndoc, sizeof(*nset));
    uint32_t *sig = malloc((size_t)o.num_perm * sizeof(*sig));
    assert_true(text && words && set && nset && sig);
    struct llm_rng r;
    llm_rng_seed(&r, 2024);
    size_t above = 0, found = 0, removed = 0, good = 0, strict = 0;
    for (int round = 0; round < ROUNDS; round++) {
        size_t off = (size_t)round * DOC_WORDS / ROUNDS, nb = (c.n - off) / DOC_WORDS;
        for (size_t i = 0; i < 2 * nb; i++) {
            words[i] = malloc(DOC_WORDS * sizeof(char *));
            assert_non_null(words[i]);
            if (i < nb) {
                memcpy(words[i], c.w + off + i * DOC_WORDS, DOC_WORDS * sizeof(char *));
            } else { /* J = (1-f)^5 / (2 - (1-f)^5) for f of the words replaced */
                double J = 0.3 + 0.7 * llm_rng_double(&r), keep = pow(2 * J / (1 + J), 0.2);
                memcpy(words[i], words[i - nb], DOC_WORDS * sizeof(char *));
                for (size_t k = 0; k < DOC_WORDS; k++)
                    if (llm_rng_double(&r) > keep)
                        words[i][k] = c.w[llm_rng_below(&r, c.n)];
            }
            size_t len = 0;
            for (size_t k = 0; k < DOC_WORDS; k++)
                len += strlen(words[i][k]) + 1;
            text[i] = malloc(len + 1);
            assert_non_null(text[i]);
            len = 0;
            for (size_t k = 0; k < DOC_WORDS; k++)
                len += (size_t)sprintf(text[i] + len, "%s ", words[i][k]);
            set[i] = malloc(DOC_WORDS * sizeof(uint64_t));
            nset[i] = shingle_set(words[i], DOC_WORDS, set[i]);
        }
        struct llm_shingler sh;
        struct llm_minhash mh;
        struct llm_lsh l;
        assert_int_equal(llm_shingler_init(&sh, o.ngram, (uint64_t)round), 0);
        assert_int_equal(llm_minhash_init(&mh, o.num_perm, (uint64_t)round), 0);
        assert_int_equal(llm_lsh_init(&l, o.num_perm, o.bands, o.rows, t), 0);
        for (size_t i = 0; i < 2 * nb; i++) {
            assert_int_equal(llm_shingler_run(&sh, text[i], strlen(text[i])), 0);
            llm_minhash_sign(&mh, sh.hash, sh.n, sig);
            assert_int_equal(llm_lsh_add(&l, sig), 0);
        }
        for (size_t i = 0; i < nb; i++) /* recall */
            if (exact_jaccard(set[i], nset[i], set[nb + i], nset[nb + i]) >= t + 0.05) {
                above++;
                found += llm_lsh_find(&l, (uint32_t)(nb + i)) == llm_lsh_find(&l, (uint32_t)i);
            }
        for (size_t i = 0; i < 2 * nb; i++) { /* precision */
            uint32_t root = llm_lsh_find(&l, (uint32_t)i);
            if (root == i)
                continue;
            double J = exact_jaccard(set[i], nset[i], set[root], nset[root]);
            removed++;
            good += J >= t - 0.05;
            strict += J >= t;
        }
        llm_lsh_release(&l);
        llm_minhash_release(&mh);
        llm_shingler_release(&sh);
        for (size_t i = 0; i < 2 * nb; i++)
            free(text[i]), free(words[i]), free(set[i]);
    }
    double recall = (double)found / (double)above, precision = (double)good / (double)removed;
    printf("# planted near duplicates (%zu words of docs/, %d rounds, %d-word docs): recall %.3f (%zu of %zu "
           "pairs at J >= %.2f), precision %.3f (%zu of %zu removed at J >= %.2f; %.3f at J >= %.2f)\n",
           c.n, ROUNDS, DOC_WORDS, recall, found, above, t + 0.05, precision, good, removed, t - 0.05,
           (double)strict / (double)removed, t);
    assert_true(above >= 100);
    assert_true(recall >= 0.95);
    assert_true(precision >= 0.95);
    assert_true((double)strict / (double)removed >= 0.85);
    for (size_t i = 0; i < all; i++)
        free(c.w[i]);
    free(c.w), free(text), free(words), free(set), free(nset), free(sig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_text_hash),
        cmocka_unit_test(test_shingles),
        cmocka_unit_test(test_sign_paths),
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_lsh_params),
        cmocka_unit_test(test_lsh_index),
        cmocka_unit_test(test_planted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
