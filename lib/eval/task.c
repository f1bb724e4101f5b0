/* task.c: readers of the evaluation layouts and the k-shot prompt builder.
 * The prompt formats follow lm-evaluation-harness's task configs for
 * hellaswag, mmlu (default) and gsm8k, so scores are comparable. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <cjson/cJSON.h>

#include "core/err.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "core/rng.h"
#include "core/str.h"
#include "eval/task.h"

#define MAX_CSV_BYTES (512u << 20)

static const char *const format_names[] = {"plain", "hellaswag", "mmlu", "gsm8k"};

int llm_eval_format_parse(const char *s, enum llm_eval_format *f)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, format_names[i])) {
            *f = (enum llm_eval_format)i;
            return 0;
        }
    return llm_err(LLM_EUSAGE, "--format: expected plain, hellaswag, mmlu or gsm8k, got '%s'", s);
}

const char *llm_eval_format_name(enum llm_eval_format f) { return format_names[f]; }

/* ---- strings ---- */

static char *dup_n(const char *s, size_t n)
{
    char *d = llm_malloc(n + 1, "a string");
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* s without leading and trailing whitespace (Python's str.strip), malloc'd */
static char *strip_dup(const char *s)
{
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n\v\f", s[n - 1]))
        n--;
    while (n && strchr(" \t\r\n\v\f", *s))
        s++, n--;
    return dup_n(s, n);
}

char *llm_eval_capitalize(const char *s)
{
    size_t n = strlen(s);
    /* case mapping can grow a character from 1 to 4 bytes */
    char *d = llm_malloc(4 * n + 1, "a string");
    if (!d)
        return NULL;
    size_t o = 0;
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    for (size_t i = 0, first = 1; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0) { /* not UTF-8: copy the byte */
            d[o++] = s[i++];
            first = 0;
            continue;
        }
        c = first ? utf8proc_toupper(c) : utf8proc_tolower(c);
        o += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)d + o);
        i += (size_t)k, first = 0;
    }
    d[o] = 0;
    return d;
}

char *llm_eval_hellaswag_clean(const char *s)
{
    char *t = strip_dup(s);
    if (!t)
        return NULL;
    size_t n = strlen(t);
    char *a = llm_malloc(2 * n + 1, "a string"); /* " [title]" (8) -> ". " (2): never grows; 2n is slack */
    if (!a) {
        free(t);
        return NULL;
    }
    /* 1. " [title]" -> ". " */
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (!strncmp(t + i, " [title]", 8)) {
            a[o++] = '.', a[o++] = ' ', i += 8;
        } else {
            a[o++] = t[i++];
        }
    }
    a[o] = 0;
    /* 2. re.sub("\\[.*?\\]", "", ...): '[' to the nearest ']' on the same line */
    size_t w = 0;
    for (size_t i = 0; i < o;) {
        if (a[i] == '[') {
            size_t j = i + 1;
            while (j < o && a[j] != ']' && a[j] != '\n')
                j++;
            if (j < o && a[j] == ']') {
                i = j + 1;
                continue;
            }
        }
        a[w++] = a[i++];
    }
    /* 3. replace("  ", " "): non-overlapping pairs, left to right */
    size_t z = 0;
    for (size_t i = 0; i < w;) {
        if (a[i] == ' ' && i + 1 < w && a[i + 1] == ' ') {
            a[z++] = ' ', i += 2;
        } else {
            a[z++] = a[i++];
        }
    }
    a[z] = 0;
    free(t);
    return a;
}

/* ---- documents ---- */

static void doc_release(struct llm_eval_doc *d)
{
    free(d->context), free(d->target), free(d->answer), free(d->description), free(d->subject);
    for (int i = 0; i < d->n_choices; i++)
        free(d->choices[i]);
    free(d->choices);
    memset(d, 0, sizeof(*d));
}

void llm_eval_docs_release(struct llm_eval_docs *d)
{
    for (int i = 0; i < d->n; i++)
        doc_release(&d->v[i]);
    free(d->v);
    memset(d, 0, sizeof(*d));
}

static struct llm_eval_doc *docs_add(struct llm_eval_docs *d)
{
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 64;
        struct llm_eval_doc *v = realloc(d->v, (size_t)cap * sizeof(*v));
        if (!v) {
            llm_err(LLM_ENOMEM, "out of memory reading documents");
            return NULL;
        }
        d->v = v, d->cap = cap;
    }
    memset(&d->v[d->n], 0, sizeof(d->v[0]));
    return &d->v[d->n++];
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* An integer label: a JSON number, or a string of digits ("3", as HF's HellaSwag has it). */
static int get_label(const cJSON *o, const char *key, long *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(j) && j->valuedouble == (double)(long)j->valuedouble) {
        *out = (long)j->valuedouble;
        return 1;
    }
    if (cJSON_IsString(j) && j->valuestring[0]) {
        char *end;
        long v = strtol(j->valuestring, &end, 10);
        if (!*end) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

static int set_choices(struct llm_eval_doc *d, const cJSON *arr, int clean)
{
    int n = cJSON_GetArraySize(arr);
    if (!(d->choices = llm_calloc((size_t)(n ? n : 1), sizeof(char *), "choices")))
        return LLM_ENOMEM;
    const cJSON *c;
    cJSON_ArrayForEach(c, arr) {
        if (!cJSON_IsString(c))
            return LLM_EFORMAT;
        char *s = clean ? llm_eval_hellaswag_clean(c->valuestring) : llm_strdup(c->valuestring);
        if (!s)
            return LLM_ENOMEM;
        d->choices[d->n_choices++] = s;
    }
    return 0;
}

static const char *const LETTERS[] = {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J"};

/* MMLU's prompt (lm-evaluation-harness's mmlu default template). */
static int mmlu_doc(struct llm_eval_doc *d, const char *question, const char *const *opts, int n_opts,
                    int label, const char *subject)
{
    struct llm_bytes b = {0};
    char *q = strip_dup(question);
    int rc = q ? llm_bytes_append(&b, q, strlen(q)) : LLM_ENOMEM;
    free(q);
    for (int i = 0; !rc && i < n_opts; i++) {
        char head[8];
        snprintf(head, sizeof(head), "\n%s. ", LETTERS[i]);
        if (!(rc = llm_bytes_append(&b, head, strlen(head))))
            rc = llm_bytes_append(&b, opts[i], strlen(opts[i]));
    }
    if (!rc)
        rc = llm_bytes_append(&b, "\nAnswer:", 9); /* with the NUL */
    if (rc) {
        llm_bytes_release(&b);
        return rc;
    }
    d->context = b.v;
    d->label = label;
    if (!(d->choices = llm_calloc((size_t)(n_opts ? n_opts : 1), sizeof(char *), "choices")))
        return LLM_ENOMEM;
    for (int i = 0; i < n_opts; i++)
        if (!(d->choices[d->n_choices++] = llm_strdup(LETTERS[i])))
            return LLM_ENOMEM;
    if (subject) {
        /* "high_school_physics" -> "high school physics" */
        if (!(d->subject = llm_strdup(subject)))
            return LLM_ENOMEM;
        size_t n = strlen(subject) + 96;
        if (!(d->description = llm_malloc(n, "a string")))
            return LLM_ENOMEM;
        snprintf(d->description, n, "The following are multiple choice questions (with answers) about %s.\n\n",
                 subject);
        for (char *p = d->description; *p; p++)
            if (*p == '_')
                *p = ' ';
    }
    return 0;
}

/* One JSONL object into a document; a problem is LLM_EFORMAT with the message set (without the place). */
static int json_doc(struct llm_eval_doc *d, const cJSON *o, enum llm_eval_format f, enum llm_eval_kind kind)
{
    long label;
    int rc = 0;
    if (kind == LLM_EVAL_CHOICE && f == LLM_EVAL_FMT_PLAIN) {
        const char *ctx = get_str(o, "context");
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
        if (!ctx || !cJSON_IsArray(ch) || !get_label(o, "label", &label))
            return llm_err(LLM_EFORMAT, "expected {\"context\": string, \"choices\": [strings], \"label\": index}");
        if (!(d->context = llm_strdup(ctx)))
            return LLM_ENOMEM;
        if ((rc = set_choices(d, ch, 0)))
            return rc == LLM_EFORMAT ? llm_err(rc, "\"choices\" must hold strings") : rc;
        d->label = (int)label;
    } else if (kind == LLM_EVAL_CHOICE && f == LLM_EVAL_FMT_HELLASWAG) {
        const char *a = get_str(o, "ctx_a"), *b = get_str(o, "ctx_b"), *act = get_str(o, "activity_label");
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "endings");
        if (!a || !b || !act || !cJSON_IsArray(en) || !get_label(o, "label", &label))
            return llm_err(LLM_EFORMAT, "expected HellaSwag's fields ctx_a, ctx_b, activity_label, endings, label");
        /* query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()) */
        char *cap = llm_eval_capitalize(b);
        size_t n = strlen(act) + strlen(a) + (cap ? strlen(cap) : 0) + 4;
        char *q = cap ? llm_malloc(n, "a string") : NULL;
        if (q)
            snprintf(q, n, "%s: %s %s", act, a, cap);
        d->context = q ? llm_eval_hellaswag_clean(q) : NULL;
        free(cap), free(q);
        if (!d->context)
            return LLM_ENOMEM;
        if ((rc = set_choices(d, en, 1)))
            return rc == LLM_EFORMAT ? llm_err(rc, "\"endings\" must hold strings") : rc;
        d->label = (int)label;
    } else if (kind == LLM_EVAL_CHOICE && f == LLM_EVAL_FMT_MMLU) {
        const char *q = get_str(o, "question"), *subject = get_str(o, "subject");
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
        const char *ans = get_str(o, "answer");
        int n = cJSON_GetArraySize(ch);
        if (ans && strlen(ans) == 1 && ans[0] >= 'A' && ans[0] <= 'J')
            label = ans[0] - 'A';
        else if (!get_label(o, "answer", &label))
            label = -1;
        if (!q || !cJSON_IsArray(ch) || n > 10 || label < 0)
            return llm_err(LLM_EFORMAT, "expected MMLU's fields question, choices (at most 10), answer (index or "
                           "letter)");
        const char *opts[10];
        for (int i = 0; i < n; i++) {
            const cJSON *c = cJSON_GetArrayItem(ch, i);
            if (!cJSON_IsString(c))
                return llm_err(LLM_EFORMAT, "\"choices\" must hold strings");
            opts[i] = c->valuestring;
        }
        if ((rc = mmlu_doc(d, q, opts, n, (int)label, subject)))
            return rc;
    } else if (kind == LLM_EVAL_EXACT && f == LLM_EVAL_FMT_PLAIN) {
        const char *p = get_str(o, "prompt"), *a = get_str(o, "answer");
        const cJSON *aj = cJSON_GetObjectItemCaseSensitive(o, "answer");
        char num[64];
        if (!a && cJSON_IsNumber(aj)) { /* {"answer": 42} */
            snprintf(num, sizeof(num), "%.17g", aj->valuedouble);
            a = num;
        }
        if (!p || !a)
            return llm_err(LLM_EFORMAT, "expected {\"prompt\": string, \"answer\": string or number}");
        if (!(d->context = llm_strdup(p)) || !(d->target = llm_strdup(a)) || !(d->answer = llm_strdup(a)))
            return LLM_ENOMEM;
    } else if (kind == LLM_EVAL_EXACT && f == LLM_EVAL_FMT_GSM8K) {
        const char *q = get_str(o, "question"), *a = get_str(o, "answer");
        const char *hash = a ? strstr(a, "####") : NULL;
        if (!q || !a || !hash)
            return llm_err(LLM_EFORMAT, "expected GSM8K's {\"question\", \"answer\": \"... #### N\"}");
        while (strstr(hash + 4, "####")) /* answer.split("####")[-1] */
            hash = strstr(hash + 4, "####");
        size_t n = strlen(q) + 32;
        if (!(d->context = llm_malloc(n, "a string")))
            return LLM_ENOMEM;
        snprintf(d->context, n, "Question: %s\nAnswer:", q);
        if (!(d->target = llm_strdup(a)) || !(d->answer = strip_dup(hash + 4)))
            return LLM_ENOMEM;
    } else {
        return llm_err(LLM_EUSAGE, "--format %s is not a layout of %s tasks", llm_eval_format_name(f),
                       kind == LLM_EVAL_CHOICE ? "choice" : "exact");
    }
    if (kind == LLM_EVAL_CHOICE) {
        if (d->n_choices < 2)
            return llm_err(LLM_EFORMAT, "fewer than 2 choices");
        if (d->label < 0 || d->label >= d->n_choices)
            return llm_err(LLM_EFORMAT, "label %d outside 0..%d", d->label, d->n_choices - 1);
    }
    return 0;
}

static int read_jsonl(struct llm_eval_docs *d, const char *path, enum llm_eval_format f,
                      enum llm_eval_kind kind, int limit)
{
    struct llm_jsonl_reader r;
    int rc = llm_jsonl_open(&r, path, 0);
    if (rc)
        return rc;
    cJSON *o;
    while ((limit <= 0 || d->n < limit) && (rc = llm_jsonl_next(&r, &o)) == 1) {
        struct llm_eval_doc *doc = docs_add(d);
        rc = doc ? json_doc(doc, o, f, kind) : LLM_ENOMEM;
        cJSON_Delete(o);
        if (rc == LLM_EFORMAT)
            rc = llm_err_wrap(rc, "%s:%llu", path, (unsigned long long)r.line);
        if (rc)
            break;
    }
    llm_jsonl_close(&r);
    return rc < 0 ? rc : 0;
}

/* ---- CSV (MMLU) ---- */

int llm_eval_csv(const char *text, size_t len, const char *name,
                 int (*fn)(void *ctx, char **fields, int n, int line), void *ctx)
{
    size_t cap = 16;
    int nf = 0, line = 1, row_line = 1, rc = 0;
    char **fields = llm_calloc(cap, sizeof(char *), "CSV fields");
    char *buf = llm_malloc(len + 1, "a CSV row");
    if (!fields || !buf) {
        free(fields), free(buf);
        return LLM_ENOMEM;
    }
    size_t o = 0, field_start = 0, i = 0;
    int in_row = 0;
    while (!rc && i <= len) {
        int end_file = i == len;
        char c = end_file ? '\n' : text[i];
        if (!end_file && c == '"' && o == field_start) { /* a quoted field */
            size_t j = i + 1;
            for (;;) {
                if (j >= len) {
                    rc = llm_err(LLM_EFORMAT, "%s:%d: a quoted field is never closed", name, row_line);
                    break;
                }
                if (text[j] == '"') {
                    if (j + 1 < len && text[j + 1] == '"') {
                        buf[o++] = '"', j += 2;
                        continue;
                    }
                    j++;
                    break;
                }
                if (text[j] == '\n')
                    line++;
                buf[o++] = text[j++];
            }
            i = j, in_row = 1;
            continue;
        }
        if (c == ',' || c == '\n') {
            if ((size_t)nf == cap) {
                char **f2 = realloc(fields, 2 * cap * sizeof(char *));
                if (!f2) {
                    rc = llm_err(LLM_ENOMEM, "out of memory reading %s", name);
                    break;
                }
                fields = f2, cap *= 2;
            }
            buf[o++] = 0;
            fields[nf++] = buf + field_start;
            field_start = o;
            if (c == '\n') {
                if (in_row || nf > 1 || fields[0][0])
                    rc = fn(ctx, fields, nf, row_line);
                nf = 0, o = field_start = 0, in_row = 0;
                row_line = ++line;
            }
            i++;
            continue;
        }
        if (c != '\r')
            buf[o++] = c, in_row = 1;
        i++;
    }
    free(fields), free(buf);
    return rc;
}

struct mmlu_ctx {
    struct llm_eval_docs *d;
    const char *name, *subject;
    int limit;
};

static int mmlu_row(void *ctx, char **f, int n, int line)
{
    struct mmlu_ctx *m = ctx;
    if (m->limit > 0 && m->d->n >= m->limit)
        return 0;
    const char *ans = n >= 6 ? f[n - 1] : "";
    while (*ans == ' ')
        ans++;
    int n_opts = n - 2;
    if (n < 4 || n_opts > 10 || strlen(ans) != 1 || ans[0] < 'A' || ans[0] - 'A' >= n_opts)
        return llm_err(LLM_EFORMAT, "%s:%d: expected MMLU's question,A,B,C,D,answer-letter", m->name, line);
    for (int i = 0; i < n; i++)
        if (!llm_utf8_valid(f[i], strlen(f[i]), &(size_t){0}))
            return llm_err(LLM_EFORMAT, "%s:%d: invalid UTF-8", m->name, line);
    struct llm_eval_doc *doc = docs_add(m->d);
    return doc ? mmlu_doc(doc, f[0], (const char *const *)f + 1, n_opts, ans[0] - 'A', m->subject) : LLM_ENOMEM;
}

/* "abstract_algebra_test.csv" -> "abstract_algebra" (malloc'd) */
static char *mmlu_subject(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *s = llm_strdup(base);
    if (!s)
        return NULL;
    char *dot = strrchr(s, '.');
    if (dot)
        *dot = 0;
    static const char *const splits[] = {"_test", "_dev", "_val", "_validation", "_train", "_auxiliary_train"};
    for (size_t i = 0; i < sizeof(splits) / sizeof(*splits); i++) {
        size_t n = strlen(s), k = strlen(splits[i]);
        if (n > k && !strcmp(s + n - k, splits[i])) {
            s[n - k] = 0;
            break;
        }
    }
    return s;
}

static int read_mmlu_csv(struct llm_eval_docs *d, const char *path, int limit)
{
    char *text;
    size_t n;
    int rc = llm_read_file(path, MAX_CSV_BYTES, &text, &n);
    if (rc)
        return rc;
    struct mmlu_ctx m = {d, path, mmlu_subject(path), limit};
    rc = m.subject ? llm_eval_csv(text, n, path, mmlu_row, &m) : LLM_ENOMEM;
    free((char *)m.subject), free(text);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_mmlu_dir(struct llm_eval_docs *d, const char *path, int limit)
{
    DIR *dir = opendir(path);
    if (!dir)
        return llm_err(LLM_EIO, "%s: cannot open the folder", path);
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".csv"))
            continue;
        if (n == cap) {
            char **v = realloc(names, (size_t)(cap = cap ? 2 * cap : 64) * sizeof(char *));
            if (!v) {
                rc = llm_err(LLM_ENOMEM, "out of memory listing %s", path);
                break;
            }
            names = v;
        }
        size_t pl = strlen(path) + len + 2;
        if (!(names[n] = llm_malloc(pl, "a path")))
            rc = LLM_ENOMEM;
        else
            snprintf(names[n++], pl, "%s/%s", path, e->d_name);
    }
    closedir(dir);
    if (!rc && n == 0)
        rc = llm_err(LLM_EINVAL, "%s: no .csv files (MMLU's <subject>_<split>.csv)", path);
    if (!rc)
        qsort(names, (size_t)n, sizeof(char *), cmp_str);
    for (int i = 0; !rc && i < n && (limit <= 0 || d->n < limit); i++)
        rc = read_mmlu_csv(d, names[i], limit);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int llm_eval_docs_read(struct llm_eval_docs *d, const char *path, enum llm_eval_format f,
                       enum llm_eval_kind kind, int limit)
{
    memset(d, 0, sizeof(*d));
    int rc;
    struct stat st;
    size_t n = strlen(path);
    if (f == LLM_EVAL_FMT_MMLU && kind == LLM_EVAL_CHOICE && !stat(path, &st) && S_ISDIR(st.st_mode))
        rc = read_mmlu_dir(d, path, limit);
    else if (f == LLM_EVAL_FMT_MMLU && kind == LLM_EVAL_CHOICE && n > 4 && !strcmp(path + n - 4, ".csv"))
        rc = read_mmlu_csv(d, path, limit);
    else
        rc = read_jsonl(d, path, f, kind, limit);
    if (!rc && d->n == 0)
        rc = llm_err(LLM_EINVAL, "%s: no documents", path);
    if (rc)
        llm_eval_docs_release(d);
    return rc;
}

/* ---- prompts ---- */

static int append_str(struct llm_bytes *b, const char *s) { return llm_bytes_append(b, s, strlen(s)); }

int llm_eval_prompt(const struct llm_eval_docs *dev, const struct llm_eval_doc *doc, enum llm_eval_kind kind,
                    int k, uint64_t seed, int64_t doc_index, struct llm_bytes *out)
{
    int rc = doc->description ? append_str(out, doc->description) : 0;
    if (!rc && k > 0 && dev && dev->n > 0) {
        /* candidates: same subject (when there is one), not the document itself */
        int *cand = llm_malloc((size_t)dev->n * sizeof(int), "few-shot candidates"), nc = 0;
        if (!cand)
            return LLM_ENOMEM;
        for (int i = 0; i < dev->n; i++) {
            const struct llm_eval_doc *e = &dev->v[i];
            if (doc->subject && e->subject && strcmp(doc->subject, e->subject))
                continue;
            if (!strcmp(e->context, doc->context))
                continue;
            cand[nc++] = i;
        }
        struct llm_rng r;
        llm_rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)doc_index);
        int take = k < nc ? k : nc;
        for (int j = 0; !rc && j < take; j++) {
            /* partial Fisher-Yates: cand[j] becomes a uniform pick of the rest */
            int pick = j + (int)llm_rng_below(&r, (uint64_t)(nc - j)), t = cand[j];
            cand[j] = cand[pick], cand[pick] = t;
            const struct llm_eval_doc *e = &dev->v[cand[j]];
            const char *ans = kind == LLM_EVAL_CHOICE ? e->choices[e->label] : e->target;
            if (!(rc = append_str(out, e->context)) && !(rc = append_str(out, " ")) && !(rc = append_str(out, ans)))
                rc = append_str(out, "\n\n");
        }
        free(cand);
    }
    if (!rc)
        rc = append_str(out, doc->context);
    return rc;
}
