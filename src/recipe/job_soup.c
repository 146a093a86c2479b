/* soup M1 M2 ... [--weights w1,w2,...]: (weighted) model soup. */
#include "job.h"

#include <math.h>

#define MAX_MODELS 64
enum { OPT_WEIGHTS = 1100 };

typedef struct soup_args {
    double w[MAX_MODELS];
    int nw; /* -1: not given */
} soup_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    soup_args *a = args;
    if (id == OPT_WEIGHTS && (a->nw = lad_parse_list(arg, a->w, MAX_MODELS)) < 0)
        return lad_usage(err, "--weights takes comma-separated numbers, not '%s'", arg);
    return 0;
}

int job_soup(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"weights", OPT_WEIGHTS, true}, {0}};
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
