/*
 * Task arithmetic (Ilharco et al. 2023): out = C + S * sum_i l_i (x_i - B).
 *
 * Inputs: in[0] = base B, in[1..k] = fine-tunes x_i, and when param[1] is
 * 1, in[k+1] = the model C to add onto (the analogy form); otherwise C = B.
 * param[0] = S, param[1] = has_onto, param[2..k+1] = l_i.
 *
 * The task vector x_i - B is formed first, as TaskVector does it, then
 * weighted and summed in order; no fused multiply-add.
 */
#include "kernel.h"

LAD_KERNEL static void task_f32(const lad_kctx *kc, float *restrict out,
                                const float *const *in, size_t n)
{
    const lad_op *op = kc->op;
    const size_t k = op->ninputs - 1 - (op->param[1] != 0);
    const float s = op->paramf[0], *restrict base = in[0], *restrict x1 = in[1];
    const float *restrict onto = op->param[1] != 0 ? in[k + 1] : base;
    const float l1 = op->paramf[2];
    for (size_t i = 0; i < n; i++)
        out[i] = l1 * (x1[i] - base[i]);
    for (size_t j = 2; j <= k; j++) {
        const float l = op->paramf[j + 1], *restrict x = in[j];
        for (size_t i = 0; i < n; i++)
            out[i] += l * (x[i] - base[i]);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = onto[i] + s * out[i];
}

LAD_KERNEL static void task_f64(const lad_kctx *kc, double *restrict out,
                                const double *const *in, size_t n)
{
    const lad_op *op = kc->op;
    const size_t k = op->ninputs - 1 - (op->param[1] != 0);
    const double s = op->param[0], *restrict base = in[0], *restrict x1 = in[1];
    const double *restrict onto = op->param[1] != 0 ? in[k + 1] : base;
    const double l1 = op->param[2];
    for (size_t i = 0; i < n; i++)
        out[i] = l1 * (x1[i] - base[i]);
    for (size_t j = 2; j <= k; j++) {
        const double l = op->param[j + 1], *restrict x = in[j];
        for (size_t i = 0; i < n; i++)
            out[i] += l * (x[i] - base[i]);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = onto[i] + s * out[i];
}

const lad_method lad_method_task_arithmetic = {.name = "task_arithmetic",
                                               .chunk_f32 = task_f32,
                                               .chunk_f64 = task_f64};
