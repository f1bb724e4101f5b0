/* loader.c: batches of windows from token shards (rules in docs/data.md).
 * Every shard stays mmap'd; a window is addressed by (shard, start) and read
 * token by token, so the resident memory is the page cache plus, for ALIGN,
 * the chunk index. */
#include "data/loader.h"

#include <glob.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/str.h"
#include "data/shard.h"

/* Where the stream is: everything a resumed run needs besides spec and opts. */
struct pos {
    int64_t epoch;   /* sequential: completed passes */
    uint64_t window; /* sequential: next window of the epoch; random: windows drawn */
    struct llm_rng rng;
};

struct llm_loader {
    struct llm_loader_opts o; /* boundaries resolved: ALIGN or CROSS */
    struct llm_shard *sh;     /* (ns) mapped shards, spec order */
    char **path;              /* (ns) their paths, for errors */
    size_t ns;
    /* Prefix sums over shards, (ns + 1) each: tokens; CROSS sequential
     * windows floor((n-1)/T); CROSS random starts n-T. */
    uint64_t *tok_base, *win_base, *start_base;
    /* ALIGN: chunk starts as offsets into the concatenation of the shards,
     * u32 while the total fits (4 bytes a chunk), else u64 (8 bytes). */
    uint32_t *c32;
    uint64_t *c64;
    uint64_t n_chunks, cap_chunks;
    uint64_t n_windows;
    struct pos pos, start; /* current, and right after new (rewind) */
};

/* ---- the file list ---- */

static int add_path(struct llm_loader *l, const char *p, size_t *cap)
{
    if (l->ns == *cap) {
        size_t nc = *cap ? 2 * *cap : 8;
        char **np = realloc(l->path, nc * sizeof(*np));
        if (!np)
            return llm_err(LLM_ENOMEM, "out of memory (loader file list)");
        l->path = np;
        *cap = nc;
    }
    if (!(l->path[l->ns] = llm_strdup(p)))
        return LLM_ENOMEM;
    l->ns++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One element of the comma list: a plain path is taken as is (so a missing
 * file fails at open with its errno); a pattern must match something. */
static int add_element(struct llm_loader *l, const char *e, size_t *cap)
{
    if (!strpbrk(e, "*?["))
        return add_path(l, e, cap);
    glob_t g;
    /* Our own bytewise sort: glob's strcoll order would depend on the locale. */
    int rc = glob(e, GLOB_NOSORT, NULL, &g);
    if (rc == GLOB_NOMATCH)
        return llm_err(LLM_EIO, "no file matches '%s'", e);
    if (rc == GLOB_NOSPACE)
        return llm_err(LLM_ENOMEM, "out of memory (expanding '%s')", e);
    if (rc != 0)
        return llm_err(LLM_EIO, "cannot expand '%s': read error", e);
    qsort(g.gl_pathv, g.gl_pathc, sizeof(char *), cmp_str);
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
        rc = add_path(l, g.gl_pathv[i], cap);
    globfree(&g);
    return rc;
}

static int expand_spec(struct llm_loader *l, const char *spec)
{
    char *s = llm_strdup(spec);
    if (!s)
        return LLM_ENOMEM;
    size_t cap = 0;
    int rc = 0;
    for (char *e = s, *comma; rc == 0; e = comma + 1) {
        comma = strchr(e, ',');
        if (comma)
            *comma = '\0';
        if (!*e)
            rc = llm_err(LLM_EINVAL, "data '%s': empty path in the list", spec);
        else
            rc = add_element(l, e, &cap);
        if (!comma)
            break;
    }
    free(s);
    return rc;
}

/* ---- the ALIGN chunk index ---- */

static int push_chunk(struct llm_loader *l, uint64_t g)
{
    if (l->n_chunks == l->cap_chunks) {
        uint64_t nc = l->cap_chunks ? 2 * l->cap_chunks : 1024;
        void *p = l->c64 ? realloc(l->c64, nc * sizeof(uint64_t)) : realloc(l->c32, nc * sizeof(uint32_t));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory (chunk index of %" PRIu64 " chunks)", nc);
        if (l->c64)
            l->c64 = p;
        else
            l->c32 = p;
        l->cap_chunks = nc;
    }
    if (l->c64)
        l->c64[l->n_chunks++] = g;
    else
        l->c32[l->n_chunks++] = (uint32_t)g;
    return 0;
}

/* One scan: a document ends at an eot (included) or at the shard end; its
 * chunks start at doc + k*T while a target (position c+1) is still inside. */
static int build_chunks(struct llm_loader *l)
{
    uint64_t T = (uint64_t)l->o.T;
    if (l->tok_base[l->ns] > UINT32_MAX && !(l->c64 = malloc(sizeof(uint64_t))))
        return llm_err(LLM_ENOMEM, "out of memory (chunk index)");
    l->cap_chunks = l->c64 ? 1 : 0;
    for (size_t i = 0; i < l->ns; i++) {
        const struct llm_shard *s = &l->sh[i];
        uint64_t doc = 0;
        for (uint64_t p = 0; p < s->n_tokens; p++) {
            if (llm_shard_token(s, p) != (uint32_t)l->o.eot && p + 1 < s->n_tokens)
                continue;
            for (uint64_t c = doc; c + 1 <= p; c += T) {
                int rc = push_chunk(l, l->tok_base[i] + c);
                if (rc)
                    return rc;
            }
            doc = p + 1;
        }
    }
    return 0;
}

/* ---- open ---- */

int llm_loader_new(struct llm_loader **out, const char *spec, const struct llm_loader_opts *o)
{
    *out = NULL;
    if (o->B <= 0 || o->T <= 0)
        return llm_err(LLM_EINVAL, "loader: B=%d and T=%d must be positive", o->B, o->T);
    if (o->vocab_size == 0 || o->vocab_size > (uint32_t)INT32_MAX)
        return llm_err(LLM_EINVAL, "loader: vocabulary size %" PRIu32 " is not in [1, 2^31)", o->vocab_size);
    if (o->eot >= 0 && (uint32_t)o->eot >= o->vocab_size)
        return llm_err(LLM_EINVAL, "loader: end-of-text id %d is outside the vocabulary (size %" PRIu32 ")",
                       o->eot, o->vocab_size);
    if (o->order != LLM_DATA_RANDOM && o->order != LLM_DATA_SEQUENTIAL)
        return llm_err(LLM_EINVAL, "loader: unknown data order %d", (int)o->order);
    enum llm_data_boundaries bd = o->boundaries;
    if (bd == LLM_DATA_BOUNDARIES_AUTO)
        bd = o->eot >= 0 ? LLM_DATA_BOUNDARIES_ALIGN : LLM_DATA_BOUNDARIES_CROSS;
    else if (bd == LLM_DATA_BOUNDARIES_ALIGN && o->eot < 0)
        return llm_err(LLM_EINVAL, "loader: aligning windows to documents needs an end-of-text id (data.eot)");
    else if (bd != LLM_DATA_BOUNDARIES_CROSS && bd != LLM_DATA_BOUNDARIES_ALIGN)
        return llm_err(LLM_EINVAL, "loader: unknown boundaries mode %d", (int)bd);
    if (!spec || !*spec)
        return llm_err(LLM_EINVAL, "loader: no data files given");

    struct llm_loader *l = llm_calloc(1, sizeof(*l), "data loader");
    if (!l)
        return LLM_ENOMEM;
    l->o = *o;
    l->o.boundaries = bd;
    int rc = expand_spec(l, spec);
    if (rc)
        goto fail;
    l->sh = llm_calloc(l->ns, sizeof(*l->sh), "data loader shards");
    l->tok_base = llm_calloc(3 * (l->ns + 1), sizeof(uint64_t), "data loader index");
    if (!l->sh || !l->tok_base) {
        rc = LLM_ENOMEM;
        goto fail;
    }
    l->win_base = l->tok_base + (l->ns + 1);
    l->start_base = l->win_base + (l->ns + 1);
    uint64_t T = (uint64_t)o->T;
    for (size_t i = 0; i < l->ns; i++) {
        if ((rc = llm_shard_open(&l->sh[i], l->path[i])))
            goto fail;
        uint64_t n = l->sh[i].n_tokens;
        if (l->sh[i].vocab_size > o->vocab_size) {
            rc = llm_err(LLM_EINVAL, "'%s': shard vocabulary size %" PRIu32 " is larger than the model's (%" PRIu32 ")",
                         l->path[i], l->sh[i].vocab_size, o->vocab_size);
            goto fail;
        }
        l->tok_base[i + 1] = l->tok_base[i] + n;
        l->win_base[i + 1] = l->win_base[i] + (n > T ? (n - 1) / T : 0);
        l->start_base[i + 1] = l->start_base[i] + (n > T ? n - T : 0);
    }
    if (bd == LLM_DATA_BOUNDARIES_ALIGN) {
        if ((rc = build_chunks(l)))
            goto fail;
        l->n_windows = l->n_chunks;
    } else {
        l->n_windows = l->win_base[l->ns];
    }
    if (l->n_windows == 0) {
        rc = bd == LLM_DATA_BOUNDARIES_ALIGN
                 ? llm_err(LLM_EINVAL, "data '%s': no complete window (%" PRIu64 " tokens, and no document "
                           "longer than its end-of-text token)", spec, l->tok_base[l->ns])
                 : llm_err(LLM_EINVAL, "data '%s': no complete window (no shard has T+1 = %d tokens)",
                           spec, o->T + 1);
        goto fail;
    }
    llm_rng_seed(&l->start.rng, o->seed);
    l->pos = l->start;
    *out = l;
    return 0;
fail:
    llm_loader_free(l);
    return rc;
}

void llm_loader_free(struct llm_loader *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->ns; i++) {
        if (l->sh)
            llm_shard_close(&l->sh[i]);
        free(l->path[i]);
    }
    free(l->sh);
    free(l->path);
    free(l->tok_base);
    free(l->c32);
    free(l->c64);
    free(l);
}

/* ---- reading ---- */

/* The shard holding global index x of prefix sums base (ns + 1 entries,
 * x < base[ns]): the last i with base[i] <= x, which skips empty shards. */
static size_t find_shard(const uint64_t *base, size_t ns, uint64_t x)
{
    size_t lo = 0, hi = ns; /* base[lo] <= x < base[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (base[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Advances p by one window and says where it starts. */
static void pick(const struct llm_loader *l, struct pos *p, size_t *shard, uint64_t *start)
{
    uint64_t k;
    if (l->o.order == LLM_DATA_SEQUENTIAL) {
        k = p->window++;
        if (p->window == l->n_windows) {
            p->window = 0;
            p->epoch++;
        }
    } else {
        /* nanoGPT's with-replacement draw: every valid start equally likely. */
        uint64_t n = l->o.boundaries == LLM_DATA_BOUNDARIES_ALIGN ? l->n_chunks : l->start_base[l->ns];
        k = llm_rng_below(&p->rng, n);
        p->window++;
    }
    if (l->o.boundaries == LLM_DATA_BOUNDARIES_ALIGN) {
        uint64_t g = l->c64 ? l->c64[k] : l->c32[k];
        *shard = find_shard(l->tok_base, l->ns, g);
        *start = g - l->tok_base[*shard];
    } else if (l->o.order == LLM_DATA_SEQUENTIAL) {
        *shard = find_shard(l->win_base, l->ns, k);
        *start = (k - l->win_base[*shard]) * (uint64_t)l->o.T;
    } else {
        *shard = find_shard(l->start_base, l->ns, k);
        *start = k - l->start_base[*shard];
    }
}

static int token_at(const struct llm_loader *l, size_t i, uint64_t p, int32_t *out)
{
    uint32_t v = llm_shard_token(&l->sh[i], p);
    if (v >= l->o.vocab_size)
        return llm_err(LLM_EFORMAT, "'%s': token %" PRIu32 " at position %" PRIu64 " is outside the model "
                       "vocabulary (size %" PRIu32 ")", l->path[i], v, p, l->o.vocab_size);
    *out = (int32_t)v;
    return 0;
}

/* One window of T inputs x and targets y from shard i at start s. CROSS
 * windows always have T+1 tokens in the shard; ALIGN ones stop at the
 * document's end e (one past its eot, or the shard end): inputs past it
 * are eot and targets at or past it are -1. */
static int fill(const struct llm_loader *l, size_t i, uint64_t s, int32_t *x, int32_t *y)
{
    int T = l->o.T, rc;
    uint64_t n = l->sh[i].n_tokens, e = s + (uint64_t)T + 1;
    if (l->o.boundaries == LLM_DATA_BOUNDARIES_ALIGN) {
        if (e > n)
            e = n;
        /* The first eot at or after s closes the document (none comes before
         * it inside the document, by the definition of one). */
        for (uint64_t p = s; p < e; p++)
            if (llm_shard_token(&l->sh[i], p) == (uint32_t)l->o.eot) {
                e = p + 1;
                break;
            }
    }
    for (int t = 0; t < T; t++) {
        uint64_t p = s + (uint64_t)t;
        if (p < e) {
            if ((rc = token_at(l, i, p, &x[t])))
                return rc;
        } else {
            x[t] = l->o.eot;
        }
        if (p + 1 < e) {
            if ((rc = token_at(l, i, p + 1, &y[t])))
                return rc;
        } else {
            y[t] = -1;
        }
    }
    return 0;
}

int llm_loader_next(struct llm_loader *l, int32_t *tokens, int32_t *targets)
{
    struct pos p = l->pos; /* committed only when the whole batch is read */
    size_t T = (size_t)l->o.T;
    for (int b = 0; b < l->o.B; b++) {
        size_t shard;
        uint64_t start;
        pick(l, &p, &shard, &start);
        int rc = fill(l, shard, start, tokens + (size_t)b * T, targets + (size_t)b * T);
        if (rc)
            return rc;
    }
    l->pos = p;
    return 0;
}

uint64_t llm_loader_n_tokens(const struct llm_loader *l) { return l->tok_base[l->ns]; }
uint64_t llm_loader_n_windows(const struct llm_loader *l) { return l->n_windows; }
int64_t llm_loader_epoch(const struct llm_loader *l) { return l->pos.epoch; }
void llm_loader_rewind(struct llm_loader *l) { l->pos = l->start; }

double llm_loader_unigram_entropy(const struct llm_loader *l)
{
    uint32_t V = 0; /* the largest header vocabulary: no id of a valid shard reaches it */
    for (size_t i = 0; i < l->ns; i++)
        V = l->sh[i].vocab_size > V ? l->sh[i].vocab_size : V;
    uint64_t *count = llm_calloc(V, sizeof(uint64_t), "unigram counts");
    if (!count)
        return NAN;
    uint64_t n = 0;
    for (size_t i = 0; i < l->ns; i++)
        for (uint64_t p = 0; p < l->sh[i].n_tokens; p++) {
            uint32_t v = llm_shard_token(&l->sh[i], p);
            if (v < V && v < l->o.vocab_size)
                count[v]++, n++;
        }
    /* H = -sum (c/n) log(c/n) = log n - (1/n) sum c log c */
    double s = 0;
    for (uint32_t v = 0; v < V; v++)
        if (count[v])
            s += (double)count[v] * log((double)count[v]);
    free(count);
    return n ? log((double)n) - s / (double)n : NAN;
}

/* ---- resume ---- */

static int add_u64(cJSON *o, const char *key, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return cJSON_AddStringToObject(o, key, buf) ? 0 : -1;
}

cJSON *llm_loader_state(const struct llm_loader *l)
{
    cJSON *o = cJSON_CreateObject(), *rng = NULL;
    if (!o || add_u64(o, "epoch", (uint64_t)l->pos.epoch) || add_u64(o, "window", l->pos.window) ||
        !(rng = cJSON_AddArrayToObject(o, "rng")))
        goto oom;
    for (int i = 0; i < 4; i++) {
        char buf[24];
        snprintf(buf, sizeof(buf), "%" PRIu64, l->pos.rng.s[i]);
        cJSON *v = cJSON_CreateString(buf);
        if (!v)
            goto oom;
        cJSON_AddItemToArray(rng, v);
    }
    return o;
oom:
    cJSON_Delete(o);
    llm_err(LLM_ENOMEM, "out of memory (data loader state)");
    return NULL;
}

/* A u64 written as a decimal string: digits only, no sign, no overflow. */
static int parse_u64(const cJSON *v, const char *key, uint64_t *out)
{
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return llm_err(LLM_EFORMAT, "data loader state: '%s' must be a decimal string", key);
    uint64_t x = 0;
    for (const char *c = v->valuestring; *c; c++) {
        if (*c < '0' || *c > '9')
            return llm_err(LLM_EFORMAT, "data loader state: '%s' must be a decimal string (got \"%s\")", key,
                           v->valuestring);
        unsigned d = (unsigned)(*c - '0');
        if (x > (UINT64_MAX - d) / 10)
            return llm_err(LLM_EFORMAT, "data loader state: '%s' is larger than 2^64-1", key);
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

int llm_loader_restore(struct llm_loader *l, const cJSON *state)
{
    if (!cJSON_IsObject(state))
        return llm_err(LLM_EFORMAT, "data loader state: expected a JSON object");
    for (const cJSON *c = state->child; c; c = c->next)
        if (!c->string || (strcmp(c->string, "epoch") && strcmp(c->string, "window") && strcmp(c->string, "rng")))
            return llm_err(LLM_EFORMAT, "data loader state: unknown key '%s'", c->string ? c->string : "");
    struct pos p;
    uint64_t epoch;
    int rc;
    if ((rc = parse_u64(cJSON_GetObjectItemCaseSensitive(state, "epoch"), "epoch", &epoch)) ||
        (rc = parse_u64(cJSON_GetObjectItemCaseSensitive(state, "window"), "window", &p.window)))
        return rc;
    if (epoch > INT64_MAX || (l->o.order == LLM_DATA_RANDOM && epoch != 0))
        return llm_err(LLM_EFORMAT, "data loader state: 'epoch' %" PRIu64 " is out of range for %s order", epoch,
                       l->o.order == LLM_DATA_RANDOM ? "random" : "sequential");
    if (l->o.order == LLM_DATA_SEQUENTIAL && p.window >= l->n_windows)
        return llm_err(LLM_EFORMAT, "data loader state: 'window' %" PRIu64 " is past the %" PRIu64
                       " windows of this data", p.window, l->n_windows);
    p.epoch = (int64_t)epoch;
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(state, "rng");
    if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != 4)
        return llm_err(LLM_EFORMAT, "data loader state: 'rng' must be an array of 4 decimal strings");
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) {
        if ((rc = parse_u64(cJSON_GetArrayItem(rng, i), "rng", &p.rng.s[i])))
            return rc;
        any |= p.rng.s[i];
    }
    if (!any) /* xoshiro's one fixed point: it would return 0 forever */
        return llm_err(LLM_EFORMAT, "data loader state: 'rng' is all zero");
    l->pos = p;
    return 0;
}
