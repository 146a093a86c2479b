/*
 * Consensus task arithmetic (Wang et al., "Localizing Task Information for
 * Improved Model Merging and Compression", ICML 2024), with TALL masks as
 * FusionBench's tall_mask utilities define them. Inputs: in[0] the base,
 * in[1..T] the fine-tunes. Params: CONS_LAMBDA (the merged vector's scale),
 * CONS_TALL (the TALL masks' lambda), CONS_K (how many masks must agree),
 * then the T weights from CONS_W0, each scaling its task vector tau_t =
 * w_t (x_t - base) first.
 *
 * Per element: tau_MTL = sum_t tau_t; task t's TALL mask holds where
 * |tau_t| > tall |tau_MTL - tau_t| (theta_0 - theta_t against theta_MTL -
 * theta_t); the element is kept where at least K masks hold (K = 2 drops
 * the "catastrophic" and "selfish" weights, K = 0 is task arithmetic);
 * out = base + lambda (kept ? tau_MTL : 0). Elementwise, in fp32 (fp64 for
 * F64 tensors), tau_MTL summed in input order.
 */
#include "kernel.h"

static size_t ntv(const lad_op *op) { return op->ninputs - 1; }

#define CONS_KERNEL(NAME, T)                                                                  \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const lad_op *op = k->op;                                                             \
        const size_t m = ntv(op);                                                             \
        const T lambda = (T)op->param[CONS_LAMBDA], tall = (T)op->param[CONS_TALL];           \
        const T need = (T)op->param[CONS_K], *restrict b = in[0];                             \
        T *restrict mtl = k->scratch, *restrict count = mtl + n;                              \
        for (size_t e = 0; e < n; e++)                                                        \
            mtl[e] = count[e] = 0;                                                            \
        for (size_t t = 0; t < m; t++) {                                                      \
            const T w = (T)op->param[CONS_W0 + t], *restrict x = in[t + 1];                   \
            for (size_t e = 0; e < n; e++)                                                    \
                mtl[e] += w * (x[e] - b[e]);                                                  \
        }                                                                                     \
        for (size_t t = 0; t < m; t++) {                                                      \
            const T w = (T)op->param[CONS_W0 + t], *restrict x = in[t + 1];                   \
            for (size_t e = 0; e < n; e++) {                                                  \
                T tau = w * (x[e] - b[e]), rest = mtl[e] - tau;                               \
                count[e] += (tau < 0 ? -tau : tau) > tall * (rest < 0 ? -rest : rest)          \
                                ? (T)1 : (T)0;                                                \
            }                                                                                 \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = b[e] + lambda * (count[e] >= need ? mtl[e] : (T)0);                      \
    }

CONS_KERNEL(cons_f32, float)
CONS_KERNEL(cons_f64, double)

const lad_method lad_method_consensus_ta = {
    .name = "consensus_ta",
    .chunk_f32 = cons_f32,
    .chunk_f64 = cons_f64,
};
