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
#include "ladle.h"

static void task_f32(const lad_op *op, float *out, const float *const *in, size_t n)
{
    const size_t k = op->ninputs - 1 - (op->param[1] != 0);
    const float s = op->paramf[0], *base = in[0];
    const float *onto = op->param[1] != 0 ? in[k + 1] : base;
    for (size_t i = 0; i < n; i++)
        out[i] = op->paramf[2] * (in[1][i] - base[i]);
    for (size_t j = 2; j <= k; j++) {
        const float l = op->paramf[j + 1], *x = in[j];
        for (size_t i = 0; i < n; i++)
            out[i] += l * (x[i] - base[i]);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = onto[i] + s * out[i];
}

static void task_f64(const lad_op *op, double *out, const double *const *in, size_t n)
{
    const size_t k = op->ninputs - 1 - (op->param[1] != 0);
    const double s = op->param[0], *base = in[0];
    const double *onto = op->param[1] != 0 ? in[k + 1] : base;
    for (size_t i = 0; i < n; i++)
        out[i] = op->param[2] * (in[1][i] - base[i]);
    for (size_t j = 2; j <= k; j++) {
        const double l = op->param[j + 1], *x = in[j];
        for (size_t i = 0; i < n; i++)
            out[i] += l * (x[i] - base[i]);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = onto[i] + s * out[i];
}

const lad_method lad_method_task_arithmetic = {"task_arithmetic", task_f32, task_f64};
