/* ladle slerp A B --t X -o OUT: spherical interpolation, per tensor. */
#include "cli.h"

#include <stdio.h>

static const char HELP[] =
    "usage: ladle slerp A B --t X -o OUT [options]\n"
    "\n"
    "Spherical linear interpolation of two models, per tensor, as mergekit does it:\n"
    "the angle between A and B (normalised) sets the weights sin((1-X)th)/sin(th)\n"
    "and sin(X th)/sin(th) of A and B; tensors whose normalised dot product exceeds\n"
    "0.9995 in magnitude are interpolated linearly instead. X = 0 gives A, 1 gives B.\n"
    "Config, tokenizer and non-float tensors come from A.\n"
    "\n"
    "  -t, --t X             interpolation factor in [0, 1] (required); a gradient\n"
    "                        a,b,c varies it across the layers, as in mergekit\n" COMMON_MERGE_HELP;

typedef struct slerp_args {
    lad_sched_value t;
    bool have_t;
} slerp_args;

static int take(void *ctx, int id, const char *arg)
{
    slerp_args *a = ctx;
    if (id == 't') {
        if (parse_sched_option("slerp", "--t", arg, &a->t))
            return EXIT_USAGE;
        a->have_t = true;
    }
    return 0;
}

static int build(const double *v, lad_op *op, const void *ctx, lad_error *err)
{
    (void)ctx;
    if (v[0] < 0 || v[0] > 1)
        return lad_fail(err, "t %g is outside [0, 1]", v[0]);
    op->method = &lad_method_slerp;
    op->param[0] = v[0];
    op->nparam = 1;
    return 0;
}

int cmd_slerp(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS, {"t", required_argument, 0, 't'}, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    slerp_args a = {0};
    int first, code;
    if (!parse_args("slerp", HELP, argc, argv, longopts, COMMON_MERGE_SHORT "t:", &o, take, &a,
                    &first, &code))
        return code;
    if (argc - first != 2)
        return usage_error("slerp", "expected two models A B, got %d", argc - first);
    if (!a.have_t)
        return usage_error("slerp", "--t X is required (0 gives A, 1 gives B)");
    if (!sched_all(&a.t, 0, 1))
        return usage_error("slerp", "--t is outside [0, 1]");
    const char *refs[2] = {argv[first], argv[first + 1]}, *roles[2] = {"A", "B"};
    lad_schedule sched = {.names = {"t"}, .value = {a.t}, .nparams = 1, .build = build};
    merge_job job = {.cmd = "slerp", .refs = refs, .roles = roles, .nmodels = 2,
                     .template_model = 0, .schedule = &sched};
    job.params = json_pack("{s:o}", "t", sched_json(&a.t));
    return run_merge(&o, &job, argc, argv);
}
