/* ladle merge CONFIG.yml -o OUT [--dry-run]: run a mergekit YAML recipe. */
#include "cli.h"
#include "../core/util.h"
#include "../recipe/recipe.h"

#include <stdio.h>
#include <stdlib.h>

static const char HELP[] =
    "usage: ladle merge CONFIG.yml -o OUT [--dry-run] [options]\n"
    "\n"
    "Runs a mergekit YAML recipe on ladle's engine: merge_method linear, slerp,\n"
    "task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties,\n"
    "della, della_linear, model_stock or passthrough; models with per-model\n"
    "parameters, base_model, parameters as numbers, gradients or filter lists,\n"
    "dtype / out_dtype, tokenizer_source: base. Model paths are taken as written,\n"
    "else relative to the recipe's folder. Every error names the recipe's line.\n"
    "\n"
    "      --dry-run         print the plan (each tensor's inputs, method and resolved\n"
    "                        parameters, bytes to read and write); write nothing\n" COMMON_MERGE_HELP;

static int take(void *ctx, int id, const char *arg)
{
    (void)arg;
    if (id == OPT_DRY_RUN)
        *(bool *)ctx = true;
    return 0;
}

static int make_specs(lad_model *const *models, lad_tensor_spec **specs, size_t *n,
                      uint64_t *num_layers, const void *ctx, lad_error *err)
{
    return lad_recipe_specs(ctx, models, specs, n, num_layers, err);
}

static int describe(const char *tensor, double depth, const void *spec_ctx, char *buf, size_t len,
                    const void *ctx, lad_error *err)
{
    return lad_recipe_describe(ctx, tensor, depth, spec_ctx, buf, len, err);
}

int cmd_merge(int argc, char **argv)
{
    static const struct option longopts[] = {
        COMMON_MERGE_OPTIONS, {"dry-run", no_argument, 0, OPT_DRY_RUN}, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    bool dry_run = false;
    int first, code;
    if (!parse_args("merge", HELP, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &dry_run,
                    &first, &code))
        return code;
    if (argc - first != 1)
        return usage_error("merge", "expected one recipe CONFIG.yml");
    if (o.nsets)
        return usage_error("merge", "--set does not apply to recipes; write filters in the "
                                    "recipe's parameters");
    static lad_recipe r; /* large; one recipe per process */
    lad_error err = {0};
    if (lad_recipe_load(argv[first], &r, &err) != 0)
        return report(&err);
    const char *refs[RECIPE_MAX_MODELS + 1], *roles[RECIPE_MAX_MODELS + 1];
    for (size_t i = 0; i < r.nmodels; i++) {
        refs[i] = r.models[i].ref;
        roles[i] = r.slices ? "slices" : (int)i == r.base ? "base" : "model";
    }
    char *text = NULL;
    size_t len = 0;
    if (lad_read_file(argv[first], 1 << 20, &text, &len, &err) != 0) {
        lad_recipe_free(&r);
        return report(&err);
    }
    static lad_schedule sched;
    sched = (lad_schedule){.resolve = lad_recipe_resolve, .ctx = &r};
    merge_job job = {.cmd = lad_recipe_method(&r), .refs = refs, .roles = roles,
                     .nmodels = r.nmodels, .template_model = r.base >= 0 ? (size_t)r.base : 0,
                     .schedule = &sched, .has_out_dtype = r.has_out_dtype,
                     .out_dtype = r.out_dtype, .dry_run = dry_run, .describe = describe,
                     .describe_ctx = &r};
    if (r.slices) {
        job.template_model = r.slices[0].src[0].model;
        job.make_specs = make_specs;
        job.free_specs = lad_recipe_free_specs;
        job.specs_ctx = &r;
    }
    job.params = json_pack("{s:s, s:s}", "recipe", argv[first], "yaml", text);
    free(text);
    int rc = run_merge(&o, &job, argc, argv);
    lad_recipe_free(&r);
    return rc;
}
