/*
 * NearSwap (mergekit's nearswap): take the other model's value where it is
 * near the base's, keep the base's where they differ. Inputs: in[0] = the
 * base v0, in[1] = the other model v1; param[0] = t > 0, the sameness
 * threshold. Per element, as mergekit writes it:
 *
 *   w = clamp(t / |v0 - v1|, 0, 1)   (NaN and +-Inf become 1: equal values)
 *   out = w * v1 + (1 - w) * v0
 *
 * each step rounded in the compute precision (mergekit computes in the
 * tensors' dtype; ladle in fp32, or fp64 for F64).
 */
#include "kernel.h"

#include <math.h>

#define NEARSWAP(NAME, T, TPARAM)                                                             \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const T t = TPARAM, *restrict v0 = in[0], *restrict v1 = in[1];                       \
        for (size_t i = 0; i < n; i++) {                                                      \
            T d = v0[i] - v1[i];                                                              \
            T w = t / (d < 0 ? -d : d);                                                       \
            /* NaN and +-Inf -> 1, then the clamp to [0, 1], as selects (vectorised) */      \
            w = w >= 0 && w <= 1 ? w : w < 0 && w > -(T)INFINITY ? (T)0 : (T)1;              \
            out[i] = w * v1[i] + (1 - w) * v0[i];                                             \
        }                                                                                     \
    }

NEARSWAP(nearswap_f32, float, k->op->paramf[0])
NEARSWAP(nearswap_f64, double, k->op->param[0])

const lad_method lad_method_nearswap = {
    .name = "nearswap", .chunk_f32 = nearswap_f32, .chunk_f64 = nearswap_f64};
