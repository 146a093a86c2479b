/*
 * Diagnosis of two models: per tensor, the norms of their task vectors,
 * the dot product (for the cosine) and the sign conflicts: what predicts
 * whether averaging will work. Streamed chunk by chunk like a merge, on
 * one thread (it only reads).
 *
 * With subspace, every 2-D task vector pair (not embeddings or heads) is
 * read whole and decomposed, tau = U S V^T: the effective rank (Roy &
 * Vetterli 2007: exp of the entropy of S / sum S), the directions k that
 * hold 90% of |tau|_F^2, and the overlap of the two top-k subspaces,
 * |U_a^T U_b|_F^2 / min(k_a, k_b), 1 when one holds the other, about
 * max(k_a, k_b) / m for unrelated ones (the chance level, also given); V's
 * likewise. Where the subspace methods (TSV, Iso-C/CTS) see interference.
 */
#include "ladle.h"
#include "util.h"
#include "../linalg/linalg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIFF_CHUNK (1u << 16)

static int diff_tensor(const lad_tensor *ta, const lad_tensor *tb, const lad_tensor *tbase,
                       lad_diff_tensor *d, float *buf, void *raw, lad_error *err)
{
    float *a = buf, *b = buf + DIFF_CHUNK, *o = buf + 2 * DIFF_CHUNK;
    for (uint64_t s = 0; s < ta->nelem; s += DIFF_CHUNK) {
        size_t n = (size_t)(ta->nelem - s < DIFF_CHUNK ? ta->nelem - s : DIFF_CHUNK);
        if (lad_tensor_read_f32(ta, s, n, raw, a, err) ||
            lad_tensor_read_f32(tb, s, n, raw, b, err) ||
            (tbase && lad_tensor_read_f32(tbase, s, n, raw, o, err)))
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

/* A task vector read whole: x - base, in fp32. */
static float *read_tau(const lad_tensor *x, const lad_tensor *base, lad_error *err)
{
    size_t ne = (size_t)x->nelem;
    float *t = malloc(ne * sizeof *t + 1), *o = malloc((size_t)DIFF_CHUNK * sizeof *o);
    void *raw = malloc((size_t)DIFF_CHUNK * 8);
    int rc = t && o && raw ? 0 : lad_fail(err, "out of memory for tensor '%s'", x->name);
    for (uint64_t s = 0; rc == 0 && s < ne; s += DIFF_CHUNK) {
        size_t n = (size_t)(ne - s < DIFF_CHUNK ? ne - s : DIFF_CHUNK);
        rc = lad_tensor_read_f32(x, s, n, raw, t + s, err) ||
                     lad_tensor_read_f32(base, s, n, raw, o, err)
                 ? -1
                 : 0;
        for (size_t i = 0; rc == 0 && i < n; i++)
            t[s + i] -= o[i];
    }
    free(o);
    free(raw);
    if (rc) {
        free(t);
        return NULL;
    }
    return t;
}

static double effective_rank(const float *S, size_t q)
{
    double sum = 0, h = 0;
    for (size_t i = 0; i < q; i++)
        sum += S[i];
    for (size_t i = 0; sum > 0 && i < q; i++)
        if (S[i] > 0) {
            double p = S[i] / sum;
            h -= p * log(p);
        }
    return sum > 0 ? exp(h) : 0;
}

static size_t energy_rank(const float *S, size_t q)
{
    double all = 0, run = 0;
    for (size_t i = 0; i < q; i++)
        all += (double)S[i] * S[i];
    size_t k = 0;
    while (all > 0 && k < q && run < 0.9 * all) {
        run += (double)S[k] * S[k];
        k++;
    }
    return k;
}

/* |X^T Y|_F^2 of the column blocks X (rows x kx), Y (rows x ky), both
 * inside row-major arrays of stride ld. */
static double overlap(const float *X, const float *Y, size_t rows, size_t kx, size_t ky,
                      size_t ld, float *C)
{
    lad_gemm_tn(kx, ky, rows, 1.0f, X, ld, Y, ld, C);
    double s = 0;
    for (size_t i = 0; i < kx * ky; i++)
        s += (double)C[i] * C[i];
    return s;
}

static int subspace_tensor(const lad_tensor *ta, const lad_tensor *tb, const lad_tensor *tbase,
                           lad_diff_tensor *d, lad_error *err)
{
    size_t m = (size_t)ta->shape[0], n = (size_t)ta->shape[1], q = m < n ? m : n;
    float *A = read_tau(ta, tbase, err), *B = A ? read_tau(tb, tbase, err) : NULL;
    float *U[2] = {malloc(m * q * sizeof(float) + 1), malloc(m * q * sizeof(float) + 1)};
    float *S[2] = {malloc(q * sizeof(float) + 1), malloc(q * sizeof(float) + 1)};
    float *Vt[2] = {malloc(q * n * sizeof(float) + 1), malloc(q * n * sizeof(float) + 1)};
    float *V[2] = {malloc(n * q * sizeof(float) + 1), malloc(n * q * sizeof(float) + 1)};
    float *C = malloc(q * q * sizeof *C + 1);
    int rc = A && B ? 0 : -1;
    for (int i = 0; i < 2 && rc == 0; i++)
        if (!U[i] || !S[i] || !Vt[i] || !V[i] || !C)
            rc = lad_fail(err, "out of memory for the SVDs of '%s'", ta->name);
    lad_svd_opts exact = {.exact = true};
    size_t k[2] = {0, 0};
    for (int i = 0; i < 2 && rc == 0; i++) {
        const float *tau = i ? B : A;
        bool zero = true;
        for (size_t e = 0; e < m * n && zero; e++)
            zero = tau[e] == 0;
        if (zero) {
            memset(S[i], 0, q * sizeof *S[i]);
            continue;
        }
        if (lad_svd(tau, m, n, q, &exact, U[i], S[i], Vt[i], err)) {
            rc = lad_fail_prefix(err, "tensor '%s': ", ta->name);
            break;
        }
        k[i] = energy_rank(S[i], q);
        for (size_t r = 0; r < q; r++) /* V (n x q) = Vt^T */
            for (size_t c = 0; c < n; c++)
                V[i][c * q + r] = Vt[i][r * n + c];
    }
    if (rc == 0) {
        d->subspace = true;
        d->erank_a = effective_rank(S[0], q);
        d->erank_b = effective_rank(S[1], q);
        d->k_a = k[0];
        d->k_b = k[1];
        size_t lo = k[0] < k[1] ? k[0] : k[1], hi = k[0] < k[1] ? k[1] : k[0];
        if (lo > 0) {
            d->overlap_u = overlap(U[0], U[1], m, k[0], k[1], q, C) / (double)lo;
            d->overlap_v = overlap(V[0], V[1], n, k[0], k[1], q, C) / (double)lo;
        }
        d->chance_u = (double)hi / (double)m;
        d->chance_v = (double)hi / (double)n;
    }
    free(A);
    free(B);
    for (int i = 0; i < 2; i++) {
        free(U[i]);
        free(S[i]);
        free(Vt[i]);
        free(V[i]);
    }
    free(C);
    return rc;
}

int lad_diff(const lad_model *a, const lad_model *b, const lad_model *base, bool subspace,
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
        if (!lad_tensor_same_shape(ta, tb) || (tbase && !lad_tensor_same_shape(ta, tbase))) {
            rc = lad_fail(err, "tensor '%s' has different shapes in %s and %s", ta->name, a->ref,
                          !lad_tensor_same_shape(ta, tb) ? b->ref : base->ref);
            break;
        }
        if (!lad_tensor_mergeable(tb) || (tbase && !lad_tensor_mergeable(tbase))) {
            rc = lad_fail(err, "tensor '%s' is not a float tensor in every model", ta->name);
            break;
        }
        res[n] = (lad_diff_tensor){.name = ta->name, .n = ta->nelem};
        rc = diff_tensor(ta, tb, tbase, &res[n], buf, raw, err);
        if (rc == 0 && subspace && tbase && ta->ndim == 2 && ta->shape[0] > 0 &&
            ta->shape[1] > 0 && !lad_name_is_vocab(ta->name))
            rc = subspace_tensor(ta, tb, tbase, &res[n], err);
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
