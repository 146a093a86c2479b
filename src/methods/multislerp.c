/*
 * Multi-SLERP (mergekit's multislerp): barycentric interpolation of N
 * models on a hypersphere, or of their task vectors from a base. Inputs:
 * in[0..N-1] the models, in[N] the base when param[MS_BASE] is 1. Params:
 * MS_EPS (mergekit's eps, 1e-8), then the N weights from MS_W0 (already
 * divided by their sum when the recipe normalises them).
 *
 * mergekit, per tensor, with d_i = x_i (- base) flattened:
 *   n_i = |d_i|, u_i = d_i / (n_i + eps), m = sum_i w_i u_i,
 *   mean = m / |m|, tangent T = sum_i w_i (u_i - (u_i . mean) mean),
 *   result = (mean cos|T| + T sin|T| / |T|) * sum_i w_i n_i (+ base).
 * Since sum_i w_i (u_i . mean) = |m|, T = m - |m| mean = 0 exactly: the
 * tangent step only adds rounding noise (and mergekit adds eps to |T|, so
 * cos and sin/x are 1 to working precision). ladle computes the closed form
 *   out = base + sum_i c_i d_i,  c_i = w_i / (n_i + eps) * (sum_j w_j n_j) / |m|,
 * with the norms and |m| summed in fp64 (per work item, added in item
 * order: the same for any thread count), c_i rounded once to the compute
 * type. Up to MS_GRAM models, one statistics pass sums the Gram matrix
 * G_ij = d_i . d_j, so n_i = sqrt(G_ii) and |m|^2 = sum_ij c_i c_j G_ij
 * without reading the inputs again; where that sum cancels (its terms'
 * magnitudes exceed it 10^6 times: nearly antipodal inputs), and for more
 * models, a second pass sums |m|^2 = sum_e (sum_i c_i d_ie)^2 element by
 * element, as it always did. Where |m| < eps (antipodal inputs whose
 * weights balance), two models give mergekit's fallback w_0 d_0 + w_1 d_1
 * (+ base); more are refused, as mergekit does. One model is returned as is.
 */
#include "kernel.h"

#include <math.h>
#include <string.h>

#define MS_BASE MSLERP_BASE
#define MS_EPS MSLERP_EPS
#define MS_W0 MSLERP_W0
#define MS_MAX MSLERP_MAX

#define MS_GRAM 8      /* models: m (m + 1) / 2 products per element, against a pass */
#define MS_CANCEL 1e-6 /* |m|^2 below this share of its terms' magnitudes: pass 1 */

typedef struct ms_stats {
    double c[MS_MAX + 1]; /* c_i, and after pass 0 the weighted mean norm at [N] */
    float cf[MS_MAX];
    bool settled;         /* |m| known from the Gram matrix: no pass 1 */
    /* per item: the Gram matrix (i <= j, row by row; only its diagonal, the
     * squared norms, above MS_GRAM models), then |m|^2 */
    double sums[];
} ms_stats;

static size_t nmodels(const lad_op *op) { return op->ninputs - (op->param[MS_BASE] != 0); }
static bool gram(size_t m) { return m <= MS_GRAM; }
static size_t nstats(size_t m) { return gram(m) ? m * (m + 1) / 2 : m; }
static size_t per_item(const lad_op *op) { return nstats(nmodels(op)) + 1; }

static int ms_npasses(const lad_op *op, bool wide)
{
    (void)wide;
    return nmodels(op) > 1 ? 2 : 0;
}

static size_t ms_stats_size(const lad_kctx *k)
{
    return sizeof(ms_stats) + k->nitems * per_item(k->op) * sizeof(double);
}

static size_t ms_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

/* The Gram matrix or the norms (pass 0), |m|^2 (pass 1), in lanes
 * (kernel.h). */
#define MS_STATS(NAME, T)                                                                     \
    LAD_KERNEL static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in,   \
                                size_t n)                                                     \
    {                                                                                         \
        (void)acc;                                                                            \
        enum { L = LAD_LANES };                                                               \
        const lad_op *op = k->op;                                                             \
        ms_stats *st = k->stats;                                                              \
        size_t m = nmodels(op);                                                               \
        const T *b = op->param[MS_BASE] != 0 ? in[m] : NULL;                                  \
        double *s = st->sums + k->item * per_item(op);                                        \
        if (pass == 0 && !gram(m)) { /* the squared norms */                                  \
            for (size_t i = 0; i < m; i++) {                                                  \
                const T *x = in[i];                                                           \
                double part[L] = {0};                                                         \
                size_t e = 0;                                                                 \
                for (; e + L <= n; e += L)                                                    \
                    for (size_t l = 0; l < L; l++) {                                          \
                        double d = (double)(b ? x[e + l] - b[e + l] : x[e + l]);              \
                        part[l] += d * d;                                                     \
                    }                                                                         \
                for (; e < n; e++) { /* the tail, in lane 0 */                                \
                    double d = (double)(b ? x[e] - b[e] : x[e]);                              \
                    part[0] += d * d;                                                         \
                }                                                                             \
                s[i] += lad_fold(part);                                                       \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        if (pass == 0) { /* the Gram matrix: each d_i converted once, into the scratch */    \
            double *d = k->scratch; /* m x n */                                               \
            for (size_t i = 0; i < m; i++) {                                                  \
                const T *restrict x = in[i];                                                  \
                double *restrict di = d + i * n;                                              \
                if (b)                                                                        \
                    for (size_t e = 0; e < n; e++)                                            \
                        di[e] = (double)(x[e] - b[e]);                                        \
                else                                                                          \
                    for (size_t e = 0; e < n; e++)                                            \
                        di[e] = (double)x[e];                                                 \
            }                                                                                 \
            for (size_t i = 0, q = 0; i < m; i++)                                             \
                for (size_t j = i; j < m; j++, q++) /* a pair at a time: in registers */     \
                    s[q] += lad_dot(d + i * n, d + j * n, n);                                 \
            return;                                                                           \
        }                                                                                     \
        double part[L] = {0};                                                                 \
        size_t e = 0;                                                                         \
        for (; e + L <= n; e += L) {                                                          \
            double mix[L] = {0};                                                              \
            for (size_t i = 0; i < m; i++) {                                                  \
                const T *x = in[i + 0];                                                       \
                double c = st->c[i];                                                          \
                for (size_t l = 0; l < L; l++)                                                \
                    mix[l] += c * (double)(b ? x[e + l] - b[e + l] : x[e + l]);               \
            }                                                                                 \
            for (size_t l = 0; l < L; l++)                                                    \
                part[l] += mix[l] * mix[l];                                                   \
        }                                                                                     \
        for (; e < n; e++) { /* the tail, in lane 0 */                                        \
            double mix = 0;                                                                   \
            for (size_t i = 0; i < m; i++)                                                    \
                mix += st->c[i] * (double)(b ? in[i][e] - b[e] : in[i][e]);                   \
            part[0] += mix * mix;                                                             \
        }                                                                                     \
        s[nstats(m)] += lad_fold(part);                                                       \
    }

MS_STATS(ms_stats_f32, float)
MS_STATS(ms_stats_f64, double)

/* Where G_ij (i <= j) is in an item's sums. */
static size_t gidx(size_t m, size_t i, size_t j)
{
    return gram(m) ? i * m - i * (i - 1) / 2 + (j - i) : i;
}

/* The coefficients, from |m|. */
static const char *ms_finish(const lad_op *op, ms_stats *st, size_t m, double mnorm)
{
    double avg = st->c[m];
    if (mnorm < op->param[MS_EPS]) {
        if (m != 2)
            return "the weighted sum of the unit (task) vectors is zero: antipodal inputs "
                   "whose weights balance out; give other weights";
        for (size_t i = 0; i < m; i++)
            st->c[i] = op->param[MS_W0 + i];
    } else {
        for (size_t i = 0; i < m; i++)
            st->c[i] *= avg / mnorm;
    }
    for (size_t i = 0; i < m; i++)
        st->cf[i] = (float)st->c[i];
    return NULL;
}

static const char *ms_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                               size_t naccs)
{
    (void)wide;
    (void)accs;
    (void)naccs;
    const lad_op *op = k->op;
    ms_stats *st = k->stats;
    size_t m = nmodels(op), pi = per_item(op);
    double eps = op->param[MS_EPS];
    double tot[MS_MAX + 1] = {0};
    for (size_t it = 0; it < k->nitems; it++)
        for (size_t q = 0; q < pi; q++)
            tot[q] += st->sums[it * pi + q];
    if (pass == 1)
        return ms_finish(op, st, m, sqrt(tot[pi - 1]));
    /* the unit vectors' coefficients, and |m| from the Gram matrix unless
     * it cancels */
    for (size_t i = 0; i < m; i++)
        st->c[i] = op->param[MS_W0 + i] / (sqrt(tot[gidx(m, i, i)]) + eps);
    st->c[m] = 0;
    for (size_t i = 0; i < m; i++)
        st->c[m] += op->param[MS_W0 + i] * sqrt(tot[gidx(m, i, i)]);
    if (!gram(m))
        return NULL;
    double msq = 0, mag = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++) {
            double t = st->c[i] * st->c[j] * tot[i <= j ? gidx(m, i, j) : gidx(m, j, i)];
            msq += t;
            mag += fabs(t);
        }
    if (!(msq >= MS_CANCEL * mag))
        return NULL; /* cancelled (or NaN): pass 1 sums it element by element */
    st->settled = true;
    return ms_finish(op, st, m, sqrt(msq));
}

static bool ms_pass_skip(const lad_kctx *k, int pass)
{
    return pass == 1 && ((const ms_stats *)k->stats)->settled;
}

/* out = (base +) sum_i c_i d_i, in input order. */
#define MS_KERNEL(NAME, T, COEF)                                                              \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const lad_op *op = k->op;                                                             \
        const ms_stats *st = k->stats;                                                        \
        size_t m = nmodels(op);                                                               \
        if (m == 1) {                                                                         \
            memcpy(out, in[0], n * sizeof *out);                                              \
            return;                                                                           \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = 0;                                                                       \
        if (op->param[MS_BASE] != 0) {                                                        \
            const T *restrict b = in[m];                                                      \
            for (size_t i = 0; i < m; i++) {                                                  \
                const T c = COEF[i], *restrict x = in[i];                                     \
                for (size_t e = 0; e < n; e++)                                                \
                    out[e] += c * (x[e] - b[e]);                                              \
            }                                                                                 \
            for (size_t e = 0; e < n; e++)                                                    \
                out[e] = b[e] + out[e];                                                       \
            return;                                                                           \
        }                                                                                     \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T c = COEF[i], *restrict x = in[i];                                         \
            for (size_t e = 0; e < n; e++)                                                    \
                out[e] += c * x[e];                                                           \
        }                                                                                     \
    }

MS_KERNEL(ms_f32, float, st->cf)
MS_KERNEL(ms_f64, double, st->c)

const lad_method lad_method_multislerp = {
    .name = "multislerp",
    .chunk_f32 = ms_f32,
    .chunk_f64 = ms_f64,
    .npasses = ms_npasses,
    .stats_size = ms_stats_size,
    .acc_size = ms_acc_size,
    .stats_f32 = ms_stats_f32,
    .stats_f64 = ms_stats_f64,
    .pass_end = ms_pass_end,
    .pass_skip = ms_pass_skip,
};
