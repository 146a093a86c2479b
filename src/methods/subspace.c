/*
 * The subspace methods: per 2-D weight matrix, a merge of the task vectors
 * in their singular subspaces (LAPACK's SVD); every other tensor (and a
 * matrix the op marks ISO_MEAN_ONLY: embeddings, heads, excluded names)
 * gets the mean of the task vectors. Inputs: in[0] the base, in[1..T] the
 * fine-tunes; params ISO_LAMBDA (the merged task vector's scale), ISO_MEAN_ONLY,
 * then the T weights from ISO_W0, each scaling its task vector tau_t =
 * w_t (x_t - base) first; out = base + lambda merged.
 *
 * They all work the same way: one statistics pass copies what the SVDs need
 * into the statistics buffer (fp32; each work item its own elements, no
 * reduction), pass_end decomposes (in float64) and leaves merged at the
 * buffer's start, the merge pass adds it. One matrix at a time is held.
 *
 * Iso-C (lad_method_iso_c; Marczak et al., "No Task Left Behind: Isotropic
 * Model Merging with Common and Task-Specific Subspaces", ICML 2025), as
 * FusionBench's iso_c: M = sum_t tau_t = U diag(S) V^T, every singular
 * value replaced by their mean: merged = mean(S) U V^T. Where M is
 * rank-deficient, the singular vectors of its zero singular values are
 * arbitrary (FusionBench's output then depends on the SVD routine); ladle
 * takes U V^T over the nonzero ones only (above sqrt(max(m, n)) 2^-23 S_max,
 * see nonzero()), M's polar factor, which is unique; mean(S) is still
 * over all min(m, n) values. Buffer: M.
 *
 * TSV-M (lad_method_tsv; Gargiulo et al., "Task Singular Vectors: Reducing
 * Task Interference in Model Merging", CVPR 2025), as FusionBench's
 * compute_and_sum_svd_mem_reduction: for an m x n matrix (q = min(m, n),
 * k = int(q * (1 / T)) as it computes it), each tau_t = U_t S_t V_t^T keeps
 * its top k triplets; laid side by side, U_cat = [U_1k ... U_Tk] (m x q,
 * zero past T k columns), S_cat, V_cat likewise; U_cat and V_cat are
 * replaced by their polar factors (P = A B^T from A S B^T, the nearest
 * orthonormal matrices: FusionBench's u_u @ vh_u; ladle's take A and B over
 * the nonzero singular values, unique when columns are dependent); merged
 * = P_U diag(S_cat) P_V^T. Where a tau_t has fewer than k nonzero singular values, the
 * vectors of its zero ones are arbitrary, yet would enter the polar factors
 * and change the others' columns; ladle drops them (zero columns, as the
 * padding), which makes the result unique. (Truncating inside a block of
 * equal singular values stays ambiguous, as in the paper.) Buffer: the T
 * task vectors; T + 2 SVDs.
 *
 * Iso-CTS (lad_method_iso_cts; the same paper), as FusionBench's iso_cts,
 * with ISO_FRACTION = common_space_fraction f: cs = int(q f), then the
 * task-specific dimensions round((q - cs) / T) T (Python's round: half to
 * even) and cs = q - those; the common subspace is the top cs triplets of
 * M = sum_t tau_t; each task contributes the top (q - cs) / T triplets of
 * tau_t - Uc Uc^T tau_t (its part outside the common subspace); all q are
 * laid side by side, U and V replaced by their polar factors, every
 * singular value by their mean: merged = mean(S) P_U P_V^T. Vectors of
 * zero singular values (arbitrary, and weighted by the mean here) are
 * dropped, from the polar factors and from the common projection, which
 * makes the result unique.
 * Buffer: the T task vectors; T + 3 SVDs.
 *
 * WUDI (lad_method_wudi; Cheng et al., "Whoever Started the Interference
 * Should End It: Guiding Data-Free Model Merging via Task Vectors", ICML
 * 2025), as FusionBench's wudi_merging: from X = sum_t tau_t, ISO_ITERS
 * steps of Adam (learning rate ISO_LR, betas 0.9 and 0.999, eps 1e-8, no
 * weight decay: torch.optim.Adam's update, bias corrections included) on
 *   L(X) = sum_t |(X - tau_t) tau_t^T|_F^2 / |tau_t|_F^2,
 * whose gradient is 2 sum_t (X - tau_t) G_t / |tau_t|^2, G_t = tau_t^T tau_t,
 * i.e. 2 (X A - B) with A = sum_t G_t / |tau_t|^2 (n x n) and B = sum_t
 * tau_t G_t / |tau_t|^2, both computed once: a step is one m x n x n
 * product, where the reference's autograd does 2 T m^2 n multiply-adds.
 * (When n > 2 T m, the stacked task vectors are cheaper than A, and used:
 * X A = ((X Tau^T) D) Tau, Tau the T m x n stack, D the 1 / |tau_t|^2.)
 * In float64 throughout (the reference is float32), rounded once. A zero
 * task vector is left out of L (its term is 0 / 0 in the reference, which
 * then returns NaN). merged = X, not divided by T (as the reference).
 * Buffer: the T task vectors.
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

/* The decompositions run in float64 (dgesdd): the task vectors come in
 * fp32, as every method computes them, and merged goes back to fp32 once.
 * In fp32 the singular vectors near a cut (TSV's q / T, Iso-CTS's common
 * space) and the polar factors of nearly dependent stacks carry errors of
 * eps / gap, past 1e-5 of the task vectors on ordinary inputs. */

/* A float matrix as doubles; NULL when out of memory. */
static double *widen(const float *x, size_t n)
{
    double *d = malloc(n * sizeof *d + 1);
    for (size_t i = 0; d && i < n; i++)
        d[i] = x[i];
    return d;
}

static void narrow(const double *d, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)d[i];
}

/* How many of a spectrum S (descending, q values) of an m x n matrix are
 * not zero: above sqrt(max(m, n)) eps32 S_max, the backward error of the
 * fp32 sums that made the matrix (exactly dependent data leaves values far
 * below). numpy's rank rule, max(m, n) eps S_max, is for unknown noise: on
 * a 2048 x 2048 sum of four full-rank task vectors it called two real
 * directions zero (their weight in Iso-C: the mean singular value). */
static size_t nonzero(const double *S, size_t q, size_t m, size_t n)
{
    double tol = sqrt((double)(m > n ? m : n)) * FLT_EPSILON * (q ? S[0] : 0);
    size_t r = 0;
    while (r < q && S[r] > tol)
        r++;
    return r;
}

/* Iso-C: merged = mean(S) times M's polar factor, both from the Gram
 * matrix's eigendecomposition (half an SVD's work; the kept singular
 * values sit above the cut, sqrt(max(m, n)) eps32 S_max, far from the
 * sqrt(eps64) S_max the Gram resolves). */
static const char *iso_decompose(const lad_kctx *k, sub_stats *st)
{
    size_t rows = (size_t)k->shape[0], cols = (size_t)k->shape[1];
    size_t q = rows < cols ? rows : cols;
    double *M = widen(st->buf, rows * cols), *S = malloc(q * sizeof *S + 1);
    lad_error err = {0};
    const char *why = NULL;
    if (!M || !S)
        why = "out of memory for its SVD";
    else if (lad_dpolar(M, rows, cols, sqrt((double)(rows > cols ? rows : cols)) * FLT_EPSILON,
                        S, &err))
        why = "its decomposition failed (LAPACK did not converge)";
    if (!why) {
        double mean = 0;
        for (size_t i = 0; i < q; i++)
            mean += S[i];
        mean /= (double)q;
        for (size_t e = 0; e < rows * cols; e++) /* (M = 0: its polar factor is 0) */
            st->buf[e] = (float)(mean * M[e]);
    }
    free(M);
    free(S);
    return why;
}

/* Singular triplet j of an SVD (U m x q, Vt q x n, row-major) into column
 * col of Ucat (m x ld) and row col of Vcat (ld x n). */
static void place(double *Ucat, double *Vcat, size_t m, size_t n, size_t q, size_t ld,
                  const double *U, const double *Vt, size_t j, size_t col)
{
    for (size_t i = 0; i < m; i++)
        Ucat[i * ld + col] = U[i * q + j];
    memcpy(Vcat + col * n, Vt + j * n, n * sizeof *Vcat);
}

/* The polar factor of A (r x c), in place. A here is unit vectors side by
 * side: exactly dependent ones (zero padding, a task's vectors twice) leave
 * singular values at LAPACK's noise, while unrelated subspaces can come
 * within 1e-4 of dependent: the cut is nonzero()'s, sqrt(max(r, c)) eps32
 * S_max (numpy's rank rule would drop real directions of these, each of
 * weight 1 in the factor). */
static int polar(double *A, size_t r, size_t c, lad_error *err)
{
    return lad_dpolar(A, r, c, sqrt((double)(r > c ? r : c)) * FLT_EPSILON, NULL, err);
}

static const char *tsv_decompose(const lad_kctx *k, sub_stats *st)
{
    size_t m = (size_t)k->shape[0], n = (size_t)k->shape[1], q = m < n ? m : n;
    /* k as FusionBench computes it: int(q * (1 / T)) in doubles */
    size_t T = ntv(k->op), kk = (size_t)((double)q * (1.0 / (double)T)), ne = m * n;
    double *Ucat = calloc(m * q + 1, sizeof *Ucat), *Scat = calloc(q + 1, sizeof *Scat);
    double *Vcat = calloc(q * n + 1, sizeof *Vcat); /* rows: V's columns, i.e. Vt's rows */
    double *U = malloc(m * q * sizeof *U + 1), *S = malloc(q * sizeof *S + 1);
    double *Vt = malloc(q * n * sizeof *Vt + 1), *tau = malloc(ne * sizeof *tau + 1);
    lad_error err = {0};
    const char *why = NULL;
    if (!Ucat || !Scat || !Vcat || !U || !S || !Vt || !tau)
        why = "out of memory for its SVDs";
    for (size_t t = 0; !why && kk > 0 && t < T; t++) {
        for (size_t e = 0; e < ne; e++)
            tau[e] = st->buf[t * ne + e];
        if (lad_dsvd(tau, m, n, U, S, Vt, &err)) {
            why = "an SVD failed (LAPACK did not converge)";
            break;
        }
        size_t r = nonzero(S, q, m, n); /* zero ones dropped */
        for (size_t j = 0; j < kk && j < r; j++) {
            Scat[t * kk + j] = S[j];
            place(Ucat, Vcat, m, n, q, q, U, Vt, j, t * kk + j);
        }
    }
    if (!why && kk > 0 && (polar(Ucat, m, q, &err) || polar(Vcat, q, n, &err)))
        why = "an SVD failed (LAPACK did not converge)";
    if (!why) { /* merged = P_U diag(S) P_V^T, into the first task's slot */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < q; j++)
                Ucat[i * q + j] *= Scat[j];
        if (kk > 0) {
            lad_dgemm(false, false, m, n, q, 1, Ucat, q, Vcat, n, 0, tau, n);
            narrow(tau, st->buf, ne);
        } else { /* more tasks than the rank: nothing kept */
            memset(st->buf, 0, ne * sizeof *st->buf);
        }
    }
    free(Ucat);
    free(Scat);
    free(Vcat);
    free(U);
    free(S);
    free(Vt);
    free(tau);
    return why;
}

/* Iso-CTS (see the top): merged = mean(S) P_U P_V^T over the kept
 * triplets, into the buffer's first slot. */
static const char *cts_decompose(const lad_kctx *k, sub_stats *st)
{
    size_t m = (size_t)k->shape[0], n = (size_t)k->shape[1], q = m < n ? m : n;
    size_t T = ntv(k->op), ne = (size_t)k->nelem;
    double f = k->op->param[ISO_FRACTION];
    long cs0 = (long)((double)q * f);
    double per = nearbyint((double)((long)q - cs0) / (double)T) * (double)T;
    if (per > (double)q)
        return "the matrix has too few dimensions for this many tasks and "
               "common_space_fraction";
    size_t ts = (size_t)per, cs = q - ts, nper = ts / T;
    /* the kept triplets, side by side: Ukeep (m x q), Vkeep (q x n) */
    double *Ukeep = calloc(m * q + 1, sizeof *Ukeep), *Vkeep = calloc(q * n + 1, sizeof *Vkeep);
    double *U = malloc(m * q * sizeof *U + 1), *S = malloc(q * sizeof *S + 1);
    double *Vt = malloc(q * n * sizeof *Vt + 1), *M = calloc(ne + 1, sizeof *M);
    double *w = malloc(ne * sizeof *w + 1), *P = malloc((cs + 1) * n * sizeof *P);
    lad_error err = {0};
    const char *why = Ukeep && Vkeep && U && S && Vt && M && w && P
                          ? NULL : "out of memory for its SVDs";
    double sum = 0, tol = 0;
    size_t r = 0, cr = 0;
    for (size_t t = 0; !why && t < T; t++) /* M = sum_t tau_t */
        for (size_t e = 0; e < ne; e++)
            M[e] += st->buf[t * ne + e];
    if (!why && lad_dsvd(M, m, n, U, S, Vt, &err))
        why = "an SVD failed (LAPACK did not converge)";
    /* the common subspace: M's top cs (its nonzero ones: the others are
     * arbitrary, and would project arbitrary parts out of the tasks); Uc =
     * Ukeep's first cr columns */
    if (!why) /* nonzero()'s cut; a residual's values are zero by M's scale */
        tol = sqrt((double)(m > n ? m : n)) * FLT_EPSILON * S[0];
    for (size_t j = 0; !why && j < cs; j++) {
        sum += S[j];
        if (!(S[j] > tol))
            continue;
        place(Ukeep, Vkeep, m, n, q, q, U, Vt, j, r++);
        cr++;
    }
    for (size_t t = 0; !why && nper > 0 && t < T; t++) {
        /* w = tau_t - Uc (Uc^T tau_t) */
        for (size_t e = 0; e < ne; e++)
            w[e] = st->buf[t * ne + e];
        if (cr > 0) {
            lad_dgemm(true, false, cr, n, m, 1, Ukeep, q, w, n, 0, P, n);
            lad_dgemm(false, false, m, n, cr, -1, Ukeep, q, P, n, 1, w, n);
        }
        if (lad_dsvd(w, m, n, U, S, Vt, &err)) {
            why = "an SVD failed (LAPACK did not converge)";
            break;
        }
        for (size_t j = 0; j < nper; j++) {
            sum += S[j];
            if (!(S[j] > tol))
                continue;
            place(Ukeep, Vkeep, m, n, q, q, U, Vt, j, r++);
        }
    }
    if (!why && r > 0) {
        /* the kept columns only: U_r (m x r) packed, V_r (r x n) */
        double *Ur = U; /* (m x q >= m x r) */
        for (size_t i = 0; i < m; i++)
            memmove(Ur + i * r, Ukeep + i * q, r * sizeof *Ur);
        if (polar(Ur, m, r, &err) || polar(Vkeep, r, n, &err))
            why = "an SVD failed (LAPACK did not converge)";
        else {
            lad_dgemm(false, false, m, n, r, sum / (double)q, Ur, r, Vkeep, n, 0, w, n);
            narrow(w, st->buf, ne);
        }
    } else if (!why) {
        memset(st->buf, 0, ne * sizeof *st->buf);
    }
    free(Ukeep);
    free(Vkeep);
    free(U);
    free(S);
    free(Vt);
    free(M);
    free(w);
    free(P);
    return why;
}

/* One step of torch.optim.Adam (betas 0.9, 0.999; eps 1e-8) on X with
 * gradient G: step = lr / (1 - b1^t), bc2 = sqrt(1 - b2^t). */
LAD_KERNEL static void adam_step(double *restrict X, double *restrict mo, double *restrict ve,
                                 const double *restrict G, size_t n, double step, double bc2)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (size_t e = 0; e < n; e++) {
        double g = G[e];
        mo[e] += (g - mo[e]) * (1 - b1);
        ve[e] = ve[e] * b2 + (1 - b2) * g * g;
        X[e] -= step * mo[e] / (sqrt(ve[e]) / bc2 + eps);
    }
}

/* WUDI (see the top): X after the Adam steps, into the buffer's start. */
static const char *wudi_decompose(const lad_kctx *k, sub_stats *st)
{
    const size_t m = (size_t)k->shape[0], n = (size_t)k->shape[1], T = ntv(k->op);
    const size_t ne = (size_t)k->nelem, q = m < n ? m : n;
    const long iters = (long)k->op->param[ISO_ITERS];
    const double lr = k->op->param[ISO_LR];
    const bool gram = n <= 2 * T * m; /* A, else the stack */
    double *X = calloc(ne, sizeof *X), *mo = calloc(ne, sizeof *mo);
    double *ve = calloc(ne, sizeof *ve), *G = malloc(ne * sizeof *G);
    double *B = calloc(ne, sizeof *B), *tau = malloc(ne * sizeof *tau);
    double *C = malloc(q * q * sizeof *C), *inv = malloc(T * sizeof *inv);
    double *A = gram ? calloc(n * n, sizeof *A) : NULL;
    double *S = gram ? NULL : malloc(T * ne * sizeof *S);
    double *P = gram ? NULL : malloc(m * T * m * sizeof *P);
    const char *why = X && mo && ve && G && B && tau && C && inv && (gram ? A != NULL : S && P)
                          ? NULL : "out of memory for its optimisation";
    size_t live = 0; /* the nonzero task vectors, packed */
    for (size_t t = 0; !why && t < T; t++) {
        const float *src = st->buf + t * ne;
        double nrm = 0;
        for (size_t e = 0; e < ne; e++) {
            tau[e] = src[e];
            X[e] += tau[e];
            nrm += tau[e] * tau[e];
        }
        if (nrm == 0)
            continue;
        double w = 1 / nrm;
        if (m <= n) { /* C = tau tau^T (m x m); B += w C tau */
            lad_dgemm(false, true, m, m, n, 1, tau, n, tau, n, 0, C, m);
            lad_dgemm(false, false, m, n, m, w, C, m, tau, n, 1, B, n);
            if (gram) /* A += w tau^T tau */
                lad_dgemm(true, false, n, n, m, w, tau, n, tau, n, 1, A, n);
        } else { /* C = tau^T tau (n x n); B += w tau C; A += w C */
            lad_dgemm(true, false, n, n, m, 1, tau, n, tau, n, 0, C, n);
            lad_dgemm(false, false, m, n, n, w, tau, n, C, n, 1, B, n);
            for (size_t e = 0; gram && e < n * n; e++)
                A[e] += w * C[e];
        }
        if (!gram)
            memcpy(S + live * ne, tau, ne * sizeof *S);
        inv[live++] = w;
    }
    for (long it = 1; !why && live > 0 && it <= iters; it++) {
        memcpy(G, B, ne * sizeof *G); /* G = 2 (X A - B) */
        if (gram) {
            lad_dgemm(false, false, m, n, n, 2, X, n, A, n, -2, G, n);
        } else {
            const size_t tm = live * m; /* P = X Tau^T (m x Tm), block t times inv_t */
            lad_dgemm(false, true, m, tm, n, 1, X, n, S, n, 0, P, tm);
            for (size_t i = 0; i < m; i++)
                for (size_t c = 0; c < tm; c++)
                    P[i * tm + c] *= inv[c / m];
            lad_dgemm(false, false, m, n, tm, 2, P, tm, S, n, -2, G, n);
        }
        adam_step(X, mo, ve, G, ne, lr / (1 - pow(0.9, (double)it)),
                  sqrt(1 - pow(0.999, (double)it)));
    }
    for (size_t e = 0; !why && e < ne; e++)
        st->buf[e] = (float)X[e];
    free(X);
    free(mo);
    free(ve);
    free(G);
    free(B);
    free(tau);
    free(C);
    free(inv);
    free(A);
    free(S);
    free(P);
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

/* A NaN or Inf anywhere makes every singular vector NaN (LAPACK then
 * reports no convergence): refused, with what to do. */
static const char *not_finite(const float *x, size_t n)
{
    float acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += x[i] * 0; /* NaN for a NaN or an Inf */
    return acc == 0 ? NULL
                    : "a task vector holds NaN or Inf (an input's weights are not finite); "
                      "the subspace methods need finite weights: check the inputs";
}

/* The statistics pass's end: a matrix's decomposition (nothing to do for a
 * tensor that gets the mean); buffers: one matrix, or one per task. */
#define SUB_PASS_END(NAME, DECOMPOSE, PER_TASK)                                               \
    static const char *NAME(const lad_kctx *k, int pass, bool wide, void *const *accs,       \
                            size_t naccs)                                                     \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)wide;                                                                           \
        (void)accs;                                                                           \
        (void)naccs;                                                                          \
        sub_stats *st = k->stats;                                                             \
        if (!st->matrix)                                                                      \
            return NULL;                                                                      \
        const char *bad = not_finite(st->buf, k->nelem * (PER_TASK ? ntv(k->op) : 1));            \
        return bad ? bad : DECOMPOSE(k, st);                                                  \
    }

SUB_PASS_END(iso_pass_end, iso_decompose, false)
SUB_PASS_END(tsv_pass_end, tsv_decompose, true)
SUB_PASS_END(cts_pass_end, cts_decompose, true)
SUB_PASS_END(wudi_pass_end, wudi_decompose, true)

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

/* The methods that hold each task's matrix (TSV, Iso-CTS, WUDI). */
#define PER_TASK_METHOD(VAR, NAME, PASS_END)                                                  \
    const lad_method VAR = {                                                                  \
        .name = NAME,                                                                         \
        .chunk_f32 = sub_f32,                                                                 \
        .chunk_f64 = sub_f64,                                                                 \
        .npasses = sub_npasses,                                                               \
        .stats_size = tsv_stats_size,                                                         \
        .stats_init = sub_stats_init,                                                         \
        .acc_size = sub_acc_size,                                                             \
        .stats_f32 = tsv_stats_f32,                                                           \
        .stats_f64 = tsv_stats_f64,                                                           \
        .pass_end = PASS_END,                                                                 \
    };

PER_TASK_METHOD(lad_method_tsv, "tsv", tsv_pass_end)
PER_TASK_METHOD(lad_method_iso_cts, "iso_cts", cts_pass_end)
PER_TASK_METHOD(lad_method_wudi, "wudi", wudi_pass_end)
