/* runs.h: the training runs a scaling law is fitted to: (N parameters, D
 * tokens, C FLOPs, final loss) read from CSV, JSON Lines, or the run folders
 * `llm pretrain` writes (summary.json + config.json), and grouped into
 * compute budgets for IsoFLOP analysis. */
#ifndef LLM_SCALING_RUNS_H
#define LLM_SCALING_RUNS_H

#include <stddef.h>

struct llm_scaling_run {
    double N;    /* parameters */
    double D;    /* training tokens */
    double C;    /* training FLOPs: given, or 6 N D (Kaplan et al. 2020 sec. 2.1) */
    double loss; /* final validation loss (nats per token) */
};

/* Owns v (malloc'd); free with llm_scaling_runs_release. */
struct llm_scaling_runs {
    struct llm_scaling_run *v;
    size_t n, cap;
};

/* Which parameter count a run folder's N is: every tensor (as Hoffmann et
 * al. 2022 count, and what summary.json holds) or without the embedding
 * lookups (Kaplan et al. 2020). */
enum llm_scaling_count { LLM_SCALING_COUNT_TOTAL, LLM_SCALING_COUNT_NON_EMBEDDING };

/* Appends the runs of path to r (r zeroed or holding runs already):
 *   - a folder with summary.json: one run of `llm pretrain` (N = params of
 *     its config.json by `count`, D = tokens, loss = val_loss; C = 6 N D);
 *   - a folder without one: every subfolder that has one (a sweep), in name order;
 *   - a file ("-" = stdin): JSON Lines when its first non-blank character is
 *     '{', else CSV with a header row naming the columns N, D, loss and
 *     optionally C (any order, other columns ignored, '#' lines skipped).
 * Every value must be a finite positive number (an empty or absent C means
 * 6 N D). Errors name the file and line: LLM_EIO, LLM_EFORMAT, LLM_EINVAL,
 * LLM_ENOMEM; on error r keeps only the runs it had before. */
int llm_scaling_runs_read(struct llm_scaling_runs *r, const char *path, enum llm_scaling_count count);
/* Appends one run; C <= 0 or NaN means 6 N D. LLM_EINVAL for a value that
 * is not finite and positive (what names it in the message), LLM_ENOMEM. */
int llm_scaling_runs_add(struct llm_scaling_runs *r, double N, double D, double C, double loss, const char *what);
void llm_scaling_runs_release(struct llm_scaling_runs *r);

/* Relative width of one compute budget: runs whose C lie within this factor
 * of the smallest C of their group share a budget (so 6 N D with N and D
 * rounded to whole steps still groups with the nominal budget). */
#define LLM_SCALING_BUDGET_TOL 1.1

/* Groups the runs by compute budget: sorted by C, a run starts a new group
 * when its C exceeds the group's first C by more than LLM_SCALING_BUDGET_TOL.
 * group[i] = the group of run i (0 = smallest budget), Cg[k] = the geometric
 * mean of group k's C (both caller-allocated, n long). Returns the number of
 * groups, or a negative code (LLM_ENOMEM). */
int llm_scaling_group_budgets(const struct llm_scaling_runs *r, int *group, double *Cg);

#endif
