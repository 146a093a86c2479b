/*
 * The subspace methods: per 2-D weight matrix, a merge of the task vectors
 * in their singular subspaces (LAPACK's SVD); every other tensor (and a
 * matrix the op marks ISO_MEAN_ONLY: embeddings, heads, excluded names)
 * gets the mean of the task vectors. Inputs: in[0] the base, in[1..T] the
 * fine-tunes; params ISO_LAMBDA (the merged task vector's scale), ISO_MEAN_ONLY,
 * then the T weights from ISO_W0, each scaling its task vector tau_t =
 * w_t (x_t - base) first; out = base + lambda merged.
 *
 * Both work the same way: one statistics pass copies what the SVDs need
 * into the statistics buffer (fp32; each work item its own elements, no
 * reduction), pass_end decomposes and leaves merged at the buffer's start,
 * the merge pass adds it. One matrix at a time is held.
 *
 * Iso-C (lad_method_iso_c; Marczak et al., "No Task Left Behind: Isotropic
 * Model Merging with Common and Task-Specific Subspaces", ICML 2025), as
 * FusionBench's iso_c: M = sum_t tau_t = U diag(S) V^T, every singular
 * value replaced by their mean: merged = mean(S) U V^T. Where M is
 * rank-deficient, the singular vectors of its zero singular values are
 * arbitrary (FusionBench's output then depends on the SVD routine); ladle
 * takes U V^T over the nonzero ones only (above max(m, n) * 2^-23 * S_max,
 * LAPACK's rank rule), M's polar factor, which is unique; mean(S) is still
 * over all min(m, n) values. Buffer: M.
 *
 * TSV-M (lad_method_tsv; Gargiulo et al., "Task Singular Vectors: Reducing
 * Task Interference in Model Merging", CVPR 2025), as FusionBench's
 * compute_and_sum_svd_mem_reduction: for an m x n matrix (q = min(m, n),
 * k = int(q * (1 / T)) as it computes it), each tau_t = U_t S_t V_t^T keeps
 * its top k triplets; laid side by side, U_cat = [U_1k ... U_Tk] (m x q,
 * zero past T k columns), S_cat, V_cat likewise; U_cat and V_cat are
 * replaced by their polar factors (P = A B^T from A S B^T, the nearest
 * orthonormal matrices: FusionBench's u_u @ vh_u); merged = P_U diag(S_cat)
 * P_V^T. Where a tau_t has fewer than k nonzero singular values, the
 * vectors of its zero ones are arbitrary, yet would enter the polar factors
 * and change the others' columns; ladle drops them (zero columns, as the
 * padding), which makes the result unique. (Truncating inside a block of
 * equal singular values stays ambiguous, as in the paper.) Buffer: the T
 * task vectors; T + 2 SVDs.
 */
#include "kernel.h"
#include "../linalg/linalg.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct sub_stats {
    bool matrix;       /* the subspace treatment applies */
    float *buf;        /* what pass_end decomposes; then merged, at its start */
} sub_stats;

static size_t ntv(const lad_op *op) { return op->ninputs - 1; }

static bool is_matrix(const lad_kctx *k)
{
    return k->ndim == 2 && k->op->param[ISO_MEAN_ONLY] == 0 && k->shape[0] > 0 &&
           k->shape[1] > 0;
}

static int sub_npasses(const lad_op *op, bool wide)
{
    (void)wide;
    return op->param[ISO_MEAN_ONLY] == 0; /* (a non-matrix's pass does nothing) */
}

static size_t sub_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

static void sub_stats_init(const lad_kctx *k, bool wide)
{
    (void)wide;
    sub_stats *st = k->stats;
    st->matrix = is_matrix(k);
    st->buf = (float *)(st + 1);
}

/* Iso-C's buffer: M; TSV's: the T task vectors. */
static size_t iso_stats_size(const lad_kctx *k)
{
    return sizeof(sub_stats) + (is_matrix(k) ? k->nelem : 0) * sizeof(float) + 16;
}

static size_t tsv_stats_size(const lad_kctx *k)
{
    return sizeof(sub_stats) + (is_matrix(k) ? k->nelem * ntv(k->op) : 0) * sizeof(float) + 16;
}

/* The chunk's part of the buffer: M = sum_t tau_t (sum), or each tau_t in
 * its own slot (each). */
#define SUB_STATS(NAME, T, SUM)                                                               \
    static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in, size_t n)    \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        sub_stats *st = k->stats;                                                             \
        if (!st->matrix)                                                                      \
            return;                                                                           \
        if (SUM)                                                                              \
            for (size_t e = 0; e < n; e++)                                                    \
                st->buf[k->start + e] = 0;                                                    \
        for (size_t t = 0; t < ntv(k->op); t++) {                                             \
            const float w = (float)k->op->param[ISO_W0 + t];                                  \
            float *d = st->buf + (SUM ? 0 : t * k->nelem) + k->start;                         \
            for (size_t e = 0; e < n; e++) {                                                  \
                float v = w * (float)(in[t + 1][e] - in[0][e]);                               \
                d[e] = SUM ? d[e] + v : v;                                                    \
            }                                                                                 \
        }                                                                                     \
    }

SUB_STATS(iso_stats_f32, float, true)
SUB_STATS(iso_stats_f64, double, true)
SUB_STATS(tsv_stats_f32, float, false)
SUB_STATS(tsv_stats_f64, double, false)

static const char *iso_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                                size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    sub_stats *st = k->stats;
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
    else if (lad_svd(st->buf, rows, cols, q, &exact, U, S, Vt, &err))
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
            memset(st->buf, 0, rows * cols * sizeof *st->buf);
        else /* merged = mean(S) U_r V_r^T */
            lad_gemm(rows, cols, r, (float)mean, U, q, Vt, cols, st->buf);
    }
    free(U);
    free(S);
    free(Vt);
    return why;
}

/* The polar factor of the row-major r x c matrix A (r >= c or not), in
 * place: A = W S Z^T -> W Z^T. */
static int polar(float *A, size_t r, size_t c, lad_error *err)
{
    size_t q = r < c ? r : c;
    float *W = malloc(r * q * sizeof *W + 1), *S = malloc(q * sizeof *S + 1);
    float *Zt = malloc(q * c * sizeof *Zt + 1);
    lad_svd_opts exact = {.exact = true};
    int rc = W && S && Zt ? lad_svd(A, r, c, q, &exact, W, S, Zt, err)
                          : lad_fail(err, "out of memory");
    if (rc == 0)
        lad_gemm(r, c, q, 1.0f, W, q, Zt, c, A);
    free(W);
    free(S);
    free(Zt);
    return rc;
}

static const char *tsv_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                                size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    sub_stats *st = k->stats;
    if (!st->matrix)
        return NULL;
    size_t m = (size_t)k->shape[0], n = (size_t)k->shape[1], q = m < n ? m : n;
    /* k as FusionBench computes it: int(q * (1 / T)) in doubles */
    size_t T = ntv(k->op), kk = (size_t)((double)q * (1.0 / (double)T));
    float *Ucat = calloc(m * q + 1, sizeof *Ucat), *Scat = calloc(q + 1, sizeof *Scat);
    float *Vcat = calloc(q * n + 1, sizeof *Vcat); /* rows: V's columns, i.e. Vt's rows */
    float *U = malloc(m * q * sizeof *U + 1), *S = malloc(q * sizeof *S + 1);
    float *Vt = malloc(q * n * sizeof *Vt + 1);
    lad_error err = {0};
    const char *why = NULL;
    lad_svd_opts exact = {.exact = true};
    if (!Ucat || !Scat || !Vcat || !U || !S || !Vt)
        why = "out of memory for its SVDs";
    for (size_t t = 0; !why && kk > 0 && t < T; t++) {
        if (lad_svd(st->buf + t * k->nelem, m, n, q, &exact, U, S, Vt, &err)) {
            why = "an SVD failed (LAPACK did not converge)";
            break;
        }
        float tol = (float)(m > n ? m : n) * FLT_EPSILON * S[0];
        for (size_t j = 0; j < kk && S[j] > tol; j++) { /* zero ones dropped */
            size_t col = t * kk + j;
            Scat[col] = S[j];
            for (size_t i = 0; i < m; i++)
                Ucat[i * q + col] = U[i * q + j];
            memcpy(Vcat + col * n, Vt + j * n, n * sizeof *Vcat);
        }
    }
    if (!why && kk > 0 && (polar(Ucat, m, q, &err) || polar(Vcat, q, n, &err)))
        why = "an SVD failed (LAPACK did not converge)";
    if (!why) { /* merged = P_U diag(S) P_V^T, into the first task's slot */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < q; j++)
                Ucat[i * q + j] *= Scat[j];
        if (kk > 0)
            lad_gemm(m, n, q, 1.0f, Ucat, q, Vcat, n, st->buf);
        else /* more tasks than the rank: nothing kept */
            memset(st->buf, 0, m * n * sizeof *st->buf);
    }
    free(Ucat);
    free(Scat);
    free(Vcat);
    free(U);
    free(S);
    free(Vt);
    return why;
}

/* out = base + lambda merged: merged from the statistics (a matrix), or
 * the mean of the weighted task vectors. */
#define SUB_KERNEL(NAME, T)                                                                   \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const lad_op *op = k->op;                                                             \
        const sub_stats *st = k->stats;                                                       \
        const T lambda = (T)op->param[ISO_LAMBDA], *restrict b = in[0];                       \
        if (st && op->param[ISO_MEAN_ONLY] == 0 && st->matrix) {                              \
            const float *restrict m = st->buf + k->start;                                     \
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

SUB_KERNEL(sub_f32, float)
SUB_KERNEL(sub_f64, double)

const lad_method lad_method_iso_c = {
    .name = "iso_c",
    .chunk_f32 = sub_f32,
    .chunk_f64 = sub_f64,
    .npasses = sub_npasses,
    .stats_size = iso_stats_size,
    .stats_init = sub_stats_init,
    .acc_size = sub_acc_size,
    .stats_f32 = iso_stats_f32,
    .stats_f64 = iso_stats_f64,
    .pass_end = iso_pass_end,
};

const lad_method lad_method_tsv = {
    .name = "tsv",
    .chunk_f32 = sub_f32,
    .chunk_f64 = sub_f64,
    .npasses = sub_npasses,
    .stats_size = tsv_stats_size,
    .stats_init = sub_stats_init,
    .acc_size = sub_acc_size,
    .stats_f32 = tsv_stats_f32,
    .stats_f64 = tsv_stats_f64,
    .pass_end = tsv_pass_end,
};
