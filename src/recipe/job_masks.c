/* ladle masks / masks apply's arguments (the CLI's and the Python
 * package's one parser): the requests of engine/masks.c. */
#include "job.h"

#include <stdlib.h>
#include <string.h>

enum { OPT_BASE = 1000, OPT_TALL, OPT_DTYPE, OPT_TASK, OPT_FORCE };

typedef struct masks_args {
    const char *base, *out, *task, *dtype;
    double tall;
    bool force, quiet;
} masks_args;

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    masks_args *a = ctx;
    switch (id) {
    case OPT_BASE:
        a->base = arg;
        break;
    case 'o':
        a->out = arg;
        break;
    case OPT_TASK:
        a->task = arg;
        break;
    case OPT_DTYPE:
        a->dtype = arg;
        break;
    case OPT_FORCE:
        a->force = true;
        break;
    case 'q':
        a->quiet = true;
        break;
    case OPT_TALL:
        if (lad_parse_double(arg, &a->tall) || !(a->tall >= 0) || a->tall > 1e300)
            return lad_usage(err, "--tall-lambda takes a number at least 0, not '%s'", arg);
        break;
    }
    return 0;
}

int lad_masks_argv(int argc, char *const *argv, lad_progress_fn progress, void *ctx, bool *quiet,
                   lad_masks_stats *stats, lad_error *err)
{
    static const lad_optdef defs[] = {
        {"base", OPT_BASE, true},   {"output", 'o', true},    {"tall-lambda", OPT_TALL, true},
        {"dtype", OPT_DTYPE, true}, {"task", OPT_TASK, true}, {"force", OPT_FORCE, false},
        {"quiet", 'q', false},      {"help", 'h', false},     {0}};
    memset(stats, 0, sizeof *stats);
    bool apply = argc > 1 && !strcmp(argv[1], "apply");
    masks_args a = {.tall = 0.6}; /* as consensus-ta */
    char *const *pos = NULL;
    int npos = 0;
    int rc = lad_opts_parse(argc - apply, argv + apply, defs, false, take, &a, &pos, &npos, err);
    *quiet = a.quiet;
    lad_dtype dt = LAD_F32;
    if (rc == 0) {
        if (!a.base)
            rc = lad_usage(err, "--base BASE is required");
        else if (!a.out)
            rc = lad_usage(err, "-o OUT is required");
        else if (!lad_ends_with(a.out, ".safetensors"))
            rc = lad_usage(err, "-o: a .safetensors file, not '%s'", a.out);
        else if (a.dtype && lad_dtype_parse_user(a.dtype, &dt))
            rc = lad_usage(err, "--dtype takes f32, f16 or bf16, not '%s'", a.dtype);
        else if (apply && (npos != 1 || !a.task))
            rc = lad_usage(err, "expected one masks file and --task I");
        else if (!apply && a.task)
            rc = lad_usage(err, "--task is masks apply's");
        else if (!apply && npos < 2)
            rc = lad_usage(err, "needs at least two fine-tunes besides the base, got %d", npos);
    }
    size_t n = rc == 0 ? (size_t)npos + 1 : 0;
    lad_model **m = n ? calloc(n, sizeof *m) : NULL;
    if (n && !m)
        rc = lad_fail(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = lad_model_open(i == 0 ? a.base : pos[i - 1], &m[i], err);
    if (rc == 0 && apply) {
        lad_masks_apply_request q = {.base = m[0], .masks = m[1], .task = a.task,
                                     .has_dtype = a.dtype != NULL, .dtype = dt,
                                     .output = a.out, .force = a.force};
        rc = lad_masks_apply(&q, err);
    } else if (rc == 0) {
        lad_masks_request q = {.base = m[0], .tasks = (const lad_model *const *)m + 1,
                               .ntasks = n - 1, .tall_lambda = a.tall,
                               .has_dtype = a.dtype != NULL, .dtype = dt, .output = a.out,
                               .force = a.force, .progress = a.quiet ? NULL : progress,
                               .progress_ctx = ctx};
        rc = lad_masks_write(&q, stats, err);
    }
    for (size_t i = 0; m && i < n; i++)
        lad_model_close(m[i]);
    free(m);
    free((void *)pos);
    return rc;
}
