/*
 * What a Hugging Face folder output says besides its weights, made from the
 * plan (formats/hf_output.c writes the files):
 *
 *   config.json  the template's, describing the output: its dtype in the
 *                field the template uses (transformers v5's "dtype", v4's
 *                "torch_dtype", both when it has both), tie_word_embeddings
 *                false when a head was added, num_hidden_layers of a
 *                frankenmerge, no quantization_config when the output is
 *                dequantised, vocab_size of another model's vocabulary or
 *                a union (tokenizer_source)
 *   index        the weight map of a sharded output
 *   tokenizer_config.json  with the chat template asked for (chat_template:
 *                a name, auto: the inputs' most common one, a file, a template)
 *   README.md    a model card: front matter the Hub reads (base_model with
 *                the inputs' Hub ids, base_model_relation: merge,
 *                library_name, tags), then how the model was made
 */
#include "plan.h"
#include "util.h"
#include "../formats/writer.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

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

static char *dump(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    return text;
}

static char *config_text(const lad_plan *p)
{
    const lad_model *tmpl = p->req.models[p->req.template_model];
    if (!tmpl->config)
        return NULL;
    json_t *cfg = json_deep_copy(tmpl->config);
    if (!cfg)
        return NULL;
    const char *torch = lad_dtype_torch_name(main_dtype(p));
    bool v5 = json_object_get(cfg, "dtype") != NULL, v4 = json_object_get(cfg, "torch_dtype");
    if (p->req.has_out_dtype || (!v5 && !v4)) {
        if (v5)
            json_object_set_new(cfg, "dtype", json_string(torch));
        if (v4 || !v5)
            json_object_set_new(cfg, "torch_dtype", json_string(torch));
    }
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
    if ((p->req.tokenizer_source != LAD_TOKENIZER_BASE || p->req.pad_multiple) &&
        p->vocab_rows) {
        /* another model's vocabulary, the union, or padded */
        json_t *at = json_object_get(cfg, "vocab_size") ? cfg
                                                        : json_object_get(cfg, "text_config");
        if (json_is_integer(json_object_get(at, "vocab_size")))
            json_object_set_new(at, "vocab_size", json_integer((json_int_t)p->vocab_rows));
    }
    return dump(cfg);
}

static char *index_text(const lad_plan *p)
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
    return dump(json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)p->bytes_out,
                          "weight_map", map));
}

/* ------------------------------------------------------------ the card */

/* "org/name": one slash between two names of [A-Za-z0-9._-]. */
static bool hub_id(const char *s)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/') || *s == '.')
        return false;
    for (const char *c = s; *c; c++)
        if (c != slash && !isalnum((unsigned char)*c) && !strchr("._-", *c))
            return false;
    return true;
}

/* The Hub id of an input: its config's _name_or_path, else the path it was
 * given by when that reads like one; or NULL. */
const char *lad_model_hub_id(const lad_model *m)
{
    const char *named = m->config
                            ? json_string_value(json_object_get(m->config, "_name_or_path"))
                            : NULL;
    if (hub_id(named))
        return named;
    size_t n = strlen(m->ref);
    while (n > 1 && m->ref[n - 1] == '/') /* "org/name/" */
        n--;
    static _Thread_local char buf[512];
    snprintf(buf, sizeof buf, "%.*s", (int)n, m->ref);
    return hub_id(buf) ? buf : NULL;
}

static const char *library_of(const lad_model *m)
{
    static const struct {
        const char *file, *library;
    } marks[] = {{"model_index.json", "diffusers"}, {"adapter_config.json", "peft"}};
    for (size_t i = 0; m->dir && i < sizeof marks / sizeof *marks; i++) {
        char *path = lad_path_join(m->dir, marks[i].file);
        bool there = path && lad_exists(path);
        free(path);
        if (there)
            return marks[i].library;
    }
    if (m->config && json_object_get(m->config, "_diffusers_version"))
        return "diffusers";
    if (m->config && (json_object_get(m->config, "model_type") ||
                      json_object_get(m->config, "architectures")))
        return "transformers";
    return NULL;
}

/* A YAML double-quoted scalar (JSON's escapes are YAML's). */
static char *quoted(const char *s)
{
    json_t *j = json_string(s);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return text;
}

/* The front matter must be YAML the Hub reads: parsed back here. */
static bool yaml_mapping(const char *text)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    bool ok = false;
    if (!yaml_parser_initialize(&parser))
        return false;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (yaml_parser_load(&parser, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        ok = root && root->type == YAML_MAPPING_NODE;
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return ok;
}

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && !b->oom && b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->len + (size_t)n + 1) * 2;
        char *grown = realloc(b->s, cap);
        if (grown) {
            b->s = grown;
            b->cap = cap;
        } else {
            b->oom = true;
        }
    }
    if (n >= 0 && !b->oom) {
        vsnprintf(b->s + b->len, b->cap - b->len, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
}

static void put_quoted(sbuf *b, const char *prefix, const char *s)
{
    char *q = quoted(s);
    if (!q) {
        b->oom = true;
        return;
    }
    put(b, "%s%s\n", prefix, q);
    free(q);
}

static char *front_matter(const lad_plan *p)
{
    sbuf b = {0};
    const lad_merge_request *r = &p->req;
    const char *ids[LAD_SPEC_MAX_IN * 4 + 64];
    size_t nids = 0;
    for (size_t j = 0; j < r->nmodels && nids < sizeof ids / sizeof *ids; j++) {
        const char *id = lad_model_hub_id(r->models[j]);
        bool seen = !id;
        for (size_t k = 0; k < nids && !seen; k++)
            seen = !strcmp(ids[k], id);
        if (!seen && !(ids[nids++] = lad_strdup(id)))
            b.oom = true;
    }
    put(&b, "---\n");
    if (nids) {
        put(&b, "base_model:\n");
        for (size_t k = 0; k < nids; k++)
            put_quoted(&b, "- ", ids[k]);
        put(&b, "base_model_relation: merge\n");
    }
    const char *library = library_of(r->models[r->template_model]);
    if (library)
        put(&b, "library_name: %s\n", library);
    put(&b, "tags:\n- merge\n- ladle\n");
    put_quoted(&b, "- ", r->method_label);
    put(&b, "---\n");
    for (size_t k = 0; k < nids; k++)
        free((void *)ids[k]);
    if (b.oom || !yaml_mapping(b.s + 4)) { /* (the text between the fences) */
        free(b.s);
        return NULL;
    }
    return b.s;
}

static char *card_text(const lad_plan *p, lad_error *err)
{
    const lad_merge_request *r = &p->req;
    char *front = front_matter(p);
    char *params = json_dumps(r->params_json ? r->params_json : json_object(), JSON_COMPACT);
    sbuf b = {0};
    if (!front || !params) {
        free(front);
        free(params);
        lad_fail(err, "cannot write the model card's front matter (out of memory)");
        return NULL;
    }
    put(&b, "%s# Merged model\n\nMade with ladle %s by weight-space merging.\n\n"
            "- **Method:** %s\n- **Parameters:** `%s`\n- **Output dtype:** %s\n\n"
            "## Input models\n\n| role | model | bytes |\n|---|---|---|\n",
        front, LADLE_VERSION, r->method_label, params,
        r->has_out_dtype ? lad_dtype_name(r->out_dtype) : "as each input tensor");
    for (size_t j = 0; j < r->nmodels; j++)
        put(&b, "| %s | `%s` | %llu |\n", r->roles[j], r->models[j]->ref,
            (unsigned long long)r->models[j]->total_bytes);
    put(&b, "\n## Reproduce\n\n```sh\n%s\n```\n\nThe same recipe is stored as JSON in every "
            "safetensors file's `__metadata__` (`ladle_recipe`).\n",
        r->command ? r->command : "");
    free(front);
    free(params);
    if (b.oom) {
        free(b.s);
        lad_fail(err, "out of memory");
        return NULL;
    }
    return b.s;
}

static int chat_template_config(const lad_plan *p, lad_hf_extras *x, lad_error *err);

int lad_plan_extras(const lad_plan *p, lad_hf_extras *x, lad_error *err)
{
    const lad_model *tmpl = p->req.models[p->req.template_model];
    memset(x, 0, sizeof *x);
    x->template_dir = tmpl->dir;
    if (p->req.tokenizer_source == LAD_TOKENIZER_MODEL &&
        p->req.tokenizer_model != p->req.template_model)
        x->tokenizer_dir = p->req.models[p->req.tokenizer_model]->dir;
    if (lad_vocab_union_files(p, &x->tokenizer_json, &x->tokenizer_config, err))
        return -1;
    if (p->chat_template && chat_template_config(p, x, err)) {
        lad_extras_free(x);
        return -1;
    }
    if (tmpl->config && !(x->config = config_text(p)))
        return lad_fail(err, "out of memory");
    if (p->nshards > 1 && !(x->index = index_text(p))) {
        lad_extras_free(x);
        return lad_fail(err, "out of memory");
    }
    if (!p->req.copy_all && !(x->card = card_text(p, err))) { /* a save is not a merge */
        lad_extras_free(x);
        return -1;
    }
    return 0;
}

void lad_extras_free(lad_hf_extras *x)
{
    free(x->tokenizer_json);
    free(x->tokenizer_config);
    free(x->config);
    free(x->index);
    free(x->card);
    memset(x, 0, sizeof *x);
}

/* ------------------------------------------------------ chat templates */

/* Templates by name, as mergekit's chat_template names them; written for
 * ladle from each format's definition. */
static const struct {
    const char *name, *text;
} CHAT_TEMPLATES[] = {
    {"chatml", "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
               "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if "
               "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"llama3", "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + "
               "message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
               "'<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ "
               "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"alpaca", "{% for message in messages %}{% if message['role'] == 'system' %}{{ "
               "message['content'] + '\\n\\n' }}{% elif message['role'] == 'user' %}{{ '### "
               "Instruction:\\n' + message['content'] + '\\n\\n' }}{% elif message['role'] == "
               "'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + "
               "'\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### "
               "Response:\\n' }}{% endif %}"},
};

/* A model's chat template (whitespace trimmed), allocated, or NULL: its
 * tokenizer_config.json's chat_template (a string, or the one named
 * "default" of a list), else its chat_template.jinja. */
static char *model_template(const lad_model *m)
{
    char *out = NULL, *path = m->dir ? lad_path_join(m->dir, "tokenizer_config.json") : NULL;
    json_t *cfg = path ? json_load_file(path, 0, NULL) : NULL;
    json_t *t = json_object_get(cfg, "chat_template");
    if (json_is_array(t)) { /* [{name, template}, ...]: transformers' "default" */
        size_t i;
        json_t *e, *pick = NULL;
        json_array_foreach(t, i, e)
        {
            json_t *name = json_object_get(e, "name");
            if (json_is_string(name) && !strcmp(json_string_value(name), "default"))
                pick = json_object_get(e, "template");
        }
        t = pick;
    }
    if (json_is_string(t)) {
        out = lad_strdup(json_string_value(t));
    } else if (m->dir) {
        char *jp = lad_path_join(m->dir, "chat_template.jinja");
        size_t len;
        lad_error e = {0};
        if (jp && lad_is_file(jp) && lad_read_file(jp, 1u << 20, &out, &len, &e))
            out = NULL;
        free(jp);
    }
    json_decref(cfg);
    free(path);
    if (out) { /* trimmed, as mergekit compares them */
        size_t a = 0, b = strlen(out);
        while (out[a] && isspace((unsigned char)out[a]))
            a++;
        while (b > a && isspace((unsigned char)out[b - 1]))
            b--;
        memmove(out, out + a, b - a);
        out[b - a] = '\0';
    }
    return out;
}

/* auto: the template most of the inputs have (the first seen of equals). */
static int plurality_template(lad_plan *p, char **out, lad_error *err)
{
    size_t n = p->req.nmodels, best = 0, best_count = 0;
    char **ts = calloc(n + 1, sizeof *ts);
    if (!ts)
        return lad_fail(err, "out of memory");
    for (size_t j = 0; j < n; j++)
        ts[j] = model_template(p->req.models[j]);
    for (size_t j = 0; j < n; j++) {
        size_t count = 0;
        for (size_t k = 0; ts[j] && k < n; k++)
            count += ts[k] && !strcmp(ts[j], ts[k]);
        if (count > best_count) {
            best = j;
            best_count = count;
        }
    }
    *out = best_count ? ts[best] : NULL;
    for (size_t j = 0; j < n; j++)
        if (!best_count || j != best)
            free(ts[j]);
    free(ts);
    return 0;
}

int lad_plan_chat_template(lad_plan *p, lad_error *err)
{
    const char *want = p->req.chat_template;
    if (!want)
        return 0;
    if (!strcmp(want, "auto")) {
        if (plurality_template(p, &p->chat_template, err))
            return -1;
        if (!p->chat_template)
            return lad_plan_warn(p, lad_strdup("chat_template auto: none of the inputs has a "
                                               "chat template, so the output has none"),
                                 err);
    } else if (lad_is_file(want)) {
        size_t len;
        if (lad_read_file(want, 1u << 20, &p->chat_template, &len, err))
            return lad_fail_prefix(err, "chat_template: ");
    } else {
        for (size_t i = 0; i < sizeof CHAT_TEMPLATES / sizeof *CHAT_TEMPLATES; i++)
            if (!strcmp(want, CHAT_TEMPLATES[i].name))
                p->chat_template = lad_strdup(CHAT_TEMPLATES[i].text);
        if (!p->chat_template) {
            if (strlen(want) < 20 || !strchr(want, '{'))
                return lad_fail(err, "chat_template '%s' is neither one ladle knows (auto, "
                                     "chatml, llama3, alpaca), nor a file, nor a Jinja template",
                                want);
            p->chat_template = lad_strdup(want);
        }
        if (!p->chat_template)
            return lad_fail(err, "out of memory");
    }
    if (p->req.output && !p->as_dir)
        return lad_plan_warn(p, lad_asprintf("chat_template: %s is one .safetensors file, "
                                             "without tokenizer files to hold a chat template; "
                                             "write a folder to keep it",
                                             p->req.output),
                             err);
    return 0;
}

/* tokenizer_config.json with the chat template set: the union's, else the
 * tokenizer's own file, else a new one. */
static int chat_template_config(const lad_plan *p, lad_hf_extras *x, lad_error *err)
{
    json_t *cfg = NULL;
    if (x->tokenizer_config) {
        cfg = json_loads(x->tokenizer_config, JSON_ALLOW_NUL, NULL);
    } else {
        const char *dir = x->tokenizer_dir ? x->tokenizer_dir : x->template_dir;
        char *path = dir ? lad_path_join(dir, "tokenizer_config.json") : NULL;
        cfg = path && lad_is_file(path) ? json_load_file(path, JSON_ALLOW_NUL, NULL) : NULL;
        free(path);
    }
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        cfg = json_object();
    }
    json_object_set_new(cfg, "chat_template", json_string(p->chat_template));
    free(x->tokenizer_config);
    x->tokenizer_config = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    x->drop_chat_template_files = true;
    return x->tokenizer_config ? 0 : lad_fail(err, "out of memory");
}
