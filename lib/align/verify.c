/* verify.c: the verifiers of GRPO/PPO (exact answer, regex, format tags, an external command) and their
 * weighted sum: the "verifiable rewards" of RLVR (Lambert et al. 2024, Tulu 3; DeepSeek-AI 2025, R1). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pcre2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "align/verify.h"
#include "core/err.h"
#include "core/log.h"
#include "core/str.h"
#include "eval/answer.h"

#define DEFAULT_TIMEOUT_S 60.0
#define DEFAULT_FORMAT_TAGS "<answer>,</answer>"
#define MAX_OUTPUT (64u << 20) /* bytes a command may print: n numbers need far less */
#define STDERR_KEEP 4096       /* bytes of a command's stderr kept for messages */

enum term_kind { TERM_EXACT, TERM_REGEX, TERM_FORMAT, TERM_COMMAND, TERM_KINDS };
static const char *const kind_names[TERM_KINDS] = {"exact", "regex", "format", "command"};

struct term {
    enum term_kind kind;
    double weight;
    double *rewards; /* (cap) unweighted rewards of the last call */
};

struct llm_verifier {
    struct term terms[TERM_KINDS]; /* in spec order; each kind at most once */
    int nterms;
    int cap;                       /* items the reward arrays hold */
    char *marker;                  /* exact: NULL = the last number */
    pcre2_code *re;                /* regex */
    pcre2_match_data *md;
    char *open, *close;            /* format */
    char **argv;                   /* command: argc strings + NULL, argv[0] as given */
    int argc;
    char *exe;                     /* command: argv[0] resolved to a path */
    double timeout_s;
};

/* ---- the spec: "name[:weight],..." ---- */

static int parse_weight(const char *term, const char *s, double *w)
{
    char *end;
    errno = 0;
    *w = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(*w))
        return llm_err(LLM_EUSAGE, "verifier term '%s': the weight '%s' is not a finite number", term, s);
    return 0;
}

/* One term of the spec, given as its trimmed text. */
static int add_term(struct llm_verifier *v, const char *text)
{
    char name[64];
    const char *colon = strchr(text, ':');
    size_t nlen = colon ? (size_t)(colon - text) : strlen(text);
    while (nlen && isspace((unsigned char)text[nlen - 1]))
        nlen--;
    if (nlen == 0 || nlen >= sizeof(name))
        return llm_err(LLM_EUSAGE, "verifier term '%s': expected name[:weight] with name exact, regex, format "
                       "or command", text);
    memcpy(name, text, nlen);
    name[nlen] = 0;
    int kind = -1;
    for (int k = 0; k < TERM_KINDS; k++)
        if (!strcmp(name, kind_names[k]))
            kind = k;
    if (kind < 0) {
        const char *near = llm_str_closest(name, kind_names, TERM_KINDS);
        return llm_err(LLM_EUSAGE, "verifier term '%s': unknown verifier '%s' (exact, regex, format or command)%s%s%s",
                       text, name, near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
    }
    for (int t = 0; t < v->nterms; t++)
        if (v->terms[t].kind == (enum term_kind)kind)
            return llm_err(LLM_EUSAGE, "verifier term '%s': '%s' is given twice", text, name);
    double w = 1;
    if (colon) {
        const char *ws = colon + 1;
        while (isspace((unsigned char)*ws))
            ws++;
        int rc = parse_weight(text, ws, &w);
        if (rc)
            return rc;
    }
    v->terms[v->nterms++] = (struct term){.kind = (enum term_kind)kind, .weight = w};
    return 0;
}

static int parse_spec(struct llm_verifier *v, const char *spec)
{
    char *copy = llm_strdup(spec);
    if (!copy)
        return LLM_ENOMEM;
    int rc = 0, nseg = 0;
    for (char *seg = copy, *next; !rc && seg; seg = next, nseg++) {
        if ((next = strchr(seg, ',')))
            *next++ = 0;
        while (isspace((unsigned char)*seg))
            seg++;
        char *e = seg + strlen(seg);
        while (e > seg && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (*seg)
            rc = add_term(v, seg);
        else if (nseg == 0 || !next) /* "", ",exact" or "exact," */
            rc = llm_err(LLM_EUSAGE, "verifier spec '%s': expected comma-separated name[:weight] terms, e.g. "
                         "\"exact\" or \"exact:1,format:0.2\"", spec);
        else
            rc = llm_err(LLM_EUSAGE, "verifier spec '%s': an empty term", spec);
    }
    free(copy);
    return rc;
}

/* ---- what each kind needs ---- */

static int setup_regex(struct llm_verifier *v, const char *pattern)
{
    if (!pattern || !*pattern)
        return llm_err(LLM_EUSAGE, "verifier term 'regex': no pattern given");
    int code;
    PCRE2_SIZE off;
    /* MATCH_INVALID_UTF: a completion with invalid UTF-8 is matched where it is valid instead of
     * making pcre2_match fail */
    v->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &code,
                          &off, NULL);
    if (!v->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return llm_err(LLM_EUSAGE, "verifier term 'regex': '%s': %s at offset %zu", pattern, (char *)msg,
                       (size_t)off);
    }
    if (!(v->md = pcre2_match_data_create_from_pattern(v->re, NULL)))
        return llm_err(LLM_ENOMEM, "out of memory compiling the regex verifier");
    return 0;
}

static int setup_format(struct llm_verifier *v, const char *tags)
{
    if (!tags || !*tags)
        tags = DEFAULT_FORMAT_TAGS;
    const char *comma = strchr(tags, ',');
    if (!comma || comma == tags || !comma[1])
        return llm_err(LLM_EUSAGE, "verifier term 'format': expected tags \"open,close\" like \"%s\", got '%s'",
                       DEFAULT_FORMAT_TAGS, tags);
    size_t n = (size_t)(comma - tags);
    if (!(v->open = llm_malloc(n + 1, "format tags")) || !(v->close = llm_strdup(comma + 1)))
        return LLM_ENOMEM;
    memcpy(v->open, tags, n);
    v->open[n] = 0;
    return 0;
}

/* 1 if path is a regular file we may execute. */
static int executable(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode) && !access(path, X_OK);
}

/* argv[0] as execvp would find it: itself when it holds a '/', else the first executable PATH entry. */
static int resolve_exe(const char *prog, char **out)
{
    *out = NULL;
    if (strchr(prog, '/')) {
        if (!executable(prog))
            return llm_err(LLM_EUSAGE, "verifier term 'command': '%s' is not an executable file", prog);
        return (*out = llm_strdup(prog)) ? 0 : LLM_ENOMEM;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    size_t plen = strlen(prog);
    for (const char *d = path; *d;) {
        size_t dlen = strcspn(d, ":");
        char *cand = llm_malloc(dlen + plen + 3, "a path");
        if (!cand)
            return LLM_ENOMEM;
        /* an empty entry is the current folder, as for execvp */
        snprintf(cand, dlen + plen + 3, "%.*s/%s", (int)(dlen ? dlen : 1), dlen ? d : ".", prog);
        if (executable(cand)) {
            *out = cand;
            return 0;
        }
        free(cand);
        d += dlen + (d[dlen] == ':');
    }
    return llm_err(LLM_EUSAGE, "verifier term 'command': '%s' is not an executable file (not found on PATH)", prog);
}

static int setup_command(struct llm_verifier *v, const struct llm_verifier_opts *o)
{
    if (!o || !o->argv || o->argc < 1 || !o->argv[0] || !o->argv[0][0])
        return llm_err(LLM_EUSAGE, "verifier term 'command': no program given (argv is empty)");
    double t = o->timeout_s ? o->timeout_s : DEFAULT_TIMEOUT_S;
    if (!(t > 0) || !isfinite(t) || t > 1e6)
        return llm_err(LLM_EUSAGE, "verifier term 'command': the timeout must be in (0, 1e6] seconds, got %g", t);
    v->timeout_s = t;
    if (!(v->argv = llm_calloc((size_t)o->argc + 1, sizeof(char *), "command arguments")))
        return LLM_ENOMEM;
    v->argc = o->argc;
    for (int i = 0; i < o->argc; i++)
        if (!o->argv[i] || !(v->argv[i] = llm_strdup(o->argv[i])))
            return o->argv[i] ? LLM_ENOMEM : llm_err(LLM_EUSAGE, "verifier term 'command': argv[%d] is NULL", i);
    return resolve_exe(v->argv[0], &v->exe);
}

int llm_verifier_new(struct llm_verifier **out, const char *spec, const struct llm_verifier_opts *o)
{
    *out = NULL;
    if (!spec)
        return llm_err(LLM_EUSAGE, "no verifier spec given");
    struct llm_verifier *v = llm_calloc(1, sizeof(*v), "a verifier");
    if (!v)
        return LLM_ENOMEM;
    int rc = parse_spec(v, spec);
    for (int t = 0; !rc && t < v->nterms; t++) {
        switch (v->terms[t].kind) {
        case TERM_EXACT:
            if (o && o->marker && *o->marker && !(v->marker = llm_strdup(o->marker)))
                rc = LLM_ENOMEM;
            break;
        case TERM_REGEX:
            rc = setup_regex(v, o ? o->regex : NULL);
            break;
        case TERM_FORMAT:
            rc = setup_format(v, o ? o->format_tags : NULL);
            break;
        case TERM_COMMAND:
            rc = setup_command(v, o);
            break;
        default:
            LLM_BUG("verifier kind");
        }
    }
    if (rc) {
        llm_verifier_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void llm_verifier_free(struct llm_verifier *v)
{
    if (!v)
        return;
    for (int t = 0; t < v->nterms; t++)
        free(v->terms[t].rewards);
    free(v->marker);
    pcre2_match_data_free(v->md);
    pcre2_code_free(v->re);
    free(v->open), free(v->close);
    for (int i = 0; v->argv && i < v->argc; i++)
        free(v->argv[i]);
    free(v->argv), free(v->exe);
    free(v);
}

/* ---- exact ---- */

char *llm_verifier_extract(const char *completion, const char *marker, int *err)
{
    *err = 0;
    if (!marker || !*marker) {
        struct llm_extractor x;
        if ((*err = llm_extractor_init(&x, "last-number", NULL)))
            return NULL;
        char *a = llm_extract(&x, completion, err);
        llm_extractor_release(&x);
        return a;
    }
    size_t mlen = strlen(marker);
    const char *last = NULL;
    for (const char *p = completion; (p = strstr(p, marker)); p++)
        last = p;
    if (!last)
        return NULL;
    const char *s = last + mlen, *end = s + strcspn(s, "\n");
    /* a marker "<tag ...>" ends at "</tag>" too: "<answer>46</answer>" answers "46" */
    if (mlen > 2 && marker[0] == '<' && marker[1] != '/' && marker[mlen - 1] == '>') {
        size_t tlen = strcspn(marker + 1, " >");
        char close[80];
        if (tlen + 4 <= sizeof(close)) {
            snprintf(close, sizeof(close), "</%.*s>", (int)tlen, marker + 1);
            const char *q = strstr(s, close);
            if (q && q < end)
                end = q;
        }
    }
    char *a = strndup(s, (size_t)(end - s));
    if (!a)
        *err = llm_err(LLM_ENOMEM, "out of memory extracting an answer");
    else if (llm_answer_normalize(a), !*a)
        free(a), a = NULL; /* nothing after the marker: no answer */
    return a;
}

/* The normalized gold answer of an item (a string, or a number printed exactly). */
static int gold_answer(const cJSON *item, int i, char **out)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(item, "answer");
    char num[64];
    const char *s;
    if (cJSON_IsString(a))
        s = a->valuestring;
    else if (cJSON_IsNumber(a) && isfinite(a->valuedouble))
        snprintf(num, sizeof(num), "%.17g", a->valuedouble), s = num;
    else
        return llm_err(LLM_EINVAL, "verifier 'exact': item %d has no \"answer\" (a string or a number)", i);
    if (!(*out = llm_strdup(s)))
        return LLM_ENOMEM;
    llm_answer_normalize(*out);
    return 0;
}

static int score_exact(const struct llm_verifier *v, const cJSON *item, const char *completion, int i, double *r)
{
    char *gold = NULL, *got;
    int rc = gold_answer(item, i, &gold);
    if (rc)
        return rc;
    got = llm_verifier_extract(completion, v->marker, &rc);
    *r = got && llm_answer_equal(got, gold);
    free(got), free(gold);
    return rc;
}

/* ---- regex, format ---- */

static int score_regex(const struct llm_verifier *v, const char *completion, int i, double *r)
{
    int m = pcre2_match(v->re, (PCRE2_SPTR)completion, strlen(completion), 0, 0, v->md, NULL);
    if (m >= 0 || m == PCRE2_ERROR_NOMATCH) {
        *r = m >= 0;
        return 0;
    }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(m, msg, sizeof(msg));
    return llm_err(LLM_EINVAL, "verifier 'regex': matching item %d: %s", i, (char *)msg);
}

/* Non-overlapping occurrences of pat in s; *first gets the first, *second the second (or NULL). */
static int occurrences(const char *s, const char *pat, const char **first, const char **second)
{
    int k = 0;
    size_t n = strlen(pat);
    *first = *second = NULL;
    for (const char *p = s; (p = strstr(p, pat)); p += n) {
        if (k == 0)
            *first = p;
        else if (k == 1)
            *second = p;
        k++;
    }
    return k;
}

/* 1 if s holds exactly one open ... close pair, in that order, with non-blank content. With open equal to
 * close ("```"), the tag occurs exactly twice. */
static double format_ok(const char *s, const char *open, const char *close)
{
    const char *o1, *o2, *c1, *c2, *body, *end;
    if (!strcmp(open, close)) {
        if (occurrences(s, open, &o1, &o2) != 2)
            return 0;
        body = o1 + strlen(open), end = o2;
    } else {
        if (occurrences(s, open, &o1, &o2) != 1 || occurrences(s, close, &c1, &c2) != 1)
            return 0;
        body = o1 + strlen(open), end = c1;
        if (c1 < body)
            return 0;
    }
    for (const char *p = body; p < end; p++)
        if (!isspace((unsigned char)*p))
            return 1;
    return 0;
}

/* ---- command: JSONL on stdin, one number a line on stdout ---- */

struct child_out {
    char *out;               /* stdout (malloc'd) */
    size_t nout, capout;
    char err[STDERR_KEEP + 1]; /* the start of stderr */
    size_t nerr;
};

/* dup2 that also clears close-on-exec when from == to (only async-signal-safe calls: runs in the child). */
static int move_fd(int from, int to)
{
    if (from == to)
        return fcntl(to, F_SETFD, 0);
    return dup2(from, to) < 0 ? -1 : 0;
}

/* The child between fork and exec. */
static void child_exec(const struct llm_verifier *v, const sigset_t *mask, int in, int out, int err, int status)
{
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    setpgid(0, 0); /* its own group, so a timeout kills what it started too */
    if (move_fd(in, 0) || move_fd(out, 1) || move_fd(err, 2)) {
        int e = errno;
        (void)!write(status, &e, sizeof(e));
        _exit(127);
    }
    execv(v->exe, v->argv);
    int e = errno;
    (void)!write(status, &e, sizeof(e));
    _exit(127);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int grow_out(struct child_out *c, size_t need)
{
    if (c->nout + need <= c->capout)
        return 0;
    size_t cap = c->capout ? 2 * c->capout : 4096;
    while (cap < c->nout + need)
        cap *= 2;
    char *p = realloc(c->out, cap + 1);
    if (!p)
        return llm_err(LLM_ENOMEM, "out of memory reading a verifier command's output");
    c->out = p, c->capout = cap;
    return 0;
}

/* Feeds in[0..nin) to the child's stdin and drains its stdout and stderr until both end or the deadline
 * passes (*timed_out). Never blocks on one pipe while the child waits on another: poll. */
static int pump(const struct llm_verifier *v, int fin, int fout, int ferr, const char *in, size_t nin,
                double deadline, struct child_out *c, int *timed_out)
{
    size_t off = 0;
    int rc = 0;
    char buf[65536];
    if (nin == 0)
        close_fd(&fin);
    while (!rc && (fout >= 0 || ferr >= 0)) {
        struct pollfd p[3];
        int k = 0, iin = -1, iout = -1, ierr = -1;
        if (fin >= 0)
            iin = k, p[k++] = (struct pollfd){.fd = fin, .events = POLLOUT};
        if (fout >= 0)
            iout = k, p[k++] = (struct pollfd){.fd = fout, .events = POLLIN};
        if (ferr >= 0)
            ierr = k, p[k++] = (struct pollfd){.fd = ferr, .events = POLLIN};
        double left = deadline - llm_now();
        if (left <= 0) {
            *timed_out = 1;
            break;
        }
        int r = poll(p, (nfds_t)k, (int)ceil(left * 1000));
        if (r < 0 && errno != EINTR)
            rc = llm_err(LLM_EIO, "verifier command '%s': poll: %s", v->argv[0], strerror(errno));
        if (r <= 0)
            continue;
        if (iin >= 0 && p[iin].revents) {
            size_t chunk = nin - off < sizeof(buf) ? nin - off : sizeof(buf);
            ssize_t w = write(fin, in + off, chunk);
            if (w > 0 && (off += (size_t)w) == nin)
                close_fd(&fin);
            else if (w < 0 && errno == EPIPE)
                close_fd(&fin); /* it stopped reading: what it printed decides */
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                rc = llm_err(LLM_EIO, "verifier command '%s': writing its stdin: %s", v->argv[0], strerror(errno));
        }
        if (!rc && iout >= 0 && p[iout].revents) {
            ssize_t got = read(fout, buf, sizeof(buf));
            if (got > 0 && c->nout + (size_t)got > MAX_OUTPUT)
                rc = llm_err(LLM_EFORMAT, "verifier command '%s' printed more than %u MiB", v->argv[0],
                             MAX_OUTPUT >> 20);
            else if (got > 0 && !(rc = grow_out(c, (size_t)got)))
                memcpy(c->out + c->nout, buf, (size_t)got), c->nout += (size_t)got;
            else if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
                close_fd(&fout);
        }
        if (!rc && ierr >= 0 && p[ierr].revents) {
            ssize_t got = read(ferr, buf, sizeof(buf));
            if (got > 0) {
                size_t keep = STDERR_KEEP - c->nerr < (size_t)got ? STDERR_KEEP - c->nerr : (size_t)got;
                memcpy(c->err + c->nerr, buf, keep);
                c->nerr += keep;
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                close_fd(&ferr);
            }
        }
    }
    close_fd(&fin), close_fd(&fout), close_fd(&ferr);
    return rc;
}

/* Waits for pid until the deadline; then kills its group. Returns its wait status. */
static int reap(pid_t pid, double deadline, int kill_now, int *timed_out)
{
    int st = 0;
    while (!kill_now) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return st;
        if (llm_now() >= deadline) {
            *timed_out = 1;
            break;
        }
        struct timespec ts = {0, 2000000}; /* 2 ms: it closed its output, so it is about to exit */
        nanosleep(&ts, NULL);
    }
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

/* "; its stderr: 'first line'" or "". */
static const char *stderr_note(struct child_out *c, char *buf, size_t cap)
{
    c->err[c->nerr] = 0;
    const char *s = c->err;
    while (*s == '\n' || *s == '\r')
        s++;
    size_t n = strcspn(s, "\r\n");
    if (n == 0)
        return "";
    snprintf(buf, cap, "; its stderr: '%.*s'", (int)(n < 300 ? n : 300), s);
    return buf;
}

/* Runs the command on in[0..nin); *c gets its output. An error if it did not exit with status 0. */
static int run_command(const struct llm_verifier *v, const char *in, size_t nin, struct child_out *c)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, pst[2] = {-1, -1};
    const char *prog = v->argv[0];
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC) || pipe2(pst, O_CLOEXEC)) {
        int e = errno;
        int *all[] = {pin, pout, perr, pst};
        for (int i = 0; i < 4; i++)
            close_fd(&all[i][0]), close_fd(&all[i][1]);
        return llm_err(LLM_EIO, "verifier command '%s': cannot create pipes: %s", prog, strerror(e));
    }
    /* A write to a child that exited raises SIGPIPE, which would kill us: block it on this thread while
     * we talk to the child (write then fails with EPIPE) and consume the one it left pending. */
    sigset_t pipeset, old;
    sigemptyset(&pipeset);
    sigaddset(&pipeset, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipeset, &old);
    sigset_t before;
    sigpending(&before);
    int had_pipe = sigismember(&before, SIGPIPE);

    int rc = 0, timed_out = 0;
    double t0 = llm_now(), deadline = t0 + v->timeout_s;
    pid_t pid = fork();
    if (pid == 0)
        child_exec(v, &old, pin[0], pout[1], perr[1], pst[1]);
    int e = errno;
    close_fd(&pin[0]), close_fd(&pout[1]), close_fd(&perr[1]), close_fd(&pst[1]);
    if (pid < 0) {
        rc = llm_err(LLM_EIO, "verifier command '%s': fork: %s", prog, strerror(e));
        close_fd(&pin[1]), close_fd(&pout[0]), close_fd(&perr[0]), close_fd(&pst[0]);
    } else {
        setpgid(pid, pid); /* also here, so the group exists before any kill (no race with the child) */
        int exec_errno = 0;
        ssize_t got;
        while ((got = read(pst[0], &exec_errno, sizeof(exec_errno))) < 0 && errno == EINTR)
            ;
        close_fd(&pst[0]);
        if (got == (ssize_t)sizeof(exec_errno)) {
            close_fd(&pin[1]), close_fd(&pout[0]), close_fd(&perr[0]);
            reap(pid, deadline, 0, &timed_out);
            rc = llm_err(LLM_EIO, "verifier command '%s': cannot run it: %s", prog, strerror(exec_errno));
        } else {
            fcntl(pin[1], F_SETFL, O_NONBLOCK);
            fcntl(pout[0], F_SETFL, O_NONBLOCK);
            fcntl(perr[0], F_SETFL, O_NONBLOCK);
            rc = pump(v, pin[1], pout[0], perr[0], in, nin, deadline, c, &timed_out);
            int st = reap(pid, deadline, rc || timed_out, &timed_out);
            char note[400];
            if (!rc && timed_out)
                rc = llm_err(LLM_EIO, "verifier command '%s' timed out after %g s (killed)%s", prog, v->timeout_s,
                             stderr_note(c, note, sizeof(note)));
            else if (!rc && WIFSIGNALED(st))
                rc = llm_err(LLM_EIO, "verifier command '%s' was killed by signal %d (%s)%s", prog, WTERMSIG(st),
                             strsignal(WTERMSIG(st)), stderr_note(c, note, sizeof(note)));
            else if (!rc && WIFEXITED(st) && WEXITSTATUS(st) != 0)
                rc = llm_err(LLM_EIO, "verifier command '%s' exited with status %d%s", prog, WEXITSTATUS(st),
                             stderr_note(c, note, sizeof(note)));
            if (!rc && c->nerr) {
                c->err[c->nerr] = 0;
                llm_debug("verifier command '%s' stderr: %s", prog, c->err);
            }
        }
    }

    sigset_t now;
    sigpending(&now);
    if (!had_pipe && sigismember(&now, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipeset, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    llm_debug("verifier command '%s': %zu bytes in, %zu out, %.3f s", prog, nin, c->nout, llm_now() - t0);
    return rc;
}

/* The n numbers of the command's output, one a line (a last line without '\n' counts; "\r\n" is fine). */
static int parse_rewards(const struct llm_verifier *v, struct child_out *c, int n, double *r)
{
    char note[400];
    const char *prog = v->argv[0], *p = c->out, *stop = c->out + c->nout;
    int lines = 0;
    while (p && p < stop) {
        const char *e = memchr(p, '\n', (size_t)(stop - p));
        size_t len = e ? (size_t)(e - p) : (size_t)(stop - p);
        if (len && p[len - 1] == '\r')
            len--;
        if (lines < n) {
            char line[64], *end = line;
            double x = NAN;
            if (len < sizeof(line) && !memchr(p, 0, len)) {
                memcpy(line, p, len);
                line[len] = 0;
                x = strtod(line, &end);
                while (end > line && isspace((unsigned char)*end))
                    end++;
            }
            if (end == line || *end || !isfinite(x))
                return llm_err(LLM_EFORMAT, "verifier command '%s': line %d of its output is not a finite number: "
                               "'%.*s'%s", prog, lines + 1, (int)(len < 60 ? len : 60), p,
                               stderr_note(c, note, sizeof(note)));
            r[lines] = x;
        }
        lines++;
        p = e ? e + 1 : stop;
    }
    if (lines != n)
        return llm_err(LLM_EFORMAT, "verifier command '%s' printed %d line%s for %d item%s (one number per item)%s",
                       prog, lines, lines == 1 ? "" : "s", n, n == 1 ? "" : "s", stderr_note(c, note, sizeof(note)));
    return 0;
}

static int score_command(const struct llm_verifier *v, const cJSON *const *items, int n, double *r)
{
    /* the items as JSONL, one compact object a line */
    size_t len = 0, cap = 0;
    char *in = NULL;
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        char *s = cJSON_PrintUnformatted(items[i]);
        size_t k = s ? strlen(s) : 0;
        if (!s)
            rc = llm_err(LLM_ENOMEM, "out of memory writing verifier input");
        else if (len + k + 1 > cap) {
            size_t nc = cap ? cap : 4096;
            while (nc < len + k + 1)
                nc *= 2;
            char *p = realloc(in, nc);
            if (!p)
                rc = llm_err(LLM_ENOMEM, "out of memory writing verifier input");
            else
                in = p, cap = nc;
        }
        if (!rc) {
            memcpy(in + len, s, k);
            len += k;
            in[len++] = '\n';
        }
        free(s);
    }
    struct child_out c = {0};
    if (!rc)
        rc = run_command(v, in, len, &c);
    if (!rc)
        rc = parse_rewards(v, &c, n, r);
    free(c.out);
    free(in);
    return rc;
}

/* ---- the sum ---- */

static int reserve(struct llm_verifier *v, int n)
{
    if (n <= v->cap)
        return 0;
    for (int t = 0; t < v->nterms; t++) {
        double *p = realloc(v->terms[t].rewards, (size_t)n * sizeof(double));
        if (!p)
            return llm_err(LLM_ENOMEM, "out of memory for %d rewards", n);
        v->terms[t].rewards = p;
    }
    v->cap = n;
    return 0;
}

int llm_verifier_score(struct llm_verifier *v, const cJSON *const *items, int n, double *rewards)
{
    if (n < 0)
        return llm_err(LLM_EINVAL, "verifier: a negative item count (%d)", n);
    int rc = reserve(v, n);
    const char **comp = n ? llm_calloc((size_t)n, sizeof(char *), "completions") : NULL;
    if (!rc && n && !comp)
        rc = LLM_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        const cJSON *c = cJSON_IsObject(items[i]) ? cJSON_GetObjectItemCaseSensitive(items[i], "completion") : NULL;
        if (!cJSON_IsString(c))
            rc = llm_err(LLM_EINVAL, "verifier: item %d is not an object with a string \"completion\"", i);
        else
            comp[i] = c->valuestring;
    }
    for (int t = 0; !rc && t < v->nterms; t++) {
        struct term *tm = &v->terms[t];
        if (tm->kind == TERM_COMMAND) {
            if (n)
                rc = score_command(v, items, n, tm->rewards);
            continue;
        }
        for (int i = 0; !rc && i < n; i++) {
            if (tm->kind == TERM_EXACT)
                rc = score_exact(v, items[i], comp[i], i, &tm->rewards[i]);
            else if (tm->kind == TERM_REGEX)
                rc = score_regex(v, comp[i], i, &tm->rewards[i]);
            else
                tm->rewards[i] = format_ok(comp[i], v->open, v->close);
        }
    }
    free(comp);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < v->nterms; t++)
            s += v->terms[t].weight * v->terms[t].rewards[i];
        rewards[i] = s;
    }
    return 0;
}

int llm_verifier_terms(const struct llm_verifier *v) { return v->nterms; }

const char *llm_verifier_term_name(const struct llm_verifier *v, int t)
{
    return t >= 0 && t < v->nterms ? kind_names[v->terms[t].kind] : NULL;
}

double llm_verifier_term_weight(const struct llm_verifier *v, int t)
{
    return t >= 0 && t < v->nterms ? v->terms[t].weight : 0;
}

const double *llm_verifier_term_rewards(const struct llm_verifier *v, int t)
{
    return t >= 0 && t < v->nterms ? v->terms[t].rewards : NULL;
}
