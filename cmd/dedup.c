/* dedup.c: `llm dedup`: exact, Bloom-filter, line-level and MinHash-LSH
 * deduplication of JSONL documents (lib/data/dedup.h); kept documents on
 * stdout or -o FILE, a summary on stderr, removed ones in --report. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "core/file.h"
#include "core/log.h"
#include "data/dedup.h"

static double pct(uint64_t a, uint64_t b)
{
    return b ? 100.0 * (double)a / (double)b : 0.0;
}

static void summary(const struct llm_dedup_opts *o, const struct llm_dedup_stats *s)
{
    unsigned long long in = s->docs_in, out = s->docs_out, rm = s->removed;
    if (o->mode == LLM_DEDUP_EXACT)
        llm_info("dedup: %llu documents in, %llu out, %llu exact duplicates removed (%.1f%%)%s", in, out, rm,
                 pct(rm, in), o->bloom ? " by the Bloom filter" : "");
    else if (o->mode == LLM_DEDUP_LINES)
        llm_info("dedup: %llu documents in, %llu out; %llu of %llu lines removed (%.1f%%) from %llu documents, "
                 "%llu left empty and dropped", in, out, (unsigned long long)s->lines_removed,
                 (unsigned long long)s->lines_in, pct(s->lines_removed, s->lines_in),
                 (unsigned long long)(s->docs_changed + rm), rm);
    else
        llm_info("dedup: %llu documents in, %llu out, %llu near duplicates removed (%.1f%%) from %llu clusters; "
                 "%llu candidate pairs checked, %llu at Jaccard >= %g", in, out, rm, pct(rm, in),
                 (unsigned long long)s->clusters, (unsigned long long)s->candidates,
                 (unsigned long long)s->joined, o->threshold);
    const char *what = o->mode == LLM_DEDUP_MINHASH ? "signatures and LSH tables"
                       : o->bloom                    ? "Bloom filter"
                       : o->mode == LLM_DEDUP_LINES  ? "line counts"
                                                     : "hash set";
    double mb = (double)s->text_bytes / 1e6;
    llm_info("dedup: %.1f MiB of %s; %.1f MB of text in %.2f s (%.1f MB/s)", (double)s->mem_bytes / (1 << 20),
             what, mb, s->seconds, s->seconds > 0 ? mb / s->seconds : 0.0);
    if (o->bloom)
        llm_info("dedup: the Bloom filter's false-positive rate is now %.2g", s->bloom_fp);
}

int cmd_dedup(int argc, char **argv)
{
    const char *mode = "exact", *output = "-", *report = NULL, *field = NULL;
    long num_perm = 128, ngram = 5, bands = 0, rows = 0, seed = 1, threads = 0, expected = 10000000;
    double threshold = 0.8, fp_rate = 1e-3;
    int bloom = 0, strict = 0;
    const struct llm_opt opts[] = {
        {"mode", 'm', LLM_OPT_STR, &mode, "M", "exact (default), lines or minhash"},
        {"output", 'o', LLM_OPT_STR, &output, "FILE", "kept documents (default: stdout)"},
        {"report", 0, LLM_OPT_STR, &report, "FILE", "JSONL of what was removed: {\"id\", \"duplicate_of\", "
                                                    "\"jaccard\"} (lines: {\"id\", \"lines_removed\", \"emptied\"})"},
        {"threshold", 't', LLM_OPT_F64, &threshold, "J", "minhash: Jaccard similarity of near duplicates (default 0.8)"},
        {"num-perm", 0, LLM_OPT_INT, &num_perm, "K", "minhash: hash functions per signature (default 128)"},
        {"ngram", 0, LLM_OPT_INT, &ngram, "N", "minhash: words per shingle (default 5)"},
        {"bands", 0, LLM_OPT_INT, &bands, "B", "minhash: LSH bands (default: chosen from the threshold)"},
        {"rows", 0, LLM_OPT_INT, &rows, "R", "minhash: rows per band, with --bands"},
        {"seed", 's', LLM_OPT_INT, &seed, "N", "minhash: seed of the hash functions (default 1)"},
        {"bloom", 0, LLM_OPT_FLAG, &bloom, NULL, "exact: one pass through a Bloom filter (for hashes that do not "
                                                 "fit in memory)"},
        {"expected", 0, LLM_OPT_INT, &expected, "N", "--bloom: documents to size the filter for (default 10^7)"},
        {"fp-rate", 0, LLM_OPT_F64, &fp_rate, "P", "--bloom: false-positive rate at --expected (default 0.001)"},
        {"field", 0, LLM_OPT_STR, &field, "NAME", "the text field (default: text)"},
        {"strict", 0, LLM_OPT_FLAG, &strict, NULL, "a bad input line is an error, not a skipped document"},
        {"threads", 'j', LLM_OPT_INT, &threads, "N", "threads (default: all cores)"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "dedup",
        .usage = "[--mode exact|lines|minhash] [options] [FILE...|-]",
        .summary = "Remove duplicate documents (exact, Bloom), repeated lines, or near duplicates (MinHash-LSH).",
        .opts = opts,
        .min_pos = 0,
        .max_pos = -1,
        .epilog = "Reads JSONL documents {\"id\", \"text\", ...} (stdin without FILE, or '-') and writes the kept\n"
                  "ones unchanged, in input order. Text is compared normalized (lowercase, no accents or\n"
                  "punctuation, single spaces). See docs/dedup.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    struct llm_dedup_opts o = {
        .bloom = bloom,
        .threshold = threshold,
        .seed = (uint64_t)seed,
        .report = report,
        .progress = LLM_PROGRESS_AUTO,
        .docs = {.field = field, .strict = strict},
    };
    int rc = 0;
    if (!strcmp(mode, "exact"))
        o.mode = LLM_DEDUP_EXACT;
    else if (!strcmp(mode, "lines"))
        o.mode = LLM_DEDUP_LINES;
    else if (!strcmp(mode, "minhash"))
        o.mode = LLM_DEDUP_MINHASH;
    else
        rc = llm_err(LLM_EUSAGE, "--mode: expected exact, lines or minhash, got '%s'", mode);
    if (!rc && (num_perm < 1 || num_perm > 1 << 20))
        rc = llm_err(LLM_EUSAGE, "--num-perm: expected 1..1024, got %ld", num_perm);
    else if (!rc && (ngram < 1 || ngram > 1 << 20))
        rc = llm_err(LLM_EUSAGE, "--ngram: expected 1..64, got %ld", ngram);
    else if (!rc && (bands < 0 || rows < 0 || bands > 1 << 20 || rows > 1 << 20))
        rc = llm_err(LLM_EUSAGE, "--bands, --rows: expected counts >= 1");
    else if (!rc && (threads < 0 || threads > 4096))
        rc = llm_err(LLM_EUSAGE, "--threads: expected 0..4096, got %ld", threads);
    else if (!rc && expected < 1)
        rc = llm_err(LLM_EUSAGE, "--expected: expected a document count >= 1, got %ld", expected);
    else if (!rc && (threshold == 0 || fp_rate == 0)) /* 0 would mean "the default" below */
        rc = llm_err(LLM_EUSAGE, "%s: 0 is out of range", threshold == 0 ? "--threshold" : "--fp-rate");
    else if (!rc && field && !field[0])
        rc = llm_err(LLM_EUSAGE, "--field: an empty name");
    else if (!rc && report && (!strcmp(report, "-") || !report[0]))
        rc = llm_err(LLM_EUSAGE, "--report: expected a file name (stdout carries the documents)");
    o.num_perm = (int)num_perm, o.ngram = (int)ngram, o.bands = (int)bands, o.rows = (int)rows;
    o.threads = (int)threads, o.expected = (uint64_t)expected, o.fp_rate = fp_rate;
    if (!rc)
        rc = llm_dedup_check(&o);
    struct llm_atomic out;
    int have_out = 0;
    if (!rc && !(rc = llm_atomic_open(&out, output)))
        have_out = 1;
    struct llm_dedup_stats st;
    if (!rc)
        rc = llm_dedup_run(&o, a.pos, a.npos, out.f, strcmp(output, "-") ? output : "<stdout>", &st);
    if (have_out)
        rc = rc ? (llm_atomic_abort(&out), rc) : llm_atomic_commit(&out);
    if (!rc)
        summary(&o, &st);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
