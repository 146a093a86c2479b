/*
 * The evaluation log (JSON Lines). Each finished evaluation is appended as
 * one line and synced before the search goes on, so a crash, a kill or a
 * Ctrl-C loses at most the evaluations still running. --resume reads the
 * log back: a candidate whose recipe and evaluator command are already
 * there with a score is not evaluated again.
 *
 * A last line cut short by a crash is skipped with the rest still used;
 * any other malformed line is an error (the file is not ours).
 */
#include "ladle.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LOG_BYTES (1u << 30)

static char *key_of(const char *recipe, const char *eval)
{
    return lad_asprintf("%s\n%s", recipe, eval);
}

/* Reads the scores in; *cut: the last line has no newline (a crash). */
static int load(lad_journal *j, bool *cut, lad_error *err)
{
    char *text;
    size_t len;
    if (lad_read_file(j->path, MAX_LOG_BYTES, &text, &len, err))
        return -1;
    *cut = len && text[len - 1] != '\n';
    int rc = 0;
    size_t lineno = 0;
    for (char *line = text, *next; line < text + len; line = next) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        next = nl ? nl + 1 : text + len;
        lineno++;
        if (nl)
            *nl = 0;
        if (!*line)
            continue;
        json_error_t je;
        json_t *e = json_loads(line, 0, &je);
        const char *recipe = json_string_value(json_object_get(e, "recipe"));
        const char *eval = json_string_value(json_object_get(e, "eval"));
        if (!json_is_object(e) || !recipe || !eval) {
            json_decref(e);
            if (!nl) /* the last line, cut short by a crash: written again */
                break;
            rc = lad_fail(err, "%s:%zu: not a ladle log line (remove the file or give another "
                               "--log)",
                          j->path, lineno);
            break;
        }
        char *key = key_of(recipe, eval);
        if (!key) {
            json_decref(e);
            rc = lad_fail(err, "out of memory");
            break;
        }
        if (json_is_number(json_object_get(e, "score"))) {
            json_object_set_new(j->entries, key, e);
            j->nloaded++;
        } else {
            json_decref(e); /* a failed evaluation: evaluated again */
        }
        free(key);
    }
    free(text);
    return rc;
}

int lad_journal_open(lad_journal *j, const char *path, bool resume, lad_error *err)
{
    memset(j, 0, sizeof *j);
    j->fd = -1;
    j->path = lad_strdup(path);
    j->entries = json_object();
    if (!j->path || !j->entries)
        return lad_fail(err, "out of memory");
    struct stat st;
    bool exists = stat(path, &st) == 0;
    if (exists && !S_ISREG(st.st_mode))
        return lad_fail(err, "%s: the log is not a regular file", path);
    if (exists && st.st_size > 0 && !resume)
        return lad_fail(err, "%s: a log from an earlier run is there; pass --resume to re-use "
                             "its scores, or remove it",
                        path);
    bool cut = false;
    if (exists && resume && load(j, &cut, err))
        return -1;
    j->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (j->fd < 0)
        return lad_fail(err, "%s: cannot open the log: %s", path, strerror(errno));
    if (cut && write(j->fd, "\n", 1) != 1) /* the next line starts afresh */
        return lad_fail(err, "%s: cannot write the log: %s", path, strerror(errno));
    return 0;
}

bool lad_journal_find(const lad_journal *j, const char *recipe, const char *eval,
                      double *score)
{
    char *key = key_of(recipe, eval);
    json_t *e = key ? json_object_get(j->entries, key) : NULL;
    free(key);
    if (!e)
        return false;
    *score = json_number_value(json_object_get(e, "score"));
    return true;
}

int lad_journal_append(lad_journal *j, void *entry, lad_error *err)
{
    char *line = json_dumps(entry, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!line)
        return lad_fail(err, "out of memory");
    size_t n = strlen(line);
    line[n++] = '\n'; /* replaces the NUL: one write of the whole line */
    const char *p = line;
    while (n) {
        ssize_t w = write(j->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        n -= (size_t)w;
    }
    int rc = n == 0 && fsync(j->fd) == 0
                 ? 0
                 : lad_fail(err, "%s: cannot write the log: %s", j->path, strerror(errno));
    free(line);
    return rc;
}

void lad_journal_close(lad_journal *j)
{
    if (j->fd >= 0)
        close(j->fd);
    json_decref(j->entries);
    free(j->path);
    memset(j, 0, sizeof *j);
    j->fd = -1;
}
