/*
 * Bulk dtype conversions: stored bytes <-> fp32 / fp64 compute buffers.
 *
 * Each conversion has a scalar loop over the reference functions in
 * dtype.c and, where the CPU has them, AVX2/F16C paths chosen at run time
 * (the CPU under CI may not be the CPU on a user's desk). The fast paths
 * are exact: tests/unit compares them with the scalar ones over every
 * 16-bit input and every fp32 bit pattern.
 *
 * AVX512-BF16's vcvtneps2bf16 is not used: it flushes subnormals.
 */
#include "ladle.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define LAD_X86 1
#endif

static int simd_state = -1; /* -1 unknown, 0 scalar, 1 avx2+f16c */

#ifdef LAD_X86
/* AVX2 and F16C, and the OS saving YMM registers (OSXSAVE + XCR0). */
static bool cpu_has_avx2_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    bool f16c = c & (1u << 29), avx = c & (1u << 28), osxsave = c & (1u << 27);
    if (!f16c || !avx || !osxsave)
        return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6)
        return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return b & (1u << 5);
}
#endif

static bool use_simd(void)
{
    if (simd_state < 0) {
#ifdef LAD_X86
        simd_state = cpu_has_avx2_f16c();
#else
        simd_state = 0;
#endif
    }
    return simd_state == 1;
}

void lad_convert_force_scalar(bool on)
{
    simd_state = -1;
    if (on)
        simd_state = 0;
}

const char *lad_convert_impl(void) { return use_simd() ? "avx2+f16c" : "scalar"; }

/* ------------------------------------------------------------ AVX2 + F16C */
#ifdef LAD_X86
#define TARGET __attribute__((target("avx2,f16c")))

TARGET static size_t bf16_to_f32_avx2(const uint16_t *in, float *out, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(in + i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(w));
    }
    return i;
}

TARGET static size_t f16_to_f32_avx2(const uint16_t *in, float *out, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    return i;
}

TARGET static size_t f32_to_bf16_avx2(const float *in, uint16_t *out, size_t n)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i quiet = _mm256_set1_epi32(0x0040);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(in + i + 8 * k));
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
            __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
            __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
            r[k] = _mm256_blendv_epi8(rounded, qnan, nan);
        }
        /* packus works per 128-bit lane; the permute puts lanes in order */
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(out + i), packed);
    }
    return i;
}

TARGET static size_t f32_to_f16_avx2(const float *in, uint16_t *out, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(out + i), h);
    }
    return i;
}
#endif

/* ------------------------------------------------------------ fp32 */

void lad_load_f32(lad_dtype src, const void *in, float *out, size_t n)
{
    const uint16_t *h = in;
    size_t i = 0;
    switch (src) {
    case LAD_F32:
        memcpy(out, in, n * 4);
        return;
    case LAD_BF16:
#ifdef LAD_X86
        if (use_simd())
            i = bf16_to_f32_avx2(h, out, n);
#endif
        for (; i < n; i++)
            out[i] = lad_bf16_to_f32(h[i]);
        return;
    case LAD_F16:
#ifdef LAD_X86
        if (use_simd())
            i = f16_to_f32_avx2(h, out, n);
#endif
        for (; i < n; i++)
            out[i] = lad_f16_to_f32(h[i]);
        return;
    case LAD_F64: /* only reached when a caller mixes F64 into fp32 math */
        for (; i < n; i++)
            out[i] = (float)((const double *)in)[i];
        return;
    default:
        return; /* non-mergeable dtypes never reach the kernels */
    }
}

void lad_store_f32(lad_dtype dst, const float *in, void *out, size_t n)
{
    uint16_t *h = out;
    size_t i = 0;
    switch (dst) {
    case LAD_F32:
        memcpy(out, in, n * 4);
        return;
    case LAD_BF16:
#ifdef LAD_X86
        if (use_simd())
            i = f32_to_bf16_avx2(in, h, n);
#endif
        for (; i < n; i++)
            h[i] = lad_f32_to_bf16(in[i]);
        return;
    case LAD_F16:
#ifdef LAD_X86
        if (use_simd())
            i = f32_to_f16_avx2(in, h, n);
#endif
        for (; i < n; i++)
            h[i] = lad_f32_to_f16(in[i]);
        return;
    case LAD_F64:
        for (; i < n; i++)
            ((double *)out)[i] = in[i];
        return;
    default:
        return;
    }
}

/* ------------------------------------------------------------ fp64 */

/* double -> float rounded to odd: truncate, and set the last bit if
 * anything was cut off. Rounding that result to a format with at least two
 * fewer mantissa bits (bf16, f16) then gives the correctly rounded value,
 * which rounding via a plain (float) cast would not (double rounding). */
static float f64_to_f32_odd(double d)
{
    float f = (float)d;
    if (isnan(d) || (double)f == d)
        return f;
    if (isinf(f) || fabs((double)f) > fabs(d))
        f = nextafterf(f, 0.0f);
    uint32_t u;
    memcpy(&u, &f, 4);
    u |= 1;
    memcpy(&f, &u, 4);
    return f;
}

void lad_load_f64(lad_dtype src, const void *in, double *out, size_t n)
{
    const uint16_t *h = in;
    switch (src) {
    case LAD_F64:
        memcpy(out, in, n * 8);
        return;
    case LAD_F32:
        for (size_t i = 0; i < n; i++)
            out[i] = ((const float *)in)[i];
        return;
    case LAD_BF16:
        for (size_t i = 0; i < n; i++)
            out[i] = lad_bf16_to_f32(h[i]);
        return;
    case LAD_F16:
        for (size_t i = 0; i < n; i++)
            out[i] = lad_f16_to_f32(h[i]);
        return;
    default:
        return;
    }
}

void lad_store_f64(lad_dtype dst, const double *in, void *out, size_t n)
{
    uint16_t *h = out;
    switch (dst) {
    case LAD_F64:
        memcpy(out, in, n * 8);
        return;
    case LAD_F32:
        for (size_t i = 0; i < n; i++)
            ((float *)out)[i] = (float)in[i];
        return;
    case LAD_BF16:
        for (size_t i = 0; i < n; i++)
            h[i] = lad_f32_to_bf16(f64_to_f32_odd(in[i]));
        return;
    case LAD_F16:
        for (size_t i = 0; i < n; i++)
            h[i] = lad_f32_to_f16(f64_to_f32_odd(in[i]));
        return;
    default:
        return;
    }
}
