/*
 * Reinforced Agent Merging (mergekit's ram and ramplus_tl). Inputs: in[0]
 * the base, in[1..N] the fine-tunes. Params: RAM_EPS (epsilon, 1e-5),
 * RAM_PLUS (1: ramplus_tl), RAM_R (0.1), RAM_ALPHA (0.2).
 *
 * Per element, with task vectors d_i = x_i - base: d_i counts when
 * |d_i| > epsilon; c = how many count. ram: out = base + sum over the
 * counting d_i of d_i / c (a unique contribution is taken whole, shared
 * ones averaged). ramplus_tl scales unique contributions of model i by
 * lambda_i = 1 + r * clamp(rho_i, 0, alpha), where per tensor rho_i = (its
 * counting elements that others share) / max(its unique ones, epsilon):
 * one statistics pass counts them (exact integers, any thread count).
 *
 * As mergekit, in this order, each model's term (d_i [* lambda_i] where
 * unique, d_i / c where shared, 0 elsewhere) added in model order, in fp32
 * (fp64 for F64 tensors); lambda_i as mergekit computes it in fp32 (in fp64
 * for F64 tensors).
 * mergekit forms d_i in the tensors' dtype (bf16 rounds it); ladle in fp32.
 */
#include "kernel.h"

#include <math.h>
#include <string.h>

#define RAM_MAX 64

typedef struct ram_stats {
    double lambda[RAM_MAX];
    float lambdaf[RAM_MAX];
    uint64_t counts[]; /* per item x model: shared, unique */
} ram_stats;

static size_t nft(const lad_op *op) { return op->ninputs - 1; }
static bool plus(const lad_op *op) { return op->param[RAM_PLUS] != 0; }

static int ram_npasses(const lad_op *op, bool wide)
{
    (void)wide;
    return plus(op) ? 1 : 0;
}

static size_t ram_stats_size(const lad_kctx *k)
{
    return sizeof(ram_stats) + k->nitems * nft(k->op) * 2 * sizeof(uint64_t);
}

static size_t ram_acc_size(const lad_op *op)
{
    (void)op;
    return 0;
}

/* Does a task-vector element count (|d| > epsilon)? */
#define counts(d, eps) (((d) < 0 ? -(d) : (d)) > (eps)) /* |d| as a select: vectorises */

/* Counts in 32-bit lanes (a call has at most LAD_BLOCK elements), the
 * width of an fp32 compare's mask: the loops vectorise whole. */
#define RAM_STATS(NAME, T)                                                                    \
    LAD_KERNEL static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in,   \
                                size_t n)                                                     \
    {                                                                                         \
        (void)pass;                                                                           \
        (void)acc;                                                                            \
        size_t m = nft(k->op);                                                                \
        const T eps = (T)k->op->param[RAM_EPS], *b = in[0];                                   \
        uint64_t *c = ((ram_stats *)k->stats)->counts + k->item * m * 2;                      \
        uint32_t *cnt = k->scratch; /* how many count, per element */                         \
        memset(cnt, 0, n * sizeof *cnt);                                                      \
        for (size_t i = 0; i < m; i++)                                                        \
            for (size_t e = 0; e < n; e++)                                                    \
                cnt[e] += counts(in[i + 1][e] - b[e], eps);                                   \
        for (size_t i = 0; i < m; i++) { /* integer sums: any order gives the same */         \
            uint32_t shared = 0, unique = 0;                                                  \
            for (size_t e = 0; e < n; e++) {                                                  \
                uint32_t ci = counts(in[i + 1][e] - b[e], eps);                               \
                unique += ci & (cnt[e] == 1);                                                 \
                shared += ci & (cnt[e] != 1);                                                 \
            }                                                                                 \
            c[2 * i] += shared;                                                               \
            c[2 * i + 1] += unique;                                                           \
        }                                                                                     \
    }

RAM_STATS(ram_stats_f32, float)
RAM_STATS(ram_stats_f64, double)

static const char *ram_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs,
                                size_t naccs)
{
    (void)pass;
    (void)wide;
    (void)accs;
    (void)naccs;
    const lad_op *op = k->op;
    ram_stats *st = k->stats;
    size_t m = nft(op);
    double eps = op->param[RAM_EPS], r = op->param[RAM_R], alpha = op->param[RAM_ALPHA];
    for (size_t i = 0; i < m; i++) {
        uint64_t shared = 0, unique = 0;
        for (size_t it = 0; it < k->nitems; it++) {
            shared += st->counts[(it * m + i) * 2];
            unique += st->counts[(it * m + i) * 2 + 1];
        }
        double rho = (double)shared / fmax((double)unique, eps);
        st->lambda[i] = 1 + r * fmin(fmax(rho, 0), alpha);
        /* in fp32 as mergekit (counts promoted to fp32, then each step) */
        float rhof = (float)shared / fmaxf((float)unique, (float)eps);
        st->lambdaf[i] = 1.0f + (float)r * fminf(fmaxf(rhof, 0.0f), (float)alpha);
    }
    return NULL;
}

/* Scratch: the count per element (n values of T). */
#define RAM_KERNEL(NAME, T, LAMBDA)                                                           \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,       \
                                size_t n)                                                     \
    {                                                                                         \
        const lad_op *op = k->op;                                                             \
        const ram_stats *st = k->stats;                                                       \
        size_t m = nft(op);                                                                   \
        const T eps = (T)op->param[RAM_EPS], *restrict b = in[0];                             \
        T *restrict cnt = k->scratch, *restrict acc = cnt + n;                                \
        for (size_t e = 0; e < n; e++) {                                                      \
            cnt[e] = 0;                                                                       \
            acc[e] = 0;                                                                       \
        }                                                                                     \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T *restrict x = in[i + 1];                                                  \
            for (size_t e = 0; e < n; e++) {                                                  \
                T d = x[e] - b[e];                                                            \
                cnt[e] += counts(d, eps) ? (T)1 : (T)0;                                       \
            }                                                                                 \
        }                                                                                     \
        for (size_t i = 0; i < m; i++) {                                                      \
            const T *restrict x = in[i + 1], lam = plus(op) ? LAMBDA[i] : (T)1;               \
            for (size_t e = 0; e < n; e++) {                                                  \
                T d = x[e] - b[e], c = cnt[e];                                                \
                T term = c == 1 ? d * lam : d / (c > 1 ? c : (T)1);                           \
                acc[e] += counts(d, eps) ? term : (T)0;                                       \
            }                                                                                 \
        }                                                                                     \
        for (size_t e = 0; e < n; e++)                                                        \
            out[e] = b[e] + acc[e];                                                           \
    }

RAM_KERNEL(ram_f32, float, st->lambdaf)
RAM_KERNEL(ram_f64, double, st->lambda)

const lad_method lad_method_ram = {
    .name = "ram",
    .chunk_f32 = ram_f32,
    .chunk_f64 = ram_f64,
    .npasses = ram_npasses,
    .stats_size = ram_stats_size,
    .acc_size = ram_acc_size,
    .stats_f32 = ram_stats_f32,
    .stats_f64 = ram_stats_f64,
    .pass_end = ram_pass_end,
};
