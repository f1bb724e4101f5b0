/* ckpt.c: `llm ckpt [--verify] [--json] CKPT`: what a checkpoint holds (its
 * format version, size, header and tensor table), and with --verify a check
 * of every byte of it. The container itself is lib/core/ckpt.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "core/ckpt.h"
#include "core/progress.h"

static int verify, as_json;

static const struct llm_opt opts[] = {
    {"verify", 0, LLM_OPT_FLAG, &verify, NULL,
     "decompress every tensor and check every checksum (reads the whole file)"},
    {"json", 0, LLM_OPT_FLAG, &as_json, NULL,
     "print one JSON object: file, version, size, the full header, the tensors"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const struct llm_cmd_spec spec = {
    .name = "ckpt",
    .usage = "[--verify] [--json] CKPT",
    .summary = "inspect or verify a checkpoint file",
    .opts = opts,
    .min_pos = 1,
    .max_pos = 1,
    .epilog = "The file format is described in docs/formats.md.",
};

/* Sums that cannot wrap: a forged index may claim 2^53 bytes per tensor. */
static uint64_t add_sat(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }

static void fmt_bytes(char *buf, size_t n, uint64_t b)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double x = (double)b;
    int u = 0;
    while (x >= 1024 && u < 5)
        x /= 1024, u++;
    if (u == 0)
        snprintf(buf, n, "%llu B", (unsigned long long)b);
    else
        snprintf(buf, n, "%.*f %s", x < 10 ? 2 : 1, x, units[u]);
}

static void fmt_shape(char *buf, size_t n, const struct llm_ckpt_tensor *t)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

static int verify_all(struct llm_ckpt_reader *r)
{
    uint64_t total = 0;
    size_t n = llm_ckpt_count(r);
    for (size_t i = 0; i < n; i++)
        total = add_sat(total, llm_ckpt_tensor(r, i)->csize);
    /* A bar only where the wait is long enough to want one. */
    struct llm_progress p;
    llm_progress_init(&p, stderr, "verify", "B", total,
                      total >= (256u << 20) ? LLM_PROGRESS_AUTO : LLM_PROGRESS_OFF);
    for (size_t i = 0; i < n; i++) {
        int rc = llm_ckpt_verify_tensor(r, i);
        if (rc)
            return rc;
        llm_progress_add(&p, llm_ckpt_tensor(r, i)->csize);
    }
    llm_progress_finish(&p);
    return 0;
}

/* Integers as raw JSON text, so no size ever prints as 1.2e+10. */
static cJSON *json_uint(uint64_t v)
{
    char num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(num);
}

static int print_json(const char *path, struct llm_ckpt_reader *r)
{
    cJSON *o = cJSON_CreateObject(), *ts = cJSON_CreateArray();
    cJSON *h = cJSON_Duplicate(llm_ckpt_header(r), 1);
    char *text = NULL;
    int ok = o && ts && h && cJSON_AddStringToObject(o, "file", path) &&
             cJSON_AddNumberToObject(o, "version", LLM_CKPT_VERSION) &&
             cJSON_AddItemToObject(o, "size", json_uint(llm_ckpt_file_size(r)));
    if (ok) {
        cJSON_AddItemToObject(o, "header", h);
        h = NULL;
        cJSON_AddItemToObject(o, "tensors", ts);
        ts = NULL;
    }
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "tensors");
    for (size_t i = 0; ok && i < llm_ckpt_count(r); i++) {
        const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, i);
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray();
        ok = e && shape && cJSON_AddItemToArray(arr, e);
        if (!ok) {
            cJSON_Delete(e);
            cJSON_Delete(shape);
            break;
        }
        ok = cJSON_AddStringToObject(e, "name", t->name) &&
             cJSON_AddStringToObject(e, "dtype", llm_ckpt_dtype_name(t->dtype)) &&
             cJSON_AddItemToObject(e, "shape", shape);
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, json_uint((uint64_t)t->shape[d]));
        ok = ok && cJSON_AddItemToObject(e, "nbytes", json_uint(t->nbytes)) &&
             cJSON_AddItemToObject(e, "csize", json_uint(t->csize));
    }
    if (ok && verify)
        ok = cJSON_AddTrueToObject(o, "verified") != NULL;
    if (ok)
        ok = (text = cJSON_Print(o)) != NULL;
    if (ok)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
    cJSON_Delete(ts);
    cJSON_Delete(h);
    return ok ? 0 : llm_err(LLM_ENOMEM, "out of memory printing '%s'", path);
}

static void print_summary(const char *path, struct llm_ckpt_reader *r)
{
    char a[64], b[64];
    size_t n = llm_ckpt_count(r);
    uint64_t raw = 0, stored = 0, elems = 0;
    int wname = 4, wshape = 5;
    for (size_t i = 0; i < n; i++) {
        const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, i);
        char shape[256];
        fmt_shape(shape, sizeof(shape), t);
        raw = add_sat(raw, t->nbytes);
        stored = add_sat(stored, t->csize);
        elems = add_sat(elems, t->nbytes / llm_ckpt_dtype_size(t->dtype));
        if ((int)strlen(t->name) > wname)
            wname = (int)strlen(t->name);
        if ((int)strlen(shape) > wshape)
            wshape = (int)strlen(shape);
    }
    fmt_bytes(a, sizeof(a), llm_ckpt_file_size(r));
    printf("file:     %s\n", path);
    printf("format:   llm checkpoint, version %d\n", LLM_CKPT_VERSION);
    printf("size:     %s (%llu bytes)\n", a, (unsigned long long)llm_ckpt_file_size(r));
    const cJSON *h = llm_ckpt_header(r);
    printf("header:   %d key%s", cJSON_GetArraySize(h), cJSON_GetArraySize(h) == 1 ? "" : "s");
    for (const cJSON *c = h->child; c; c = c->next)
        printf("%s%s", c == h->child ? ": " : ", ", c->string);
    printf("\n");
    fmt_bytes(a, sizeof(a), raw);
    fmt_bytes(b, sizeof(b), stored);
    printf("tensors:  %zu, %llu elements, %s raw, %s stored", n, (unsigned long long)elems, a, b);
    if (raw)
        printf(" (%.1f%%)", 100.0 * (double)stored / (double)raw);
    printf("\n");
    if (!n)
        return;
    printf("\n  %-*s  %-5s  %-*s  %s\n", wname, "name", "dtype", wshape, "shape", "bytes");
    for (size_t i = 0; i < n; i++) {
        const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, i);
        char shape[256];
        fmt_shape(shape, sizeof(shape), t);
        printf("  %-*s  %-5s  %-*s  %llu\n", wname, t->name, llm_ckpt_dtype_name(t->dtype), wshape,
               shape, (unsigned long long)t->nbytes);
    }
}

int cmd_ckpt(int argc, char **argv)
{
    struct llm_args a;
    verify = as_json = 0;
    int rc = cmd_parse(&spec, argc, argv, &a);
    if (rc >= 0)
        return rc;
    const char *path = a.pos[0];
    struct llm_ckpt_reader *r = NULL;
    if (!strcmp(path, "-")) {
        rc = llm_err(LLM_EUSAGE, "a checkpoint cannot be read from stdin (it needs a seekable file)");
        goto done;
    }
    if ((rc = llm_ckpt_open(&r, path)))
        goto done;
    if (as_json) {
        /* Verify first: the JSON then says only what is true. */
        if (verify && (rc = verify_all(r)))
            goto done;
        rc = print_json(path, r);
    } else {
        print_summary(path, r);
        if (verify) {
            fflush(stdout);
            if (!(rc = verify_all(r)))
                printf("ok: %zu tensor%s verified\n", llm_ckpt_count(r),
                       llm_ckpt_count(r) == 1 ? "" : "s");
        }
    }
done:
    llm_ckpt_close(r);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}
