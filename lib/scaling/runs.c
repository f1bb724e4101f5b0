/* runs.c: reading the runs of a scaling fit (CSV, JSON Lines, `llm
 * pretrain` run folders) and grouping them into compute budgets. */
#include "scaling/runs.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "config/config.h"
#include "core/err.h"
#include "core/file.h"
#include "core/jsonl.h"
#include "core/str.h"
#include "model/info.h"

#define MAX_LINE (1u << 20)     /* a CSV or JSONL row */
#define MAX_SUMMARY (1u << 20)  /* summary.json */
#define MAX_COLS 256

int llm_scaling_runs_add(struct llm_scaling_runs *r, double N, double D, double C, double loss, const char *what)
{
    const double v[3] = {N, D, loss};
    static const char *const names[3] = {"N", "D", "loss"};
    for (int i = 0; i < 3; i++)
        if (!isfinite(v[i]) || !(v[i] > 0))
            return llm_err(LLM_EINVAL, "%s: %s is %g; it must be a finite positive number", what, names[i], v[i]);
    if (isnan(C) || C == 0)
        C = 6 * N * D;
    if (!isfinite(C) || !(C > 0))
        return llm_err(LLM_EINVAL, "%s: C is %g; it must be a finite positive number", what, C);
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        struct llm_scaling_run *nv = realloc(r->v, cap * sizeof(*nv));
        if (!nv)
            return llm_err(LLM_ENOMEM, "out of memory reading runs");
        r->v = nv, r->cap = cap;
    }
    r->v[r->n++] = (struct llm_scaling_run){.N = N, .D = D, .C = C, .loss = loss};
    return 0;
}

void llm_scaling_runs_release(struct llm_scaling_runs *r)
{
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* ---- CSV and JSON Lines ---- */

enum col { COL_N, COL_D, COL_LOSS, COL_C, COL_OTHER };

/* The column a header cell names (case-insensitive; the aliases are the keys
 * of summary.json and plain words). */
static enum col column_of(const char *s, size_t n)
{
    static const struct { const char *name; enum col c; } names[] = {
        {"N", COL_N}, {"params", COL_N}, {"D", COL_D}, {"tokens", COL_D}, {"loss", COL_LOSS},
        {"val_loss", COL_LOSS}, {"C", COL_C}, {"flops", COL_C},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i].name) == n && !strncasecmp(s, names[i].name, n))
            return names[i].c;
    return COL_OTHER;
}

/* The next comma-separated cell of *p, trimmed of blanks and one pair of
 * double quotes; *p moves past the comma (NULL after the last cell). */
static void next_cell(const char **p, const char **s, size_t *n)
{
    const char *a = *p, *e = strchr(a, ',');
    const char *b = e ? e : a + strlen(a);
    *p = e ? e + 1 : NULL;
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
        b--;
    if (b - a >= 2 && *a == '"' && b[-1] == '"')
        a++, b--;
    *s = a, *n = (size_t)(b - a);
}

struct csv {
    enum col cols[MAX_COLS];
    int ncols;
};

static int csv_header(struct csv *h, const char *line, const char *file, unsigned long long ln)
{
    int have[4] = {0};
    h->ncols = 0;
    for (const char *p = line; p;) {
        const char *s;
        size_t n;
        next_cell(&p, &s, &n);
        if (h->ncols == MAX_COLS)
            return llm_err(LLM_EFORMAT, "%s:%llu: more than %d columns", file, ln, MAX_COLS);
        enum col c = column_of(s, n);
        if (c != COL_OTHER && have[c]++)
            return llm_err(LLM_EFORMAT, "%s:%llu: column '%.*s' given twice", file, ln, (int)n, s);
        h->cols[h->ncols++] = c;
    }
    static const char *const need[3] = {"N", "D", "loss"};
    for (int i = 0; i < 3; i++)
        if (!have[i])
            return llm_err(LLM_EFORMAT, "%s:%llu: the header has no column '%s' (it needs N, D and loss; "
                           "C is optional)", file, ln, need[i]);
    return 0;
}

static int csv_row(struct llm_scaling_runs *r, const struct csv *h, const char *line, const char *file,
                   unsigned long long ln)
{
    double v[4] = {NAN, NAN, NAN, NAN};
    static const char *const names[4] = {"N", "D", "loss", "C"};
    char what[4200];
    snprintf(what, sizeof(what), "%s:%llu", file, ln);
    int k = 0;
    for (const char *p = line; p; k++) {
        const char *s;
        size_t n;
        next_cell(&p, &s, &n);
        if (k >= h->ncols)
            return llm_err(LLM_EFORMAT, "%s: more cells than the header's %d columns", what, h->ncols);
        enum col c = h->cols[k];
        if (c == COL_OTHER || (c == COL_C && n == 0))
            continue;
        char buf[64], *end;
        if (n == 0 || n >= sizeof(buf))
            return llm_err(LLM_EFORMAT, "%s: %s is %s", what, names[c], n ? "not a number" : "empty");
        memcpy(buf, s, n);
        buf[n] = 0;
        errno = 0;
        v[c] = strtod(buf, &end);
        if (*end || errno == ERANGE)
            return llm_err(LLM_EFORMAT, "%s: %s is not a number ('%s')", what, names[c], buf);
    }
    if (k < h->ncols)
        return llm_err(LLM_EFORMAT, "%s: %d cells, the header has %d columns", what, k, h->ncols);
    return llm_scaling_runs_add(r, v[COL_N], v[COL_D], v[COL_C], v[COL_LOSS], what);
}

/* A number of a JSONL row (NAN when absent and optional). */
static int json_num(const cJSON *o, const char *key, int required, double *out, const char *what)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NAN;
    if (!j || cJSON_IsNull(j)) {
        if (required)
            return llm_err(LLM_EFORMAT, "%s: no \"%s\"", what, key);
        return 0;
    }
    if (!cJSON_IsNumber(j))
        return llm_err(LLM_EFORMAT, "%s: \"%s\" is not a number", what, key);
    *out = j->valuedouble;
    return 0;
}

static int jsonl_row(struct llm_scaling_runs *r, const char *line, size_t len, const char *file,
                     unsigned long long ln)
{
    char what[4200];
    snprintf(what, sizeof(what), "%s:%llu", file, ln);
    size_t bad;
    if (!llm_utf8_valid(line, len, &bad))
        return llm_err(LLM_EFORMAT, "%s: invalid UTF-8 at byte %zu", what, bad + 1);
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return llm_err(LLM_EFORMAT, "%s: not a JSON object", what);
    }
    double N, D, C, loss;
    int rc = json_num(o, "N", 1, &N, what);
    if (!rc)
        rc = json_num(o, "D", 1, &D, what);
    if (!rc)
        rc = json_num(o, "loss", 1, &loss, what);
    if (!rc)
        rc = json_num(o, "C", 0, &C, what);
    cJSON_Delete(o);
    return rc ? rc : llm_scaling_runs_add(r, N, D, C, loss, what);
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r')
            return 0;
    return 1;
}

static int read_table(struct llm_scaling_runs *r, const char *path)
{
    struct llm_jsonl_reader rd;
    int rc = llm_jsonl_open(&rd, path, MAX_LINE);
    if (rc)
        return rc;
    const char *file = rd.path;
    struct csv h = {.ncols = 0};
    int mode = 0; /* 0: before the first line, 1: CSV, 2: JSONL */
    char *line;
    size_t len;
    size_t before = r->n;
    while ((rc = llm_jsonl_next_line(&rd, &line, &len)) == 1) {
        unsigned long long ln = (unsigned long long)rd.line;
        if (is_blank(line))
            continue;
        const char *p = line + strspn(line, " \t");
        if (mode == 0 && *p == '{')
            mode = 2;
        if (mode != 2 && *p == '#')
            continue;
        if (memchr(line, 0, len))
            rc = llm_err(LLM_EFORMAT, "%s:%llu: a NUL byte", file, ln);
        else if (mode == 2)
            rc = jsonl_row(r, line, len, file, ln);
        else if (mode == 1)
            rc = csv_row(r, &h, line, file, ln);
        else if (!(rc = csv_header(&h, line, file, ln)))
            mode = 1;
        if (rc)
            break;
    }
    if (rc == 0 && mode == 0)
        rc = llm_err(LLM_EFORMAT, "%s: empty (no header and no runs)", file);
    llm_jsonl_close(&rd);
    if (rc < 0)
        r->n = before;
    return rc < 0 ? rc : 0;
}

/* ---- run folders ---- */

static int path_join(char *dst, size_t n, const char *dir, const char *name)
{
    int k = snprintf(dst, n, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= n)
        return llm_err(LLM_EINVAL, "path too long: '%s/%s'", dir, name);
    return 0;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Non-embedding parameters of the run's config.json (docs/info.md). */
static int non_embedding(const char *dir, double *N)
{
    char p[4200];
    int rc = path_join(p, sizeof(p), dir, "config.json");
    if (rc)
        return rc;
    struct llm_config c;
    rc = llm_config_load(&c, p, NULL, 0);
    struct llm_model_info info;
    if (!rc)
        rc = llm_model_info_compute(&info, &c.model, 0, 1);
    llm_config_release(&c);
    if (rc)
        return llm_err_wrap(rc, "run '%s'", dir);
    *N = (double)info.non_embedding;
    return 0;
}

static int read_folder(struct llm_scaling_runs *r, const char *dir, enum llm_scaling_count count)
{
    char p[4200], *text = NULL;
    size_t len;
    int rc = path_join(p, sizeof(p), dir, "summary.json");
    if (!rc)
        rc = llm_read_file(p, MAX_SUMMARY, &text, &len);
    if (rc)
        return rc;
    cJSON *s = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(s)) {
        cJSON_Delete(s);
        return llm_err(LLM_EFORMAT, "'%s' is not a JSON object", p);
    }
    double N, D, loss, step, steps;
    if (!(rc = json_num(s, "params", 1, &N, p)) && !(rc = json_num(s, "tokens", 1, &D, p)) &&
        !(rc = json_num(s, "step", 1, &step, p)) && !(rc = json_num(s, "steps", 1, &steps, p)))
        rc = json_num(s, "val_loss", 0, &loss, p);
    const cJSON *intr = cJSON_GetObjectItemCaseSensitive(s, "interrupted");
    if (!rc && (cJSON_IsTrue(intr) || step < steps))
        rc = llm_err(LLM_EINVAL, "run '%s' is not finished (step %.0f of %.0f); run it to the end first", dir, step,
                     steps);
    if (!rc && isnan(loss))
        rc = llm_err(LLM_EINVAL, "run '%s' has no validation loss (train it with data.val set)", dir);
    cJSON_Delete(s);
    if (!rc && count == LLM_SCALING_COUNT_NON_EMBEDDING)
        rc = non_embedding(dir, &N);
    return rc ? rc : llm_scaling_runs_add(r, N, D, NAN, loss, p);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every subfolder of dir that holds a run, in name order. A subfolder with a
 * config.json but no summary.json is a run that has not finished: an error. */
static int read_sweep(struct llm_scaling_runs *r, const char *dir, enum llm_scaling_count count)
{
    DIR *d = opendir(dir);
    if (!d)
        return llm_err(LLM_EIO, "cannot open '%s': %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (!nn) {
                rc = llm_err(LLM_ENOMEM, "out of memory listing '%s'", dir);
                break;
            }
            names = nn;
        }
        if (!(names[n] = llm_strdup(e->d_name)))
            rc = LLM_ENOMEM;
        else
            n++;
    }
    closedir(d);
    if (!rc && n)
        qsort(names, n, sizeof(*names), cmp_str);
    size_t before = r->n;
    for (size_t i = 0; !rc && i < n; i++) {
        char sub[4200], p[4300];
        if ((rc = path_join(sub, sizeof(sub), dir, names[i])))
            break;
        snprintf(p, sizeof(p), "%s/summary.json", sub);
        if (exists(p)) {
            rc = read_folder(r, sub, count);
        } else {
            snprintf(p, sizeof(p), "%s/config.json", sub);
            if (exists(p))
                rc = llm_err(LLM_EINVAL, "run '%s' has no summary.json: it has not finished (see its log.txt)", sub);
        }
    }
    if (!rc && r->n == before)
        rc = llm_err(LLM_EINVAL, "'%s': no runs (no summary.json in it or in its subfolders)", dir);
    if (rc)
        r->n = before;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int llm_scaling_runs_read(struct llm_scaling_runs *r, const char *path, enum llm_scaling_count count)
{
    struct stat st;
    if (strcmp(path, "-") != 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char p[4200];
        int rc = path_join(p, sizeof(p), path, "summary.json");
        if (rc)
            return rc;
        return exists(p) ? read_folder(r, path, count) : read_sweep(r, path, count);
    }
    return read_table(r, path);
}

/* ---- compute budgets ---- */

struct keyed {
    double C;
    size_t i;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    return x->C < y->C ? -1 : x->C > y->C ? 1 : (x->i > y->i) - (x->i < y->i);
}

int llm_scaling_group_budgets(const struct llm_scaling_runs *r, int *group, double *Cg)
{
    if (r->n == 0)
        return 0;
    struct keyed *ord = llm_malloc(r->n * sizeof(*ord), "budget groups");
    if (!ord)
        return LLM_ENOMEM;
    for (size_t i = 0; i < r->n; i++)
        ord[i] = (struct keyed){r->v[i].C, i};
    qsort(ord, r->n, sizeof(*ord), cmp_keyed);
    int k = -1, same = 1;
    double first = 0, logsum = 0;
    size_t cnt = 0;
    for (size_t i = 0; i <= r->n; i++) {
        double c = i < r->n ? ord[i].C : INFINITY;
        if (k < 0 || c > first * LLM_SCALING_BUDGET_TOL) {
            if (k >= 0) /* a group of one C keeps it exactly (no exp(log) rounding) */
                Cg[k] = same ? first : exp(logsum / (double)cnt);
            if (i == r->n)
                break;
            k++, first = c, logsum = 0, cnt = 0, same = 1;
        }
        group[ord[i].i] = k;
        logsum += log(c), cnt++;
        same &= c == first;
    }
    free(ord);
    return k + 1;
}
