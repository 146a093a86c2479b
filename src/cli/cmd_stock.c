/* ladle stock --base BASE M1 M2 ... -o OUT: Model Stock. */
#include "cli.h"

#include <stdio.h>

static const char HELP[] =
    "usage: ladle stock --base BASE M1 M2 [M3 ...] -o OUT [options]\n"
    "\n"
    "Model Stock (Jang et al. 2024), as mergekit computes it: per tensor, the mean\n"
    "cosine of the angles between the fine-tunes' displacements from BASE sets\n"
    "t = N cos / (1 + (N-1) cos), and out = t * mean(M_i) + (1 - t) * BASE.\n"
    "Needs at least two fine-tunes (at most 24).\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n" COMMON_MERGE_HELP;

static int take(void *ctx, int id, const char *arg)
{
    if (id == OPT_BASE)
        *(const char **)ctx = arg;
    return 0;
}

int cmd_stock(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS, {"base", required_argument, 0, OPT_BASE}, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    const char *base = NULL;
    int first, code;
    if (!parse_args("stock", HELP, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &base,
                    &first, &code))
        return code;
    int n = argc - first;
    if (!base)
        return usage_error("stock", "--base BASE is required");
    if (n < 2 || n > 24)
        return usage_error("stock", "needs 2 to 24 fine-tunes besides the base, got %d", n);
    const char *refs[25], *roles[25];
    refs[0] = base;
    roles[0] = "base";
    for (int i = 0; i < n; i++) {
        refs[i + 1] = argv[first + i];
        roles[i + 1] = "model";
    }
    merge_job job = {.cmd = "model_stock", .refs = refs, .roles = roles,
                     .nmodels = (size_t)n + 1, .template_model = 0};
    job.op.method = &lad_method_model_stock;
    job.params = json_object();
    return run_merge(&o, &job, argc, argv);
}
