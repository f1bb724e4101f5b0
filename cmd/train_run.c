/* train_run.c: what the training commands (pretrain, sft, dpo, grpo) share
 * around the loop of lib/train: SIGINT/SIGTERM handling, the progress bar,
 * the closing log line and the --json summary (declared in cmd.h). */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <spawn.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "core/log.h"
#include "core/progress.h"

volatile sig_atomic_t cmd_stop_signal;

static void on_signal(int sig) { cmd_stop_signal = sig; }

void cmd_catch_signals(void)
{
    /* The first SIGINT/SIGTERM asks the loop to stop after the step (and a
     * checkpoint); the handler resets itself, so a second one kills at once. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cmd_print_json(const cJSON *j)
{
    char *s = cJSON_Print(j);
    if (!s)
        return llm_err(LLM_ENOMEM, "out of memory");
    printf("%s\n", s);
    free(s);
    return 0;
}

struct display {
    struct llm_progress bar;
    double val;  /* the last validation loss */
    int started;
};

static void on_step(void *ctx, const struct llm_train_report *r)
{
    struct display *d = ctx;
    char tps[16];
    if (!d->started++)
        d->bar.base = (uint64_t)r->step - 1; /* resumed: the rate counts this process's steps */
    if (isfinite(r->val_loss))
        d->val = r->val_loss;
    llm_format_count(tps, sizeof(tps), isfinite(r->tokens_per_s) ? r->tokens_per_s : 0);
    char val[32] = "";
    if (isfinite(d->val))
        snprintf(val, sizeof(val), "  val %.4f", d->val);
    char mfu[24] = "";
    if (isfinite(r->mfu))
        snprintf(mfu, sizeof(mfu), "  mfu %.0f%%", 100 * r->mfu);
    llm_progress_fields(&d->bar, "loss %.4f%s  tok/s %s%s", r->loss, val, tps, mfu);
    llm_progress_set(&d->bar, (uint64_t)r->step);
}

int cmd_train(const struct cmd_train_run *t, int *sig)
{
    const struct llm_config *c = t->c;
    struct display d = {.val = NAN};
    llm_progress_init(&d.bar, stderr, t->label, "steps", (uint64_t)c->train.steps, LLM_PROGRESS_AUTO);
    struct llm_train_opts o = {
        .cfg = c, .resume = t->resume, .stop = &cmd_stop_signal, .extra_header = t->extra_header,
        .on_step = on_step, .on_step_ctx = &d, .stop_after = t->stop_after,
    };
    struct llm_train_summary s;
    cmd_catch_signals();
    int rc = llm_train_run(t->m, t->task, &o, &s);
    llm_progress_finish(&d.bar);
    *sig = 0;
    if (rc)
        return rc;
    cJSON *j = llm_train_summary_json(&s);
    if (j && t->summary)
        t->summary(t->summary_ctx, j);
    if (s.already_done)
        llm_info("%s: the run is complete (step %lld of %lld); nothing to do", c->train.out_dir,
                 (long long)s.step, (long long)s.steps);
    else
        llm_info("%s step %lld/%lld: loss %.4f, val loss %.4f, %.0f tok/s, mfu %.1f%%, %.1f s%s", c->train.out_dir,
                 (long long)s.step, (long long)s.steps, s.loss, s.val_loss, s.tokens_per_s, 100 * s.mfu,
                 s.elapsed_s, !s.interrupted ? "" : cmd_stop_signal ? " (stopped by a signal; resume with the same command)"
                                                                    : " (--stop-after; resume with the same command)");
    if (t->json)
        rc = j ? cmd_print_json(j) : LLM_ENOMEM;
    cJSON_Delete(j);
    *sig = s.interrupted ? (int)cmd_stop_signal : 0;
    return rc;
}

extern char **environ;

int cmd_spawn_pretrain(const char *config, const char *const *sets, int nsets, const char *dir, int threads,
                       pid_t *pid)
{
    char out_dir[4200], log[4200], thr[32];
    snprintf(out_dir, sizeof(out_dir), "train.out_dir=%s", dir);
    snprintf(log, sizeof(log), "%s/log.txt", dir);
    snprintf(thr, sizeof(thr), "train.threads=%d", threads);
    const char **av = calloc((size_t)(2 * nsets + 8), sizeof(char *));
    if (!av)
        return llm_err(LLM_ENOMEM, "out of memory");
    int k = 0;
    av[k++] = "llm", av[k++] = "pretrain", av[k++] = config;
    for (int j = 0; j < nsets; j++)
        av[k++] = "--set", av[k++] = sets[j];
    av[k++] = "--set", av[k++] = out_dir;
    if (threads > 0)
        av[k++] = "--set", av[k++] = thr;
    av[k] = NULL;
    posix_spawn_file_actions_t fa;
    int rc = 0, have_fa = !posix_spawn_file_actions_init(&fa);
    if (!have_fa || posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) ||
        posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644))
        rc = llm_err(LLM_ENOMEM, "out of memory");
    if (!rc) {
        fflush(NULL);
        int e = posix_spawn(pid, "/proc/self/exe", &fa, NULL, (char *const *)av, environ);
        if (e)
            rc = llm_err(LLM_EIO, "cannot start a run: %s", strerror(e));
    }
    if (have_fa)
        posix_spawn_file_actions_destroy(&fa);
    free(av);
    return rc;
}
