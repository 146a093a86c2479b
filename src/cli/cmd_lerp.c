/* ladle lerp A B --alpha X -o OUT: theta = (1 - X) * A + X * B. */
#include "cli.h"

#include <stdio.h>

static const char HELP[] =
    "usage: ladle lerp A B --alpha X -o OUT [options]\n"
    "\n"
    "Linear interpolation of two models: theta = (1 - X) * A + X * B, per tensor,\n"
    "computed in fp32 (fp64 for F64 tensors) and rounded once to the output dtype.\n"
    "A and B are .safetensors files or Hugging Face folders; config, tokenizer and\n"
    "non-float tensors come from A.\n"
    "\n"
    "  -a, --alpha X         weight of B, in [0, 1] (required); a gradient a,b,c varies\n"
    "                        it across the layers (embeddings take a, lm_head c)\n"
    "      --extrapolate     allow X outside [0, 1]\n" COMMON_MERGE_HELP;

typedef struct lerp_args {
    lad_sched_value alpha;
    bool have_alpha, extrapolate;
} lerp_args;

static int take(void *ctx, int id, const char *arg)
{
    lerp_args *a = ctx;
    if (id == 'a') {
        if (parse_sched_option("lerp", "--alpha", arg, &a->alpha))
            return EXIT_USAGE;
        a->have_alpha = true;
    } else if (id == OPT_EXTRAPOLATE) {
        a->extrapolate = true;
    }
    return 0;
}

/* A tensor's op from its alpha: the linear kernel with (1 - alpha, alpha). */
static int build(const double *v, lad_op *op, const void *ctx, lad_error *err)
{
    const lerp_args *a = ctx;
    if ((v[0] < 0 || v[0] > 1) && !a->extrapolate)
        return lad_fail(err, "alpha %g is outside [0, 1]; add --extrapolate if you mean it",
                        v[0]);
    op->method = &lad_method_linear;
    op->param[0] = 1.0 - v[0];
    op->param[1] = v[0];
    op->nparam = 2;
    return 0;
}

int cmd_lerp(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS, {"alpha", required_argument, 0, 'a'},
        {"extrapolate", no_argument, 0, OPT_EXTRAPOLATE}, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    lerp_args a = {0};
    int first, code;
    if (!parse_args("lerp", HELP, argc, argv, longopts, COMMON_MERGE_SHORT "a:", &o, take, &a,
                    &first, &code))
        return code;
    if (argc - first != 2)
        return usage_error("lerp", "expected two models A B, got %d", argc - first);
    if (!a.have_alpha)
        return usage_error("lerp", "--alpha X is required (0 gives A, 1 gives B)");
    if (!sched_all(&a.alpha, 0, 1) && !a.extrapolate)
        return usage_error("lerp", "--alpha outside [0, 1]; add --extrapolate if you mean it");
    const char *refs[2] = {argv[first], argv[first + 1]}, *roles[2] = {"A", "B"};
    lad_schedule sched = {.names = {"alpha"}, .value = {a.alpha}, .nparams = 1, .build = build,
                          .ctx = &a};
    merge_job job = {.cmd = "lerp", .refs = refs, .roles = roles, .nmodels = 2,
                     .template_model = 0, .schedule = &sched};
    job.params = json_pack("{s:o, s:b}", "alpha", sched_json(&a.alpha), "extrapolate",
                           a.extrapolate);
    return run_merge(&o, &job, argc, argv);
}
