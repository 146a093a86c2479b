/*
 * The Karcher (Riemannian) mean of N models on the unit sphere, scaled by
 * their mean norm: mergekit's karcher. Inputs: in[0..N-1], equal weights
 * a_i = 1/N (as mergekit). Params: KA_MAX_ITER (default 10), KA_TOL (1e-5).
 *
 * mergekit, per tensor x_i flattened: n_i = |x_i|, u_i = x_i / n_i; the
 * valid inputs are those with n_i > tol (none: zeros), their weights
 * renormalised to sum 1; u = sum a_i u_i normalised (the first valid u_i
 * when that norm is below tol); then up to max_iter times:
 *   T = sum_i a_i theta_i / sin theta_i (u_i - (u.u_i) u) over the valid i
 *       whose theta_i = acos(clamp(u.u_i, -1, 1)) is at least tol,
 *   stop when |T| < tol, else u = cos|T| u + sin|T| T/|T|, normalised when
 *   its norm exceeds tol;
 * out = (sum_i a_i n_i) u, the zero inputs' norms (0) included.
 *
 * u and T always lie in the span of the u_i, so ladle keeps them as N
 * coefficients and does the whole iteration on the Gram matrix of the
 * inputs (one statistics pass, fp64, per work item, added in item order):
 * two passes over the data whatever max_iter is, and no rounding of u to
 * the tensor's dtype between iterations (mergekit rounds it each time).
 * The output pass is out = sum_i k_i x_i, k_i rounded once to the compute
 * type.
 */
#include "kernel.h"

#include <math.h>
#include <string.h>

#define KA_MAX_ITER KARCHER_MAX_ITER
#define KA_TOL KARCHER_TOL
#define KA_MAX KARCHER_MAX

typedef struct ka_stats {
    double k[KA_MAX];
    float kf[KA_MAX];
    double gram[]; /* per item: x_i . x_j for i <= j, row by row */
} ka_stats;

static size_t ngram(size_t n) { return n * (n + 1) / 2; }
static size_t gidx(size_t n, size_t i, size_t j) /* i <= j */
{
    return i * n - i * (i - 1) / 2 + (j - i);
}

static int ka_npasses(const lad_op *op, bool wide)
{
    (void)wide;
    return op->ninputs > 1;
}

static size_t ka_stats_size(const lad_kctx *k)
{
    return sizeof(ka_stats) + k->nitems * ngram(k->op->ninputs) * sizeof(double);
}

static size_t ka_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

#define KA_STATS(NAME, T)                                                                     \
    LAD_KERNEL static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in,   \
                                size_t n)                                                     \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        size_t m = k->op->ninputs;                                                            \
        double *g = ((ka_stats *)k->stats)->gram + k->item * ngram(m);                        \
        double *d = k->scratch; /* each input converted once: m x n */                        \
        for (size_t i = 0; i < m; i++)                                                        \
            for (size_t e = 0; e < n; e++)                                                    \
                d[i * n + e] = (double)in[i][e];                                              \
        for (size_t i = 0; i < m; i++)                                                        \
            for (size_t j = i; j < m; j++) /* in lanes (kernel.h) */                          \
                *g++ += lad_dot(d + i * n, d + j * n, n);                                     \
    }

KA_STATS(ka_stats_f32, float)
KA_STATS(ka_stats_f64, double)

/* v' G w over the valid inputs, G the unit vectors' Gram matrix. */
static double quad(size_t m, const double *g, const double *v, const double *w)
{
    double s = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++)
            s += v[i] * g[i * m + j] * w[j];
    return s;
}

static const char *ka_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                               size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    const lad_op *op = k->op;
    ka_stats *st = k->stats;
    size_t m = op->ninputs, ng = ngram(m);
    double tol = op->param[KA_TOL];
    long max_iter = (long)op->param[KA_MAX_ITER];
    double tot[KA_MAX * (KA_MAX + 1) / 2] = {0};
    for (size_t it = 0; it < k->nitems; it++)
        for (size_t q = 0; q < ng; q++)
            tot[q] += st->gram[it * ng + q];

    double norm[KA_MAX], alpha[KA_MAX], g[KA_MAX * KA_MAX], u[KA_MAX] = {0}, t[KA_MAX];
    size_t valid[KA_MAX], nv = 0;
    double scale = 0, asum = 0;
    for (size_t i = 0; i < m; i++) {
        norm[i] = sqrt(tot[gidx(m, i, i)]);
        scale += norm[i] / (double)m;
        if (norm[i] > tol)
            valid[nv++] = i;
    }
    memset(st->k, 0, sizeof st->k);
    memset(st->kf, 0, sizeof st->kf);
    if (nv == 0)
        return NULL;
    /* The valid unit vectors' Gram matrix, their weights. */
    for (size_t a = 0; a < nv; a++) {
        asum += 1.0 / (double)m;
        for (size_t b = 0; b < nv; b++) {
            size_t i = valid[a < b ? a : b], j = valid[a < b ? b : a];
            g[a * nv + b] = tot[gidx(m, i, j)] / (norm[i] * norm[j]);
        }
    }
    for (size_t a = 0; a < nv; a++)
        alpha[a] = (1.0 / (double)m) / asum;
    for (size_t a = 0; a < nv; a++)
        u[a] = alpha[a];
    double nu = sqrt(fmax(quad(nv, g, u, u), 0));
    if (nu < tol) {
        memset(u, 0, sizeof u);
        u[0] = 1;
    } else {
        for (size_t a = 0; a < nv; a++)
            u[a] /= nu;
    }
    for (long iter = 0; iter < max_iter; iter++) {
        memset(t, 0, sizeof t);
        for (size_t a = 0; a < nv; a++) {
            double dot = 0; /* u . u_a */
            for (size_t b = 0; b < nv; b++)
                dot += u[b] * g[b * nv + a];
            dot = dot < -1 ? -1 : dot > 1 ? 1 : dot;
            double theta = acos(dot);
            if (theta < tol)
                continue;
            double f = alpha[a] * theta / sin(theta);
            t[a] += f;
            for (size_t b = 0; b < nv; b++)
                t[b] -= f * dot * u[b];
        }
        double nt = sqrt(fmax(quad(nv, g, t, t), 0));
        if (nt < tol)
            break;
        double c = cos(nt), s = sin(nt);
        for (size_t a = 0; a < nv; a++)
            u[a] = c * u[a] + s * (t[a] / nt);
        double un = sqrt(fmax(quad(nv, g, u, u), 0));
        if (un > tol)
            for (size_t a = 0; a < nv; a++)
                u[a] /= un;
    }
    /* out = scale * sum_a u_a x_a / n_a */
    for (size_t a = 0; a < nv; a++) {
        st->k[valid[a]] = scale * u[a] / norm[valid[a]];
        st->kf[valid[a]] = (float)st->k[valid[a]];
    }
    return NULL;
}

#define KA_KERNEL(NAME, T, COEF)                                                              \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        size_t m = k->op->ninputs;                                                            \
        if (m == 1) {                                                                         \
            memcpy(out, in[0], n * sizeof *out);                                              \
            return;                                                                           \
        }                                                                                     \
        const ka_stats *st = k->stats;                                                        \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = 0;                                                                       \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T c = COEF[i], *restrict x = in[i];                                         \
            for (size_t e = 0; e < n; e++)                                                    \
                out[e] += c * x[e];                                                           \
        }                                                                                     \
    }

KA_KERNEL(ka_f32, float, st->kf)
KA_KERNEL(ka_f64, double, st->k)

const lad_method lad_method_karcher = {
    .name = "karcher",
    .chunk_f32 = ka_f32,
    .chunk_f64 = ka_f64,
    .npasses = ka_npasses,
    .stats_size = ka_stats_size,
    .acc_size = ka_acc_size,
    .stats_f32 = ka_stats_f32,
    .stats_f64 = ka_stats_f64,
    .pass_end = ka_pass_end,
};
