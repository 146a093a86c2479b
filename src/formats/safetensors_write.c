/*
 * safetensors writer and the atomic output container (see writer.h).
 */
#define _GNU_SOURCE
#include "writer.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct lad_writer {
    char *out;        /* final path */
    char *tmp;        /* temporary sibling: file or folder */
    bool as_dir;
    bool replace;     /* OUT exists and --force was given */
    int *fds;
    size_t nfds;
    uint64_t reserved; /* bytes of all safetensors files so far */
};

char *lad_safetensors_header(const lad_out_tensor *ts, size_t n, json_t *metadata,
                             size_t *len)
{
    /* jansson keeps insertion order, so the tensors stay in the plan's order. */
    json_t *root = json_object();
    if (!root)
        return NULL;
    if (metadata)
        json_object_set(root, "__metadata__", metadata);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < ts[i].ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)ts[i].shape[d]));
        json_t *info = json_pack("{s:s, s:o, s:[I,I]}", "dtype", lad_dtype_name(ts[i].dtype),
                                 "shape", shape, "data_offsets", (json_int_t)off,
                                 (json_int_t)(off + ts[i].nbytes));
        json_object_set_new(root, ts[i].name, info);
        off += ts[i].nbytes;
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        return NULL;
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    char *hdr = malloc(8 + padded);
    if (hdr) {
        uint64_t hn = padded;
        for (int i = 0; i < 8; i++)
            hdr[i] = (char)(hn >> (8 * i));
        memcpy(hdr + 8, text, tl);
        memset(hdr + 8 + tl, ' ', padded - tl);
        *len = 8 + padded;
    }
    free(text);
    return hdr;
}

static bool looks_like_model_dir(const char *dir)
{
    const char *names[] = {"model.safetensors", "model.safetensors.index.json", "config.json",
                           "adapter_config.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = lad_path_join(dir, names[i]);
        bool hit = p && lad_exists(p);
        free(p);
        if (hit)
            return true;
    }
    return false;
}

/* ".NAME.ladle-TAG-XXXXXX" in OUT's folder: same filesystem, so rename works. */
static char *tmp_sibling(const char *out, const char *tag)
{
    char *dir = lad_dirname(out), *base = lad_basename(out);
    char *res = dir && base ? lad_asprintf("%s/.%s.ladle-%s-XXXXXX", dir, base, tag) : NULL;
    free(dir);
    free(base);
    return res;
}

int lad_writer_begin(const char *out, bool as_dir, bool force, lad_writer **wp, lad_error *err)
{
    struct stat st;
    bool exists = lstat(out, &st) == 0;
    if (exists && !force)
        return lad_fail(err, "%s: already exists (use --force to replace it)", out);
    if (exists && S_ISDIR(st.st_mode) && !looks_like_model_dir(out))
        return lad_fail(err, "%s: is a folder that does not look like a model or an adapter "
                             "(no config.json, model.safetensors or adapter_config.json); "
                             "refusing to replace it even with --force",
                        out);
    lad_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->out = strdup(out)) || !(w->tmp = tmp_sibling(out, "tmp"))) {
        if (w)
            free(w->out);
        free(w);
        return lad_fail(err, "out of memory");
    }
    w->as_dir = as_dir;
    w->replace = exists;
    int rc;
    if (as_dir) {
        rc = mkdtemp(w->tmp) ? 0 : -1;
    } else {
        int fd = mkostemp(w->tmp, O_CLOEXEC);
        rc = fd < 0 ? -1 : 0;
        if (fd >= 0)
            close(fd);
    }
    if (rc) {
        lad_fail(err, "%s: cannot create a temporary output beside it: %s", out, strerror(errno));
        free(w->tmp);
        free(w->out);
        free(w);
        return -1;
    }
    *wp = w;
    return 0;
}

static char *member_path(lad_writer *w, const char *fname)
{
    return w->as_dir ? lad_path_join(w->tmp, fname) : strdup(w->tmp);
}

static int track_fd(lad_writer *w, int fd, lad_error *err)
{
    int *grown = realloc(w->fds, (w->nfds + 1) * sizeof *grown);
    if (!grown) {
        close(fd);
        return lad_fail(err, "out of memory");
    }
    w->fds = grown;
    w->fds[w->nfds++] = fd;
    return 0;
}

static int open_member(lad_writer *w, const char *fname, int *fd, lad_error *err)
{
    char *p = member_path(w, fname);
    if (!p)
        return lad_fail(err, "out of memory");
    *fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (*fd < 0) {
        lad_fail(err, "%s: cannot create: %s", p, strerror(errno));
        free(p);
        return -1;
    }
    free(p);
    return track_fd(w, *fd, err);
}

int lad_writer_add_file(lad_writer *w, const char *fname, const void *hdr, size_t hlen,
                        uint64_t total, int *fd, lad_error *err)
{
    int rc = open_member(w, fname, fd, err);
    if (rc == 0) {
        /* A disk too small fails here, before the work. (Not fallocate:
         * on tmpfs it zeroes every page, a serial pass as long as the
         * merge; a write that still fails later is cleaned up as usual.) */
        struct statvfs vfs;
        w->reserved += total;
        if (fstatvfs(*fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < w->reserved)
            rc = lad_fail(err, "%s: needs %llu bytes but its filesystem has %llu free",
                          w->out, (unsigned long long)w->reserved,
                          (unsigned long long)vfs.f_bavail * vfs.f_frsize);
        else if (ftruncate(*fd, (off_t)total) != 0)
            rc = lad_fail(err, "%s: cannot size the output: %s", w->out, strerror(errno));
        else if (lad_pwrite_full(*fd, hdr, hlen, 0, err))
            rc = lad_fail_prefix(err, "%s: ", w->out);
    }
    return rc;
}

int lad_writer_add_safetensors(lad_writer *w, const char *fname, const lad_out_tensor *ts,
                               size_t n, json_t *metadata, int *fd, uint64_t *data_start,
                               lad_error *err)
{
    size_t hlen;
    char *hdr = lad_safetensors_header(ts, n, metadata, &hlen);
    if (!hdr)
        return lad_fail(err, "out of memory building a safetensors header");
    uint64_t total = hlen;
    for (size_t i = 0; i < n; i++)
        total += ts[i].nbytes;
    int rc = lad_writer_add_file(w, fname, hdr, hlen, total, fd, err);
    free(hdr);
    *data_start = hlen;
    return rc;
}

int lad_writer_add_bytes(lad_writer *w, const char *fname, const void *data, size_t len,
                         lad_error *err)
{
    int fd = -1;
    if (open_member(w, fname, &fd, err))
        return -1;
    if (lad_pwrite_full(fd, data, len, 0, err))
        return lad_fail_prefix(err, "%s/%s: ", w->out, fname);
    return 0;
}

int lad_writer_copy_in(lad_writer *w, const char *fname, const char *src, lad_error *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return lad_fail(err, "%s: cannot open: %s", src, strerror(errno));
    int fd = -1, rc = open_member(w, fname, &fd, err);
    char buf[1 << 16];
    uint64_t off = 0;
    while (rc == 0) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = lad_fail(err, "%s: read failed: %s", src, strerror(errno));
        if (r <= 0)
            break;
        if (lad_pwrite_full(fd, buf, (size_t)r, off, err))
            rc = lad_fail_prefix(err, "%s/%s: ", w->out, fname);
        off += (uint64_t)r;
    }
    close(in);
    return rc;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void writer_free(lad_writer *w)
{
    for (size_t i = 0; i < w->nfds; i++)
        if (w->fds[i] >= 0)
            close(w->fds[i]);
    free(w->fds);
    free(w->tmp);
    free(w->out);
    free(w);
}

int lad_writer_commit(lad_writer *w, lad_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < w->nfds && rc == 0; i++) {
        if (fsync(w->fds[i]) != 0)
            rc = lad_fail(err, "%s: flushing to disk failed: %s", w->out, strerror(errno));
        else if (close(w->fds[i]) != 0)
            rc = lad_fail(err, "%s: closing failed: %s", w->out, strerror(errno));
        w->fds[i] = -1;
    }
    if (rc == 0 && w->as_dir && fsync_path(w->tmp) != 0)
        rc = lad_fail(err, "%s: flushing the folder failed: %s", w->out, strerror(errno));
    if (rc == 0 && lad_interrupted())
        rc = lad_fail(err, "interrupted");
    char *old = NULL;
    if (rc == 0 && w->replace && (w->as_dir || lad_is_dir(w->out))) {
        /* rename() cannot replace a folder: move the old one aside first. */
        old = tmp_sibling(w->out, "old");
        if (!old || !mkdtemp(old) || rmdir(old) != 0 || rename(w->out, old) != 0)
            rc = lad_fail(err, "%s: cannot move the existing output aside: %s", w->out,
                          strerror(errno));
    }
    if (rc == 0 && rename(w->tmp, w->out) != 0) {
        rc = lad_fail(err, "%s: cannot rename the finished output into place: %s", w->out,
                      strerror(errno));
        if (old)
            rename(old, w->out); /* put the previous output back */
    }
    if (rc == 0 && old)
        lad_remove_tree(old);
    free(old);
    if (rc == 0) {
        char *parent = lad_dirname(w->out);
        if (parent)
            fsync_path(parent);
        free(parent);
        writer_free(w);
        return 0;
    }
    lad_writer_abort(w);
    return -1;
}

void lad_writer_abort(lad_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->nfds; i++)
        if (w->fds[i] >= 0)
            close(w->fds[i]);
    w->nfds = 0;
    lad_remove_tree(w->tmp);
    writer_free(w);
}
