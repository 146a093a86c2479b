/* Means on the sphere of several models, with mergekit's semantics:
 *   multislerp M1 M2 ... [--weights w1,...] [--base BASE] [--no-normalize]
 *                              Multi-SLERP (multislerp.c)
 *   karcher M1 M2 ... [--max-iter N] [--tol T]
 *                              the Karcher mean (karcher.c) */
#include "job.h"

#include <math.h>
#include <stdlib.h>

enum { OPT_WEIGHTS = 1100, OPT_BASE, OPT_NO_NORMALIZE, OPT_EPS, OPT_MAX_ITER, OPT_TOL };

typedef struct sphere_args {
    double w[MSLERP_MAX];
    int nw; /* -1: not given */
    const char *base;
    bool no_normalize;
    double eps, tol;
    long max_iter;
} sphere_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    sphere_args *a = args;
    switch (id) {
    case OPT_WEIGHTS:
        if ((a->nw = lad_parse_list(arg, a->w, MSLERP_MAX)) < 0)
            return lad_usage(err, "--weights takes comma-separated numbers, not '%s'", arg);
        return 0;
    case OPT_BASE:
        a->base = arg;
        return 0;
    case OPT_NO_NORMALIZE:
        a->no_normalize = true;
        return 0;
    case OPT_EPS:
        if (job_double("--eps", arg, &a->eps, err))
            return -1;
        return a->eps >= 0 ? 0 : lad_usage(err, "--eps must be at least 0");
    case OPT_TOL:
        if (job_double("--tol", arg, &a->tol, err))
            return -1;
        return a->tol >= 0 ? 0 : lad_usage(err, "--tol must be at least 0");
    case OPT_MAX_ITER:
        return job_int("--max-iter", arg, 0, 1000000, &a->max_iter, err);
    }
    return 0;
}

int job_multislerp(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"weights", OPT_WEIGHTS, true},
                                      {"base", OPT_BASE, true},
                                      {"no-normalize", OPT_NO_NORMALIZE, false},
                                      {"eps", OPT_EPS, true},
                                      {0}};
    sphere_args a = {.nw = -1, .eps = 1e-8};
    char *const *pos;
    int n, rc;
    if ((rc = job_parse(j, opts, take, &a, &pos, &n, err)) != 0)
        return rc;
    double sum = 0;
    for (int i = 0; i < n && i < MSLERP_MAX; i++)
        sum += a.nw >= 0 ? a.w[i] : 1.0;
    if (n < 1)
        rc = lad_usage(err, "no models given");
    else if (n > MSLERP_MAX)
        rc = lad_usage(err, "at most %d models at once", MSLERP_MAX);
    else if (a.nw >= 0 && a.nw != n)
        rc = lad_usage(err, "%d weights for %d models", a.nw, n);
    else if (!a.no_normalize && !(fabs(sum) > 0))
        rc = lad_usage(err, "the weights sum to 0 (--no-normalize uses them as given)");
    else if ((rc = job_models(j, (size_t)n + (a.base != NULL), err)) == 0) {
        json_t *wj = json_array();
        for (int i = 0; i < n; i++) {
            double w = a.nw >= 0 ? a.w[i] : 1.0;
            j->refs[i] = pos[i];
            j->roles[i] = "model";
            j->op.param[MSLERP_W0 + i] = a.no_normalize ? w : w / sum;
            json_array_append_new(wj, json_real(w));
        }
        if (a.base) {
            j->refs[n] = a.base;
            j->roles[n] = "base";
            j->template_model = (size_t)n; /* the base's config and tokenizer */
        }
        j->op.method = &lad_method_multislerp;
        j->op.param[MSLERP_BASE] = a.base != NULL;
        j->op.param[MSLERP_EPS] = a.eps;
        j->op.nparam = MSLERP_W0 + (size_t)n;
        j->params = json_pack("{s:o, s:b, s:b, s:f}", "weights", wj, "base", a.base != NULL,
                              "normalize_weights", !a.no_normalize, "eps", a.eps);
    }
    free((void *)pos);
    return rc;
}

int job_karcher(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {
        {"max-iter", OPT_MAX_ITER, true}, {"tol", OPT_TOL, true}, {0}};
    sphere_args a = {.max_iter = 10, .tol = 1e-5};
    char *const *pos;
    int n, rc;
    if ((rc = job_parse(j, opts, take, &a, &pos, &n, err)) != 0)
        return rc;
    if (n < 1)
        rc = lad_usage(err, "no models given");
    else if (n > KARCHER_MAX)
        rc = lad_usage(err, "at most %d models at once", KARCHER_MAX);
    else if ((rc = job_models(j, (size_t)n, err)) == 0) {
        for (int i = 0; i < n; i++) {
            j->refs[i] = pos[i];
            j->roles[i] = "model";
        }
        j->op.method = &lad_method_karcher;
        j->op.param[KARCHER_MAX_ITER] = (double)a.max_iter;
        j->op.param[KARCHER_TOL] = a.tol;
        j->op.nparam = 2;
        j->params = json_pack("{s:i, s:f}", "max_iter", (json_int_t)a.max_iter, "tol", a.tol);
    }
    free((void *)pos);
    return rc;
}
