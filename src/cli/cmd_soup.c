/* ladle soup M1 M2 ... [--weights w1,w2,...] -o OUT: (weighted) model soup;
 * with --greedy, the greedy soup of cmd_greedy.c. */
#include "cli.h"
#include "greedy.h"

#include <math.h>
#include <stdio.h>

static const char HELP[] =
    "usage: ladle soup M1 M2 ... -o OUT [--weights w1,w2,...] [options]\n"
    "       ladle soup --greedy --eval CMD M1 M2 ... -o OUT [--scores s1,s2,...] [options]\n"
    "\n"
    "Uniform soup (Wortsman et al. 2022): the plain average of N models. With\n"
    "--weights, sum(w_i * theta_i) / sum(w_i). Computed in fp32 (fp64 for F64\n"
    "tensors), rounded once. Config, tokenizer and non-float tensors come from M1.\n"
    "\n"
    "Greedy soup (--greedy): rank the ingredients by their own held-out score\n"
    "(--scores, else evaluated with CMD), best first; start from the best; add\n"
    "each next one if the uniform soup with it scores at least as well as the\n"
    "best so far. Every candidate is written in the output dtype and evaluated\n"
    "as it would be shipped; OUT is bit-identical to the last accepted one.\n"
    "Prints a table (or --json) of ingredients, scores and decisions.\n"
    "\n"
    "      --weights W       comma-separated weights, one per model\n"
    "      --greedy          greedy soup (needs --eval)\n"
    "      --scores S        the ingredients' own scores, comma-separated, in the\n"
    "                        order given (default: evaluate each with CMD)\n"
    "      --strict          add an ingredient only if the score improves\n"
    "      --json            print the greedy soup's table as JSON\n" SEARCH_HELP
    COMMON_MERGE_HELP;

#define MAX_MODELS 64

enum { OPT_GREEDY = 1200, OPT_SCORES, OPT_STRICT };

typedef struct soup_args {
    double w[MAX_MODELS];
    int nw; /* -1: not given */
    bool greedy, searching;
    greedy_args g;
} soup_args;

static int take(void *ctx, int id, const char *arg)
{
    soup_args *a = ctx;
    int t = search_opts_take(&a->g.search, "soup", id, arg);
    if (t > 1)
        return t;
    if (t == 1) {
        a->searching = true;
        return 0;
    }
    switch (id) {
    case OPT_WEIGHTS:
        if ((a->nw = parse_list(arg, a->w, MAX_MODELS)) < 0)
            return usage_error("soup", "--weights takes comma-separated numbers, not '%s'", arg);
        return 0;
    case OPT_GREEDY:
        a->greedy = true;
        return 0;
    case OPT_SCORES:
        if ((a->g.nscores = parse_list(arg, a->g.scores, GREEDY_MAX)) < 0)
            return usage_error("soup", "--scores takes comma-separated numbers, not '%s'", arg);
        a->searching = true;
        return 0;
    case OPT_STRICT:
        a->g.strict = a->searching = true;
        return 0;
    case OPT_JSON:
        a->g.json = a->searching = true;
        return 0;
    }
    return 0;
}

int cmd_soup(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS, {"weights", required_argument, 0, OPT_WEIGHTS},
        {"greedy", no_argument, 0, OPT_GREEDY}, {"scores", required_argument, 0, OPT_SCORES},
        {"strict", no_argument, 0, OPT_STRICT}, {"json", no_argument, 0, OPT_JSON},
        SEARCH_OPTIONS, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    soup_args a = {.nw = -1, .g = {.nscores = -1}};
    int first, code;
    if (!parse_args("soup", HELP, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &a, &first,
                    &code))
        return code;
    int n = argc - first;
    if (a.greedy) {
        if (a.nw >= 0)
            return usage_error("soup", "--weights and --greedy do not go together");
        if (o.nsets)
            return usage_error("soup", "--set: a soup has no per-tensor parameters");
        if (n > GREEDY_MAX)
            return usage_error("soup", "at most %d ingredients", GREEDY_MAX);
        if (!a.g.search.eval)
            return usage_error("soup", "--greedy needs an evaluator: --eval 'CMD {model}'");
        a.g.merge = o;
        a.g.models = (const char *const *)argv + first;
        a.g.nmodels = (size_t)n;
        return greedy_soup(&a.g);
    }
    if (a.searching)
        return usage_error("soup", "--eval, --scores, --strict, --json and the other search "
                                   "options go with --greedy");
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
