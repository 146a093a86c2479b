/*
 * The candidate pipeline of greedy soups and sweeps.
 *
 * Merges run one at a time as child processes of this same binary (a
 * merge already uses every core, and a failed one cannot take the search
 * down with it); evaluations run up to --jobs at once, each in its own
 * process group so a timeout or Ctrl-C stops the evaluator's whole process
 * tree. At most one merged candidate waits for a free evaluation slot, so
 * the disk holds at most jobs + 1 candidates.
 */
#include "search.h"
#include "../core/util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_JOBS 64
#define POLL_MS 50

const lad_optdef SEARCH_OPTIONS[] = {
    {"eval", OPT_EVAL, true},          {"eval-timeout", OPT_EVAL_TIMEOUT, true},
    {"jobs", OPT_JOBS, true},          {"minimize", OPT_MINIMIZE, false},
    {"keep-candidates", OPT_KEEP, false}, {"work", OPT_WORK, true},
    {"log", OPT_LOG, true},            {"resume", OPT_RESUME, false},
};
const size_t NSEARCH_OPTIONS = sizeof SEARCH_OPTIONS / sizeof *SEARCH_OPTIONS;

int search_opts_take(search_opts *o, int id, const char *arg, lad_error *err)
{
    long n;
    double v;
    switch (id) {
    case OPT_EVAL:
        o->eval = arg;
        return 0;
    case OPT_EVAL_TIMEOUT:
        if (lad_parse_double(arg, &v) != 0 || v <= 0)
            return lad_usage(err, "--eval-timeout takes a number of seconds > 0, not '%s'", arg);
        o->timeout = v;
        return 0;
    case OPT_JOBS:
        if (lad_parse_long(arg, 1, MAX_JOBS, &n) != 0)
            return lad_usage(err, "--jobs takes a count from 1 to %d, not '%s'", MAX_JOBS, arg);
        o->jobs = (int)n;
        return 0;
    case OPT_MINIMIZE:
        o->minimize = true;
        return 0;
    case OPT_KEEP:
        o->keep = true;
        return 0;
    case OPT_WORK:
        o->work = arg;
        return 0;
    case OPT_LOG:
        o->log = arg;
        return 0;
    case OPT_RESUME:
        o->resume = true;
        return 0;
    default:
        return 1;
    }
}

void argv_free(char **argv)
{
    for (size_t i = 0; argv && argv[i]; i++)
        free(argv[i]);
    free(argv);
}

void candidate_free(candidate *c)
{
    free(c->label);
    argv_free(c->merge);
    free(c->recipe);
    memset(c, 0, sizeof *c);
}

char *recipe_of(char *const *merge)
{
    int n = 0;
    while (merge[n])
        n++;
    return lad_command_line(n, merge);
}

/* Candidates of a run that was killed (SIGKILL, a crash, a power cut):
 * "cand-NNNN[.safetensors|.gguf]" and the merge's hidden temporaries. They are
 * ladle's own, in ladle's work folder, and may be as large as a model. */
static void remove_stale(search *s)
{
    DIR *d = opendir(s->work);
    struct dirent *e;
    size_t n = 0;
    while (d && (e = readdir(d))) {
        const char *name = e->d_name;
        bool ours = !strncmp(name, "cand-", 5) ||
                    (!strncmp(name, ".cand-", 6) && strstr(name, ".ladle-tmp-"));
        if (!ours)
            continue;
        char *path = lad_path_join(s->work, name);
        if (path)
            lad_remove_tree(path);
        free(path);
        n++;
    }
    if (d)
        closedir(d);
    if (n)
        note(s->quiet, "%s: removed %zu candidate%s left in %s by an earlier run", s->cmd, n,
             n == 1 ? "" : "s", s->work);
}

const char *search_suffix(const char *out, char *const *merge)
{
    if (out)
        return lad_ends_with(out, ".safetensors") ? ".safetensors"
               : lad_ends_with(out, ".gguf")      ? ".gguf"
                                                  : "";
    for (size_t i = 1; merge && merge[i]; i++) {
        if (lad_ends_with(merge[i], ".gguf"))
            return ".gguf";
        if (lad_is_dir(merge[i]))
            return "";
    }
    return ".safetensors";
}

/* The evaluator's program (its command's first word, when that is a plain
 * word: not an assignment, a quote or other shell syntax), if it is not to
 * be found: checked before the search starts, not after its first merge. */
static bool program_missing(const char *eval, char *name, size_t len)
{
    while (*eval == ' ' || *eval == '\t')
        eval++;
    size_t n = strcspn(eval, " \t\n");
    if (n == 0 || n >= len || strcspn(eval, "=$`'\"(){};|&<>\\*?[~") < n)
        return false;
    memcpy(name, eval, n);
    name[n] = 0;
    if (strchr(name, '/'))
        return access(name, X_OK) != 0;
    static const char *const BUILTIN[] = {"exec", "env", "time", "nice", "command", "eval",
                                          "echo", "true", "false", "test", "exit", "kill"};
    for (size_t i = 0; i < sizeof BUILTIN / sizeof *BUILTIN; i++)
        if (!strcmp(name, BUILTIN[i]))
            return false;
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; p && *p;) {
        size_t k = strcspn(p, ":");
        char full[PATH_MAX];
        if (k > 0 && (size_t)snprintf(full, sizeof full, "%.*s/%s", (int)k, p, name) < sizeof full &&
            access(full, X_OK) == 0)
            return false;
        p += k + (p[k] == ':');
    }
    return true;
}

int search_open(search *s, const char *cmd, const search_opts *o, bool quiet, const char *suffix,
                const char *out, lad_error *err)
{
    memset(s, 0, sizeof *s);
    s->cmd = cmd;
    s->o = *o;
    s->quiet = quiet;
    s->suffix = suffix;
    if (s->o.jobs < 1)
        s->o.jobs = 1;
    if (!o->eval)
        return lad_fail(err, "%s: no evaluator given (--eval 'CMD {model}')", cmd);
    char prog[256];
    if (program_missing(o->eval, prog, sizeof prog)) {
        bool slurm = !strcmp(prog, "srun") || !strcmp(prog, "sbatch") || !strcmp(prog, "salloc");
        return lad_usage(err, "%s: --eval runs '%s', which is not %s%s", cmd, prog,
                         strchr(prog, '/') ? "an executable file" : "on PATH",
                         slurm ? " (it is Slurm's: run ladle where Slurm's commands are, a "
                                 "login or compute node of the cluster)"
                               : "");
    }
    if (o->resume && !o->work && !o->log)
        return lad_fail(err, "%s: --resume needs the earlier run's --work DIR or --log FILE "
                             "(without them there is no log to resume from)",
                        cmd);
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return lad_fail(err, "cannot find the ladle executable: %s", strerror(errno));
    exe[len] = 0;
    if (!(s->self = lad_strdup(exe)))
        return lad_fail(err, "out of memory");

    if (o->work) {
        if (mkdir(o->work, 0755) != 0 && errno != EEXIST)
            return lad_fail(err, "%s: cannot make the work folder: %s", o->work,
                            strerror(errno));
        if (!lad_is_dir(o->work))
            return lad_fail(err, "%s: the work folder is not a folder", o->work);
        s->work = lad_strdup(o->work);
    } else {
        /* Beside the output: the file system the user chose for a model. */
        const char *tmp = getenv("TMPDIR");
        char *dir = out ? lad_dirname(out) : lad_strdup(tmp && *tmp ? tmp : "/tmp");
        s->work = dir ? lad_asprintf("%s/.ladle-%s-work-XXXXXX", dir, cmd) : NULL;
        free(dir);
        if (s->work && !mkdtemp(s->work))
            return lad_fail(err, "%s: cannot make a work folder: %s", s->work, strerror(errno));
        s->work_temp = true;
    }
    if (!s->work)
        return lad_fail(err, "out of memory");

    if (o->work && !o->keep)
        remove_stale(s);

    char *log = o->log ? lad_strdup(o->log)
                       : o->work ? lad_path_join(o->work, "ladle-log.jsonl") : NULL;
    if (log) {
        int rc = lad_journal_open(&s->log, log, o->resume, err);
        free(log);
        if (rc)
            return -1;
        s->has_log = true;
        if (o->resume)
            note(quiet, "%s: resuming: %zu score%s in %s", cmd, s->log.nloaded,
                 s->log.nloaded == 1 ? "" : "s", s->log.path);
    }
    return 0;
}

/* ------------------------------------------------------------ the pipeline */

typedef struct pipeline {
    search *s;
    candidate *c;
    size_t n;
    bool *taken;            /* scored, or in the pipeline: no longer to start */
    char **path;            /* candidate i's model path while it exists */
    lad_child merge;
    long merging, ready;    /* candidate indexes, -1 for none */
    lad_child eval[MAX_JOBS];
    long slot_cand[MAX_JOBS];
    double merge_seconds;
    bool failed;
} pipeline;

/* The last line of a child's stderr without our "ladle: error: " prefix. */
static const char *last_line(lad_child *ch)
{
    char *t = ch->text[1];
    size_t n = ch->len[1];
    while (n && (t[n - 1] == '\n' || t[n - 1] == ' '))
        t[--n] = 0;
    size_t start = n;
    while (start && t[start - 1] != '\n')
        start--;
    const char *line = t + start;
    if (!strncmp(line, "ladle: error: ", 14))
        line += 14;
    return *line ? line : "(no message)";
}

/* The evaluator's stderr, last lines, indented, for a failure. */
static void show_stderr(const candidate *c, lad_child *ch)
{
    char *t = ch->text[1];
    size_t n = ch->len[1];
    while (n && t[n - 1] == '\n')
        n--;
    if (!n) {
        fprintf(stderr, "ladle: the evaluator printed nothing on stderr for %s\n", c->label);
        return;
    }
    size_t start = n, lines = 0;
    while (start > 0 && lines < 12)
        if (t[--start] == '\n')
            lines++;
    if (t[start] == '\n')
        start++;
    fprintf(stderr, "ladle: the evaluator's stderr for %s (last lines):\n", c->label);
    for (size_t i = start; i < n;) {
        const char *nl = memchr(t + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (t + i)) : n - i;
        fprintf(stderr, "  | %.*s\n", (int)len, t + i);
        i += len + 1;
    }
}

static void remove_candidate(pipeline *p, size_t i)
{
    if (p->path[i] && p->c[i].merge && !p->s->o.keep)
        lad_remove_tree(p->path[i]);
}

static int log_entry(pipeline *p, size_t i, const char *path, const char *error_msg,
                     double seconds, lad_error *err)
{
    search *s = p->s;
    if (!s->has_log)
        return 0;
    json_t *e = json_object();
    json_object_set_new(e, "recipe", json_string(p->c[i].recipe));
    json_object_set_new(e, "eval", json_string(s->o.eval));
    json_object_set_new(e, "label", json_string(p->c[i].label));
    json_object_set_new(e, "path", json_string(path));
    json_object_set_new(e, "score", error_msg ? json_null() : json_real(p->c[i].score));
    json_object_set_new(e, "seconds", json_real(seconds));
    if (p->c[i].merge)
        json_object_set_new(e, "merge_seconds", json_real(p->merge_seconds));
    if (error_msg)
        json_object_set_new(e, "error", json_string(error_msg));
    int rc = lad_journal_append(&s->log, e, err);
    json_decref(e);
    return rc;
}

/* `ladle MERGE... EXTRA...` for a child: borrowed strings, NULL-ended. */
static char **ladle_argv(const search *s, char *const *merge, const char *const *extra)
{
    size_t n = 0, m = 0;
    while (merge[n])
        n++;
    while (extra[m])
        m++;
    char **argv = calloc(n + m + 2, sizeof *argv);
    if (!argv)
        return NULL;
    argv[0] = s->self;
    memcpy(argv + 1, merge, n * sizeof *argv);
    memcpy(argv + 1 + n, extra, m * sizeof *argv);
    return argv;
}

static int start_merge(pipeline *p, size_t i, lad_error *err)
{
    search *s = p->s;
    if (p->c[i].made) { /* made ahead by the caller: its child becomes ours */
        if (!(p->path[i] = lad_strdup(p->c[i].made_path)))
            return lad_fail(err, "out of memory");
        p->merge = *p->c[i].made;
        p->c[i].made_taken = true;
        p->taken[i] = true;
        p->merging = (long)i;
        return 0;
    }
    /* A run killed earlier may have left candidates: never reuse a name. */
    char *name = NULL;
    do {
        free(name);
        name = lad_asprintf("%s/cand-%04d%s", s->work, s->seq++, s->suffix);
    } while (name && lad_exists(name));
    const char *extra[] = {"-o", name, "-q", NULL};
    char **argv = name ? ladle_argv(s, p->c[i].merge, extra) : NULL;
    if (!argv) {
        free(name);
        return lad_fail(err, "out of memory");
    }
    int rc = lad_child_start(&p->merge, argv, NULL, false, 0, err);
    free(argv);
    if (rc) {
        free(name);
        return -1;
    }
    p->path[i] = name;
    p->taken[i] = true;
    p->merging = (long)i;
    return 0;
}

static int start_eval(pipeline *p, size_t i, int slot, lad_error *err)
{
    search *s = p->s;
    const char *path = p->c[i].merge ? p->path[i] : p->c[i].model;
    char *cmd = lad_eval_expand(s->o.eval, path, slot, p->c[i].var_names, p->c[i].var_values,
                                p->c[i].nvars);
    char *env[3] = {lad_asprintf("LADLE_MODEL=%s", path), lad_asprintf("LADLE_SLOT=%d", slot),
                    NULL};
    int rc = -1;
    if (!cmd || !env[0] || !env[1]) {
        lad_fail(err, "out of memory");
    } else {
        char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        rc = lad_child_start(&p->eval[slot], argv, env, true, s->o.timeout, err);
    }
    free(cmd);
    /* putenv in the child took these strings; the parent's copies go. */
    free(env[0]);
    free(env[1]);
    if (rc == 0) {
        p->slot_cand[slot] = (long)i;
        p->taken[i] = true;
    }
    return rc;
}

static void fail_once(pipeline *p, lad_error *err, const lad_error *why)
{
    if (!p->failed) {
        *err = *why;
        p->failed = true;
    } else {
        fprintf(stderr, "ladle: also: %s\n", why->msg);
    }
}

static void merge_finished(pipeline *p, lad_error *err)
{
    size_t i = (size_t)p->merging;
    p->merge_seconds = lad_now() - p->merge.started;
    if (lad_child_ok(&p->merge)) {
        p->ready = (long)i;
    } else {
        lad_error e = {0};
        char how[128];
        lad_child_describe(&p->merge, how, sizeof how);
        lad_fail(&e, "%s: merging candidate %s failed (%s): %s", p->s->cmd, p->c[i].label, how,
                 last_line(&p->merge));
        e.interrupted = lad_interrupted();
        lad_remove_tree(p->path[i]);
        fail_once(p, err, &e);
    }
    lad_child_free(&p->merge);
    p->merging = -1;
}

static void eval_finished(pipeline *p, int slot, lad_error *err)
{
    search *s = p->s;
    lad_child *ch = &p->eval[slot];
    size_t i = (size_t)p->slot_cand[slot];
    candidate *c = &p->c[i];
    const char *path = c->merge ? p->path[i] : c->model;
    double seconds = lad_now() - ch->started;
    char how[160] = "";
    if (!lad_child_ok(ch))
        lad_child_describe(ch, how, sizeof how);
    else if (lad_eval_score(ch->text[0], &c->score) != 0)
        snprintf(how, sizeof how, "it printed no number on stdout (the score is the last number "
                                  "printed)");
    lad_error e = {0};
    if (how[0] && lad_interrupted()) {
        lad_fail(&e, "%s: interrupted while evaluating %s", s->cmd, c->label);
        e.interrupted = true;
        fail_once(p, err, &e);
    } else if (how[0]) {
        show_stderr(c, ch);
        lad_fail(&e, "%s: evaluating %s%s%s%s failed: %s; nothing was accepted from it", s->cmd,
                 c->label, strcmp(path, c->label) ? " (" : "", strcmp(path, c->label) ? path : "",
                 strcmp(path, c->label) ? ")" : "", how);
        if (log_entry(p, i, path, how, seconds, &e) != 0)
            fprintf(stderr, "ladle: also: %s\n", e.msg);
        fail_once(p, err, &e);
    } else {
        c->scored = true;
        c->seconds = seconds;
        s->done++;
        if (log_entry(p, i, path, NULL, seconds, &e) != 0)
            fail_once(p, err, &e);
        note(s->quiet, "%s [%zu/%zu] %s: %.10g (evaluated in %.1fs)", s->cmd, s->done, s->total,
             c->label, c->score, seconds);
    }
    remove_candidate(p, i);
    p->slot_cand[slot] = -1;
    lad_child_free(ch);
}

/* Is a candidate from next on still to be merged? */
static bool merges_left(const pipeline *p, size_t next)
{
    for (size_t i = next; i < p->n; i++)
        if (!p->taken[i] && p->c[i].merge)
            return true;
    return false;
}

static int start_child(search *s, char *const *merge, const char *out, bool force, bool summary,
                       lad_child *ch, lad_error *err);

void search_after(search *s, char *const *merge, const char *out, lad_child *ch)
{
    s->after = merge;
    s->after_out = out;
    s->after_child = ch;
    s->after_started = false;
}

int search_eval(search *s, candidate *c, size_t n, lad_error *err)
{
    pipeline p = {.s = s, .c = c, .n = n, .merging = -1, .ready = -1};
    p.taken = calloc(n ? n : 1, sizeof *p.taken);
    p.path = calloc(n ? n : 1, sizeof *p.path);
    for (int k = 0; k < MAX_JOBS; k++) {
        p.slot_cand[k] = -1;
        p.eval[k].fd[0] = p.eval[k].fd[1] = -1;
    }
    p.merge.fd[0] = p.merge.fd[1] = -1;
    if (!p.taken || !p.path) {
        free(p.taken);
        free(p.path);
        return lad_fail(err, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (c[i].scored)
            p.taken[i] = true;
        else if (!s->planned) /* else the caller told the whole count */
            s->total++;
    }
    for (size_t i = 0; i < n; i++)
        if (!c[i].scored && s->has_log &&
            lad_journal_find(&s->log, c[i].recipe, s->o.eval, &c[i].score)) {
            c[i].scored = c[i].from_log = p.taken[i] = true;
            s->done++;
            note(s->quiet, "%s [%zu/%zu] %s: %.10g (from the log)", s->cmd, s->done, s->total,
                 c[i].label, c[i].score);
        }
    size_t next = 0;
    for (;;) {
        if (lad_interrupted() && !p.failed) {
            lad_error e = {.interrupted = true};
            lad_fail(&e, "%s: interrupted; every finished evaluation is in the log%s", s->cmd,
                     s->has_log ? "" : " (none: no --work or --log was given)");
            fail_once(&p, err, &e);
        }
        if (p.failed) { /* stop starting; interrupted: stop the running ones too */
            for (int k = 0; k < s->o.jobs; k++)
                if (p.slot_cand[k] >= 0 && lad_interrupted())
                    lad_child_stop(&p.eval[k]);
            if (p.merging >= 0 && lad_interrupted())
                lad_child_stop(&p.merge);
        }
        while (next < n && p.taken[next])
            next++;
        for (int k = 0; k < s->o.jobs && !p.failed; k++) {
            if (p.slot_cand[k] >= 0)
                continue;
            long i = p.ready;
            if (i < 0 && next < n && !c[next].merge)
                i = (long)next;
            if (i < 0)
                break;
            if (i == p.ready)
                p.ready = -1;
            lad_error e = {0};
            if (start_eval(&p, (size_t)i, k, &e) != 0)
                fail_once(&p, err, &e);
            while (next < n && p.taken[next])
                next++;
        }
        if (!p.failed && p.merging < 0 && p.ready < 0 && next < n && c[next].merge) {
            lad_error e = {0};
            if (start_merge(&p, next, &e) != 0)
                fail_once(&p, err, &e);
            continue;
        }
        if (!p.failed && p.merging < 0 && s->after && !merges_left(&p, next)) {
            lad_error e = {0};
            if (start_child(s, s->after, s->after_out, false, false, s->after_child, &e) != 0)
                fail_once(&p, err, &e);
            else
                s->after_started = true;
            s->after = NULL;
        }
        lad_child *running[MAX_JOBS + 1];
        size_t nr = 0;
        if (p.merging >= 0)
            running[nr++] = &p.merge;
        for (int k = 0; k < s->o.jobs; k++)
            if (p.slot_cand[k] >= 0)
                running[nr++] = &p.eval[k];
        if (!nr && (p.failed || (next >= n && p.ready < 0)))
            break;
        lad_child_poll(running, nr, POLL_MS);
        if (p.merging >= 0 && p.merge.exited)
            merge_finished(&p, err);
        for (int k = 0; k < s->o.jobs; k++)
            if (p.slot_cand[k] >= 0 && p.eval[k].exited)
                eval_finished(&p, k, err);
    }
    s->after = NULL; /* (not started: a failure) */
    if (p.ready >= 0) /* merged, never evaluated (a failure elsewhere) */
        lad_remove_tree(p.path[p.ready]);
    for (size_t i = 0; i < n; i++)
        free(p.path[i]);
    free(p.path);
    free(p.taken);
    return p.failed ? -1 : 0;
}

/* Starts `ladle MERGE... -o OUT` (-q unless summary). */
static int start_child(search *s, char *const *merge, const char *out, bool force, bool summary,
                       lad_child *ch, lad_error *err)
{
    const char *extra[5] = {"-o", out};
    size_t k = 2;
    if (force)
        extra[k++] = "--force";
    if (s->quiet || !summary)
        extra[k++] = "-q";
    char **argv = ladle_argv(s, merge, extra);
    if (!argv)
        return lad_fail(err, "out of memory");
    int rc = lad_child_start(ch, argv, NULL, false, 0, err);
    free(argv);
    return rc;
}

/* Waits for it (stopping it on an interrupt); summary: pass its report on. */
static int finish_child(search *s, lad_child *ch, const char *out, bool summary, lad_error *err)
{
    lad_child *one = ch;
    bool stopped = false;
    while (!ch->exited) {
        if (lad_interrupted() && !stopped) {
            lad_child_stop(ch); /* it removes its temporary output */
            stopped = true;
        }
        lad_child_poll(&one, 1, POLL_MS);
    }
    int rc = 0;
    if (!lad_child_ok(ch)) {
        char how[128];
        lad_child_describe(ch, how, sizeof how);
        lad_fail(err, "%s: writing %s failed (%s): %s", s->cmd, out, how, last_line(ch));
        err->interrupted = lad_interrupted();
        rc = -1;
    } else if (summary) {
        fputs(ch->text[1], stderr);
    }
    lad_child_free(ch);
    return rc;
}

int search_write(search *s, char *const *merge, const char *out, bool force, lad_error *err)
{
    lad_child ch;
    if (start_child(s, merge, out, force, true, &ch, err) != 0)
        return -1;
    return finish_child(s, &ch, out, true, err);
}

int search_make_start(search *s, char *const *merge, const char *out, lad_child *ch,
                      lad_error *err)
{
    return start_child(s, merge, out, false, false, ch, err);
}

int search_make_wait(search *s, lad_child *ch, const char *out, lad_error *err)
{
    return finish_child(s, ch, out, false, err);
}

void search_make_cancel(search *s, lad_child *ch, const char *out)
{
    if (!ch->exited)
        lad_child_stop(ch);
    lad_child *one = ch;
    while (!ch->exited)
        lad_child_poll(&one, 1, POLL_MS);
    (void)s;
    lad_child_free(ch);
    lad_remove_tree(out);
}

char *search_work_file(search *s, const char *kind)
{
    char *name = NULL;
    do {
        free(name);
        name = lad_asprintf("%s/cand-%s-%04d%s", s->work, kind, s->seq++, s->suffix);
    } while (name && lad_exists(name));
    return name;
}

void search_close(search *s)
{
    if (s->work_temp && s->work) {
        if (s->o.keep)
            note(s->quiet, "%s: candidates kept in %s", s->cmd, s->work);
        else
            lad_remove_tree(s->work);
    }
    if (s->has_log)
        lad_journal_close(&s->log);
    free(s->work);
    free(s->self);
    memset(s, 0, sizeof *s);
}
