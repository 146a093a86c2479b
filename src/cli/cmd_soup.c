/* ladle soup M1 M2 ... [--weights w1,w2,...] -o OUT: (weighted) model soup. */
#include "cli.h"

#include <math.h>
#include <stdio.h>

static const char HELP[] =
    "usage: ladle soup M1 M2 ... -o OUT [--weights w1,w2,...] [options]\n"
    "\n"
    "Uniform soup (Wortsman et al. 2022): the plain average of N models. With\n"
    "--weights, sum(w_i * theta_i) / sum(w_i). Computed in fp32 (fp64 for F64\n"
    "tensors), rounded once. Config, tokenizer and non-float tensors come from M1.\n"
    "\n"
    "      --weights W       comma-separated weights, one per model\n" COMMON_MERGE_HELP;

#define MAX_MODELS 64

typedef struct soup_args {
    double w[MAX_MODELS];
    int nw; /* -1: not given */
} soup_args;

static int take(void *ctx, int id, const char *arg)
{
    soup_args *a = ctx;
    if (id == OPT_WEIGHTS && (a->nw = parse_list(arg, a->w, MAX_MODELS)) < 0)
        return usage_error("soup", "--weights takes comma-separated numbers, not '%s'", arg);
    return 0;
}

int cmd_soup(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS, {"weights", required_argument, 0, OPT_WEIGHTS}, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    soup_args a = {.nw = -1};
    int first, code;
    if (!parse_args("soup", HELP, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &a, &first,
                    &code))
        return code;
    int n = argc - first;
    if (n < 1)
        return usage_error("soup", "no models given");
    if (n > MAX_MODELS)
        return usage_error("soup", "at most %d models at once", MAX_MODELS);
    if (a.nw >= 0 && a.nw != n)
        return usage_error("soup", "%d weights for %d models", a.nw, n);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += a.nw >= 0 ? a.w[i] : 1.0;
    if (!(fabs(sum) > 0))
        return usage_error("soup", "the weights sum to 0");
    const char *roles[MAX_MODELS];
    merge_job job = {.cmd = "soup", .refs = (const char *const *)argv + first, .roles = roles,
                     .nmodels = (size_t)n, .template_model = 0};
    job.op.method = &lad_method_linear;
    json_t *wj = json_array();
    for (int i = 0; i < n; i++) {
        double w = a.nw >= 0 ? a.w[i] : 1.0;
        job.op.param[i] = w / sum;
        roles[i] = "ingredient";
        json_array_append_new(wj, json_real(w));
    }
    job.op.nparam = (size_t)n;
    job.params = json_pack("{s:o}", "weights", wj);
    return run_merge(&o, &job, argc, argv);
}
