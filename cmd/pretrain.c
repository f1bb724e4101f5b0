/* pretrain.c: `llm pretrain CONFIG.json`: one training run (lib/train), or
 * with --sweep a grid of runs, each in its own folder under train.out_dir,
 * run as child processes (-j at a time), ending with a table of their
 * validation losses. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd.h"
#include "config/config.h"
#include "core/file.h"
#include "core/log.h"
#include "core/progress.h"
#include "model/model.h"
#include "nn/backend.h"
#include "train/pretrain.h"
#include "train/train.h"

/* data.tokenizer as a JSON object for the checkpoints' "tokenizer" key (so
 * generate and export find it), or NULL when unset. */
static int tokenizer_header(const struct llm_config *c, cJSON **out)
{
    *out = NULL;
    if (!c->data.tokenizer[0])
        return 0;
    char *text;
    size_t n;
    int rc = llm_read_file(c->data.tokenizer, 256u << 20, &text, &n);
    if (rc)
        return llm_err_wrap(rc, "data.tokenizer");
    cJSON *tok = cJSON_ParseWithLength(text, n);
    free(text);
    if (!tok)
        return llm_err(LLM_EFORMAT, "data.tokenizer: '%s' is not JSON", c->data.tokenizer);
    cJSON *h = cJSON_CreateObject();
    if (!h) {
        cJSON_Delete(tok);
        return LLM_ENOMEM;
    }
    cJSON_AddItemToObject(h, "tokenizer", tok);
    *out = h;
    return 0;
}

/* The summary's unigram entropy of the data: the loss of the best model
 * that ignores context, which a trained model must beat. */
static void add_entropy(void *ctx, cJSON *summary)
{
    struct llm_pretrain *p = ctx;
    double h = llm_pretrain_unigram_entropy(p, p->val != NULL);
    if (isfinite(h))
        cJSON_AddNumberToObject(summary, "unigram_entropy", h);
}

/* One run. Returns 0, or an LLM_E* code; *sig = the signal that stopped it. */
static int run_one(const struct llm_config *c, const char *resume, long stop_after, int json, int *sig)
{
    if (c->train.device == LLM_DEVICE_CUDA)
        return llm_err(LLM_EUNSUPPORTED, "train.device: the CUDA backend is not built yet; use \"cpu\" or \"auto\"");
    struct llm_backend be;
    struct llm_model m;
    struct llm_pretrain p;
    cJSON *extra = NULL;
    int rc = llm_backend_cpu_init(&be, c->train.threads, 0);
    if (rc)
        return rc;
    if (!(rc = llm_pretrain_init(&p, c, &be))) {
        if (!(rc = llm_model_init(&m, &c->model, &be, (uint64_t)c->train.seed))) {
            /* a warm start (a resumed run then restores its own weights) */
            if (c->train.init_from[0])
                rc = llm_train_init_from(&m, c, c->train.init_from);
            if (!rc && !(rc = tokenizer_header(c, &extra))) {
                struct cmd_train_run t = {
                    .c = c, .m = &m, .task = &p.task, .extra_header = extra, .resume = resume,
                    .stop_after = stop_after, .json = json, .label = "train", .summary = add_entropy,
                    .summary_ctx = &p,
                };
                rc = cmd_train(&t, sig);
            }
            cJSON_Delete(extra);
            llm_model_release(&m);
        }
        llm_pretrain_release(&p);
    }
    llm_backend_release(&be);
    return rc;
}

/* ---- sweeps ---- */

struct axis {
    char key[128];
    char **vals;
    int n;
};

/* "KEY=V1,V2,..." split at commas outside brackets and quotes (a value may
 * be a JSON array: optim.betas=[0.9,0.95],[0.9,0.99]). */
static int parse_axis(const char *arg, struct axis *a)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1] || (size_t)(eq - arg) >= sizeof(a->key))
        return llm_err(LLM_EUSAGE, "--sweep: expected KEY=V1,V2,..., got '%s'", arg);
    memcpy(a->key, arg, (size_t)(eq - arg));
    a->key[eq - arg] = 0;
    if (!llm_config_find(a->key))
        return llm_err(LLM_EUSAGE, "--sweep: unknown config key '%s'", a->key);
    a->vals = NULL;
    a->n = 0;
    const char *p = eq + 1;
    while (1) {
        int depth = 0, quote = 0;
        const char *q = p;
        for (; *q && (depth || quote || *q != ','); q++) {
            if (*q == '"')
                quote = !quote;
            else if (!quote && (*q == '[' || *q == '{'))
                depth++;
            else if (!quote && (*q == ']' || *q == '}'))
                depth--;
        }
        if (q == p)
            return llm_err(LLM_EUSAGE, "--sweep %s: an empty value", a->key);
        char **v = realloc(a->vals, (size_t)(a->n + 1) * sizeof(char *));
        if (!v || !(v[a->n] = strndup(p, (size_t)(q - p))))
            return llm_err(LLM_ENOMEM, "out of memory");
        a->vals = v;
        a->n++;
        if (!*q)
            break;
        p = q + 1;
    }
    return 0;
}

/* A folder name for one point of the grid: "optim.lr=1e-3_model.d_model=128"
 * with characters other than [A-Za-z0-9._=-] replaced by '-'. */
static void point_name(char *dst, size_t n, const struct axis *ax, int nax, const int *idx)
{
    size_t k = 0;
    for (int i = 0; i < nax && k + 1 < n; i++) {
        int w = snprintf(dst + k, n - k, "%s%s=%s", i ? "_" : "", ax[i].key, ax[i].vals[idx[i]]);
        k = w < 0 ? n - 1 : k + (size_t)w < n ? k + (size_t)w : n - 1;
    }
    dst[k] = 0;
    for (char *p = dst; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._=-+", *p)))
            *p = '-';
}

struct job {
    pid_t pid;
    char dir[4096];
    char name[1024];
    int status;   /* exit status once done */
};

/* Starts the point idx of the grid: the user's sets, then its axis values. */
static int spawn(const char *config, const struct llm_strlist *sets, const struct axis *ax, int nax,
                 const int *idx, const char *dir, int threads, pid_t *pid)
{
    const char **all = calloc((size_t)(sets->n + nax), sizeof(char *));
    char **own = calloc((size_t)nax + 1, sizeof(char *));
    int rc = all && own ? 0 : llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < sets->n; i++)
        all[i] = sets->v[i];
    for (int i = 0; !rc && i < nax; i++)
        if (asprintf(&own[i], "%s=%s", ax[i].key, ax[i].vals[idx[i]]) < 0)
            rc = llm_err(LLM_ENOMEM, "out of memory");
        else
            all[sets->n + i] = own[i];
    if (!rc)
        rc = cmd_spawn_pretrain(config, all, sets->n + nax, dir, threads, pid);
    for (int i = 0; own && i < nax; i++)
        free(own[i]);
    free(own), free(all);
    return rc;
}

static int sweep(const char *config, const struct llm_config *base, const struct llm_strlist *sets,
                 const struct llm_strlist *sw, long jobs, int json)
{
    int nax = sw->n, rc = 0;
    struct axis *ax = calloc((size_t)nax, sizeof(*ax));
    if (!ax)
        return llm_err(LLM_ENOMEM, "out of memory");
    long total = 1;
    for (int i = 0; !rc && i < nax; i++) {
        rc = parse_axis(sw->v[i], &ax[i]);
        for (int k = 0; !rc && k < i; k++)
            if (!strcmp(ax[k].key, ax[i].key))
                rc = llm_err(LLM_EUSAGE, "--sweep: key '%s' given twice", ax[i].key);
        if (!rc && (total *= ax[i].n) > 10000)
            rc = llm_err(LLM_EUSAGE, "--sweep: the grid has over 10000 points");
    }
    struct job *jb = rc ? NULL : calloc((size_t)total, sizeof(*jb));
    if (!rc && !jb)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    /* Validate every point's config before running any. */
    for (long p = 0; !rc && p < total; p++) {
        int idx[64] = {0};
        long r = p;
        for (int i = nax - 1; i >= 0; i--)
            idx[i] = (int)(r % ax[i].n), r /= ax[i].n;
        point_name(jb[p].name, sizeof(jb[p].name), ax, nax, idx);
        snprintf(jb[p].dir, sizeof(jb[p].dir), "%s/%s", base->train.out_dir, jb[p].name);
        const char **all = calloc((size_t)(sets->n + nax), sizeof(char *));
        char **own = calloc((size_t)nax, sizeof(char *));
        for (int i = 0; all && own && i < sets->n; i++)
            all[i] = sets->v[i];
        for (int i = 0; all && own && i < nax; i++)
            if (asprintf(&own[i], "%s=%s", ax[i].key, ax[i].vals[idx[i]]) >= 0)
                all[sets->n + i] = own[i];
        struct llm_config c;
        rc = all && own ? llm_config_load(&c, config, all, sets->n + nax) : llm_err(LLM_ENOMEM, "out of memory");
        if (rc)
            llm_err_wrap(rc, "sweep point %s", jb[p].name);
        llm_config_release(&c);
        for (int i = 0; own && i < nax; i++)
            free(own[i]);
        free(own);
        free(all);
        jb[p].status = -1;
    }
    int threads = base->train.threads;
    if (!rc && jobs > 1 && threads == 0) {
        long nproc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nproc / jobs > 1 ? (int)(nproc / jobs) : 1;
    }
    long next = 0, running = 0;
    while (!rc && (next < total || running > 0)) {
        if (next < total && running < jobs && !cmd_stop_signal) {
            int idx[64] = {0};
            long r = next;
            for (int i = nax - 1; i >= 0; i--)
                idx[i] = (int)(r % ax[i].n), r /= ax[i].n;
            if ((rc = llm_mkdir_p(jb[next].dir)))
                break;
            llm_info("sweep %ld/%ld: %s", next + 1, total, jb[next].name);
            if ((rc = spawn(config, sets, ax, nax, idx, jb[next].dir, threads, &jb[next].pid)))
                break;
            next++, running++;
            continue;
        }
        if (cmd_stop_signal && next < total)
            total = next; /* start no more */
        int st;
        pid_t pid = wait(&st);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (long p = 0; p < next; p++)
            if (jb[p].pid == pid)
                jb[p].status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        running--;
    }
    /* The table. */
    cJSON *arr = cJSON_CreateArray();
    int failed = 0;
    if (!rc && !json) {
        for (int i = 0; i < nax; i++)
            printf("%-16s ", ax[i].key);
        printf("%10s %10s %8s  %s\n", "val_loss", "loss", "steps", "status");
    }
    for (long p = 0; !rc && p < total; p++) {
        char path[4200], *text = NULL;
        size_t n;
        snprintf(path, sizeof(path), "%s/summary.json", jb[p].dir);
        cJSON *s = NULL;
        if (jb[p].status == 0 && !llm_read_file(path, 1 << 20, &text, &n))
            s = cJSON_Parse(text);
        free(text);
        llm_err_clear();
        const cJSON *vl = cJSON_GetObjectItemCaseSensitive(s, "val_loss");
        const cJSON *lo = cJSON_GetObjectItemCaseSensitive(s, "loss");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(s, "step");
        failed += jb[p].status != 0;
        int idx[64] = {0};
        long r = p;
        for (int i = nax - 1; i >= 0; i--)
            idx[i] = (int)(r % ax[i].n), r /= ax[i].n;
        if (json) {
            cJSON *row = cJSON_CreateObject(), *pt = cJSON_CreateObject();
            for (int i = 0; row && pt && i < nax; i++) {
                cJSON *v = cJSON_Parse(ax[i].vals[idx[i]]);
                cJSON_AddItemToObject(pt, ax[i].key, v ? v : cJSON_CreateString(ax[i].vals[idx[i]]));
            }
            cJSON_AddItemToObject(row, "point", pt);
            cJSON_AddStringToObject(row, "out_dir", jb[p].dir);
            cJSON_AddNumberToObject(row, "exit_code", jb[p].status);
            if (s)
                cJSON_AddItemToObject(row, "summary", s), s = NULL;
            cJSON_AddItemToArray(arr, row);
        } else {
            for (int i = 0; i < nax; i++)
                printf("%-16s ", ax[i].vals[idx[i]]);
            printf("%10.4f %10.4f %8.0f  ", cJSON_IsNumber(vl) ? vl->valuedouble : NAN,
                   cJSON_IsNumber(lo) ? lo->valuedouble : NAN, cJSON_IsNumber(sp) ? sp->valuedouble : NAN);
            if (jb[p].status == 0)
                printf("ok\n");
            else
                printf("failed (exit %d, see %s/log.txt)\n", jb[p].status, jb[p].dir);
        }
        cJSON_Delete(s);
    }
    if (!rc && json)
        rc = cmd_print_json(arr);
    cJSON_Delete(arr);
    if (!rc && failed)
        rc = llm_err(LLM_EINVAL, "%d of %ld sweep runs failed", failed, total);
    for (int i = 0; i < nax; i++) {
        for (int k = 0; k < ax[i].n; k++)
            free(ax[i].vals[k]);
        free(ax[i].vals);
    }
    free(ax);
    free(jb);
    return rc;
}

int cmd_pretrain(int argc, char **argv)
{
    struct llm_strlist sets = {0}, sw = {0};
    const char *resume = NULL, *device = NULL;
    int json = 0;
    long jobs = 1, stop_after = 0;
    const struct llm_opt opts[] = {
        {"set", 0, LLM_OPT_LIST, &sets, "PATH=VALUE", "override one config key, e.g. optim.lr=1e-3"},
        {"resume", 0, LLM_OPT_STR, &resume, "DIR|CKPT", "resume from this checkpoint or run folder "
                                                        "(default: the newest checkpoint in train.out_dir)"},
        {"device", 0, LLM_OPT_STR, &device, "D", "cpu, cuda or auto (train.device)"},
        {"sweep", 0, LLM_OPT_LIST, &sw, "KEY=V1,V2", "grid search: run every combination (repeatable)"},
        {"jobs", 'j', LLM_OPT_INT, &jobs, "N", "sweep: runs at a time (default 1)"},
        {"stop-after", 0, LLM_OPT_INT, &stop_after, "N", "stop (with a checkpoint) after N steps of this invocation; "
                                                          "rerun to continue (time-limited jobs)"},
        {"json", 0, LLM_OPT_FLAG, &json, NULL, "print the final summary (or the sweep's table) as JSON on stdout"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "pretrain",
        .usage = "CONFIG.json [--set PATH=VALUE]... [--resume DIR|CKPT] [--sweep KEY=V1,V2]... [-j N] "
                 "[--stop-after N] [--json]",
        .summary = "Train a model from scratch on token shards (data.train), evaluating on data.val.",
        .opts = opts,
        .min_pos = 1,
        .max_pos = 1,
        .epilog = "The run folder (train.out_dir) gets config.json, metrics.jsonl, loss.svg, ckpt_<step>.llm,\n"
                  "final.llm and summary.json. Running the same command again resumes from the newest\n"
                  "checkpoint. SIGINT/SIGTERM finish the step, write a checkpoint and exit (130/143).\n"
                  "With --sweep each point of the grid runs in train.out_dir/KEY=VALUE_..., its log in log.txt.\n"
                  "See docs/train.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    int rc = 0;
    char devset[64];
    const char **all = calloc((size_t)sets.n + 1, sizeof(char *));
    if (!all)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; all && i < sets.n; i++)
        all[i] = sets.v[i];
    int nall = sets.n;
    if (!rc && device) {
        snprintf(devset, sizeof(devset), "train.device=%s", device);
        all[nall++] = devset;
    }
    if (!rc && stop_after < 0)
        rc = llm_err(LLM_EUSAGE, "--stop-after: expected a step count >= 0, got %ld", stop_after);
    if (!rc && jobs < 1)
        rc = llm_err(LLM_EUSAGE, "--jobs: expected a count >= 1, got %ld", jobs);
    if (!rc && sw.n && resume)
        rc = llm_err(LLM_EUSAGE, "--resume cannot be used with --sweep (each point resumes from its own folder)");
    if (!rc && sw.n > 64)
        rc = llm_err(LLM_EUSAGE, "--sweep: at most 64 keys");
    struct llm_config c;
    int loaded = 0;
    if (!rc) {
        rc = llm_config_load(&c, a.pos[0], all, nall);
        loaded = 1;
    }
    int sig = 0;
    if (!rc && sw.n) {
        struct llm_strlist allsets = {all, nall};
        cmd_catch_signals();
        rc = sweep(a.pos[0], &c, &allsets, &sw, jobs, json);
    } else if (!rc) {
        rc = run_one(&c, resume, stop_after, json, &sig);
    }
    if (loaded)
        llm_config_release(&c);
    free(all);
    llm_args_release(&spec, &a);
    if (rc)
        return cmd_fail(&spec, rc);
    return sig ? 128 + sig : 0;
}
