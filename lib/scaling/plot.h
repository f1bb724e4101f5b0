/* plot.h: the picture of a scaling fit as one SVG file (lib/core/svg.h, no
 * plotting dependency): on the left the runs' loss against N per compute
 * budget with the fitted IsoFLOP curves (the law at D = C / 6N, or the
 * parabolas of the isoflop method), each budget's optimum, the
 * compute-optimal frontier and the predicted optima; on the right N_opt and
 * D_opt against C with their power laws. */
#ifndef LLM_SCALING_PLOT_H
#define LLM_SCALING_PLOT_H

#include "scaling/fit.h"
#include "scaling/runs.h"

/* The SVG text (malloc'd, caller frees), or NULL with llm_err (ENOMEM). f
 * must be the fit of r. */
char *llm_scaling_plot_render(const struct llm_scaling_runs *r, const struct llm_scaling_fit *f);
/* Renders and writes path atomically ("-" = stdout). */
int llm_scaling_plot_write(const char *path, const struct llm_scaling_runs *r, const struct llm_scaling_fit *f);

#endif
