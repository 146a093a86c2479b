/*
 * The non-weight files of a Hugging Face folder output:
 *   config.json                  the template's, torch_dtype set to the output
 *   tokenizer files etc.         small files copied from the template folder
 *   model.safetensors.index.json when sharded: metadata.total_size, weight_map
 *   README.md                    a model card saying how the model was made
 */
#include "../engine/plan.h"
#include "util.h"
#include "writer.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_COPY_BYTES (512ull << 20) /* tokenizer.json can be tens of MB */

/* Weights and files we write ourselves are never copied. */
static bool skip_file(const char *name)
{
    static const char *const exact[] = {"config.json", "README.md",
                                        "model.safetensors.index.json",
                                        "pytorch_model.bin.index.json"};
    static const char *const suffix[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt",
                                         ".gguf", ".h5", ".msgpack", ".onnx", ".npz",
                                         ".pkl", ".index.json"};
    if (name[0] == '.')
        return true;
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (!strcmp(name, exact[i]))
            return true;
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++)
        if (lad_ends_with(name, suffix[i]))
            return true;
    return false;
}

static int copy_small_files(lad_writer *w, const char *dir, lad_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (skip_file(e->d_name))
            continue;
        char *src = lad_path_join(dir, e->d_name);
        struct stat st;
        if (src && stat(src, &st) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t)st.st_size <= MAX_COPY_BYTES)
            rc = lad_writer_copy_in(w, e->d_name, src, err);
        free(src);
    }
    closedir(d);
    return rc;
}

static lad_dtype main_dtype(const lad_plan *p)
{
    uint64_t bytes[LAD_DTYPE_COUNT] = {0};
    lad_dtype best = LAD_F32;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].kind == LAD_MERGE)
            bytes[p->t[i].out_dtype] += p->t[i].nbytes;
    for (int t = 0; t < LAD_DTYPE_COUNT; t++)
        if (bytes[t] > bytes[best])
            best = (lad_dtype)t;
    return best;
}

static int write_config(lad_writer *w, const lad_plan *p, lad_error *err)
{
    const lad_model *tmpl = p->req.models[p->req.template_model];
    if (!tmpl->config)
        return 0;
    json_t *cfg = json_deep_copy(tmpl->config);
    if (!cfg)
        return lad_fail(err, "out of memory");
    const char *torch = lad_dtype_torch_name(main_dtype(p));
    if (p->req.has_out_dtype || !json_object_get(cfg, "torch_dtype"))
        json_object_set_new(cfg, "torch_dtype", json_string(torch));
    if (p->untie_head)
        json_object_set_new(cfg, "tie_word_embeddings", json_false());
    bool quantised = false;
    for (size_t i = 0; i < p->n; i++)
        quantised |= p->t[i].oq != NULL;
    if (!quantised) { /* written dequantised: the config must not say otherwise */
        json_object_del(cfg, "quantization_config");
        json_object_del(cfg, "compression_config");
    }
    if (p->req.num_layers)
        json_object_set_new(cfg, "num_hidden_layers", json_integer((json_int_t)p->req.num_layers));
    char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    if (!text)
        return lad_fail(err, "out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room for the NUL we replace */
    int rc = lad_writer_add_bytes(w, "config.json", text, n + 1, err);
    free(text);
    return rc;
}

static int write_index(lad_writer *w, const lad_plan *p, lad_error *err)
{
    json_t *map = json_object();
    for (size_t i = 0; i < p->n; i++) {
        const lad_plan_tensor *pt = &p->t[i];
        const char *shard = p->shards[pt->shard].fname;
        json_object_set_new(map, pt->oq && pt->oq->phys_name ? pt->oq->phys_name : pt->name,
                            json_string(shard));
        if (pt->oq)
            json_object_set_new(map, pt->oq->scales->name, json_string(shard));
    }
    json_t *root = json_pack("{s:{s:I}, s:o}", "metadata", "total_size",
                             (json_int_t)p->bytes_out, "weight_map", map);
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!text)
        return lad_fail(err, "out of memory");
    int rc = lad_writer_add_bytes(w, "model.safetensors.index.json", text, strlen(text), err);
    free(text);
    return rc;
}

static int write_card(lad_writer *w, const lad_plan *p, lad_error *err)
{
    char *params = json_dumps(p->req.params_json ? p->req.params_json : json_object(),
                              JSON_COMPACT);
    size_t cap = 4096 + strlen(params ? params : "") + strlen(p->req.command ? p->req.command : "");
    for (size_t j = 0; j < p->req.nmodels; j++)
        cap += strlen(p->req.models[j]->ref) + 64;
    char *card = malloc(cap);
    if (!card || !params) {
        free(card);
        free(params);
        return lad_fail(err, "out of memory");
    }
    size_t o = (size_t)snprintf(card, cap,
                                "---\ntags:\n- merge\n- ladle\n---\n# Merged model\n\n"
                                "Made with ladle %s by weight-space merging.\n\n"
                                "- **Method:** %s\n- **Parameters:** `%s`\n"
                                "- **Output dtype:** %s\n\n## Input models\n\n"
                                "| role | model | bytes |\n|---|---|---|\n",
                                LADLE_VERSION, p->req.method_label, params,
                                p->req.has_out_dtype ? lad_dtype_name(p->req.out_dtype)
                                                     : "as each input tensor");
    for (size_t j = 0; j < p->req.nmodels && o < cap; j++)
        o += (size_t)snprintf(card + o, cap - o, "| %s | `%s` | %llu |\n", p->req.roles[j],
                              p->req.models[j]->ref,
                              (unsigned long long)p->req.models[j]->total_bytes);
    if (o < cap)
        o += (size_t)snprintf(card + o, cap - o,
                              "\n## Reproduce\n\n```sh\n%s\n```\n\nThe same recipe is stored "
                              "as JSON in every safetensors file's `__metadata__` "
                              "(`ladle_recipe`).\n",
                              p->req.command ? p->req.command : "");
    int rc = lad_writer_add_bytes(w, "README.md", card, o < cap ? o : cap - 1, err);
    free(card);
    free(params);
    return rc;
}

int lad_hf_write_extras(lad_writer *w, const lad_plan *p, lad_error *err)
{
    const lad_model *tmpl = p->req.models[p->req.template_model];
    if (tmpl->dir && copy_small_files(w, tmpl->dir, err))
        return -1;
    if (write_config(w, p, err))
        return -1;
    if (p->nshards > 1 && write_index(w, p, err))
        return -1;
    return p->req.copy_all ? 0 : write_card(w, p, err); /* a save is not a merge */
}
