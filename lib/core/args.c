/* args.c: the shared flag parser and usage printer (see args.h). */
#include "args.h"
#include "err.h"
#include "str.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The options every command understands, handled here. */
enum { BUILTIN_HELP = 1, BUILTIN_QUIET, BUILTIN_VERBOSE };

static int builtin(const char *lname, char sname)
{
    if ((lname && !strcmp(lname, "help")) || sname == 'h')
        return BUILTIN_HELP;
    if ((lname && !strcmp(lname, "quiet")) || sname == 'q')
        return BUILTIN_QUIET;
    if ((lname && !strcmp(lname, "verbose")) || sname == 'v')
        return BUILTIN_VERBOSE;
    return 0;
}

static const struct llm_opt *find_long(const struct llm_opt *o, const char *name, size_t len)
{
    for (; o && o->name; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len))
            return o;
    return NULL;
}

static const struct llm_opt *find_short(const struct llm_opt *o, char c)
{
    for (; o && o->name; o++)
        if (o->short_name && o->short_name == c)
            return o;
    return NULL;
}

static int unknown_long(const struct llm_cmd_spec *spec, const char *arg, size_t len)
{
    const char *cands[128];
    size_t n = 0;
    static const char *const builtins[] = {"help", "quiet", "verbose"};
    for (size_t i = 0; i < 3; i++)
        cands[n++] = builtins[i];
    for (const struct llm_opt *o = spec->opts; o && o->name && n < 128; o++)
        cands[n++] = o->name;
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)(len < 120 ? len : 120), arg);
    const char *hint = llm_str_closest(name, cands, n);
    if (hint)
        return llm_err(LLM_EUSAGE, "unknown option '--%s' (did you mean '--%s'?)", name, hint);
    return llm_err(LLM_EUSAGE, "unknown option '--%s' (see 'llm %s --help')", name, spec->name);
}

static int list_push(struct llm_strlist *l, const char *v)
{
    const char **nv = realloc(l->v, (size_t)(l->n + 1) * sizeof(*nv));
    if (!nv)
        return llm_err(LLM_ENOMEM, "out of memory parsing arguments");
    nv[l->n++] = v;
    l->v = nv;
    return 0;
}

/* Stores value v for option o; name is how the user spelled the option. */
static int set_value(const struct llm_opt *o, const char *name, const char *v)
{
    char *end;
    switch (o->type) {
    case LLM_OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case LLM_OPT_LIST:
        return list_push(o->dst, v);
    case LLM_OPT_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno)
            return llm_err(LLM_EUSAGE, "option '%s' expects an integer, got '%s'", name, v);
        *(long *)o->dst = x;
        return 0;
    }
    case LLM_OPT_F64: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return llm_err(LLM_EUSAGE, "option '%s' expects a number, got '%s'", name, v);
        *(double *)o->dst = x;
        return 0;
    }
    case LLM_OPT_FLAG:
        break;
    }
    LLM_BUG("set_value on a flag");
}

static void count_builtin(struct llm_args *out, int which)
{
    if (which == BUILTIN_HELP)
        out->help = 1;
    else if (which == BUILTIN_QUIET)
        out->quiet++;
    else
        out->verbose++;
}

int llm_args_parse(const struct llm_cmd_spec *spec, int argc, char **argv, struct llm_args *out)
{
    memset(out, 0, sizeof(*out));
    for (const struct llm_opt *o = spec->opts; o && o->name; o++)
        if (o->type == LLM_OPT_LIST)
            memset(o->dst, 0, sizeof(struct llm_strlist));
    out->pos = calloc((size_t)argc + 1, sizeof(*out->pos));
    if (!out->pos)
        return llm_err(LLM_ENOMEM, "out of memory parsing arguments");
    int rc = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !strcmp(a, "-")) {
            out->pos[out->npos++] = a;
        } else if (!strcmp(a, "--")) {
            only_pos = 1;
        } else if (a[1] == '-') { /* --name, --name=value, --name value */
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const struct llm_opt *o = find_long(spec->opts, name, len);
            if (!o) {
                char tmp[128];
                snprintf(tmp, sizeof(tmp), "%.*s", (int)(len < 120 ? len : 120), name);
                int b = builtin(tmp, 0);
                if (!b || eq)
                    return unknown_long(spec, name, len);
                count_builtin(out, b);
                continue;
            }
            if (o->type == LLM_OPT_FLAG) {
                if (eq)
                    return llm_err(LLM_EUSAGE, "option '--%s' takes no value", o->name);
                (*(int *)o->dst)++;
                continue;
            }
            const char *v = eq ? eq + 1 : NULL;
            if (!v) {
                if (i + 1 >= argc)
                    return llm_err(LLM_EUSAGE, "option '--%s' needs a value (%s)", o->name,
                                   o->metavar ? o->metavar : "VALUE");
                v = argv[++i];
            }
            if ((rc = set_value(o, a, v)) != 0)
                return rc;
        } else { /* -x, -xVALUE, -x VALUE, -qv */
            for (const char *p = a + 1; *p; p++) {
                const struct llm_opt *o = find_short(spec->opts, *p);
                if (!o) {
                    int b = builtin(NULL, *p);
                    if (!b)
                        return llm_err(LLM_EUSAGE, "unknown option '-%c' (see 'llm %s --help')",
                                       *p, spec->name);
                    count_builtin(out, b);
                    continue;
                }
                if (o->type == LLM_OPT_FLAG) {
                    (*(int *)o->dst)++;
                    continue;
                }
                char name[3] = {'-', *p, 0};
                const char *v = p[1] ? p + 1 : NULL;
                if (!v) {
                    if (i + 1 >= argc)
                        return llm_err(LLM_EUSAGE, "option '-%c' needs a value (%s)", *p,
                                       o->metavar ? o->metavar : "VALUE");
                    v = argv[++i];
                }
                if ((rc = set_value(o, name, v)) != 0)
                    return rc;
                break;
            }
        }
    }
    if (out->help)
        return 0;
    if (out->npos < spec->min_pos)
        return llm_err(LLM_EUSAGE, out->npos == 0
                                        ? "missing argument (usage: llm %s %s)"
                                        : "too few arguments (usage: llm %s %s)",
                       spec->name, spec->usage ? spec->usage : "");
    if (spec->max_pos >= 0 && out->npos > spec->max_pos)
        return llm_err(LLM_EUSAGE, "unexpected argument '%s' (usage: llm %s %s)",
                       out->pos[spec->max_pos], spec->name, spec->usage ? spec->usage : "");
    return 0;
}

void llm_args_release(const struct llm_cmd_spec *spec, struct llm_args *out)
{
    for (const struct llm_opt *o = spec->opts; o && o->name; o++)
        if (o->type == LLM_OPT_LIST) {
            struct llm_strlist *l = o->dst;
            free(l->v);
            l->v = NULL, l->n = 0;
        }
    free(out->pos);
    out->pos = NULL;
    out->npos = 0;
}

void llm_args_usage(FILE *f, const struct llm_cmd_spec *spec)
{
    fprintf(f, "usage: llm %s %s\n\n%s\n\noptions:\n", spec->name, spec->usage ? spec->usage : "",
            spec->summary ? spec->summary : "");
    char left[96];
    for (const struct llm_opt *o = spec->opts; o && o->name; o++) {
        const char *mv = o->type == LLM_OPT_FLAG ? "" : (o->metavar ? o->metavar : "VALUE");
        if (o->short_name)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, *mv ? " " : "", mv);
        else
            snprintf(left, sizeof(left), "    --%s%s%s", o->name, *mv ? " " : "", mv);
        fprintf(f, "  %-28s %s%s\n", left, o->help ? o->help : "",
                o->type == LLM_OPT_LIST ? " (repeatable)" : "");
    }
    fprintf(f, "  %-28s %s\n", "-q, --quiet", "only errors and warnings on stderr");
    fprintf(f, "  %-28s %s\n", "-v, --verbose", "debug messages on stderr");
    fprintf(f, "  %-28s %s\n", "-h, --help", "show this help");
    if (spec->epilog)
        fprintf(f, "\n%s\n", spec->epilog);
}
