/*
 * SLERP: spherical interpolation between two models, per tensor, with
 * mergekit's semantics. Inputs: in[0] = A (the base: t = 0 gives A),
 * in[1] = B. param[0] = t.
 *
 * One statistics pass gathers |A|^2, |B|^2 and A.B (in fp64). Then, as
 * mergekit does: the dot product of the normalised tensors (a tensor with
 * norm <= 1e-8 is left unnormalised) decides; if |dot| > 0.9995 the tensors
 * are nearly colinear and it falls back to lerp, (1-t) A + t B; otherwise
 * theta = acos(dot) and out = sin((1-t) theta)/sin(theta) A
 * + sin(t theta)/sin(theta) B, applied to the unnormalised tensors. The
 * merge pass is then a linear combination with those two coefficients.
 *
 * Partial sums are kept per work item and added in item order, so the
 * result does not depend on the thread count.
 */
#include "kernel.h"

#include <math.h>

#define DOT_THRESHOLD 0.9995
#define NORM_EPS 1e-8

typedef struct sums {
    double aa, bb, ab;
} sums;

typedef struct slerp_stats {
    double s0, s1;  /* the coefficients of A and B */
    float s0f, s1f;
    sums item[];    /* partial sums, one per work item */
} slerp_stats;

static int slerp_npasses(const lad_op *op, bool wide)
{
    (void)op;
    (void)wide;
    return 1;
}

static size_t slerp_stats_size(const lad_kctx *k)
{
    return sizeof(slerp_stats) + k->nitems * sizeof(sums);
}

static size_t slerp_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

/* Partial sums of one chunk, once per compute type. */
#define SLERP_STATS(NAME, T)                                                                  \
    LAD_KERNEL static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in,   \
                                size_t n)                                                     \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        enum { L = LAD_LANES };                                                               \
        sums *s = &((slerp_stats *)k->stats)->item[k->item];                                  \
        double aa[L] = {0}, bb[L] = {0}, ab[L] = {0};                                         \
        size_t i = 0;                                                                         \
        for (; i + L <= n; i += L)                                                            \
            for (size_t l = 0; l < L; l++) {                                                  \
                double a = in[0][i + l], b = in[1][i + l];                                    \
                aa[l] += a * a;                                                               \
                bb[l] += b * b;                                                               \
                ab[l] += a * b;                                                               \
            }                                                                                 \
        for (; i < n; i++) { /* the tail, in lane 0 */                                        \
            double a = in[0][i], b = in[1][i];                                                \
            aa[0] += a * a;                                                                   \
            bb[0] += b * b;                                                                   \
            ab[0] += a * b;                                                                   \
        }                                                                                     \
        s->aa += lad_fold(aa);                                                                \
        s->bb += lad_fold(bb);                                                                \
        s->ab += lad_fold(ab);                                                                \
    }

SLERP_STATS(slerp_stats_f32, float)
SLERP_STATS(slerp_stats_f64, double)

static const char *slerp_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                           size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    slerp_stats *st = k->stats;
    sums total = {0, 0, 0};
    for (size_t i = 0; i < k->nitems; i++) {
        total.aa += st->item[i].aa;
        total.bb += st->item[i].bb;
        total.ab += st->item[i].ab;
    }
    double t = k->op->param[0];
    double na = sqrt(total.aa), nb = sqrt(total.bb);
    double dot = total.ab / ((na > NORM_EPS ? na : 1.0) * (nb > NORM_EPS ? nb : 1.0));
    if (fabs(dot) > DOT_THRESHOLD) {
        st->s0 = 1.0 - t;
        st->s1 = t;
    } else {
        double theta = acos(dot), s = sin(theta);
        st->s0 = sin(theta - t * theta) / s;
        st->s1 = sin(t * theta) / s;
    }
    st->s0f = (float)st->s0;
    st->s1f = (float)st->s1;
    return NULL;
}

LAD_KERNEL static void slerp_f32(const lad_kctx *k, float *restrict out, const float *const *in,
                                 size_t n)
{
    const slerp_stats *st = k->stats;
    const float s0 = st->s0f, s1 = st->s1f, *restrict a = in[0], *restrict b = in[1];
    for (size_t i = 0; i < n; i++)
        out[i] = s0 * a[i] + s1 * b[i];
}

LAD_KERNEL static void slerp_f64(const lad_kctx *k, double *restrict out,
                                 const double *const *in, size_t n)
{
    const slerp_stats *st = k->stats;
    const double s0 = st->s0, s1 = st->s1, *restrict a = in[0], *restrict b = in[1];
    for (size_t i = 0; i < n; i++)
        out[i] = s0 * a[i] + s1 * b[i];
}

const lad_method lad_method_slerp = {
    .name = "slerp",
    .chunk_f32 = slerp_f32,
    .chunk_f64 = slerp_f64,
    .npasses = slerp_npasses,
    .stats_size = slerp_stats_size,
    .acc_size = slerp_acc_size,
    .stats_f32 = slerp_stats_f32,
    .stats_f64 = slerp_stats_f64,
    .pass_end = slerp_pass_end,
};
