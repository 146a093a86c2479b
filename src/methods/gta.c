/*
 * Generalized task arithmetic, as mergekit defines it: TIES, DARE (linear
 * and TIES) and Model Breadcrumbs are one algorithm with different
 * sparsification and sign consensus. Per tensor, for each fine-tune i:
 *
 *   d_i  = x_i - base                         the task vector
 *   d_i  = sparsify(d_i)                       magnitude top-k (TIES), random
 *                                              drop (DARE), or drop the top
 *                                              gamma outliers and the smallest
 *                                              (Breadcrumbs)
 *   wd_i = w_i * d_i
 *   with sign consensus: the elected sign is that of sum_i wd_i (or of the
 *   count of signs); mixed = sum of the wd_i with that sign, divided (when
 *   normalize) by the sum of their w_i; without: mixed = sum_i wd_i, divided
 *   (when normalize) by sum_i w_i
 *   out  = base + lambda * mixed
 *
 * All in fp32 (fp64 for F64 tensors), in this order. Magnitude selection is
 * exact (select.h): exactly int(density * n) elements per tensor, ties at
 * the threshold broken by lowest index; with GTA_SCOPE, int(density * n)
 * of the whole model's task vector (all merged tensors flattened in order),
 * as the TIES paper's code trims. DARE keeps an element when a
 * counter-based hash of (seed, tensor name, task index, element index) is
 * below density * 2^32, so the mask is the same for any thread count and
 * chunking, and rescales survivors by 1/density (as the DARE paper; mergekit
 * now matches L1 norms instead).
 *
 * With magnitude normalisation (GTA_NORM_MAG), a first statistics pass
 * measures each task vector's norm per tensor, and every d_i is scaled by
 * mean_j |d_j| / |d_i| (1 for a zero vector) before anything else.
 *
 * DELLA (lad_method_della) works on whole rows (the last dimension; a 1-D
 * tensor is one row): it ranks |d_i| within the row, ascending, ties to the
 * lower index; rank r of R gives the keep probability p = (density - eps)
 * + 2 eps (r - 1) / (R - 1); the draw is DARE's hash; survivors are
 * rescaled by 1/p, as the DELLA paper does (mergekit now matches L1 norms).
 *
 * Differences from mergekit, deliberate: density 0 drops the task vector
 * instead of failing; Breadcrumbs with int(gamma * n) == 0 keeps the top
 * int(density * n) instead of nothing (mergekit's indices[n_bot:-0] slice).
 */
#define _GNU_SOURCE /* qsort_r */
#include "gta.h"
#include "kernel.h"
#include "select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct gta_stats {
    int ntv, targets, digits;
    int first_select;               /* the pass the selection starts at */
    uint64_t nblocks;
    size_t nitems;
    double scale[GTA_MAX_TV];       /* magnitude normalisation, else 1 */
    float scalef[GTA_MAX_TV];
    double *norms;                  /* per item x task vector: |d|^2 */
    lad_select sel[GTA_MAX_TV * 2]; /* per task vector: keep-top, drop-top */
} gta_stats;

static size_t ntv(const lad_op *op) { return op->ninputs - 1; }
static int kind(const lad_op *op) { return (int)op->param[GTA_SPARSIFY]; }

static int targets(const lad_op *op)
{
    return kind(op) == GTA_MAGNITUDE ? 1 : kind(op) == GTA_OUTLIERS ? 2 : 0;
}

static bool norm_mag(const lad_op *op) { return op->param[GTA_NORM_MAG] != 0; }

static int gta_npasses(const lad_op *op, bool wide)
{
    int n = norm_mag(op) ? 1 : 0;
    if (targets(op) > 0)
        n += (wide ? 4 : 2) + 1; /* digit passes, then the tie count */
    return n;
}

static bool gta_model_scope(const lad_op *op) { return op->param[GTA_SCOPE] != 0; }

static size_t gta_stats_size(const lad_kctx *k)
{
    const lad_op *op = k->op;
    return sizeof(gta_stats) + ntv(op) * (size_t)targets(op) * (size_t)k->nblocks * sizeof(uint64_t) +
           ntv(op) * k->nitems * sizeof(double);
}

static size_t gta_acc_size(const lad_op *op)
{
    return ntv(op) * (size_t)targets(op) * LAD_SELECT_BINS * sizeof(uint64_t);
}

/* How many of n to keep from the top, per target, in mergekit's terms. */
static void keep_counts(const lad_op *op, size_t i, uint64_t n, uint64_t *keep_top,
                        uint64_t *drop_top)
{
    double density = op->param[GTA_TV(i, GTA_DENSITY)];
    if (density >= 1) {
        *keep_top = n;
        *drop_top = 0;
        return;
    }
    uint64_t target = density > 0 ? (uint64_t)(density * (double)n) : 0;
    *keep_top = target;
    *drop_top = 0;
    if (kind(op) == GTA_OUTLIERS) {
        double gamma = op->param[GTA_TV(i, GTA_GAMMA)];
        uint64_t top = gamma > 0 ? (uint64_t)(gamma * (double)n) : 0;
        if (target + top > n) /* mergekit: fewer outliers to keep the density */
            top = n - target;
        *keep_top = target + top;
        *drop_top = top;
    }
}

static void gta_stats_init(const lad_kctx *k, bool wide)
{
    gta_stats *st = k->stats;
    const lad_op *op = k->op;
    st->ntv = (int)ntv(op);
    st->targets = targets(op);
    st->digits = wide ? 4 : 2;
    st->nblocks = k->nblocks;
    st->nitems = k->nitems;
    st->first_select = norm_mag(op) ? 1 : 0;
    for (int i = 0; i < st->ntv; i++) {
        st->scale[i] = 1;
        st->scalef[i] = 1;
    }
    uint64_t *blocks = (uint64_t *)(st + 1);
    st->norms = (double *)(blocks + (size_t)st->ntv * (size_t)st->targets * st->nblocks);
    for (int i = 0; i < st->ntv; i++) {
        uint64_t keep_top, drop_top;
        keep_counts(op, (size_t)i, k->nelem, &keep_top, &drop_top);
        for (int t = 0; t < st->targets; t++) {
            lad_select_init(&st->sel[i * st->targets + t], k->nelem, t == 0 ? keep_top : drop_top,
                            blocks);
            blocks += st->nblocks;
        }
    }
}

static uint64_t key_f32(float v)
{
    uint32_t u;
    v = fabsf(v);
    memcpy(&u, &v, 4);
    return u;
}

static uint64_t key_f64(double v)
{
    uint64_t u;
    v = fabs(v);
    memcpy(&u, &v, 8);
    return u;
}

/* The statistics passes, once per compute type: digit passes histogram the
 * keys that still match, the last pass counts keys equal to T per block. */
#define GTA_STATS(NAME, T, KEY, SCALE)                                                          \
    static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in, size_t n)      \
    {                                                                                           \
        gta_stats *st = k->stats;                                                               \
        uint64_t *hist = acc;                                                                   \
        uint64_t block = k->block_base + k->start / LAD_BLOCK;                                  \
        if (pass < st->first_select) { /* magnitude normalisation: the norms */                 \
            for (int i = 0; i < st->ntv; i++) {                                                 \
                double s2 = 0;                                                                  \
                for (size_t e = 0; e < n; e++) {                                                \
                    double d = (double)(in[i + 1][e] - in[0][e]);                               \
                    s2 += d * d;                                                                \
                }                                                                               \
                st->norms[k->item * (size_t)st->ntv + (size_t)i] += s2;                         \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        pass -= st->first_select;                                                               \
        for (int i = 0; i < st->ntv; i++)                                                       \
            for (int t = 0; t < st->targets; t++) {                                             \
                const lad_select *s = &st->sel[i * st->targets + t];                            \
                if (s->all || s->none)                                                          \
                    continue;                                                                   \
                const T *x = in[i + 1], *b = in[0], sc = (T)st->SCALE[i];                       \
                if (pass < st->digits) {                                                        \
                    uint64_t *h = hist + (size_t)(i * st->targets + t) * LAD_SELECT_BINS;       \
                    for (size_t e = 0; e < n; e++) {                                            \
                        int bin = lad_select_bin(s, KEY((x[e] - b[e]) * sc), pass, st->digits); \
                        if (bin >= 0)                                                           \
                            h[bin]++;                                                           \
                    }                                                                           \
                } else {                                                                        \
                    uint64_t c = 0;                                                             \
                    for (size_t e = 0; e < n; e++)                                              \
                        c += KEY((x[e] - b[e]) * sc) == s->thresh;                              \
                    s->before[block] = c;                                                       \
                }                                                                               \
            }                                                                                   \
    }

GTA_STATS(gta_stats_f32, float, key_f32, scalef)
GTA_STATS(gta_stats_f64, double, key_f64, scale)

static void gta_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs, size_t naccs)
{
    (void)wide;
    gta_stats *st = k->stats;
    if (pass < st->first_select) {
        /* Norms added in item order (the same for any -j), then the scale
         * that brings each task vector to the mean norm. */
        double norm[GTA_MAX_TV], mean = 0;
        for (int i = 0; i < st->ntv; i++) {
            double s2 = 0;
            for (size_t it = 0; it < st->nitems; it++)
                s2 += st->norms[it * (size_t)st->ntv + (size_t)i];
            norm[i] = sqrt(s2);
            mean += norm[i] / st->ntv;
        }
        for (int i = 0; i < st->ntv; i++) {
            st->scale[i] = norm[i] > 0 ? mean / norm[i] : 1;
            st->scalef[i] = (float)st->scale[i];
        }
        return;
    }
    pass -= st->first_select;
    int nsel = st->ntv * st->targets;
    for (int s = 0; s < nsel; s++) {
        if (pass == st->digits) {
            lad_select_ties_done(&st->sel[s], st->nblocks);
            continue;
        }
        /* Fold the threads' histograms into the first one. */
        uint64_t *h0 = (uint64_t *)accs[0] + (size_t)s * LAD_SELECT_BINS;
        for (size_t a = 1; a < naccs; a++) {
            const uint64_t *h = (const uint64_t *)accs[a] + (size_t)s * LAD_SELECT_BINS;
            for (size_t b = 0; b < LAD_SELECT_BINS; b++)
                h0[b] += h[b];
        }
        lad_select_digit_done(&st->sel[s], h0, pass, st->digits);
    }
}

/* lowbias32 (C. Wellons): a 32-bit mixer for the counter-based RNG. */
static inline uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* The RNG key of task vector i of this tensor under this seed. */
static uint32_t tv_key(const lad_kctx *k, size_t i)
{
    uint64_t seed = (uint64_t)k->op->param[GTA_SEED];
    return mix32(k->key ^ mix32((uint32_t)seed ^ mix32((uint32_t)(seed >> 32) ^ mix32((uint32_t)i + 1))));
}

static inline uint32_t draw(uint32_t tvkey, uint64_t index)
{
    return mix32((uint32_t)index ^ mix32((uint32_t)(index >> 32) ^ tvkey));
}

/* Ascending |d|, then index: the order DELLA ranks a row in. */
static int by_magnitude(const void *a, const void *b, void *ctx)
{
    const double *mag = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (mag[i] != mag[j])
        return mag[i] < mag[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* DELLA: per task vector, the factor each element of this row is
 * multiplied by: 0 when dropped, 1/p (or 1) when kept. d[e] is fac's input:
 * the row's task vector, already scaled. */
static void della_factors(const lad_kctx *k, size_t i, const double *d, size_t n, double *fac,
                          double *mag, uint32_t *order)
{
    const lad_op *op = k->op;
    double density = op->param[GTA_TV(i, GTA_DENSITY)];
    double eps = op->param[GTA_TV(i, GTA_EPSILON)];
    bool rescale = op->param[GTA_RESCALE] != 0;
    if (density >= 1 || density <= 0) {
        for (size_t e = 0; e < n; e++)
            fac[e] = density >= 1;
        return;
    }
    for (size_t e = 0; e < n; e++) {
        mag[e] = fabs(d[e]);
        order[e] = (uint32_t)e;
    }
    qsort_r(order, n, sizeof *order, by_magnitude, mag);
    uint32_t key = tv_key(k, i);
    for (size_t r = 0; r < n; r++) {
        size_t e = order[r];
        double p = density - eps + (n > 1 ? 2 * eps * (double)r / (double)(n - 1) : 0);
        bool keep = (double)draw(key, k->start + e) < p * 4294967296.0;
        fac[e] = keep ? (rescale ? 1 / p : 1) : 0;
    }
}

/* The merge pass, once per compute type. */
#define GTA_KERNEL(NAME, T, KEY, SCALE)                                                         \
    static void NAME(const lad_kctx *k, T *restrict out, const T *const *in, size_t n)          \
    {                                                                                           \
        const lad_op *op = k->op;                                                               \
        const gta_stats *st = k->stats;                                                         \
        const size_t m = ntv(op);                                                               \
        const int sp = kind(op), cons = (int)op->param[GTA_CONSENSUS];                          \
        const bool normalize = op->param[GTA_NORMALIZE] != 0;                                   \
        const T lambda = (T)op->param[GTA_LAMBDA];                                              \
        T w[GTA_MAX_TV], scale[GTA_MAX_TV], wsum = 0;                                           \
        uint64_t thr[GTA_MAX_TV], seen[GTA_MAX_TV][2];                                          \
        uint32_t key[GTA_MAX_TV];                                                               \
        uint64_t block = k->block_base + k->start / LAD_BLOCK;                                  \
        for (size_t i = 0; i < m; i++) {                                                        \
            double density = op->param[GTA_TV(i, GTA_DENSITY)];                                 \
            w[i] = (T)op->param[GTA_TV(i, GTA_WEIGHT)];                                         \
            wsum += w[i];                                                                       \
            scale[i] = 1;                                                                       \
            if (sp == GTA_RANDOM) {                                                             \
                thr[i] = density >= 1 ? (1ull << 32)                                            \
                                      : density > 0 ? (uint64_t)(density * 4294967296.0) : 0;   \
                if (op->param[GTA_RESCALE] != 0 && density > 0 && density < 1)                  \
                    scale[i] = (T)(1.0 / density);                                              \
                key[i] = tv_key(k, i);                                                          \
            }                                                                                   \
            for (int t = 0; st && t < st->targets; t++) {                                       \
                const lad_select *s = &st->sel[i * (size_t)st->targets + (size_t)t];            \
                seen[i][t] = s->all || s->none ? 0 : s->before[block];                          \
            }                                                                                   \
        }                                                                                       \
        if (fabs((double)wsum) < 1e-8)                                                          \
            wsum = 1;                                                                           \
        double *fac = k->scratch; /* DELLA: m x n factors, then n magnitudes */                 \
        if (sp == GTA_DELLA) {                                                                  \
            double *row = fac + m * n, *mag = row + n;                                          \
            uint32_t *order = (uint32_t *)(mag + n);                                            \
            for (size_t i = 0; i < m; i++) {                                                    \
                for (size_t e = 0; e < n; e++)                                                  \
                    row[e] = (double)((in[i + 1][e] - in[0][e]) *                               \
                                      (st ? (T)st->SCALE[i] : (T)1));                           \
                della_factors(k, i, row, n, fac + i * n, mag, order);                           \
            }                                                                                   \
        }                                                                                       \
        for (size_t e = 0; e < n; e++) {                                                        \
            const T base = in[0][e];                                                            \
            T wd[GTA_MAX_TV], sum = 0;                                                          \
            int signs = 0;                                                                      \
            for (size_t i = 0; i < m; i++) {                                                    \
                T d = in[i + 1][e] - base;                                                      \
                if (st)                                                                         \
                    d *= (T)st->SCALE[i];                                                       \
                bool keep = true;                                                               \
                if (sp == GTA_RANDOM) {                                                         \
                    keep = draw(key[i], k->start + e) < thr[i];                                 \
                } else if (sp == GTA_DELLA) {                                                   \
                    keep = fac[i * n + e] != 0;                                                 \
                    scale[i] = (T)fac[i * n + e];                                               \
                } else if (sp != GTA_DENSE) {                                                   \
                    uint64_t kk = KEY(d);                                                       \
                    const lad_select *s = &st->sel[i * (size_t)st->targets];                    \
                    keep = lad_select_keep(&s[0], kk, &seen[i][0]);                             \
                    if (sp == GTA_OUTLIERS)                                                     \
                        keep &= !lad_select_keep(&s[1], kk, &seen[i][1]);                       \
                }                                                                               \
                d = keep ? d * scale[i] : (T)0;                                                 \
                wd[i] = d * w[i];                                                               \
                sum += wd[i];                                                                   \
                signs += (wd[i] > 0) - (wd[i] < 0);                                             \
            }                                                                                   \
            T mixed = 0, div = wsum;                                                            \
            if (cons != GTA_NO_CONSENSUS) {                                                     \
                int elected = (cons == GTA_SUM ? sum >= 0 : signs >= 0) ? 1 : -1;               \
                div = 0;                                                                        \
                for (size_t i = 0; i < m; i++)                                                  \
                    if ((wd[i] > 0) - (wd[i] < 0) == elected) {                                 \
                        mixed += wd[i];                                                         \
                        div += w[i];                                                            \
                    }                                                                           \
                if (div == 0)                                                                   \
                    div = 1;                                                                    \
            } else {                                                                            \
                for (size_t i = 0; i < m; i++)                                                  \
                    mixed += wd[i];                                                             \
            }                                                                                   \
            if (normalize)                                                                      \
                mixed /= div;                                                                   \
            out[e] = base + lambda * mixed;                                                     \
        }                                                                                       \
    }

GTA_KERNEL(gta_f32, float, key_f32, scalef)
GTA_KERNEL(gta_f64, double, key_f64, scale)

static uint64_t della_row_length(const lad_op *op, int ndim, const uint64_t *shape)
{
    (void)op;
    return ndim == 0 ? 1 : ndim == 1 ? shape[0] : ndim == 2 ? shape[1] : 0;
}

const lad_method lad_method_della = {
    .name = "della",
    .chunk_f32 = gta_f32,
    .chunk_f64 = gta_f64,
    .npasses = gta_npasses,
    .stats_size = gta_stats_size,
    .stats_init = gta_stats_init,
    .acc_size = gta_acc_size,
    .stats_f32 = gta_stats_f32,
    .stats_f64 = gta_stats_f64,
    .pass_end = gta_pass_end,
    .row_length = della_row_length,
};

const lad_method lad_method_gta = {
    .name = "gta",
    .chunk_f32 = gta_f32,
    .chunk_f64 = gta_f64,
    .npasses = gta_npasses,
    .stats_size = gta_stats_size,
    .stats_init = gta_stats_init,
    .model_scope = gta_model_scope,
    .acc_size = gta_acc_size,
    .stats_f32 = gta_stats_f32,
    .stats_f64 = gta_stats_f64,
    .pass_end = gta_pass_end,
};
