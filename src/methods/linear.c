/*
 * Linear combination: out = sum_i c_i * x_i, summed in input order.
 *
 * Serves lerp (c = 1-alpha, alpha), soup (c_i = w_i / sum w) and checkpoint
 * soup (c_i = 1/N). param[i] = c_i, one per input.
 *
 * Each step is a separate multiply and add in the compute precision (the
 * build disables FMA contraction), so the result equals the plain
 * "acc = c0*x0; acc += c1*x1; ..." of numpy/PyTorch in fp32 bit for bit.
 */
#include "kernel.h"

LAD_KERNEL static void linear_f32(const lad_kctx *k, float *restrict out,
                                  const float *const *in, size_t n)
{
    const lad_op *op = k->op;
    const float c0 = op->paramf[0], *restrict x0 = in[0];
    for (size_t i = 0; i < n; i++)
        out[i] = c0 * x0[i];
    for (size_t j = 1; j < op->ninputs; j++) {
        const float c = op->paramf[j], *restrict x = in[j];
        for (size_t i = 0; i < n; i++)
            out[i] += c * x[i];
    }
}

LAD_KERNEL static void linear_f64(const lad_kctx *k, double *restrict out,
                                  const double *const *in, size_t n)
{
    const lad_op *op = k->op;
    const double c0 = op->param[0], *restrict x0 = in[0];
    for (size_t i = 0; i < n; i++)
        out[i] = c0 * x0[i];
    for (size_t j = 1; j < op->ninputs; j++) {
        const double c = op->param[j], *restrict x = in[j];
        for (size_t i = 0; i < n; i++)
            out[i] += c * x[i];
    }
}

const lad_method lad_method_linear = {.name = "linear", .chunk_f32 = linear_f32, .chunk_f64 = linear_f64};

/*
 * The mean by one division: out = (x0 + x1 + ... + x_{n-1}) / param[0],
 * summed in input order in the compute precision, then divided once.
 * Serves soup --sum-first (the greedy soup's candidates): a sum is
 * associative in no precision, but summing in a fixed order means a
 * running sum stored in fp32 (x0 + x1, then + x2, ...) continues it bit
 * for bit, so a candidate reads one stored sum and one new ingredient.
 * param[0] = 1 gives the plain sum, as that running sum is written.
 */
#define MEAN_KERNEL(NAME, T, PARAM)                                                             \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,        \
                                size_t n)                                                       \
    {                                                                                           \
        const lad_op *op = k->op;                                                               \
        const T div = op->PARAM[0], *restrict x0 = in[0];                                       \
        for (size_t i = 0; i < n; i++)                                                          \
            out[i] = x0[i];                                                                     \
        for (size_t j = 1; j < op->ninputs; j++) {                                              \
            const T *restrict x = in[j];                                                        \
            for (size_t i = 0; i < n; i++)                                                      \
                out[i] += x[i];                                                                 \
        }                                                                                       \
        if (div != 1)                                                                           \
            for (size_t i = 0; i < n; i++)                                                      \
                out[i] /= div;                                                                  \
    }

MEAN_KERNEL(mean_f32, float, paramf)
MEAN_KERNEL(mean_f64, double, param)

const lad_method lad_method_mean = {.name = "mean", .chunk_f32 = mean_f32, .chunk_f64 = mean_f64};
