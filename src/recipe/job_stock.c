/* The methods that take a base and unweighted fine-tunes:
 *   stock --base BASE M1 M2 ... [--filter-wise]      Model Stock
 *   sce --base BASE M1 ... [--select-topk F]         SCE
 *   ram --base BASE M1 ... [--plus] [--r R] [--alpha A] [--epsilon E]
 *                                                    RAM / RAM+ (ramplus_tl)
 *   arcee-fusion --base BASE MODEL                   Arcee Fusion */
#include "job.h"

#include <math.h>
#include <string.h>

#define MAX_FINETUNES 64
enum { OPT_BASE = 1100, OPT_TOPK, OPT_PLUS, OPT_R, OPT_ALPHA, OPT_EPSILON, OPT_FILTER_WISE };

typedef struct base_args {
    const char *base;
    double topk, r, alpha, epsilon;
    bool plus, filter_wise;
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
