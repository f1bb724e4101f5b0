/* config.c: everything the key table of schema.c drives: defaults, JSON
 * loading with one-line errors that name the JSON path, --set overrides,
 * validation, the effective config as JSON, and docs/config.md. */
#include "config.h"
#include "err.h"
#include "file.h"
#include "str.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 128 /* bound of the hint tables below; schema.c has ~60 */

static void *field(struct llm_config *c, const struct llm_config_key *k)
{
    return (char *)c + k->offset;
}

static const void *cfield(const struct llm_config *c, const struct llm_config_key *k)
{
    return (const char *)c + k->offset;
}

/* "model" for "model.d_model": whether k lies in section sec. */
static int in_section(const struct llm_config_key *k, const char *sec)
{
    size_t n = strlen(sec);
    return strncmp(k->path, sec, n) == 0 && k->path[n] == '.';
}

static const char *leaf(const struct llm_config_key *k)
{
    return strchr(k->path, '.') + 1;
}

/* A user-supplied name made safe for a one-line message: control bytes
 * become '?', and long names are cut. */
static const char *clean(const char *s, char *buf, size_t n)
{
    size_t i = 0, len = s ? strlen(s) : 0;
    for (; i < len && i + 1 < n; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = '\0';
    if (i < len && n > 4)
        strcpy(buf + n - 4, "...");
    return buf;
}

/* Shortest %g that reads back as the same double, so printed configs
 * round-trip exactly. */
static void fmt_num(double d, char *buf, size_t n)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

/* ---- describing keys: error messages and docs share these words ---- */

static int num_in_range(const struct llm_config_key *k, double d)
{
    return (k->lo_open ? d > k->lo : d >= k->lo) && (k->hi_open ? d < k->hi : d <= k->hi);
}

/* The range of a NUM/NUMS key: "> 0", "[0, 1)", or "" when unbounded. */
static void num_range(const struct llm_config_key *k, char *buf, size_t n)
{
    char lo[32], hi[32];
    fmt_num(k->lo, lo, sizeof(lo));
    fmt_num(k->hi, hi, sizeof(hi));
    if (isinf(k->lo) && isinf(k->hi))
        buf[0] = '\0';
    else if (isinf(k->hi))
        snprintf(buf, n, "%s %s", k->lo_open ? ">" : ">=", lo);
    else if (isinf(k->lo))
        snprintf(buf, n, "%s %s", k->hi_open ? "<" : "<=", hi);
    else
        snprintf(buf, n, "%c%s, %s%c", k->lo_open ? '(' : '[', lo, hi, k->hi_open ? ')' : ']');
}

/* The range of an INT/I64 key: ">= 1", or "[1, 2147483647]" when the upper
 * bound is not the type's own or matters (full: the value exceeded it). */
static void int_range(const struct llm_config_key *k, char *buf, size_t n, int full)
{
    int64_t type_max = k->type == LLM_CONFIG_INT ? INT_MAX : INT64_C(9007199254740991);
    if (k->ihi == type_max && !full)
        snprintf(buf, n, ">= %" PRId64, k->ilo);
    else
        snprintf(buf, n, "[%" PRId64 ", %" PRId64 "]", k->ilo, k->ihi);
}

static void join_choices(const struct llm_config_key *k, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; k->choices[i] && used < n; i++)
        used += snprintf(buf + used, n - used, "%s%s", i ? ", " : "", k->choices[i]);
}

/* What a value of k must be: "an integer >= 1", "one of relu, gelu". */
static void describe(const struct llm_config_key *k, char *buf, size_t n, int full)
{
    char r[96];
    const char *in;
    switch (k->type) {
    case LLM_CONFIG_INT:
    case LLM_CONFIG_I64:
        int_range(k, r, sizeof(r), full);
        snprintf(buf, n, "an integer %s%s", r[0] == '[' ? "in " : "", r);
        break;
    case LLM_CONFIG_NUM:
    case LLM_CONFIG_NUMS:
        num_range(k, r, sizeof(r));
        in = r[0] == '[' || r[0] == '(' ? " in " : r[0] ? " " : "";
        if (k->type == LLM_CONFIG_NUM)
            snprintf(buf, n, "a number%s%s", in, r);
        else
            snprintf(buf, n, "an array of %d numbers%s%s", k->len, in, r);
        break;
    case LLM_CONFIG_BOOL:
        snprintf(buf, n, "true or false");
        break;
    case LLM_CONFIG_STR:
        if (k->ilo == 0)
            snprintf(buf, n, "a string");
        else if (k->ilo == 1)
            snprintf(buf, n, "a non-empty string");
        else
            snprintf(buf, n, "a string of at least %" PRId64 " bytes", k->ilo);
        break;
    case LLM_CONFIG_ENUM:
        join_choices(k, r, sizeof(r));
        snprintf(buf, n, "one of %s", r);
        break;
    }
}

/* A JSON value as it appears in "got X": numbers exactly, the rest as
 * compact JSON (strings quoted and escaped, so one line), cut when long. */
static void render(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsNumber(v)) {
        fmt_num(v->valuedouble, buf, n);
        return;
    }
    char *s = cJSON_PrintUnformatted(v);
    if (!s) {
        snprintf(buf, n, "a value");
        return;
    }
    clean(s, buf, n);
    free(s);
}

/* ---- checking and storing one value ---- */

static int choice_index(const struct llm_config_key *k, const char *s)
{
    for (int i = 0; k->choices[i]; i++)
        if (strcmp(k->choices[i], s) == 0)
            return i;
    return -1;
}

/* 0 if v is a valid value of k, else LLM_EINVAL with "expected ..., got ..."
 * (the caller prefixes the path). */
static int check_value(const struct llm_config_key *k, const cJSON *v)
{
    int full = 0;
    double d;
    switch (k->type) {
    case LLM_CONFIG_INT:
    case LLM_CONFIG_I64:
        if (!cJSON_IsNumber(v))
            goto bad;
        d = v->valuedouble; /* cJSON's valueint saturates: never use it */
        if (isfinite(d) && d == trunc(d) && d >= (double)k->ilo && d <= (double)k->ihi)
            return 0;
        full = d > (double)k->ihi;
        goto bad;
    case LLM_CONFIG_NUM:
        if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && num_in_range(k, v->valuedouble))
            return 0;
        goto bad;
    case LLM_CONFIG_BOOL:
        if (cJSON_IsBool(v))
            return 0;
        goto bad;
    case LLM_CONFIG_STR:
        if (cJSON_IsString(v) && strlen(v->valuestring) >= (size_t)k->ilo)
            return 0;
        goto bad;
    case LLM_CONFIG_ENUM:
        if (cJSON_IsString(v) && choice_index(k, v->valuestring) >= 0)
            return 0;
        goto bad;
    case LLM_CONFIG_NUMS:
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != k->len)
            goto bad;
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || !num_in_range(k, e->valuedouble))
                goto bad;
        return 0;
    }
bad:;
    char want[160], got[64];
    describe(k, want, sizeof(want), full);
    render(v, got, sizeof(got));
    return llm_err(LLM_EINVAL, "expected %s, got %s", want, got);
}

/* Stores a value that passed check_value. 0 or LLM_ENOMEM. */
static int store_value(struct llm_config *c, const struct llm_config_key *k, const cJSON *v)
{
    void *p = field(c, k);
    int i = 0;
    switch (k->type) {
    case LLM_CONFIG_INT:
        *(int *)p = (int)v->valuedouble;
        break;
    case LLM_CONFIG_I64:
        *(int64_t *)p = (int64_t)v->valuedouble;
        break;
    case LLM_CONFIG_NUM:
        *(double *)p = v->valuedouble;
        break;
    case LLM_CONFIG_BOOL:
        *(bool *)p = cJSON_IsTrue(v);
        break;
    case LLM_CONFIG_STR: {
        char *s = llm_strdup(v->valuestring);
        if (!s)
            return LLM_ENOMEM;
        free(*(char **)p);
        *(char **)p = s;
        break;
    }
    case LLM_CONFIG_ENUM:
        *(int *)p = choice_index(k, v->valuestring);
        break;
    case LLM_CONFIG_NUMS:
        for (const cJSON *e = v->child; e; e = e->next)
            ((double *)p)[i++] = e->valuedouble;
        break;
    }
    return 0;
}

static int set_value(struct llm_config *c, const struct llm_config_key *k, const cJSON *v)
{
    int rc = check_value(k, v);
    return rc ? rc : store_value(c, k, v);
}

/* The value of k in c as a new cJSON item (NULL on allocation failure).
 * Values out of their type (a NULL string, an unknown enum) come out as what
 * they are, so check_value reports them. */
static cJSON *key_to_json(const struct llm_config *c, const struct llm_config_key *k)
{
    const void *p = cfield(c, k);
    switch (k->type) {
    case LLM_CONFIG_INT:
        return cJSON_CreateNumber(*(const int *)p);
    case LLM_CONFIG_I64:
        return cJSON_CreateNumber((double)*(const int64_t *)p);
    case LLM_CONFIG_NUM:
        return cJSON_CreateNumber(*(const double *)p);
    case LLM_CONFIG_BOOL:
        return cJSON_CreateBool(*(const bool *)p);
    case LLM_CONFIG_STR:
        return *(char *const *)p ? cJSON_CreateString(*(char *const *)p) : cJSON_CreateNull();
    case LLM_CONFIG_ENUM: {
        const char *name = llm_config_choice_name(k->path, *(const int *)p);
        return name ? cJSON_CreateString(name) : cJSON_CreateNumber(*(const int *)p);
    }
    case LLM_CONFIG_NUMS:
        return cJSON_CreateDoubleArray((const double *)p, k->len);
    }
    return NULL;
}

/* ---- lifecycle ---- */

void llm_config_release(struct llm_config *c)
{
    size_t n;
    const struct llm_config_key *keys = llm_config_keys(&n);
    for (size_t i = 0; i < n; i++)
        if (keys[i].type == LLM_CONFIG_STR) {
            char **s = field(c, &keys[i]);
            free(*s);
            *s = NULL;
        }
}

int llm_config_defaults(struct llm_config *c)
{
    size_t n;
    const struct llm_config_key *keys = llm_config_keys(&n);
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        const struct llm_config_key *k = &keys[i];
        void *p = field(c, k);
        switch (k->type) {
        case LLM_CONFIG_INT:
        case LLM_CONFIG_ENUM:
            *(int *)p = (int)k->idef;
            break;
        case LLM_CONFIG_I64:
            *(int64_t *)p = k->idef;
            break;
        case LLM_CONFIG_NUM:
            *(double *)p = k->ndef[0];
            break;
        case LLM_CONFIG_BOOL:
            *(bool *)p = k->idef != 0;
            break;
        case LLM_CONFIG_STR:
            if (!(*(char **)p = llm_strdup(k->sdef)))
                return LLM_ENOMEM;
            break;
        case LLM_CONFIG_NUMS:
            memcpy(p, k->ndef, (size_t)k->len * sizeof(double));
            break;
        }
    }
    return 0;
}

int llm_config_copy(struct llm_config *dst, const struct llm_config *src)
{
    size_t n;
    const struct llm_config_key *keys = llm_config_keys(&n);
    int rc = 0;
    memcpy(dst, src, sizeof(*dst));
    for (size_t i = 0; i < n; i++) {
        if (keys[i].type != LLM_CONFIG_STR)
            continue;
        char **s = field(dst, &keys[i]);
        /* after a failure the rest must not point into src */
        if (!rc && *s && !(*s = llm_strdup(*s)))
            rc = LLM_ENOMEM;
        else if (rc)
            *s = NULL;
    }
    if (rc)
        llm_config_release(dst);
    return rc;
}

/* ---- loading ---- */

/* " (did you mean 'x'?)" for an unknown name, or a pointer to the docs.
 * sec: the section the name was found in (its keys are suggested by their
 * leaf name), "" at the top level (sections), NULL for a full path (--set). */
static void hint(const char *sec, const char *name, char *buf, size_t n)
{
    size_t nk, ns, nc = 0;
    const struct llm_config_key *keys = llm_config_keys(&nk);
    const struct llm_config_section *secs = llm_config_sections(&ns);
    const char *cands[MAX_KEYS];
    LLM_ASSERT(nk <= MAX_KEYS && ns <= MAX_KEYS);
    if (sec && !sec[0])
        for (size_t i = 0; i < ns; i++)
            cands[nc++] = secs[i].name;
    else
        for (size_t i = 0; i < nk; i++)
            if (!sec || in_section(&keys[i], sec))
                cands[nc++] = sec ? leaf(&keys[i]) : keys[i].path;
    const char *best = llm_str_closest(name, cands, nc);
    if (!best) {
        /* the right key in the wrong place: {"train": {"lr": ...}} */
        const char *dot = strrchr(name, '.');
        const char *tail = sec ? name : dot ? dot + 1 : name;
        for (size_t i = 0; i < nk && !best; i++)
            if (strcmp(leaf(&keys[i]), tail) == 0)
                best = keys[i].path;
    }
    if (best)
        snprintf(buf, n, " (did you mean '%s'?)", best);
    else
        snprintf(buf, n, " (the keys are listed in docs/config.md)");
}

static const struct llm_config_section *find_section(const char *name)
{
    size_t ns;
    const struct llm_config_section *secs = llm_config_sections(&ns);
    for (size_t i = 0; i < ns; i++)
        if (strcmp(secs[i].name, name) == 0)
            return &secs[i];
    return NULL;
}

static const struct llm_config_key *find_in_section(const char *sec, const char *name)
{
    size_t nk;
    const struct llm_config_key *keys = llm_config_keys(&nk);
    for (size_t i = 0; i < nk; i++)
        if (in_section(&keys[i], sec) && strcmp(leaf(&keys[i]), name) == 0)
            return &keys[i];
    return NULL;
}

/* cJSON keeps every member of an object, duplicates included: one found
 * before item with the same name means the file says two things. */
static int duplicate(const cJSON *obj, const cJSON *item)
{
    for (const cJSON *p = obj->child; p && p != item; p = p->next)
        if (p->string && strcmp(p->string, item->string) == 0)
            return 1;
    return 0;
}

/* Applies the members of root to c. Unknown names are refused before
 * duplicates are looked for, so the duplicate scan sees at most one member
 * per known key: a huge object cannot make it quadratic. */
static int apply_root(struct llm_config *c, const cJSON *root)
{
    char got[64], name[80], key[80], h[96];
    if (!cJSON_IsObject(root)) {
        render(root, got, sizeof(got));
        return llm_err(LLM_EINVAL, "expected an object at the top level, got %s", got);
    }
    for (const cJSON *s = root->child; s; s = s->next) {
        clean(s->string, name, sizeof(name));
        const struct llm_config_section *sec = find_section(s->string ? s->string : "");
        if (!sec) {
            hint("", s->string ? s->string : "", h, sizeof(h));
            return llm_err(LLM_EINVAL, "%s: unknown key%s", name, h);
        }
        if (duplicate(root, s))
            return llm_err(LLM_EINVAL, "%s: duplicate key", name);
        if (!cJSON_IsObject(s)) {
            render(s, got, sizeof(got));
            return llm_err(LLM_EINVAL, "%s: expected an object, got %s", name, got);
        }
        for (const cJSON *v = s->child; v; v = v->next) {
            clean(v->string, key, sizeof(key));
            const struct llm_config_key *k = find_in_section(sec->name, v->string ? v->string : "");
            if (!k) {
                hint(sec->name, v->string ? v->string : "", h, sizeof(h));
                return llm_err(LLM_EINVAL, "%s.%s: unknown key%s", name, key, h);
            }
            if (duplicate(s, v))
                return llm_err(LLM_EINVAL, "%s: duplicate key", k->path);
            int rc = set_value(c, k, v);
            if (rc)
                return rc == LLM_ENOMEM ? rc : llm_err_wrap(rc, "%s", k->path);
        }
    }
    return 0;
}

int llm_config_validate(const struct llm_config *c)
{
    size_t nk, nr;
    const struct llm_config_key *keys = llm_config_keys(&nk);
    const struct llm_config_rule *rules = llm_config_rules(&nr);
    for (size_t i = 0; i < nk; i++) {
        cJSON *v = key_to_json(c, &keys[i]);
        if (!v)
            return llm_err(LLM_ENOMEM, "out of memory validating the config");
        int rc = check_value(&keys[i], v);
        cJSON_Delete(v);
        if (rc)
            return llm_err_wrap(rc, "%s", keys[i].path);
    }
    for (size_t i = 0; i < nr; i++) {
        int rc = rules[i].check(c);
        if (rc)
            return rc;
    }
    return 0;
}

int llm_config_from_json(struct llm_config *c, const cJSON *root)
{
    int rc = apply_root(c, root);
    return rc ? rc : llm_config_validate(c);
}

int llm_config_set(struct llm_config *c, const char *assignment)
{
    char path[128], shown[80], h[96];
    const char *eq = strchr(assignment, '=');
    clean(assignment, shown, sizeof(shown));
    if (!eq || eq == assignment)
        return llm_err(LLM_EINVAL, "--set %s: expected PATH=VALUE, e.g. --set optim.lr=3e-4", shown);
    size_t n = (size_t)(eq - assignment);
    const struct llm_config_key *k = NULL;
    path[0] = '\0';
    if (n < sizeof(path)) { /* a longer path is no key: shown cut, refused */
        memcpy(path, assignment, n);
        path[n] = '\0';
        k = llm_config_find(path);
    }
    clean(n < sizeof(path) ? path : assignment, shown, sizeof(shown));
    if (!k && find_section(path)) {
        size_t nk;
        const struct llm_config_key *keys = llm_config_keys(&nk);
        for (size_t i = 0; i < nk; i++)
            if (in_section(&keys[i], path))
                return llm_err(LLM_EINVAL, "--set %s: expected one key, e.g. --set %s=VALUE",
                               shown, keys[i].path);
    }
    if (!k) {
        hint(NULL, path, h, sizeof(h));
        return llm_err(LLM_EINVAL, "--set %s: unknown key%s", shown, h);
    }
    const char *text = eq + 1;
    cJSON *v = cJSON_ParseWithOpts(text, NULL, 1);
    /* not JSON, or a string key given a bare word that happens to be JSON
     * (data.train=123): the text is the value */
    if (!v || ((k->type == LLM_CONFIG_STR || k->type == LLM_CONFIG_ENUM) && !cJSON_IsString(v))) {
        cJSON_Delete(v);
        if (!(v = cJSON_CreateString(text)))
            return llm_err(LLM_ENOMEM, "out of memory in --set %s", k->path);
    }
    int rc = set_value(c, k, v);
    cJSON_Delete(v);
    if (rc && rc != LLM_ENOMEM)
        return llm_err_wrap(rc, "--set %s", k->path);
    return rc;
}

/* "line 3, column 7" of byte offset pos in text. */
static void line_col(const char *text, size_t pos, int *line, int *col)
{
    *line = 1, *col = 1;
    for (size_t i = 0; i < pos && text[i]; i++) {
        if (text[i] == '\n')
            ++*line, *col = 1;
        else
            ++*col;
    }
}

/* How errors name the file: "-" reads stdin. */
static const char *file_label(const char *path)
{
    return strcmp(path, "-") ? path : "<stdin>";
}

static int load_file(struct llm_config *c, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = llm_read_file(path, LLM_CONFIG_MAX_FILE, &buf, &len);
    if (rc)
        return rc;
    path = file_label(path);
    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        rc = llm_err(LLM_EINVAL, "%s: not JSON text (a NUL byte at offset %zu)", path, (size_t)(nul - buf));
        free(buf);
        return rc;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    if (!root) {
        size_t pos = end ? (size_t)(end - buf) : 0;
        int line, col;
        line_col(buf, pos, &line, &col);
        if (strspn(buf, " \t\r\n") == len)
            rc = llm_err(LLM_EINVAL, "%s: empty file, expected a JSON object", path);
        else
            rc = llm_err(LLM_EINVAL, "%s: invalid JSON at line %d, column %d", path, line, col);
        free(buf);
        return rc;
    }
    rc = apply_root(c, root);
    if (rc && rc != LLM_ENOMEM)
        llm_err_wrap(rc, "%s", path);
    cJSON_Delete(root);
    free(buf);
    return rc;
}

int llm_config_load(struct llm_config *c, const char *path, const char *const *sets, int nsets)
{
    int rc = llm_config_defaults(c);
    if (rc)
        return llm_err(rc, "out of memory loading the config");
    if (path && (rc = load_file(c, path)))
        return rc;
    for (int i = 0; i < nsets; i++)
        if ((rc = llm_config_set(c, sets[i])))
            return rc;
    rc = llm_config_validate(c);
    /* a rule broken by the file alone is the file's; with --set it may be
     * either, so only the key is named */
    if (rc && path && nsets == 0)
        llm_err_wrap(rc, "%s", file_label(path));
    return rc;
}

/* ---- output ---- */

cJSON *llm_config_to_json(const struct llm_config *c)
{
    size_t ns, nk;
    const struct llm_config_section *secs = llm_config_sections(&ns);
    const struct llm_config_key *keys = llm_config_keys(&nk);
    cJSON *root = cJSON_CreateObject();
    if (!root)
        goto oom;
    for (size_t s = 0; s < ns; s++) {
        cJSON *obj = cJSON_AddObjectToObject(root, secs[s].name);
        if (!obj)
            goto oom;
        for (size_t i = 0; i < nk; i++) {
            if (!in_section(&keys[i], secs[s].name))
                continue;
            cJSON *v = key_to_json(c, &keys[i]);
            if (!v || !cJSON_AddItemToObject(obj, leaf(&keys[i]), v)) {
                cJSON_Delete(v);
                goto oom;
            }
        }
    }
    return root;
oom:
    cJSON_Delete(root);
    llm_err(LLM_ENOMEM, "out of memory converting the config to JSON");
    return NULL;
}

/* Writes the JSON text of k's value in c. */
static void emit_value(FILE *f, const struct llm_config *c, const struct llm_config_key *k)
{
    const void *p = cfield(c, k);
    char num[32];
    switch (k->type) {
    case LLM_CONFIG_INT:
        fprintf(f, "%d", *(const int *)p);
        return;
    case LLM_CONFIG_I64:
        fprintf(f, "%" PRId64, *(const int64_t *)p);
        return;
    case LLM_CONFIG_NUM:
        /* JSON has no inf or nan; cJSON writes null for them too */
        fmt_num(*(const double *)p, num, sizeof(num));
        fputs(isfinite(*(const double *)p) ? num : "null", f);
        return;
    case LLM_CONFIG_NUMS:
        for (int i = 0; i < k->len; i++) {
            double d = ((const double *)p)[i];
            fmt_num(d, num, sizeof(num));
            fprintf(f, "%s%s", i ? ", " : "[", isfinite(d) ? num : "null");
        }
        fputc(']', f);
        return;
    case LLM_CONFIG_BOOL:
    case LLM_CONFIG_STR:
    case LLM_CONFIG_ENUM:
        break;
    }
    cJSON *v = key_to_json(c, k); /* cJSON does the string escaping */
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    fputs(s ? s : "null", f);
    free(s);
    cJSON_Delete(v);
}

static void emit_config(FILE *f, const struct llm_config *c)
{
    size_t ns, nk;
    const struct llm_config_section *secs = llm_config_sections(&ns);
    const struct llm_config_key *keys = llm_config_keys(&nk);
    fputs("{\n", f);
    for (size_t s = 0; s < ns; s++) {
        fprintf(f, "  \"%s\": {", secs[s].name);
        int first = 1;
        for (size_t i = 0; i < nk; i++) {
            if (!in_section(&keys[i], secs[s].name))
                continue;
            fprintf(f, "%s\n    \"%s\": ", first ? "" : ",", leaf(&keys[i]));
            emit_value(f, c, &keys[i]);
            first = 0;
        }
        fprintf(f, "\n  }%s\n", s + 1 < ns ? "," : "");
    }
    fputs("}\n", f);
}

char *llm_config_to_string(const struct llm_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        llm_err(LLM_ENOMEM, "out of memory printing the config");
        return NULL;
    }
    emit_config(f, c);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        free(buf);
        llm_err(LLM_ENOMEM, "out of memory printing the config");
        return NULL;
    }
    return buf;
}

/* A markdown table cell: '|' would end the cell. */
static void cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', f);
        fputc(*s, f);
    }
}

static void doc_row(FILE *f, const struct llm_config *defaults, const struct llm_config_key *k)
{
    static const char *const type_names[] = {
        [LLM_CONFIG_INT] = "integer", [LLM_CONFIG_I64] = "integer", [LLM_CONFIG_NUM] = "number",
        [LLM_CONFIG_BOOL] = "boolean", [LLM_CONFIG_STR] = "string", [LLM_CONFIG_ENUM] = "string",
        [LLM_CONFIG_NUMS] = "array"};
    char allowed[128], tmp[96];
    switch (k->type) {
    case LLM_CONFIG_INT:
    case LLM_CONFIG_I64:
        int_range(k, allowed, sizeof(allowed), 0);
        break;
    case LLM_CONFIG_NUM:
        num_range(k, allowed, sizeof(allowed));
        if (!allowed[0])
            snprintf(allowed, sizeof(allowed), "any");
        break;
    case LLM_CONFIG_NUMS:
        num_range(k, tmp, sizeof(tmp));
        snprintf(allowed, sizeof(allowed), "%d numbers%s%s", k->len, tmp[0] ? ", each " : "", tmp);
        break;
    case LLM_CONFIG_BOOL:
        snprintf(allowed, sizeof(allowed), "true, false");
        break;
    case LLM_CONFIG_STR:
        snprintf(allowed, sizeof(allowed), "%s", k->ilo ? "non-empty" : "any");
        break;
    case LLM_CONFIG_ENUM:
        join_choices(k, allowed, sizeof(allowed));
        break;
    }
    fprintf(f, "| `%s` | %s | `", k->path, type_names[k->type]);
    char *def = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&def, &len);
    if (m) {
        emit_value(m, defaults, k);
        fclose(m);
    }
    cell(f, def ? def : "?");
    free(def);
    fputs("` | ", f);
    cell(f, allowed);
    fputs(" | ", f);
    cell(f, k->doc);
    fputs(" |\n", f);
}

int llm_config_write_docs(FILE *f)
{
    size_t ns, nk, nr;
    const struct llm_config_section *secs = llm_config_sections(&ns);
    const struct llm_config_key *keys = llm_config_keys(&nk);
    const struct llm_config_rule *rules = llm_config_rules(&nr);
    struct llm_config d;
    int rc = llm_config_defaults(&d);
    if (rc) {
        llm_config_release(&d);
        return llm_err(rc, "out of memory writing the config docs");
    }
    fputs("# Config reference\n\n"
          "<!-- Generated by `llm config --docs` from lib/config/schema.c. Do not edit:\n"
          "     a unit test fails when this file and the code differ. -->\n\n"
          "A run is configured by one JSON object with the sections below. Every key is\n"
          "optional: a key that is absent takes its default. An unknown or duplicate key,\n"
          "a value of the wrong type and a value out of range are errors that name the\n"
          "key's JSON path, e.g. `train.lr: expected a number > 0, got \"abc\"`. Integers\n"
          "must be whole numbers within range: `3.5` and `1e30` are refused, never\n"
          "truncated.\n\n"
          "- `llm config CONFIG.json` checks a config and prints the effective one (every\n"
          "  key, defaults filled in); `llm config` alone prints the defaults. The training\n"
          "  commands print the same with `--dry-run`, and store it in every checkpoint.\n"
          "- `--set PATH=VALUE` (repeatable) overrides one key after the file is read:\n"
          "  `--set optim.lr=3e-4 --set optim.betas=[0.9,0.99] --set data.train=train.bin`.\n"
          "  VALUE is read as JSON when it is valid JSON and otherwise taken as a string;\n"
          "  string keys always take the text as written (`--set train.out_dir=2024`).\n",
          f);
    fprintf(f, "- Files larger than %u MiB are refused.\n", LLM_CONFIG_MAX_FILE >> 20);
    for (size_t s = 0; s < ns; s++) {
        fprintf(f, "\n## %s\n\n%s\n\n", secs[s].name, secs[s].doc);
        fputs("| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n", f);
        for (size_t i = 0; i < nk; i++)
            if (in_section(&keys[i], secs[s].name))
                doc_row(f, &d, &keys[i]);
    }
    fputs("\n## Checks across keys\n\nAfter each key passes its own check, these must hold:\n\n", f);
    for (size_t i = 0; i < nr; i++)
        fprintf(f, "- %s\n", rules[i].doc);
    fputs("\n## All defaults\n\nThe output of `llm config` with no file:\n\n```json\n", f);
    emit_config(f, &d);
    fputs("```\n", f);
    llm_config_release(&d);
    if (ferror(f))
        return llm_err(LLM_EIO, "cannot write the config docs");
    return 0;
}
