/* extract.c: `llm extract`: HTML pages, WARC archives and JSONL with an "html"
 * field to JSONL documents {"id", "text"} (lib/data/extract.h does the work). */
#include <string.h>

#include "cmd.h"
#include "core/file.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/extract.h"

static const char *ex_format, *ex_field, *ex_out, *ex_charset;
static long ex_threads, ex_min_chars;
static int ex_keep_boiler, ex_strict;
static const struct llm_opt extract_opts[] = {
    {"format", 0, LLM_OPT_STR, &ex_format, "auto|html|warc|jsonl", "input format (default auto: by content)"},
    {"field", 0, LLM_OPT_STR, &ex_field, "NAME", "JSONL: the field holding the HTML (default html)"},
    {"charset", 0, LLM_OPT_STR, &ex_charset, "NAME", "decode every page as utf-8 or windows-1252 (default: as declared)"},
    {"keep-boilerplate", 0, LLM_OPT_FLAG, &ex_keep_boiler, NULL, "keep nav, footer, aside, menus and hidden elements"},
    {"min-chars", 0, LLM_OPT_INT, &ex_min_chars, "N", "drop pages with fewer bytes of text (default 1: empty pages)"},
    {"strict", 0, LLM_OPT_FLAG, &ex_strict, NULL, "a bad page, line or archive is an error, not a skip"},
    {"jobs", 'j', LLM_OPT_INT, &ex_threads, "N", "threads (default: all cores)"},
    {"output", 'o', LLM_OPT_STR, &ex_out, "FILE", "output file (default stdout)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const struct llm_cmd_spec extract_spec = {
    .name = "extract", .usage = "[options] [FILE...]",
    .summary = "HTML, WARC (.warc, .warc.gz) or JSONL pages to JSONL documents {\"id\",\"text\"}",
    .opts = extract_opts, .min_pos = 0, .max_pos = -1,
    .epilog = "'-' (or no FILE) reads stdin. One document per page: id from the file name or\n"
              "the WARC-Target-URI; JSONL input keeps its other fields, \"html\" becomes \"text\".\n"
              "A summary goes to stderr. See docs/extract.md.",
};

static int parse(struct llm_extract_opts *o)
{
    memset(o, 0, sizeof(*o));
    static const char *const formats[] = {"auto", "html", "warc", "jsonl"};
    int found = 0;
    for (int i = 0; i < 4 && ex_format; i++)
        if (!strcmp(ex_format, formats[i]))
            o->format = (enum llm_extract_format)i, found = 1;
    if (ex_format && !found)
        return llm_err(LLM_EUSAGE, "--format: expected auto, html, warc or jsonl, got '%s'", ex_format);
    if (ex_charset) {
        o->html.charset = llm_charset_from_label(ex_charset, strlen(ex_charset));
        if (o->html.charset != LLM_CHARSET_UTF8 && o->html.charset != LLM_CHARSET_CP1252)
            return llm_err(LLM_EUSAGE, "--charset: expected utf-8, windows-1252 or latin-1, got '%s'", ex_charset);
    }
    if (ex_threads < 0 || ex_threads > 1024)
        return llm_err(LLM_EUSAGE, "-j: expected 0 (all cores) to 1024 threads");
    if (ex_min_chars < 0)
        return llm_err(LLM_EUSAGE, "--min-chars: expected a number >= 0");
    o->field = ex_field;
    o->html.keep_boilerplate = ex_keep_boiler;
    o->strict = ex_strict;
    o->threads = (int)ex_threads;
    o->min_chars = (size_t)ex_min_chars;
    return 0;
}

int cmd_extract(int argc, char **argv)
{
    struct llm_args a;
    ex_format = ex_field = ex_out = ex_charset = NULL;
    ex_threads = 0, ex_min_chars = 1, ex_keep_boiler = ex_strict = 0;
    int ex = cmd_parse(&extract_spec, argc, argv, &a);
    if (ex >= 0)
        return ex;
    struct llm_extract_opts o;
    struct llm_atomic out = {0};
    int rc = parse(&o), opened = 0;
    if (!rc)
        rc = llm_atomic_open(&out, ex_out ? ex_out : "-");
    if (!rc) {
        opened = 1;
        struct llm_progress p;
        llm_progress_init(&p, stderr, "extract", "B", 0, LLM_PROGRESS_AUTO);
        struct llm_extract_stats st;
        double t0 = llm_now();
        rc = llm_extract_run(a.pos, a.npos, &o, out.f, out.path, &p, &st);
        llm_progress_finish(&p);
        double dt = llm_now() - t0;
        if (!rc) {
            rc = llm_atomic_commit(&out);
            opened = 0;
        }
        if (!rc)
            llm_info("extract: %llu pages -> %llu documents (%llu empty dropped, %llu records "
                     "without HTML, %llu bad skipped); %.1f MB HTML -> %.1f MB text in %.2fs "
                     "(%.1f MB/s)%s",
                     (unsigned long long)st.pages, (unsigned long long)st.written,
                     (unsigned long long)st.empty, (unsigned long long)st.not_html,
                     (unsigned long long)st.bad, st.bytes_html / 1e6, st.bytes_text / 1e6, dt,
                     dt > 0 ? st.bytes_html / 1e6 / dt : 0.0,
                     st.unsupported ? "; some pages in unsupported charsets read as UTF-8" : "");
    }
    if (opened)
        llm_atomic_abort(&out);
    llm_args_release(&extract_spec, &a);
    return rc ? cmd_fail(&extract_spec, rc) : 0;
}
