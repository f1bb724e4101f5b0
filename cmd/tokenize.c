/* tokenize.c: `llm tokenize train|encode|decode`: byte-level BPE tokenizer
 * training, encoding to ids or token shards, and exact decoding. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/shard.h"
#include "tok/tok.h"

#define BATCH_BYTES (32u << 20) /* text read per parallel batch */
#define CHUNK_BYTES (1u << 20)  /* plain text is cut into pieces of about this size */
#define MAX_UNCUT (256u << 20)  /* longest stretch with no safe cut we buffer */

/* ---- reading input as documents, in batches ---- */
typedef size_t (*cut_fn)(const void *ctx, const char *s, size_t n);

struct input {
    cut_fn cut;        /* finds places where plain text may be split */
    const void *cut_ctx;
    const char *path;
    const char *field; /* JSONL field, or NULL for plain text */
    FILE *f;
    struct llm_jsonl_reader jr;
    char *buf;         /* plain text: buffered bytes */
    size_t cap, n;
    int eof;
    uint64_t bytes_read, size; /* size 0 when unknown (stdin) */
};

struct batch {
    char **docs; /* pointers into mem (plain text) or owned strings (JSONL) */
    size_t *lens;
    size_t n, cap;
    int owned;
    size_t bytes;
};

static int input_open(struct input *in, const char *path, const char *field, cut_fn cut,
                      const void *cut_ctx)
{
    memset(in, 0, sizeof(*in));
    in->cut = cut, in->cut_ctx = cut_ctx;
    in->path = path, in->field = field;
    struct stat st;
    if (strcmp(path, "-") && stat(path, &st) == 0 && S_ISREG(st.st_mode))
        in->size = (uint64_t)st.st_size;
    if (field)
        return llm_jsonl_open(&in->jr, path, 0);
    int rc = llm_fopen_read(path, &in->f);
    if (rc)
        return rc;
    in->cap = BATCH_BYTES + 1;
    if (!(in->buf = llm_malloc(in->cap, "the input buffer"))) {
        if (in->f != stdin)
            fclose(in->f);
        return LLM_ENOMEM;
    }
    return 0;
}

static void input_close(struct input *in)
{
    if (in->field)
        llm_jsonl_close(&in->jr);
    else if (in->f && in->f != stdin)
        fclose(in->f);
    free(in->buf);
}

static int batch_push(struct batch *b, char *doc, size_t len)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        char **d = realloc(b->docs, nc * sizeof(*d));
        size_t *l = d ? realloc(b->lens, nc * sizeof(*l)) : NULL;
        if (d)
            b->docs = d;
        if (!l)
            return llm_err(LLM_ENOMEM, "out of memory batching documents");
        b->lens = l, b->cap = nc;
    }
    b->docs[b->n] = doc, b->lens[b->n++] = len;
    b->bytes += len;
    return 0;
}

static void batch_clear(struct batch *b)
{
    if (b->owned)
        for (size_t i = 0; i < b->n; i++)
            free(b->docs[i]);
    b->n = 0, b->bytes = 0;
}

static void batch_release(struct batch *b)
{
    batch_clear(b);
    free(b->docs), free(b->lens);
}

/* Plain text: the previous batch's tail (after its last cut) moves to the
 * front, the buffer is refilled, and pieces of ~CHUNK_BYTES are cut where
 * the pre-tokenizer would cut anyway, so results do not depend on the
 * batching. One batch = one document piece list; doc_end marks EOF. */
static int next_text_batch(struct input *in, struct batch *b, size_t *consumed)
{
    if (*consumed) {
        memmove(in->buf, in->buf + *consumed, in->n - *consumed);
        in->n -= *consumed;
        *consumed = 0;
    }
    while (!in->eof && in->n < in->cap - 1) {
        size_t got = fread(in->buf + in->n, 1, in->cap - 1 - in->n, in->f);
        if (got == 0) {
            if (ferror(in->f))
                return llm_err(LLM_EIO, "cannot read '%s'", in->path);
            in->eof = 1;
        }
        in->n += got;
        in->bytes_read += got;
    }
    size_t start = 0;
    while (start < in->n) {
        size_t end = start + CHUNK_BYTES < in->n ? start + CHUNK_BYTES : in->n;
        if (end < in->n || !in->eof) {
            /* the last cut in the first ~1 MiB; failing that, in the first 2, 3, ... MiB */
            size_t cut = 0, window = end - start;
            while (!(cut = in->cut(in->cut_ctx, in->buf + start, window)) && start + window < in->n)
                window = start + window + CHUNK_BYTES < in->n ? window + CHUNK_BYTES : in->n - start;
            if (!cut) {
                if (!in->eof) {
                    if (start > 0)
                        break; /* let the next batch bring more */
                    if (in->cap > MAX_UNCUT)
                        return llm_err(LLM_EINVAL, "'%s': more than %u MiB with no line break between two characters, where the pre-tokenizer would let us cut it; split it into lines or JSONL documents",
                                       in->path, MAX_UNCUT >> 20);
                    char *nb = realloc(in->buf, in->cap * 2);
                    if (!nb)
                        return llm_err(LLM_ENOMEM, "out of memory reading '%s'", in->path);
                    in->buf = nb, in->cap *= 2;
                    return next_text_batch(in, b, consumed);
                }
                cut = in->n - start; /* the end of the input is always a cut */
            }
            end = start + cut;
        }
        int rc = batch_push(b, in->buf + start, end - start);
        if (rc)
            return rc;
        start = end;
    }
    *consumed = start;
    return 0;
}

static int next_jsonl_batch(struct input *in, struct batch *b)
{
    b->owned = 1;
    while (b->bytes < BATCH_BYTES) {
        cJSON *o;
        int rc = llm_jsonl_next(&in->jr, &o);
        if (rc <= 0) {
            if (rc == 0)
                in->eof = 1;
            return rc;
        }
        const cJSON *t = cJSON_GetObjectItem(o, in->field);
        if (!cJSON_IsString(t)) {
            cJSON_Delete(o);
            return llm_err(LLM_EINVAL, "%s:%llu: no string field \"%s\"", in->jr.path,
                           (unsigned long long)in->jr.line, in->field);
        }
        size_t len = strlen(t->valuestring);
        char *doc = t->valuestring;
        ((cJSON *)t)->valuestring = NULL; /* take it; cJSON_Delete skips NULL */
        cJSON_Delete(o);
        if ((rc = batch_push(b, doc, len))) {
            free(doc);
            return rc;
        }
    }
    in->bytes_read = (uint64_t)ftello(in->jr.f);
    return 0;
}

static int parse_threads(long j)
{
    if (j < 0 || j > 1024)
        return llm_err(LLM_EUSAGE, "-j: expected 0 (all cores) to 1024 threads");
    return 0;
}

/* ---- train ---- */
static long tr_vocab, tr_threads;
static const char *tr_out, *tr_pattern, *tr_field;
static struct llm_strlist tr_specials;
static const struct llm_opt train_opts[] = {
    {"vocab-size", 0, LLM_OPT_INT, &tr_vocab, "N", "vocabulary size: specials + 256 bytes + merges"},
    {"special", 0, LLM_OPT_LIST, &tr_specials, "TOK", "a special token (ids 0, 1, ... in order)"},
    {"pattern", 0, LLM_OPT_STR, &tr_pattern, "REGEX", "pre-tokenizer regex (PCRE2; default GPT-2's)"},
    {"field", 0, LLM_OPT_STR, &tr_field, "NAME", "read JSONL and take this field of each line"},
    {"jobs", 'j', LLM_OPT_INT, &tr_threads, "N", "threads (default: all cores)"},
    {"output", 'o', LLM_OPT_STR, &tr_out, "FILE", "where to write tokenizer.json (required)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const struct llm_cmd_spec train_spec = {
    .name = "tokenize train", .usage = "--vocab-size N [--special TOK]... -o tokenizer.json FILE...",
    .summary = "train a byte-level BPE tokenizer on text files (or JSONL with --field)",
    .opts = train_opts, .min_pos = 1, .max_pos = -1,
    .epilog = "Writes a Hugging Face tokenizer.json. '-' reads stdin. Ties between equally\n"
              "frequent pairs go to the lexicographically greater pair of byte strings.",
};

static size_t trainer_cut(const void *ctx, const char *s, size_t n)
{
    return llm_tok_trainer_cut(ctx, s, n);
}

static size_t tokenizer_cut(const void *ctx, const char *s, size_t n)
{
    return llm_tok_cut(ctx, s, n);
}

static void train_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct llm_progress *p = ctx;
    if (p->total != total)
        p->total = total;
    llm_progress_set(p, done);
}

static int tokenize_train(int argc, char **argv)
{
    struct llm_args a;
    tr_vocab = 0, tr_threads = 0, tr_out = tr_pattern = tr_field = NULL;
    int ex = cmd_parse(&train_spec, argc, argv, &a);
    if (ex >= 0)
        return ex;
    int rc = 0;
    struct llm_tok_trainer *tr = NULL;
    struct llm_tokenizer *tok = NULL;
    if (!tr_out)
        rc = llm_err(LLM_EUSAGE, "missing -o FILE (where to write tokenizer.json)");
    else if (tr_vocab <= 0 || tr_vocab > (1L << 30))
        rc = llm_err(LLM_EUSAGE, "--vocab-size: expected a number of tokens, got %ld", tr_vocab);
    else
        rc = parse_threads(tr_threads);
    if (rc)
        goto out;
    struct llm_tok_train_opts o = {
        .vocab_size = (uint32_t)tr_vocab, .specials = tr_specials.v, .n_specials = tr_specials.n,
        .pattern = tr_pattern, .threads = (int)tr_threads,
    };
    if ((rc = llm_tok_trainer_new(&o, &tr)))
        goto out;
    uint64_t total_size = 0;
    for (int i = 0; i < a.npos; i++) {
        struct stat st;
        if (strcmp(a.pos[i], "-") && stat(a.pos[i], &st) == 0)
            total_size += (uint64_t)st.st_size;
    }
    struct llm_progress p;
    llm_progress_init(&p, stderr, "read", "B", total_size, LLM_PROGRESS_AUTO);
    uint64_t before = 0;
    for (int i = 0; i < a.npos && !rc; i++) {
        struct input in;
        if ((rc = input_open(&in, a.pos[i], tr_field, trainer_cut, tr)))
            break;
        struct batch b = {0};
        size_t consumed = 0;
        while (!rc) {
            batch_clear(&b);
            rc = tr_field ? next_jsonl_batch(&in, &b) : next_text_batch(&in, &b, &consumed);
            if (rc || !b.n)
                break;
            rc = llm_tok_trainer_feed(tr, (const char *const *)b.docs, b.lens, b.n);
            uint64_t words, total;
            llm_tok_trainer_stats(tr, &words, &total);
            llm_progress_fields(&p, "%llu distinct words", (unsigned long long)words);
            llm_progress_set(&p, before + in.bytes_read);
            if (in.eof && (tr_field || consumed == in.n))
                break;
        }
        before += in.bytes_read;
        batch_release(&b);
        input_close(&in);
    }
    llm_progress_finish(&p);
    if (rc)
        goto out;
    struct llm_progress mp;
    llm_progress_init(&mp, stderr, "merge", "merges", 0, LLM_PROGRESS_AUTO);
    rc = llm_tok_trainer_finish(tr, &tok, train_progress, &mp);
    llm_progress_finish(&mp);
    if (!rc)
        rc = llm_tok_save(tok, tr_out);
    if (!rc)
        llm_info("wrote %s: %u tokens", tr_out, llm_tok_vocab_size(tok));
out:
    llm_tok_trainer_free(tr);
    llm_tok_free(tok);
    llm_args_release(&train_spec, &a);
    return rc ? cmd_fail(&train_spec, rc) : 0;
}

/* ---- encode ---- */
static const char *en_tok, *en_format, *en_out, *en_field, *en_eot;
static long en_threads;
static int en_no_special;
static const struct llm_opt encode_opts[] = {
    {"tokenizer", 0, LLM_OPT_STR, &en_tok, "FILE", "tokenizer.json (required)"},
    {"format", 0, LLM_OPT_STR, &en_format, "ids|bin", "decimal ids (default) or a token shard"},
    {"field", 0, LLM_OPT_STR, &en_field, "NAME", "read JSONL; encode this field of each line"},
    {"eot", 0, LLM_OPT_STR, &en_eot, "TOK", "end-of-text token after each JSONL document (default <|endoftext|>)"},
    {"no-special", 0, LLM_OPT_FLAG, &en_no_special, NULL, "encode special-token text as ordinary text"},
    {"jobs", 'j', LLM_OPT_INT, &en_threads, "N", "threads (default: all cores)"},
    {"output", 'o', LLM_OPT_STR, &en_out, "FILE", "output file (default stdout; required for bin)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const struct llm_cmd_spec encode_spec = {
    .name = "tokenize encode", .usage = "--tokenizer T [--format ids|bin] [-o OUT] [FILE|-]",
    .summary = "encode text (or JSONL documents) to token ids",
    .opts = encode_opts, .min_pos = 0, .max_pos = 1,
    .epilog = "Plain text is encoded as one text (ids on one line); with --field each JSONL\n"
              "document is one line of ids, followed by the end-of-text token.",
};

struct encode_out {
    int bin;
    struct llm_shard_writer shard;
    struct llm_atomic text;
    int first; /* no id written on this line yet */
};

/* " id id id" (each id after a space), formatted by hand: printf would be
 * the bottleneck. Runs in the parallel loop, one buffer per piece. */
static int format_ids(struct llm_bytes *out, const uint32_t *ids, size_t n)
{
    out->n = 0;
    if (!n)
        return 0;
    if (n * 11 + 1 > out->cap) {
        char *p = realloc(out->v, n * 11 + 1);
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory formatting ids");
        out->v = p, out->cap = n * 11 + 1;
    }
    char *w = out->v;
    for (size_t i = 0; i < n; i++) {
        char tmp[12];
        int k = 0;
        uint32_t v = ids[i];
        do
            tmp[k++] = (char)('0' + v % 10);
        while ((v /= 10));
        *w++ = ' ';
        while (k)
            *w++ = tmp[--k];
    }
    out->n = (size_t)(w - out->v);
    return 0;
}

/* Writes a formatted piece, dropping its leading space at the start of a line. */
static int write_formatted(struct encode_out *o, const struct llm_bytes *t)
{
    if (!t->n)
        return 0;
    int skip = o->first;
    o->first = 0;
    return llm_fwrite(o->text.f, t->v + skip, t->n - skip, o->text.path);
}

static int tokenize_encode(int argc, char **argv)
{
    struct llm_args a;
    en_tok = en_format = en_out = en_field = en_eot = NULL;
    en_threads = 0, en_no_special = 0;
    int ex = cmd_parse(&encode_spec, argc, argv, &a);
    if (ex >= 0)
        return ex;
    int rc = 0, nthreads = 1, opened = 0;
    struct llm_tokenizer *tok = NULL;
    struct llm_tok_encoder **enc = NULL;
    struct llm_ids *ids = NULL;
    struct llm_bytes *texts = NULL; /* formatted ids of each piece */
    size_t ids_cap = 0;
    struct encode_out o = {.first = 1};
    struct input in = {0};
    int in_open = 0;
    int64_t eot = -1;
    const char *path = a.npos ? a.pos[0] : "-";
    if (!en_tok)
        rc = llm_err(LLM_EUSAGE, "missing --tokenizer FILE");
    else if (en_format && strcmp(en_format, "ids") && strcmp(en_format, "bin"))
        rc = llm_err(LLM_EUSAGE, "--format: expected ids or bin, got '%s'", en_format);
    else
        rc = parse_threads(en_threads);
    if (rc || (rc = llm_tok_load(&tok, en_tok)))
        goto out;
    o.bin = en_format && !strcmp(en_format, "bin");
    if (en_field) {
        const char *name = en_eot ? en_eot : "<|endoftext|>";
        if ((eot = llm_tok_special_id(tok, name)) < 0) {
            rc = llm_err(LLM_EINVAL, "the tokenizer has no added token '%s' to end documents with (use --eot)", name);
            goto out;
        }
    }
    nthreads = en_threads ? (int)en_threads : omp_get_max_threads();
    enc = llm_calloc((size_t)nthreads, sizeof(*enc), "encoders");
    if (!enc) {
        rc = LLM_ENOMEM;
        goto out;
    }
    for (int i = 0; i < nthreads; i++)
        if ((rc = llm_tok_encoder_new(tok, &enc[i])))
            goto out;
    if ((rc = input_open(&in, path, en_field, tokenizer_cut, tok)))
        goto out;
    in_open = 1;
    const char *outp = en_out ? en_out : "-";
    rc = o.bin ? llm_shard_writer_open(&o.shard, outp, llm_tok_vocab_size(tok))
               : llm_atomic_open(&o.text, outp);
    if (rc)
        goto out;
    opened = 1;
    struct llm_progress p;
    llm_progress_init(&p, stderr, "encode", "B", in.size, LLM_PROGRESS_AUTO);
    struct batch b = {0};
    size_t consumed = 0;
    uint64_t n_tokens = 0;
    while (!rc) {
        batch_clear(&b);
        rc = en_field ? next_jsonl_batch(&in, &b) : next_text_batch(&in, &b, &consumed);
        if (rc || !b.n)
            break;
        if (b.n > ids_cap) {
            struct llm_ids *ni = realloc(ids, b.n * sizeof(*ids));
            if (!ni) {
                rc = llm_err(LLM_ENOMEM, "out of memory encoding");
                break;
            }
            memset(ni + ids_cap, 0, (b.n - ids_cap) * sizeof(*ids));
            ids = ni;
            struct llm_bytes *nt = realloc(texts, b.n * sizeof(*texts));
            if (!nt) {
                rc = llm_err(LLM_ENOMEM, "out of memory encoding");
                break;
            }
            memset(nt + ids_cap, 0, (b.n - ids_cap) * sizeof(*texts));
            texts = nt, ids_cap = b.n;
        }
        int fail = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(| : fail)
        for (size_t i = 0; i < b.n; i++) {
            ids[i].n = 0;
            if (llm_tok_encode(enc[omp_get_thread_num()], b.docs[i], b.lens[i], !en_no_special, &ids[i]) ||
                (eot >= 0 && llm_ids_push(&ids[i], (uint32_t)eot)) ||
                (!o.bin && format_ids(&texts[i], ids[i].v, ids[i].n)))
                fail = 1;
        }
        if (fail) {
            rc = llm_err(LLM_ENOMEM, "out of memory encoding");
            break;
        }
        for (size_t i = 0; i < b.n && !rc; i++) {
            n_tokens += ids[i].n;
            if (o.bin)
                rc = llm_shard_write(&o.shard, ids[i].v, ids[i].n);
            else {
                rc = write_formatted(&o, &texts[i]);
                if (!rc && en_field) { /* one line per document */
                    rc = llm_fwrite(o.text.f, "\n", 1, o.text.path);
                    o.first = 1;
                }
            }
        }
        llm_progress_set(&p, in.bytes_read);
        if (in.eof && (en_field || consumed == in.n))
            break;
    }
    batch_release(&b);
    llm_progress_fields(&p, "%llu tokens", (unsigned long long)n_tokens);
    llm_progress_finish(&p);
    if (!rc && !o.bin && !en_field)
        rc = llm_fwrite(o.text.f, "\n", 1, o.text.path);
    if (!rc) {
        rc = o.bin ? llm_shard_writer_commit(&o.shard) : llm_atomic_commit(&o.text);
        opened = 0;
    }
out:
    if (opened) {
        if (o.bin)
            llm_shard_writer_abort(&o.shard);
        else
            llm_atomic_abort(&o.text);
    }
    if (in_open)
        input_close(&in);
    for (size_t i = 0; i < ids_cap; i++)
        llm_ids_release(&ids[i]), llm_bytes_release(&texts[i]);
    free(ids), free(texts);
    for (int i = 0; enc && i < nthreads; i++)
        llm_tok_encoder_free(enc[i]);
    free(enc);
    llm_tok_free(tok);
    llm_args_release(&encode_spec, &a);
    return rc ? cmd_fail(&encode_spec, rc) : 0;
}

/* ---- decode ---- */
static const char *de_tok, *de_out;
static const struct llm_opt decode_opts[] = {
    {"tokenizer", 0, LLM_OPT_STR, &de_tok, "FILE", "tokenizer.json (required)"},
    {"output", 'o', LLM_OPT_STR, &de_out, "FILE", "output file (default stdout)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const struct llm_cmd_spec decode_spec = {
    .name = "tokenize decode", .usage = "--tokenizer T [-o OUT] [FILE|-]",
    .summary = "decode token ids (decimal text, or a token shard) to the exact bytes",
    .opts = decode_opts, .min_pos = 0, .max_pos = 1,
};

#define DECODE_BLOCK 65536

static int decode_ids(const struct llm_tokenizer *t, const uint32_t *ids, size_t n,
                      struct llm_bytes *buf, struct llm_atomic *out)
{
    buf->n = 0;
    int rc = llm_tok_decode(t, ids, n, buf);
    return rc ? rc : llm_fwrite(out->f, buf->v, buf->n, out->path);
}

static int decode_text(const struct llm_tokenizer *t, FILE *f, const char *path,
                       struct llm_atomic *out)
{
    uint32_t ids[DECODE_BLOCK];
    size_t n = 0;
    uint64_t index = 0, v = 0;
    int in_num = 0, rc = 0, c;
    struct llm_bytes buf = {0};
    while (!rc) {
        c = getc_unlocked(f);
        if (c >= '0' && c <= '9') {
            v = v * 10 + (uint64_t)(c - '0');
            if (v > UINT32_MAX) {
                rc = llm_err(LLM_EINVAL, "'%s': id #%llu is too large", path, (unsigned long long)index + 1);
                break;
            }
            in_num = 1;
            continue;
        }
        if (c != EOF && c != ' ' && c != '\n' && c != '\t' && c != '\r') {
            rc = llm_err(LLM_EINVAL, "'%s': expected decimal ids separated by spaces, found byte 0x%02x after id #%llu",
                         path, c, (unsigned long long)index);
            break;
        }
        if (in_num) {
            ids[n++] = (uint32_t)v;
            index++;
            v = 0, in_num = 0;
            if (n == DECODE_BLOCK) {
                rc = decode_ids(t, ids, n, &buf, out);
                n = 0;
            }
        }
        if (c == EOF)
            break;
    }
    if (!rc && ferror(f))
        rc = llm_err(LLM_EIO, "cannot read '%s'", path);
    if (!rc && n)
        rc = decode_ids(t, ids, n, &buf, out);
    llm_bytes_release(&buf);
    return rc;
}

static int decode_shard(const struct llm_tokenizer *t, const char *path, struct llm_atomic *out)
{
    struct llm_shard s;
    int rc = llm_shard_open(&s, path);
    if (rc)
        return rc;
    uint32_t ids[DECODE_BLOCK];
    struct llm_bytes buf = {0};
    for (uint64_t i = 0; i < s.n_tokens && !rc;) {
        size_t n = 0;
        while (n < DECODE_BLOCK && i < s.n_tokens)
            ids[n++] = llm_shard_token(&s, i++);
        rc = decode_ids(t, ids, n, &buf, out);
    }
    llm_bytes_release(&buf);
    llm_shard_close(&s);
    return rc;
}

static int tokenize_decode(int argc, char **argv)
{
    struct llm_args a;
    de_tok = de_out = NULL;
    int ex = cmd_parse(&decode_spec, argc, argv, &a);
    if (ex >= 0)
        return ex;
    const char *path = a.npos ? a.pos[0] : "-";
    struct llm_tokenizer *tok = NULL;
    struct llm_atomic out;
    FILE *f = NULL;
    int rc = de_tok ? 0 : llm_err(LLM_EUSAGE, "missing --tokenizer FILE"), opened = 0;
    if (rc || (rc = llm_tok_load(&tok, de_tok)) || (rc = llm_fopen_read(path, &f)))
        goto out;
    if ((rc = llm_atomic_open(&out, de_out ? de_out : "-")))
        goto out;
    opened = 1;
    char head[8];
    size_t got = 0;
    if (f != stdin) { /* a token shard is recognised by its magic */
        got = fread(head, 1, sizeof(head), f);
        rewind(f);
    }
    rc = llm_shard_sniff(head, got) ? decode_shard(tok, path, &out) : decode_text(tok, f, path, &out);
    if (!rc) {
        rc = llm_atomic_commit(&out);
        opened = 0;
    }
out:
    if (opened)
        llm_atomic_abort(&out);
    if (f && f != stdin)
        fclose(f);
    llm_tok_free(tok);
    llm_args_release(&decode_spec, &a);
    return rc ? cmd_fail(&decode_spec, rc) : 0;
}

int cmd_tokenize(int argc, char **argv)
{
    static const char *const subs[] = {"train", "encode", "decode"};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: llm tokenize train|encode|decode [options]\n\n"
                   "  train    train a byte-level BPE tokenizer (writes tokenizer.json)\n"
                   "  encode   text or JSONL -> token ids or a token shard\n"
                   "  decode   token ids or a token shard -> the exact bytes\n\n"
                   "See 'llm tokenize SUB --help'.\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], subs[0]))
        return tokenize_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], subs[1]))
        return tokenize_encode(argc - 1, argv + 1);
    if (!strcmp(argv[1], subs[2]))
        return tokenize_decode(argc - 1, argv + 1);
    fprintf(stderr, "llm tokenize: error: unknown subcommand '%s' (train, encode or decode)\n", argv[1]);
    return 2;
}
