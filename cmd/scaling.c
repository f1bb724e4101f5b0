/* scaling.c: `llm scaling-fit RUNS...` (fit a scaling law to finished runs
 * and predict the compute-optimal model at larger budgets) and `llm
 * scaling-sweep CONFIG` (plan an IsoFLOP grid, run it as child `llm
 * pretrain` processes, then fit). The math is in lib/scaling. */
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
#include "core/jsonl.h"
#include "core/log.h"
#include "core/progress.h"
#include "scaling/fit.h"
#include "scaling/plot.h"
#include "scaling/runs.h"
#include "scaling/sweep.h"

#define MAX_BUDGETS 1000

/* ---- what both commands share: the fit's flags and outputs ---- */

struct fit_flags {
    const char *method, *count, *out, *plot;
    struct llm_strlist budgets;
    long bootstrap, seed;
    double level, delta;
};

#define FIT_OPTS(F, budget_name, budget_help)                                                                   \
    {"method", 0, LLM_OPT_STR, &(F).method, "M", "parametric, isoflop or kaplan (default: parametric; in scaling-sweep isoflop)"},                    \
    {budget_name, 0, LLM_OPT_LIST, &(F).budgets, "C", budget_help},                                            \
    {"bootstrap", 0, LLM_OPT_INT, &(F).bootstrap, "N", "resamples for the intervals (default 1000; 0 = none)"}, \
    {"seed", 0, LLM_OPT_INT, &(F).seed, "S", "seed of the resampling (default 1)"},                             \
    {"level", 0, LLM_OPT_F64, &(F).level, "P", "level of the intervals (default 0.95)"},                        \
    {"delta", 0, LLM_OPT_F64, &(F).delta, "X", "Huber delta of the parametric/kaplan fits (default 1e-3)"},     \
    {"params", 0, LLM_OPT_STR, &(F).count, "KIND", "the parameter count N: total (default) or non-embedding"},      \
    {"plot", 0, LLM_OPT_STR, &(F).plot, "FILE.svg", "draw the runs, the fit and the predictions"}

/* Numbers from "1e21" or "1e21,3e21" arguments (repeatable). */
static int parse_numbers(const struct llm_strlist *l, const char *flag, double *v, int max, int *n)
{
    *n = 0;
    for (int i = 0; i < l->n; i++) {
        const char *s = l->v[i];
        while (1) {
            char *end;
            errno = 0;
            double x = strtod(s, &end);
            if (end == s || (*end && *end != ',') || errno || !isfinite(x) || !(x > 0))
                return llm_err(LLM_EUSAGE, "--%s: expected positive numbers of FLOPs like 1e21 or 1e20,3e20, got "
                               "'%s'", flag, l->v[i]);
            if (*n == max)
                return llm_err(LLM_EUSAGE, "--%s: at most %d values", flag, max);
            v[(*n)++] = x;
            if (!*end)
                break;
            s = end + 1;
        }
    }
    return 0;
}

static int fit_options(const struct fit_flags *F, const char *budget_flag, struct llm_scaling_opts *o,
                       enum llm_scaling_count *count, double *budgets)
{
    memset(o, 0, sizeof(*o));
    int m = llm_scaling_method_parse(F->method);
    if (m < 0)
        return llm_err(LLM_EUSAGE, "--method: expected parametric, isoflop or kaplan, got '%s'", F->method);
    if (F->bootstrap < 0 || F->bootstrap > LLM_SCALING_MAX_BOOTSTRAP)
        return llm_err(LLM_EUSAGE, "--bootstrap: expected 0 to %d, got %ld", LLM_SCALING_MAX_BOOTSTRAP,
                       F->bootstrap);
    if (!(F->level > 0 && F->level < 1))
        return llm_err(LLM_EUSAGE, "--level: expected a number in (0, 1), got %g", F->level);
    if (!(F->delta > 0))
        return llm_err(LLM_EUSAGE, "--delta: expected a positive number, got %g", F->delta);
    if (!strcmp(F->count, "total"))
        *count = LLM_SCALING_COUNT_TOTAL;
    else if (!strcmp(F->count, "non-embedding"))
        *count = LLM_SCALING_COUNT_NON_EMBEDDING;
    else
        return llm_err(LLM_EUSAGE, "--params: expected total or non-embedding, got '%s'", F->count);
    int nb;
    int rc = parse_numbers(&F->budgets, budget_flag, budgets, MAX_BUDGETS, &nb);
    if (rc)
        return rc;
    *o = (struct llm_scaling_opts){.method = (enum llm_scaling_method)m, .bootstrap = (int)F->bootstrap,
                                   .seed = (uint64_t)F->seed, .level = F->level, .huber_delta = F->delta,
                                   .budgets = budgets, .nbudgets = nb};
    return 0;
}

/* Fits, prints the table (stderr), writes the JSON (out, "-" = stdout) and
 * the plot. Outputs are written only after the fit succeeded. */
static int fit_and_write(const struct llm_scaling_runs *r, const struct llm_scaling_opts *o, const char *out,
                         const char *plot)
{
    struct llm_scaling_fit f;
    int rc = llm_scaling_fit_run(&f, r, o);
    cJSON *j = rc ? NULL : llm_scaling_fit_json(&f);
    char *text = j ? cJSON_Print(j) : NULL;
    if (!rc && !text)
        rc = llm_err(LLM_ENOMEM, "out of memory writing the fit");
    if (!rc && llm_log_get_level() >= LLM_LOG_INFO)
        llm_scaling_fit_table(&f, llm_log_stream());
    if (!rc && plot)
        rc = llm_scaling_plot_write(plot, r, &f);
    if (!rc) {
        struct llm_atomic a;
        if (!(rc = llm_atomic_open(&a, out))) {
            size_t n = strlen(text);
            if (!(rc = llm_fwrite(a.f, text, n, out)) && !(rc = llm_fwrite(a.f, "\n", 1, out)))
                rc = llm_atomic_commit(&a);
            if (rc)
                llm_atomic_abort(&a);
        }
    }
    free(text);
    cJSON_Delete(j);
    llm_scaling_fit_release(&f);
    return rc;
}

/* ---- scaling-fit ---- */

int cmd_scaling_fit(int argc, char **argv)
{
    struct fit_flags F = {.method = "parametric", .count = "total", .out = "-", .bootstrap = 1000, .seed = 1,
                          .level = 0.95, .delta = 1e-3};
    const struct llm_opt opts[] = {
        FIT_OPTS(F, "budget", "predict N_opt, D_opt and the loss at C FLOPs (or C1,C2,...)"),
        {"output", 'o', LLM_OPT_STR, &F.out, "FILE.json", "write the fit here (default: stdout)"},
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "scaling-fit",
        .usage = "RUNS... [--method parametric|isoflop|kaplan] [--budget C]... [--bootstrap N] [-o FIT.json] "
                 "[--plot FIT.svg]",
        .summary = "Fit a scaling law to training runs and predict the compute-optimal model at a budget.",
        .opts = opts,
        .min_pos = 1,
        .max_pos = -1,
        .epilog = "RUNS: CSV or JSONL files of runs (N, D, loss and optionally C = FLOPs, default 6ND), '-' for\n"
                  "stdin, or `llm pretrain` run folders (or folders of them, such as a sweep). The fit goes to\n"
                  "stdout (or -o) as JSON, a readable table to stderr. See docs/scaling.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    struct llm_scaling_opts o;
    enum llm_scaling_count count;
    double *budgets = malloc(MAX_BUDGETS * sizeof(double));
    struct llm_scaling_runs r = {0};
    int rc = budgets ? fit_options(&F, "budget", &o, &count, budgets) : llm_err(LLM_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < a.npos; i++)
        rc = llm_scaling_runs_read(&r, a.pos[i], count);
    if (!rc)
        rc = fit_and_write(&r, &o, F.out, F.plot);
    llm_scaling_runs_release(&r);
    free(budgets);
    llm_args_release(&spec, &a);
    return rc ? cmd_fail(&spec, rc) : 0;
}

/* ---- scaling-sweep ---- */

/* SIGINT/SIGTERM (cmd_catch_signals): start no more runs; the running ones
 * get the signal too (same process group on a terminal) and stop with a
 * checkpoint; a second signal kills at once. */

struct sweep_ctx {
    const char *config;
    const struct llm_strlist *sets; /* the user's --set */
    const struct llm_scaling_plan *plan;
    const char *dir;
    int threads;                    /* per run; 0 = the config's */
};

/* Starts `llm pretrain CONFIG --set ...` for point i in its folder. */
static int spawn_point(const struct sweep_ctx *s, int i, pid_t *pid)
{
    char sets[LLM_SCALING_PLAN_SETS][64], run[4200];
    int ns = llm_scaling_plan_sets(s->plan, i, sets);
    snprintf(run, sizeof(run), "%s/%s", s->dir, s->plan->points[i].name);
    const char **all = calloc((size_t)(s->sets->n + ns), sizeof(char *));
    int rc = all ? llm_mkdir_p(run) : llm_err(LLM_ENOMEM, "out of memory");
    for (int j = 0; all && j < s->sets->n; j++)
        all[j] = s->sets->v[j];
    for (int j = 0; all && j < ns; j++)
        all[s->sets->n + j] = sets[j];
    if (!rc)
        rc = cmd_spawn_pretrain(s->config, all, s->sets->n + ns, run, s->threads, pid);
    free(all);
    return rc;
}

/* Runs every point, jobs at a time. status[i] = the exit status (-1 = not run). */
static int run_points(const struct sweep_ctx *s, long jobs, int *status)
{
    const struct llm_scaling_plan *p = s->plan;
    pid_t *pids = calloc((size_t)p->npoints, sizeof(pid_t));
    if (!pids)
        return llm_err(LLM_ENOMEM, "out of memory");
    int next = 0, running = 0, done = 0, rc = 0;
    double t0 = llm_now();
    while (next < p->npoints || running > 0) {
        if (!rc && next < p->npoints && running < jobs && !cmd_stop_signal) {
            const struct llm_scaling_point *q = &p->points[next];
            status[next] = -1;
            llm_info("sweep %d/%d: %s: N %.4g, %.4g tokens, %lld steps", next + 1, p->npoints, q->name,
                     p->sizes[q->size].N, q->tokens, (long long)q->steps);
            if ((rc = spawn_point(s, next, &pids[next])))
                continue; /* wait for the running ones, then fail */
            next++, running++;
            continue;
        }
        if (running == 0)
            break;
        int st;
        pid_t pid = wait(&st);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < next; i++)
            if (pids[i] == pid) {
                status[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                char el[16];
                llm_format_duration(el, sizeof(el), llm_now() - t0);
                int sig = status[i] == 128 + SIGINT || status[i] == 128 + SIGTERM;
                llm_info("sweep: %s %s (%d/%d done, %s)", p->points[i].name,
                         !status[i] ? "finished" : sig ? "stopped by a signal" : "failed", ++done, p->npoints, el);
            }
        running--;
    }
    for (int i = next; i < p->npoints; i++)
        status[i] = -1;
    free(pids);
    return rc;
}

/* The plan as a table on stdout (--dry-run). */
static void print_plan(const struct llm_scaling_plan *p)
{
    printf("%-24s %10s %8s %8s %12s %8s %10s %12s\n", "run", "C", "d_model", "layers", "N", "steps", "tokens",
           "tokens/param");
    for (int i = 0; i < p->npoints; i++) {
        const struct llm_scaling_point *q = &p->points[i];
        const struct llm_scaling_size *z = &p->sizes[q->size];
        printf("%-24s %10.3g %8d %8d %12.0f %8lld %10.0f %12.1f\n", q->name, q->budget, z->d_model, z->n_layers,
               z->N, (long long)q->steps, q->tokens, q->tokens / z->N);
    }
}

/* Reads each finished run (N by count, D and loss from its folder; C is the
 * nominal budget) and writes DIR/runs.jsonl. */
static int collect(const struct sweep_ctx *s, const int *status, enum llm_scaling_count count,
                   struct llm_scaling_runs *r)
{
    const struct llm_scaling_plan *p = s->plan;
    char path[4200];
    snprintf(path, sizeof(path), "%s/runs.jsonl", s->dir);
    struct llm_atomic a;
    int rc = llm_atomic_open(&a, path), failed = 0;
    for (int i = 0; !rc && i < p->npoints; i++) {
        const struct llm_scaling_point *q = &p->points[i];
        char run[4200];
        snprintf(run, sizeof(run), "%s/%s", s->dir, q->name);
        if (status[i] != 0) {
            if (status[i] == 128 + SIGINT || status[i] == 128 + SIGTERM)
                llm_warn("run %s stopped at a checkpoint (exit %d)", q->name, status[i]);
            else if (status[i] > 0)
                llm_warn("run %s failed (exit %d): see %s/log.txt", q->name, status[i], run);
            failed++;
            continue;
        }
        if ((rc = llm_scaling_runs_read(r, run, count)))
            break;
        struct llm_scaling_run *u = &r->v[r->n - 1];
        u->C = q->budget;
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            rc = llm_err(LLM_ENOMEM, "out of memory");
            break;
        }
        cJSON_AddStringToObject(o, "name", q->name);
        cJSON_AddNumberToObject(o, "C", u->C);
        cJSON_AddNumberToObject(o, "N", u->N);
        cJSON_AddNumberToObject(o, "D", u->D);
        cJSON_AddNumberToObject(o, "loss", u->loss);
        cJSON_AddNumberToObject(o, "params", (double)p->sizes[q->size].params);
        cJSON_AddNumberToObject(o, "d_model", p->sizes[q->size].d_model);
        cJSON_AddNumberToObject(o, "n_layers", p->sizes[q->size].n_layers);
        cJSON_AddNumberToObject(o, "steps", (double)q->steps);
        rc = llm_jsonl_write(a.f, o, path);
        cJSON_Delete(o);
    }
    if (!rc)
        rc = llm_atomic_commit(&a);
    else
        llm_atomic_abort(&a);
    if (!rc && failed)
        rc = llm_err(LLM_EINVAL, "%d of %d sweep runs %s (%s has the others); rerun the same command to resume",
                     failed, p->npoints, cmd_stop_signal ? "did not finish" : "failed", path);
    return rc;
}

int cmd_scaling_sweep(int argc, char **argv)
{
    struct fit_flags F = {.method = "isoflop", .count = "total", .bootstrap = 1000, .seed = 1, .level = 0.95,
                          .delta = 1e-3};
    struct llm_strlist sets = {0}, grid = {0};
    const char *sizes = NULL, *dir = NULL, *tpp = NULL;
    long jobs = 1, min_steps = 20;
    int dry = 0;
    const struct llm_opt opts[] = {
        {"budgets", 0, LLM_OPT_LIST, &grid, "C1,C2,...", "compute budgets of the grid in FLOPs (required)"},
        {"sizes", 0, LLM_OPT_STR, &sizes, "CxL,...", "model sizes as d_model x n_layers, e.g. 64x2,128x4 "
                                                     "(required)"},
        {"set", 0, LLM_OPT_LIST, &sets, "PATH=VALUE", "override a config key of every run"},
        {"out", 0, LLM_OPT_STR, &dir, "DIR", "folder of the runs, runs.jsonl, fit.json, fit.svg "
                                             "(default: train.out_dir)"},
        {"jobs", 'j', LLM_OPT_INT, &jobs, "N", "runs at a time (default 1)"},
        {"min-steps", 0, LLM_OPT_INT, &min_steps, "N", "leave out points of fewer optimizer steps (default 20)"},
        {"tokens-per-param", 0, LLM_OPT_STR, &tpp, "MIN,MAX", "leave out points whose D/N is outside this range "
                                                               "(default: none)"},
        {"dry-run", 0, LLM_OPT_FLAG, &dry, NULL, "print the plan and stop"},
        FIT_OPTS(F, "predict", "predict N_opt, D_opt and the loss at C FLOPs (or C1,C2,...)"),
        {0},
    };
    const struct llm_cmd_spec spec = {
        .name = "scaling-sweep",
        .usage = "CONFIG.json --budgets C1,C2,... --sizes CxL,... [--set PATH=VALUE]... [--out DIR] [-j N] "
                 "[--dry-run] [--method M] [--predict C]...",
        .summary = "Plan and run an IsoFLOP grid of small pretrain runs (D = C / 6N each), then fit a scaling law.",
        .opts = opts,
        .min_pos = 1,
        .max_pos = 1,
        .epilog = "Each run trains in DIR/C=<budget>_<d_model>x<layers> (its log in log.txt); rerunning resumes.\n"
                  "DIR gets runs.jsonl (one row per run), fit.json and fit.svg; the fit's JSON also goes to\n"
                  "stdout. The default method here is isoflop. See docs/scaling.md.",
    };
    struct llm_args a;
    int code = cmd_parse(&spec, argc, argv, &a);
    if (code >= 0)
        return code;
    struct llm_scaling_opts o;
    enum llm_scaling_count count;
    double *pred = malloc(MAX_BUDGETS * sizeof(double)), budgets[64];
    int nb = 0, rc = 0, loaded = 0;
    struct llm_config c;
    struct llm_scaling_plan plan = {0};
    struct llm_scaling_runs r = {0};
    int *status = NULL;
    char fit_json[4200], fit_svg[4200];
    if (!pred)
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc)
        rc = fit_options(&F, "predict", &o, &count, pred);
    if (!rc && !grid.n)
        rc = llm_err(LLM_EUSAGE, "--budgets is required (e.g. --budgets 1e12,3e12,1e13)");
    if (!rc && !sizes)
        rc = llm_err(LLM_EUSAGE, "--sizes is required (e.g. --sizes 64x2,96x3,128x4)");
    if (!rc)
        rc = parse_numbers(&grid, "budgets", budgets, 64, &nb);
    if (!rc && jobs < 1)
        rc = llm_err(LLM_EUSAGE, "--jobs: expected a count >= 1, got %ld", jobs);
    if (!rc && min_steps < 1)
        rc = llm_err(LLM_EUSAGE, "--min-steps: expected a count >= 1, got %ld", min_steps);
    double tlo = 0, thi = 0;
    if (!rc && tpp) {
        char *e1, *e2 = NULL;
        tlo = strtod(tpp, &e1);
        if (*e1 == ',')
            thi = strtod(e1 + 1, &e2);
        if (!e2 || e2 == e1 + 1 || *e2 || !(tlo > 0) || !(thi >= tlo) || !isfinite(thi))
            rc = llm_err(LLM_EUSAGE, "--tokens-per-param: expected MIN,MAX with 0 < MIN <= MAX, got '%s'", tpp);
    }
    if (!rc) {
        rc = llm_config_load(&c, a.pos[0], sets.v, sets.n);
        loaded = 1;
    }
    if (!rc && !c.data.val[0])
        rc = llm_err(LLM_EINVAL, "data.val is not set: the fit needs each run's final validation loss");
    if (!rc)
        rc = llm_scaling_plan_init(&plan, &c, budgets, nb, sizes, min_steps, tlo, thi, count);
    /* Every run's config must load before any runs. */
    for (int i = 0; !rc && i < plan.npoints; i++) {
        char ps[LLM_SCALING_PLAN_SETS][64];
        int n = llm_scaling_plan_sets(&plan, i, ps);
        const char **all = calloc((size_t)(sets.n + n), sizeof(char *));
        if (!all) {
            rc = llm_err(LLM_ENOMEM, "out of memory");
            break;
        }
        for (int j = 0; j < sets.n; j++)
            all[j] = sets.v[j];
        for (int j = 0; j < n; j++)
            all[sets.n + j] = ps[j];
        struct llm_config pc;
        if ((rc = llm_config_load(&pc, a.pos[0], all, sets.n + n)))
            llm_err_wrap(rc, "run %s", plan.points[i].name);
        llm_config_release(&pc);
        free(all);
    }
    if (!rc && !dir)
        dir = c.train.out_dir;
    if (!rc) {
        llm_info("sweep: %d runs (%d grid points left out: under %ld steps or outside the tokens-per-param "
                 "range), %lld tokens per step, in %s", plan.npoints, plan.skipped, min_steps,
                 (long long)plan.tokens_per_step, dir);
        if (dry)
            print_plan(&plan);
    }
    if (!rc && !dry) {
        if (snprintf(fit_json, sizeof(fit_json), "%s/fit.json", dir) >= (int)sizeof(fit_json))
            rc = llm_err(LLM_EUSAGE, "--out: path too long");
        snprintf(fit_svg, sizeof(fit_svg), "%s/fit.svg", dir);
        if (!rc)
            rc = llm_mkdir_p(dir);
        if (!rc && !(status = calloc((size_t)plan.npoints, sizeof(int))))
            rc = llm_err(LLM_ENOMEM, "out of memory");
        int threads = c.train.threads;
        if (!rc && jobs > 1 && threads == 0) {
            long nproc = sysconf(_SC_NPROCESSORS_ONLN);
            threads = nproc / jobs > 1 ? (int)(nproc / jobs) : 1;
        }
        struct sweep_ctx s = {.config = a.pos[0], .sets = &sets, .plan = &plan, .dir = dir, .threads = threads};
        if (!rc) {
            cmd_catch_signals();
            rc = run_points(&s, jobs, status);
        }
        if (!rc)
            rc = collect(&s, status, count, &r);
        if (!rc) {
            /* fit.json is written, then copied to stdout, so both hold the same fit. */
            rc = fit_and_write(&r, &o, fit_json, F.plot ? F.plot : fit_svg);
            char *text = NULL;
            size_t n;
            if (!rc && !(rc = llm_read_file(fit_json, 64u << 20, &text, &n)))
                fwrite(text, 1, n, stdout);
            free(text);
        }
    }
    free(status);
    llm_scaling_runs_release(&r);
    llm_scaling_plan_release(&plan);
    if (loaded)
        llm_config_release(&c);
    free(pred);
    llm_args_release(&spec, &a);
    if (rc)
        return cmd_fail(&spec, rc);
    return cmd_stop_signal ? 128 + cmd_stop_signal : 0;
}
