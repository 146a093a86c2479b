/*
 * Model Stock (Jang et al. 2024), with mergekit's semantics. Inputs: in[0]
 * = the base w0, in[1..N] = N >= 2 fine-tunes. lad_method_model_stock
 * takes each tensor whole; lad_method_model_stock_rows (filter_wise) each
 * row along the last dimension (a 1-D tensor is one row), with its own t.
 *
 * Per tensor, from the fine-tunes' displacements o_i = w_i - w0: the mean
 * over pairs i < j of cos_ij = o_i.o_j / max(|o_i||o_j|, 1e-6), clamped to
 * [-1, 1]; t = N cos / (1 + (N - 1) cos); out = t * mean(w_i) + (1 - t) w0,
 * where mean(w_i) = (w_1 + ... + w_N) / N as mergekit sums it.
 *
 * One statistics pass gathers the dot products in fp64 (8 partial sums per
 * product and kernel call, in lane order), per work item, added in item
 * order: the same result for any thread count.
 */
#include "kernel.h"

#include <math.h>
#include <string.h>


static size_t nft(const lad_op *op) { return op->ninputs - 1; }
static size_t nsums(size_t n) { return n + n * (n - 1) / 2; }

/* t from the sums of m displacements: |o_i|^2, then o_i.o_j for i < j. */
static double stock_t(size_t m, const double *tot)
{
    double cos_sum = 0;
    size_t p = m, npairs = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = i + 1; j < m; j++, p++, npairs++) {
            double norm = sqrt(tot[i]) * sqrt(tot[j]);
            double c = tot[p] / (norm > 1e-6 ? norm : 1e-6);
            cos_sum += c < -1 ? -1 : c > 1 ? 1 : c;
        }
    double cos = cos_sum / (double)npairs, N = (double)m;
    return N * cos / (1 + (N - 1) * cos);
}

typedef struct stock_stats {
    double t;
    float tf, omtf; /* t and 1 - t in fp32 */
    double sums[];  /* per item: |o_i|^2 then o_i.o_j for i < j */
} stock_stats;

static int stock_npasses(const lad_op *op, bool wide)
{
    (void)op;
    (void)wide;
    return 1;
}

static size_t stock_stats_size(const lad_kctx *k)
{
    return sizeof(stock_stats) + k->nitems * nsums(nft(k->op)) * sizeof(double);
}

static size_t stock_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

/* Adds the chunk's sums to s (N norms, then the pairs' dots), in lanes
 * (kernel.h): each task vector converted to fp64 once, into o (m x n
 * doubles of scratch), then one sum at a time (its lanes in registers). */
#define STOCK_SUMS(NAME, T)                                                                   \
    LAD_KERNEL static void NAME(size_t m, const T *const *in, size_t n, double *s,            \
                                double *o)                                                    \
    {                                                                                         \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T *restrict x = in[i + 1], *restrict b = in[0];                             \
            double *restrict oi = o + i * n;                                                  \
            for (size_t e = 0; e < n; e++)                                                    \
                oi[e] = (double)(x[e] - b[e]);                                                \
        }                                                                                     \
        size_t p = m;                                                                         \
        for (size_t i = 0; i < m; i++)                                                        \
            for (size_t j = i; j < m; j++) /* |o_i|^2 at s[i]; the pairs from s[m] on */      \
                s[j == i ? i : p++] += lad_dot(o + i * n, o + j * n, n);                      \
    }

STOCK_SUMS(stock_sums_f32, float)
STOCK_SUMS(stock_sums_f64, double)

#define STOCK_STATS(NAME, T, SUMS)                                                            \
    static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in, size_t n)    \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        size_t m = nft(k->op);                                                                \
        SUMS(m, in, n, ((stock_stats *)k->stats)->sums + k->item * nsums(m), k->scratch);    \
    }

STOCK_STATS(stock_stats_f32, float, stock_sums_f32)
STOCK_STATS(stock_stats_f64, double, stock_sums_f64)

static const char *stock_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                           size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    stock_stats *st = k->stats;
    size_t m = nft(k->op), ns = nsums(m);
    double tot[STOCK_MAX + STOCK_MAX * (STOCK_MAX - 1) / 2] = {0};
    for (size_t it = 0; it < k->nitems; it++)
        for (size_t q = 0; q < ns; q++)
            tot[q] += st->sums[it * ns + q];
    st->t = stock_t(m, tot);
    st->tf = (float)st->t;
    st->omtf = (float)(1 - st->t);
    return NULL;
}

/* The merge pass, once per compute type: T_COEF(st) gives t and 1 - t. */
#define STOCK_KERNEL(NAME, T, TCOEF, OMTCOEF, SUMS)                                           \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const stock_stats *st = k->stats;                                                     \
        size_t m = nft(k->op);                                                                \
        T t, omt;                                                                             \
        if (!k->op->method->row_length) {                                                     \
            t = TCOEF;                                                                        \
            omt = OMTCOEF;                                                                    \
        } else { /* by rows: this row's t */                                                  \
            double row[STOCK_MAX + STOCK_MAX * (STOCK_MAX - 1) / 2] = {0};                    \
            SUMS(m, in, n, row, k->scratch);                                                  \
            double tr = stock_t(m, row);                                                      \
            t = (T)tr;                                                                        \
            omt = (T)(1 - tr);                                                                \
        }                                                                                     \
        const T nn = (T)m, *restrict w0 = in[0];                                              \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = in[1][e];                                                                \
        for (size_t i = 2; i <= m; i++) {                                                     \
            const T *restrict x = in[i];                                                      \
            for (size_t e = 0; e < n; e++)                                                    \
                out[e] += x[e];                                                               \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = t * (out[e] / nn) + omt * w0[e];                                         \
    }

STOCK_KERNEL(stock_f32, float, st->tf, st->omtf, stock_sums_f32)
STOCK_KERNEL(stock_f64, double, st->t, 1 - st->t, stock_sums_f64)

const lad_method lad_method_model_stock = {
    .name = "model_stock",
    .chunk_f32 = stock_f32,
    .chunk_f64 = stock_f64,
    .npasses = stock_npasses,
    .stats_size = stock_stats_size,
    .acc_size = stock_acc_size,
    .stats_f32 = stock_stats_f32,
    .stats_f64 = stock_stats_f64,
    .pass_end = stock_pass_end,
};

static uint64_t stock_row_length(const lad_op *op, int ndim, const uint64_t *shape)
{
    (void)op;
    return ndim ? shape[ndim - 1] : 1;
}

/* filter_wise: no statistics, a row per kernel call. */
const lad_method lad_method_model_stock_rows = {
    .name = "model_stock",
    .chunk_f32 = stock_f32,
    .chunk_f64 = stock_f64,
    .row_length = stock_row_length,
};
