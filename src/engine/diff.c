/*
 * Diagnosis of two models: per tensor, the norms of their task vectors,
 * the dot product (for the cosine) and the sign conflicts: what predicts
 * whether averaging will work. Streamed chunk by chunk like a merge, on
 * one thread (it only reads).
 */
#include "ladle.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define DIFF_CHUNK (1u << 16)

static int same_shape(const lad_tensor *x, const lad_tensor *y)
{
    return x->ndim == y->ndim && !memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim);
}

static int read_f32(const lad_tensor *t, uint64_t start, size_t n, void *raw, float *out,
                    lad_error *err)
{
    if (t->lora) /* with LoRA deltas */
        return lad_lora_read(t, start, n, out, err);
    if (t->q.scheme) /* quantised: its dequantised values */
        return lad_quant_read(t, start, n, out, err);
    size_t es = lad_dtype_bits(t->dtype) / 8;
    if (lad_file_read(t->file, raw, n * es, t->offset + start * es, err))
        return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    lad_load_f32(t->dtype, raw, out, n);
    return 0;
}

static int diff_tensor(const lad_tensor *ta, const lad_tensor *tb, const lad_tensor *tbase,
                       lad_diff_tensor *d, float *buf, void *raw, lad_error *err)
{
    float *a = buf, *b = buf + DIFF_CHUNK, *o = buf + 2 * DIFF_CHUNK;
    for (uint64_t s = 0; s < ta->nelem; s += DIFF_CHUNK) {
        size_t n = (size_t)(ta->nelem - s < DIFF_CHUNK ? ta->nelem - s : DIFF_CHUNK);
        if (read_f32(ta, s, n, raw, a, err) || read_f32(tb, s, n, raw, b, err) ||
            (tbase && read_f32(tbase, s, n, raw, o, err)))
            return -1;
        for (size_t i = 0; i < n; i++) {
            double x = tbase ? (double)(a[i] - o[i]) : a[i];
            double y = tbase ? (double)(b[i] - o[i]) : b[i];
            d->aa += x * x;
            d->bb += y * y;
            d->ab += x * y;
            if (x != 0 && y != 0) {
                d->both_nonzero++;
                d->conflicts += (x > 0) != (y > 0);
            }
        }
        if (lad_interrupted()) {
            err->interrupted = true;
            return lad_fail(err, "interrupted");
        }
    }
    return 0;
}

int lad_diff(const lad_model *a, const lad_model *b, const lad_model *base,
             lad_diff_tensor **out, size_t *nout, lad_error *err)
{
    lad_diff_tensor *res = calloc(a->ntensors + 1, sizeof *res);
    float *buf = malloc(3 * (size_t)DIFF_CHUNK * sizeof *buf);
    void *raw = malloc((size_t)DIFF_CHUNK * 8);
    size_t n = 0;
    int rc = (!res || !buf || !raw) ? lad_fail(err, "out of memory") : 0;
    for (size_t i = 0; rc == 0 && i < a->ntensors; i++) {
        const lad_tensor *ta = &a->tensors[i];
        if (!lad_tensor_mergeable(ta) || ta->hidden)
            continue;
        const lad_tensor *tb = lad_model_find(b, ta->name);
        const lad_tensor *tbase = base ? lad_model_find(base, ta->name) : NULL;
        if (!tb || (base && !tbase)) {
            rc = lad_fail(err, "tensor '%s' is in %s but not in %s", ta->name, a->ref,
                          tb ? base->ref : b->ref);
            break;
        }
        if (!same_shape(ta, tb) || (tbase && !same_shape(ta, tbase))) {
            rc = lad_fail(err, "tensor '%s' has different shapes in %s and %s", ta->name, a->ref,
                          !same_shape(ta, tb) ? b->ref : base->ref);
            break;
        }
        if (!lad_tensor_mergeable(tb) || (tbase && !lad_tensor_mergeable(tbase))) {
            rc = lad_fail(err, "tensor '%s' is not a float tensor in every model", ta->name);
            break;
        }
        res[n] = (lad_diff_tensor){.name = ta->name, .n = ta->nelem};
        rc = diff_tensor(ta, tb, tbase, &res[n], buf, raw, err);
        n++;
    }
    free(buf);
    free(raw);
    if (rc) {
        free(res);
        return -1;
    }
    *out = res;
    *nout = n;
    return 0;
}
