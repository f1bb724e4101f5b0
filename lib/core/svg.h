/* svg.h: line charts as standalone SVG text (loss curves, scaling-law fits)
 * so runs can be plotted without a plotting dependency.
 *
 * A chart has a title, axis labels, 'nice' ticks (1-2-5 steps on linear
 * axes, whole decades on log axes) with grid lines, one color per series
 * (10 colors, then the same colors dashed) and a legend in the top-right
 * corner of the plot area (llm_svg_style changes colors and the corner).
 * Points that cannot be drawn are skipped: NaN or
 * infinite coordinates, and values <= 0 on a log axis; a line series joins
 * the points that remain. The axes span the drawable points (an empty chart
 * gets [0, 1], or [1, 10] on a log axis; equal values get padded), so the
 * output never holds "nan" or "inf". Text is XML-escaped. */
#ifndef LLM_CORE_SVG_H
#define LLM_CORE_SVG_H

#include <stddef.h>

struct llm_svg_series {
    const char *name;    /* in the legend; NULL = "series <i>" */
    const double *x, *y; /* (n) each; borrowed */
    size_t n;
    int markers;         /* 1: dots only, 0: polyline */
};

struct llm_svg_chart {
    const char *title, *xlabel, *ylabel; /* NULL = none */
    int logx, logy;                      /* 1: log10 axis */
    int width, height;                   /* pixels; <= 0 = 720x450 */
};

/* Optional styling (llm_svg_render_styled): series that share a color (data
 * and the curve fitted to it), series kept out of the legend, the legend's
 * corner. Zeroed = the plain chart. */
enum llm_svg_legend { LLM_SVG_LEGEND_TOP_RIGHT, LLM_SVG_LEGEND_TOP_LEFT, LLM_SVG_LEGEND_BOTTOM_LEFT,
                      LLM_SVG_LEGEND_BOTTOM_RIGHT };
struct llm_svg_series_style {
    int color;    /* k > 0: the k-th palette color (k > 10: dashed); 0: by position */
    int nolegend; /* 1: not listed in the legend */
};
struct llm_svg_style {
    enum llm_svg_legend legend;
    const struct llm_svg_series_style *series; /* (ns), or NULL: all by position, all listed */
};

/* The chart of ns series as a malloc'd NUL-terminated string (caller frees);
 * NULL with llm_err on ENOMEM, or EINVAL for a series with n > 0 and no x or y. */
char *llm_svg_render(const struct llm_svg_chart *c, const struct llm_svg_series *s, size_t ns);
/* The same with a style (NULL = llm_svg_render). */
char *llm_svg_render_styled(const struct llm_svg_chart *c, const struct llm_svg_series *s, size_t ns,
                            const struct llm_svg_style *st);
/* Writes SVG text (one chart, or charts composed by the caller) to path
 * atomically (llm_atomic; "-" = stdout). */
int llm_svg_save(const char *path, const char *text);
/* Renders and writes path atomically (llm_atomic; "-" = stdout). */
int llm_svg_write(const char *path, const struct llm_svg_chart *c, const struct llm_svg_series *s, size_t ns);

#endif
