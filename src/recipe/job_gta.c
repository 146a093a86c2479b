/*
 * ties | dare | breadcrumbs | della: the generalized task arithmetic family
 * (src/methods/gta.c), with mergekit's parameter names and defaults:
 *
 *   method            sparsify     consensus  normalize  rescale
 *   ties              magnitude    sum        yes        none
 *   dare_ties         random       sum        no         p
 *   dare_linear       random       -          no         p
 *   breadcrumbs       outliers     -          no         none
 *   breadcrumbs_ties  outliers     sum        no         none
 *   della             della        sum        yes        p
 *   della_linear      della        -          no         p
 *   consensus_ties    magnitude    sum        yes        none   + TALL mask (--k, --tall-lambda)
 *
 * --rescale p (1/p, the papers; random drops only), l1 (mergekit's L1
 * norm matching) or none; --no-rescale is none.
 */
#include "job.h"
#include "../methods/gta.h"

#include <stdio.h>
#include <string.h>

enum {
    OPT_BASE = 1100, OPT_ADD, OPT_DENSITY, OPT_LAMBDA, OPT_NORMALIZE, OPT_NO_NORMALIZE,
    OPT_MAJORITY, OPT_TRIM_SCOPE, OPT_SIGN_CONSENSUS, OPT_SEED, OPT_NO_RESCALE, OPT_GAMMA,
    OPT_TIES, OPT_NORMALIZE_MAGNITUDE, OPT_EPSILON, OPT_LINEAR, OPT_RESCALE, OPT_K, OPT_TALL,
};

typedef struct gta_args {
    const char *base;
    const char *model[GTA_MAX_TV];
    lad_sched_value weight[GTA_MAX_TV];
    char wname[GTA_MAX_TV][24];
    int nadd;
    lad_sched_value density, lambda, gamma, epsilon;
    bool have_density;
    int consensus, normalize; /* normalize: -1 = the method's default */
    int rescale; /* enum gta_rescale, or -1: the method's default */
    bool sign_consensus, ties, normalize_magnitude, model_scope, linear;
    unsigned long long seed;
    long k;           /* consensus-ties: how many TALL masks must hold */
    double tall;      /* and their lambda */
    bool consensus_mask, have_tall;
    /* resolved once parsed */
    int sparsify;
    bool use_consensus, use_normalize;
    lad_schedule sched;
} gta_args;

enum { P_LAMBDA, P_DENSITY, P_GAMMA, P_EPSILON, P_WEIGHT1 }; /* schedule order */

static int fraction(const char *opt, const char *arg, lad_sched_value *v, lad_error *err)
{
    if (job_sched_value(opt, arg, v, err))
        return -1;
    if (!job_sched_all(v, 0, 1))
        return lad_usage(err, "%s takes fractions in [0, 1], not '%s'", opt, arg);
    return 0;
}

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    gta_args *a = args;
    long n;
    switch (id) {
    case OPT_BASE:
        a->base = arg;
        return 0;
    case OPT_ADD:
        if (a->nadd == GTA_MAX_TV)
            return lad_usage(err, "at most %d --add", GTA_MAX_TV);
        if (job_weighted_model(arg, &a->weight[a->nadd], &a->model[a->nadd], err))
            return -1;
        a->nadd++;
        return 0;
    case OPT_DENSITY:
        a->have_density = true;
        return fraction("--density", arg, &a->density, err);
    case OPT_GAMMA:
        return fraction("--gamma", arg, &a->gamma, err);
    case OPT_EPSILON:
        return fraction("--epsilon", arg, &a->epsilon, err);
    case OPT_LAMBDA:
        return job_sched_value("--lambda", arg, &a->lambda, err);
    case OPT_LINEAR:
        a->linear = true;
        return 0;
    case OPT_MAJORITY:
        if (strcmp(arg, "sum") && strcmp(arg, "count"))
            return lad_usage(err, "--majority takes sum or count, not '%s'", arg);
        a->consensus = strcmp(arg, "sum") ? GTA_COUNT : GTA_SUM;
        return 0;
    case OPT_NORMALIZE:
    case OPT_NO_NORMALIZE:
        a->normalize = id == OPT_NORMALIZE;
        return 0;
    case OPT_TRIM_SCOPE:
        if (strcmp(arg, "tensor") && strcmp(arg, "model"))
            return lad_usage(err, "--trim-scope takes tensor or model, not '%s'", arg);
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
        a->rescale = GTA_RESCALE_NONE;
        return 0;
    case OPT_RESCALE:
        if (!strcmp(arg, "p"))
            a->rescale = GTA_RESCALE_P;
        else if (!strcmp(arg, "l1"))
            a->rescale = GTA_RESCALE_L1;
        else if (!strcmp(arg, "none"))
            a->rescale = GTA_RESCALE_NONE;
        else
            return lad_usage(err, "--rescale takes p, l1 or none, not '%s'", arg);
        return 0;
    case OPT_K:
        a->have_tall = true;
        return job_int("--k", arg, 0, GTA_MAX_TV, &a->k, err);
    case OPT_TALL:
        a->have_tall = true;
        if (job_double("--tall-lambda", arg, &a->tall, err))
            return -1;
        return a->tall >= 0 ? 0 : lad_usage(err, "--tall-lambda must be at least 0");
    case OPT_SEED:
        if (job_int("--seed", arg, 0, 0x7fffffffffffffffL, &n, err))
            return -1;
        a->seed = (unsigned long long)n;
        return 0;
    }
    return 0;
}

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
    op->param[GTA_RESCALE] = a->rescale;
    op->param[GTA_SEED] = (double)a->seed;
    op->param[GTA_NORM_MAG] = a->normalize_magnitude;
    op->param[GTA_SCOPE] = a->model_scope;
    op->param[GTA_TALL_K] = a->consensus_mask ? (double)a->k : 0;
    op->param[GTA_TALL_LAMBDA] = a->tall;
    for (int i = 0; i < a->nadd; i++) {
        op->param[GTA_TV(i, GTA_WEIGHT)] = v[P_WEIGHT1 + i];
        op->param[GTA_TV(i, GTA_DENSITY)] = v[P_DENSITY];
        op->param[GTA_TV(i, GTA_GAMMA)] = v[P_GAMMA];
        op->param[GTA_TV(i, GTA_EPSILON)] = v[P_EPSILON];
    }
    op->nparam = (size_t)GTA_TV(a->nadd, 0);
    return 0;
}

/* The variant and its defaults, as mergekit names them. */
static const char *variant(gta_args *a, const char *cmd)
{
    a->use_consensus = true;
    a->use_normalize = false;
    const char *name = cmd;
    if (a->sparsify == GTA_MAGNITUDE) {
        a->use_normalize = true;
        name = a->consensus_mask ? "consensus_ties" : "ties";
    } else if (a->sparsify == GTA_RANDOM) {
        a->use_consensus = a->sign_consensus;
        name = a->use_consensus ? "dare_ties" : "dare_linear";
    } else if (a->sparsify == GTA_DELLA) {
        a->use_consensus = !a->linear;
        a->use_normalize = !a->linear;
        name = a->linear ? "della_linear" : "della";
    } else {
        a->use_consensus = a->ties;
        name = a->use_consensus ? "breadcrumbs_ties" : "breadcrumbs";
    }
    if (a->normalize >= 0)
        a->use_normalize = a->normalize;
    return name;
}

static json_t *params_json(const gta_args *a, json_t *adds)
{
    json_t *params = json_pack("{s:o, s:o, s:o, s:b, s:b}", "add", adds, "density",
                               job_sched_json(&a->density), "lambda",
                               job_sched_json(&a->lambda), "normalize", a->use_normalize,
                               "normalize_magnitude", a->normalize_magnitude);
    if (!params)
        return NULL;
    if (a->use_consensus)
        json_object_set_new(params, "majority",
                            json_string(a->consensus == GTA_SUM ? "sum" : "count"));
    if (a->sparsify == GTA_RANDOM || a->sparsify == GTA_DELLA)
        json_object_set_new(params, "seed", json_integer((json_int_t)a->seed));
    static const char *const RESCALES[] = {"none", "p", "l1"};
    json_object_set_new(params, "rescale", json_string(RESCALES[a->rescale]));
    if (a->sparsify == GTA_DELLA)
        json_object_set_new(params, "epsilon", job_sched_json(&a->epsilon));
    if (a->sparsify == GTA_OUTLIERS)
        json_object_set_new(params, "gamma", job_sched_json(&a->gamma));
    if (a->sparsify == GTA_MAGNITUDE || a->sparsify == GTA_OUTLIERS)
        json_object_set_new(params, "trim_scope",
                            json_string(a->model_scope ? "model" : "tensor"));
    if (a->consensus_mask) {
        json_object_set_new(params, "k", json_integer((json_int_t)a->k));
        json_object_set_new(params, "tall_lambda", json_real(a->tall));
    }
    return params;
}

int job_gta(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {
        {"base", OPT_BASE, true},
        {"add", OPT_ADD, true},
        {"density", OPT_DENSITY, true},
        {"lambda", OPT_LAMBDA, true},
        {"normalize", OPT_NORMALIZE, false},
        {"no-normalize", OPT_NO_NORMALIZE, false},
        {"majority", OPT_MAJORITY, true},
        {"trim-scope", OPT_TRIM_SCOPE, true},
        {"sign-consensus", OPT_SIGN_CONSENSUS, false},
        {"seed", OPT_SEED, true},
        {"no-rescale", OPT_NO_RESCALE, false},
        {"rescale", OPT_RESCALE, true},
        {"gamma", OPT_GAMMA, true},
        {"ties", OPT_TIES, false},
        {"normalize-magnitude", OPT_NORMALIZE_MAGNITUDE, false},
        {"epsilon", OPT_EPSILON, true},
        {"linear", OPT_LINEAR, false},
        {"k", OPT_K, true},
        {"tall-lambda", OPT_TALL, true},
        {0}};
    static const struct {
        const char *cmd;
        int sparsify;
    } KINDS[] = {{"ties", GTA_MAGNITUDE}, {"dare", GTA_RANDOM}, {"breadcrumbs", GTA_OUTLIERS},
                 {"della", GTA_DELLA}, {"consensus-ties", GTA_MAGNITUDE}};
    gta_args *a = job_state(j, sizeof *a);
    if (!a)
        return lad_fail(err, "out of memory");
    *a = (gta_args){.lambda = {{1}, 1}, .gamma = {{0.01}, 1}, .density = {{1}, 1},
                    .epsilon = {{0.15}, 1}, .consensus = GTA_SUM, .normalize = -1,
                    .rescale = -1, .k = 2, .tall = 0.6 /* FusionBench's */};
    a->consensus_mask = !strcmp(j->cmd, "consensus-ties");
    for (size_t k = 0; k < sizeof KINDS / sizeof *KINDS; k++)
        if (!strcmp(j->cmd, KINDS[k].cmd))
            a->sparsify = KINDS[k].sparsify;
    char *const *pos;
    int n, rc;
    if ((rc = job_parse(j, opts, take, a, &pos, &n, err)) != 0)
        return rc;
    if (n)
        rc = lad_usage(err, "unexpected argument '%s' (models are given with --base and --add)",
                       pos[0]);
    else if (!a->base)
        rc = lad_usage(err, "--base BASE is required");
    else if (a->nadd == 0)
        rc = lad_usage(err, "at least one --add W:MODEL is required");
    else if (a->have_tall && !a->consensus_mask)
        rc = lad_usage(err, "--k and --tall-lambda are consensus-ties' options");
    else if (a->consensus_mask && a->k > a->nadd)
        rc = lad_usage(err, "--k %ld: at most the number of fine-tunes (%d)", a->k, a->nadd);
    else if (!a->have_density && a->sparsify == GTA_RANDOM)
        rc = lad_usage(err, "--density D is required");
    else if (a->rescale == GTA_RESCALE_P && a->sparsify != GTA_RANDOM && a->sparsify != GTA_DELLA)
        rc = lad_usage(err, "--rescale p divides by a keep probability: dare and della only "
                            "(l1 is mergekit's rescaling)");
    else if (a->rescale == GTA_RESCALE_L1 && a->model_scope)
        rc = lad_usage(err, "--rescale l1 rescales each tensor (as mergekit): not with "
                            "--trim-scope model");
    free((void *)pos);
    if (rc || (rc = job_models(j, (size_t)a->nadd + 1, err)))
        return rc;
    if (a->rescale < 0)
        a->rescale = a->sparsify == GTA_RANDOM || a->sparsify == GTA_DELLA ? GTA_RESCALE_P
                                                                           : GTA_RESCALE_NONE;
    j->label = variant(a, j->cmd);
    j->refs[0] = a->base;
    j->roles[0] = "base";
    a->sched = (lad_schedule){.names = {"lambda", "density", "gamma", "epsilon"},
                              .value = {a->lambda, a->density, a->gamma, a->epsilon},
                              .nparams = P_WEIGHT1 + a->nadd, .build = build, .ctx = a};
    json_t *adds = json_array();
    for (int i = 0; i < a->nadd; i++) {
        j->refs[i + 1] = a->model[i];
        j->roles[i + 1] = "task";
        snprintf(a->wname[i], sizeof a->wname[i], "weight%d", i + 1);
        a->sched.names[P_WEIGHT1 + i] = a->wname[i];
        a->sched.value[P_WEIGHT1 + i] = a->weight[i];
        json_array_append_new(adds, json_pack("{s:s, s:o}", "model", a->model[i], "weight",
                                              job_sched_json(&a->weight[i])));
    }
    j->schedule = &a->sched;
    j->params = params_json(a, adds);
    return 0;
}
