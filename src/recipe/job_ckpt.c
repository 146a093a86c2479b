/* ckpt DIR [--last N]: the uniform soup of the last N checkpoints of one
 * training run, ordered by step as a number. */
#define _GNU_SOURCE
#include "job.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHECKPOINTS 64
enum { OPT_LAST = 1100 };

typedef struct ckpt {
    unsigned long long step;
    char *path;
} ckpt;

typedef struct ckpt_args {
    ckpt *all;
    size_t n;
} ckpt_args;

static void free_args(void *state)
{
    ckpt_args *a = state;
    for (size_t i = 0; i < a->n; i++)
        free(a->all[i].path);
    free(a->all);
}

static int by_step(const void *a, const void *b)
{
    const ckpt *x = a, *y = b;
    return x->step < y->step ? -1 : x->step > y->step;
}

/* "checkpoint-1200" or "checkpoint-1200.safetensors" -> 1200. */
static bool step_of(const char *name, bool *is_file, unsigned long long *step)
{
    const char *p = name + strlen("checkpoint-");
    if (strncmp(name, "checkpoint-", 11) != 0 || !isdigit((unsigned char)*p))
        return false;
    char *end;
    *step = strtoull(p, &end, 10);
    *is_file = strcmp(end, ".safetensors") == 0;
    return *end == 0 || *is_file;
}

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    if (id == OPT_LAST && job_int("--last", arg, 1, 1000000, args, err))
        return -1;
    return 0;
}

/* Every checkpoint in dir, sorted by step. */
static int scan(ckpt_args *a, const char *dir, lad_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return lad_fail(err, "%s: cannot open the run folder", dir);
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        bool is_file;
        unsigned long long step;
        if (!step_of(e->d_name, &is_file, &step))
            continue;
        char *path = lad_path_join(dir, e->d_name);
        if (!path) {
            rc = lad_fail(err, "out of memory");
            break;
        }
        if (is_file ? !lad_is_file(path) : !lad_is_dir(path)) {
            free(path);
            continue;
        }
        if (a->n == cap) {
            ckpt *grown = realloc(a->all, (cap = cap ? cap * 2 : 16) * sizeof *grown);
            if (!grown) {
                free(path);
                rc = lad_fail(err, "out of memory");
                break;
            }
            a->all = grown;
        }
        a->all[a->n++] = (ckpt){step, path};
    }
    closedir(d);
    if (rc)
        return rc;
    if (a->n == 0)
        return lad_fail(err, "%s: no checkpoint-STEP.safetensors files or checkpoint-STEP/ "
                             "folders in it",
                        dir);
    qsort(a->all, a->n, sizeof *a->all, by_step);
    for (size_t i = 1; i < a->n; i++)
        if (a->all[i].step == a->all[i - 1].step)
            return lad_fail(err, "%s: step %llu appears twice (%s and %s)", dir, a->all[i].step,
                            a->all[i - 1].path, a->all[i].path);
    return 0;
}

int job_ckpt(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"last", OPT_LAST, true}, {0}};
    ckpt_args *a = job_state(j, sizeof *a);
    long last = 5;
    char *const *pos;
    int n, rc;
    if (!a)
        return lad_fail(err, "out of memory");
    j->free_state = free_args;
    if ((rc = job_parse(j, opts, take, &last, &pos, &n, err)) != 0)
        return rc;
    if (n != 1)
        rc = lad_usage(err, "expected one run folder DIR");
    else
        rc = scan(a, pos[0], err);
    size_t take_n = a->n < (size_t)last ? a->n : (size_t)last;
    if (rc == 0 && take_n > MAX_CHECKPOINTS)
        rc = lad_usage(err, "at most %d checkpoints at once", MAX_CHECKPOINTS);
    if (rc == 0 && take_n < (size_t)last &&
        !(j->note = lad_asprintf("ckpt: only %zu checkpoint%s in %s; averaging all of them",
                                 a->n, a->n == 1 ? "" : "s", pos[0])))
        rc = lad_fail(err, "out of memory");
    if (rc == 0 && (rc = job_models(j, take_n, err)) == 0) {
        const ckpt *sel = a->all + (a->n - take_n);
        json_t *steps = json_array();
        j->op.method = &lad_method_linear;
        for (size_t i = 0; i < take_n; i++) {
            j->refs[i] = sel[i].path;
            j->roles[i] = "checkpoint";
            j->op.param[i] = 1.0 / (double)take_n;
            json_array_append_new(steps, json_integer((json_int_t)sel[i].step));
        }
        j->op.nparam = take_n;
        j->template_model = take_n - 1;
        j->params = json_pack("{s:i, s:o}", "last", (int)last, "steps", steps);
    }
    free((void *)pos);
    return rc;
}
