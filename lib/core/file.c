/* file.c: atomic output and whole-file reads (see file.h). */
#include "file.h"
#include "err.h"
#include "str.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int llm_atomic_open(struct llm_atomic *a, const char *path)
{
    memset(a, 0, sizeof(*a));
    if (!path || !path[0])
        return llm_err(LLM_EINVAL, "empty output path");
    if (!(a->path = llm_strdup(path)))
        return LLM_ENOMEM;
    if (strcmp(path, "-") == 0) {
        a->f = stdout;
        return 0;
    }
    char *d = llm_strdup(path), *b = llm_strdup(path);
    if (!d || !b) {
        free(d), free(b), free(a->path);
        return LLM_ENOMEM;
    }
    const char *dir = dirname(d), *base = basename(b);
    size_t n = strlen(dir) + strlen(base) + 16;
    a->tmp = llm_malloc(n, "a path");
    if (!a->tmp) {
        free(d), free(b), free(a->path);
        return LLM_ENOMEM;
    }
    snprintf(a->tmp, n, "%s/.%s.tmp.XXXXXX", dir, base);
    free(d), free(b);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int e = errno;
        free(a->tmp), free(a->path);
        a->tmp = a->path = NULL;
        return llm_err(LLM_EIO, "cannot create '%s': %s", path, strerror(e));
    }
    /* mkstemp makes 0600; an output file gets the usual 0666 & ~umask. */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    if (!(a->f = fdopen(fd, "wb"))) {
        close(fd);
        unlink(a->tmp);
        free(a->tmp), free(a->path);
        a->tmp = a->path = NULL;
        return llm_err(LLM_EIO, "cannot open '%s' for writing", path);
    }
    return 0;
}

static void atomic_release(struct llm_atomic *a)
{
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof(*a));
}

int llm_atomic_commit(struct llm_atomic *a)
{
    if (!a->f)
        return llm_err(LLM_EINVAL, "output file is not open");
    if (!a->tmp) { /* stdout */
        int bad = fflush(a->f) != 0 || ferror(a->f);
        atomic_release(a);
        return bad ? llm_err(LLM_EIO, "cannot write to stdout: %s", strerror(errno)) : 0;
    }
    int e = 0;
    if (fflush(a->f) != 0 || ferror(a->f) || fsync(fileno(a->f)) != 0)
        e = errno ? errno : EIO;
    if (fclose(a->f) != 0 && !e)
        e = errno;
    a->f = NULL;
    if (!e && rename(a->tmp, a->path) != 0)
        e = errno;
    if (e) {
        unlink(a->tmp);
        int rc = llm_err(LLM_EIO, "cannot write '%s': %s", a->path, strerror(e));
        atomic_release(a);
        return rc;
    }
    /* fsync the folder so the rename itself survives a power loss. */
    char *d = llm_strdup(a->path);
    if (d) {
        int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(d);
    }
    atomic_release(a);
    return 0;
}

void llm_atomic_abort(struct llm_atomic *a)
{
    if (a->f && a->tmp)
        fclose(a->f);
    else if (a->f)
        fflush(a->f);
    if (a->tmp)
        unlink(a->tmp);
    atomic_release(a);
}

int llm_fwrite(FILE *f, const void *p, size_t n, const char *path)
{
    if (n && fwrite(p, 1, n, f) != n)
        return llm_err(LLM_EIO, "cannot write '%s': %s", path, strerror(errno));
    return 0;
}

int llm_fopen_read(const char *path, FILE **out)
{
    if (strcmp(path, "-") == 0) {
        *out = stdin;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return llm_err(LLM_EIO, "'%s' is a directory", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return llm_err(LLM_EIO, "cannot open '%s': %s", path, strerror(errno));
    *out = f;
    return 0;
}

int llm_read_file(const char *path, size_t max_bytes, char **out, size_t *len)
{
    FILE *f;
    int rc = llm_fopen_read(path, &f);
    if (rc)
        return rc;
    size_t cap = 4096, n = 0;
    char *buf = llm_malloc(cap, "a file");
    if (!buf)
        goto fail;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max_bytes) {
                rc = llm_err(LLM_EINVAL, "'%s' is larger than %zu bytes", path, max_bytes);
                goto fail;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = llm_err(LLM_ENOMEM, "out of memory reading '%s'", path);
                goto fail;
            }
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = llm_err(LLM_EIO, "cannot read '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (n > max_bytes) {
        rc = llm_err(LLM_EINVAL, "'%s' is larger than %zu bytes", path, max_bytes);
        goto fail;
    }
    buf[n] = '\0';
    if (f != stdin)
        fclose(f);
    *out = buf;
    if (len)
        *len = n;
    return 0;
fail:
    if (!rc)
        rc = LLM_ENOMEM;
    free(buf);
    if (f != stdin)
        fclose(f);
    return rc;
}

int llm_mkdir_p(const char *path)
{
    size_t n = strlen(path);
    char *buf = llm_malloc(n + 1, "a path");
    if (!buf)
        return LLM_ENOMEM;
    memcpy(buf, path, n + 1);
    int rc = 0;
    for (char *p = buf + 1; !rc && n; p++) {
        if (*p != '/' && *p)
            continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST)
            rc = llm_err(LLM_EIO, "cannot create folder '%s': %s", buf, strerror(errno));
        *p = c;
        if (!c)
            break;
    }
    struct stat st;
    if (!rc && (stat(path, &st) || !S_ISDIR(st.st_mode)))
        rc = llm_err(LLM_EIO, "'%s' is not a folder", path);
    free(buf);
    return rc;
}

int llm_write_text(const char *path, const char *text, int newline)
{
    struct llm_atomic a;
    int rc = llm_atomic_open(&a, path);
    if (rc)
        return rc;
    if ((rc = llm_fwrite(a.f, text, strlen(text), path)) || (newline && (rc = llm_fwrite(a.f, "\n", 1, path)))) {
        llm_atomic_abort(&a);
        return rc;
    }
    return llm_atomic_commit(&a);
}
