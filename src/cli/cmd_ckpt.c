/* ladle ckpt DIR [--last N] -o OUT: uniform soup of the last N checkpoints
 * of one training run. */
#define _GNU_SOURCE
#include "cli.h"
#include "../core/util.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: ladle ckpt DIR [--last N] -o OUT [options]\n"
    "\n"
    "Checkpoint soup: the uniform average of the last N checkpoints of one run.\n"
    "DIR holds checkpoint-STEP.safetensors files or Hugging Face Trainer folders\n"
    "checkpoint-STEP/, ordered by STEP as a number (checkpoint-1000 comes after\n"
    "checkpoint-999). Config and tokenizer come from the newest one.\n"
    "\n"
    "      --last N          how many of the newest checkpoints (default 5)\n" COMMON_MERGE_HELP;

typedef struct ckpt {
    unsigned long long step;
    char *path;
} ckpt;

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

static int take(void *ctx, int id, const char *arg)
{
    long *last = ctx;
    if (id == OPT_LAST && parse_int(arg, 1, 1000000, last) != 0)
        return usage_error("ckpt", "--last takes a positive count, not '%s'", arg);
    return 0;
}

int cmd_ckpt(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS, {"last", required_argument, 0, OPT_LAST}, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    long last = 5;
    int first, code;
    if (!parse_args("ckpt", HELP, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &last,
                    &first, &code))
        return code;
    if (argc - first != 1)
        return usage_error("ckpt", "expected one run folder DIR");
    const char *dir = argv[first];
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "ladle: error: %s: cannot open the run folder\n", dir);
        return 1;
    }
    ckpt *all = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        bool is_file;
        unsigned long long step;
        if (!step_of(e->d_name, &is_file, &step))
            continue;
        char *path = lad_path_join(dir, e->d_name);
        if (!path || (is_file ? !lad_is_file(path) : !lad_is_dir(path))) {
            free(path);
            continue;
        }
        if (n == cap) {
            ckpt *grown = realloc(all, (cap = cap ? cap * 2 : 16) * sizeof *all);
            if (!grown) {
                free(path);
                break;
            }
            all = grown;
        }
        all[n++] = (ckpt){step, path};
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "ladle: error: %s: no checkpoint-STEP.safetensors files or "
                        "checkpoint-STEP/ folders in it\n",
                dir);
        free(all);
        return 1;
    }
    qsort(all, n, sizeof *all, by_step);
    for (size_t i = 1; i < n; i++)
        if (all[i].step == all[i - 1].step) {
            fprintf(stderr, "ladle: error: %s: step %llu appears twice (%s and %s)\n", dir,
                    all[i].step, all[i - 1].path, all[i].path);
            for (size_t k = 0; k < n; k++)
                free(all[k].path);
            free(all);
            return 1;
        }
    size_t take_n = (size_t)last < n ? (size_t)last : n;
    if (take_n < (size_t)last)
        note(o.quiet, "ckpt: only %zu checkpoint%s in %s; averaging all of them", n,
             n == 1 ? "" : "s", dir);
    const ckpt *sel = all + (n - take_n);
    const char **refs = calloc(take_n, sizeof *refs), **roles = calloc(take_n, sizeof *roles);
    json_t *steps = json_array();
    for (size_t i = 0; refs && roles && i < take_n; i++) {
        refs[i] = sel[i].path;
        roles[i] = "checkpoint";
        json_array_append_new(steps, json_integer((json_int_t)sel[i].step));
    }
    int rc;
    if (!refs || !roles || take_n > 64) {
        rc = usage_error("ckpt", take_n > 64 ? "at most 64 checkpoints at once" : "out of memory");
        json_decref(steps);
    } else {
        merge_job job = {.cmd = "ckpt", .refs = refs, .roles = roles, .nmodels = take_n,
                         .template_model = take_n - 1};
        job.op.method = &lad_method_linear;
        for (size_t i = 0; i < take_n; i++)
            job.op.param[i] = 1.0 / (double)take_n;
        job.op.nparam = take_n;
        job.params = json_pack("{s:i, s:o}", "last", (int)last, "steps", steps);
        rc = run_merge(&o, &job, argc, argv);
    }
    for (size_t i = 0; i < n; i++)
        free(all[i].path);
    free(all);
    free(refs);
    free(roles);
    return rc;
}
