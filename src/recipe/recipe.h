/*
 * mergekit YAML recipes: read, validated against the schema (every error
 * names the file, line and column), and resolved per tensor into ladle ops
 * with mergekit's parameter rules.
 */
#ifndef LADLE_RECIPE_H
#define LADLE_RECIPE_H

#include "ladle.h"
#include "yaml_doc.h"

#define RECIPE_MAX_MODELS 63

typedef struct recipe_model {
    char *ref;              /* as written, resolved to an existing path */
    yaml_node_t *node;      /* for errors */
    yaml_node_t *params;    /* its `parameters:` mapping, or NULL */
} recipe_model;

struct method_spec;

/* slices: one input layer range per source. */
typedef struct recipe_source {
    size_t model;           /* index into models */
    long first, last;       /* layer_range [first, last) */
    yaml_node_t *node, *range, *params;
} recipe_source;

typedef struct recipe_slice {
    recipe_source src[LAD_SPEC_MAX_IN];
    size_t nsrc;
    size_t order[LAD_SPEC_MAX_IN]; /* input k is src[order[k]]: the base first */
    yaml_node_t *node, *params;
} recipe_slice;

typedef struct lad_recipe {
    lad_yaml y;
    const struct method_spec *spec;
    recipe_model models[RECIPE_MAX_MODELS + 1]; /* inputs in the method's order */
    size_t nmodels;
    int base;               /* index of the base model in models, or -1 */
    yaml_node_t *params;    /* top-level `parameters:`, or NULL */
    bool has_out_dtype;
    lad_dtype out_dtype;    /* out_dtype, else dtype */
    const char *dtype_name; /* dtype as written (ladle computes in fp32) */
    recipe_slice *slices;   /* slices:, or NULL for models: */
    size_t nslices;
    bool needs_layers;      /* a gradient across the layers, or a layer group filter */
    const char *layers[8];  /* `layers:` regexes naming the stacks (--layers) */
    const char *tokenizer_source; /* base, union, a model's ref as resolved, or NULL */
    const char *chat_template; /* chat_template:, or NULL */
    uint64_t pad_multiple;  /* tokenizer: pad_to_multiple_of, or 0 */
    yaml_node_t *tokens;    /* tokenizer: tokens:, or NULL */
    lad_token_rule *rules;  /* the tokens' rules, models as indexes into models */
    size_t nrules;
    size_t nlayers;
} lad_recipe;

int lad_recipe_load(const char *path, lad_recipe *r, lad_error *err);
/* The same from the recipe's text (after --var substitution); relative
 * model paths are still resolved against path's folder. */
int lad_recipe_load_text(const char *path, const char *text, size_t len, lad_recipe *r,
                         lad_error *err);
void lad_recipe_free(lad_recipe *r);
const char *lad_recipe_method(const lad_recipe *r);

/* The op of one tensor (a lad_schedule resolve callback; ctx = recipe). */
int lad_recipe_resolve(const char *tensor, const lad_place *place, const void *spec_ctx,
                       lad_op *op, const void *ctx, lad_error *err);

/* With slices: the output tensors (layers renumbered) from the opened
 * models (in the recipe's model order); *num_layers for config.json. */
int lad_recipe_specs(const lad_recipe *r, lad_model *const *models, lad_tensor_spec **specs,
                     size_t *nspecs, uint64_t *num_layers, lad_error *err);
void lad_recipe_free_specs(lad_tensor_spec *specs, size_t n);

/* The resolved parameters of one tensor as "name=value, ..." (dry runs). */
int lad_recipe_describe(const lad_recipe *r, const char *tensor, const lad_place *place,
                        const void *spec_ctx, char *buf, size_t len, lad_error *err);

#endif
