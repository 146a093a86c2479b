/*
 * NuSLERP (mergekit's nuslerp): spherical interpolation of two models, or
 * of their task vectors from a base. Inputs: in[0] = v0, in[1] = v1, and
 * with a base in[2] = b (then v0 - b and v1 - b are interpolated and b
 * added back). param[0] = t (mergekit: w1 / (w0 + w1), 0.5 when the
 * weights sum to ~0), param[1] = the vectors: NUSLERP_FLAT (the whole
 * tensor, nuslerp_flatten: true, the default) or NUSLERP_ROWS (each row
 * along the last dimension, nuslerp_flatten: false), param[2] = 1 with a
 * base. The two forms are two methods: lad_method_nuslerp (flat, one
 * statistics pass) and lad_method_nuslerp_rows (a row per kernel call).
 *
 * For each pair of vectors, as mergekit computes it: the cosine of the
 * vectors normalised by their norms (each at least 1e-7), clamped to
 * [-1, 1]; theta = acos; where |sin theta| < 1e-8 the vectors are colinear
 * and it is (1 - t) v0 + t v1, else (sin((1-t) theta) v0 + sin(t theta) v1)
 * / sin theta. Norms and dots are summed in fp64, per work item and in item
 * order (flat), or per row within the kernel: the same for any thread count.
 */
#include "kernel.h"

#include <math.h>

#define NORM_MIN 1e-7
#define COLINEAR 1e-8

typedef struct sums {
    double aa, bb, ab;
} sums;

typedef struct nu_stats {
    double c0, c1;
    float c0f, c1f;
    sums item[];
} nu_stats;

static bool flat(const lad_op *op) { return op->param[1] == NUSLERP_FLAT; }
static bool has_base(const lad_op *op) { return op->param[2] != 0; }

/* The coefficients of v0 and v1 from the sums. */
static void coefficients(double t, sums s, double *c0, double *c1)
{
    double na = sqrt(s.aa), nb = sqrt(s.bb);
    double cos = s.ab / ((na > NORM_MIN ? na : NORM_MIN) * (nb > NORM_MIN ? nb : NORM_MIN));
    double theta = acos(cos < -1 ? -1 : cos > 1 ? 1 : cos), sn = sin(theta);
    if (fabs(sn) < COLINEAR) {
        *c0 = 1 - t;
        *c1 = t;
    } else {
        *c0 = sin((1 - t) * theta) / sn;
        *c1 = sin(t * theta) / sn;
    }
}

static int nu_npasses(const lad_op *op, bool wide)
{
    (void)op;
    (void)wide;
    return 1;
}

static size_t nu_stats_size(const lad_kctx *k)
{
    return sizeof(nu_stats) + k->nitems * sizeof(sums);
}

static size_t nu_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

static uint64_t nu_row_length(const lad_op *op, int ndim, const uint64_t *shape)
{
    (void)op;
    return ndim ? shape[ndim - 1] : 1;
}

/* Partial sums of the (task) vectors of one chunk. */
#define NU_SUMS(NAME, T)                                                                      \
    static sums NAME(const lad_op *op, const T *const *in, size_t n)                         \
    {                                                                                         \
        sums s = {0, 0, 0};                                                                   \
        bool based = has_base(op);                                                            \
        for (size_t i = 0; i < n; i++) {                                                      \
            double a = (double)(based ? in[0][i] - in[2][i] : in[0][i]);                      \
            double b = (double)(based ? in[1][i] - in[2][i] : in[1][i]);                      \
            s.aa += a * a;                                                                    \
            s.bb += b * b;                                                                    \
            s.ab += a * b;                                                                    \
        }                                                                                     \
        return s;                                                                             \
    }

NU_SUMS(sums_f32, float)
NU_SUMS(sums_f64, double)

#define NU_STATS(NAME, T, SUMS)                                                               \
    static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in, size_t n)    \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        sums *s = &((nu_stats *)k->stats)->item[k->item], c = SUMS(k->op, in, n);             \
        s->aa += c.aa;                                                                        \
        s->bb += c.bb;                                                                        \
        s->ab += c.ab;                                                                        \
    }

NU_STATS(nu_stats_f32, float, sums_f32)
NU_STATS(nu_stats_f64, double, sums_f64)

static const char *nu_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs, size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    nu_stats *st = k->stats;
    sums total = {0, 0, 0};
    for (size_t i = 0; i < k->nitems; i++) {
        total.aa += st->item[i].aa;
        total.bb += st->item[i].bb;
        total.ab += st->item[i].ab;
    }
    coefficients(k->op->param[0], total, &st->c0, &st->c1);
    st->c0f = (float)st->c0;
    st->c1f = (float)st->c1;
    return NULL;
}

/* out = c0 v0 + c1 v1 (+ b, the vectors taken from it), c from the
 * tensor's statistics or, by rows, from this row. */
#define NU_KERNEL(NAME, T, SUMS, C0, C1)                                                      \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const lad_op *op = k->op;                                                             \
        T c0, c1;                                                                             \
        if (flat(op)) {                                                                       \
            const nu_stats *st = k->stats;                                                    \
            c0 = C0;                                                                          \
            c1 = C1;                                                                          \
        } else {                                                                              \
            double d0, d1;                                                                    \
            coefficients(op->param[0], SUMS(op, in, n), &d0, &d1);                            \
            c0 = (T)d0;                                                                       \
            c1 = (T)d1;                                                                       \
        }                                                                                     \
        const T *restrict a = in[0], *restrict b = in[1];                                     \
        if (!has_base(op)) {                                                                  \
            for (size_t i = 0; i < n; i++)                                                    \
                out[i] = c0 * a[i] + c1 * b[i];                                               \
            return;                                                                           \
        }                                                                                     \
        const T *restrict base = in[2];                                                       \
        for (size_t i = 0; i < n; i++)                                                        \
            out[i] = base[i] + (c0 * (a[i] - base[i]) + c1 * (b[i] - base[i]));              \
    }

NU_KERNEL(nu_f32, float, sums_f32, st->c0f, st->c1f)
NU_KERNEL(nu_f64, double, sums_f64, st->c0, st->c1)

const lad_method lad_method_nuslerp = {
    .name = "nuslerp",
    .chunk_f32 = nu_f32,
    .chunk_f64 = nu_f64,
    .npasses = nu_npasses,
    .stats_size = nu_stats_size,
    .acc_size = nu_acc_size,
    .stats_f32 = nu_stats_f32,
    .stats_f64 = nu_stats_f64,
    .pass_end = nu_pass_end,
};

/* By rows: no statistics, a row per kernel call. */
const lad_method lad_method_nuslerp_rows = {
    .name = "nuslerp",
    .chunk_f32 = nu_f32,
    .chunk_f64 = nu_f64,
    .row_length = nu_row_length,
};
