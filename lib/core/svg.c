/* svg.c: the SVG line charts of svg.h: fit two axes to the data, then print
 * frame, grid, ticks, labels, series and legend into a growing string. */
#include "core/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"

/* A growing string; after a failed allocation every append is a no-op and
 * oom stays set, so callers check once at the end. */
struct sb {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_printf(struct sb *b, const char *fmt, ...) LLM_PRINTF(2, 3);
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !b->oom; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->n + (size_t)k)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            b->oom = 1;
        else
            b->p = np, b->cap = cap;
    }
}

/* Text content or attribute value: the XML specials escaped; control
 * characters XML 1.0 cannot hold become '?'. */
static void sb_text(struct sb *b, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        case '\'': sb_printf(b, "&apos;"); break;
        default: sb_printf(b, "%c", c < 0x20 && c != '\t' && c != '\n' && c != '\r' ? '?' : c);
        }
    }
}

#define MAX_TICKS 64

/* One axis, in drawing space (log10 of the value on a log axis). */
struct axis {
    int log;
    double lo, hi; /* lo < hi, finite */
    double step;   /* linear: tick spacing; log: decades between ticks */
    double ticks[MAX_TICKS];
    int nt;
    int sci;       /* log: labels as 1e5 rather than 100000 */
};

static int usable(double v, int log) { return isfinite(v) && (!log || v > 0); }
static double to_space(double v, int log) { return log ? log10(v) : v; }

/* 1, 2 or 5 times a power of ten, the smallest >= r (r > 0). */
static double nice_step(double r)
{
    double p = pow(10, floor(log10(r))), f = r / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/* Fits a to [mn, mx] (drawing space; have = 0 when no point is usable). */
static void axis_fit(struct axis *a, double mn, double mx, int have)
{
    if (!have)
        mn = 0, mx = 1;
    if (a->log) {
        if (mx - mn < 1e-9)
            mn -= 0.5, mx += 0.5;
        a->lo = floor(mn), a->hi = ceil(mx);
        a->step = ceil((a->hi - a->lo) / 10); /* at most ~10 decade labels */
    } else {
        if (mx - mn <= 1e-12 * fmax(fabs(mn), fabs(mx))) { /* all equal: pad */
            double pad = mn != 0 ? fabs(mn) * 0.1 : 1;
            mn -= pad, mx += pad;
        }
        a->step = nice_step((mx - mn) / 5);
        a->lo = floor(mn / a->step) * a->step, a->hi = ceil(mx / a->step) * a->step;
    }
    /* Spans past the doubles (|v| near 1e308) fall back to [0, 1]; their
     * points land off the canvas and are dropped when drawn. */
    if (!isfinite(a->hi - a->lo) || !isfinite(a->step) || !(a->hi > a->lo) || !(a->step > 0))
        a->lo = 0, a->hi = 1, a->step = a->log ? 1 : 0.2;
    a->nt = 0;
    for (int i = 0; a->nt < MAX_TICKS; i++) {
        double t = a->lo + i * a->step;
        if (t > a->hi + 1e-9 * a->step)
            break;
        a->ticks[a->nt++] = fabs(t) < 1e-9 * a->step ? 0 : t; /* no "-2.7e-17" labels */
        /* A log axis of one or two decades also gets 2 and 5 times each. */
        if (a->log && a->hi - a->lo <= 2 && t < a->hi && a->nt + 2 <= MAX_TICKS)
            a->ticks[a->nt++] = t + log10(2), a->ticks[a->nt++] = t + log10(5);
    }
    a->sci = a->log && (a->lo < -3 || a->hi > 4);
}

/* Linear: %g. Log: m * 10^e with m in {1, 2, 5}, as "0.02" or, when the
 * axis reaches past 1e-3 .. 1e4, as "2e-5" on every tick alike. */
static void tick_label(char *buf, size_t n, const struct axis *a, double t)
{
    if (!a->log) {
        snprintf(buf, n, "%.6g", t);
        return;
    }
    int e = (int)floor(t + 1e-9);
    int m = (int)lround(pow(10, t - e));
    if (!a->sci)
        snprintf(buf, n, "%g", m * pow(10, e));
    else if (m == 1)
        snprintf(buf, n, "1e%d", e);
    else
        snprintf(buf, n, "%de%d", m, e);
}

/* Drawing space -> pixels between p0 (at lo) and p1 (at hi). */
static double map(const struct axis *a, double v, double p0, double p1)
{
    return p0 + (v - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

static const char *const colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_COLORS (sizeof(colors) / sizeof(colors[0]))

/* Pixel coordinates of point j of a series, or 0 if it cannot be drawn
 * (skipped values, or far off the canvas after an axis fallback). */
static int point_px(const struct axis *ax, const struct axis *ay, const struct llm_svg_series *s, size_t j,
                    double x0, double x1, double y0, double y1, double *px, double *py)
{
    if (!usable(s->x[j], ax->log) || !usable(s->y[j], ay->log))
        return 0;
    *px = map(ax, to_space(s->x[j], ax->log), x0, x1);
    *py = map(ay, to_space(s->y[j], ay->log), y0, y1);
    return isfinite(*px) && isfinite(*py) && fabs(*px) < 1e6 && fabs(*py) < 1e6;
}

/* The palette slot of series i: its own color, or its position. */
static size_t color_index(const struct llm_svg_style *st, size_t i)
{
    return st->series && st->series[i].color > 0 ? (size_t)st->series[i].color - 1 : i;
}

static int listed(const struct llm_svg_style *st, size_t i) { return !st->series || !st->series[i].nolegend; }

static int check_series(const struct llm_svg_series *s, size_t ns)
{
    for (size_t i = 0; i < ns; i++)
        if (s[i].n && (!s[i].x || !s[i].y))
            return llm_err(LLM_EINVAL, "svg chart: series %zu has %zu points but no x or y", i, s[i].n);
    return 0;
}

char *llm_svg_render(const struct llm_svg_chart *c, const struct llm_svg_series *s, size_t ns)
{
    return llm_svg_render_styled(c, s, ns, NULL);
}

char *llm_svg_render_styled(const struct llm_svg_chart *c, const struct llm_svg_series *s, size_t ns,
                            const struct llm_svg_style *st)
{
    static const struct llm_svg_chart none;
    static const struct llm_svg_style plain;
    if (!c)
        c = &none;
    if (!st)
        st = &plain;
    if (check_series(s, ns))
        return NULL;
    struct axis ax = {.log = !!c->logx}, ay = {.log = !!c->logy};
    double xmn = INFINITY, xmx = -INFINITY, ymn = INFINITY, ymx = -INFINITY;
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < s[i].n; j++) {
            if (!usable(s[i].x[j], ax.log) || !usable(s[i].y[j], ay.log))
                continue;
            double x = to_space(s[i].x[j], ax.log), y = to_space(s[i].y[j], ay.log);
            xmn = fmin(xmn, x), xmx = fmax(xmx, x), ymn = fmin(ymn, y), ymx = fmax(ymx, y);
        }
    int have = xmn <= xmx;
    axis_fit(&ax, xmn, xmx, have);
    axis_fit(&ay, ymn, ymx, have);

    int W = c->width > 0 ? c->width : 720, H = c->height > 0 ? c->height : 450;
    /* Plot area: room for y tick labels on the left, x ticks and label below. */
    double x0 = 72, x1 = fmax(x0 + 10, W - 24), y1 = 40, y0 = fmax(y1 + 10, H - 52);
    struct sb b = {0};
    char lab[48];
    sb_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
              W, H, W, H, W, H);
    if (c->title) {
        sb_printf(&b, "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">", W / 2.0);
        sb_text(&b, c->title);
        sb_printf(&b, "</text>\n");
    }
    /* Grid, tick labels, frame. */
    sb_printf(&b, "<g stroke=\"#e0e0e0\">\n");
    for (int i = 0; i < ax.nt; i++) {
        double p = map(&ax, ax.ticks[i], x0, x1);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", p, y0, p, y1);
    }
    for (int i = 0; i < ay.nt; i++) {
        double p = map(&ay, ay.ticks[i], y0, y1);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x0, p, x1, p);
    }
    sb_printf(&b, "</g>\n<g text-anchor=\"middle\">\n");
    for (int i = 0; i < ax.nt; i++) {
        tick_label(lab, sizeof(lab), &ax, ax.ticks[i]);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", map(&ax, ax.ticks[i], x0, x1), y0 + 16, lab);
    }
    sb_printf(&b, "</g>\n<g text-anchor=\"end\">\n");
    for (int i = 0; i < ay.nt; i++) {
        tick_label(lab, sizeof(lab), &ay, ay.ticks[i]);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x0 - 6, map(&ay, ay.ticks[i], y0, y1) + 4, lab);
    }
    sb_printf(&b, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n",
              x0, y1, x1 - x0, y0 - y1);
    if (c->xlabel) {
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (x0 + x1) / 2, y0 + 38);
        sb_text(&b, c->xlabel);
        sb_printf(&b, "</text>\n");
    }
    if (c->ylabel) {
        double ym = (y0 + y1) / 2;
        sb_printf(&b, "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">", ym, ym);
        sb_text(&b, c->ylabel);
        sb_printf(&b, "</text>\n");
    }
    /* Series: a polyline (dashed past the palette) or a group of dots. */
    for (size_t i = 0; i < ns; i++) {
        const char *col = colors[color_index(st, i) % N_COLORS];
        const char *dash = color_index(st, i) >= N_COLORS ? " stroke-dasharray=\"6 3\"" : "";
        if (s[i].markers)
            sb_printf(&b, "<g fill=\"%s\">\n", col);
        else
            sb_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"", col, dash);
        int first = 1;
        for (size_t j = 0; j < s[i].n; j++) {
            double px, py;
            if (!point_px(&ax, &ay, &s[i], j, x0, x1, y0, y1, &px, &py))
                continue;
            if (s[i].markers)
                sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"/>\n", px, py);
            else
                sb_printf(&b, "%s%.1f,%.1f", first ? "" : " ", px, py);
            first = 0;
        }
        sb_printf(&b, s[i].markers ? "</g>\n" : "\"/>\n");
    }
    /* Legend: in a corner inside the plot area, width from the longest name. */
    size_t nl = 0;
    for (size_t i = 0; i < ns; i++)
        nl += listed(st, i);
    if (nl > 0) {
        size_t w = 0;
        for (size_t i = 0; i < ns; i++) {
            size_t len = !listed(st, i) ? 0 : s[i].name ? strlen(s[i].name) : 10; /* "series <i>" */
            w = len > w ? len : w;
        }
        double lw = 36 + 7.0 * (double)(w > 60 ? 60 : w), lh = 8 + 18.0 * (double)nl;
        int left = st->legend == LLM_SVG_LEGEND_TOP_LEFT || st->legend == LLM_SVG_LEGEND_BOTTOM_LEFT;
        int bottom = st->legend == LLM_SVG_LEGEND_BOTTOM_LEFT || st->legend == LLM_SVG_LEGEND_BOTTOM_RIGHT;
        double lx = left ? x0 + 8 : x1 - 8 - lw, ly = bottom ? y0 - 8 - lh : y1 + 8;
        sb_printf(&b, "<g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" "
                  "fill-opacity=\"0.85\" stroke=\"#999\"/>\n", lx, ly, lw, lh);
        size_t row = 0;
        for (size_t i = 0; i < ns; i++) {
            if (!listed(st, i))
                continue;
            size_t ci = color_index(st, i);
            const char *col = colors[ci % N_COLORS];
            double ry = ly + 16 + 18.0 * (double)row++;
            if (s[i].markers)
                sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", lx + 16, ry - 4, col);
            else
                sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.5\"%s/>\n",
                          lx + 6, ry - 4, lx + 26, ry - 4, col, ci >= N_COLORS ? " stroke-dasharray=\"6 3\"" : "");
            sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">", lx + 32, ry);
            if (s[i].name)
                sb_text(&b, s[i].name);
            else
                sb_printf(&b, "series %zu", i);
            sb_printf(&b, "</text>\n");
        }
        sb_printf(&b, "</g>\n");
    }
    sb_printf(&b, "</svg>\n");
    if (b.oom) {
        free(b.p);
        llm_err(LLM_ENOMEM, "out of memory (svg chart)");
        return NULL;
    }
    return b.p;
}

int llm_svg_save(const char *path, const char *text)
{
    struct llm_atomic a;
    int rc = llm_atomic_open(&a, path);
    if (rc == 0) {
        rc = llm_fwrite(a.f, text, strlen(text), path);
        if (rc == 0)
            rc = llm_atomic_commit(&a);
        if (rc) /* safe after a failed commit too */
            llm_atomic_abort(&a);
    }
    return rc;
}

int llm_svg_write(const char *path, const struct llm_svg_chart *c, const struct llm_svg_series *s, size_t ns)
{
    char *text = llm_svg_render(c, s, ns);
    if (!text)
        return llm_err_wrap(check_series(s, ns) ? LLM_EINVAL : LLM_ENOMEM, "writing '%s'", path);
    int rc = llm_svg_save(path, text);
    free(text);
    return rc;
}
