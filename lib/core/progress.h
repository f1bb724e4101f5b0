/* progress.h: progress of long work on stderr. On a terminal a live bar
 * (percent, count, rate, ETA and custom fields such as loss or tokens/s),
 * redrawn at most 10 times a second; otherwise (a file, a CI log) one plain
 * line every `interval` seconds and a final line. Quiet when the log level
 * is below info. */
#ifndef LLM_CORE_PROGRESS_H
#define LLM_CORE_PROGRESS_H

#include <stdint.h>
#include <stdio.h>
#include "err.h"

enum llm_progress_mode {
    LLM_PROGRESS_AUTO,  /* bar if the stream is a terminal, else lines */
    LLM_PROGRESS_BAR,
    LLM_PROGRESS_LINES,
    LLM_PROGRESS_OFF,
};

struct llm_progress {
    FILE *out;              /* borrowed; stderr by default */
    const char *label;      /* "train", "tokenize" (borrowed) */
    const char *unit;       /* "B" is shown with k/M/G and a rate in B/s; else counted */
    uint64_t total;         /* 0 when unknown: no percent, bar or ETA */
    uint64_t done;
    uint64_t base;          /* done before this process started (a resumed run): not in the rate */
    enum llm_progress_mode mode; /* resolved: BAR, LINES or OFF */
    double interval;        /* seconds between plain lines (default 10) */
    double t0, last;        /* start and last draw (clock seconds) */
    int width;              /* bar width in characters */
    int ever_drawn;         /* something was printed (finish then prints the summary) */
    char fields[256];       /* custom fields, shown after the rate */
    double (*clock)(void);  /* time source: llm_now unless a test sets it */
};

/* Starts a progress report; nothing is printed until the first update. */
void llm_progress_init(struct llm_progress *p, FILE *out, const char *label, const char *unit,
                       uint64_t total, enum llm_progress_mode mode);
/* Sets the count done (and redraws when due). */
void llm_progress_set(struct llm_progress *p, uint64_t done);
void llm_progress_add(struct llm_progress *p, uint64_t n);
/* Replaces the custom fields ("loss 3.21  tok/s 12.3k"); shown at the next draw. */
void llm_progress_fields(struct llm_progress *p, const char *fmt, ...) LLM_PRINTF(2, 3);
/* Draws the final state and ends the bar's line, if anything was shown
 * before or the work took 2 s or more (quick work stays silent). */
void llm_progress_finish(struct llm_progress *p);

/* "12.3k", "4.56M", "7.89G" (SI); "999" below 1000. */
void llm_format_count(char *buf, size_t n, double x);
/* "59s", "3m07s", "2h05m", "--" for unknown or negative. */
void llm_format_duration(char *buf, size_t n, double seconds);

#endif
