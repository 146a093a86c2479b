/* Small helpers: checked I/O, paths, sizes. */
#define _GNU_SOURCE
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *lad_version(void) { return LADLE_VERSION; }

int lad_pread_full(int fd, void *buf, size_t n, uint64_t off, lad_error *err)
{
    char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return lad_fail(err, "read failed at byte %llu: %s", (unsigned long long)off,
                            strerror(errno));
        if (r == 0)
            return lad_fail(err, "unexpected end of file at byte %llu (file changed while "
                                 "reading?)",
                            (unsigned long long)off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int lad_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, lad_error *err)
{
    const char *p = buf;
    while (n) {
        ssize_t r = pwrite(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return lad_fail(err, "write failed at byte %llu: %s", (unsigned long long)off,
                            strerror(errno));
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

char *lad_strdup(const char *s) { return s ? strdup(s) : NULL; }

char *lad_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

char *lad_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    return lad_asprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

bool lad_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool lad_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool lad_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

bool lad_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

char *lad_abspath(const char *path)
{
    char *full = realpath(path, NULL);
    if (full)
        return full;
    /* The last component may not exist yet: resolve the parent. */
    char *dir = lad_dirname(path), *base = lad_basename(path);
    char *parent = dir ? realpath(dir, NULL) : NULL;
    char *out = parent && base ? lad_path_join(parent, base) : NULL;
    free(parent);
    free(dir);
    free(base);
    return out;
}

char *lad_basename(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/')
        start--;
    return strndup(path + start, n - start);
}

char *lad_dirname(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = 0;
    char *slash = strrchr(copy, '/');
    if (!slash) {
        free(copy);
        return strdup(".");
    }
    if (slash == copy)
        slash[1] = 0;
    else
        *slash = 0;
    return copy;
}

bool lad_path_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);
    if (strncmp(inner, outer, n) != 0)
        return false;
    return inner[n] == 0 || inner[n] == '/' || (n > 0 && outer[n - 1] == '/');
}

int lad_read_file(const char *path, size_t max, char **data, size_t *len, lad_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lad_fail(err, "%s: cannot open: %s", path, strerror(errno));
    /* Sized from fstat, grown if the file grows while read: never `max`
     * bytes up front (that is 256 MB for an index). */
    struct stat st;
    size_t cap = 4096, n = 0;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0)
        cap = (size_t)st.st_size < max ? (size_t)st.st_size + 1 : max + 1;
    char *buf = malloc(cap + 1);
    int bad = 0;
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if ((bad = ferror(f)) || n < cap || n > max)
            break;
        size_t grown = cap > max / 2 ? max + 1 : cap * 2;
        char *more = realloc(buf, grown + 1);
        if (!more) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = more;
        cap = grown;
    }
    fclose(f);
    if (!buf)
        return lad_fail(err, "%s: out of memory", path);
    if (bad || n > max) {
        free(buf);
        return lad_fail(err, "%s: %s", path, bad ? "read error" : "file too large");
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

void lad_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                    continue;
                char *child = lad_path_join(path, e->d_name);
                if (child)
                    lad_remove_tree(child);
                free(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

int lad_parse_size(const char *s, uint64_t *out)
{
    static const struct { const char *unit; uint64_t mult; } units[] = {
        {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}, {"TiB", 1ULL << 40},
        {"KB", 1000ULL}, {"MB", 1000000ULL}, {"GB", 1000000000ULL}, {"TB", 1000000000000ULL},
        {"K", 1000ULL}, {"M", 1000000ULL}, {"G", 1000000000ULL}, {"B", 1}, {"", 1},
    };
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcasecmp(end, units[i].unit) == 0) {
            double bytes = v * (double)units[i].mult;
            if (bytes > 1.8e19)
                return -1;
            *out = (uint64_t)bytes;
            return 0;
        }
    return -1;
}

void lad_format_bytes(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000ULL)
        snprintf(buf, len, "%.2f GB", (double)n / 1e9);
    else if (n >= 1000000ULL)
        snprintf(buf, len, "%.1f MB", (double)n / 1e6);
    else if (n >= 1000ULL)
        snprintf(buf, len, "%.1f kB", (double)n / 1e3);
    else
        snprintf(buf, len, "%llu B", (unsigned long long)n);
}

int lad_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int lad_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int lad_parse_list(const char *s, double *out, int max)
{
    int n = 0;
    char *copy = lad_strdup(s), *save = NULL;
    if (!copy)
        return -1;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max || lad_parse_double(tok, &out[n]) != 0) {
            free(copy);
            return -1;
        }
        n++;
    }
    free(copy);
    return n;
}
