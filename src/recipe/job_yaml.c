/* merge CONFIG.yml [--dry-run] [--var NAME=VALUE]: a mergekit YAML recipe. */
#include "job.h"
#include "recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VARS 16
enum { OPT_VAR = 1100 };

typedef struct yaml_args {
    const char *var[MAX_VARS];
    int nvars;
    int hits[MAX_VARS];
    lad_recipe r;
    lad_schedule sched;
} yaml_args;

static void free_args(void *state)
{
    lad_recipe_free(&((yaml_args *)state)->r);
}

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    yaml_args *a = args;
    if (id == OPT_VAR) {
        const char *eq = strchr(arg, '=');
        if (!eq || !lad_is_identifier(arg, (size_t)(eq - arg)))
            return lad_usage(err, "--var takes NAME=VALUE, not '%s'", arg);
        if (a->nvars == MAX_VARS)
            return lad_usage(err, "at most %d --var", MAX_VARS);
        a->var[a->nvars++] = arg;
    }
    return 0;
}

/* {NAME} -> VALUE for each --var, in the recipe's text. A --var the
 * recipe does not use is an error (a typo would otherwise go unnoticed). */
static const char *var_lookup(const char *name, size_t n, bool *quote, void *ctx)
{
    (void)quote;
    yaml_args *a = ctx;
    for (int v = 0; v < a->nvars; v++) {
        const char *var = a->var[v], *eq = strchr(var, '=');
        if ((size_t)(eq - var) == n && !strncmp(var, name, n)) {
            a->hits[v]++;
            return eq + 1;
        }
    }
    return NULL;
}

static int substitute(yaml_args *a, const char *path, char **text, size_t *len, lad_error *err)
{
    char *out = lad_expand(*text, var_lookup, a);
    if (!out)
        return lad_fail(err, "out of memory");
    free(*text);
    *text = out;
    *len = strlen(out);
    for (int v = 0; v < a->nvars; v++)
        if (!a->hits[v])
            return lad_fail(err, "%s: --var %s: the recipe has no {%.*s}", path, a->var[v],
                            (int)(strchr(a->var[v], '=') - a->var[v]), a->var[v]);
    return 0;
}

static int make_specs(const lad_job *j, lad_model *const *models, lad_tensor_spec **specs,
                      size_t *n, uint64_t *num_layers, lad_error *err)
{
    return lad_recipe_specs(&((const yaml_args *)j->state)->r, models, specs, n, num_layers,
                            err);
}

static int describe(const lad_job *j, const char *tensor, const lad_place *place,
                    const void *spec_ctx, char *buf, size_t len, lad_error *err)
{
    return lad_recipe_describe(&((const yaml_args *)j->state)->r, tensor, place, spec_ctx, buf,
                               len, err);
}

int job_yaml(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"var", OPT_VAR, true}, {0}};
    yaml_args *a = job_state(j, sizeof *a);
    char *const *pos;
    int n, rc;
    if (!a)
        return lad_fail(err, "out of memory");
    if ((rc = job_parse(j, opts, take, a, &pos, &n, err)) != 0)
        return rc;
    const char *path = n == 1 ? pos[0] : NULL;
    free((void *)pos);
    if (!path)
        return lad_usage(err, "expected one recipe CONFIG.yml");
    if (j->o.nsets)
        return lad_usage(err, "--set does not apply to recipes; write filters in the recipe's "
                              "parameters");
    char *text = NULL;
    size_t len = 0;
    if (lad_read_file(path, LAD_YAML_MAX_BYTES, &text, &len, err) != 0 ||
        substitute(a, path, &text, &len, err) != 0 ||
        lad_recipe_load_text(path, text, len, &a->r, err) != 0) {
        free(text);
        return -1;
    }
    j->free_state = free_args;
    lad_recipe *r = &a->r;
    if ((rc = job_models(j, r->nmodels, err)) != 0) {
        free(text);
        return rc;
    }
    for (size_t i = 0; i < r->nmodels; i++) {
        j->refs[i] = r->models[i].ref;
        j->roles[i] = r->slices ? "slices" : (int)i == r->base ? "base" : "model";
    }
    a->sched = (lad_schedule){.resolve = lad_recipe_resolve, .ctx = r,
                              .resolve_needs_layers = r->needs_layers};
    if (!j->o.tokenizer_source) /* --tokenizer-source wins over the recipe's */
        j->o.tokenizer_source = r->tokenizer_source;
    if (!j->o.chat_template)
        j->o.chat_template = r->chat_template;
    if (!j->o.pad_multiple)
        j->o.pad_multiple = r->pad_multiple;
    j->token_rules = r->rules;
    j->ntoken_rules = r->nrules;
    if (!j->o.nlayers) /* --layers replaces the recipe's layers: */
        for (size_t k = 0; k < r->nlayers; k++)
            j->o.layers[j->o.nlayers++] = r->layers[k];
    j->label = lad_recipe_method(r);
    j->template_model = r->base >= 0 ? (size_t)r->base : 0;
    j->schedule = &a->sched;
    j->has_out_dtype = r->has_out_dtype;
    j->out_dtype = r->out_dtype;
    j->describe = describe;
    if (r->slices) {
        j->template_model = r->slices[0].src[0].model;
        j->make_specs = make_specs;
        j->free_specs = lad_recipe_free_specs;
    }
    j->params = json_pack("{s:s, s:s}", "recipe", path, "yaml", text);
    free(text);
    return 0;
}
