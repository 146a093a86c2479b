/* Shared by the method kernels. LAD_KERNEL compiles a kernel twice, for
 * AVX2 and for the baseline ISA, and picks one at load time by the CPU
 * (GCC/clang target_clones). No FMA either way: the build disables
 * contraction so both round exactly like the reference math. clang gives
 * each static clone's resolver a global symbol ("NAME.resolver"): a
 * LAD_KERNEL function's name must be unique across the method files. */
#ifndef LADLE_KERNEL_H
#define LADLE_KERNEL_H

#include "ladle.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LAD_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define LAD_KERNEL
#endif

/* Long fp64 sums in statistics passes: LAD_LANES partial sums, each over
 * every LAD_LANES-th element of a kernel call (the tail in lane 0), folded
 * in lane order at the call's end: the loops vectorise, and the order is
 * the same for any thread count. */
#define LAD_LANES 8

static inline double lad_fold(const double *lanes)
{
    double t = 0;
    for (int l = 0; l < LAD_LANES; l++)
        t += lanes[l];
    return t;
}

/* sum x[e] y[e] of fp64 arrays in lanes, folded (inlined into a kernel's
 * clones, so its loop vectorises with theirs). */
static inline double lad_dot(const double *restrict x, const double *restrict y, size_t n)
{
    double lanes[LAD_LANES] = {0};
    size_t e = 0;
    for (; e + LAD_LANES <= n; e += LAD_LANES)
        for (int l = 0; l < LAD_LANES; l++)
            lanes[l] += x[e + l] * y[e + l];
    for (; e < n; e++) /* the tail, in lane 0 */
        lanes[0] += x[e] * y[e];
    return lad_fold(lanes);
}

#endif
