/* ladle masks: TALL-mask compression of a family of fine-tunes, and
 * ladle masks apply: one task's model back from it. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: ladle masks --base BASE M1 M2 ... -o MASKS.safetensors [--tall-lambda L]\n"
    "                   [--dtype T] [--force] [-q]\n"
    "       ladle masks apply --base BASE MASKS.safetensors --task I -o OUT.safetensors\n"
    "                   [--dtype T] [--force] [-q]\n"
    "\n"
    "TALL-mask compression (Wang et al. 2024): the fine-tunes M_i of BASE kept as\n"
    "their summed task vector tau_MTL = sum_i (M_i - BASE) and, per task, one bit per\n"
    "weight: its TALL mask |tau_i| > L |tau_MTL - tau_i| (the masks consensus-ta\n"
    "counts). `masks apply` rebuilds task I as BASE + mask_I * tau_MTL. T fine-tunes\n"
    "cost one model (tau_MTL) plus T bits per weight instead of T models.\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --tall-lambda L   the masks' lambda (default 0.6, as consensus-ta)\n"
    "      --dtype T         masks: tau_MTL's dtype (f32, the default, bf16, f16);\n"
    "                        apply: the model's (default: the base's)\n"
    "      --task I          apply: the task, by index (0 = M1) or as masks named it\n"
    "  -o, --output OUT      the .safetensors file to write\n"
    "      --force           replace OUT if it exists\n"
    "  -q, --quiet           no progress or summary on stderr\n"
    "  -h, --help            this help\n";

typedef struct masks_args {
    const char *base, *out, *task, *dtype;
    double tall;
    bool force, quiet;
} masks_args;

enum { OPT_BASE = 1000, OPT_TALL, OPT_DTYPE, OPT_TASK, OPT_FORCE };

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    masks_args *a = ctx;
    char *end;
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
        a->tall = strtod(arg, &end);
        if (!*arg || *end || !(a->tall >= 0) || a->tall > 1e300)
            return lad_usage(err, "--tall-lambda takes a number at least 0, not '%s'", arg);
        break;
    }
    return 0;
}

int cmd_masks(int argc, char **argv)
{
    static const lad_optdef defs[] = {
        {"base", OPT_BASE, true},    {"output", 'o', true},     {"tall-lambda", OPT_TALL, true},
        {"dtype", OPT_DTYPE, true},  {"task", OPT_TASK, true},  {"force", OPT_FORCE, false},
        {"quiet", 'q', false},       {"help", 'h', false},      {0}};
    bool apply = argc > 1 && !strcmp(argv[1], "apply");
    const char *cmd = apply ? "masks apply" : "masks";
    masks_args a = {.tall = 0.6};
    char *const *pos;
    int npos, code;
    if (!cli_parse(cmd, HELP, argc - apply, argv + apply, defs, false, take, &a, &pos, &npos,
                   &code))
        return code;
    int rc = 0;
    lad_dtype dt = LAD_F32;
    if (!a.base)
        rc = usage_error(cmd, "--base BASE is required");
    else if (!a.out)
        rc = usage_error(cmd, "-o OUT is required");
    else if (!lad_ends_with(a.out, ".safetensors"))
        rc = usage_error(cmd, "-o: a .safetensors file, not '%s'", a.out);
    else if (a.dtype && lad_dtype_parse_user(a.dtype, &dt))
        rc = usage_error(cmd, "--dtype takes f32, f16 or bf16, not '%s'", a.dtype);
    else if (apply && (npos != 1 || !a.task))
        rc = usage_error(cmd, "expected one masks file and --task I");
    else if (!apply && a.task)
        rc = usage_error(cmd, "--task is masks apply's");
    else if (!apply && npos < 2)
        rc = usage_error(cmd, "needs at least two fine-tunes besides the base, got %d", npos);
    if (rc) {
        free((void *)pos);
        return rc;
    }
    lad_error err = {0};
    size_t n = (size_t)npos + 1;
    lad_model **m = calloc(n, sizeof *m);
    if (!m) {
        lad_fail(&err, "out of memory");
        rc = report(&err);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (lad_model_open(i == 0 ? a.base : pos[i - 1], &m[i], &err))
            rc = report_cmd(cmd, &err);
    if (rc == 0 && apply) {
        lad_masks_apply_request q = {.base = m[0], .masks = m[1], .task = a.task,
                                     .has_dtype = a.dtype != NULL, .dtype = dt,
                                     .output = a.out, .force = a.force};
        if (lad_masks_apply(&q, &err))
            rc = report_cmd(cmd, &err);
        else
            note(a.quiet, "wrote task %s of %s to %s", a.task, pos[0], a.out);
    } else if (rc == 0) {
        lad_masks_request q = {.base = m[0], .tasks = (const lad_model *const *)m + 1,
                               .ntasks = n - 1, .tall_lambda = a.tall,
                               .has_dtype = a.dtype != NULL, .dtype = dt, .output = a.out,
                               .force = a.force, .progress = a.quiet ? NULL : progress_bar};
        lad_masks_stats st;
        if (lad_masks_write(&q, &st, &err))
            rc = report_cmd(cmd, &err);
        else {
            char b[32];
            lad_format_bytes(st.bytes, b, sizeof b);
            note(a.quiet, "wrote %s: %zu tensors' merged task vector and %zu masks (%s); %.1f%% "
                          "of mask bits set",
                 a.out, st.tensors, n - 1, b, 100 * st.kept_fraction);
        }
    }
    for (size_t i = 0; m && i < n; i++)
        lad_model_close(m[i]);
    free(m);
    free((void *)pos);
    return rc;
}
