/*
 * Truncated SVD (linalg.h).
 *
 * LAPACK is column-major; a row-major m x n matrix A is the column-major
 * n x m matrix A^T. So every call here works on A^T ("At") without copying:
 * the SVD At = W diag(S) Z^T gives A = Z diag(S) W^T, i.e. U = Z and Vt =
 * W^T, and W's columns (contiguous in column-major) are exactly Vt's rows.
 */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "linalg.h"

#include <cblas.h>
#include <dlfcn.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64, then Box-Muller: a reproducible Gaussian test matrix. */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void gaussian(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((double)(splitmix(&s) >> 11) + 1) / 9007199254740993.0; /* (0, 1] */
        double u2 = (double)(splitmix(&s) >> 11) / 9007199254740992.0;
        double r = sqrt(-2 * log(u1)), t = 2 * M_PI * u2;
        x[i] = (float)(r * cos(t));
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(t));
    }
}

/* Q of the column-major rows x cols (rows >= cols) matrix Y, in place. */
static int orthonormalise(float *Y, size_t rows, size_t cols, float *tau, lad_error *err)
{
    lapack_int r = (lapack_int)rows, c = (lapack_int)cols, info;
    if ((info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, r, c, Y, r, tau)) != 0 ||
        (info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, r, c, c, Y, r, tau)) != 0)
        return lad_fail(err, "LAPACK's QR failed (info %d)", (int)info);
    return 0;
}

/* The SVD of the column-major rows x cols matrix M (destroyed): W (rows x
 * q), S (q), Zt (q x cols), q = min(rows, cols). */
static int gesdd(float *M, size_t rows, size_t cols, float *S, float *W, float *Zt,
                 lad_error *err)
{
    lapack_int r = (lapack_int)rows, c = (lapack_int)cols, q = r < c ? r : c;
    lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', r, c, M, r, S, W, r, Zt, q);
    if (info < 0)
        return lad_fail(err, "LAPACK's sgesdd rejected argument %d", (int)-info);
    if (info > 0)
        return lad_fail(err, "LAPACK's SVD did not converge (%d superdiagonals); try "
                             "--randomized",
                        (int)info);
    return 0;
}

/* Exact: sgesdd of At (n x m): At = W S Zt, U = Zt's memory read row-major
 * (m x q), Vt = W's first k columns. */
static int svd_exact(const float *A, size_t m, size_t n, size_t k, float *U, float *S,
                     float *Vt, lad_error *err)
{
    size_t q = m < n ? m : n;
    float *at = malloc(m * n * sizeof *at), *s = malloc(q * sizeof *s);
    float *w = malloc(n * q * sizeof *w), *zt = malloc(q * m * sizeof *zt);
    int rc = at && s && w && zt ? 0 : lad_fail(err, "out of memory for an SVD of %zu x %zu", m, n);
    if (rc == 0) {
        memcpy(at, A, m * n * sizeof *at);
        rc = gesdd(at, n, m, s, w, zt, err);
    }
    if (rc == 0) {
        memcpy(S, s, k * sizeof *S);
        memcpy(Vt, w, k * n * sizeof *Vt);
        for (size_t i = 0; i < m; i++) /* zt is column-major q x m: U(i, j) = zt[j + i q] */
            memcpy(U + i * k, zt + i * q, k * sizeof *U);
    }
    free(at);
    free(s);
    free(w);
    free(zt);
    return rc;
}

/*
 * Randomized: with l = k + oversample columns,
 *   Y = A G (G: n x l Gaussian), Q = orth(Y); iters times: Q = orth(A orth(A^T Q));
 *   B = Q^T A (l x n), B = Ub S Vt (exact, small), U = Q Ub.
 * A = At^T, so A X = At^T X (sgemm with At transposed) and A^T X = At X.
 */
static int svd_randomized(const float *A, size_t m, size_t n, size_t k,
                          const lad_svd_opts *o, float *U, float *S, float *Vt, lad_error *err)
{
    size_t q = m < n ? m : n, l = k + o->oversample;
    if (l > q)
        l = q;
    float *g = malloc(n * l * sizeof *g), *y = malloc(m * l * sizeof *y);
    float *z = malloc(n * l * sizeof *z), *tau = malloc(l * sizeof *tau);
    float *s = malloc(l * sizeof *s), *w = malloc(n * l * sizeof *w);
    float *ubt = malloc(l * l * sizeof *ubt), *u = malloc(m * l * sizeof *u);
    int rc = g && y && z && tau && s && w && ubt && u
                 ? 0 : lad_fail(err, "out of memory for an SVD of %zu x %zu", m, n);
    int M = (int)m, N = (int)n, L = (int)l;
    if (rc == 0) {
        gaussian(g, n * l, o->seed);
        /* Y (m x l) = A G */
        cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, M, L, N, 1, A, N, g, N, 0, y, M);
        rc = orthonormalise(y, m, l, tau, err);
    }
    for (int it = 0; rc == 0 && it < o->iters; it++) {
        /* Z (n x l) = A^T Q, orthonormalised; Y = A Z, orthonormalised */
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, N, L, M, 1, A, N, y, M, 0, z, N);
        if ((rc = orthonormalise(z, n, l, tau, err)) != 0)
            break;
        cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, M, L, N, 1, A, N, z, N, 0, y, M);
        rc = orthonormalise(y, m, l, tau, err);
    }
    if (rc == 0) {
        /* Bt (n x l) = A^T Q = B^T; Bt = W S Ubt gives B = Ubt^T S W^T */
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, N, L, M, 1, A, N, y, M, 0, z, N);
        rc = gesdd(z, n, l, s, w, ubt, err);
    }
    if (rc == 0) {
        /* U (m x l, column-major) = Q Ubt^T */
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, M, L, L, 1, y, M, ubt, L, 0, u, M);
        memcpy(S, s, k * sizeof *S);
        memcpy(Vt, w, k * n * sizeof *Vt);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < k; j++)
                U[i * k + j] = u[j * m + i];
    }
    free(g);
    free(y);
    free(z);
    free(tau);
    free(s);
    free(w);
    free(ubt);
    free(u);
    return rc;
}

static int too_big(size_t m, size_t n, lad_error *err)
{
    if (m > INT_MAX / 2 || n > INT_MAX / 2 || m * n > (size_t)INT_MAX)
        return lad_fail(err, "a %zu x %zu matrix is too large for LAPACK's 32-bit indexes", m,
                        n);
    return 0;
}

int lad_svd(const float *A, size_t m, size_t n, size_t rank, const lad_svd_opts *o, float *U,
            float *S, float *Vt, lad_error *err)
{
    size_t q = m < n ? m : n, k = rank < q ? rank : q;
    if (m == 0 || n == 0 || k == 0)
        return lad_fail(err, "an SVD of a %zu x %zu matrix to rank %zu", m, n, rank);
    if (too_big(m, n, err))
        return -1;
    return o->exact ? svd_exact(A, m, n, k, U, S, Vt, err)
                    : svd_randomized(A, m, n, k, o, U, S, Vt, err);
}

/* A row-major is A^T column-major (n x m): A^T = W S Z^T gives A = Z S W^T,
 * and dgesdd's Z^T (q x m, column-major) and W (n x q, column-major) are, as
 * memory, exactly U (m x q) and Vt (q x n) row-major. */
int lad_dsvd(const double *A, size_t m, size_t n, double *U, double *S, double *Vt,
             lad_error *err)
{
    if (m == 0 || n == 0)
        return lad_fail(err, "an SVD of a %zu x %zu matrix", m, n);
    if (too_big(m, n, err))
        return -1;
    size_t q = m < n ? m : n;
    double *at = malloc(m * n * sizeof *at);
    if (!at)
        return lad_fail(err, "out of memory for an SVD of %zu x %zu", m, n);
    memcpy(at, A, m * n * sizeof *at);
    lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', (lapack_int)n, (lapack_int)m, at,
                                     (lapack_int)n, S, Vt, (lapack_int)n, U, (lapack_int)q);
    free(at);
    if (info < 0)
        return lad_fail(err, "LAPACK's dgesdd rejected argument %d", (int)-info);
    if (info > 0)
        return lad_fail(err, "LAPACK's SVD did not converge (%d superdiagonals)", (int)info);
    return 0;
}

/* Through the smaller Gram matrix, A^T A = V diag(l) V^T (or A A^T =
 * W diag(l) W^T): the polar factor is A V diag(l^-1/2) V^T (or W diag(l^-1/2)
 * W^T A) over the kept l, half the work of an SVD. Its error is eps64 over
 * the smallest kept l / l_max; the callers' A are unit vectors side by side,
 * whose kept singular values stay far from eps64^(1/2) S_max. */
int lad_dpolar(double *A, size_t r, size_t c, double tol_rel, double *S, lad_error *err)
{
    if (r == 0 || c == 0)
        return 0;
    if (too_big(r, c, err))
        return -1;
    bool cols = c <= r; /* the Gram of the columns (c x c), else of the rows */
    size_t g = cols ? c : r;
    double *G = malloc(g * g * sizeof *G), *l = malloc(g * sizeof *l);
    double *T = malloc(g * g * sizeof *T), *out = malloc(r * c * sizeof *out);
    if (!G || !l || !T || !out) {
        free(G);
        free(l);
        free(T);
        free(out);
        return lad_fail(err, "out of memory for a %zu x %zu polar factor", r, c);
    }
    /* row-major G = A^T A (cols) or A A^T: column-major the same (symmetric) */
    cblas_dsyrk(CblasRowMajor, CblasUpper, cols ? CblasTrans : CblasNoTrans, (int)g,
                (int)(cols ? r : c), 1, A, (int)c, 0, G, (int)g);
    /* row-major upper = column-major lower */
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', (lapack_int)g, G,
                                     (lapack_int)g, l);
    int rc = info == 0 ? 0 : lad_fail(err, "LAPACK's dsyevd failed (info %d)", (int)info);
    if (rc == 0) {
        /* eigenvalues ascending; eigenvector j is column j, column-major: as
         * row-major memory, row j. T (g x g) = sum over kept j of
         * v_j v_j^T / sqrt(l_j). */
        double lmax = l[g - 1] > 0 ? l[g - 1] : 0, cut = tol_rel * tol_rel * lmax;
        for (size_t j = 0; S && j < g; j++) /* descending */
            S[j] = l[g - 1 - j] > 0 ? sqrt(l[g - 1 - j]) : 0;
        size_t first = 0;
        while (first < g && !(l[first] > cut))
            first++;
        for (size_t j = first; j < g; j++) {
            double f = 1 / sqrt(sqrt(l[j])); /* half of l^-1/2 on each side */
            for (size_t i = 0; i < g; i++)
                G[j * g + i] *= f;
        }
        /* T = Vk^T Vk over the kept rows j (scaled) */
        if (first < g)
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)g, (int)(g - first), 1,
                        G + first * g, (int)g, 0, T, (int)g);
        else
            memset(T, 0, g * g * sizeof *T);
        for (size_t i = 0; i < g; i++) /* the lower triangle from the upper */
            for (size_t j = 0; j < i; j++)
                T[i * g + j] = T[j * g + i];
        if (cols) /* P = A T */
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)c, (int)c, 1, A,
                        (int)c, T, (int)g, 0, out, (int)c);
        else /* P = T A */
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)c, (int)r, 1, T,
                        (int)g, A, (int)c, 0, out, (int)c);
        memcpy(A, out, r * c * sizeof *A);
    }
    free(G);
    free(l);
    free(T);
    free(out);
    return rc;
}

void lad_gemm(size_t m, size_t n, size_t k, float alpha, const float *A, size_t lda,
              const float *B, size_t ldb, float *C)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, A,
                (int)lda, B, (int)ldb, 0, C, (int)n);
}

void lad_gemm_tn(size_t m, size_t n, size_t k, float alpha, const float *A, size_t lda,
                 const float *B, size_t ldb, float *C)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)n, (int)k, alpha, A,
                (int)lda, B, (int)ldb, 0, C, (int)n);
}

void lad_dgemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha, const double *A,
               size_t lda, const double *B, size_t ldb, double beta, double *C, size_t ldc)
{
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* Looked up, not linked: Debian's generic libblas may be the reference BLAS,
 * which has no such call. */
void lad_linalg_threads(int n)
{
    void (*set)(int) = (void (*)(int))(uintptr_t)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (set && n > 0)
        set(n);
}

const char *lad_linalg_impl(void)
{
#ifdef OPENBLAS_VERSION
    return OPENBLAS_VERSION;
#else
    return "BLAS/LAPACK";
#endif
}
