/*
 * Arcee Fusion (mergekit's arcee_fusion): a fine-tune's changes are kept
 * only where they matter most. Inputs: in[0] the base b, in[1] the model p.
 * Per tensor, row by row along the last dimension (a 1-D tensor is one
 * row):
 *
 *   kl_row      = sum_j P_j log(P_j / Q_j), P = softmax(p_row) + 1e-8,
 *                 Q = softmax(b_row) + 1e-8
 *   importance  = |p - b| * kl_row, per element
 *   threshold   = median + 1.5 (q3 - q1) of the tensor's importances, the
 *                 q-quantile being the sorted values' element floor(q (n-1))
 *   out         = p where importance >= threshold, else b
 *
 * mergekit sorts at most 10^6 importances: for larger tensors it takes a
 * random sample of 10^6 (unseeded, so two runs differ). ladle takes the
 * exact quantiles of all of them (identical up to 10^6 elements), by an
 * exact streaming radix select (select.h) of the three ranks.
 *
 * Precision: softmax and KL in fp64 per row (exp and log within 1 ulp,
 * vmath.h; sums in LAD_LANES lanes), rounded to the compute type
 * (fp32, fp64 for F64 tensors); importance = |p - b| * kl and threshold =
 * median + 1.5 * (q3 - q1) in it, as mergekit computes them in the
 * tensor's dtype; out = b + (p - b) (mergekit's fused = b + delta * mask).
 * Passes: 2 (F64: 4) digit passes, the first of which also measures each
 * row's KL (a row is one kernel call) before it histograms the row.
 */
#include "kernel.h"
#include "select.h"
#include "vmath.h"

#include <math.h>
#include <string.h>

#define EPS 1e-8
static const double QUANTILE[3] = {0.5, 0.25, 0.75};

typedef struct fusion_stats {
    int digits;
    double thresh;
    float threshf;
    lad_select sel[3];  /* median, q1, q3 */
    double kl[];        /* per row */
} fusion_stats;

static uint64_t fusion_row_length(const lad_op *op, int ndim, const uint64_t *shape)
{
    (void)op;
    return ndim ? shape[ndim - 1] : 1;
}

static int fusion_npasses(const lad_op *op, bool wide)
{
    (void)op;
    return wide ? 4 : 2;
}

static size_t fusion_stats_size(const lad_kctx *k)
{
    return sizeof(fusion_stats) + (k->row ? k->nelem / k->row : 0) * sizeof(double);
}

static size_t fusion_acc_size(const lad_op *op)
{
    (void)op;
    return 3 * LAD_SELECT_BINS * sizeof(uint64_t);
}

static void fusion_stats_init(const lad_kctx *k, bool wide)
{
    fusion_stats *st = k->stats;
    st->digits = wide ? 4 : 2;
    uint64_t n = k->nelem;
    for (int q = 0; q < 3; q++) { /* the floor(q (n - 1))-th smallest: a rank from the top */
        uint64_t idx = n ? (uint64_t)(QUANTILE[q] * (double)(n - 1)) : 0;
        lad_select_init(&st->sel[q], n, n - idx, NULL);
        st->sel[q].all = false; /* the smallest is wanted too, not a mask of all */
    }
}

/* Keys ordered as the signed values (an importance may round below 0). */
static inline uint64_t key_f32(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return u >> 31 ? ~u : u | 0x80000000u;
}

static inline uint64_t key_f64(double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return u >> 63 ? ~u : u | 0x8000000000000000ull;
}

static float value_f32(uint64_t key)
{
    uint32_t u = (uint32_t)key;
    u = u >> 31 ? u & 0x7fffffffu : ~u;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static double value_f64(uint64_t key)
{
    uint64_t u = key >> 63 ? key & 0x7fffffffffffffffull : ~key;
    double v;
    memcpy(&v, &u, 8);
    return v;
}

/* A row's sum in LAD_LANES partial sums, folded in lane order. */
static inline double fusion_sum(const double *x, size_t n)
{
    double lanes[LAD_LANES] = {0};
    size_t e = 0;
    for (; e + LAD_LANES <= n; e += LAD_LANES)
        for (int l = 0; l < LAD_LANES; l++)
            lanes[l] += x[e + l];
    for (; e < n; e++)
        lanes[0] += x[e];
    return lad_fold(lanes);
}

/* A row's largest value as fmax finds it (NaN skipped; -inf for none),
 * without its call: in LAD_LANES lanes, which vectorise (a maximum is
 * exact, so in any order the same). */
#define FUSION_MAX(NAME, T)                                                                   \
    static inline double NAME(const T *x, size_t n)                                           \
    {                                                                                         \
        double lanes[LAD_LANES];                                                              \
        for (int l = 0; l < LAD_LANES; l++)                                                   \
            lanes[l] = -INFINITY;                                                             \
        size_t e = 0;                                                                         \
        for (; e + LAD_LANES <= n; e += LAD_LANES)                                            \
            for (int l = 0; l < LAD_LANES; l++)                                               \
                lanes[l] = (double)x[e + l] > lanes[l] ? (double)x[e + l] : lanes[l];         \
        for (; e < n; e++)                                                                    \
            lanes[0] = (double)x[e] > lanes[0] ? (double)x[e] : lanes[0];                     \
        double m = lanes[0];                                                                  \
        for (int l = 1; l < LAD_LANES; l++)                                                   \
            m = lanes[l] > m ? lanes[l] : m;                                                  \
        return m;                                                                             \
    }

FUSION_MAX(fusion_max_float, float)
FUSION_MAX(fusion_max_double, double)

/* KL(softmax(p) + eps || softmax(b) + eps) of one row, in fp64; ex: 2n
 * doubles of scratch (each exp is taken once). lad_exp and lad_log, not
 * libm's: the loops vectorise. */
#define FUSION_KL(NAME, T)                                                                    \
    LAD_KERNEL static double NAME(const T *p, const T *b, size_t n, double *ex)               \
    {                                                                                         \
        double *ep = ex, *eb = ex + n;                                                        \
        const double mp = fusion_max_##T(p, n), mb = fusion_max_##T(b, n);                   \
        for (size_t e = 0; e < n; e++) {                                                      \
            ep[e] = lad_exp((double)p[e] - mp);                                               \
            eb[e] = lad_exp((double)b[e] - mb);                                               \
        }                                                                                     \
        const double sp = fusion_sum(ep, n), sb = fusion_sum(eb, n);                          \
        for (size_t e = 0; e < n; e++) {                                                      \
            double P = ep[e] / sp + EPS, Q = eb[e] / sb + EPS;                                \
            ep[e] = P * lad_log(P / Q);                                                       \
        }                                                                                     \
        return fusion_sum(ep, n);                                                             \
    }

FUSION_KL(fusion_kl_f32, float)
FUSION_KL(fusion_kl_f64, double)

#define FUSION_STATS(NAME, T, KL, KEY)                                                        \
    LAD_KERNEL static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in,   \
                                size_t n)                                                     \
    {                                                                                         \
        fusion_stats *st = k->stats;                                                          \
        const T *b = in[0], *p = in[1];                                                       \
        uint64_t row = k->start / (n ? n : 1);                                                \
        uint64_t *keys = k->scratch; /* n keys, after the KL's 2n exps are done with */       \
        if (pass == 0)                                                                        \
            st->kl[row] = KL(p, b, n, k->scratch);                                            \
        const T kl = (T)st->kl[row];                                                          \
        for (size_t e = 0; e < n; e++) {                                                      \
            T d = p[e] - b[e];                                                                \
            keys[e] = KEY((d < 0 ? -d : d) * kl);                                             \
        }                                                                                     \
        const int shift = 16 * (st->digits - 1 - pass);                                       \
        uint64_t *h = acc;                                                                    \
        if (pass == 0) { /* the first digit's histogram is the same for all three */         \
            for (size_t e = 0; e < n; e++)                                                    \
                h[(keys[e] >> shift) & 0xffff]++;                                             \
            return;                                                                           \
        }                                                                                     \
        uint64_t want[3];                                                                     \
        for (int q = 0; q < 3; q++)                                                           \
            want[q] = st->sel[q].prefix >> (shift + 16);                                      \
        for (size_t e = 0; e < n; e++) {                                                      \
            const uint64_t top = keys[e] >> (shift + 16), bin = (keys[e] >> shift) & 0xffff;  \
            for (int q = 0; q < 3; q++) /* a few keys each: rarely taken */                  \
                if (top == want[q])                                                           \
                    h[(size_t)q * LAD_SELECT_BINS + bin]++;                                   \
        }                                                                                     \
    }

FUSION_STATS(fusion_stats_f32, float, fusion_kl_f32, key_f32)
FUSION_STATS(fusion_stats_f64, double, fusion_kl_f64, key_f64)

static const char *fusion_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                                   size_t naccs)
{
    fusion_stats *st = k->stats;
    if (k->nelem == 0)
        return NULL;
    for (int q = 0; q < 3; q++) { /* pass 0 histograms once, in the first */
        uint64_t *h0 = (uint64_t *)accs[0] + (size_t)(pass ? q : 0) * LAD_SELECT_BINS;
        for (size_t a = 1; a < naccs && (pass || q == 0); a++) {
            const uint64_t *h = (const uint64_t *)accs[a] + (size_t)q * LAD_SELECT_BINS;
            for (size_t b = 0; b < LAD_SELECT_BINS; b++)
                h0[b] += h[b];
        }
        lad_select_digit_done(&st->sel[q], h0, pass, st->digits);
    }
    if (pass == st->digits - 1) { /* every digit known: the threshold */
        if (wide) {
            double med = value_f64(st->sel[0].thresh), q1 = value_f64(st->sel[1].thresh);
            double q3 = value_f64(st->sel[2].thresh);
            st->thresh = med + 1.5 * (q3 - q1);
        } else {
            float med = value_f32(st->sel[0].thresh), q1 = value_f32(st->sel[1].thresh);
            float q3 = value_f32(st->sel[2].thresh);
            st->threshf = med + 1.5f * (q3 - q1);
        }
    }
    return NULL;
}

#define FUSION_KERNEL(NAME, T, THRESH)                                                        \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const fusion_stats *st = k->stats;                                                    \
        const T *restrict b = in[0], *restrict p = in[1];                                     \
        const T kl = (T)st->kl[k->start / (n ? n : 1)], thresh = THRESH;                      \
        for (size_t e = 0; e < n; e++) {                                                      \
            T d = p[e] - b[e];                                                                \
            out[e] = (d < 0 ? -d : d) * kl >= thresh ? b[e] + d : b[e] + (T)0;                \
        }                                                                                     \
    }

FUSION_KERNEL(fusion_f32, float, st->threshf)
FUSION_KERNEL(fusion_f64, double, st->thresh)

const lad_method lad_method_arcee_fusion = {
    .name = "arcee_fusion",
    .chunk_f32 = fusion_f32,
    .chunk_f64 = fusion_f64,
    .npasses = fusion_npasses,
    .stats_size = fusion_stats_size,
    .stats_init = fusion_stats_init,
    .acc_size = fusion_acc_size,
    .stats_f32 = fusion_stats_f32,
    .stats_f64 = fusion_stats_f64,
    .pass_end = fusion_pass_end,
    .row_length = fusion_row_length,
};
