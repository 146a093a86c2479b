/* soup M1 M2 ... [--weights w1,w2,...]: (weighted) model soup.
 *
 * --sum-first: the mean by one division, (M1 + ... + Mn) / n summed in the
 * order given (lad_method_mean): the greedy soup's candidates. With it,
 * --sum-only writes the F32 sum itself, and --partial-sum FILE:K stands
 * such a sum of M1..MK in for them, so a candidate reads the stored sum
 * and the ingredients after it only; M1 is still the template (config,
 * tokenizer, each tensor's output dtype) but its values are not read. The
 * result is bit for bit that of the plain --sum-first merge. */
#include "job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODELS 64
enum { OPT_WEIGHTS = 1100, OPT_SUM_FIRST, OPT_SUM_ONLY, OPT_PARTIAL };

typedef struct soup_args {
    double w[MAX_MODELS];
    int nw; /* -1: not given */
    bool sum_first, sum_only;
    const char *partial; /* --partial-sum's FILE:K, as given */
} soup_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    soup_args *a = args;
    if (id == OPT_WEIGHTS && (a->nw = lad_parse_list(arg, a->w, MAX_MODELS)) < 0)
        return lad_usage(err, "--weights takes comma-separated numbers, not '%s'", arg);
    if (id == OPT_SUM_FIRST)
        a->sum_first = true;
    if (id == OPT_SUM_ONLY)
        a->sum_only = true;
    if (id == OPT_PARTIAL)
        a->partial = arg;
    return 0;
}

/* --partial-sum FILE:K, K counting models from M1, 1 <= K <= n. */
static int partial_count(const char *arg, int n, char **file, long *k, lad_error *err)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || n < 2 || lad_parse_long(colon + 1, 1, n, k) != 0)
        return lad_usage(err, "--partial-sum takes FILE:K, the stored sum of the first K of "
                              "the models (1 <= K <= %d; at least 2 models), not '%s'",
                         n, arg);
    size_t len = (size_t)(colon - arg);
    if (!(*file = malloc(len + 1)))
        return lad_fail(err, "out of memory");
    memcpy(*file, arg, len);
    (*file)[len] = 0;
    return 0;
}

static int sum_first(lad_job *j, const soup_args *a, char *const *pos, int n, lad_error *err)
{
    if (a->nw >= 0)
        return lad_usage(err, "--sum-first is the uniform mean; it takes no --weights");
    if (a->sum_only && j->o.has_dtype && j->o.dtype != LAD_F32)
        return lad_usage(err, "--sum-only writes the F32 sum; it takes no --dtype %s",
                         lad_dtype_name(j->o.dtype));
    char *file = NULL;
    long k = 0;
    if (a->partial && partial_count(a->partial, n, &file, &k, err) != 0)
        return -1;
    /* With a partial sum: M1 (the template), FILE, M(K+1)..Mn. */
    size_t nin = a->partial ? (size_t)(n - k) + 2 : (size_t)n;
    if (job_models(j, nin, err) != 0) {
        free(file);
        return -1;
    }
    size_t m = 0;
    j->refs[m] = pos[0];
    j->roles[m++] = a->partial ? "template" : "ingredient";
    if (a->partial) {
        j->refs[m] = file;
        j->roles[m++] = "partial sum";
        j->state = file; /* freed with the job */
    }
    for (int i = a->partial ? (int)k : 1; i < n; i++) {
        j->refs[m] = pos[i];
        j->roles[m++] = "ingredient";
    }
    j->template_only = a->partial != NULL;
    j->op.method = &lad_method_mean;
    j->op.param[0] = a->sum_only ? 1 : n;
    j->op.nparam = 1;
    if (a->sum_only) {
        j->has_out_dtype = true;
        j->out_dtype = LAD_F32;
    }
    j->params = json_pack("{s:s,s:i}", "mean", a->sum_only ? "sum, not divided" : "sum first",
                          "models", n);
    return 0;
}

int job_soup(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"weights", OPT_WEIGHTS, true},
                                      {"sum-first", OPT_SUM_FIRST, false},
                                      {"sum-only", OPT_SUM_ONLY, false},
                                      {"partial-sum", OPT_PARTIAL, true},
                                      {0}};
    soup_args a = {.nw = -1};
    char *const *pos;
    int n, rc;
    if ((rc = job_parse(j, opts, take, &a, &pos, &n, err)) != 0)
        return rc;
    double sum = 0;
    for (int i = 0; i < n && i < MAX_MODELS; i++)
        sum += a.nw >= 0 ? a.w[i] : 1.0;
    if (n < 1)
        rc = lad_usage(err, "no models given");
    else if (n > MAX_MODELS)
        rc = lad_usage(err, "at most %d models at once", MAX_MODELS);
    else if ((a.sum_only || a.partial) && !a.sum_first)
        rc = lad_usage(err, "--%s goes with --sum-first", a.sum_only ? "sum-only" : "partial-sum");
    else if (a.sum_first)
        rc = sum_first(j, &a, pos, n, err);
    else if (a.nw >= 0 && a.nw != n)
        rc = lad_usage(err, "%d weights for %d models", a.nw, n);
    else if (!(fabs(sum) > 0))
        rc = lad_usage(err, "the weights sum to 0");
    else if ((rc = job_models(j, (size_t)n, err)) == 0) {
        j->op.method = &lad_method_linear;
        json_t *wj = json_array();
        for (int i = 0; i < n; i++) {
            double w = a.nw >= 0 ? a.w[i] : 1.0;
            j->refs[i] = pos[i];
            j->roles[i] = "ingredient";
            j->op.param[i] = w / sum;
            json_array_append_new(wj, json_real(w));
        }
        j->op.nparam = (size_t)n;
        j->params = json_pack("{s:o}", "weights", wj);
    }
    free((void *)pos);
    return rc;
}
