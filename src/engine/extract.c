/*
 * LoRA extraction (ladle lora extract): a PEFT adapter that turns BASE into
 * (approximately) a fine-tune of it, as mergekit-extract-lora builds one.
 *
 * Per tensor of the fine-tune F, with its delta D = F - BASE (fp32):
 *   - D == 0: nothing (the adapter leaves the base's tensor as it is);
 *   - a 2-D weight (not the input embedding or the output head, unless
 *     embed_lora): the rank-k truncated SVD D ~= U S Vt, k = min(rank,
 *     rows, cols, the singular values above sv_epsilon), written as
 *     lora_A = sqrt(S) Vt and lora_B = U sqrt(S) (distribute_scale; else
 *     A = S Vt, B = U), so that B @ A ~= D. With embed_lora the input
 *     embedding [vocab, hidden] is decomposed transposed, as PEFT stores
 *     embedding adapters: lora_embedding_A [k, vocab], lora_embedding_B
 *     [hidden, k], delta (B @ A)^T;
 *   - the bias of a module given a LoRA: its delta as lora_B.bias (PEFT's
 *     lora_bias);
 *   - anything else that differs (norms, embeddings without embed_lora,
 *     other biases, tensors of more dimensions): a full copy of F's tensor
 *     (PEFT's modules_to_save), as mergekit does. Tensors the include /
 *     exclude patterns leave out are not written (and counted).
 * lora_alpha = r (the largest rank) and alpha_pattern = rank_pattern for
 * the modules of smaller rank, so every module's scale is 1.
 *
 * Each tensor is read whole (both models' copies and the delta in fp32: 12
 * bytes per element of the largest tensor) and decomposed on the BLAS
 * threads; the adapter's matrices are kept until written, atomically, with
 * adapter_config.json and a model card.
 */
#include "plan.h"
#include "util.h"
#include "../formats/writer.h"
#include "../linalg/linalg.h"

#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { X_SAME, X_LORA, X_EMBED, X_BIAS, X_FULL, X_LEFT } xkind;

typedef struct xout {
    char *name;
    lad_dtype dtype;
    int ndim;
    uint64_t shape[LAD_MAX_DIMS];
    void *data;
    uint64_t nbytes;
} xout;

typedef struct xstate {
    const lad_extract_request *req;
    xout *outs;
    size_t nouts, cap;
    json_t *ranks;            /* module -> rank */
    json_t *targets;          /* last components of LoRA modules */
    json_t *saved;            /* modules_to_save keys */
    regex_t *inc, *exc;
    size_t ninc, nexc;
    double err2, norm2;       /* truncation error and delta energy, over LoRA tensors */
    bool lora_bias;
} xstate;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *const EMBED_NAMES[] = {"embed_tokens.weight", "wte.weight",
                                          "word_embeddings.weight", "embed_in.weight",
                                          "tok_embeddings.weight", "token_embd.weight",
                                          "shared.weight"};
static const char *const HEAD_NAMES[] = {"lm_head.weight", "embed_out.weight", "output.weight"};

static bool named(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t a = strlen(name), b = strlen(list[i]);
        if (a >= b && !strcmp(name + a - b, list[i]) && (a == b || name[a - b - 1] == '.'))
            return true;
    }
    return false;
}

static bool is_embed(const char *n) { return named(n, EMBED_NAMES, 7); }
static bool is_head(const char *n) { return named(n, HEAD_NAMES, 3); }

/* The module of a tensor name ("a.b.weight" -> "a.b"), in buf. */
static const char *module_of(const char *name, char *buf, size_t len)
{
    const char *dot = strrchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : strlen(name);
    if (n >= len)
        n = len - 1;
    memcpy(buf, name, n);
    buf[n] = '\0';
    return buf;
}

static bool selected(const xstate *x, const char *name)
{
    if (x->ninc) {
        bool any = false;
        for (size_t i = 0; i < x->ninc && !any; i++)
            any = regexec(&x->inc[i], name, 0, NULL, 0) == 0;
        if (!any)
            return false;
    }
    for (size_t i = 0; i < x->nexc; i++)
        if (regexec(&x->exc[i], name, 0, NULL, 0) == 0)
            return false;
    return true;
}

/* A tensor's values as fp32 (dequantised, LoRA deltas added). */
static float *read_f32(const lad_tensor *t, lad_error *err)
{
    size_t n = (size_t)t->nelem;
    float *out = malloc(n * sizeof *out + 1);
    if (!out) {
        lad_fail(err, "out of memory for tensor '%s' (%zu values)", t->name, n);
        return NULL;
    }
    int rc;
    if (t->lora)
        rc = lad_lora_read(t, 0, n, out, err);
    else if (t->q.scheme)
        rc = lad_quant_read(t, 0, n, out, err);
    else {
        size_t es = lad_dtype_bits(t->dtype) / 8;
        unsigned char *raw = malloc(n * es + 1);
        rc = raw ? lad_file_read(t->file, raw, n * es, t->offset, err)
                 : lad_fail(err, "out of memory");
        if (rc == 0)
            lad_load_f32(t->dtype, raw, out, n);
        else if (raw)
            lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
        free(raw);
    }
    if (rc) {
        free(out);
        return NULL;
    }
    return out;
}

static int add_out(xstate *x, const char *name, lad_dtype dt, int ndim, const uint64_t *shape,
                   const float *values, lad_error *err)
{
    if (x->nouts == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 64;
        xout *g = realloc(x->outs, nc * sizeof *g);
        if (!g)
            return lad_fail(err, "out of memory");
        x->outs = g;
        x->cap = nc;
    }
    xout *o = &x->outs[x->nouts];
    *o = (xout){.dtype = dt, .ndim = ndim};
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (o->shape[i] = shape[i]);
    o->nbytes = n * (lad_dtype_bits(dt) / 8);
    o->name = lad_strdup(name);
    o->data = malloc(o->nbytes + 1);
    if (!o->name || !o->data) {
        free(o->name);
        free(o->data);
        return lad_fail(err, "out of memory");
    }
    lad_store_f32(dt, values, o->data, (size_t)n);
    x->nouts++;
    return 0;
}

/* The rank-k factors of D (rows x cols) into the adapter: lora_A (k x cols)
 * and lora_B (rows x k) under keys a_key and b_key. */
static int decompose(xstate *x, const char *module, const float *D, uint64_t rows,
                     uint64_t cols, const char *a_key, const char *b_key, lad_dtype dt,
                     bool *empty, lad_error *err)
{
    const lad_extract_request *q = x->req;
    size_t m = (size_t)rows, n = (size_t)cols, k = q->rank;
    if (k > m)
        k = m;
    if (k > n)
        k = n;
    float *U = malloc(m * k * sizeof *U + 1), *S = malloc(k * sizeof *S + 1);
    float *Vt = malloc(k * n * sizeof *Vt + 1);
    int rc = U && S && Vt ? 0 : lad_fail(err, "out of memory");
    lad_svd_opts so = {.exact = !q->randomized, .oversample = k < 10 ? 10 : k,
                       .iters = q->power_iters, .seed = q->seed};
    if (rc == 0 && lad_svd(D, m, n, k, &so, U, S, Vt, err))
        rc = lad_fail_prefix(err, "module '%s': ", module);
    if (rc == 0) {
        double norm2 = 0, kept = 0;
        for (size_t i = 0; i < m * n; i++)
            norm2 += (double)D[i] * D[i];
        size_t r = k;
        if (q->sv_epsilon > 0)
            for (r = 0; r < k && S[r] > q->sv_epsilon; r++)
                ;
        for (size_t i = 0; i < r; i++)
            kept += (double)S[i] * S[i];
        x->norm2 += norm2;
        x->err2 += norm2 > kept ? norm2 - kept : 0;
        *empty = r == 0;
        if (r > 0) {
            /* A = a(S) Vt (r x n), B = U b(S) (m x r) */
            for (size_t i = 0; i < r; i++) {
                float sa = q->no_distribute ? S[i] : sqrtf(S[i]);
                for (size_t j = 0; j < n; j++)
                    Vt[i * n + j] *= sa;
            }
            float *B = malloc(m * r * sizeof *B + 1);
            if (!B)
                rc = lad_fail(err, "out of memory");
            for (size_t i = 0; rc == 0 && i < m; i++)
                for (size_t j = 0; j < r; j++)
                    B[i * r + j] = U[i * k + j] * (q->no_distribute ? 1.0f : sqrtf(S[j]));
            uint64_t ash[2] = {r, n}, bsh[2] = {m, r};
            if (rc == 0 && (add_out(x, a_key, dt, 2, ash, Vt, err) ||
                            add_out(x, b_key, dt, 2, bsh, B, err)))
                rc = -1;
            free(B);
            if (rc == 0 && r != q->rank &&
                json_object_set_new(x->ranks, module, json_integer((json_int_t)r)))
                rc = lad_fail(err, "out of memory");
        }
    }
    free(U);
    free(S);
    free(Vt);
    return rc;
}

/* Which treatment a differing tensor gets. */
static xkind kind_of(const xstate *x, const lad_tensor *t)
{
    if (!selected(x, t->name))
        return X_LEFT;
    bool weight = lad_ends_with(t->name, ".weight");
    if (t->ndim == 2 && weight && !is_embed(t->name) && (!is_head(t->name) || x->req->embed_lora))
        return X_LORA;
    if (t->ndim == 2 && weight && is_embed(t->name) && x->req->embed_lora)
        return X_EMBED;
    return X_FULL;
}

/* The adapter's dtype for tensor t: --dtype, else its own (fp32 for a
 * quantised one). */
static lad_dtype out_dtype(const xstate *x, const lad_tensor *t)
{
    return x->req->has_dtype ? x->req->dtype : t->q.scheme ? LAD_F32 : t->dtype;
}

/* Appends the last name of a module ("...self_attn.q_proj" -> "q_proj")
 * to a config list (target_modules, modules_to_save), once. */
static int add_key(json_t *list, const char *module, lad_error *err)
{
    const char *last = strrchr(module, '.');
    last = last ? last + 1 : module;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (!strcmp(json_string_value(v), last)) return 0;
    return json_array_append_new(list, json_string(last)) ? lad_fail(err, "out of memory") : 0;
}

static int save_full(xstate *x, const lad_tensor *t, const float *F, lad_error *err)
{
    char module[1024], *key = lad_asprintf("base_model.model.%s", t->name);
    if (!key)
        return lad_fail(err, "out of memory");
    int rc = add_out(x, key, out_dtype(x, t), t->ndim, t->shape, F, err);
    free(key);
    if (rc)
        return -1;
    return add_key(x->saved, module_of(t->name, module, sizeof module), err);
}

/* One tensor of the fine-tune: weights in the first pass, biases in the
 * second (a bias is a lora_B.bias when its module got a LoRA). */
static int extract_tensor(xstate *x, const lad_tensor *t, const lad_tensor *b, bool bias_pass,
                          lad_extract_stats *stats, lad_error *err)
{
    char module[1024];
    module_of(t->name, module, sizeof module);
    bool is_bias = t->ndim == 1 && lad_ends_with(t->name, ".bias");
    if (is_bias != bias_pass)
        return 0;
    float *F = read_f32(t, err), *B = F ? read_f32(b, err) : NULL;
    if (!B) {
        free(F);
        return -1;
    }
    size_t n = (size_t)t->nelem;
    bool same = true;
    for (size_t i = 0; i < n; i++) {
        B[i] = F[i] - B[i]; /* the delta, in place */
        same &= B[i] == 0;
    }
    int rc = 0;
    xkind k = same ? X_SAME : kind_of(x, t);
    if (k == X_FULL && is_bias) { /* the bias of a module with a LoRA: lora_B.bias */
        char *a = lad_asprintf("base_model.model.%s.lora_A.weight", module);
        for (size_t i = 0; a && i < x->nouts && k == X_FULL; i++)
            if (!strcmp(x->outs[i].name, a))
                k = X_BIAS;
        free(a);
    }
    lad_dtype dt = out_dtype(x, t);
    char ka[1100], kb[1100];
    bool empty = false;
    switch (k) {
    case X_SAME:
        stats->same++;
        break;
    case X_LEFT:
        stats->left_out++;
        break;
    case X_FULL:
        rc = save_full(x, t, F, err);
        stats->full += rc == 0;
        break;
    case X_BIAS:
        snprintf(ka, sizeof ka, "base_model.model.%s.lora_B.bias", module);
        rc = add_out(x, ka, dt, 1, t->shape, B, err);
        x->lora_bias = true;
        stats->biases += rc == 0;
        break;
    case X_LORA:
    case X_EMBED: {
        uint64_t rows = t->shape[0], cols = t->shape[1];
        float *D = B;
        if (k == X_EMBED) { /* decomposed as PEFT stores it: [hidden, vocab] */
            D = malloc(n * sizeof *D + 1);
            if (!D) {
                rc = lad_fail(err, "out of memory");
                break;
            }
            for (uint64_t i = 0; i < rows; i++)
                for (uint64_t j = 0; j < cols; j++)
                    D[j * rows + i] = B[i * cols + j];
            uint64_t s = rows;
            rows = cols;
            cols = s;
        }
        snprintf(ka, sizeof ka, "base_model.model.%s.%s", module,
                 k == X_EMBED ? "lora_embedding_A" : "lora_A.weight");
        snprintf(kb, sizeof kb, "base_model.model.%s.%s", module,
                 k == X_EMBED ? "lora_embedding_B" : "lora_B.weight");
        rc = decompose(x, module, D, rows, cols, ka, kb, dt, &empty, err);
        if (D != B)
            free(D);
        if (rc == 0 && empty) {
            stats->below_epsilon++;
        } else if (rc == 0) {
            stats->lora++;
            rc = add_key(x->targets, module, err);
        }
        break;
    }
    }
    free(F);
    free(B);
    return rc;
}

static int compile_all(regex_t **out, const char *const *pats, size_t n, const char *opt,
                       lad_error *err)
{
    *out = n ? calloc(n, sizeof **out) : NULL;
    if (n && !*out)
        return lad_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (regcomp(&(*out)[i], pats[i], REG_EXTENDED | REG_NOSUB) != 0) {
            for (size_t j = 0; j < i; j++)
                regfree(&(*out)[j]);
            free(*out);
            *out = NULL;
            return lad_usage(err, "%s: '%s' is not a valid regular expression", opt, pats[i]);
        }
    return 0;
}

/* What the adapter names its base: as given, the base's Hub id, its path. */
static const char *base_name(const lad_extract_request *q)
{
    const char *hub = lad_model_hub_id(q->base);
    return q->base_name ? q->base_name : hub ? hub : q->base->ref;
}

static char *config_text(const xstate *x, json_int_t rmax)
{
    const lad_extract_request *q = x->req;
    const char *task = NULL;
    json_t *archs = q->base->config ? json_object_get(q->base->config, "architectures") : NULL;
    const char *arch = json_string_value(json_array_get(archs, 0));
    if (arch && lad_ends_with(arch, "ForCausalLM"))
        task = "CAUSAL_LM";
    json_t *patt = json_deep_copy(x->ranks);
    json_t *c = json_pack("{s:s, s:s, s:o, s:s*, s:I, s:I, s:O, s:o, s:o, s:f, s:b, s:s, "
                          "s:b, s:b, s:b, s:b}",
                          "base_model_name_or_path", base_name(q),
                          "peft_type", "LORA", "target_modules", json_deep_copy(x->targets),
                          "task_type", task, "r", rmax, "lora_alpha", rmax, "rank_pattern",
                          x->ranks, "alpha_pattern", patt, "modules_to_save",
                          json_array_size(x->saved) ? json_deep_copy(x->saved) : json_null(),
                          "lora_dropout", 0.0, "fan_in_fan_out", 0, "bias", "none",
                          "use_rslora", 0, "use_dora", 0, "lora_bias", x->lora_bias,
                          "inference_mode", 1);
    char *s = c ? json_dumps(c, JSON_INDENT(2)) : NULL;
    json_decref(c);
    return s;
}

static char *card_text(const xstate *x, const lad_extract_stats *st)
{
    const lad_extract_request *q = x->req;
    const char *base = base_name(q);
    return lad_asprintf(
        "---\nbase_model: %s\nlibrary_name: peft\ntags:\n- ladle\n- lora\n- extracted\n---\n"
        "# %s\n\nA LoRA adapter extracted by [ladle](https://github.com/) from the "
        "difference between\n`%s` and its fine-tune `%s`: a rank-%u truncated SVD of each "
        "changed weight matrix\n(lora_alpha = r, so every module's scale is 1).\n\n"
        "- LoRA modules: %zu; full copies (modules_to_save): %zu; bias deltas: %zu\n"
        "- relative error of the LoRA modules' deltas (Frobenius, all together): %.4g\n\n"
        "```sh\n%s\n```\n",
        base, q->output, q->base->ref, q->tuned->ref, q->rank, st->lora, st->full, st->biases,
        st->rel_error, q->cmdline ? q->cmdline : "ladle lora extract");
}

static int write_adapter(xstate *x, const lad_extract_stats *st, lad_error *err)
{
    const lad_extract_request *q = x->req;
    json_int_t rmax = 0;
    lad_out_tensor *ts = calloc(x->nouts + 1, sizeof *ts);
    if (!ts)
        return lad_fail(err, "out of memory");
    for (size_t i = 0; i < x->nouts; i++) {
        ts[i] = (lad_out_tensor){.name = x->outs[i].name, .dtype = x->outs[i].dtype,
                                 .ndim = x->outs[i].ndim, .shape = x->outs[i].shape,
                                 .nbytes = x->outs[i].nbytes};
        if (lad_ends_with(x->outs[i].name, ".lora_A.weight") ||
            lad_ends_with(x->outs[i].name, ".lora_embedding_A"))
            rmax = (json_int_t)x->outs[i].shape[0] > rmax ? (json_int_t)x->outs[i].shape[0]
                                                           : rmax;
    }
    /* modules of the largest rank need no pattern */
    const char *key;
    json_t *v, *tmp;
    json_object_foreach_safe(x->ranks, tmp, key, v) if (json_integer_value(v) == rmax)
        json_object_del(x->ranks, key);
    lad_writer *w = NULL;
    int fd = -1;
    uint64_t start = 0, off = 0;
    char *cfg = config_text(x, rmax ? rmax : (json_int_t)q->rank), *card = card_text(x, st);
    json_t *meta = json_pack("{s:s}", "format", "pt");
    int rc = cfg && card && meta ? 0 : lad_fail(err, "out of memory");
    if (rc == 0)
        rc = lad_writer_begin(q->output, true, q->force, &w, err);
    if (rc == 0)
        rc = lad_writer_add_safetensors(w, "adapter_model.safetensors", ts, x->nouts, meta, &fd,
                                        &start, err);
    for (size_t i = 0; rc == 0 && i < x->nouts; i++) {
        if (lad_pwrite_full(fd, x->outs[i].data, x->outs[i].nbytes, start + off, err))
            rc = lad_fail_prefix(err, "%s: ", q->output);
        off += x->outs[i].nbytes;
    }
    if (rc == 0)
        rc = lad_writer_add_bytes(w, "adapter_config.json", cfg, strlen(cfg), err);
    if (rc == 0)
        rc = lad_writer_add_bytes(w, "README.md", card, strlen(card), err);
    if (rc == 0)
        rc = lad_writer_commit(w, err);
    else if (w)
        lad_writer_abort(w);
    json_decref(meta);
    free(cfg);
    free(card);
    free(ts);
    return rc;
}

int lad_lora_extract(const lad_extract_request *q, lad_extract_stats *stats, lad_error *err)
{
    memset(stats, 0, sizeof *stats);
    double t0 = now();
    if (q->rank < 1)
        return lad_usage(err, "--rank must be at least 1");
    xstate x = {.req = q, .ranks = json_object(), .targets = json_array(),
                .saved = json_array()};
    int rc = x.ranks && x.targets && x.saved ? 0 : lad_fail(err, "out of memory");
    if (rc == 0 && (compile_all(&x.inc, q->include, q->ninclude, "--include", err) ||
                    compile_all(&x.exc, q->exclude, q->nexclude, "--exclude", err)))
        rc = -1;
    x.ninc = x.inc ? q->ninclude : 0;
    x.nexc = x.exc ? q->nexclude : 0;
    const lad_model *F = q->tuned, *Bm = q->base;
    /* every tensor checked before the work */
    for (size_t i = 0; rc == 0 && i < F->ntensors; i++) {
        const lad_tensor *t = &F->tensors[i], *b = lad_model_find(Bm, t->name);
        if (t->hidden)
            continue;
        if (!b)
            rc = lad_fail(err, "tensor '%s' is in %s but not in %s; extract needs a fine-tune "
                               "of the base",
                          t->name, F->ref, Bm->ref);
        else if (t->ndim != b->ndim ||
                 memcmp(t->shape, b->shape, (size_t)t->ndim * sizeof *t->shape))
            rc = lad_fail(err, "tensor '%s' has another shape in %s than in %s (a resized "
                               "vocabulary?); an adapter cannot change shapes",
                          t->name, F->ref, Bm->ref);
        else if (lad_tensor_mergeable(t) != lad_tensor_mergeable(b))
            rc = lad_fail(err, "tensor '%s' is a float in one model and not in the other",
                          t->name);
        else if (!lad_tensor_mergeable(t) && t->nbytes == b->nbytes) {
            /* integers: must be the same bytes, an adapter cannot carry them */
            unsigned char *ra = malloc(t->nbytes + 1), *rb = malloc(b->nbytes + 1);
            if (!ra || !rb)
                rc = lad_fail(err, "out of memory");
            else if (lad_file_read(t->file, ra, t->nbytes, t->offset, err) ||
                     lad_file_read(b->file, rb, b->nbytes, b->offset, err))
                rc = -1;
            else if (memcmp(ra, rb, t->nbytes))
                rc = lad_fail(err, "tensor '%s' (%s) differs between %s and %s; an adapter "
                                   "carries float tensors only",
                              t->name, lad_dtype_name(t->dtype), F->ref, Bm->ref);
            free(ra);
            free(rb);
        } else if (!lad_tensor_mergeable(t))
            rc = lad_fail(err, "tensor '%s' (%s) differs between %s and %s", t->name,
                          lad_dtype_name(t->dtype), F->ref, Bm->ref);
    }
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < F->ntensors; i++)
        total += lad_tensor_mergeable(&F->tensors[i]) && !F->tensors[i].hidden
                     ? F->tensors[i].nelem : 0;
    /* weights first, then biases (whose kind depends on their module's) */
    for (int pass = 0; rc == 0 && pass < 2; pass++)
        for (size_t i = 0; rc == 0 && i < F->ntensors; i++) {
            const lad_tensor *t = &F->tensors[i];
            if (t->hidden || !lad_tensor_mergeable(t))
                continue;
            rc = extract_tensor(&x, t, lad_model_find(Bm, t->name), pass == 1, stats, err);
            if (rc == 0 && (t->ndim == 1 && lad_ends_with(t->name, ".bias")) == (pass == 1)) {
                done += t->nelem;
                if ((q->progress && q->progress(q->progress_ctx, done, total, now() - t0,
                                                false)) ||
                    lad_interrupted()) {
                    rc = lad_fail(err, "interrupted; nothing was written");
                    err->interrupted = true;
                }
            }
        }
    if (rc == 0 && stats->lora + stats->full + stats->biases == 0)
        rc = lad_fail(err, "%s and %s hold the same values%s: there is nothing to extract",
                      F->ref, Bm->ref, stats->left_out ? " (outside --include/--exclude)" : "");
    stats->rel_error = x.norm2 > 0 ? sqrt(x.err2 / x.norm2) : 0;
    stats->seconds = now() - t0;
    if (rc == 0)
        rc = write_adapter(&x, stats, err);
    if (rc == 0 && q->progress)
        q->progress(q->progress_ctx, total, total, now() - t0, true);
    for (size_t i = 0; i < x.nouts; i++) {
        free(x.outs[i].name);
        free(x.outs[i].data);
    }
    free(x.outs);
    for (size_t i = 0; i < x.ninc; i++)
        regfree(&x.inc[i]);
    for (size_t i = 0; i < x.nexc; i++)
        regfree(&x.exc[i]);
    free(x.inc);
    free(x.exc);
    json_decref(x.ranks);
    json_decref(x.targets);
    json_decref(x.saved);
    stats->seconds = now() - t0;
    return rc;
}
