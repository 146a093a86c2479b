/*
 * NuSLERP (mergekit's nuslerp): spherical interpolation of two models, or
 * of their task vectors from a base. Inputs: in[0] = v0, in[1] = v1, and
 * with a base in[2] = b (then v0 - b and v1 - b are interpolated and b
 * added back). param[0] = t (mergekit: w1 / (w0 + w1), 0.5 when the
 * weights sum to ~0), param[1] = the vectors: NUSLERP_FLAT (the whole
 * tensor, nuslerp_flatten: true, the default), NUSLERP_ROWS (each row
 * along the last dimension, nuslerp_flatten: false) or NUSLERP_COLS (each
 * vector along the first dimension, nuslerp_row_wise: true: a column of a
 * matrix; a 1-D tensor is one vector), param[2] = 1 with a base. The forms
 * are three methods: lad_method_nuslerp (flat, one statistics pass),
 * lad_method_nuslerp_rows (a row per kernel call) and
 * lad_method_nuslerp_cols (per-column sums in one statistics pass: each
 * work item's partial sums, folded into the totals in item order as items
 * complete, so the result is the same for any thread count and the
 * partials held are those of items finished ahead of a slower one).
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
#include <pthread.h>
#include <stdlib.h>

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
/* In lanes (kernel.h). */
#define NU_SUMS(NAME, T)                                                                      \
    LAD_KERNEL static sums NAME(const lad_op *op, const T *const *in, size_t n)              \
    {                                                                                         \
        enum { L = LAD_LANES };                                                               \
        double aa[L] = {0}, bb[L] = {0}, ab[L] = {0};                                         \
        const T *x = in[0], *y = in[1], *z = has_base(op) ? in[2] : NULL;                     \
        size_t i = 0;                                                                         \
        for (; i + L <= n; i += L)                                                            \
            for (size_t l = 0; l < L; l++) {                                                  \
                double a = (double)(z ? x[i + l] - z[i + l] : x[i + l]);                      \
                double b = (double)(z ? y[i + l] - z[i + l] : y[i + l]);                      \
                aa[l] += a * a;                                                               \
                bb[l] += b * b;                                                               \
                ab[l] += a * b;                                                               \
            }                                                                                 \
        for (; i < n; i++) {                                                                  \
            double a = (double)(z ? x[i] - z[i] : x[i]), b = (double)(z ? y[i] - z[i] : y[i]); \
            aa[0] += a * a;                                                                   \
            bb[0] += b * b;                                                                   \
            ab[0] += a * b;                                                                   \
        }                                                                                     \
        return (sums){lad_fold(aa), lad_fold(bb), lad_fold(ab)};                              \
    }

NU_SUMS(nu_sums_f32, float)
NU_SUMS(nu_sums_f64, double)

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

NU_STATS(nu_stats_f32, float, nu_sums_f32)
NU_STATS(nu_stats_f64, double, nu_sums_f64)

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

NU_KERNEL(nu_f32, float, nu_sums_f32, st->c0f, st->c1f)
NU_KERNEL(nu_f64, double, nu_sums_f64, st->c0, st->c1)

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

/* ------------------------------------------------------------ by columns */

/* A tensor as rows of its columns: [shape[0], nelem / shape[0]]; a 1-D
 * tensor is one column. */
static uint64_t cols_of(int ndim, const uint64_t *shape)
{
    if (ndim < 2)
        return 1;
    uint64_t n = 1;
    for (int i = 1; i < ndim; i++)
        n *= shape[i];
    return n;
}

static uint64_t nc_row_length(const lad_op *op, int ndim, const uint64_t *shape)
{
    (void)op;
    return cols_of(ndim, shape);
}

typedef struct nc_stats {
    pthread_mutex_t lock;
    bool locked, oom;
    size_t next;          /* the first item not folded yet */
    double *total;        /* per column: aa, bb, ab */
    double *c0, *c1;      /* per column */
    float *c0f, *c1f;
    double **partial;     /* per item, until folded */
    unsigned char *done;  /* per item */
} nc_stats;

static int nc_npasses(const lad_op *op, bool wide)
{
    (void)op;
    (void)wide;
    return 1;
}

static size_t nc_stats_size(const lad_kctx *k)
{
    uint64_t C = k->row ? k->row : 1;
    return sizeof(nc_stats) + C * (3 + 2) * sizeof(double) + C * 2 * sizeof(float) +
           k->nitems * (sizeof(double *) + 1) + 16;
}

static void nc_stats_init(const lad_kctx *k, bool wide)
{
    (void)wide;
    nc_stats *st = k->stats;
    uint64_t C = k->row ? k->row : 1;
    st->locked = pthread_mutex_init(&st->lock, NULL) == 0;
    st->oom = !st->locked;
    st->total = (double *)(st + 1);
    st->c0 = st->total + 3 * C;
    st->c1 = st->c0 + C;
    st->partial = (double **)(st->c1 + C);
    st->c0f = (float *)(st->partial + k->nitems);
    st->c1f = st->c0f + C;
    st->done = (unsigned char *)(st->c1f + C);
}

/* Folds finished items into the totals, in item order. */
static void nc_fold(nc_stats *st, size_t nitems, uint64_t C)
{
    while (st->next < nitems && st->done[st->next]) {
        double *p = st->partial[st->next];
        for (uint64_t i = 0; p && i < 3 * C; i++)
            st->total[i] += p[i];
        free(p);
        st->partial[st->next++] = NULL;
    }
}

#define NC_STATS(NAME, T)                                                                     \
    static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in, size_t n)    \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        nc_stats *st = k->stats;                                                              \
        size_t it = k->item;                                                                  \
        if (!st->partial[it] && !st->oom &&                                                   \
            !(st->partial[it] = calloc(3 * n, sizeof(double))))                               \
            st->oom = true; /* (a benign race: the flag only ever goes to true) */           \
        double *p = st->partial[it];                                                          \
        bool based = has_base(k->op);                                                         \
        for (size_t e = 0; p && e < n; e++) {                                                 \
            double a = (double)(based ? in[0][e] - in[2][e] : in[0][e]);                      \
            double b = (double)(based ? in[1][e] - in[2][e] : in[1][e]);                      \
            p[3 * e] += a * a;                                                                \
            p[3 * e + 1] += b * b;                                                            \
            p[3 * e + 2] += a * b;                                                            \
        }                                                                                     \
        if (k->start + n == k->item_end && st->locked) { /* the item's last row */            \
            pthread_mutex_lock(&st->lock);                                                    \
            st->done[it] = 1;                                                                 \
            nc_fold(st, k->nitems, n);                                                        \
            pthread_mutex_unlock(&st->lock);                                                  \
        }                                                                                     \
    }

NC_STATS(nc_stats_f32, float)
NC_STATS(nc_stats_f64, double)

static const char *nc_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                               size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    nc_stats *st = k->stats;
    uint64_t C = k->row ? k->row : 1;
    for (size_t it = 0; it < k->nitems; it++) /* (all folded unless out of memory) */
        free(st->partial[it]);
    if (st->locked)
        pthread_mutex_destroy(&st->lock);
    if (st->oom || st->next != k->nitems)
        return "out of memory for the per-column sums";
    for (uint64_t c = 0; c < C; c++) {
        sums s = {st->total[3 * c], st->total[3 * c + 1], st->total[3 * c + 2]};
        coefficients(k->op->param[0], s, &st->c0[c], &st->c1[c]);
        st->c0f[c] = (float)st->c0[c];
        st->c1f[c] = (float)st->c1[c];
    }
    return NULL;
}

/* One row: column e takes its own coefficients. */
#define NC_KERNEL(NAME, T, C0, C1)                                                            \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const nc_stats *st = k->stats;                                                        \
        const T *restrict c0 = C0, *restrict c1 = C1, *restrict a = in[0], *restrict b = in[1]; \
        if (!has_base(k->op)) {                                                               \
            for (size_t e = 0; e < n; e++)                                                    \
                out[e] = c0[e] * a[e] + c1[e] * b[e];                                         \
            return;                                                                           \
        }                                                                                     \
        const T *restrict base = in[2];                                                       \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = base[e] + (c0[e] * (a[e] - base[e]) + c1[e] * (b[e] - base[e]));         \
    }

NC_KERNEL(nc_f32, float, st->c0f, st->c1f)
NC_KERNEL(nc_f64, double, st->c0, st->c1)

const lad_method lad_method_nuslerp_cols = {
    .name = "nuslerp",
    .chunk_f32 = nc_f32,
    .chunk_f64 = nc_f64,
    .npasses = nc_npasses,
    .stats_size = nc_stats_size,
    .stats_init = nc_stats_init,
    .acc_size = nu_acc_size,
    .stats_f32 = nc_stats_f32,
    .stats_f64 = nc_stats_f64,
    .pass_end = nc_pass_end,
    .row_length = nc_row_length,
};
