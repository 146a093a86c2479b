/*
 * ladle ties | dare | breadcrumbs: the generalized task arithmetic family
 * (src/methods/gta.c), with mergekit's parameter names and defaults:
 *
 *   method            sparsify     consensus  normalize  rescale
 *   ties              magnitude    sum        yes        -
 *   dare_ties         random       sum        no         yes
 *   dare_linear       random       -          no         yes
 *   breadcrumbs       outliers     -          no         -
 *   breadcrumbs_ties  outliers     sum        no         -
 *   della             della        sum        yes        yes
 *   della_linear      della        -          no         yes
 */
#include "cli.h"
#include "../methods/gta.h"

#include <stdio.h>
#include <string.h>

typedef struct gta_args {
    const char *cmd;
    const char *base;
    const char *model[GTA_MAX_TV];
    lad_sched_value weight[GTA_MAX_TV];
    char wname[GTA_MAX_TV][24];
    int nadd;
    lad_sched_value density, lambda, gamma, epsilon;
    bool have_density;
    int consensus, normalize; /* normalize: -1 = the method's default */
    bool rescale, sign_consensus, ties, normalize_magnitude, model_scope, linear;
    unsigned long long seed;
    /* resolved at parse time */
    int sparsify;
    bool use_consensus, use_normalize;
} gta_args;

enum { P_LAMBDA, P_DENSITY, P_GAMMA, P_EPSILON, P_WEIGHT1 }; /* schedule order */

static int take(void *ctx, int id, const char *arg)
{
    gta_args *a = ctx;
    long n;
    switch (id) {
    case OPT_BASE:
        a->base = arg;
        return 0;
    case OPT_ADD:
        if (a->nadd == GTA_MAX_TV)
            return usage_error(a->cmd, "at most %d --add", GTA_MAX_TV);
        if (parse_weighted_model(a->cmd, arg, &a->weight[a->nadd], &a->model[a->nadd]))
            return EXIT_USAGE;
        a->nadd++;
        return 0;
    case OPT_DENSITY:
        if (parse_sched_option(a->cmd, "--density", arg, &a->density))
            return EXIT_USAGE;
        if (!sched_all(&a->density, 0, 1))
            return usage_error(a->cmd, "--density takes fractions in [0, 1], not '%s'", arg);
        a->have_density = true;
        return 0;
    case OPT_GAMMA:
        if (parse_sched_option(a->cmd, "--gamma", arg, &a->gamma))
            return EXIT_USAGE;
        if (!sched_all(&a->gamma, 0, 1))
            return usage_error(a->cmd, "--gamma takes fractions in [0, 1], not '%s'", arg);
        return 0;
    case OPT_LAMBDA:
        return parse_sched_option(a->cmd, "--lambda", arg, &a->lambda) ? EXIT_USAGE : 0;
    case OPT_EPSILON:
        if (parse_sched_option(a->cmd, "--epsilon", arg, &a->epsilon))
            return EXIT_USAGE;
        if (!sched_all(&a->epsilon, 0, 1))
            return usage_error(a->cmd, "--epsilon takes fractions in [0, 1], not '%s'", arg);
        return 0;
    case OPT_LINEAR:
        a->linear = true;
        return 0;
    case OPT_MAJORITY:
        if (strcmp(arg, "sum") && strcmp(arg, "count"))
            return usage_error(a->cmd, "--majority takes sum or count, not '%s'", arg);
        a->consensus = strcmp(arg, "sum") ? GTA_COUNT : GTA_SUM;
        return 0;
    case OPT_NORMALIZE:
    case OPT_NO_NORMALIZE:
        a->normalize = id == OPT_NORMALIZE;
        return 0;
    case OPT_TRIM_SCOPE:
        if (strcmp(arg, "tensor") && strcmp(arg, "model"))
            return usage_error(a->cmd, "--trim-scope takes tensor or model, not '%s'", arg);
        a->model_scope = !strcmp(arg, "model");
        return 0;
    case OPT_SIGN_CONSENSUS:
        a->sign_consensus = true;
        return 0;
    case OPT_TIES:
        a->ties = true;
        return 0;
    case OPT_NORMALIZE_MAGNITUDE:
        a->normalize_magnitude = true;
        return 0;
    case OPT_NO_RESCALE:
        a->rescale = false;
        return 0;
    case OPT_SEED:
        if (parse_int(arg, 0, 0x7fffffffffffffffL, &n))
            return usage_error(a->cmd, "--seed takes a non-negative integer, not '%s'", arg);
        a->seed = (unsigned long long)n;
        return 0;
    }
    return 0;
}

#define GTA_COMMON_HELP                                                                       \
    "      --base BASE       the model the fine-tunes started from (required)\n"             \
    "      --add W:MODEL     a fine-tune and the weight of its task vector (repeatable)\n"   \
    "      --lambda S        scale of the merged task vector (default 1)\n"                  \
    "      --normalize, --no-normalize\n"                                                    \
    "                        divide by the weights that contributed at each element\n"      \
    "      --normalize-magnitude\n"                                                          \
    "                        first scale each task vector to the mean norm of them all\n"   \
    "                        (per tensor), so no one fine-tune drowns the others\n"

static const char TIES_HELP[] =
    "usage: ladle ties --base BASE --add W:MODEL ... -o OUT [options]\n"
    "\n"
    "TIES merging (Yadav et al. 2023): trim each task vector to its top-D fraction by\n"
    "magnitude, elect a sign per element (sign of the weighted sum, or of the count\n"
    "of signs), keep only the agreeing entries and average them; out = BASE + S * mixed.\n"
    "Exactly int(D * n) entries are kept per tensor, ties broken by lowest index.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       fraction of each task vector kept (default 1: no trimming)\n"
    "      --majority M      sum (default) or count\n"
    "      --trim-scope S    tensor: trim each tensor to D (default, as mergekit); model:\n"
    "                        trim the whole model's task vector to D, as the TIES paper\n"
    "                        does (exact, streaming; one density for every tensor)\n"
    "                        (normalize is on by default)\n" COMMON_MERGE_HELP;

static const char DARE_HELP[] =
    "usage: ladle dare --base BASE --add W:MODEL ... --density D -o OUT [options]\n"
    "\n"
    "DARE (Yu et al. 2023): drop each task-vector element with probability 1 - D and\n"
    "rescale the survivors by 1/D; then sum (dare_linear) or, with --sign-consensus,\n"
    "elect signs as TIES does (dare_ties). The drop mask comes from a counter-based\n"
    "generator keyed by (seed, tensor name, element index): the same for any -j.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       fraction of each task vector kept (required)\n"
    "      --sign-consensus  elect signs (dare_ties)\n"
    "      --seed N          the drop mask's seed (default 0)\n"
    "      --no-rescale      do not rescale survivors by 1/D\n" COMMON_MERGE_HELP;

static const char BREADCRUMBS_HELP[] =
    "usage: ladle breadcrumbs --base BASE --add W:MODEL ... --density D -o OUT [options]\n"
    "\n"
    "Model Breadcrumbs (Davari & Belilovsky 2023): per tensor, drop the largest-\n"
    "magnitude gamma fraction of each task vector (outliers) and the smallest, so that\n"
    "a D fraction survives; then sum, or with --ties elect signs as TIES does.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       fraction of each task vector kept (default 1)\n"
    "      --gamma G         fraction of largest entries dropped (default 0.01)\n"
    "      --ties            elect signs (breadcrumbs_ties)\n" COMMON_MERGE_HELP;

/* A tensor's op from its resolved lambda, density, gamma and weights. */
static int build(const double *v, lad_op *op, const void *ctx, lad_error *err)
{
    const gta_args *a = ctx;
    if (v[P_DENSITY] < 0 || v[P_DENSITY] > 1 || v[P_GAMMA] < 0 || v[P_GAMMA] > 1)
        return lad_fail(err, "density %g and gamma %g must be in [0, 1]", v[P_DENSITY],
                        v[P_GAMMA]);
    if (a->sparsify == GTA_DELLA && v[P_DENSITY] > 0 && v[P_DENSITY] < 1 &&
        (v[P_DENSITY] - v[P_EPSILON] <= 0 || v[P_DENSITY] + v[P_EPSILON] >= 1))
        return lad_fail(err, "density %g +/- epsilon %g must stay inside (0, 1)", v[P_DENSITY],
                        v[P_EPSILON]);
    op->method = a->sparsify == GTA_DELLA ? &lad_method_della : &lad_method_gta;
    op->param[GTA_LAMBDA] = v[P_LAMBDA];
    op->param[GTA_SPARSIFY] = a->sparsify;
    op->param[GTA_CONSENSUS] = a->use_consensus ? a->consensus : GTA_NO_CONSENSUS;
    op->param[GTA_NORMALIZE] = a->use_normalize;
    op->param[GTA_RESCALE] = (a->sparsify == GTA_RANDOM || a->sparsify == GTA_DELLA) && a->rescale;
    op->param[GTA_SEED] = (double)a->seed;
    op->param[GTA_NORM_MAG] = a->normalize_magnitude;
    op->param[GTA_SCOPE] = a->model_scope;
    for (int i = 0; i < a->nadd; i++) {
        op->param[GTA_TV(i, GTA_WEIGHT)] = v[P_WEIGHT1 + i];
        op->param[GTA_TV(i, GTA_DENSITY)] = v[P_DENSITY];
        op->param[GTA_TV(i, GTA_GAMMA)] = v[P_GAMMA];
        op->param[GTA_TV(i, GTA_EPSILON)] = v[P_EPSILON];
    }
    op->nparam = (size_t)GTA_TV(a->nadd, 0);
    return 0;
}

static int run_gta(const char *cmd, const char *help, int sparsify, int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS,
        {"base", required_argument, 0, OPT_BASE},
        {"add", required_argument, 0, OPT_ADD},
        {"density", required_argument, 0, OPT_DENSITY},
        {"lambda", required_argument, 0, OPT_LAMBDA},
        {"normalize", no_argument, 0, OPT_NORMALIZE},
        {"no-normalize", no_argument, 0, OPT_NO_NORMALIZE},
        {"majority", required_argument, 0, OPT_MAJORITY},
        {"trim-scope", required_argument, 0, OPT_TRIM_SCOPE},
        {"sign-consensus", no_argument, 0, OPT_SIGN_CONSENSUS},
        {"seed", required_argument, 0, OPT_SEED},
        {"no-rescale", no_argument, 0, OPT_NO_RESCALE},
        {"gamma", required_argument, 0, OPT_GAMMA},
        {"ties", no_argument, 0, OPT_TIES},
        {"normalize-magnitude", no_argument, 0, OPT_NORMALIZE_MAGNITUDE},
        {"epsilon", required_argument, 0, OPT_EPSILON},
        {"linear", no_argument, 0, OPT_LINEAR},
        {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    static gta_args a; /* large; one command per process */
    a = (gta_args){.cmd = cmd, .lambda = {{1}, 1}, .gamma = {{0.01}, 1}, .density = {{1}, 1},
                   .epsilon = {{0.15}, 1},
                   .consensus = GTA_SUM, .normalize = -1, .rescale = true, .sparsify = sparsify};
    int first, code;
    if (!parse_args(cmd, help, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &a, &first,
                    &code))
        return code;
    if (first != argc)
        return usage_error(cmd, "unexpected argument '%s' (models are given with --base and "
                                "--add)",
                           argv[first]);
    if (!a.base)
        return usage_error(cmd, "--base BASE is required");
    if (a.nadd == 0)
        return usage_error(cmd, "at least one --add W:MODEL is required");
    if (!a.have_density && sparsify == GTA_RANDOM)
        return usage_error(cmd, "--density D is required");

    /* The variant and its defaults, as mergekit names them. */
    const char *variant = cmd;
    a.use_consensus = true;
    a.use_normalize = false;
    if (sparsify == GTA_MAGNITUDE) {
        a.use_normalize = true;
    } else if (sparsify == GTA_RANDOM) {
        a.use_consensus = a.sign_consensus;
        variant = a.use_consensus ? "dare_ties" : "dare_linear";
    } else if (sparsify == GTA_DELLA) {
        a.use_consensus = !a.linear;
        a.use_normalize = !a.linear;
        variant = a.linear ? "della_linear" : "della";
    } else {
        a.use_consensus = a.ties;
        variant = a.use_consensus ? "breadcrumbs_ties" : "breadcrumbs";
    }
    if (a.normalize >= 0)
        a.use_normalize = a.normalize;

    const char *refs[GTA_MAX_TV + 1], *roles[GTA_MAX_TV + 1];
    refs[0] = a.base;
    roles[0] = "base";
    static lad_schedule sched;
    sched = (lad_schedule){.names = {"lambda", "density", "gamma", "epsilon"},
                           .value = {a.lambda, a.density, a.gamma, a.epsilon},
                           .nparams = P_WEIGHT1 + a.nadd, .build = build, .ctx = &a};
    json_t *adds = json_array();
    for (int i = 0; i < a.nadd; i++) {
        refs[i + 1] = a.model[i];
        roles[i + 1] = "task";
        snprintf(a.wname[i], sizeof a.wname[i], "weight%d", i + 1);
        sched.names[P_WEIGHT1 + i] = a.wname[i];
        sched.value[P_WEIGHT1 + i] = a.weight[i];
        json_array_append_new(adds, json_pack("{s:s, s:o}", "model", a.model[i], "weight",
                                              sched_json(&a.weight[i])));
    }
    merge_job job = {.cmd = variant, .refs = refs, .roles = roles,
                     .nmodels = (size_t)a.nadd + 1, .template_model = 0, .schedule = &sched};
    json_t *params = json_pack("{s:o, s:o, s:o, s:b, s:b}", "add", adds, "density",
                               sched_json(&a.density), "lambda", sched_json(&a.lambda),
                               "normalize", a.use_normalize, "normalize_magnitude",
                               a.normalize_magnitude);
    if (a.use_consensus)
        json_object_set_new(params, "majority",
                            json_string(a.consensus == GTA_SUM ? "sum" : "count"));
    if (sparsify == GTA_RANDOM || sparsify == GTA_DELLA) {
        json_object_set_new(params, "seed", json_integer((json_int_t)a.seed));
        json_object_set_new(params, "rescale", json_boolean(a.rescale));
    }
    if (sparsify == GTA_DELLA)
        json_object_set_new(params, "epsilon", sched_json(&a.epsilon));
    if (sparsify == GTA_OUTLIERS)
        json_object_set_new(params, "gamma", sched_json(&a.gamma));
    if (sparsify == GTA_MAGNITUDE || sparsify == GTA_OUTLIERS)
        json_object_set_new(params, "trim_scope", json_string(a.model_scope ? "model" : "tensor"));
    job.params = params;
    return run_merge(&o, &job, argc, argv);
}

int cmd_ties(int argc, char **argv) { return run_gta("ties", TIES_HELP, GTA_MAGNITUDE, argc, argv); }
int cmd_dare(int argc, char **argv) { return run_gta("dare", DARE_HELP, GTA_RANDOM, argc, argv); }
static const char DELLA_HELP[] =
    "usage: ladle della --base BASE --add W:MODEL ... --density D -o OUT [options]\n"
    "\n"
    "DELLA (Deep et al. 2024): within each row of each task vector, rank the entries by\n"
    "magnitude; keep each with a probability from D - E (smallest) to D + E (largest),\n"
    "rescale survivors by 1/p, then elect signs as TIES does (della) or sum them\n"
    "(--linear: della_linear). Draws come from a counter-based generator keyed by\n"
    "(seed, tensor name, element index): the same for any -j.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       average fraction kept (default 1: no pruning)\n"
    "      --epsilon E       spread of the keep probabilities (default 0.15)\n"
    "      --linear          no sign election (della_linear)\n"
    "      --majority M      sum (default) or count\n"
    "      --seed N          the draws' seed (default 0)\n"
    "      --no-rescale      do not rescale survivors by 1/p\n" COMMON_MERGE_HELP;

int cmd_della(int argc, char **argv) { return run_gta("della", DELLA_HELP, GTA_DELLA, argc, argv); }

int cmd_breadcrumbs(int argc, char **argv)
{
    return run_gta("breadcrumbs", BREADCRUMBS_HELP, GTA_OUTLIERS, argc, argv);
}
