/* ladle task --base BASE --add l:MODEL ... [--onto C] [--lambda S] -o OUT
 * Task arithmetic: theta = C + S * sum_i l_i (theta_i - theta_BASE). */
#include "cli.h"
#include "../methods/gta.h"

#include <stdio.h>

static const char HELP[] =
    "usage: ladle task --base BASE --add L:MODEL [--add L:MODEL ...] -o OUT\n"
    "                  [--onto C] [--lambda S] [options]\n"
    "\n"
    "Task arithmetic (Ilharco et al. 2023): task vectors tau_i = theta_i - theta_BASE,\n"
    "combined as theta = C + S * sum_i L_i * tau_i, in fp32 (fp64 for F64 tensors).\n"
    "  - a negative L removes a capability (negation);\n"
    "  - --onto C gives the analogy form, C + S * sum L_i * tau_i (default C = BASE).\n"
    "Config, tokenizer and non-float tensors come from C (BASE without --onto).\n"
    "L and S may be gradients a,b,c across the layers; --set names them lambda and\n"
    "weight1, weight2, ... (in --add order).\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --add L:MODEL     a fine-tune and the weight L of its task vector (repeatable)\n"
    "      --onto C          add the task vectors to C instead of BASE\n"
    "      --lambda S        scale of the summed task vectors (default 1)\n"
    "      --normalize-magnitude\n"
    "                        first scale each task vector to the mean norm of them all\n"
    "                        (per tensor), so no one fine-tune drowns the others\n" COMMON_MERGE_HELP;

#define MAX_ADDS 60

typedef struct task_args {
    const char *base, *onto;
    const char *model[MAX_ADDS];
    lad_sched_value weight[MAX_ADDS];
    char wname[MAX_ADDS][24];
    int nadd;
    lad_sched_value scale;
    bool normalize_magnitude;
} task_args;

static int take(void *ctx, int id, const char *arg)
{
    task_args *a = ctx;
    switch (id) {
    case OPT_BASE:
        a->base = arg;
        return 0;
    case OPT_ONTO:
        a->onto = arg;
        return 0;
    case OPT_LAMBDA:
        return parse_sched_option("task", "--lambda", arg, &a->scale) ? EXIT_USAGE : 0;
    case OPT_NORMALIZE_MAGNITUDE:
        a->normalize_magnitude = true;
        return 0;
    case OPT_ADD:
        if (a->nadd == MAX_ADDS)
            return usage_error("task", "at most %d --add", MAX_ADDS);
        if (parse_weighted_model("task", arg, &a->weight[a->nadd], &a->model[a->nadd]))
            return EXIT_USAGE;
        a->nadd++;
        return 0;
    }
    return 0;
}

/* values: lambda, weight1..N -> the task_arithmetic op (see its file), or
 * with magnitude normalisation the dense generalized one, which computes
 * the same operations in the same order after scaling the task vectors. */
static int build(const double *v, lad_op *op, const void *ctx, lad_error *err)
{
    (void)err;
    const task_args *a = ctx;
    if (a->normalize_magnitude) {
        op->method = &lad_method_gta;
        op->param[GTA_LAMBDA] = v[0];
        op->param[GTA_SPARSIFY] = GTA_DENSE;
        op->param[GTA_NORM_MAG] = 1;
        for (int i = 0; i < a->nadd; i++)
            op->param[GTA_TV(i, GTA_WEIGHT)] = v[1 + i];
        op->nparam = (size_t)GTA_TV(a->nadd, 0);
        return 0;
    }
    op->method = &lad_method_task_arithmetic;
    op->param[0] = v[0];
    op->param[1] = a->onto ? 1 : 0;
    for (int i = 0; i < a->nadd; i++)
        op->param[2 + i] = v[1 + i];
    op->nparam = 2 + (size_t)a->nadd;
    return 0;
}

int cmd_task(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS,
        {"base", required_argument, 0, OPT_BASE},
        {"add", required_argument, 0, OPT_ADD},
        {"onto", required_argument, 0, OPT_ONTO},
        {"lambda", required_argument, 0, OPT_LAMBDA},
        {"normalize-magnitude", no_argument, 0, OPT_NORMALIZE_MAGNITUDE},
        {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    static task_args a; /* large; one command per process */
    a = (task_args){.scale = {.v = {1.0}, .n = 1}};
    int first, code;
    if (!parse_args("task", HELP, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &a, &first,
                    &code))
        return code;
    if (first != argc)
        return usage_error("task", "unexpected argument '%s' (models are given with --base, "
                                   "--add and --onto)",
                           argv[first]);
    if (!a.base)
        return usage_error("task", "--base BASE is required");
    if (a.nadd == 0)
        return usage_error("task", "at least one --add L:MODEL is required");
    if (a.normalize_magnitude && a.onto)
        return usage_error("task", "--normalize-magnitude with --onto is not supported yet");

    const char *refs[MAX_ADDS + 2], *roles[MAX_ADDS + 2];
    size_t n = 0;
    refs[n] = a.base;
    roles[n++] = "base";
    static lad_schedule sched;
    sched = (lad_schedule){.names = {"lambda"}, .value = {a.scale}, .nparams = 1 + a.nadd,
                           .build = build, .ctx = &a};
    json_t *adds = json_array();
    for (int i = 0; i < a.nadd; i++) {
        refs[n] = a.model[i];
        roles[n++] = "task";
        snprintf(a.wname[i], sizeof a.wname[i], "weight%d", i + 1);
        sched.names[1 + i] = a.wname[i];
        sched.value[1 + i] = a.weight[i];
        json_array_append_new(adds, json_pack("{s:s, s:o}", "model", a.model[i], "weight",
                                              sched_json(&a.weight[i])));
    }
    if (a.onto) {
        refs[n] = a.onto;
        roles[n++] = "onto";
    }
    merge_job job = {.cmd = "task", .refs = refs, .roles = roles, .nmodels = n,
                     .template_model = a.onto ? n - 1 : 0, .schedule = &sched};
    job.params = json_pack("{s:o, s:o, s:s?, s:b}", "lambda", sched_json(&a.scale), "add", adds,
                           "onto", a.onto, "normalize_magnitude", a.normalize_magnitude);
    return run_merge(&o, &job, argc, argv);
}
