/*
 * exp and log in fp64 that loops vectorise: only +, -, *, / and bit
 * operations, no branches, no table, no libm call. The same bits on every
 * CPU and in both of a LAD_KERNEL's clones (IEEE arithmetic, no contracted
 * multiply-add), so a result does not depend on the machine's libm.
 * Accuracy: within 1 ulp of the exact value (libm's exp and log are within
 * 0.5-1); tests/unit/test_vmath.c measures it against libm.
 *
 * The constants: 1/ln 2 and ln 2 split into a 33-bit high part and the rest
 * (Cody and Waite's reduction), in their standard fp64 values, and the
 * series' own coefficients 1/k! and 2/(2k+1), written as the quotients.
 */
#ifndef LADLE_VMATH_H
#define LADLE_VMATH_H

#include <stdint.h>
#include <string.h>

static inline uint64_t lad_vm_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static inline double lad_vm_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* 2^k for an integer-valued k in [-1022, 1023]: k + 1023 in the low bits
 * of 0x1.8p52 + k + 1023, moved to the exponent field. */
static inline double lad_vm_pow2(double k)
{
    const double magic = 0x1.8p52;
    return lad_vm_double((lad_vm_bits(k + (magic + 1023)) - lad_vm_bits(magic)) << 52);
}

/*
 * e^x = 2^k e^r, k = round(x / ln 2), r = x - k ln 2 with ln 2 in two parts
 * (the high part's 33 significant bits make k ln2_hi exact), |r| <= 0.347;
 * e^r by its Taylor series to r^13/13! (the rest is below 2^-57 of it), in
 * Horner's form. 2^k is applied as 2^k1 2^k2 (k1 + k2 = k, each normal), so
 * a result near overflow or in the subnormals is rounded once. x is clamped
 * to [-746, 710] first: beyond that e^x is 0 or +inf either way, and NaN
 * stays NaN.
 */
static inline double lad_exp(double x)
{
    const double magic = 0x1.8p52, inv_ln2 = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    x = x < -746 ? -746 : x;
    x = x > 710 ? 710 : x;
    double k = (x * inv_ln2 + magic) - magic;
    double r = (x - k * ln2_hi) - k * ln2_lo;
    /* e^r - 1 - r = r^2 (1/2 + r/6 + ...), then 1 + (r + that): the
     * large term added last, so e^r rounds about once */
    double p = 1.0 / 6227020800; /* 1/13! */
    p = p * r + 1.0 / 479001600;
    p = p * r + 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = 1 + (r + r * r * p);
    double k1 = (k * 0.5 + magic) - magic, k2 = k - k1;
    return p * lad_vm_pow2(k1) * lad_vm_pow2(k2);
}

/*
 * ln y for a positive normal y (NaN gives NaN; 0, subnormals, negatives and
 * +inf are not handled): y = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m =
 * 2 atanh(s) with s = (m - 1)/(m + 1), |s| <= 0.172, by its series to
 * s^21 (the rest is below 2^-59 of it); ln y = e ln 2 + ln m, summed so
 * that it rounds about once.
 */
static inline double lad_log(double y)
{
    const double magic = 0x1.8p52;
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    uint64_t u = lad_vm_bits(y);
    double m = lad_vm_double((u & 0x000fffffffffffffull) | 0x3ff0000000000000ull);
    /* the biased exponent as a double: 0x1.8p52 + it, less 0x1.8p52 + 1023 */
    double e = lad_vm_double(lad_vm_bits(magic) + (u >> 52)) - (magic + 1023);
    double big = m > 0x1.6a09e667f3bcdp0 ? 1 : 0; /* m >= sqrt(2): halve it */
    m = m * (1 - 0.5 * big);
    e = e + big;
    /* g = m - 1 (exact), s = g / (2 + g): ln m = 2 atanh(s) = 2s + s t P(t)
     * with t = s^2, and 2s = g - g s, so ln m = g - s (g - t P(t)): the
     * exact g is added last */
    double g = m - 1, s = g / (2 + g), t = s * s;
    double p = 2.0 / 21;
    p = p * t + 2.0 / 19;
    p = p * t + 2.0 / 17;
    p = p * t + 2.0 / 15;
    p = p * t + 2.0 / 13;
    p = p * t + 2.0 / 11;
    p = p * t + 2.0 / 9;
    p = p * t + 2.0 / 7;
    p = p * t + 2.0 / 5;
    p = p * t + 2.0 / 3;
    /* e ln2_hi + g as a sum and its exact error (Fast2Sum: |e ln2_hi| >=
     * |g| unless e = 0, when the sum is g exactly), then the small terms */
    double a = e * ln2_hi, hi = a + g, err = g - (hi - a);
    double r = hi + ((err + e * ln2_lo) - s * (g - t * p));
    return y != y ? y : r; /* NaN */
}

#endif
