/* The methods that take a base and unweighted fine-tunes:
 *   stock --base BASE M1 M2 ... [--filter-wise]      Model Stock
 *   sce --base BASE M1 ... [--select-topk F]         SCE
 *   ram --base BASE M1 ... [--plus] [--r R] [--alpha A] [--epsilon E]
 *                                                    RAM / RAM+ (ramplus_tl)
 *   arcee-fusion --base BASE MODEL                   Arcee Fusion
 *   iso-c --base BASE M1 ... [--weights w,...] [--lambda S] [--exclude REGEX]
 *                                                    Iso-C
 *   tsv --base BASE M1 ... (the same options)        TSV-M
 *   iso-cts --base BASE M1 ... [--common-space-fraction F] (and iso-c's)
 *                                                    Iso-CTS
 *   wudi --base BASE M1 ... [--iter-num N] [--lr R] (and iso-c's)
 *                                                    WUDI
 *   consensus-ta --base BASE M1 ... [--weights w,...] [--lambda S]
 *                [--tall-lambda L] [--k K]            consensus task arithmetic */
#include "job.h"

#include <math.h>
#include <regex.h>
#include <string.h>

#define MAX_FINETUNES 64
enum {
    OPT_BASE = 1100, OPT_TOPK, OPT_PLUS, OPT_R, OPT_ALPHA, OPT_EPSILON, OPT_FILTER_WISE,
    OPT_WEIGHTS, OPT_LAMBDA, OPT_EXCLUDE, OPT_FRACTION, OPT_TALL, OPT_K,
    OPT_ITERS, OPT_LR,
};
#define MAX_EXCLUDE 16

typedef struct base_args {
    const char *base;
    double topk, r, alpha, epsilon, lambda, fraction, tall, lr;
    long k, iters;
    bool plus, filter_wise;
    double w[MAX_FINETUNES];
    int nw; /* -1: not given */
    const char *exclude[MAX_EXCLUDE];
    regex_t re[MAX_EXCLUDE];
    size_t nexclude, ncompiled, nft;
    const lad_method *method;   /* iso-c, iso-cts, tsv, wudi */
    lad_schedule sched;
} base_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    base_args *a = args;
    switch (id) {
    case OPT_BASE:
        a->base = arg;
        return 0;
    case OPT_PLUS:
        a->plus = true;
        return 0;
    case OPT_FILTER_WISE:
        a->filter_wise = true;
        return 0;
    case OPT_TOPK:
        return job_double("--select-topk", arg, &a->topk, err);
    case OPT_R:
        return job_double("--r", arg, &a->r, err);
    case OPT_ALPHA:
        return job_double("--alpha", arg, &a->alpha, err);
    case OPT_EPSILON:
        if (job_double("--epsilon", arg, &a->epsilon, err))
            return -1;
        return a->epsilon >= 0 ? 0 : lad_usage(err, "--epsilon must be at least 0");
    case OPT_WEIGHTS:
        if ((a->nw = lad_parse_list(arg, a->w, MAX_FINETUNES)) < 0)
            return lad_usage(err, "--weights takes comma-separated numbers, not '%s'", arg);
        return 0;
    case OPT_LAMBDA:
        return job_double("--lambda", arg, &a->lambda, err);
    case OPT_TALL:
        if (job_double("--tall-lambda", arg, &a->tall, err))
            return -1;
        return a->tall >= 0 ? 0 : lad_usage(err, "--tall-lambda must be at least 0");
    case OPT_K:
        return job_int("--k", arg, 0, 64, &a->k, err);
    case OPT_FRACTION:
        if (job_double("--common-space-fraction", arg, &a->fraction, err))
            return -1;
        return a->fraction >= 0 && a->fraction <= 1
                   ? 0
                   : lad_usage(err, "--common-space-fraction takes a number in [0, 1]");
    case OPT_ITERS:
        return job_int("--iter-num", arg, 0, 1000000, &a->iters, err);
    case OPT_LR:
        if (job_double("--lr", arg, &a->lr, err))
            return -1;
        return a->lr > 0 && isfinite(a->lr) ? 0 : lad_usage(err, "--lr must be above 0");
    case OPT_EXCLUDE:
        if (a->nexclude == MAX_EXCLUDE)
            return lad_usage(err, "at most %d --exclude", MAX_EXCLUDE);
        a->exclude[a->nexclude++] = arg;
        return 0;
    }
    return 0;
}

/* Parses BASE and the fine-tunes (at least min, at most max). */
static int based(lad_job *j, const lad_optdef *opts, base_args *a, size_t min, size_t max,
                 lad_error *err)
{
    char *const *pos;
    int n, rc;
    if ((rc = job_parse(j, opts, take, a, &pos, &n, err)) != 0)
        return rc;
    if (!a->base)
        rc = lad_usage(err, "--base BASE is required");
    else if ((size_t)n < min || (size_t)n > max)
        rc = min == max ? lad_usage(err, "needs %zu model%s besides the base, got %d", min,
                                    min == 1 ? "" : "s", n)
                        : lad_usage(err, "needs %zu to %zu models besides the base, got %d", min,
                                    max, n);
    else if ((rc = job_models(j, (size_t)n + 1, err)) == 0) {
        j->refs[0] = a->base;
        j->roles[0] = "base";
        for (int i = 0; i < n; i++) {
            j->refs[i + 1] = pos[i];
            j->roles[i + 1] = "model";
        }
    }
    free((void *)pos);
    return rc;
}

int job_stock(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {
        {"base", OPT_BASE, true}, {"filter-wise", OPT_FILTER_WISE, false}, {0}};
    base_args *a = job_state(j, sizeof *a);
    int rc;
    if (!a)
        return lad_fail(err, "out of memory");
    if ((rc = based(j, opts, a, 2, STOCK_MAX, err)) != 0)
        return rc;
    j->label = "model_stock";
    j->op.method = a->filter_wise ? &lad_method_model_stock_rows : &lad_method_model_stock;
    j->params = json_pack("{s:b}", "filter_wise", a->filter_wise);
    return 0;
}

int job_sce(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {
        {"base", OPT_BASE, true}, {"select-topk", OPT_TOPK, true}, {0}};
    base_args *a = job_state(j, sizeof *a);
    int rc;
    if (!a)
        return lad_fail(err, "out of memory");
    a->topk = 1;
    if ((rc = based(j, opts, a, 1, MAX_FINETUNES, err)) != 0)
        return rc;
    j->op.method = &lad_method_sce;
    j->op.param[SCE_TOPK] = a->topk;
    j->op.nparam = 1;
    j->params = json_pack("{s:f}", "select_topk", a->topk);
    return 0;
}

int job_ram(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"base", OPT_BASE, true}, {"plus", OPT_PLUS, false},
                                      {"r", OPT_R, true},       {"alpha", OPT_ALPHA, true},
                                      {"epsilon", OPT_EPSILON, true}, {0}};
    base_args *a = job_state(j, sizeof *a);
    int rc;
    if (!a)
        return lad_fail(err, "out of memory");
    *a = (base_args){.r = NAN, .alpha = NAN, .epsilon = 1e-5};
    if ((rc = based(j, opts, a, 1, MAX_FINETUNES, err)) != 0)
        return rc;
    if (!a->plus && (!isnan(a->r) || !isnan(a->alpha)))
        return lad_usage(err, "--r and --alpha are RAM+'s: add --plus");
    a->r = isnan(a->r) ? 0.1 : a->r;
    a->alpha = isnan(a->alpha) ? 0.2 : a->alpha;
    j->label = a->plus ? "ramplus_tl" : "ram";
    j->op.method = &lad_method_ram;
    j->op.param[RAM_EPS] = a->epsilon;
    j->op.param[RAM_PLUS] = a->plus;
    j->op.param[RAM_R] = a->r;
    j->op.param[RAM_ALPHA] = a->alpha;
    j->op.nparam = 4;
    j->params = a->plus ? json_pack("{s:f, s:f, s:f}", "epsilon", a->epsilon, "r", a->r,
                                    "alpha", a->alpha)
                        : json_pack("{s:f}", "epsilon", a->epsilon);
    return 0;
}

int job_fusion(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"base", OPT_BASE, true}, {0}};
    base_args *a = job_state(j, sizeof *a);
    int rc;
    if (!a)
        return lad_fail(err, "out of memory");
    if ((rc = based(j, opts, a, 1, 1, err)) != 0)
        return rc;
    j->label = "arcee_fusion";
    j->op.method = &lad_method_arcee_fusion;
    j->params = json_object();
    return 0;
}

static void free_iso(void *state) /* (the job frees the state itself) */
{
    base_args *a = state;
    for (size_t i = 0; i < a->ncompiled; i++)
        regfree(&a->re[i]);
}

/* A tensor's Iso-C op: the subspace treatment unless an embedding, a head
 * or excluded by name. */
static int iso_resolve(const char *tensor, const lad_place *place, const void *spec_ctx,
                       lad_op *op, const void *ctx, lad_error *err)
{
    (void)place;
    (void)spec_ctx;
    (void)err;
    const base_args *a = ctx;
    bool excluded = lad_name_is_vocab(tensor);
    for (size_t i = 0; i < a->ncompiled && !excluded; i++)
        excluded = regexec(&a->re[i], tensor, 0, NULL, 0) == 0;
    op->method = a->method;
    op->param[ISO_LAMBDA] = a->lambda;
    op->param[ISO_FRACTION] = a->fraction;
    op->param[ISO_ITERS] = (double)a->iters;
    op->param[ISO_LR] = a->lr;
    op->param[ISO_MEAN_ONLY] = excluded;
    size_t n = a->nft;
    for (size_t i = 0; i < n; i++)
        op->param[ISO_W0 + i] = a->nw >= 0 ? a->w[i] : 1.0;
    op->nparam = ISO_W0 + n;
    return 0;
}

int job_iso(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"base", OPT_BASE, true},
                                      {"weights", OPT_WEIGHTS, true},
                                      {"lambda", OPT_LAMBDA, true},
                                      {"exclude", OPT_EXCLUDE, true},
                                      {0}};
    static const lad_optdef cts_opts[] = {{"base", OPT_BASE, true},
                                          {"weights", OPT_WEIGHTS, true},
                                          {"lambda", OPT_LAMBDA, true},
                                          {"exclude", OPT_EXCLUDE, true},
                                          {"common-space-fraction", OPT_FRACTION, true},
                                          {0}};
    static const lad_optdef wudi_opts[] = {{"base", OPT_BASE, true},
                                           {"weights", OPT_WEIGHTS, true},
                                           {"lambda", OPT_LAMBDA, true},
                                           {"exclude", OPT_EXCLUDE, true},
                                           {"iter-num", OPT_ITERS, true},
                                           {"lr", OPT_LR, true},
                                           {0}};
    base_args *a = job_state(j, sizeof *a);
    int rc;
    if (!a)
        return lad_fail(err, "out of memory");
    j->free_state = free_iso;
    a->lambda = 1;
    a->nw = -1;
    a->fraction = 0.8;
    a->iters = 300; /* FusionBench's iter_num and lr */
    a->lr = 1e-5;
    bool cts = !strcmp(j->cmd, "iso-cts"), wudi = !strcmp(j->cmd, "wudi");
    if ((rc = based(j, cts ? cts_opts : wudi ? wudi_opts : opts, a, 1, MAX_FINETUNES, err)) != 0)
        return rc;
    a->nft = j->nmodels - 1;
    if (a->nw >= 0 && (size_t)a->nw != a->nft)
        return lad_usage(err, "%d weights for %zu models", a->nw, a->nft);
    for (; a->ncompiled < a->nexclude; a->ncompiled++)
        if (regcomp(&a->re[a->ncompiled], a->exclude[a->ncompiled], REG_EXTENDED | REG_NOSUB))
            return lad_usage(err, "--exclude: '%s' is not a valid regular expression",
                             a->exclude[a->ncompiled]);
    bool tsv = !strcmp(j->cmd, "tsv");
    j->label = tsv ? "tsv" : cts ? "iso_cts" : wudi ? "wudi" : "iso_c";
    a->method = tsv    ? &lad_method_tsv
                : cts  ? &lad_method_iso_cts
                : wudi ? &lad_method_wudi
                       : &lad_method_iso_c;
    a->sched = (lad_schedule){.resolve = iso_resolve, .ctx = a};
    j->schedule = &a->sched;
    json_t *ex = json_array();
    for (size_t i = 0; i < a->nexclude; i++)
        json_array_append_new(ex, json_string(a->exclude[i]));
    j->params = json_pack("{s:f, s:o}", "lambda", a->lambda, "exclude", ex);
    if (cts)
        json_object_set_new(j->params, "common_space_fraction", json_real(a->fraction));
    if (wudi) {
        json_object_set_new(j->params, "iter_num", json_integer((json_int_t)a->iters));
        json_object_set_new(j->params, "lr", json_real(a->lr));
    }
    return 0;
}

int job_consensus(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"base", OPT_BASE, true},     {"weights", OPT_WEIGHTS, true},
                                      {"lambda", OPT_LAMBDA, true}, {"tall-lambda", OPT_TALL, true},
                                      {"k", OPT_K, true},           {0}};
    base_args *a = job_state(j, sizeof *a);
    int rc;
    if (!a)
        return lad_fail(err, "out of memory");
    a->lambda = 1;
    a->tall = 0.6; /* FusionBench's tall_mask_lambda */
    a->k = 2;
    a->nw = -1;
    if ((rc = based(j, opts, a, 1, MAX_FINETUNES, err)) != 0)
        return rc;
    size_t T = j->nmodels - 1;
    if (a->nw >= 0 && (size_t)a->nw != T)
        return lad_usage(err, "%d weights for %zu models", a->nw, T);
    if ((size_t)a->k > T)
        return lad_usage(err, "--k %ld: at most the number of fine-tunes (%zu)", a->k, T);
    j->label = "consensus_ta";
    j->op.method = &lad_method_consensus_ta;
    j->op.param[CONS_LAMBDA] = a->lambda;
    j->op.param[CONS_TALL] = a->tall;
    j->op.param[CONS_K] = (double)a->k;
    for (size_t i = 0; i < T; i++)
        j->op.param[CONS_W0 + i] = a->nw >= 0 ? a->w[i] : 1.0;
    j->op.nparam = CONS_W0 + T;
    j->params = json_pack("{s:f, s:f, s:i}", "lambda", a->lambda, "tall_lambda", a->tall, "k",
                          (json_int_t)a->k);
    return 0;
}
