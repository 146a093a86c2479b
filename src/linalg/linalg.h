/*
 * Dense linear algebra on LAPACK and BLAS (Debian's OpenBLAS through the
 * generic liblapack/libblas, with LAPACKE): the decompositions methods and
 * tools need, on plain row-major fp32 matrices.
 */
#ifndef LADLE_LINALG_H
#define LADLE_LINALG_H

#include "ladle.h"

typedef struct lad_svd_opts {
    bool exact;        /* LAPACK's sgesdd on the whole matrix */
    /* otherwise a randomized range finder (Halko, Martinsson & Tropp 2011,
     * alg. 4.4): oversample extra columns, iters power iterations (each
     * re-orthonormalised), a Gaussian test matrix from seed */
    size_t oversample;
    int iters;
    uint64_t seed;
} lad_svd_opts;

/* The k = min(rank, m, n) leading singular triplets of the row-major m x n
 * matrix A (not modified): U (m x k, row-major), S (k, descending), Vt (k x
 * n, row-major), A ~= U diag(S) Vt. Returns 0, or -1 with err. */
int lad_svd(const float *A, size_t m, size_t n, size_t rank, const lad_svd_opts *o, float *U,
            float *S, float *Vt, lad_error *err);

/* The thin SVD of the row-major m x n float64 matrix A (not modified) with
 * LAPACK's dgesdd, q = min(m, n): U (m x q), S (q, descending), Vt (q x n),
 * row-major. Returns 0, or -1 with err. */
int lad_dsvd(const double *A, size_t m, size_t n, double *U, double *S, double *Vt,
             lad_error *err);

/* The polar factor of the row-major r x c float64 matrix A, in place:
 * A = W diag(S) Z^T -> W_k Z_k^T over the k singular values above
 * tol_rel * S_max (the partial isometry: unique when A's columns or rows
 * are dependent); S (min(r, c) values, descending) into S unless NULL.
 * Through the smaller Gram matrix: S to sqrt(eps64) S_max absolute.
 * Returns 0, or -1 with err. */
int lad_dpolar(double *A, size_t r, size_t c, double tol_rel, double *S, lad_error *err);

/* C (m x n) = alpha A B, row-major, A m x k (leading dimension lda), B
 * k x n (ldb), C contiguous. */
void lad_gemm(size_t m, size_t n, size_t k, float alpha, const float *A, size_t lda,
              const float *B, size_t ldb, float *C);

/* C (m x n) = alpha A^T B, row-major, A k x m (lda), B k x n (ldb). */
void lad_gemm_tn(size_t m, size_t n, size_t k, float alpha, const float *A, size_t lda,
                 const float *B, size_t ldb, float *C);

/* C (m x n, leading dimension ldc) = alpha op(A) op(B) + beta C, row-major
 * doubles: op(A) is m x k (A itself, or with ta its transpose, k x m, lda),
 * op(B) k x n likewise. */
void lad_dgemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha, const double *A,
               size_t lda, const double *B, size_t ldb, double beta, double *C, size_t ldc);

/* The threads BLAS may use (the engine gives the machine's count for any
 * -j: OpenBLAS's results depend on it, -j must not; its workers are idle
 * while a method's statistics are decomposed, so the two never run at
 * once). OpenBLAS's setting where it is the BLAS in use, else nothing. */
void lad_linalg_threads(int n);

/* Which BLAS/LAPACK is in use (for --version and benchmarks). */
const char *lad_linalg_impl(void);

#endif
