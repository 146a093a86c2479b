/*
 * A merge in parts (--part I/N): N processes, on one machine or N (a Slurm
 * array job on shared storage), each write some of one folder output's
 * shards; together they write what the whole merge writes, byte for byte.
 *
 * The plan fixes the shards and their assignment (lad_plan_in_part), so the
 * processes agree without talking. Part I runs the merge for its shards into
 * its own staging folder, OUT/.ladle-part-I-of-N (written atomically like
 * any output, with the index, config, tokenizer and card every part can
 * compute, and a manifest, ladle-part.json, listing every shard, its size and
 * its part), then renames its shards into OUT. Whoever then finds every shard
 * in OUT at its size publishes: under OUT/.ladle-publish.lock (O_EXCL: one
 * publisher), the other files move in, the index last, and the staging
 * folders go. `ladle index OUT` (lad_parts_publish) does the same for a run
 * whose last part stopped before publishing, or says which parts are
 * missing. Until the index appears OUT is not a model.
 */
#include "plan.h"
#include "util.h"
#include "../formats/writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST "ladle-part.json"
#define INDEX "model.safetensors.index.json"
#define LOCK ".ladle-publish.lock"
#define STAGING ".ladle-part-"

int lad_part_manifest(const lad_plan *p, lad_writer *w, const uint64_t *file_bytes,
                      lad_error *err)
{
    json_t *shards = json_array();
    for (size_t s = 0; shards && s < p->nshards; s++)
        json_array_append_new(shards, json_pack("{s:s, s:I, s:i}", "file", p->shards[s].fname,
                                                "bytes", (json_int_t)file_bytes[s], "part",
                                                (int)p->shard_part[s] + 1));
    json_t *doc = shards ? json_pack("{s:s, s:i, s:i, s:i, s:o}", "format", "ladle-part",
                                     "version", 1, "part", (int)p->req.part + 1, "parts",
                                     (int)p->req.nparts, "shards", shards)
                         : NULL;
    char *text = doc ? json_dumps(doc, JSON_INDENT(1)) : NULL;
    json_decref(doc);
    int rc = text ? lad_writer_add_bytes(w, MANIFEST, text, strlen(text), err)
                  : lad_fail(err, "out of memory");
    free(text);
    return rc;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The manifest of a staging folder, or NULL. */
static json_t *read_manifest(const char *staging)
{
    char *path = lad_path_join(staging, MANIFEST);
    json_t *m = path ? json_load_file(path, 0, NULL) : NULL;
    free(path);
    const char *fmt = json_string_value(json_object_get(m, "format"));
    if (!fmt || strcmp(fmt, "ladle-part") || !json_is_array(json_object_get(m, "shards"))) {
        json_decref(m);
        return NULL;
    }
    return m;
}

/* The first staging folder under out that holds a manifest (allocated), or
 * NULL. */
static char *find_staging(const char *out)
{
    DIR *d = opendir(out);
    if (!d)
        return NULL;
    char *found = NULL;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (strncmp(e->d_name, STAGING, strlen(STAGING)))
            continue;
        char *p = lad_path_join(out, e->d_name);
        json_t *m = p ? read_manifest(p) : NULL;
        if (m)
            found = p;
        else
            free(p);
        json_decref(m);
    }
    closedir(d);
    return found;
}

/* The shards of the manifest not in out at their size, as text ("file
 * (part 2)"), or an empty string when none is missing. */
static char *missing_shards(const char *out, json_t *m, size_t *count)
{
    size_t n = 0, cap = 256, len = 0;
    char *text = calloc(cap, 1);
    json_t *s;
    size_t i;
    json_array_foreach(json_object_get(m, "shards"), i, s) {
        const char *f = json_string_value(json_object_get(s, "file"));
        json_int_t bytes = json_integer_value(json_object_get(s, "bytes"));
        char *path = f ? lad_path_join(out, f) : NULL;
        struct stat st;
        bool there = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
        bool ok = there && (json_int_t)st.st_size == bytes;
        free(path);
        if (ok || !text)
            continue;
        char item[512];
        int k = snprintf(item, sizeof item, "%s%s (part %d%s)", n ? ", " : "", f ? f : "?",
                         (int)json_integer_value(json_object_get(s, "part")),
                         there ? ": another size; was it run with other options? Every part "
                                 "must be the same command but for --part"
                               : "");
        if (len + (size_t)k + 1 > cap) {
            char *g = realloc(text, (cap = 2 * (len + (size_t)k + 1)));
            if (!g)
                continue;
            text = g;
        }
        memcpy(text + len, item, (size_t)k + 1);
        len += (size_t)k;
        n++;
    }
    *count = n;
    return text;
}

static bool is_shard(json_t *m, const char *name)
{
    json_t *s;
    size_t i;
    json_array_foreach(json_object_get(m, "shards"), i, s) {
        const char *f = json_string_value(json_object_get(s, "file"));
        if (f && !strcmp(f, name))
            return true;
    }
    return false;
}

/* Renames staging/name to out/name. */
static int move_in(const char *staging, const char *out, const char *name, lad_error *err)
{
    char *from = lad_path_join(staging, name), *to = lad_path_join(out, name);
    int rc = from && to ? 0 : lad_fail(err, "out of memory");
    if (rc == 0 && rename(from, to) != 0)
        rc = lad_fail(err, "%s: cannot move %s into place: %s", out, name, strerror(errno));
    free(from);
    free(to);
    return rc;
}

/* Every file but the shards and the manifest, the index last; then the
 * staging folders go. Under the lock: one publisher. */
static int publish(const char *out, const char *staging, json_t *m, bool *published,
                   lad_error *err)
{
    char *lock = lad_path_join(out, LOCK);
    int fd = lock ? open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
    if (fd < 0) { /* another part is publishing (or has) */
        free(lock);
        *published = false;
        return 0;
    }
    close(fd);
    int rc = 0;
    bool has_index = false;
    DIR *d = opendir(staging);
    struct dirent *e;
    while (rc == 0 && d && (e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, MANIFEST) || is_shard(m, n))
            continue;
        if (!strcmp(n, INDEX)) {
            has_index = true;
            continue;
        }
        rc = move_in(staging, out, n, err);
    }
    if (d)
        closedir(d);
    if (rc == 0 && fsync_dir(out) != 0)
        rc = lad_fail(err, "%s: flushing the folder failed: %s", out, strerror(errno));
    if (rc == 0 && has_index)
        rc = move_in(staging, out, INDEX, err);
    if (rc == 0) {
        fsync_dir(out);
        /* every part has finished (its shards are in): their staging goes */
        DIR *o = opendir(out);
        while (o && (e = readdir(o)))
            if (!strncmp(e->d_name, STAGING, strlen(STAGING))) {
                char *p = lad_path_join(out, e->d_name);
                if (p)
                    lad_remove_tree(p);
                free(p);
            }
        if (o)
            closedir(o);
    }
    unlink(lock);
    free(lock);
    *published = rc == 0;
    return rc;
}

int lad_parts_publish(const char *out, const char *staging, lad_parts_status *st,
                      lad_error *err)
{
    memset(st, 0, sizeof *st);
    char *found = staging ? lad_strdup(staging) : find_staging(out);
    if (!found) {
        char *index = lad_path_join(out, INDEX);
        bool done = index && lad_exists(index);
        free(index);
        if (done) {
            st->complete = true;
            return 0;
        }
        return lad_fail(err, "%s: no part of a merge in parts is here (no %s*/%s); run the "
                             "parts with --part I/N -o %s",
                        out, STAGING, MANIFEST, out);
    }
    json_t *m = read_manifest(found);
    int rc = m ? 0 : lad_fail(err, "%s: its manifest is missing or damaged", found);
    size_t nmissing = 0;
    char *missing = rc == 0 ? missing_shards(out, m, &nmissing) : NULL;
    if (rc == 0 && !missing)
        rc = lad_fail(err, "out of memory");
    if (rc == 0) {
        st->parts = (uint32_t)json_integer_value(json_object_get(m, "parts"));
        st->missing = nmissing;
        if (nmissing) {
            snprintf(st->missing_text, sizeof st->missing_text, "%s", missing);
        } else {
            st->complete = true;
            rc = publish(out, found, m, &st->published, err);
        }
    }
    free(missing);
    json_decref(m);
    free(found);
    return rc;
}

int lad_part_execute(lad_plan *p, lad_run_stats *stats, lad_parts_status *st, lad_error *err)
{
    const char *out = p->req.output;
    struct stat sb;
    if (stat(out, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return lad_fail(err, "%s: exists and is not a folder; --part writes a folder", out);
    char *index = lad_path_join(out, INDEX), *single = lad_path_join(out, "model.safetensors");
    bool whole = (index && lad_exists(index)) || (single && lad_exists(single));
    free(index);
    free(single);
    if (whole && !p->req.force) {
        return lad_fail(err, "%s: already holds a model (use --force to write the parts over "
                             "it)",
                        out);
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return lad_fail(err, "%s: cannot create it: %s", out, strerror(errno));
    char *staging = lad_asprintf("%s/" STAGING "%u-of-%u", out, p->req.part + 1, p->req.nparts);
    if (!staging)
        return lad_fail(err, "out of memory");
    lad_writer *w = NULL;
    /* (a staging folder a failed attempt left is replaced) */
    int rc = lad_writer_begin(staging, true, true, &w, err);
    if (rc == 0)
        rc = lad_engine_execute(p, w, NULL, stats, err); /* commits or aborts w */
    for (size_t s = 0; rc == 0 && s < p->nshards; s++)
        if (p->shard_part[s] == p->req.part)
            rc = move_in(staging, out, p->shards[s].fname, err);
    if (rc == 0 && fsync_dir(out) != 0)
        rc = lad_fail(err, "%s: flushing the folder failed: %s", out, strerror(errno));
    if (rc == 0)
        rc = lad_parts_publish(out, staging, st, err);
    free(staging);
    return rc;
}
