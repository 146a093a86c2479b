/*
 * mergekit YAML recipes (see recipe.h).
 *
 * Parameter rules, as mergekit's ConfigReader applies them: a per-model
 * ("tensor") parameter comes from the model's own `parameters:`, else the
 * top-level `parameters:`, else the method's default; a global parameter
 * comes from the top level, else the default. A setting is a number, a
 * gradient (a list of numbers across the layers, evaluated at the tensor's
 * depth in its stack: lad_place), or a list of {filter, value} conditions of
 * which the first whose filter is in the tensor's name applies (no filter
 * or "*" matches all); a level where no condition matches is skipped.
 */
#include "recipe.h"
#include "util.h"
#include "../methods/gta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RESCALE: a boolean, or "l1" (2): mergekit's L1 rescaling where ladle's
 * true means 1/p (dare, della). */
enum { PER_MODEL = 1, REQUIRED = 2, BOOLEAN = 4, IGNORED = 8, RESCALE = 16 };

typedef struct param_def {
    const char *name;
    int flags;
    double def;
} param_def;

typedef enum kind {
    K_LINEAR,
    K_SLERP,
    K_GTA,
    K_STOCK,
    K_PASSTHROUGH,
    K_NEARSWAP,
    K_NUSLERP,
    K_MULTISLERP,
    K_KARCHER,
    K_SCE,
    K_RAM,
    K_FUSION,
    K_ISO,
    K_CONSENSUS,
} kind;

typedef struct method_spec {
    const char *name;
    kind kind;
    int sparsify, consensus;
    bool needs_base;
    param_def params[8];
} method_spec;

/* The generalized task arithmetic parameters, with each method's defaults
 * for normalize and rescale (mergekit's registry), and its extra one. */
#define W {"weight", PER_MODEL | REQUIRED, 0}
#define D {"density", PER_MODEL, 1}
#define L {"lambda", 0, 1}
#define I8 {"int8_mask", BOOLEAN | IGNORED, 0}
#define N(v) {"normalize", BOOLEAN, v}
#define R(v) {"rescale", BOOLEAN | RESCALE, v}

static const method_spec SPECS[] = {
    {"linear", K_LINEAR, 0, 0, false, {W, N(1)}},
    {"slerp", K_SLERP, 0, 0, true, {{"t", REQUIRED, 0}}},
    {"task_arithmetic", K_GTA, GTA_DENSE, GTA_NO_CONSENSUS, true, {W, L, N(0), R(0), I8}},
    {"ties", K_GTA, GTA_MAGNITUDE, GTA_SUM, true, {W, D, L, N(1), R(0), I8}},
    {"consensus_ties", K_GTA, GTA_MAGNITUDE, GTA_SUM, true,
     {W, D, L, N(1), R(0), I8, {"tall_lambda", 0, 0.6}, {"k", 0, 2}}},
    {"dare_ties", K_GTA, GTA_RANDOM, GTA_SUM, true, {W, D, L, N(0), R(1), I8}},
    {"dare_linear", K_GTA, GTA_RANDOM, GTA_NO_CONSENSUS, true, {W, D, L, N(0), R(1), I8}},
    {"breadcrumbs", K_GTA, GTA_OUTLIERS, GTA_NO_CONSENSUS, true,
     {W, D, L, N(0), R(0), I8, {"gamma", PER_MODEL, 0.01}}},
    {"breadcrumbs_ties", K_GTA, GTA_OUTLIERS, GTA_SUM, true,
     {W, D, L, N(0), R(0), I8, {"gamma", PER_MODEL, 0.01}}},
    {"della", K_GTA, GTA_DELLA, GTA_SUM, true,
     {W, D, L, N(1), R(1), I8, {"epsilon", PER_MODEL, 0.15}}},
    {"della_linear", K_GTA, GTA_DELLA, GTA_NO_CONSENSUS, true,
     {W, D, L, N(0), R(1), I8, {"epsilon", PER_MODEL, 0.15}}},
    {"model_stock", K_STOCK, 0, 0, true, {{"filter_wise", BOOLEAN, 0}}},
    {"passthrough", K_PASSTHROUGH, 0, 0, false, {{"scale", PER_MODEL, 1}}},
    {"nearswap", K_NEARSWAP, 0, 0, true, {{"t", REQUIRED, 0}}},
    {"nuslerp", K_NUSLERP, 0, 0, false,
     {W, {"nuslerp_flatten", BOOLEAN, 1}, {"nuslerp_row_wise", BOOLEAN, 0}}},
    {"multislerp", K_MULTISLERP, 0, 0, false,
     {W, {"normalize_weights", BOOLEAN, 1}, {"eps", 0, 1e-8}}},
    {"karcher", K_KARCHER, 0, 0, false, {{"max_iter", 0, 10}, {"tol", 0, 1e-5}}},
    {"sce", K_SCE, 0, 0, true, {{"select_topk", 0, 1}, I8}},
    {"ram", K_RAM, 0, 0, true, {{"epsilon", 0, 1e-5}}},
    {"ramplus_tl", K_RAM, 1, 0, true, {{"r", 0, 0.1}, {"alpha", 0, 0.2}, {"epsilon", 0, 1e-5}}},
    {"arcee_fusion", K_FUSION, 0, 0, true, {{0}}},
    {"iso_c", K_ISO, 0, 0, true,
     {{"weight", PER_MODEL, 1}, L, {"subspace", BOOLEAN, 1}}},
    {"tsv", K_ISO, 1, 0, true, {{"weight", PER_MODEL, 1}, L, {"subspace", BOOLEAN, 1}}},
    {"consensus_ta", K_CONSENSUS, 0, 0, true,
     {{"weight", PER_MODEL, 1}, L, {"tall_lambda", 0, 0.6}, {"k", 0, 2}}},
    {"iso_cts", K_ISO, 2, 0, true,
     {{"weight", PER_MODEL, 1}, L, {"subspace", BOOLEAN, 1}, {"common_space_fraction", 0, 0.8}}},
    {"wudi", K_ISO, 3, 0, true,
     {{"weight", PER_MODEL, 1}, L, {"subspace", BOOLEAN, 1}, {"iter_num", 0, 300},
      {"lr", 0, 1e-5}}},
};

#undef W
#undef D
#undef L
#undef I8
#undef N
#undef R

static const param_def *find_param(const method_spec *m, const char *name)
{
    for (size_t i = 0; i < sizeof m->params / sizeof *m->params && m->params[i].name; i++)
        if (!strcmp(m->params[i].name, name))
            return &m->params[i];
    return NULL;
}

static void known_params(const method_spec *m, char *buf, size_t len)
{
    buf[0] = 0;
    for (size_t i = 0; i < sizeof m->params / sizeof *m->params && m->params[i].name; i++) {
        strncat(buf, i ? ", " : "", len - strlen(buf) - 1);
        strncat(buf, m->params[i].name, len - strlen(buf) - 1);
    }
}

/* ------------------------------------------------------------ settings */

static int scalar_value(const lad_yaml *y, const yaml_node_t *n, const param_def *d,
                        double *out, lad_error *err)
{
    if ((d->flags & RESCALE) && lad_yaml_str(n) && !strcmp(lad_yaml_str(n), "l1")) {
        *out = 2;
        return 0;
    }
    if (d->flags & BOOLEAN) {
        bool b;
        if (lad_yaml_bool(y, n, d->name, &b, err))
            return -1;
        *out = b;
        return 0;
    }
    return lad_yaml_number(y, n, d->name, out, err);
}

/* Checks a setting's shape and types without evaluating it. */
static int validate_setting(lad_yaml *y, yaml_node_t *n, const param_def *d, int depth,
                            bool *layered, lad_error *err)
{
    double v;
    if (depth > 4)
        return lad_yaml_fail(err, y, n, "%s: settings nest too deeply", d->name);
    if (n->type == YAML_SCALAR_NODE)
        return scalar_value(y, n, d, &v, err);
    if (n->type == YAML_MAPPING_NODE) { /* one condition: {filter, value} */
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            const char *k = lad_yaml_str(lad_yaml_node(y, p->key));
            if (!k || (strcmp(k, "filter") && strcmp(k, "value")))
                return lad_yaml_fail(err, y, lad_yaml_node(y, p->key),
                                     "%s: a condition takes 'filter' and 'value', not '%s'",
                                     d->name, k ? k : "?");
        }
        yaml_node_t *f = lad_yaml_get(y, n, "filter"), *val = lad_yaml_get(y, n, "value");
        if (f && !lad_yaml_str(f))
            return lad_yaml_fail(err, y, f, "%s: filter must be a string", d->name);
        bool group = false;
        if (f && lad_pattern_check(lad_yaml_str(f), &group, err) != 0) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            return lad_yaml_fail(err, y, f, "%s: filter %s", d->name, why);
        }
        *layered |= group; /* a layer group needs the model's stacks */
        if (!val)
            return lad_yaml_fail(err, y, n, "%s: a condition needs a 'value'", d->name);
        return validate_setting(y, val, d, depth + 1, layered, err);
    }
    /* a sequence: a gradient of numbers, or a list of conditions */
    yaml_node_item_t *it = n->data.sequence.items.start, *end = n->data.sequence.items.top;
    if (it == end)
        return lad_yaml_fail(err, y, n, "%s: an empty list", d->name);
    bool conditions = lad_yaml_node(y, *it)->type == YAML_MAPPING_NODE;
    if (!conditions && end - it > LAD_SCHED_MAX_VALUES)
        return lad_yaml_fail(err, y, n, "%s: a gradient of at most %d values", d->name,
                             LAD_SCHED_MAX_VALUES);
    for (; it < end; it++) {
        yaml_node_t *e = lad_yaml_node(y, *it);
        if (conditions != (e->type == YAML_MAPPING_NODE))
            return lad_yaml_fail(err, y, e, "%s: a list is either numbers (a gradient) or "
                                            "conditions {filter, value}, not both",
                                 d->name);
        if (!conditions && (d->flags & BOOLEAN))
            return lad_yaml_fail(err, y, e, "%s: true/false cannot be a gradient", d->name);
        if (validate_setting(y, e, d, depth + 1, layered, err))
            return -1;
    }
    *layered |= !conditions && n->data.sequence.items.top - n->data.sequence.items.start > 1;
    return 0;
}

static bool filter_matches(const char *filter, const char *tensor, const lad_place *pl)
{
    return !filter || lad_pattern_matches(filter, tensor, pl);
}

/* mergekit's evaluate_setting: *found false when no condition matched. */
static void eval_setting(lad_yaml *y, yaml_node_t *n, const param_def *d, const char *tensor,
                         const lad_place *pl, double *out, bool *found)
{
    lad_error ignore;
    *found = false;
    if (n->type == YAML_SCALAR_NODE) {
        *found = scalar_value(y, n, d, out, &ignore) == 0;
        return;
    }
    if (n->type == YAML_MAPPING_NODE) {
        if (filter_matches(lad_yaml_str(lad_yaml_get(y, n, "filter")), tensor, pl))
            eval_setting(y, lad_yaml_get(y, n, "value"), d, tensor, pl, out, found);
        return;
    }
    yaml_node_item_t *it = n->data.sequence.items.start, *end = n->data.sequence.items.top;
    if (lad_yaml_node(y, *it)->type == YAML_MAPPING_NODE) {
        for (; it < end; it++) {
            yaml_node_t *c = lad_yaml_node(y, *it);
            if (filter_matches(lad_yaml_str(lad_yaml_get(y, c, "filter")), tensor, pl)) {
                eval_setting(y, lad_yaml_get(y, c, "value"), d, tensor, pl, out, found);
                return;
            }
        }
        return;
    }
    lad_sched_value g = {.n = (int)(end - it)};
    for (int i = 0; i < g.n; i++)
        scalar_value(y, lad_yaml_node(y, it[i]), d, &g.v[i], &ignore);
    lad_schedule one = {.nparams = 1};
    one.value[0] = g;
    lad_sched_resolve(&one, tensor, pl, out);
    *found = true;
}

/* A parameter for one tensor from the first of `levels` (parameter
 * mappings, most specific first) with a setting that applies, else the
 * method's default; required and missing is an error at `where`. */
static int param_levels(const lad_recipe *rc, const char *name, yaml_node_t *const *levels,
                        int nlevels, bool required, yaml_node_t *where, const char *who,
                        const char *tensor, const lad_place *pl, double *out, lad_error *err)
{
    lad_recipe *r = (lad_recipe *)rc; /* libyaml's accessors are not const */
    const param_def *d = find_param(r->spec, name);
    bool found = false;
    for (int l = 0; l < nlevels && !found; l++) {
        yaml_node_t *n = levels[l] ? lad_yaml_get(&r->y, levels[l], name) : NULL;
        if (n)
            eval_setting(&r->y, n, d, tensor, pl, out, &found);
    }
    if (found)
        return 0;
    if (required && (d->flags & REQUIRED))
        return lad_yaml_fail(err, &r->y, where, "%s needs '%s'%s%s (no setting matches this tensor)",
                             r->spec->name, name, who ? " for model " : "", who ? who : "");
    *out = d->def;
    return 0;
}

/* The inputs of one tensor, as the recipe's models or as a slice's sources. */
typedef struct inputs {
    const lad_recipe *r;
    const recipe_slice *slice; /* NULL: the models form */
    size_t n;
    int base;                  /* the base's index among the inputs, or -1 */
} inputs;

static inputs inputs_of(const lad_recipe *r, const void *spec_ctx)
{
    const recipe_slice *sl = spec_ctx;
    if (!sl)
        return (inputs){r, NULL, r->nmodels, r->base};
    return (inputs){r, sl, sl->nsrc, r->spec->needs_base ? 0 : -1};
}

/* A per-model parameter of input k: its own, (its slice's,) the top level. */
static int in_param(const inputs *in, size_t k, const char *name, const char *tensor,
                    const lad_place *pl, double *out, lad_error *err)
{
    const lad_recipe *r = in->r;
    bool per_model = find_param(r->spec, name)->flags & PER_MODEL;
    yaml_node_t *levels[3];
    int n = 0;
    const char *who;
    yaml_node_t *where;
    if (in->slice) {
        const recipe_source *src = &in->slice->src[in->slice->order[k]];
        if (per_model)
            levels[n++] = src->params;
        levels[n++] = in->slice->params;
        who = r->models[src->model].ref;
        where = src->node;
    } else {
        if (per_model)
            levels[n++] = r->models[k].params;
        who = r->models[k].ref;
        where = r->models[k].node;
    }
    levels[n++] = r->params;
    return param_levels(r, name, levels, n, (int)k != in->base, where, who, tensor, pl, out, err);
}

/* A global parameter: (the slice's,) the top level. */
static int glob_param(const inputs *in, const char *name, const char *tensor,
                      const lad_place *pl, double *out, lad_error *err)
{
    yaml_node_t *levels[2] = {in->slice ? in->slice->params : NULL, in->r->params};
    return param_levels(in->r, name, levels, 2, true, NULL, NULL, tensor, pl, out, err);
}

/* A top-level parameter that must be a whole number from 0 to hi (the
 * number of models besides the base when tasks). */
static int whole_param(const inputs *in, const char *method, const char *name,
                       const char *tensor, const lad_place *pl, double hi, bool tasks,
                       double *v, lad_error *err)
{
    if (glob_param(in, name, tensor, pl, v, err))
        return -1;
    if (!(*v >= 0 && *v <= hi) || *v != floor(*v))
        return lad_fail(err, tasks ? "%s's %s is %g; it must be a whole number from 0 to the "
                                     "number of models besides the base (%g)"
                                   : "%s's %s is %g; it must be a whole number from 0 to %g",
                        method, name, *v, hi);
    return 0;
}

/* The consensus methods' k and tall_lambda. */
static int tall_params(const inputs *in, const char *method, const char *tensor,
                       const lad_place *pl, double *k, double *tall, lad_error *err)
{
    if (whole_param(in, method, "k", tensor, pl, (double)(in->n - 1), true, k, err) ||
        glob_param(in, "tall_lambda", tensor, pl, tall, err))
        return -1;
    return *tall >= 0 ? 0 : lad_fail(err, "tall_lambda %g must be at least 0", *tall);
}

/* ------------------------------------------------------------ loading */

static const char *const TOP_KEYS[] = {"merge_method", "models", "base_model", "parameters",
                                       "dtype", "out_dtype", "tokenizer_source", "slices",
                                       "tokenizer", "chat_template", "layers"};

/* ladle's `layers:` (--layers): a regex, or a list of them, naming the
 * model's stacks when the names do not. */
static int load_layers(lad_recipe *r, yaml_node_t *n, lad_error *err)
{
    lad_yaml *y = &r->y;
    size_t cap = sizeof r->layers / sizeof *r->layers;
    if (lad_yaml_str(n)) {
        r->layers[r->nlayers++] = lad_yaml_str(n);
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return lad_yaml_fail(err, y, n, "layers: a regex or a list of regexes, each with one "
                                        "capture group (the block index)");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        const char *re = lad_yaml_str(lad_yaml_node(y, *it));
        if (!re)
            return lad_yaml_fail(err, y, lad_yaml_node(y, *it), "layers: each entry is a regex");
        if (r->nlayers == cap)
            return lad_yaml_fail(err, y, n, "layers: at most %zu regexes", cap);
        r->layers[r->nlayers++] = re;
    }
    return 0;
}

static int check_keys(lad_yaml *y, yaml_node_t *map, const char *const *keys, size_t nkeys,
                      const char *where, lad_error *err)
{
    if (map->type != YAML_MAPPING_NODE)
        return lad_yaml_fail(err, y, map, "%s must be a mapping (key: value)", where);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = lad_yaml_node(y, p->key);
        const char *ks = lad_yaml_str(k);
        size_t i;
        for (i = 0; ks && i < nkeys && strcmp(ks, keys[i]); i++)
            ;
        if (!ks || i == nkeys) {
            char known[512] = "";
            for (size_t j = 0; j < nkeys; j++) {
                strncat(known, j ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, keys[j], sizeof known - strlen(known) - 1);
            }
            return lad_yaml_fail(err, y, k, "unknown key '%s' in %s (known: %s)", ks ? ks : "?",
                                 where, known);
        }
    }
    return 0;
}

static int string_of(lad_yaml *y, yaml_node_t *n, const char *what, const char **out,
                     lad_error *err)
{
    if (!(*out = lad_yaml_str(n)) || !**out)
        return lad_yaml_fail(err, y, n, "%s must be a string", what);
    return 0;
}

static int resolve_path(lad_yaml *y, yaml_node_t *n, const char *ref, char **out,
                        lad_error *err);

/* A model reference: a path as given, else relative to the recipe's folder. */
static int resolve_ref(lad_yaml *y, yaml_node_t *n, char **out, lad_error *err)
{
    const char *ref;
    if (string_of(y, n, "a model", &ref, err))
        return -1;
    return resolve_path(y, n, ref, out, err);
}

/* A path as given, else relative to the recipe's folder; NULL if neither
 * exists. */
static char *find_path(const lad_yaml *y, const char *ref)
{
    if (lad_exists(ref))
        return lad_strdup(ref);
    char *p = NULL;
    if (ref[0] != '/') {
        char *dir = lad_dirname(y->path);
        p = dir ? lad_path_join(dir, ref) : NULL;
        free(dir);
    }
    if (p && !lad_exists(p)) {
        free(p);
        p = NULL;
    }
    return p;
}

static int resolve_path(lad_yaml *y, yaml_node_t *n, const char *ref, char **out,
                        lad_error *err)
{
    /* mergekit's model+lora: a model, '+', a LoRA adapter folder */
    char *whole = find_path(y, ref);
    bool named = whole != NULL; /* a path that holds a '+' itself */
    free(whole);
    for (size_t i = strlen(ref); i-- > 0 && !named;) { /* each '+', from the right */
        if (ref[i] != '+')
            continue;
        char *left = strndup(ref, i);
        char *base = left ? find_path(y, left) : NULL, *adapter = find_path(y, ref + i + 1);
        free(left);
        if (base && adapter && lad_is_dir(adapter)) {
            *out = lad_asprintf("%s+%s", base, adapter);
            free(base);
            free(adapter);
            return *out ? 0 : lad_fail(err, "out of memory");
        }
        free(base);
        free(adapter);
    }
    if (lad_exists(ref))
        return (*out = lad_strdup(ref)) ? 0 : lad_fail(err, "out of memory");
    if (ref[0] != '/') {
        char *dir = lad_dirname(y->path), *p = dir ? lad_path_join(dir, ref) : NULL;
        free(dir);
        if (p && lad_exists(p)) {
            *out = p;
            return 0;
        }
        free(p);
    }
    return lad_yaml_fail(err, y, n, "model '%s' not found (a Hugging Face Hub name? download "
                                    "it first, e.g. with huggingface-cli download, and give "
                                    "its path)",
                         ref);
}

static int check_params(lad_recipe *r, yaml_node_t *map, bool per_model, lad_error *err)
{
    lad_yaml *y = &r->y;
    if (map->type != YAML_MAPPING_NODE)
        return lad_yaml_fail(err, y, map, "parameters must be a mapping (name: value)");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = lad_yaml_node(y, p->key);
        const char *name = lad_yaml_str(k);
        const param_def *d = name ? find_param(r->spec, name) : NULL;
        char known[256];
        known_params(r->spec, known, sizeof known);
        if (!d)
            return lad_yaml_fail(err, y, k, "unknown parameter '%s' for %s (it takes: %s)",
                                 name ? name : "?", r->spec->name, known);
        if (per_model && !(d->flags & PER_MODEL))
            return lad_yaml_fail(err, y, k, "'%s' applies to the whole merge: put it under the "
                                            "top-level parameters",
                                 name);
        if (validate_setting(y, lad_yaml_node(y, p->value), d, 0, &r->needs_layers, err))
            return -1;
    }
    return 0;
}

static int add_model(lad_recipe *r, yaml_node_t *node, yaml_node_t *ref_node,
                     yaml_node_t *params, lad_error *err)
{
    if (r->nmodels == RECIPE_MAX_MODELS)
        return lad_yaml_fail(err, &r->y, node, "at most %d models", RECIPE_MAX_MODELS);
    recipe_model *m = &r->models[r->nmodels];
    if (resolve_ref(&r->y, ref_node, &m->ref, err))
        return -1;
    m->node = node;
    m->params = params;
    r->nmodels++;
    return 0;
}

static bool same_model(const char *a, const char *b)
{
    char *x = lad_abspath(a), *y = lad_abspath(b);
    bool same = x && y && !strcmp(x, y);
    free(x);
    free(y);
    return same;
}

/* A source's model: one entry in models per distinct path. */
static int source_model(lad_recipe *r, yaml_node_t *node, yaml_node_t *ref, size_t *index,
                        lad_error *err)
{
    char *path;
    if (resolve_ref(&r->y, ref, &path, err))
        return -1;
    for (size_t i = 0; i < r->nmodels; i++)
        if (same_model(r->models[i].ref, path)) {
            free(path);
            *index = i;
            return 0;
        }
    if (r->nmodels == RECIPE_MAX_MODELS) {
        free(path);
        return lad_yaml_fail(err, &r->y, node, "at most %d models", RECIPE_MAX_MODELS);
    }
    r->models[r->nmodels] = (recipe_model){.ref = path, .node = node};
    *index = r->nmodels++;
    return 0;
}

#define LAYER_MAX 1000000

static int layer_bound(lad_yaml *y, yaml_node_t *n, long *out, lad_error *err)
{
    double v;
    if (lad_yaml_number(y, n, "layer_range", &v, err))
        return -1;
    /* Range first: converting a double beyond long's range is undefined
     * (found by fuzzing: layer_range: [0, 6.7e29]). */
    if (!(v >= 0 && v <= LAYER_MAX) || v != floor(v))
        return lad_yaml_fail(err, y, n, "layer_range takes whole layer numbers from 0 to %d",
                             LAYER_MAX);
    *out = (long)v;
    return 0;
}

static int load_slices(lad_recipe *r, yaml_node_t *slices, lad_error *err)
{
    lad_yaml *y = &r->y;
    static const char *const SLICE_KEYS[] = {"sources", "parameters"};
    static const char *const SOURCE_KEYS[] = {"model", "layer_range", "parameters"};
    if (slices->type != YAML_SEQUENCE_NODE || slices->data.sequence.items.start ==
                                                  slices->data.sequence.items.top)
        return lad_yaml_fail(err, y, slices, "slices must be a list of - sources: [...]");
    size_t n = (size_t)(slices->data.sequence.items.top - slices->data.sequence.items.start);
    if (!(r->slices = calloc(n, sizeof *r->slices)))
        return lad_fail(err, "out of memory");
    for (yaml_node_item_t *it = slices->data.sequence.items.start;
         it < slices->data.sequence.items.top; it++) {
        recipe_slice *sl = &r->slices[r->nslices++];
        yaml_node_t *e = lad_yaml_node(y, *it), *sources;
        if (check_keys(y, e, SLICE_KEYS, 2, "a slice", err))
            return -1;
        sl->node = e;
        if ((sl->params = lad_yaml_get(y, e, "parameters")) && check_params(r, sl->params, false, err))
            return -1;
        if (!(sources = lad_yaml_get(y, e, "sources")) || sources->type != YAML_SEQUENCE_NODE)
            return lad_yaml_fail(err, y, sources ? sources : e, "a slice needs sources: a list");
        for (yaml_node_item_t *si = sources->data.sequence.items.start;
             si < sources->data.sequence.items.top; si++) {
            yaml_node_t *src = lad_yaml_node(y, *si), *ref, *range;
            if (sl->nsrc == LAD_SPEC_MAX_IN)
                return lad_yaml_fail(err, y, src, "at most %d sources in a slice", LAD_SPEC_MAX_IN);
            recipe_source *rs = &sl->src[sl->nsrc++];
            if (check_keys(y, src, SOURCE_KEYS, 3, "a slice source", err))
                return -1;
            if (!(ref = lad_yaml_get(y, src, "model")))
                return lad_yaml_fail(err, y, src, "a source needs 'model: PATH'");
            range = lad_yaml_get(y, src, "layer_range");
            if (!range || range->type != YAML_SEQUENCE_NODE ||
                range->data.sequence.items.top - range->data.sequence.items.start != 2)
                return lad_yaml_fail(err, y, range ? range : src,
                                     "a source needs layer_range: [first, end]");
            if (layer_bound(y, lad_yaml_node(y, range->data.sequence.items.start[0]), &rs->first,
                            err) ||
                layer_bound(y, lad_yaml_node(y, range->data.sequence.items.start[1]), &rs->last,
                            err))
                return -1;
            if (rs->last <= rs->first)
                return lad_yaml_fail(err, y, range, "layer_range [%ld, %ld] is empty", rs->first,
                                     rs->last);
            if ((rs->params = lad_yaml_get(y, src, "parameters")) &&
                check_params(r, rs->params, true, err))
                return -1;
            rs->node = src;
            rs->range = range;
            if (source_model(r, src, ref, &rs->model, err))
                return -1;
        }
        if (sl->src[0].last - sl->src[0].first != sl->src[sl->nsrc - 1].last - sl->src[sl->nsrc - 1].first)
            return lad_yaml_fail(err, y, sources, "every source of a slice needs the same number "
                                                  "of layers");
    }
    return 0;
}

/* With slices, the base is one of each slice's sources, and comes first. */
static int slices_base(lad_recipe *r, yaml_node_t *base_node, lad_error *err)
{
    const method_spec *s = r->spec;
    size_t base = 0;
    if (base_node && source_model(r, base_node, base_node, &base, err))
        return -1;
    if (s->needs_base && !base_node)
        return lad_yaml_fail(err, &r->y, lad_yaml_root(&r->y), "%s needs a base_model", s->name);
    for (size_t k = 0; k < r->nslices; k++) {
        recipe_slice *sl = &r->slices[k];
        size_t o = 0;
        int at = -1;
        for (size_t i = 0; i < sl->nsrc; i++)
            if (base_node && sl->src[i].model == base && at < 0)
                at = (int)i;
        if (s->needs_base && at < 0)
            return lad_yaml_fail(err, &r->y, sl->node, "this slice has no source from the "
                                                       "base_model, which %s needs",
                                 s->name);
        if (s->needs_base)
            sl->order[o++] = (size_t)at;
        for (size_t i = 0; i < sl->nsrc; i++)
            if (!s->needs_base || (int)i != at)
                sl->order[o++] = i;
        size_t others = sl->nsrc - (s->needs_base ? 1 : 0);
        if ((s->kind == K_SLERP && (sl->nsrc != 2)) || (s->kind == K_STOCK && others < 2) ||
            (s->kind == K_GTA && others < 1) || (s->kind == K_PASSTHROUGH && sl->nsrc != 1))
            return lad_yaml_fail(err, &r->y, sl->node, "%s cannot merge this slice's %zu "
                                                       "source%s",
                                 s->name, sl->nsrc, sl->nsrc == 1 ? "" : "s");
    }
    r->base = base_node ? (int)base : -1;
    return 0;
}

/* A recipe model named by a reference in the recipe (a path, model:PATH). */
static int model_index(lad_recipe *r, yaml_node_t *n, const char *what, size_t *out,
                       lad_error *err)
{
    const char *ref;
    char *path;
    if (string_of(&r->y, n, what, &ref, err) ||
        resolve_path(&r->y, n, strncmp(ref, "model:", 6) ? ref : ref + 6, &path, err))
        return -1;
    for (size_t i = 0; i < r->nmodels; i++)
        if (same_model(r->models[i].ref, path)) {
            free(path);
            *out = i;
            return 0;
        }
    free(path);
    return lad_yaml_fail(err, &r->y, n, "%s '%s' is not one of the recipe's models", what, ref);
}

/* tokenizer: tokens: {TOKEN: {source: MODEL | {kind: zero} | {kind:
 * model_token, model: MODEL, token: T | token_id: N}, force: bool}} */
static int token_rules(lad_recipe *r, lad_error *err)
{
    lad_yaml *y = &r->y;
    yaml_node_t *map = r->tokens;
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    if (!(r->rules = calloc(n + 1, sizeof *r->rules)))
        return lad_fail(err, "out of memory");
    static const char *const KEYS[] = {"source", "force"};
    static const char *const SRC_KEYS[] = {"kind", "model", "token", "token_id"};
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = lad_yaml_node(y, p->key), *v = lad_yaml_node(y, p->value), *src, *f;
        lad_token_rule *tr = &r->rules[r->nrules];
        if (string_of(y, k, "a token of tokenizer: tokens", &tr->token, err) ||
            check_keys(y, v, KEYS, 2, "a token's settings", err))
            return -1;
        if ((f = lad_yaml_get(y, v, "force")) && lad_yaml_bool(y, f, "force", &tr->force, err))
            return -1;
        if (!(src = lad_yaml_get(y, v, "source")) || lad_yaml_is_null(src))
            return lad_yaml_fail(err, y, v, "token '%s' needs a source: a model, {kind: zero} "
                                            "or {kind: model_token, model: ..., token: ...}",
                                 tr->token);
        if (src->type == YAML_SCALAR_NODE) {
            tr->kind = LAD_TOKEN_MODEL;
            if (model_index(r, src, "a token's source", &tr->model, err))
                return -1;
        } else {
            const char *kind;
            yaml_node_t *kn = lad_yaml_get(y, src, "kind"), *m, *t, *id;
            if (check_keys(y, src, SRC_KEYS, 4, "a token's source", err))
                return -1;
            if (!kn || string_of(y, kn, "kind", &kind, err))
                return kn ? -1 : lad_yaml_fail(err, y, src, "a token's source needs a kind: "
                                                             "zero or model_token");
            if (!strcmp(kind, "zero")) {
                tr->kind = LAD_TOKEN_ZERO;
            } else if (!strcmp(kind, "model_token")) {
                tr->kind = LAD_TOKEN_MODEL_TOKEN;
                m = lad_yaml_get(y, src, "model");
                t = lad_yaml_get(y, src, "token");
                id = lad_yaml_get(y, src, "token_id");
                if (!m || model_index(r, m, "model_token's model", &tr->model, err))
                    return m ? -1 : lad_yaml_fail(err, y, src, "model_token needs a model");
                if (!t == !id)
                    return lad_yaml_fail(err, y, src, "model_token takes token or token_id, "
                                                      "one of them");
                double d;
                if (t && string_of(y, t, "token", &tr->src_token, err))
                    return -1;
                if (id && (lad_yaml_number(y, id, "token_id", &d, err) ||
                           !(d >= 0 && d < 1e15 && d == floor(d))))
                    return lad_yaml_fail(err, y, id, "token_id must be a whole number at "
                                                     "least 0");
                tr->src_id = id ? (int64_t)d : -1;
            } else {
                return lad_yaml_fail(err, y, kn, "kind '%s': zero or model_token", kind);
            }
        }
        r->nrules++;
    }
    return 0;
}

/* tokenizer_source naming a model (as a path, or model:PATH): the recipe
 * model it is, by that model's reference as resolved. */
static int tokenizer_model(lad_recipe *r, yaml_node_t *n, lad_error *err)
{
    const char *src = r->tokenizer_source;
    if (!strcmp(src, "base") || !strcmp(src, "union"))
        return 0;
    char *path;
    if (resolve_path(&r->y, n, strncmp(src, "model:", 6) ? src : src + 6, &path, err))
        return -1;
    for (size_t i = 0; i < r->nmodels; i++)
        if (same_model(r->models[i].ref, path)) {
            free(path);
            r->tokenizer_source = r->models[i].ref;
            return 0;
        }
    free(path);
    return lad_yaml_fail(err, &r->y, n, "tokenizer_source '%s' is not base, union or one of "
                                        "the recipe's models",
                         src);
}

static int load(lad_recipe *r, lad_error *err)
{
    lad_yaml *y = &r->y;
    yaml_node_t *root = lad_yaml_root(y);
    if (check_keys(y, root, TOP_KEYS, sizeof TOP_KEYS / sizeof *TOP_KEYS, "the recipe", err))
        return -1;
    const char *method;
    yaml_node_t *mn = lad_yaml_get(y, root, "merge_method");
    if (!mn)
        return lad_yaml_fail(err, y, root, "no merge_method");
    if (string_of(y, mn, "merge_method", &method, err))
        return -1;
    for (size_t i = 0; i < sizeof SPECS / sizeof *SPECS; i++)
        if (!strcmp(SPECS[i].name, method))
            r->spec = &SPECS[i];
    if (!r->spec) {
        char known[512] = "";
        for (size_t i = 0; i < sizeof SPECS / sizeof *SPECS; i++) {
            strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, SPECS[i].name, sizeof known - strlen(known) - 1);
        }
        return lad_yaml_fail(err, y, mn, "merge_method '%s' is not supported (ladle has: %s)",
                             method, known);
    }
    yaml_node_t *n;
    yaml_node_t *slices = lad_yaml_get(y, root, "slices");
    if (slices && lad_yaml_is_null(slices))
        slices = NULL;
    if ((n = lad_yaml_get(y, root, "chat_template")) &&
        string_of(y, n, "chat_template", &r->chat_template, err))
        return -1;
    /* tokenizer_source: X, or tokenizer: {source: X} (mergekit's newer form) */
    yaml_node_t *tsrc = lad_yaml_get(y, root, "tokenizer_source");
    if ((n = lad_yaml_get(y, root, "tokenizer"))) {
        static const char *const TOK_KEYS[] = {"source", "tokens", "pad_to_multiple_of"};
        if (tsrc)
            return lad_yaml_fail(err, y, n, "give tokenizer_source or tokenizer, not both");
        if (check_keys(y, n, TOK_KEYS, 3, "tokenizer", err))
            return -1;
        yaml_node_t *pad = lad_yaml_get(y, n, "pad_to_multiple_of");
        double v;
        if (pad && !lad_yaml_is_null(pad)) {
            if (lad_yaml_number(y, pad, "pad_to_multiple_of", &v, err))
                return -1;
            if (!(v >= 1 && v <= 1048576) || v != floor(v))
                return lad_yaml_fail(err, y, pad, "pad_to_multiple_of must be a whole number "
                                                  "from 1 to 1048576");
            r->pad_multiple = (uint64_t)v;
        }
        if ((r->tokens = lad_yaml_get(y, n, "tokens")) && lad_yaml_is_null(r->tokens))
            r->tokens = NULL;
        if (r->tokens && r->tokens->type != YAML_MAPPING_NODE)
            return lad_yaml_fail(err, y, r->tokens, "tokenizer: tokens must map each token to "
                                                    "{source: ..., force: ...}");
        tsrc = lad_yaml_get(y, n, "source");
        if (!tsrc) /* mergekit's TokenizerConfig: source defaults to union */
            r->tokenizer_source = "union";
    }
    if (tsrc && string_of(y, tsrc, "tokenizer_source", &r->tokenizer_source, err))
        return -1;
    const char *const dkeys[2] = {"dtype", "out_dtype"};
    for (int i = 0; i < 2; i++) {
        const char *name;
        lad_dtype t;
        if (!(n = lad_yaml_get(y, root, dkeys[i])))
            continue;
        if (string_of(y, n, dkeys[i], &name, err))
            return -1;
        if (lad_dtype_parse_user(name, &t))
            return lad_yaml_fail(err, y, n, "%s '%s': ladle writes float32, float16 or bfloat16",
                                 dkeys[i], name);
        if (i == 0)
            r->dtype_name = name;
        if (i == 1 || !r->has_out_dtype) { /* out_dtype wins; else dtype, as mergekit */
            r->out_dtype = t;
            r->has_out_dtype = true;
        }
    }
    if ((r->params = lad_yaml_get(y, root, "parameters")) && check_params(r, r->params, false, err))
        return -1;
    if ((n = lad_yaml_get(y, root, "layers")) && load_layers(r, n, err))
        return -1;

    yaml_node_t *models = lad_yaml_get(y, root, "models");
    if (slices) {
        if (models)
            return lad_yaml_fail(err, y, models, "give either models or slices, not both");
        if (load_slices(r, slices, err) ||
            slices_base(r, lad_yaml_get(y, root, "base_model"), err))
            return -1;
        return r->tokens ? token_rules(r, err) : 0;
    }
    if (!models)
        return lad_yaml_fail(err, y, root, "no models");
    if (models->type != YAML_SEQUENCE_NODE)
        return lad_yaml_fail(err, y, models, "models must be a list of - model: PATH");
    static const char *const MODEL_KEYS[] = {"model", "parameters"};
    for (yaml_node_item_t *it = models->data.sequence.items.start;
         it < models->data.sequence.items.top; it++) {
        yaml_node_t *e = lad_yaml_node(y, *it), *ref, *params;
        if (check_keys(y, e, MODEL_KEYS, 2, "a model entry", err))
            return -1;
        if (!(ref = lad_yaml_get(y, e, "model")))
            return lad_yaml_fail(err, y, e, "a model entry needs 'model: PATH'");
        if ((params = lad_yaml_get(y, e, "parameters")) && lad_yaml_is_null(params))
            params = NULL;
        if (params && check_params(r, params, true, err))
            return -1;
        if (add_model(r, e, ref, params, err))
            return -1;
    }
    /* The base: found among the models, else added (as mergekit does). */
    r->base = -1;
    if ((n = lad_yaml_get(y, root, "base_model"))) {
        char *base;
        if (resolve_ref(y, n, &base, err))
            return -1;
        for (size_t i = 0; i < r->nmodels && r->base < 0; i++)
            if (same_model(r->models[i].ref, base))
                r->base = (int)i;
        if (r->base < 0) {
            r->models[r->nmodels] = (recipe_model){.ref = base, .node = n};
            r->base = (int)r->nmodels++;
        } else {
            free(base);
        }
    }
    if (tsrc && tokenizer_model(r, tsrc, err))
        return -1;
    const method_spec *s = r->spec;
    if (s->needs_base && r->base < 0)
        return lad_yaml_fail(err, y, root, "%s needs a base_model", s->name);
    size_t others = r->nmodels - (r->base >= 0);
    if (s->kind == K_SLERP && (others != 1 || r->nmodels != 2))
        return lad_yaml_fail(err, y, models, "slerp merges exactly two models: base_model and "
                                             "one other");
    if (s->kind == K_STOCK && others < 2)
        return lad_yaml_fail(err, y, models, "model_stock needs at least two models besides "
                                             "the base");
    if (s->kind == K_PASSTHROUGH && r->nmodels != 1)
        return lad_yaml_fail(err, y, models, "passthrough takes one model (slices are not "
                                             "supported yet)");
    if (s->kind == K_GTA && others < 1)
        return lad_yaml_fail(err, y, models, "%s needs at least one model besides the base",
                             s->name);
    /* The op holds GTA_MAX_TV task vectors (found by fuzzing: 63 models
     * plus a separate base_model wrote past lad_op.param). */
    if (s->kind == K_GTA && others > GTA_MAX_TV)
        return lad_yaml_fail(err, y, models, "%s takes at most %d models besides the base",
                             s->name, GTA_MAX_TV);
    if (s->kind == K_STOCK && others > STOCK_MAX)
        return lad_yaml_fail(err, y, models, "model_stock takes at most %d models", STOCK_MAX);
    if ((s->kind == K_SCE || s->kind == K_RAM || s->kind == K_ISO ||
         s->kind == K_CONSENSUS) &&
        (others < 1 || others > 64))
        return lad_yaml_fail(err, y, models, "%s merges 1 to 64 models besides the base",
                             s->name);
    if ((s->kind == K_NEARSWAP || s->kind == K_FUSION) && others != 1)
        return lad_yaml_fail(err, y, models, "%s merges exactly two models: base_model and one "
                                             "other",
                             s->name);
    if ((s->kind == K_NEARSWAP && others != 1) || (s->kind == K_NUSLERP && others != 2))
        return lad_yaml_fail(err, y, models, "%s merges exactly two models%s", s->name,
                             s->kind == K_NEARSWAP ? ": base_model and one other"
                                                   : " (and an optional base_model)");
    if (s->kind == K_MULTISLERP && (others < 1 || others > MSLERP_MAX))
        return lad_yaml_fail(err, y, models, "multislerp merges 1 to %d models (and an optional "
                                             "base_model)",
                             MSLERP_MAX);
    if (s->kind == K_KARCHER && r->nmodels > KARCHER_MAX)
        return lad_yaml_fail(err, y, models, "karcher merges at most %d models", KARCHER_MAX);
    /* nuslerp's and multislerp's base comes last (nuslerp.c, multislerp.c) */
    if ((s->kind == K_NUSLERP || s->kind == K_MULTISLERP) && r->base >= 0 && (size_t)r->base != r->nmodels - 1) {
        recipe_model b = r->models[r->base];
        memmove(&r->models[r->base], &r->models[r->base + 1],
                (r->nmodels - 1 - (size_t)r->base) * sizeof b);
        r->models[r->nmodels - 1] = b;
        r->base = (int)r->nmodels - 1;
    }
    /* Methods with a base take it first, then the others in order. */
    if (s->needs_base && r->base > 0) {
        recipe_model b = r->models[r->base];
        memmove(&r->models[1], &r->models[0], (size_t)r->base * sizeof b);
        r->models[0] = b;
        r->base = 0;
    }
    /* (the models in their final order: the rules name them by index) */
    return r->tokens ? token_rules(r, err) : 0;
}

int lad_recipe_load(const char *path, lad_recipe *r, lad_error *err)
{
    return lad_recipe_load_text(path, NULL, 0, r, err);
}

int lad_recipe_load_text(const char *path, const char *text, size_t len, lad_recipe *r,
                         lad_error *err)
{
    memset(r, 0, sizeof *r);
    r->base = -1;
    if (lad_yaml_load(&r->y, path, text, len, err) || load(r, err)) {
        lad_recipe_free(r);
        return -1;
    }
    return 0;
}

void lad_recipe_free(lad_recipe *r)
{
    free(r->rules);
    for (size_t i = 0; i < r->nmodels; i++)
        free(r->models[i].ref);
    free(r->slices);
    lad_yaml_free(&r->y);
    memset(r, 0, sizeof *r);
}

const char *lad_recipe_method(const lad_recipe *r) { return r->spec->name; }

/* ------------------------------------------------------------ resolving */

int lad_recipe_resolve(const char *tensor, const lad_place *pl, const void *spec_ctx, lad_op *op,
                       const void *ctx, lad_error *err)
{
    const lad_recipe *r = ctx;
    const method_spec *s = r->spec;
    inputs in = inputs_of(r, spec_ctx);
    double v;
    switch (s->kind) {
    case K_LINEAR: {
        double w[RECIPE_MAX_MODELS + 1], sum = 0, normalize;
        for (size_t i = 0; i < in.n; i++) {
            if (in_param(&in, i, "weight", tensor, pl, &w[i], err))
                return -1;
            sum += w[i];
        }
        if (glob_param(&in, "normalize", tensor, pl, &normalize, err))
            return -1;
        if (normalize != 0 && sum == 0)
            return lad_fail(err, "the weights sum to 0");
        op->method = &lad_method_linear;
        for (size_t i = 0; i < in.n; i++)
            op->param[i] = normalize != 0 ? w[i] / sum : w[i];
        op->nparam = in.n;
        return 0;
    }
    case K_SLERP:
        if (glob_param(&in, "t", tensor, pl, &v, err))
            return -1;
        op->method = &lad_method_slerp;
        op->param[0] = v;
        op->nparam = 1;
        return 0;
    case K_PASSTHROUGH:
        if (in_param(&in, 0, "scale", tensor, pl, &v, err))
            return -1;
        op->method = &lad_method_linear;
        op->param[0] = v;
        op->nparam = 1;
        return 0;
    case K_STOCK:
        if (glob_param(&in, "filter_wise", tensor, pl, &v, err))
            return -1;
        op->method = v != 0 ? &lad_method_model_stock_rows : &lad_method_model_stock;
        return 0;
    case K_FUSION:
        op->method = &lad_method_arcee_fusion;
        return 0;
    case K_CONSENSUS: {
        double lambda, tall, k;
        if (glob_param(&in, "lambda", tensor, pl, &lambda, err) ||
            tall_params(&in, s->name, tensor, pl, &k, &tall, err))
            return -1;
        op->method = &lad_method_consensus_ta;
        op->param[CONS_LAMBDA] = lambda;
        op->param[CONS_TALL] = tall;
        op->param[CONS_K] = k;
        for (size_t i = 1; i < in.n; i++)
            if (in_param(&in, i, "weight", tensor, pl, &op->param[CONS_W0 + i - 1], err))
                return -1;
        op->nparam = CONS_W0 + in.n - 1;
        return 0;
    }
    case K_ISO: {
        double lambda, subspace;
        if (glob_param(&in, "lambda", tensor, pl, &lambda, err) ||
            glob_param(&in, "subspace", tensor, pl, &subspace, err))
            return -1;
        op->method = s->sparsify == 1   ? &lad_method_tsv
                     : s->sparsify == 2 ? &lad_method_iso_cts
                     : s->sparsify == 3 ? &lad_method_wudi
                                        : &lad_method_iso_c;
        op->param[ISO_LAMBDA] = lambda;
        if (s->sparsify == 2) {
            double f;
            if (glob_param(&in, "common_space_fraction", tensor, pl, &f, err))
                return -1;
            if (!(f >= 0 && f <= 1))
                return lad_fail(err, "common_space_fraction %g is outside [0, 1]", f);
            op->param[ISO_FRACTION] = f;
        }
        if (s->sparsify == 3) {
            double iters, lr;
            if (whole_param(&in, s->name, "iter_num", tensor, pl, 1e6, false, &iters, err) ||
                glob_param(&in, "lr", tensor, pl, &lr, err))
                return -1;
            if (!(lr > 0) || !isfinite(lr))
                return lad_fail(err, "wudi's lr %g must be above 0", lr);
            op->param[ISO_ITERS] = iters;
            op->param[ISO_LR] = lr;
        }
        op->param[ISO_MEAN_ONLY] = subspace == 0 || lad_name_is_vocab(tensor);
        for (size_t i = 1; i < in.n; i++) /* input 0 is the base */
            if (in_param(&in, i, "weight", tensor, pl, &op->param[ISO_W0 + i - 1], err))
                return -1;
        op->nparam = ISO_W0 + in.n - 1;
        return 0;
    }
    case K_SCE:
        if (glob_param(&in, "select_topk", tensor, pl, &v, err))
            return -1;
        op->method = &lad_method_sce;
        op->param[SCE_TOPK] = v;
        op->nparam = 1;
        return 0;
    case K_RAM:
        op->method = &lad_method_ram;
        op->param[RAM_PLUS] = s->sparsify; /* ramplus_tl */
        op->param[RAM_R] = 0.1;
        op->param[RAM_ALPHA] = 0.2;
        if (glob_param(&in, "epsilon", tensor, pl, &op->param[RAM_EPS], err) ||
            (s->sparsify && (glob_param(&in, "r", tensor, pl, &op->param[RAM_R], err) ||
                             glob_param(&in, "alpha", tensor, pl, &op->param[RAM_ALPHA], err))))
            return -1;
        op->nparam = 4;
        return 0;
    case K_NEARSWAP:
        if (glob_param(&in, "t", tensor, pl, &v, err))
            return -1;
        if (!(v > 0))
            return lad_fail(err, "nearswap's t is %g; it must be above 0", v);
        op->method = &lad_method_nearswap;
        op->param[0] = v;
        op->nparam = 1;
        return 0;
    case K_NUSLERP: {
        double w0, w1, flatten, row_wise;
        if (in_param(&in, 0, "weight", tensor, pl, &w0, err) ||
            in_param(&in, 1, "weight", tensor, pl, &w1, err) ||
            glob_param(&in, "nuslerp_flatten", tensor, pl, &flatten, err) ||
            glob_param(&in, "nuslerp_row_wise", tensor, pl, &row_wise, err))
            return -1;
        /* mergekit: flatten wins; else row_wise takes vectors along the first
         * dimension (columns), else along the last (rows) */
        int form = flatten != 0 ? NUSLERP_FLAT : row_wise != 0 ? NUSLERP_COLS : NUSLERP_ROWS;
        op->method = form == NUSLERP_FLAT   ? &lad_method_nuslerp
                     : form == NUSLERP_COLS ? &lad_method_nuslerp_cols
                                            : &lad_method_nuslerp_rows;
        op->param[0] = fabs(w0 + w1) < 1e-6 ? 0.5 : w1 / (w0 + w1); /* as mergekit */
        op->param[1] = form;
        op->param[2] = in.base >= 0;
        op->nparam = 3;
        return 0;
    }
    case K_MULTISLERP: {
        size_t m = in.n - (in.base >= 0);
        double w[MSLERP_MAX], sum = 0, normalize, eps;
        for (size_t i = 0; i < m; i++) {
            if (in_param(&in, i, "weight", tensor, pl, &w[i], err))
                return -1;
            sum += w[i];
        }
        if (glob_param(&in, "normalize_weights", tensor, pl, &normalize, err) ||
            glob_param(&in, "eps", tensor, pl, &eps, err))
            return -1;
        if (normalize != 0 && sum == 0)
            return lad_fail(err, "the weights sum to 0");
        if (!(eps >= 0))
            return lad_fail(err, "multislerp's eps is %g; it must be at least 0", eps);
        op->method = &lad_method_multislerp;
        op->param[MSLERP_BASE] = in.base >= 0;
        op->param[MSLERP_EPS] = eps;
        for (size_t i = 0; i < m; i++)
            op->param[MSLERP_W0 + i] = normalize != 0 ? w[i] / sum : w[i];
        op->nparam = MSLERP_W0 + m;
        return 0;
    }
    case K_KARCHER: {
        double iters, tol;
        if (whole_param(&in, s->name, "max_iter", tensor, pl, 1e6, false, &iters, err) ||
            glob_param(&in, "tol", tensor, pl, &tol, err))
            return -1;
        if (!(tol >= 0))
            return lad_fail(err, "karcher's tol is %g; it must be at least 0", tol);
        op->method = &lad_method_karcher;
        op->param[KARCHER_MAX_ITER] = iters;
        op->param[KARCHER_TOL] = tol;
        op->nparam = 2;
        return 0;
    }
    case K_GTA:
        break;
    }
    double lambda, normalize, rescale;
    if (glob_param(&in, "lambda", tensor, pl, &lambda, err) ||
        glob_param(&in, "normalize", tensor, pl, &normalize, err) ||
        glob_param(&in, "rescale", tensor, pl, &rescale, err))
        return -1;
    /* rescale: true is L1 where a method has no keep probability; "l1" always */
    bool random = s->sparsify == GTA_RANDOM || s->sparsify == GTA_DELLA;
    rescale = rescale == 2 || (rescale != 0 && !random) ? GTA_RESCALE_L1
              : rescale != 0                            ? GTA_RESCALE_P
                                                        : GTA_RESCALE_NONE;
    op->method = s->sparsify == GTA_DELLA ? &lad_method_della : &lad_method_gta;
    op->param[GTA_LAMBDA] = lambda;
    op->param[GTA_SPARSIFY] = s->sparsify;
    op->param[GTA_CONSENSUS] = s->consensus;
    op->param[GTA_NORMALIZE] = normalize;
    op->param[GTA_RESCALE] = rescale;
    op->param[GTA_TALL_K] = 0;
    if (find_param(s, "k")) {
        double k, tall;
        if (tall_params(&in, s->name, tensor, pl, &k, &tall, err))
            return -1;
        op->param[GTA_TALL_K] = k;
        op->param[GTA_TALL_LAMBDA] = tall;
    }
    for (size_t i = 1; i < in.n; i++) { /* input 0 is the base */
        size_t tv = i - 1;
        op->param[GTA_TV(tv, GTA_DENSITY)] = 1;
        if (in_param(&in, i, "weight", tensor, pl, &op->param[GTA_TV(tv, GTA_WEIGHT)], err) ||
            (find_param(s, "density") &&
             in_param(&in, i, "density", tensor, pl, &op->param[GTA_TV(tv, GTA_DENSITY)], err)) ||
            (find_param(s, "gamma") &&
             in_param(&in, i, "gamma", tensor, pl, &op->param[GTA_TV(tv, GTA_GAMMA)], err)) ||
            (find_param(s, "epsilon") &&
             in_param(&in, i, "epsilon", tensor, pl, &op->param[GTA_TV(tv, GTA_EPSILON)], err)))
            return -1;
        double d = op->param[GTA_TV(tv, GTA_DENSITY)], e = op->param[GTA_TV(tv, GTA_EPSILON)];
        if (d < 0 || d > 1)
            return lad_fail(err, "density %g is outside [0, 1]", d);
        if (s->sparsify == GTA_DELLA && d > 0 && d < 1 && (d - e <= 0 || d + e >= 1))
            return lad_fail(err, "density %g +/- epsilon %g must stay inside (0, 1)", d, e);
    }
    op->nparam = (size_t)GTA_TV(in.n - 1, 0);
    return 0;
}

int lad_recipe_describe(const lad_recipe *r, const char *tensor, const lad_place *pl,
                        const void *spec_ctx,
                        char *buf, size_t len, lad_error *err)
{
    const method_spec *s = r->spec;
    inputs in = inputs_of(r, spec_ctx);
    size_t o = 0;
    buf[0] = 0;
    for (size_t p = 0; p < sizeof s->params / sizeof *s->params && s->params[p].name; p++) {
        const param_def *d = &s->params[p];
        if (d->flags & IGNORED)
            continue;
        bool per = d->flags & PER_MODEL;
        for (size_t i = 0; i < (per ? in.n : 1); i++) {
            if (per && (int)i == in.base && s->kind != K_LINEAR)
                continue;
            double v;
            if (per ? in_param(&in, i, d->name, tensor, pl, &v, err)
                    : glob_param(&in, d->name, tensor, pl, &v, err))
                return -1;
            if (o < len)
                o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? " " : "", d->name);
            if (per && o < len)
                o += (size_t)snprintf(buf + o, len - o, "[%zu]", i);
            if (o < len)
                o += (size_t)snprintf(buf + o, len - o, "=%g", v);
        }
    }
    return 0;
}
/* ------------------------------------------------------------ slices */

/* Appends the output tensor `name` of one slice: input k is the slice's
 * input k's tensor at layer first_k + offset (or the same name, for the
 * embeddings and head), renamed by its model's stack. */
static int add_spec(lad_tensor_spec **specs, size_t *n, size_t *cap, char *name,
                    const recipe_slice *sl, const char *src_name, long offset, lad_place place,
                    lad_structure *const *st, lad_error *err)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        lad_tensor_spec *g = realloc(*specs, nc * sizeof *g);
        if (!g) {
            free(name);
            return lad_fail(err, "out of memory");
        }
        *specs = g;
        *cap = nc;
    }
    lad_tensor_spec *s = &(*specs)[(*n)++];
    *s = (lad_tensor_spec){.name = name, .nin = sl->nsrc, .place = place, .ctx = sl};
    if (!name)
        return lad_fail(err, "out of memory");
    for (size_t k = 0; k < sl->nsrc; k++) {
        const recipe_source *src = &sl->src[sl->order[k]];
        s->model[k] = src->model;
        s->in_name[k] = offset < 0 ? lad_strdup(src_name)
                                   : lad_structure_rename(st[src->model], src_name,
                                                          (uint32_t)(src->first + offset));
        if (!s->in_name[k])
            return lad_fail(err, "out of memory");
    }
    return 0;
}

/* The stack of every model the slices read: exactly one, numbered in a
 * way a layer can be renumbered. */
static int slice_structures(const lad_recipe *r, lad_model *const *models, lad_structure **st,
                            lad_error *err)
{
    for (size_t j = 0; j < r->nmodels; j++) {
        if (lad_structure_build(models[j], r->layers, r->nlayers, &st[j], err) != 0)
            return -1;
        size_t n = lad_structure_nstacks(st[j]);
        if (n != 1)
            return lad_fail(err, "%s: slices take layers from one stack of blocks, and ladle "
                                 "finds %zu in it%s",
                            models[j]->ref, n,
                            n ? " (give the one to slice with layers: REGEX)"
                              : " (name it with layers: REGEX)");
        for (size_t i = 0; i < models[j]->ntensors; i++) {
            char *probe = lad_structure_rename(st[j], models[j]->tensors[i].name, 0);
            if (!probe)
                return lad_fail(err, "%s: its stack '%s' is a sequence of differently named "
                                     "blocks; slices cannot renumber it",
                                models[j]->ref, lad_structure_stack(st[j], 0)->name);
            free(probe);
        }
    }
    return 0;
}

void lad_recipe_free_specs(lad_tensor_spec *specs, size_t n)
{
    for (size_t i = 0; specs && i < n; i++) {
        free(specs[i].name);
        for (size_t j = 0; j < specs[i].nin; j++)
            free(specs[i].in_name[j]);
    }
    free(specs);
}

/* Slices: the embeddings of the first slice's sources, every slice's
 * layers renumbered from 0 in order (t runs over each slice's layers, as
 * mergekit computes it), then the final norm, head and the rest of the last
 * slice's sources. Names come from each slice's first input (the base). */
int lad_recipe_specs(const lad_recipe *r, lad_model *const *models, lad_tensor_spec **out,
                     size_t *nout, uint64_t *num_layers, lad_error *err)
{
    lad_tensor_spec *specs = NULL;
    size_t n = 0, cap = 0, first_layer_spec = 0;
    long layer = 0;
    lad_structure *st[RECIPE_MAX_MODELS + 1] = {0};
    int rc = slice_structures(r, models, st, err);
    const recipe_slice *s0 = &r->slices[0], *sl = &r->slices[r->nslices - 1];
    size_t m0 = s0->src[s0->order[0]].model, m1 = sl->src[sl->order[0]].model;
    const lad_place before = {.stack = -1, .before = true, .t = 0},
                    after = {.stack = -1, .t = 1};
    for (size_t i = 0; rc == 0 && i < models[m0]->ntensors; i++) {
        const char *name = models[m0]->tensors[i].name;
        lad_place p = lad_structure_place(st[m0], name);
        if (p.stack < 0 && p.before)
            rc = add_spec(&specs, &n, &cap, lad_strdup(name), s0, name, -1, before, st, err);
    }
    first_layer_spec = n;
    for (size_t k = 0; rc == 0 && k < r->nslices; k++) {
        const recipe_slice *slice = &r->slices[k];
        for (size_t q = 0; q < slice->nsrc && rc == 0; q++) {
            const recipe_source *src = &slice->src[q];
            uint32_t have = lad_structure_stack(st[src->model], 0)->len;
            if (src->last > (long)have)
                rc = lad_yaml_fail(err, &r->y, src->range, "layer_range [%ld, %ld] but %s has "
                                                           "%u layers",
                                   src->first, src->last, models[src->model]->ref, have);
        }
        const recipe_source *lead = &slice->src[slice->order[0]];
        const lad_model *m = models[lead->model];
        long span = lead->last - lead->first;
        for (long off = 0; rc == 0 && off < span; off++, layer++) {
            lad_place p = {.stack = 0, .pos = (uint32_t)layer,
                           .t = span > 1 ? (double)off / (double)(span - 1) : 1.0};
            for (size_t i = 0; rc == 0 && i < m->ntensors; i++) {
                const char *name = m->tensors[i].name;
                lad_place q = lad_structure_place(st[lead->model], name);
                if (q.stack == 0 && q.pos == (uint32_t)(lead->first + off))
                    rc = add_spec(&specs, &n, &cap,
                                  lad_structure_rename(st[lead->model], name, (uint32_t)layer),
                                  slice, name, off, p, st, err);
            }
        }
    }
    for (size_t i = first_layer_spec; rc == 0 && i < n; i++)
        specs[i].place.len = (uint32_t)layer; /* the output's stack */
    for (size_t i = 0; rc == 0 && i < models[m1]->ntensors; i++) {
        const char *name = models[m1]->tensors[i].name;
        lad_place p = lad_structure_place(st[m1], name);
        if (p.stack < 0 && !p.before)
            rc = add_spec(&specs, &n, &cap, lad_strdup(name), sl, name, -1, after, st, err);
    }
    for (size_t j = 0; j < r->nmodels; j++)
        lad_structure_free(st[j]);
    if (rc) {
        lad_recipe_free_specs(specs, n);
        return -1;
    }
    *out = specs;
    *nout = n;
    *num_layers = (uint64_t)layer;
    return 0;
}
