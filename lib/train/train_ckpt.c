/* train_ckpt.c: training checkpoints (a model checkpoint, model_io.h, plus
 * the optimizer's tensors and the loop's state in the header's "train"
 * object), pruning, finding the newest one, and resuming from it. */
#include "train/train_impl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ckpt.h"
#include "core/err.h"
#include "core/log.h"
#include "model/model_io.h"
#include "optim/optim.h"

/* ---- the "train" header object ---- */

/* Counts are JSON numbers (exact below 2^53). Real numbers are strings of
 * 17 significant digits: cJSON prints 15 when they compare equal within an
 * epsilon, which loses the last bits, and resume must be bit for bit. */
static void put_num(cJSON *o, const char *k, double v)
{
    cJSON_AddNumberToObject(o, k, v);
}

static void put_real(cJSON *o, const char *k, double v)
{
    char b[40];
    if (!isfinite(v)) {
        cJSON_AddNullToObject(o, k);
        return;
    }
    snprintf(b, sizeof(b), "%.17g", v);
    cJSON_AddStringToObject(o, k, b);
}

static void put_u64(cJSON *o, const char *k, uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%" PRIu64, v);
    cJSON_AddStringToObject(o, k, b);
}

static cJSON *state_json(const struct train_loop *L, const struct llm_model *m)
{
    const struct train_state *s = &L->st;
    cJSON *o = cJSON_CreateObject(), *rng = cJSON_CreateObject();
    cJSON *data = L->task->state ? L->task->state(L->task->ctx) : cJSON_CreateNull();
    if (!o || !rng || !data) {
        cJSON_Delete(o), cJSON_Delete(rng), cJSON_Delete(data);
        return NULL;
    }
    put_num(o, "step", (double)s->step);
    put_num(o, "tokens", (double)s->tokens);
    put_num(o, "skipped", (double)s->skipped);
    put_real(o, "loss_ema", s->loss_ema);
    put_num(o, "loss_n", (double)s->loss_n);
    put_real(o, "noise_g2", s->noise_g2);
    put_real(o, "noise_s", s->noise_s);
    put_num(o, "noise_n", (double)s->noise_n);
    put_real(o, "best_val_loss", s->best_val);
    put_real(o, "elapsed_s", s->elapsed);
    put_real(o, "train_time_s", s->train_time);
    put_num(o, "optim_t", (double)llm_optim_t(L->opt));
    for (int i = 0; i < 4; i++) {
        char k[4] = {'s', (char)('0' + i), 0};
        put_u64(rng, k, m->rng.s[i]);
    }
    cJSON_AddItemToObject(o, "dropout_rng", rng);
    cJSON_AddItemToObject(o, "data", data);
    return o;
}

static int get_num(const cJSON *o, const char *k, double *v, const char *path)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsNull(j)) {
        *v = NAN;
        return 0;
    }
    if (cJSON_IsString(j)) {
        char *end;
        errno = 0;
        *v = strtod(j->valuestring, &end);
        if (!errno && end != j->valuestring && !*end)
            return 0;
    }
    if (!cJSON_IsNumber(j))
        return llm_err(LLM_EFORMAT, "%s: header train.%s is missing or not a number", path, k);
    *v = j->valuedouble;
    return 0;
}

static int get_i64(const cJSON *o, const char *k, int64_t *v, const char *path)
{
    double d;
    int rc = get_num(o, k, &d, path);
    if (!rc && (!(d >= 0) || d != floor(d) || d > 9007199254740992.0))
        rc = llm_err(LLM_EFORMAT, "%s: header train.%s is not a count", path, k);
    if (!rc)
        *v = (int64_t)d;
    return rc;
}

static int state_restore(struct train_loop *L, struct llm_model *m, const cJSON *o, const char *path)
{
    struct train_state *s = &L->st;
    int64_t t = 0;
    int rc = get_i64(o, "step", &s->step, path);
    if (!rc) rc = get_i64(o, "tokens", &s->tokens, path);
    if (!rc) rc = get_i64(o, "skipped", &s->skipped, path);
    if (!rc) rc = get_num(o, "loss_ema", &s->loss_ema, path);
    if (!rc) rc = get_i64(o, "loss_n", &s->loss_n, path);
    if (!rc) rc = get_num(o, "noise_g2", &s->noise_g2, path);
    if (!rc) rc = get_num(o, "noise_s", &s->noise_s, path);
    if (!rc) rc = get_i64(o, "noise_n", &s->noise_n, path);
    if (!rc) rc = get_num(o, "best_val_loss", &s->best_val, path);
    if (!rc) rc = get_num(o, "elapsed_s", &s->elapsed, path);
    if (!rc) rc = get_num(o, "train_time_s", &s->train_time, path);
    if (!rc) rc = get_i64(o, "optim_t", &t, path);
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(o, "dropout_rng");
    for (int i = 0; !rc && i < 4; i++) {
        char k[4] = {'s', (char)('0' + i), 0}, *end;
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(rng, k);
        errno = 0;
        unsigned long long v = cJSON_IsString(j) ? strtoull(j->valuestring, &end, 10) : 0;
        if (!cJSON_IsString(j) || errno || *end || !*j->valuestring)
            rc = llm_err(LLM_EFORMAT, "%s: header train.dropout_rng.%s is missing or not a u64", path, k);
        else
            m->rng.s[i] = (uint64_t)v;
    }
    if (!rc && L->task->restore) {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
        if ((rc = L->task->restore(L->task->ctx, data)))
            llm_err_wrap(rc, "%s: header train.data", path);
    }
    if (!rc)
        llm_optim_set_t(L->opt, t);
    if (!isfinite(s->elapsed))
        s->elapsed = 0;
    if (!isfinite(s->train_time))
        s->train_time = 0;
    return rc;
}

/* ---- writing ---- */

static int ckpt_name(char *dst, const char *dir, int64_t step, int final)
{
    char name[64];
    if (final)
        snprintf(name, sizeof(name), "final.llm");
    else
        snprintf(name, sizeof(name), "ckpt_%lld.llm", (long long)step);
    return train_path(dst, dir, name);
}

/* The step of a "ckpt_<digits>.llm" name, or -1. */
static int64_t name_step(const char *name)
{
    if (strncmp(name, "ckpt_", 5))
        return -1;
    const char *p = name + 5;
    int64_t v = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (*p - '0')) > ((int64_t)1 << 53))
            return -1;
    return strcmp(p, ".llm") ? -1 : v;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Keeps the newest keep ckpt_<step>.llm files (keep 0: all). */
static void prune(const char *dir, int keep)
{
    if (keep <= 0)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int64_t s = name_step(e->d_name);
        if (s < 0)
            continue;
        if (n == cap) {
            int64_t *p = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof(*p));
            if (!p)
                break;
            steps = p;
        }
        steps[n++] = s;
    }
    closedir(d);
    if (steps)
        qsort(steps, n, sizeof(*steps), cmp_i64);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        char path[TRAIN_PATH_MAX];
        if (!ckpt_name(path, dir, steps[i], 0) && unlink(path))
            llm_warn("cannot remove old checkpoint '%s': %s", path, strerror(errno));
    }
    free(steps);
}

int train_checkpoint(struct train_loop *L, struct llm_model *m, int final)
{
    const struct llm_config *c = L->cfg;
    char path[TRAIN_PATH_MAX];
    int rc = ckpt_name(path, c->train.out_dir, L->st.step, final);
    if (rc)
        return rc;
    cJSON *h = L->o->extra_header ? cJSON_Duplicate(L->o->extra_header, 1) : cJSON_CreateObject();
    cJSON *st = h ? state_json(L, m) : NULL, *run = st ? llm_config_to_json(c) : NULL;
    if (!run) {
        cJSON_Delete(h), cJSON_Delete(st);
        return llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(h, "train");
    cJSON_DeleteItemFromObjectCaseSensitive(h, "run_config");
    cJSON_AddItemToObject(h, "train", st);
    cJSON_AddItemToObject(h, "run_config", run);
    size_t n = llm_optim_tensor_count(L->opt);
    struct llm_state_tensor *t = calloc(n ? n : 1, sizeof(*t));
    if (!t)
        rc = llm_err(LLM_ENOMEM, "out of memory writing '%s'", path);
    for (size_t i = 0; !rc && i < n; i++) {
        const struct llm_optim_tensor *ot = llm_optim_tensor(L->opt, i);
        t[i] = (struct llm_state_tensor){ot->name, ot->ndim, ot->shape, ot->numel, ot->data};
    }
    if (!rc)
        rc = llm_model_save_state(m, path, h, t, n);
    free(t);
    cJSON_Delete(h);
    if (rc)
        return rc;
    snprintf(L->ckpt_path, sizeof(L->ckpt_path), "%s", path);
    prune(c->train.out_dir, c->train.keep_checkpoints);
    return 0;
}

/* A kill during a checkpoint (or any atomic write of the loop) leaves its
 * temp file, ".NAME.tmp.XXXXXX" (core/file.h), which is never read: remove
 * those of the run folder's own files before the run goes on. */
void train_remove_stale(const char *dir)
{
    static const char *const ours[] = {"ckpt_", "final.llm", "metrics.jsonl", "summary.json",
                                       "config.json", "loss.svg"};
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *n = e->d_name, *t = strstr(n, ".tmp.");
        if (n[0] != '.' || !t || strlen(t) != 11)
            continue;
        int mine = 0;
        for (size_t i = 0; i < sizeof(ours) / sizeof(*ours); i++)
            mine |= !strncmp(n + 1, ours[i], strlen(ours[i]));
        char path[TRAIN_PATH_MAX];
        if (mine && !train_path(path, dir, n)) {
            if (unlink(path))
                llm_warn("cannot remove the stale temp file '%s': %s", path, strerror(errno));
            else
                llm_info("removed '%s', left by an interrupted write", path);
        }
    }
    closedir(d);
}

/* ---- finding and resuming ---- */

int64_t llm_train_ckpt_step(const char *path)
{
    struct llm_ckpt_reader *r;
    if (llm_ckpt_open(&r, path))
        return -1;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(llm_ckpt_header(r), "train");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(tr, "step");
    int64_t s = cJSON_IsNumber(st) && st->valuedouble >= 0 ? (int64_t)st->valuedouble : -1;
    if (s < 0)
        llm_err(LLM_EFORMAT, "%s: no training state in the header (not a training checkpoint)", path);
    llm_ckpt_close(r);
    return s;
}

/* The newest checkpoint of dir into path ("" if none): the highest
 * ckpt_<step>.llm, or final.llm when its step is at least that. */
static int newest(const char *dir, char *path)
{
    path[0] = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : llm_err(LLM_EIO, "cannot read folder '%s': %s", dir, strerror(errno));
    int64_t best = -1;
    for (struct dirent *e; (e = readdir(d));) {
        int64_t s = name_step(e->d_name);
        if (s > best)
            best = s;
    }
    closedir(d);
    char fin[TRAIN_PATH_MAX];
    int rc = train_path(fin, dir, "final.llm");
    if (!rc && access(fin, F_OK) == 0) {
        int64_t s = llm_train_ckpt_step(fin);
        if (s < 0)
            return llm_err_wrap(LLM_EFORMAT, "cannot resume");
        if (s >= best) {
            snprintf(path, TRAIN_PATH_MAX, "%s", fin);
            return 0;
        }
    }
    return rc || best < 0 ? rc : ckpt_name(path, dir, best, 0);
}

/* The first key whose value differs between two objects, for the message. */
static const char *first_diff(const cJSON *a, const cJSON *b)
{
    for (const cJSON *e = a ? a->child : NULL; e; e = e->next)
        if (!cJSON_Compare(e, cJSON_GetObjectItemCaseSensitive(b, e->string), 1))
            return e->string;
    return "?";
}

/* The header's model config against cur's ("model" of llm_config_to_json);
 * `need` says what needs them equal, for the message. */
static int same_model(const cJSON *h, const cJSON *cur, const char *path, const char *need)
{
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, "config"), "model");
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(cur, "model");
    if (!cJSON_IsObject(ck))
        return llm_err(LLM_EFORMAT, "%s: the header has no model config", path);
    if (!cJSON_Compare(ck, cm, 1))
        return llm_err(LLM_EINVAL, "%s: model.%s differs from the config's; %s", path, first_diff(cm, ck), need);
    return 0;
}

static int check_config(const struct train_loop *L, const cJSON *h, const char *path)
{
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(h, "run_config");
    cJSON *cur = llm_config_to_json(L->cfg);
    if (!cur)
        return LLM_ENOMEM;
    int rc = same_model(h, cur, path, "resume needs the same model (use another train.out_dir for a new run)");
    const cJSON *on = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(run, "optim"), "name");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cur, "optim"), "name");
    if (!rc && cJSON_IsString(on) && !cJSON_Compare(on, cn, 1))
        rc = llm_err(LLM_EINVAL, "%s: saved with optim.name \"%s\", the config has \"%s\"", path, on->valuestring,
                     cJSON_IsString(cn) ? cn->valuestring : "?");
    cJSON_Delete(cur);
    return rc;
}

/* Reads the tensor called name (f32, numel floats) into device memory dst. */
static int read_named(struct llm_ckpt_reader *r, struct llm_backend *be, const char *name, size_t numel,
                      float *dst, const char *path)
{
    long k = llm_ckpt_find(r, name);
    if (k < 0)
        return llm_err(LLM_EFORMAT, "%s: tensor '%s' is missing", path, name);
    const struct llm_ckpt_tensor *t = llm_ckpt_tensor(r, (size_t)k);
    if (t->dtype != LLM_CKPT_F32 || t->nbytes != numel * sizeof(float))
        return llm_err(LLM_EFORMAT, "%s: tensor '%s' is %s of %llu bytes, expected f32 of %zu", path, name,
                       llm_ckpt_dtype_name(t->dtype), (unsigned long long)t->nbytes, numel * sizeof(float));
    int rc = llm_model_read_device(r, (size_t)k, be, dst);
    return rc ? llm_err_wrap(rc, "loading '%s'", name) : 0;
}

/* Every parameter of m from r, by name. */
static int read_params(struct llm_ckpt_reader *r, struct llm_model *m, const char *path)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < m->layout.n; i++)
        rc = read_named(r, m->be, m->layout.p[i].name, m->layout.p[i].numel, m->params + m->layout.p[i].offset,
                        path);
    return rc;
}

int llm_train_init_from(struct llm_model *m, const struct llm_config *cfg, const char *path)
{
    struct llm_ckpt_reader *r;
    int rc = llm_ckpt_open(&r, path);
    if (rc)
        return llm_err_wrap(rc, "train.init_from");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(llm_ckpt_header(r), "format");
    cJSON *cur = NULL;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, LLM_MODEL_FORMAT))
        rc = llm_err(LLM_EFORMAT, "train.init_from: %s is not a model checkpoint", path);
    else if (!(cur = llm_config_to_json(cfg)))
        rc = LLM_ENOMEM;
    else
        rc = same_model(llm_ckpt_header(r), cur, path,
                        "train.init_from needs the model the config describes (the weights are copied as they are)");
    cJSON_Delete(cur);
    if (!rc)
        rc = read_params(r, m, path);
    if (!rc && m->be->ops->sync)
        rc = m->be->ops->sync(m->be->ctx);
    llm_ckpt_close(r);
    return rc;
}

int train_resume(struct train_loop *L, struct llm_model *m, const char *from)
{
    char path[TRAIN_PATH_MAX];
    struct stat st;
    int rc = 0;
    if (!from) {
        if ((rc = newest(L->cfg->train.out_dir, path)) || !path[0])
            return rc;
    } else if (stat(from, &st)) {
        return llm_err(LLM_EIO, "--resume: cannot open '%s': %s", from, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        if ((rc = newest(from, path)))
            return rc;
        if (!path[0])
            return llm_err(LLM_EINVAL, "--resume: no checkpoint (ckpt_<step>.llm or final.llm) in '%s'", from);
    } else if (snprintf(path, sizeof(path), "%s", from) >= (int)sizeof(path)) {
        return llm_err(LLM_EINVAL, "--resume: path too long");
    }
    struct llm_ckpt_reader *r;
    if ((rc = llm_ckpt_open(&r, path)))
        return rc;
    const cJSON *h = llm_ckpt_header(r);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(h, "format");
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(h, "train");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, LLM_MODEL_FORMAT))
        rc = llm_err(LLM_EFORMAT, "%s: not a model checkpoint", path);
    else if (!cJSON_IsObject(tr))
        rc = llm_err(LLM_EFORMAT, "%s: no training state in the header (a model-only checkpoint cannot be "
                     "resumed)", path);
    if (!rc)
        rc = check_config(L, h, path);
    struct llm_backend *be = m->be;
    if (!rc)
        rc = read_params(r, m, path);
    for (size_t i = 0; !rc && i < llm_optim_tensor_count(L->opt); i++) {
        const struct llm_optim_tensor *t = llm_optim_tensor(L->opt, i);
        rc = read_named(r, be, t->name, t->numel, t->data, path);
    }
    if (!rc && be->ops->sync)
        rc = be->ops->sync(be->ctx);
    if (!rc)
        rc = state_restore(L, m, tr, path);
    llm_ckpt_close(r);
    if (rc)
        return rc;
    L->resumed_from = (int)L->st.step;
    snprintf(L->ckpt_path, sizeof(L->ckpt_path), "%s", path);
    llm_info("resuming from %s (step %lld)", path, (long long)L->st.step);
    return 0;
}
