/* extract.c: the extract pipeline of extract.h: inputs are sniffed (JSONL,
 * WARC or one HTML page), pages gathered into batches of about batch_bytes,
 * converted in parallel (one HTML converter per thread) into rendered JSON
 * lines, and written in input order. */
#include "extract.h"

#include <ctype.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/file.h"
#include "core/log.h"
#include "core/str.h"
#include "docs.h"
#include "warc.h"
#include "zsrc.h"

/* A page of the current batch: its HTML in the arena, then its output line. */
struct page {
    char *id;             /* owned */
    size_t off, len;      /* HTML in ctx.arena (len: of any page, once converted) */
    enum llm_charset cs;  /* declared by the transport, or AUTO */
    char *line;           /* the rendered JSON line (cJSON_malloc'd), NULL when dropped */
    size_t line_len, text_len, replaced;
    int unsupported;
};

struct ctx {
    const struct llm_extract_opts *o;
    struct llm_extract_stats *st;
    struct llm_html **conv;   /* one per thread */
    int nthreads;
    struct page *pages;
    size_t n, cap;
    char *arena;
    size_t an, acap;
    FILE *out;
    const char *out_path;
    struct llm_progress *prog;
    uint64_t prog_base;       /* input bytes of the inputs already done */
    char *scratch;            /* HTTP body decoding */
    size_t scratch_cap;
};

static void progress(struct ctx *c, uint64_t pos)
{
    if (c->prog)
        llm_progress_set(c->prog, c->prog_base + pos);
}

/* A warning for a bad input, or the error itself when strict. */
static int bad(struct ctx *c, int rc)
{
    if (rc == LLM_ENOMEM || rc == LLM_EIO || c->o->strict)
        return rc;
    c->st->bad++;
    llm_warn("%s; skipped", llm_errmsg());
    return 0;
}

/* Converts one page of HTML into an output line; thread-safe for distinct pages. */
static int convert(struct ctx *c, struct llm_html *h, const char *html, size_t n,
                   enum llm_charset cs, struct page *p, struct llm_doc *src)
{
    struct llm_html_opts ho = c->o->html;
    if (cs != LLM_CHARSET_AUTO)
        ho.charset = cs;
    const char *text;
    size_t len;
    struct llm_html_info info;
    int rc = llm_html_to_text(h, html, n, &ho, &text, &len, &info);
    if (rc)
        return rc;
    p->len = n;
    p->replaced = info.replaced;
    p->unsupported = info.charset == LLM_CHARSET_UNSUPPORTED;
    p->text_len = len;
    if (len < c->o->min_chars)
        return 0;
    struct llm_doc d, *dp = src;
    if (src) { /* JSONL: the html field becomes text, the rest passes through */
        const char *field = src->field;
        if ((rc = llm_doc_set_str(src, "text", text, len)))
            return rc;
        if (strcmp(field, "text"))
            llm_doc_remove(src, field);
    } else if ((rc = llm_doc_new(&d, p->id, "text", text, len))) {
        return rc;
    } else {
        dp = &d;
    }
    rc = llm_doc_render(dp);
    if (!rc) { /* take the rendered line */
        p->line = dp->out, p->line_len = dp->out_len;
        dp->out = NULL;
    }
    if (!src)
        llm_doc_release(&d);
    return rc;
}

/* Writes the pages' lines in order and counts them; frees the batch's lines. */
static int emit(struct ctx *c, struct page *pages, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        struct page *p = &pages[i];
        c->st->pages++;
        c->st->replaced += p->replaced;
        c->st->unsupported += (uint64_t)p->unsupported;
        if (!p->line) {
            c->st->empty++;
        } else if (!rc) {
            rc = llm_fwrite(c->out, p->line, p->line_len, c->out_path);
            if (!rc)
                rc = llm_fwrite(c->out, "\n", 1, c->out_path);
            c->st->written++;
            c->st->bytes_text += p->text_len;
        }
        cJSON_free(p->line);
        p->line = NULL;
    }
    return rc;
}

/* Converts and writes the gathered pages (HTML and WARC inputs). */
static int flush_pages(struct ctx *c)
{
    if (!c->n)
        return 0;
    int fail = 0;
    long n = (long)c->n;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads) reduction(| : fail) if (n > 1)
    for (long i = 0; i < n; i++) {
        struct page *p = &c->pages[i];
        if (convert(c, c->conv[omp_get_thread_num()], c->arena + p->off, p->len, p->cs, p, NULL))
            fail = 1;
    }
    int rc = fail ? llm_err(LLM_ENOMEM, "out of memory extracting text") : 0;
    int wrc = emit(c, c->pages, c->n);
    for (size_t i = 0; i < c->n; i++)
        free(c->pages[i].id);
    c->n = 0, c->an = 0;
    return rc ? rc : wrc;
}

static int add_page(struct ctx *c, const char *id, const char *html, size_t n, enum llm_charset cs)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        struct page *p = realloc(c->pages, nc * sizeof(*p));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory gathering pages");
        c->pages = p, c->cap = nc;
    }
    if (c->an + n > c->acap) {
        size_t nc = c->acap ? c->acap : 1u << 20;
        while (nc < c->an + n)
            nc *= 2;
        char *a = realloc(c->arena, nc);
        if (!a)
            return llm_err(LLM_ENOMEM, "out of memory gathering pages");
        c->arena = a, c->acap = nc;
    }
    struct page *p = &c->pages[c->n];
    memset(p, 0, sizeof(*p));
    if (!(p->id = llm_strdup(id)))
        return LLM_ENOMEM;
    memcpy(c->arena + c->an, html, n);
    p->off = c->an, p->len = n, p->cs = cs;
    c->an += n;
    c->n++;
    c->st->bytes_html += n;
    return c->an >= c->o->batch_bytes ? flush_pages(c) : 0;
}

/* One WARC record: a page when it holds a 2xx HTML response (or an HTML resource). */
static int warc_record(struct ctx *c, const struct llm_warc_record *rec)
{
    const char *id = rec->target_uri[0] ? rec->target_uri : rec->record_id;
    if (!strcmp(rec->type, "resource")) {
        char mime[64];
        size_t k = 0;
        for (; rec->content_type[k] && rec->content_type[k] != ';' && k + 1 < sizeof(mime); k++)
            mime[k] = (char)tolower((unsigned char)rec->content_type[k]);
        mime[k] = '\0';
        if (!llm_warc_is_html(mime, rec->block, rec->block_len)) {
            c->st->not_html++;
            return 0;
        }
        return add_page(c, id, rec->block, rec->block_len,
                        llm_charset_from_content_type(rec->content_type, strlen(rec->content_type)));
    }
    if (strcmp(rec->type, "response") || !strstr(rec->content_type, "application/http")) {
        c->st->not_html++;
        return 0;
    }
    struct llm_warc_http resp;
    int rc = llm_warc_parse_http(rec->block, rec->block_len, &resp, &c->scratch,
                                 &c->scratch_cap, c->o->max_page);
    if (rc)
        return llm_err_wrap(rc, "record %llu (%s)", (unsigned long long)rec->number, id);
    if (resp.status < 200 || resp.status > 299 ||
        !llm_warc_is_html(resp.mime, resp.body, resp.body_len)) {
        c->st->not_html++;
        return 0;
    }
    return add_page(c, id, resp.body, resp.body_len, resp.charset);
}

static int run_warc(struct ctx *c, struct llm_zsrc *z)
{
    struct llm_warc_reader r;
    int rc = llm_warc_open(&r, z);
    if (rc)
        return bad(c, rc);
    struct llm_warc_record rec;
    while ((rc = llm_warc_next(&r, &rec)) != 0) {
        if (rc < 0) {
            int fatal = rc != LLM_EINVAL; /* only an oversized record lets us go on */
            if ((rc = bad(c, rc)) || fatal)
                break;
            continue;
        }
        int prc = warc_record(c, &rec);
        if (prc == LLM_EFORMAT)
            prc = bad(c, prc);
        if ((rc = prc))
            break;
        off_t pos = ftello(r.z.f);
        if (pos > 0)
            progress(c, (uint64_t)pos);
    }
    if (r.resyncs)
        llm_warn("%s: skipped garbage between WARC records %llu time%s", r.z.path,
                 (unsigned long long)r.resyncs, r.resyncs == 1 ? "" : "s");
    llm_warc_close(&r);
    return rc;
}

/* The whole input is one page. */
static int run_html(struct ctx *c, struct llm_zsrc *z, const char *id)
{
    int rc;
    do
        rc = llm_zsrc_fill(z, llm_zsrc_avail(z) + (1u << 20));
    while (!rc && !z->eof);
    if (rc) {
        rc = llm_err_wrap(rc, "'%s'", id);
        llm_zsrc_close(z);
        return bad(c, rc);
    }
    rc = add_page(c, id, z->buf + z->start, llm_zsrc_avail(z), LLM_CHARSET_AUTO);
    llm_zsrc_close(z);
    return rc;
}

static int run_jsonl(struct ctx *c, const char *path)
{
    struct llm_docs_reader r;
    struct llm_docs_opts dopt = {.field = c->o->field ? c->o->field : "html",
                                 .strict = c->o->strict};
    int rc = flush_pages(c); /* pages of earlier inputs come first */
    if (!rc)
        rc = llm_docs_open(&r, &path, 1, &dopt);
    if (rc)
        return rc;
    struct llm_doc_batch b = {0};
    struct page *pg = NULL;
    size_t pg_cap = 0;
    while ((rc = llm_docs_read_batch(&r, &b, c->o->batch_bytes, c->nthreads)) == 1) {
        if (b.n > pg_cap) {
            struct page *np = realloc(pg, b.n * sizeof(*np));
            if (!np) {
                rc = llm_err(LLM_ENOMEM, "out of memory gathering pages");
                break;
            }
            pg = np, pg_cap = b.n;
        }
        memset(pg, 0, b.n * sizeof(*pg));
        int fail = 0;
        long n = (long)b.n;
        #pragma omp parallel for schedule(dynamic, 1) num_threads(c->nthreads) reduction(| : fail) if (n > 1)
        for (long i = 0; i < n; i++) {
            struct llm_doc *d = &b.docs[i];
            if (convert(c, c->conv[omp_get_thread_num()], d->text, d->text_len, LLM_CHARSET_UTF8,
                        &pg[i], d))
                fail = 1;
        }
        for (size_t i = 0; i < b.n; i++)
            c->st->bytes_html += pg[i].len;
        rc = fail ? llm_err(LLM_ENOMEM, "out of memory extracting text") : 0;
        int wrc = emit(c, pg, b.n);
        if ((rc = rc ? rc : wrc))
            break;
        progress(c, r.bytes);
    }
    c->st->bad += r.skipped;
    llm_doc_batch_release(&b);
    free(pg);
    llm_docs_close(&r);
    return rc;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static int run_input(struct ctx *c, const char *path)
{
    enum llm_extract_format fmt = c->o->format;
    if (fmt == LLM_EXTRACT_AUTO && (has_suffix(path, ".jsonl") || has_suffix(path, ".json") ||
                                    has_suffix(path, ".ndjson")))
        fmt = LLM_EXTRACT_JSONL;
    FILE *f;
    int rc = llm_fopen_read(path, &f);
    if (rc)
        return rc;
    if (fmt == LLM_EXTRACT_AUTO) { /* one byte of look-ahead works on stdin too */
        int ch;
        do /* leading whitespace is nothing in JSONL, HTML or WARC alike */
            ch = getc(f);
        while (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n');
        if (ch != EOF)
            ungetc(ch, f);
        if (ch == '{')
            fmt = LLM_EXTRACT_JSONL;
    }
    if (fmt == LLM_EXTRACT_JSONL) {
        if (f != stdin)
            fclose(f);
        return run_jsonl(c, path); /* stdin keeps the byte pushed back */
    }
    struct llm_zsrc z;
    size_t max = c->o->max_page + (2u << 20);
    if ((rc = llm_zsrc_open(&z, f, path, max)))
        return rc;
    if (fmt == LLM_EXTRACT_AUTO) {
        if ((rc = llm_zsrc_fill(&z, 5))) {
            llm_zsrc_close(&z);
            return bad(c, rc);
        }
        fmt = llm_zsrc_avail(&z) >= 5 && !memcmp(z.buf + z.start, "WARC/", 5) ? LLM_EXTRACT_WARC
                                                                               : LLM_EXTRACT_HTML;
    }
    return fmt == LLM_EXTRACT_WARC ? run_warc(c, &z) : run_html(c, &z, path);
}

int llm_extract_run(const char *const *paths, int npaths, const struct llm_extract_opts *o,
                    FILE *out, const char *path, struct llm_progress *progress_bar,
                    struct llm_extract_stats *st)
{
    static const char *const stdin_only[] = {"-"};
    struct llm_extract_opts opts = *o;
    if (!opts.batch_bytes)
        opts.batch_bytes = 32u << 20;
    if (!opts.max_page)
        opts.max_page = (size_t)256 << 20;
    memset(st, 0, sizeof(*st));
    if (npaths <= 0)
        paths = stdin_only, npaths = 1;
    struct ctx c = {.o = &opts, .st = st, .out = out, .out_path = path, .prog = progress_bar};
    for (int i = 0; progress_bar && i < npaths; i++) { /* the total, when the inputs are files */
        struct stat sb;
        if (strcmp(paths[i], "-") && !stat(paths[i], &sb) && S_ISREG(sb.st_mode))
            progress_bar->total += (uint64_t)sb.st_size;
    }
    c.nthreads = opts.threads > 0 ? opts.threads : omp_get_max_threads();
    c.conv = llm_calloc((size_t)c.nthreads, sizeof(*c.conv), "the HTML converters");
    int rc = c.conv ? 0 : LLM_ENOMEM;
    for (int t = 0; !rc && t < c.nthreads; t++)
        rc = llm_html_new(&c.conv[t]);
    for (int i = 0; !rc && i < npaths; i++) {
        rc = run_input(&c, paths[i]); /* pages of several inputs share batches */
        struct stat sb;
        if (strcmp(paths[i], "-") && !stat(paths[i], &sb))
            c.prog_base += (uint64_t)sb.st_size;
        progress(&c, 0);
    }
    if (!rc)
        rc = flush_pages(&c);
    if (rc)
        for (size_t i = 0; i < c.n; i++)
            free(c.pages[i].id);
    for (int t = 0; c.conv && t < c.nthreads; t++)
        llm_html_free(c.conv[t]);
    free(c.conv);
    free(c.pages);
    free(c.arena);
    free(c.scratch);
    return rc;
}
