/*
 * Fuzz target: the mergekit YAML recipe reader (libyaml document, schema,
 * parameters, gradients and filters, slices). The recipe lives in a folder
 * where models/base and models/ft1..ft3 exist, so recipes that name them
 * get past model resolution into the method and parameter checks.
 */
#include "ladle.h"
#include "recipe.h"
#include "scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static const char *dir;
static char recipe_path[160];

static void setup(void)
{
    char path[128];
    dir = scratch_dir("recipe");
    snprintf(path, sizeof path, "%s/models", dir);
    mkdir(path, 0700);
    const char *names[] = {"base", "ft1", "ft2", "ft3"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/models/%s", dir, names[i]);
        mkdir(path, 0700);
    }
    snprintf(recipe_path, sizeof recipe_path, "%s/recipe.yml", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir)
        setup();
    if (write_input(recipe_path, data, size))
        return 0;
    lad_recipe r;
    lad_error err;
    if (lad_recipe_load(recipe_path, &r, &err) == 0) {
        /* Resolve a few tensor names at several depths: parameters,
         * gradients and filters are evaluated lazily. */
        const char *names[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                               "model.layers.3.mlp.up_proj.weight", "lm_head.weight"};
        const lad_place place[] = {{.stack = -1, .before = true, .t = 0},
                                   {.stack = 0, .pos = 0, .len = 4, .t = 0},
                                   {.stack = 0, .pos = 3, .len = 4, .t = 1},
                                   {.stack = -1, .t = 1}};
        for (size_t sl = 0; sl < (r.nslices ? r.nslices : 1); sl++)
            for (size_t i = 0; i < 4; i++) {
                lad_op op;
                lad_recipe_resolve(names[i], &place[i], r.nslices ? &r.slices[sl] : NULL, &op,
                                   &r, &err);
            }
        lad_recipe_free(&r);
    }
    return 0;
}
