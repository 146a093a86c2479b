/*
 * Iso-C (Marczak et al., "No Task Left Behind: Isotropic Model Merging with
 * Common and Task-Specific Subspaces", ICML 2025), as FusionBench's iso_c
 * computes it. Inputs: in[0] the base, in[1..T] the fine-tunes. Params:
 * ISO_LAMBDA (the scale of the merged task vector, default 1),
 * ISO_MEAN_ONLY (1: this tensor is not given the subspace treatment:
 * embeddings, heads, excluded names), then the T weights from ISO_W0, each
 * scaling its task vector tau_t = w_t (x_t - base) first.
 *
 * A 2-D matrix: M = sum_t tau_t, M = U diag(S) V^T, and every singular value
 * replaced by their mean: merged = mean(S) U V^T. Anything else: merged =
 * the mean of the tau_t. out = base + lambda merged.
 *
 * Where M is rank-deficient, the singular vectors of its zero singular
 * values are arbitrary (FusionBench's output then depends on the SVD
 * routine); ladle takes U V^T over the nonzero ones only (singular values
 * above max(m, n) * 2^-23 * S_max, LAPACK's rank rule), the polar factor
 * of M, which is unique. mean(S) is still over all min(m, n) values.
 *
 * One statistics pass writes M (fp32, each work item its own elements: no
 * reduction), pass_end does the SVD (LAPACK sgesdd) and leaves merged in
 * the statistics buffer; the merge pass adds it. Memory: the matrix twice
 * in fp32, plus LAPACK's work space, for one tensor at a time.
 */
#include "kernel.h"
#include "../linalg/linalg.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct iso_stats {
    bool matrix;       /* the subspace treatment applies */
    float *m;          /* M, then merged (nelem values) */
} iso_stats;

static size_t ntv(const lad_op *op) { return op->ninputs - 1; }

static bool is_matrix(const lad_kctx *k)
{
    return k->ndim == 2 && k->op->param[ISO_MEAN_ONLY] == 0 && k->shape[0] > 0 &&
           k->shape[1] > 0;
}

static int iso_npasses(const lad_op *op, bool wide)
{
    (void)wide;
    return op->param[ISO_MEAN_ONLY] == 0; /* (a non-matrix's pass does nothing) */
}

static size_t iso_stats_size(const lad_kctx *k)
{
    return sizeof(iso_stats) + (is_matrix(k) ? k->nelem : 0) * sizeof(float) + 16;
}

static size_t iso_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

static void iso_stats_init(const lad_kctx *k, bool wide)
{
    (void)wide;
    iso_stats *st = k->stats;
    st->matrix = is_matrix(k);
    st->m = (float *)(st + 1);
}

/* M's elements of this chunk: sum_t w_t (x_t - b), in input order. */
#define ISO_STATS(NAME, T)                                                                    \
    static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in, size_t n)    \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        iso_stats *st = k->stats;                                                             \
        if (!st->matrix)                                                                      \
            return;                                                                           \
        float *m = st->m + k->start;                                                          \
        for (size_t e = 0; e < n; e++)                                                        \
            m[e] = 0;                                                                         \
        for (size_t t = 0; t < ntv(k->op); t++) {                                             \
            const float w = (float)k->op->param[ISO_W0 + t];                                  \
            for (size_t e = 0; e < n; e++)                                                    \
                m[e] += w * (float)(in[t + 1][e] - in[0][e]);                                 \
        }                                                                                     \
    }

ISO_STATS(iso_stats_f32, float)
ISO_STATS(iso_stats_f64, double)

static const char *iso_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                                size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    iso_stats *st = k->stats;
    if (!st->matrix)
        return NULL;
    size_t rows = (size_t)k->shape[0], cols = (size_t)k->shape[1];
    size_t q = rows < cols ? rows : cols;
    float *U = malloc(rows * q * sizeof *U + 1), *S = malloc(q * sizeof *S + 1);
    float *Vt = malloc(q * cols * sizeof *Vt + 1);
    lad_error err = {0};
    const char *why = NULL;
    lad_svd_opts exact = {.exact = true};
    if (!U || !S || !Vt)
        why = "out of memory for its SVD";
    else if (lad_svd(st->m, rows, cols, q, &exact, U, S, Vt, &err))
        why = "its SVD failed (LAPACK did not converge)";
    if (!why) {
        double mean = 0;
        for (size_t i = 0; i < q; i++)
            mean += S[i];
        mean /= (double)q;
        float tol = (float)(rows > cols ? rows : cols) * FLT_EPSILON * S[0];
        size_t r = 0;
        while (r < q && S[r] > tol)
            r++;
        if (r == 0) /* M = 0 */
            memset(st->m, 0, rows * cols * sizeof *st->m);
        else /* merged = mean(S) U_r V_r^T */
            lad_gemm(rows, cols, r, (float)mean, U, q, Vt, cols, st->m);
    }
    free(U);
    free(S);
    free(Vt);
    return why;
}

/* out = base + lambda merged: merged from the statistics (a matrix), or
 * the mean of the weighted task vectors. */
#define ISO_KERNEL(NAME, T)                                                                   \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const lad_op *op = k->op;                                                             \
        const iso_stats *st = k->stats;                                                       \
        const T lambda = (T)op->param[ISO_LAMBDA], *restrict b = in[0];                       \
        if (st && op->param[ISO_MEAN_ONLY] == 0 && st->matrix) {                              \
            const float *restrict m = st->m + k->start;                                       \
            for (size_t e = 0; e < n; e++)                                                    \
                out[e] = b[e] + lambda * (T)m[e];                                             \
            return;                                                                           \
        }                                                                                     \
        size_t T_ = ntv(op);                                                                  \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = 0;                                                                       \
        for (size_t t = 0; t < T_; t++) {                                                     \
            const T w = (T)op->param[ISO_W0 + t], *restrict x = in[t + 1];                    \
            for (size_t e = 0; e < n; e++)                                                    \
                out[e] += w * (x[e] - b[e]);                                                  \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = b[e] + lambda * (out[e] / (T)T_);                                        \
    }

ISO_KERNEL(iso_f32, float)
ISO_KERNEL(iso_f64, double)

const lad_method lad_method_iso_c = {
    .name = "iso_c",
    .chunk_f32 = iso_f32,
    .chunk_f64 = iso_f64,
    .npasses = iso_npasses,
    .stats_size = iso_stats_size,
    .stats_init = iso_stats_init,
    .acc_size = iso_acc_size,
    .stats_f32 = iso_stats_f32,
    .stats_f64 = iso_stats_f64,
    .pass_end = iso_pass_end,
};
