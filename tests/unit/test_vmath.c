/*
 * lad_exp and lad_log (src/methods/vmath.h) against long double expl and
 * logl (64-bit significands on x86: 11 bits beyond fp64), in ulps of the
 * fp64 result, over the ranges Arcee Fusion's softmax and KL use and
 * beyond; the edge cases exactly; and the same bits from a loop built for
 * AVX2 (vectorised) as from the baseline one.
 */
#include "expect.h"
#include "../../src/methods/vmath.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* |got - want| in units of the last place of fp64 at want. */
static double ulps(double got, long double want)
{
    if (isnan(got) || isinf(got))
        return isnan(got) == isnan((double)want) && got == (double)want ? 0 : INFINITY;
    long double w = fabsl(want);
    int e;
    frexpl(w < (long double)DBL_MIN ? (long double)DBL_MIN : w, &e);
    long double ulp = ldexpl(1.0L, e - 53);
    return (double)(fabsl((long double)got - want) / ulp);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double uniform(double lo, double hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1p-53;
}

enum { N = 1 << 16 };

static void exp_loop(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = lad_exp(x[i]);
}

static void log_loop(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = lad_log(x[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_LOOPS 1
__attribute__((target("avx2"))) static void exp_loop_avx2(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = lad_exp(x[i]);
}

__attribute__((target("avx2"))) static void log_loop_avx2(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = lad_log(x[i]);
}
#endif

static double max_err_exp(double lo, double hi, int rounds)
{
    static double x[N], y[N];
    double worst = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < N; i++)
            x[i] = uniform(lo, hi);
        exp_loop(x, y, N);
        for (size_t i = 0; i < N; i++) {
            double u = ulps(y[i], expl((long double)x[i]));
            worst = u > worst ? u : worst;
        }
    }
    return worst;
}

/* log over y = 2^e (1 + f): e and f uniform (the exponent range given). */
static double max_err_log(int elo, int ehi, int rounds)
{
    static double x[N], y[N];
    double worst = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < N; i++)
            x[i] = ldexp(uniform(1, 2), (int)uniform(elo, ehi + 1));
        log_loop(x, y, N);
        for (size_t i = 0; i < N; i++) {
            double u = ulps(y[i], logl((long double)x[i]));
            worst = u > worst ? u : worst;
        }
    }
    return worst;
}

static void check(double err, double bound, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s: worst %.3f ulp (bound %.1f)", what, err, bound);
    printf("  %s\n", msg);
    expect(err <= bound, msg);
}

int main(void)
{
    const char *san = getenv("LADLE_SANITIZED");
    int rounds = san && strcmp(san, "1") == 0 ? 2 : 32;
    /* Within 1 ulp: faithful (either neighbour of the exact value). */
    check(max_err_exp(-40, 0, rounds), 1, "exp on [-40, 0]");
    check(max_err_exp(-1, 1, rounds), 1, "exp on [-1, 1]");
    check(max_err_exp(-708, 709.7, rounds), 1, "exp on [-708, 709.7]");
    check(max_err_exp(-745, -708, rounds), 1, "exp on [-745, -708] (subnormal results)");
    check(max_err_log(-1022, 1023, rounds), 1, "log over every exponent");
    check(max_err_log(-30, 30, rounds), 1, "log on [2^-30, 2^31)");
    {
        static double x[N], y[N];
        for (size_t i = 0; i < N; i++)
            x[i] = 1 + uniform(-0x1p-20, 0x1p-20);
        log_loop(x, y, N);
        double worst = 0;
        for (size_t i = 0; i < N; i++) {
            double u = ulps(y[i], logl((long double)x[i]));
            worst = u > worst ? u : worst;
        }
        check(worst, 1, "log near 1");
    }

    /* Edges, exactly. */
    expect(lad_exp(0) == 1, "exp(0) = 1");
    expect(lad_exp(-INFINITY) == 0, "exp(-inf) = 0");
    expect(lad_exp(-746) == 0 && lad_exp(-1e300) == 0, "exp underflows to 0");
    expect(lad_exp(710) == INFINITY && lad_exp(INFINITY) == INFINITY, "exp overflows to inf");
    expect(lad_exp(709.78) == exp(709.78), "exp near overflow");
    expect(isnan(lad_exp(NAN)), "exp(NaN) is NaN");
    expect(lad_log(1) == 0, "log(1) = 0");
    expect(isnan(lad_log(NAN)), "log(NaN) is NaN");
    expect(lad_log(2) == (double)logl(2.0L), "log(2)");
    expect(lad_log(DBL_MIN) == (double)logl((long double)DBL_MIN), "log(DBL_MIN)");
    expect(lad_log(DBL_MAX) == (double)logl((long double)DBL_MAX), "log(DBL_MAX)");

#ifdef HAVE_AVX2_LOOPS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        static double x[N], a[N], b[N];
        for (size_t i = 0; i < N; i++)
            x[i] = i % 7 == 0 ? uniform(-800, 800) : uniform(-50, 0);
        x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = -745.1;
        exp_loop(x, a, N);
        exp_loop_avx2(x, b, N);
        expect(memcmp(a, b, sizeof a) == 0, "exp: the AVX2 loop's bits are the baseline's");
        for (size_t i = 0; i < N; i++)
            x[i] = ldexp(uniform(1, 2), (int)uniform(-1022, 1024));
        x[0] = NAN;
        log_loop(x, a, N);
        log_loop_avx2(x, b, N);
        expect(memcmp(a, b, sizeof a) == 0, "log: the AVX2 loop's bits are the baseline's");
    } else {
        printf("  (no AVX2 on this CPU: the clones' bits not compared)\n");
    }
#endif
    printf("test_vmath: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
