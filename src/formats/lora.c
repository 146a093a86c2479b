/*
 * LoRA adapters (PEFT's adapter_config.json + adapter_model.safetensors or
 * .bin) applied to a base model on the fly: the model a "BASE+ADAPTER"
 * reference names, as mergekit's model+lora does.
 *
 * The model is the base's, tensor for tensor; a tensor an adapter targets
 * reads as W + sum over adapters of w * s * B @ A, in fp32, where
 *   s = lora_alpha / r (use_rslora: / sqrt(r)); alpha_pattern overrides
 *       lora_alpha per module, matched as PEFT matches it (the first
 *       pattern P with ^(.*\.)?(P)$ matching the module's name);
 *   r = A's rows (rank_pattern's value, as PEFT saved it);
 *   w = the adapter's weight (1 unless given);
 *   fan_in_fan_out (GPT-2's Conv1D) and embeddings (lora_embedding_A/B)
 *       store W transposed, so their delta is (B @ A)^T.
 * Keys are PEFT's: base_model.model.MODULE.lora_A.weight (and lora_B),
 * base_model.model.MODULE.lora_embedding_A (and _B), MODULE.weight the
 * tensor they change; base_model.model.MODULE.lora_B.bias (PEFT's
 * lora_bias) adds s * w * that vector to MODULE.bias; base_model.model.NAME
 * where NAME is a tensor of the base (modules_to_save) replaces it whole
 * (unweighted: an adapter with such copies takes weight 1 only). Anything
 * else (DoRA's magnitude vectors, ...) is refused by name: applying part of
 * an adapter is a wrong model.
 *
 * Each target's A and B are kept in memory in fp32, arranged as L (rows x r)
 * and R (r x columns) of the stored W, so one kernel computes every form:
 * delta(i, j) = sum_k L[i][k] R[k][j], k ascending. The base streams as
 * ever; memory is the adapters' LoRA matrices, twice their bf16 size.
 */
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RANK 65536

struct lad_lora {
    const lad_tensor *target;
    float *L, *R;          /* rows x r, r x cols (r 0: no delta) */
    unsigned char *full;   /* a replacement's bytes (first in the list), or NULL */
    lad_dtype full_dtype;
    uint32_t r;
    uint64_t rows, cols;
    float scale;           /* w * s */
    struct lad_lora *next; /* another adapter's delta on the same tensor */
};

typedef struct adapter_cfg {
    double alpha, r;
    bool rslora, ffio;
    json_t *alpha_pattern;
} adapter_cfg;

static int read_config(const char *dir, adapter_cfg *c, json_t **root, lad_error *err)
{
    char *path = lad_path_join(dir, "adapter_config.json");
    if (!path)
        return lad_fail(err, "out of memory");
    json_error_t je;
    *root = lad_is_file(path) ? json_load_file(path, 0, &je) : NULL;
    int rc = 0;
    json_t *j = *root;
    if (!lad_is_file(path))
        rc = lad_fail(err, "%s: no adapter_config.json (a PEFT LoRA adapter folder holds one)",
                      dir);
    else if (!json_is_object(j))
        rc = lad_fail(err, "%s: not a JSON object", path);
    else if (json_is_string(json_object_get(j, "peft_type")) &&
             strcmp(json_string_value(json_object_get(j, "peft_type")), "LORA"))
        rc = lad_fail(err, "%s: peft_type %s; ladle applies LoRA adapters", path,
                      json_string_value(json_object_get(j, "peft_type")));
    else if (json_is_true(json_object_get(j, "use_dora")))
        rc = lad_fail(err, "%s: a DoRA adapter (use_dora); ladle applies plain LoRA only",
                      path);
    else if (!json_is_number(json_object_get(j, "lora_alpha")) ||
             !json_is_number(json_object_get(j, "r")))
        rc = lad_fail(err, "%s: no numeric r and lora_alpha", path);
    if (rc == 0) {
        c->alpha = json_number_value(json_object_get(j, "lora_alpha"));
        c->r = json_number_value(json_object_get(j, "r"));
        c->rslora = json_is_true(json_object_get(j, "use_rslora"));
        c->ffio = json_is_true(json_object_get(j, "fan_in_fan_out"));
        c->alpha_pattern = json_object_get(j, "alpha_pattern");
    }
    free(path);
    return rc;
}

/* lora_alpha for a module: alpha_pattern's first matching pattern, else
 * the adapter's. */
static int alpha_of(const adapter_cfg *c, const char *module, double *alpha, lad_error *err)
{
    *alpha = c->alpha;
    const char *pat;
    json_t *v;
    json_object_foreach(c->alpha_pattern, pat, v)
    {
        char *re = lad_asprintf("^(.*\\.)?(%s)$", pat);
        regex_t rx;
        if (!re)
            return lad_fail(err, "out of memory");
        int bad = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
        free(re);
        if (bad)
            return lad_fail(err, "alpha_pattern '%s' is not a regular expression ladle reads",
                            pat);
        bool hit = regexec(&rx, module, 0, NULL, 0) == 0;
        regfree(&rx);
        if (hit) {
            if (!json_is_number(v))
                return lad_fail(err, "alpha_pattern '%s' is not a number", pat);
            *alpha = json_number_value(v);
            return 0;
        }
    }
    return 0;
}

/* A 2-D float tensor of the adapter, in fp32. */
static float *load_f32(const lad_tensor *t, lad_error *err)
{
    if (t->ndim != 2 || !lad_tensor_mergeable(t) || t->q.scheme) {
        lad_fail(err, "tensor '%s' is not a 2-D float matrix", t->name);
        return NULL;
    }
    size_t n = (size_t)t->nelem, es = lad_dtype_bits(t->dtype) / 8;
    unsigned char *raw = malloc(n * es + 1);
    float *out = malloc(n * sizeof *out + 1);
    if (!raw || !out || lad_file_read(t->file, raw, n * es, t->offset, err)) {
        free(raw);
        free(out);
        if (!raw || !out)
            lad_fail(err, "out of memory");
        return NULL;
    }
    lad_load_f32(t->dtype, raw, out, n);
    free(raw);
    return out;
}

static float *transposed(const float *m, uint64_t rows, uint64_t cols)
{
    float *t = malloc(rows * cols * sizeof *t + 1);
    for (uint64_t i = 0; t && i < rows; i++)
        for (uint64_t j = 0; j < cols; j++)
            t[j * rows + i] = m[i * cols + j];
    return t;
}

/* The module a PEFT key names, and which matrix it is (A: 'A', B: 'B'),
 * embedding or not; 0 when the key is not a LoRA matrix. */
static char lora_key(const char *key, char *module, size_t len, bool *embedding)
{
    static const char *const PREFIX = "base_model.model.";
    static const struct {
        const char *suffix;
        char which;
        bool emb;
    } FORMS[] = {{".lora_A.weight", 'A', false}, {".lora_B.weight", 'B', false},
                 {".lora_embedding_A", 'A', true}, {".lora_embedding_B", 'B', true}};
    if (strncmp(key, PREFIX, strlen(PREFIX)))
        return 0;
    key += strlen(PREFIX);
    for (size_t f = 0; f < sizeof FORMS / sizeof *FORMS; f++)
        if (lad_ends_with(key, FORMS[f].suffix)) {
            size_t n = strlen(key) - strlen(FORMS[f].suffix);
            if (n == 0 || n >= len)
                return 0;
            memcpy(module, key, n);
            module[n] = '\0';
            *embedding = FORMS[f].emb;
            return FORMS[f].which;
        }
    return 0;
}

/* After the deltas already there: applied in the order given (a
 * replacement goes first, and only one per tensor). */
static int chain(lad_tensor *W, struct lad_lora *l, const char *adapter, lad_error *err)
{
    const struct lad_lora **at = &W->lora;
    if (l->full) {
        if (W->lora && W->lora->full)
            return lad_fail(err, "%s: tensor '%s' is replaced by two adapters' copies", adapter,
                            W->name);
        l->next = (struct lad_lora *)W->lora;
        W->lora = l;
        return 0;
    }
    while (*at)
        at = (const struct lad_lora **)&(*at)->next;
    *at = l;
    return 0;
}

/* The delta of one module: its A and B checked against the base tensor. */
static int add_delta(lad_model *m, const lad_model *ad, const adapter_cfg *c, double weight,
                     const char *module, const lad_tensor *A, const lad_tensor *B, bool emb,
                     lad_error *err)
{
    char *tname = lad_asprintf("%s.weight", module);
    if (!tname)
        return lad_fail(err, "out of memory");
    lad_tensor *W = (lad_tensor *)lad_model_find(m, tname);
    free(tname);
    if (!W)
        return lad_fail(err, "%s: adapter module '%s' has no tensor '%s.weight' in %s", ad->ref,
                        module, module, m->ref);
    if (W->ndim != 2 || !lad_tensor_mergeable(W) || W->q.scheme)
        return lad_fail(err, "%s: tensor '%s' is not a 2-D float matrix, so a LoRA delta "
                             "cannot be added to it",
                        m->ref, W->name);
    if (A->ndim != 2 || B->ndim != 2 || A->shape[0] != B->shape[1] || A->shape[0] == 0 ||
        A->shape[0] > MAX_RANK)
        return lad_fail(err, "%s: module '%s': lora_A and lora_B do not share a rank", ad->ref,
                        module);
    uint64_t r = A->shape[0], out = B->shape[0], in = A->shape[1];
    bool tr = emb || c->ffio; /* W stored as [in, out] */
    uint64_t want0 = tr ? in : out, want1 = tr ? out : in;
    if (W->shape[0] != want0 || W->shape[1] != want1)
        return lad_fail(err, "%s: module '%s': B @ A is [%llu, %llu]%s but '%s' is [%llu, "
                             "%llu]",
                        ad->ref, module, (unsigned long long)out, (unsigned long long)in,
                        tr ? " (stored transposed)" : "", W->name,
                        (unsigned long long)W->shape[0], (unsigned long long)W->shape[1]);
    double alpha;
    if (alpha_of(c, module, &alpha, err))
        return lad_fail_prefix(err, "%s: ", ad->ref);
    struct lad_lora *l = calloc(1, sizeof *l);
    float *a = l ? load_f32(A, err) : NULL, *b = a ? load_f32(B, err) : NULL;
    if (!b) {
        free(a);
        free(l);
        return l ? lad_fail_prefix(err, "%s: ", ad->ref) : lad_fail(err, "out of memory");
    }
    l->target = W;
    l->r = (uint32_t)r;
    l->rows = W->shape[0];
    l->cols = W->shape[1];
    l->scale = (float)(weight * alpha / (c->rslora ? sqrt((double)r) : (double)r));
    if (!tr) { /* delta(i, j) = sum_k B[i][k] A[k][j] */
        l->L = b;
        l->R = a;
    } else { /* delta(i, j) = sum_k A[k][i] B[j][k] */
        l->L = transposed(a, r, in);
        l->R = transposed(b, out, r);
        free(a);
        free(b);
        if (!l->L || !l->R) {
            free(l->L);
            free(l->R);
            free(l);
            return lad_fail(err, "out of memory");
        }
    }
    return chain(W, l, ad->ref, err);
}

/* base_model.model.NAME: a copy replacing the base's NAME (modules_to_save). */
static int add_copy(lad_model *m, const lad_model *ad, const lad_tensor *t, double weight,
                    const char *name, lad_error *err)
{
    lad_tensor *W = (lad_tensor *)lad_model_find(m, name);
    if (!W || !lad_tensor_mergeable(W) || !lad_tensor_mergeable(t) || W->q.scheme ||
        t->q.scheme)
        return lad_fail(err, "%s: tensor '%s' is not a LoRA matrix%s", ad->ref, t->name,
                        W ? " and not a float tensor of the base to replace"
                          : " (lora_A/lora_B), and the base has no tensor of its name "
                            "(modules_to_save)");
    if (W->ndim != t->ndim || memcmp(W->shape, t->shape, (size_t)t->ndim * sizeof *t->shape))
        return lad_fail(err, "%s: the copy of '%s' (modules_to_save) has another shape than "
                             "the base's",
                        ad->ref, name);
    if (weight != 1.0)
        return lad_fail(err, "%s: holds a full copy of '%s' (modules_to_save), which cannot "
                             "be weighted or scaled; apply it with weight 1",
                        ad->ref, name);
    size_t bytes = (size_t)t->nelem * (lad_dtype_bits(t->dtype) / 8);
    struct lad_lora *l = calloc(1, sizeof *l);
    unsigned char *raw = l ? malloc(bytes + 1) : NULL;
    if (!raw) {
        free(l);
        return lad_fail(err, "out of memory");
    }
    if (lad_file_read(t->file, raw, bytes, t->offset, err)) {
        free(raw);
        free(l);
        return lad_fail_prefix(err, "%s: ", ad->ref);
    }
    *l = (struct lad_lora){.target = W, .full = raw, .full_dtype = t->dtype,
                           .rows = t->nelem, .cols = 1};
    if (chain(W, l, ad->ref, err)) {
        free(raw);
        free(l);
        return -1;
    }
    return 0;
}

/* base_model.model.MODULE.lora_B.bias: s * w * b added to MODULE.bias. */
static int add_bias(lad_model *m, const lad_model *ad, const adapter_cfg *c, double weight,
                    const char *module, const lad_tensor *b, lad_error *err)
{
    char *bname = lad_asprintf("%s.bias", module);
    char *aname = lad_asprintf("base_model.model.%s.lora_A.weight", module);
    lad_tensor *W = bname ? (lad_tensor *)lad_model_find(m, bname) : NULL;
    const lad_tensor *A = aname ? lad_model_find(ad, aname) : NULL;
    free(bname);
    free(aname);
    if (!W || W->ndim != 1 || b->ndim != 1 || W->shape[0] != b->shape[0] ||
        !lad_tensor_mergeable(W) || !lad_tensor_mergeable(b) || W->q.scheme || !A ||
        A->ndim != 2 || A->shape[0] == 0)
        return lad_fail(err, "%s: '%s.lora_B.bias' needs the module's lora_A and a bias of "
                             "its length in %s",
                        ad->ref, module, m->ref);
    double alpha;
    if (alpha_of(c, module, &alpha, err))
        return lad_fail_prefix(err, "%s: ", ad->ref);
    uint64_t r = A->shape[0], n = b->shape[0];
    struct lad_lora *l = calloc(1, sizeof *l);
    float *L = l ? malloc(n * sizeof *L + 1) : NULL, *R = L ? malloc(sizeof *R) : NULL;
    unsigned char *raw = R ? malloc(n * (lad_dtype_bits(b->dtype) / 8) + 1) : NULL;
    int rc = raw ? lad_file_read(b->file, raw, n * (lad_dtype_bits(b->dtype) / 8), b->offset,
                                 err)
                 : lad_fail(err, "out of memory");
    if (rc == 0) {
        lad_load_f32(b->dtype, raw, L, n);
        R[0] = 1;
        *l = (struct lad_lora){.target = W, .L = L, .R = R, .r = 1, .rows = n, .cols = 1,
                               .scale = (float)(weight * alpha /
                                                (c->rslora ? sqrt((double)r) : (double)r))};
        rc = chain(W, l, ad->ref, err);
    }
    free(raw);
    if (rc) {
        free(L);
        free(R);
        free(l);
    }
    return rc;
}

/* Every module of one adapter onto m's tensors. */
static int apply_adapter(lad_model *m, const char *dir, double weight, lad_error *err)
{
    adapter_cfg c = {0};
    json_t *cfg = NULL;
    lad_model *ad = NULL;
    if (read_config(dir, &c, &cfg, err))
        return -1;
    char *st = lad_path_join(dir, "adapter_model.safetensors");
    char *bin = lad_path_join(dir, "adapter_model.bin");
    int rc = 0;
    if (!st || !bin)
        rc = lad_fail(err, "out of memory");
    else if (!lad_is_file(st) && !lad_is_file(bin))
        rc = lad_fail(err, "%s: no adapter_model.safetensors or adapter_model.bin", dir);
    else
        rc = lad_model_open(lad_is_file(st) ? st : bin, &ad, err);
    free(st);
    free(bin);
    if (rc) {
        json_decref(cfg);
        return -1;
    }
    size_t applied = 0;
    for (size_t i = 0; i < ad->ntensors && rc == 0; i++) {
        const lad_tensor *t = &ad->tensors[i];
        char module[1024], other_name[1100];
        bool emb;
        char which = lora_key(t->name, module, sizeof module, &emb);
        static const char PREFIX[] = "base_model.model.";
        if (!which && lad_ends_with(t->name, ".lora_B.bias") &&
            !strncmp(t->name, PREFIX, strlen(PREFIX)) &&
            strlen(t->name) - strlen(PREFIX) - strlen(".lora_B.bias") < sizeof module) {
            size_t len = strlen(t->name) - strlen(PREFIX) - strlen(".lora_B.bias");
            memcpy(module, t->name + strlen(PREFIX), len);
            module[len] = '\0';
            rc = add_bias(m, ad, &c, weight, module, t, err);
            continue;
        }
        if (!which && !strncmp(t->name, PREFIX, strlen(PREFIX)) &&
            !strstr(t->name, ".lora_")) {
            rc = add_copy(m, ad, t, weight, t->name + strlen(PREFIX), err);
            applied += rc == 0;
            continue;
        }
        if (!which) {
            rc = lad_fail(err, "%s: tensor '%s' is not a LoRA matrix (lora_A/lora_B), a "
                               "lora_B.bias or a copy of a base tensor; ladle applies those "
                               "only (no DoRA magnitudes)",
                          ad->ref, t->name);
            break;
        }
        if (which != 'A')
            continue; /* each module once, from its A */
        snprintf(other_name, sizeof other_name, "base_model.model.%s.%s", module,
                 emb ? "lora_embedding_B" : "lora_B.weight");
        const lad_tensor *B = lad_model_find(ad, other_name);
        if (!B)
            rc = lad_fail(err, "%s: module '%s' has lora_A but no lora_B", ad->ref, module);
        else
            rc = add_delta(m, ad, &c, weight, module, t, B, emb, err);
        applied += rc == 0;
    }
    if (rc == 0 && applied == 0)
        rc = lad_fail(err, "%s: no LoRA matrices in the adapter", ad->ref);
    /* the adapter stays open: nothing reads it after this (A and B are in
     * memory), so it is closed here */
    lad_model_close(ad);
    json_decref(cfg);
    return rc;
}

int lad_lora_attach(lad_model *m, const char *const *adapters, const double *weights, size_t n,
                    lad_error *err)
{
    for (size_t k = 0; k < n; k++)
        if (apply_adapter(m, adapters[k], weights ? weights[k] : 1.0, err))
            return -1;
    return 0;
}

int lad_lora_read(const lad_tensor *t, uint64_t start, size_t n, float *out, lad_error *err)
{
    size_t es = lad_dtype_bits(t->dtype) / 8;
    unsigned char *raw = malloc(n * es + 1);
    if (!raw)
        return lad_fail(err, "out of memory");
    if (lad_file_read(t->file, raw, n * es, t->offset + start * es, err)) {
        free(raw);
        return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    }
    lad_load_f32(t->dtype, raw, out, n);
    free(raw);
    if (t->lora && t->lora->full) /* a replacement: its values instead */
        lad_load_f32(t->lora->full_dtype,
                     t->lora->full + start * (lad_dtype_bits(t->lora->full_dtype) / 8), out, n);
    for (const struct lad_lora *l = t->lora; l; l = l->next) {
        uint64_t C = l->cols;
        if (l->r == 0)
            continue;
        for (uint64_t pos = start; pos < start + n;) {
            uint64_t i = pos / C, j0 = pos % C, len = C - j0;
            if (len > start + n - pos)
                len = start + n - pos;
            float *o = out + (pos - start);
            const float *Li = l->L + i * l->r;
            /* o[j] += scale * sum_k L[i][k] R[k][j]: the sum first, k ascending */
            enum { SEG = 1024 };
            float acc[SEG];
            for (uint64_t s = 0; s < len; s += SEG) {
                size_t m = (size_t)(len - s < SEG ? len - s : SEG);
                memset(acc, 0, m * sizeof *acc);
                for (uint32_t k = 0; k < l->r; k++) {
                    const float *Rk = l->R + (uint64_t)k * C + j0 + s;
                    float lk = Li[k];
                    for (size_t x = 0; x < m; x++)
                        acc[x] += lk * Rk[x];
                }
                for (size_t x = 0; x < m; x++)
                    o[s + x] += l->scale * acc[x];
            }
            pos += len;
        }
    }
    return 0;
}

void lad_lora_free(const struct lad_lora *l)
{
    while (l) {
        const struct lad_lora *next = l->next;
        free(l->L);
        free(l->R);
        free(l->full);
        free((void *)l);
        l = next;
    }
}
