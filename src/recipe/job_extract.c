/* lora extract's arguments (the CLI's and the Python package's one
 * parser): the request of engine/extract.c from --base, --fine-tuned, -o
 * and the options `ladle lora extract --help` lists. */
#include "job.h"

#include <stdlib.h>
#include <string.h>

enum {
    OPT_BASE = 1000, OPT_TUNED, OPT_EPS, OPT_EMBED, OPT_NO_DIST, OPT_INCLUDE, OPT_EXCLUDE,
    OPT_RANDOMIZED, OPT_EXACT, OPT_ITERS, OPT_SEED, OPT_BASE_NAME, OPT_DTYPE, OPT_FORCE,
};

#define MAX_PATTERNS 64

typedef struct extract_args {
    lad_extract_request req;
    const char *base, *tuned;
    const char *inc[MAX_PATTERNS], *exc[MAX_PATTERNS];
    bool quiet;
} extract_args;

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    extract_args *a = ctx;
    lad_extract_request *q = &a->req;
    double v;
    switch (id) {
    case OPT_BASE:
        a->base = arg;
        return 0;
    case OPT_TUNED:
        a->tuned = arg;
        return 0;
    case 'o':
        q->output = arg;
        return 0;
    case 'r':
        if (lad_parse_double(arg, &v) || v < 1 || v > 65536 || v != (double)(uint32_t)v)
            return lad_usage(err, "--rank takes a whole number from 1 to 65536, not '%s'", arg);
        q->rank = (uint32_t)v;
        return 0;
    case OPT_EPS:
        if (lad_parse_double(arg, &q->sv_epsilon) || !(q->sv_epsilon >= 0))
            return lad_usage(err, "--sv-epsilon takes a number at least 0, not '%s'", arg);
        return 0;
    case OPT_EMBED:
        q->embed_lora = true;
        return 0;
    case OPT_NO_DIST:
        q->no_distribute = true;
        return 0;
    case OPT_INCLUDE:
    case OPT_EXCLUDE: {
        size_t *n = id == OPT_INCLUDE ? &q->ninclude : &q->nexclude;
        if (*n == MAX_PATTERNS)
            return lad_usage(err, "at most %d patterns each", MAX_PATTERNS);
        (id == OPT_INCLUDE ? a->inc : a->exc)[(*n)++] = arg;
        return 0;
    }
    case OPT_RANDOMIZED:
        q->randomized = true;
        return 0;
    case OPT_EXACT:
        q->randomized = false;
        return 0;
    case OPT_ITERS:
        if (lad_parse_double(arg, &v) || v < 0 || v > 64 || v != (double)(int)v)
            return lad_usage(err, "--power-iters takes a whole number from 0 to 64, not '%s'",
                             arg);
        q->power_iters = (int)v;
        return 0;
    case OPT_SEED:
        if (lad_parse_double(arg, &v) || v < 0 || v > 9007199254740992.0 ||
            v != (double)(uint64_t)v)
            return lad_usage(err, "--seed takes a whole number, not '%s'", arg);
        q->seed = (uint64_t)v;
        return 0;
    case OPT_BASE_NAME:
        q->base_name = arg;
        return 0;
    case OPT_DTYPE:
        if (lad_dtype_parse_user(arg, &q->dtype))
            return lad_usage(err, "--dtype takes f32, f16 or bf16, not '%s'", arg);
        q->has_dtype = true;
        return 0;
    case OPT_FORCE:
        q->force = true;
        return 0;
    case 'q':
        a->quiet = true;
        return 0;
    }
    return 0;
}


int lad_lora_extract_argv(int argc, char *const *argv, lad_progress_fn progress, void *ctx,
                          bool *quiet, lad_extract_stats *stats, lad_error *err)
{
    static const lad_optdef defs[] = {
        {"base", OPT_BASE, true},          {"fine-tuned", OPT_TUNED, true},
        {"output", 'o', true},             {"rank", 'r', true},
        {"sv-epsilon", OPT_EPS, true},     {"embed-lora", OPT_EMBED, false},
        {"no-distribute-scale", OPT_NO_DIST, false},
        {"include", OPT_INCLUDE, true},    {"exclude", OPT_EXCLUDE, true},
        {"randomized", OPT_RANDOMIZED, false}, {"exact", OPT_EXACT, false},
        {"power-iters", OPT_ITERS, true},
        {"seed", OPT_SEED, true},          {"base-name", OPT_BASE_NAME, true},
        {"dtype", OPT_DTYPE, true},        {"force", OPT_FORCE, false},
        {"quiet", 'q', false},             {"help", 'h', false},
        {0}};
    memset(stats, 0, sizeof *stats);
    extract_args a = {.req = {.rank = 128, .randomized = true, .power_iters = 4}};
    char *const *pos = NULL;
    int npos = 0;
    int rc = lad_opts_parse(argc, argv, defs, false, take, &a, &pos, &npos, err);
    free((void *)pos);
    *quiet = a.quiet;
    if (rc != 0)
        return rc;
    if (npos)
        return lad_usage(err, "unexpected argument (models are given with --base and "
                              "--fine-tuned)");
    if (!a.base || !a.tuned)
        return lad_usage(err, "--base BASE and --fine-tuned MODEL are required");
    if (!a.req.output)
        return lad_usage(err, "-o ADAPTER_DIR is required");
    lad_model *base = NULL, *tuned = NULL;
    if (lad_model_open(a.base, &base, err) || lad_model_open(a.tuned, &tuned, err)) {
        lad_model_close(base);
        return -1;
    }
    char *cmdline = lad_command_line(argc + 1, argv - 1); /* from "lora" */
    lad_extract_request *q = &a.req;
    q->base = base;
    q->tuned = tuned;
    q->include = a.inc;
    q->exclude = a.exc;
    q->cmdline = cmdline;
    q->progress = a.quiet ? NULL : progress;
    q->progress_ctx = ctx;
    rc = lad_lora_extract(q, stats, err);
    free(cmdline);
    lad_model_close(base);
    lad_model_close(tuned);
    return rc;
}
