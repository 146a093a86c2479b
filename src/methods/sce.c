/*
 * SCE (Select, Calculate, Erase; Wan et al. 2024, "FuseChat"), as mergekit's
 * sce computes it. Inputs: in[0] the base, in[1..N] the fine-tunes. Param:
 * SCE_TOPK (select_topk, default 1). Per tensor, task vectors d_i = x_i -
 * base:
 *
 *   select    with 0 < topk < 1, keep the elements whose variance across
 *             the N task vectors (population variance) is among the
 *             K = int(nonzero variances * topk) largest; the others are
 *             zero in every d_i (topk <= 0: all zero)
 *   calculate w_i = mean(d_i^2) / sum_j mean(d_j^2), or 1/N when that sum
 *             is below 1e-6
 *   erase     per element, the elected sign is that of sum_i d_i (+ when 0);
 *             d_i counts where its sign is the elected one (zeros never)
 *   out       base + sum_i w_i d_i [counts] / max(sum_i w_i [counts], 1e-6)
 *
 * The selection is exact and streaming (select.h): variances computed in
 * fp64 and keyed in the compute type, ties at the threshold to the lowest
 * index (mergekit's topk leaves them to the sort). K follows mergekit's
 * arithmetic (fp32 product, truncated). The weights' sums are fp64, in
 * LAD_LANES lanes per kernel call, per work item, in item order; the
 * element arithmetic is fp32 (fp64 for F64), in
 * mergekit's order. Passes: 2 (F64: 4) digit passes, the first of which
 * also counts the nonzero variances (K is known at its end, before its
 * histogram is read), and the tie count when selecting, then the weights:
 * the same for any -j.
 */
#include "kernel.h"
#include "select.h"

#include <math.h>

#define SCE_MAX 64

typedef struct sce_stats {
    bool select;
    int digits;
    double w[SCE_MAX];
    float wf[SCE_MAX];
    lad_select sel;
    uint64_t *nnz;   /* per item: nonzero variances */
    double *sq;      /* per item x fine-tune: sum of squares of the selected d_i */
    uint64_t before[];
} sce_stats;

static size_t nft(const lad_op *op) { return op->ninputs - 1; }
static bool selects(const lad_op *op)
{
    return op->param[SCE_TOPK] > 0 && op->param[SCE_TOPK] < 1;
}

static int sce_npasses(const lad_op *op, bool wide)
{
    return selects(op) ? (wide ? 4 : 2) + 1 + 1 : 1;
}

static size_t sce_stats_size(const lad_kctx *k)
{
    return sizeof(sce_stats) + (k->nblocks + k->nitems) * sizeof(uint64_t) +
           k->nitems * nft(k->op) * sizeof(double);
}

static size_t sce_acc_size(const lad_op *op)
{
    return selects(op) ? LAD_SELECT_BINS * sizeof(uint64_t) : 0;
}

static void sce_stats_init(const lad_kctx *k, bool wide)
{
    sce_stats *st = k->stats;
    st->select = selects(k->op);
    st->digits = wide ? 4 : 2;
    st->nnz = st->before + k->nblocks;
    st->sq = (double *)(st->nnz + k->nitems);
}

/* The pass's role: a digit (the first with the nonzero count), the ties,
 * or the weights. */
enum { P_DIGIT, P_TIES, P_WEIGHTS };
static int role(const sce_stats *st, int pass, int *digit)
{
    if (!st->select)
        return P_WEIGHTS;
    *digit = pass;
    return pass < st->digits ? P_DIGIT : pass == st->digits ? P_TIES : P_WEIGHTS;
}

/* Variances of the N task vectors (population), fp64, of the n elements
 * of a block: var[0..n-1], with mean[0..n-1] as scratch. Each element gets
 * the operations of the one-element form (mean = 0, += each d_i, /= N;
 * v = 0, += each (d_i - mean)^2, / N) in the same order; the loops over
 * the block vectorise. */
#define SCE_VARS(NAME, T)                                                                     \
    static inline void NAME(const T *const *in, size_t m, size_t n, double *restrict var,     \
                            double *restrict mean)                                            \
    {                                                                                         \
        const T *restrict b = in[0];                                                          \
        for (size_t e = 0; e < n; e++)                                                        \
            mean[e] = var[e] = 0;                                                             \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T *restrict x = in[i + 1];                                                  \
            for (size_t e = 0; e < n; e++)                                                    \
                mean[e] += (double)(x[e] - b[e]);                                             \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            mean[e] /= (double)m;                                                             \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T *restrict x = in[i + 1];                                                  \
            for (size_t e = 0; e < n; e++) {                                                  \
                double d = (double)(x[e] - b[e]) - mean[e];                                   \
                var[e] += d * d;                                                              \
            }                                                                                 \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            var[e] /= (double)m;                                                              \
    }

SCE_VARS(vars_f32, float)
SCE_VARS(vars_f64, double)

/* A block's variances live in the kernel scratch after the merge kernel's
 * four arrays of n values of T: 2n doubles. */
#define SCE_VAR_SCRATCH(k, T, n) ((double *)(void *)((char *)(k)->scratch + 4 * (n) * sizeof(T)))

/* The selection mask of a block of n elements: keep[e] 1 or 0. */
#define SCE_MASK(NAME, T, VARS, KEY, VT)                                                      \
    LAD_KERNEL static void NAME(const lad_kctx *k, const T *const *in, size_t n, T *keep)     \
    {                                                                                         \
        const sce_stats *st = k->stats;                                                       \
        size_t m = nft(k->op);                                                                \
        if (!selects(k->op)) {                                                                \
            for (size_t e = 0; e < n; e++)                                                    \
                keep[e] = k->op->param[SCE_TOPK] >= 1;                                        \
            return;                                                                           \
        }                                                                                     \
        double *var = SCE_VAR_SCRATCH(k, T, n);                                               \
        VARS(in, m, n, var, var + n);                                                         \
        uint64_t seen = st->sel.all || st->sel.none                                           \
                            ? 0 : st->sel.before[k->block_base + k->start / LAD_BLOCK];       \
        for (size_t e = 0; e < n; e++)                                                        \
            keep[e] = lad_select_keep(&st->sel, KEY((VT)var[e]), &seen);                      \
    }

SCE_MASK(sce_mask_f32, float, vars_f32, lad_select_key_f32, float)
SCE_MASK(sce_mask_f64, double, vars_f64, lad_select_key_f64, double)

/* Scratch: keep (n values of T). */
#define SCE_STATS(NAME, T, VARS, KEY, VT, MASK)                                               \
    LAD_KERNEL static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in,   \
                                size_t n)                                                     \
    {                                                                                         \
        sce_stats *st = k->stats;                                                             \
        size_t m = nft(k->op);                                                                \
        double *var = SCE_VAR_SCRATCH(k, T, n);                                               \
        int digit = 0;                                                                        \
        switch (role(st, pass, &digit)) {                                                     \
        case P_DIGIT: {                                                                       \
            uint64_t *hist = acc;                                                             \
            if (digit > 0 && (st->sel.all || st->sel.none))                                   \
                return;                                                                       \
            VARS(in, m, n, var, var + n);                                                     \
            if (digit == 0) { /* K is not known yet: count, and histogram every key */       \
                uint64_t nnz = 0;                                                             \
                for (size_t e = 0; e < n; e++) {                                              \
                    nnz += var[e] != 0;                                                       \
                    hist[lad_select_bin(&st->sel, KEY((VT)var[e]), 0, st->digits)]++;         \
                }                                                                             \
                st->nnz[k->item] += nnz;                                                      \
                return;                                                                       \
            }                                                                                 \
            for (size_t e = 0; e < n; e++) {                                                  \
                int bin = lad_select_bin(&st->sel, KEY((VT)var[e]), digit, st->digits);       \
                if (bin >= 0)                                                                 \
                    hist[bin]++;                                                              \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        case P_TIES: {                                                                        \
            if (st->sel.all || st->sel.none)                                                  \
                return;                                                                       \
            uint64_t c = 0;                                                                   \
            VARS(in, m, n, var, var + n);                                                     \
            for (size_t e = 0; e < n; e++)                                                    \
                c += KEY((VT)var[e]) == st->sel.thresh;                                       \
            st->sel.before[k->block_base + k->start / LAD_BLOCK] = c;                         \
            return;                                                                           \
        }                                                                                     \
        default: {                                                                            \
            T *keep = k->scratch;                                                             \
            MASK(k, in, n, keep);                                                             \
            double *sq = st->sq + k->item * m;                                                \
            for (size_t i = 0; i < m; i++) {                                                  \
                double lanes[LAD_LANES] = {0};                                                \
                const T *restrict x = in[i + 1], *restrict b = in[0];                         \
                size_t e = 0;                                                                 \
                for (; e + LAD_LANES <= n; e += LAD_LANES)                                    \
                    for (int l = 0; l < LAD_LANES; l++) {                                     \
                        double d = keep[e + l] != 0 ? (double)(x[e + l] - b[e + l]) : 0;      \
                        lanes[l] += d * d;                                                    \
                    }                                                                         \
                for (; e < n; e++) {                                                          \
                    double d = keep[e] != 0 ? (double)(x[e] - b[e]) : 0;                      \
                    lanes[0] += d * d;                                                        \
                }                                                                             \
                sq[i] += lad_fold(lanes);                                                     \
            }                                                                                 \
        }                                                                                     \
        }                                                                                     \
    }

SCE_STATS(sce_stats_f32, float, vars_f32, lad_select_key_f32, float, sce_mask_f32)
SCE_STATS(sce_stats_f64, double, vars_f64, lad_select_key_f64, double, sce_mask_f64)

static const char *sce_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                                size_t naccs)
{
    (void)wide;
    sce_stats *st = k->stats;
    size_t m = nft(k->op);
    int digit = 0;
    switch (role(st, pass, &digit)) {
    case P_DIGIT: {
        if (digit == 0) {
            uint64_t nnz = 0;
            for (size_t it = 0; it < k->nitems; it++)
                nnz += st->nnz[it];
            /* mergekit: int(count_nonzero(var) * select_topk), an fp32 product */
            float kf = (float)nnz * (float)k->op->param[SCE_TOPK];
            lad_select_init(&st->sel, k->nelem, (uint64_t)kf, st->before);
        }
        uint64_t *h0 = accs[0];
        for (size_t a = 1; a < naccs; a++)
            for (size_t b = 0; b < LAD_SELECT_BINS; b++)
                h0[b] += ((const uint64_t *)accs[a])[b];
        lad_select_digit_done(&st->sel, h0, digit, st->digits);
        return NULL;
    }
    case P_TIES:
        lad_select_ties_done(&st->sel, k->nblocks);
        return NULL;
    default:
        break;
    }
    double mean[SCE_MAX], sum = 0;
    for (size_t i = 0; i < m; i++) {
        double s = 0;
        for (size_t it = 0; it < k->nitems; it++)
            s += st->sq[it * m + i];
        mean[i] = s / (double)k->nelem;
        sum += mean[i];
    }
    for (size_t i = 0; i < m; i++) {
        st->w[i] = fabs(sum) < 1e-6 ? 1.0 / (double)m : mean[i] / sum;
        st->wf[i] = (float)st->w[i];
    }
    return NULL;
}

/* Scratch: keep, the elected sign's sum, num, den (n values of T each). */
#define SCE_KERNEL(NAME, T, W, MASK)                                                          \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const sce_stats *st = k->stats;                                                       \
        size_t m = nft(k->op);                                                                \
        const T *restrict b = in[0];                                                          \
        T *restrict keep = k->scratch, *restrict sum = keep + n, *restrict num = sum + n;     \
        T *restrict den = num + n;                                                            \
        MASK(k, in, n, keep);                                                                 \
        for (size_t e = 0; e < n; e++)                                                        \
            sum[e] = num[e] = den[e] = 0;                                                     \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T *restrict x = in[i + 1];                                                  \
            for (size_t e = 0; e < n; e++)                                                    \
                sum[e] += keep[e] != 0 ? x[e] - b[e] : (T)0;                                  \
        }                                                                                     \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T *restrict x = in[i + 1], w = W[i];                                        \
            for (size_t e = 0; e < n; e++) {                                                  \
                T d = keep[e] != 0 ? x[e] - b[e] : (T)0;                                      \
                int agree = sum[e] >= 0 ? d > 0 : d < 0;                                      \
                num[e] += agree ? d * w : (T)0;                                               \
                den[e] += agree ? w : (T)0;                                                   \
            }                                                                                 \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = b[e] + num[e] / (den[e] > (T)1e-6 ? den[e] : (T)1e-6);                   \
    }

SCE_KERNEL(sce_f32, float, st->wf, sce_mask_f32)
SCE_KERNEL(sce_f64, double, st->w, sce_mask_f64)

const lad_method lad_method_sce = {
    .name = "sce",
    .chunk_f32 = sce_f32,
    .chunk_f64 = sce_f64,
    .npasses = sce_npasses,
    .stats_size = sce_stats_size,
    .stats_init = sce_stats_init,
    .acc_size = sce_acc_size,
    .stats_f32 = sce_stats_f32,
    .stats_f64 = sce_stats_f64,
    .pass_end = sce_pass_end,
};
