/* ladle merge CONFIG.yml -o OUT [--dry-run] [--var NAME=VALUE]: run a
 * mergekit YAML recipe. */
#include "cli.h"
#include "../core/util.h"
#include "../recipe/recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "                        parameters, bytes to read and write); write nothing\n"
    "      --var NAME=VALUE  replace {NAME} in the recipe's text by VALUE before it is\n"
    "                        read (repeatable): one recipe for a whole `ladle sweep`,\n"
    "                        e.g. `t: {t}` with --var t={t} in the sweep's command\n"
    COMMON_MERGE_HELP;

#define MAX_VARS 16

typedef struct merge_args {
    bool dry_run;
    const char *var[MAX_VARS];
    int nvars;
} merge_args;

enum { OPT_VAR = 1400 };

static int take(void *ctx, int id, const char *arg)
{
    merge_args *a = ctx;
    if (id == OPT_DRY_RUN)
        a->dry_run = true;
    if (id == OPT_VAR) {
        const char *eq = strchr(arg, '=');
        if (!eq || !lad_is_identifier(arg, (size_t)(eq - arg)))
            return usage_error("merge", "--var takes NAME=VALUE, not '%s'", arg);
        if (a->nvars == MAX_VARS)
            return usage_error("merge", "at most %d --var", MAX_VARS);
        a->var[a->nvars++] = arg;
    }
    return 0;
}

/* {NAME} -> VALUE for each --var, in the recipe's text. A --var the
 * recipe does not use is an error (a typo would otherwise go unnoticed). */
typedef struct var_uses {
    const merge_args *a;
    int hits[MAX_VARS];
} var_uses;

static const char *var_lookup(const char *name, size_t n, bool *quote, void *ctx)
{
    (void)quote;
    var_uses *u = ctx;
    for (int v = 0; v < u->a->nvars; v++) {
        const char *var = u->a->var[v], *eq = strchr(var, '=');
        if ((size_t)(eq - var) == n && !strncmp(var, name, n)) {
            u->hits[v]++;
            return eq + 1;
        }
    }
    return NULL;
}

static int substitute(const merge_args *a, const char *path, char **text, size_t *len,
                      lad_error *err)
{
    var_uses u = {.a = a};
    char *out = lad_expand(*text, var_lookup, &u);
    if (!out)
        return lad_fail(err, "out of memory");
    free(*text);
    *text = out;
    *len = strlen(out);
    for (int v = 0; v < a->nvars; v++)
        if (!u.hits[v])
            return lad_fail(err, "%s: --var %s: the recipe has no {%.*s}", path, a->var[v],
                            (int)(strchr(a->var[v], '=') - a->var[v]), a->var[v]);
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
        COMMON_MERGE_OPTIONS, {"dry-run", no_argument, 0, OPT_DRY_RUN},
        {"var", required_argument, 0, OPT_VAR}, {0, 0, 0, 0}};
    merge_opts o;
    merge_opts_init(&o);
    merge_args a = {0};
    int first, code;
    if (!parse_args("merge", HELP, argc, argv, longopts, COMMON_MERGE_SHORT, &o, take, &a,
                    &first, &code))
        return code;
    if (argc - first != 1)
        return usage_error("merge", "expected one recipe CONFIG.yml");
    if (o.nsets)
        return usage_error("merge", "--set does not apply to recipes; write filters in the "
                                    "recipe's parameters");
    static lad_recipe r; /* large; one recipe per process */
    lad_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (lad_read_file(argv[first], LAD_YAML_MAX_BYTES, &text, &len, &err) != 0 ||
        substitute(&a, argv[first], &text, &len, &err) != 0 ||
        lad_recipe_load_text(argv[first], text, len, &r, &err) != 0) {
        free(text);
        return report(&err);
    }
    const char *refs[RECIPE_MAX_MODELS + 1], *roles[RECIPE_MAX_MODELS + 1];
    for (size_t i = 0; i < r.nmodels; i++) {
        refs[i] = r.models[i].ref;
        roles[i] = r.slices ? "slices" : (int)i == r.base ? "base" : "model";
    }
    static lad_schedule sched;
    sched = (lad_schedule){.resolve = lad_recipe_resolve, .ctx = &r, .resolve_gradient = r.gradient};
    merge_job job = {.cmd = lad_recipe_method(&r), .refs = refs, .roles = roles,
                     .nmodels = r.nmodels, .template_model = r.base >= 0 ? (size_t)r.base : 0,
                     .schedule = &sched, .has_out_dtype = r.has_out_dtype,
                     .out_dtype = r.out_dtype, .dry_run = a.dry_run, .describe = describe,
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
