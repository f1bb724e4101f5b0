/* progress.c: the bar and the plain lines of progress.h. */
#include "progress.h"
#include "log.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void llm_format_count(char *buf, size_t n, double x)
{
    static const char suffix[] = " kMGTP";
    int i = 0;
    while (fabs(x) >= 999.5 && i < 5)
        x /= 1000.0, i++;
    if (i == 0 && x == floor(x))
        snprintf(buf, n, "%.0f", x);
    else if (i == 0)
        snprintf(buf, n, fabs(x) < 9.995 ? "%.2f" : fabs(x) < 99.95 ? "%.1f" : "%.0f", x);
    else
        snprintf(buf, n, x < 9.995 ? "%.2f%c" : x < 99.95 ? "%.1f%c" : "%.0f%c", x, suffix[i]);
}

void llm_format_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 99 * 86400.0) {
        snprintf(buf, n, "--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(buf, n, "%lds", t);
    else if (t < 3600)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
}

void llm_progress_init(struct llm_progress *p, FILE *out, const char *label, const char *unit,
                       uint64_t total, enum llm_progress_mode mode)
{
    memset(p, 0, sizeof(*p));
    p->out = out ? out : stderr;
    p->label = label ? label : "";
    p->unit = unit ? unit : "";
    p->total = total;
    p->interval = 10.0;
    p->width = 24;
    p->clock = llm_now;
    if (mode == LLM_PROGRESS_AUTO) {
        const char *term = getenv("TERM");
        int tty = isatty(fileno(p->out)) && !(term && !strcmp(term, "dumb"));
        mode = tty ? LLM_PROGRESS_BAR : LLM_PROGRESS_LINES;
    }
    if (llm_log_get_level() < LLM_LOG_INFO)
        mode = LLM_PROGRESS_OFF;
    p->mode = mode;
    p->t0 = p->last = p->clock();
}

/* Writes the state into line: "45% 450/1000 merges  12.3 merges/s  ETA 3s  FIELDS". */
static void render(const struct llm_progress *p, double now, char *line, size_t n)
{
    double el = now - p->t0, rate = el > 0 && p->done > p->base ? (double)(p->done - p->base) / el : 0;
    int bytes = !strcmp(p->unit, "B");
    char d[32], t[32], r[32], eta[32];
    llm_format_count(d, sizeof(d), (double)p->done);
    llm_format_count(t, sizeof(t), (double)p->total);
    llm_format_count(r, sizeof(r), rate);
    size_t k = 0;
    if (p->total) {
        double frac = (double)p->done / (double)p->total;
        if (frac > 1)
            frac = 1;
        k += (size_t)snprintf(line + k, n - k, "%3.0f%% %s/%s%s%s", 100 * frac, d, t,
                              bytes ? "" : " ", p->unit);
        if (p->done < p->total && rate > 0)
            llm_format_duration(eta, sizeof(eta), (double)(p->total - p->done) / rate);
        else if (p->done >= p->total)
            llm_format_duration(eta, sizeof(eta), 0);
        else
            snprintf(eta, sizeof(eta), "--");
    } else {
        k += (size_t)snprintf(line + k, n - k, "%s%s%s", d, bytes ? "" : " ", p->unit);
    }
    if (k < n)
        k += (size_t)snprintf(line + k, n - k, "  %s%s%s/s", r, bytes ? "" : " ", p->unit);
    if (k < n && p->total)
        k += (size_t)snprintf(line + k, n - k, "  ETA %s", eta);
    if (k < n) {
        char el_s[32];
        llm_format_duration(el_s, sizeof(el_s), el);
        k += (size_t)snprintf(line + k, n - k, "  %s", el_s);
    }
    if (k < n && p->fields[0])
        snprintf(line + k, n - k, "  %s", p->fields);
}

static void draw(struct llm_progress *p, double now, int final)
{
    char state[512];
    render(p, now, state, sizeof(state));
    if (p->mode == LLM_PROGRESS_BAR) {
        char bar[128];
        int w = p->width < (int)sizeof(bar) - 1 ? p->width : (int)sizeof(bar) - 1;
        if (p->total) {
            double frac = (double)p->done / (double)p->total;
            int fill = (int)(frac > 1 ? w : frac * w);
            memset(bar, '#', (size_t)fill);
            memset(bar + fill, '.', (size_t)(w - fill));
            bar[w] = '\0';
            /* \r returns to column 0, \033[K clears what a longer line left. */
            fprintf(p->out, "\r%s [%s] %s\033[K%s", p->label, bar, state, final ? "\n" : "");
        } else {
            fprintf(p->out, "\r%s %s\033[K%s", p->label, state, final ? "\n" : "");
        }
    } else {
        fprintf(p->out, "%s: %s%s\n", p->label, state, final ? " (done)" : "");
    }
    fflush(p->out);
    p->last = now;
    p->ever_drawn = 1;
}

void llm_progress_set(struct llm_progress *p, uint64_t done)
{
    p->done = done;
    if (p->mode == LLM_PROGRESS_OFF)
        return;
    double now = p->clock();
    double every = p->mode == LLM_PROGRESS_BAR ? 0.1 : p->interval;
    if (now - p->last >= every)
        draw(p, now, 0);
}

void llm_progress_add(struct llm_progress *p, uint64_t n) { llm_progress_set(p, p->done + n); }

void llm_progress_fields(struct llm_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->fields, sizeof(p->fields), fmt, ap);
    va_end(ap);
}

void llm_progress_finish(struct llm_progress *p)
{
    if (p->mode == LLM_PROGRESS_OFF)
        return;
    double now = p->clock();
    /* Quick work gets no progress at all: a summary only after a report or 2 s. */
    if (p->ever_drawn || now - p->t0 >= 2.0)
        draw(p, now, 1);
    p->mode = LLM_PROGRESS_OFF; /* finish is final: later updates draw nothing */
}
