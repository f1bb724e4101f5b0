/* plot.c: the two charts of plot.h, side by side in one SVG (each chart is
 * an svg.h chart nested in a translated group). */
#include "scaling/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/svg.h"

#define CURVE 64   /* points per drawn curve */
#define W 720      /* pixels per chart */
#define H 450

/* Budget g's palette slot: the palette without red (4: predictions) and
 * gray (8: optima), so those stand out. */
static int budget_color(int g)
{
    static const int slots[8] = {1, 2, 3, 5, 6, 7, 9, 10};
    return slots[g % 8] + 10 * (g >= 8); /* past 8 budgets: the same colors, dashed */
}
#define COLOR_OPT 8
#define COLOR_PRED 4

/* The series of one chart with their styles. */
struct chart {
    struct llm_svg_series *s;
    struct llm_svg_series_style *st;
    int n;
};

static void add(struct chart *c, struct llm_svg_series s, int color, int nolegend)
{
    c->s[c->n] = s;
    c->st[c->n++] = (struct llm_svg_series_style){.color = color, .nolegend = nolegend};
}

/* v[0..n) log-spaced from lo to hi. */
static void logspace(double *v, int n, double lo, double hi)
{
    for (int i = 0; i < n; i++)
        v[i] = exp(log(lo) + (log(hi) - log(lo)) * i / (n - 1));
}

/* Chart 1: loss against N. */
static char *loss_chart(const struct llm_scaling_runs *r, const struct llm_scaling_fit *f, double *buf,
                        struct chart *ch, char (*names)[48])
{
    int G = f->nbudgets;
    double *p = buf;
    double Cmax = 0;
    for (int g = 0; g < G; g++) {
        const struct llm_scaling_budget *u = &f->budgets[g];
        Cmax = fmax(Cmax, u->C);
        double *x = p, *y = p + r->n, lo = INFINITY, hi = 0;
        size_t k = 0;
        for (size_t i = 0; i < r->n; i++)
            if (f->group[i] == g) {
                x[k] = r->v[i].N, y[k++] = r->v[i].loss;
                lo = fmin(lo, r->v[i].N), hi = fmax(hi, r->v[i].N);
            }
        p += 2 * r->n;
        snprintf(names[g], sizeof(names[g]), "C = %.3g", u->C);
        add(ch, (struct llm_svg_series){.name = names[g], .x = x, .y = y, .n = k, .markers = 1}, budget_color(g), 0);
        /* The fitted IsoFLOP curve over the sizes run, widened a little. */
        double *cx = p, *cy = p + CURVE;
        p += 2 * CURVE;
        logspace(cx, CURVE, lo / 1.5, hi * 1.5);
        int have = f->method != LLM_SCALING_ISOFLOP || u->used;
        for (int j = 0; j < CURVE; j++) {
            double t = log(cx[j]);
            cy[j] = f->method == LLM_SCALING_ISOFLOP ? u->parabola[0] + u->parabola[1] * t + u->parabola[2] * t * t
                                                     : llm_scaling_fit_loss(f, cx[j], u->C / (6 * cx[j]));
        }
        add(ch, (struct llm_svg_series){.x = cx, .y = cy, .n = have ? CURVE : 0}, budget_color(g), 1);
    }
    /* Each budget's optimum. */
    double *ox = p, *oy = p + G;
    p += 2 * G;
    for (int g = 0; g < G; g++)
        ox[g] = f->budgets[g].N_opt, oy[g] = f->budgets[g].loss;
    add(ch, (struct llm_svg_series){.name = "optimum per budget", .x = ox, .y = oy, .n = (size_t)G, .markers = 1},
        COLOR_OPT, 0);
    /* The compute-optimal frontier from the smallest budget to the largest
     * budget or prediction. */
    for (int j = 0; j < f->npred; j++)
        Cmax = fmax(Cmax, f->pred[j].C);
    double *fc = p, *fx = p + CURVE, *fy = p + 2 * CURVE, dd;
    p += 3 * CURVE;
    logspace(fc, CURVE, G ? f->budgets[0].C : 1, Cmax);
    for (int j = 0; j < CURVE; j++)
        llm_scaling_fit_optimum(f, fc[j], &fx[j], &dd, &fy[j]);
    add(ch, (struct llm_svg_series){.name = "compute-optimal", .x = fx, .y = fy, .n = CURVE}, COLOR_OPT, 0);
    double *px = p, *py = p + f->npred;
    for (int j = 0; j < f->npred; j++)
        px[j] = f->pred[j].N_opt.v, py[j] = f->pred[j].loss.v;
    add(ch, (struct llm_svg_series){.name = "prediction", .x = px, .y = py, .n = (size_t)f->npred, .markers = 1},
        COLOR_PRED, 0);
    char title[96];
    snprintf(title, sizeof(title), "loss per compute budget (%s fit)", llm_scaling_method_name(f->method));
    struct llm_svg_chart c = {.title = title, .xlabel = "parameters N", .ylabel = "loss (nats/token)", .logx = 1,
                              .width = W, .height = H};
    struct llm_svg_style st = {.legend = LLM_SVG_LEGEND_BOTTOM_LEFT, .series = ch->st};
    return llm_svg_render_styled(&c, ch->s, (size_t)ch->n, &st);
}

/* Chart 2: N_opt and D_opt against C. */
static char *optimum_chart(const struct llm_scaling_fit *f, double *buf, struct chart *ch)
{
    int G = f->nbudgets;
    double *c = buf, *n = c + G, *d = n + G, *lc = d + G, *ln = lc + CURVE, *ld = ln + CURVE, *pc = ld + CURVE;
    double *pv = pc + 2 * (size_t)f->npred, Cmax = 0, dummy;
    for (int g = 0; g < G; g++)
        c[g] = f->budgets[g].C, n[g] = f->budgets[g].N_opt, d[g] = f->budgets[g].D_opt, Cmax = fmax(Cmax, c[g]);
    for (int j = 0; j < f->npred; j++) {
        pc[2 * j] = pc[2 * j + 1] = f->pred[j].C;
        pv[2 * j] = f->pred[j].N_opt.v, pv[2 * j + 1] = f->pred[j].D_opt.v;
        Cmax = fmax(Cmax, f->pred[j].C);
    }
    logspace(lc, CURVE, G ? c[0] : 1, Cmax);
    for (int j = 0; j < CURVE; j++)
        llm_scaling_fit_optimum(f, lc[j], &ln[j], &ld[j], &dummy);
    ch->n = 0;
    add(ch, (struct llm_svg_series){.name = "N_opt per budget", .x = c, .y = n, .n = (size_t)G, .markers = 1}, 1, 0);
    add(ch, (struct llm_svg_series){.name = "N_opt = G (C/6)^a", .x = lc, .y = ln, .n = CURVE}, 1, 0);
    add(ch, (struct llm_svg_series){.name = "D_opt per budget", .x = c, .y = d, .n = (size_t)G, .markers = 1}, 2, 0);
    add(ch, (struct llm_svg_series){.name = "D_opt = (C/6) / N_opt", .x = lc, .y = ld, .n = CURVE}, 2, 0);
    add(ch, (struct llm_svg_series){.name = "prediction", .x = pc, .y = pv, .n = 2 * (size_t)f->npred, .markers = 1},
        COLOR_PRED, 0);
    struct llm_svg_chart c2 = {.title = "compute-optimal allocation", .xlabel = "compute C (FLOPs)",
                               .ylabel = "parameters / tokens", .logx = 1, .logy = 1, .width = W, .height = H};
    struct llm_svg_style st = {.legend = LLM_SVG_LEGEND_BOTTOM_RIGHT, .series = ch->st};
    return llm_svg_render_styled(&c2, ch->s, (size_t)ch->n, &st);
}

char *llm_scaling_plot_render(const struct llm_scaling_runs *r, const struct llm_scaling_fit *f)
{
    int G = f->nbudgets, P = f->npred;
    size_t nd = 2 * r->n * (size_t)G + 2 * CURVE * (size_t)G + 2 * (size_t)G + 3 * CURVE + 2 * (size_t)P;
    size_t nd2 = 3 * (size_t)G + 3 * CURVE + 4 * (size_t)P;
    double *buf = malloc((nd + nd2) * sizeof(double));
    struct llm_svg_series *s = malloc((2 * (size_t)G + 8) * sizeof(*s));
    struct llm_svg_series_style *st = malloc((2 * (size_t)G + 8) * sizeof(*st));
    char(*names)[48] = malloc((size_t)(G ? G : 1) * sizeof(*names));
    char *left = NULL, *right = NULL, *out = NULL;
    struct chart ch = {.s = s, .st = st};
    if (buf && s && st && names && (left = loss_chart(r, f, buf, &ch, names)) &&
        (right = optimum_chart(f, buf + nd, &ch))) {
        const char *fmt = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n"
                          "<g>\n%s</g>\n<g transform=\"translate(%d,0)\">\n%s</g>\n</svg>\n";
        size_t n = strlen(left) + strlen(right) + 256;
        if ((out = malloc(n)))
            snprintf(out, n, fmt, 2 * W, H, 2 * W, H, left, W, right);
    }
    if (!out)
        llm_err(LLM_ENOMEM, "out of memory drawing the scaling fit");
    free(left), free(right), free(buf), free(s), free(st), free(names);
    return out;
}

int llm_scaling_plot_write(const char *path, const struct llm_scaling_runs *r, const struct llm_scaling_fit *f)
{
    char *text = llm_scaling_plot_render(r, f);
    if (!text)
        return llm_err_wrap(LLM_ENOMEM, "writing '%s'", path);
    int rc = llm_svg_save(path, text);
    free(text);
    return rc;
}
