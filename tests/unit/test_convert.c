/*
 * The SIMD conversion kernels against the scalar reference, over every
 * input: all 65,536 16-bit patterns, and all 2^32 fp32 bit patterns (a
 * 1-in-257 stride of them under the sanitizers, which are ~20x slower).
 * The scalar reference itself is checked against numpy/PyTorch by
 * tests/py/test_dtype.py.
 */
#include "expect.h"
#include "ladle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void test_widen(lad_dtype t, const char *name)
{
    uint16_t in[65536];
    float a[65536], b[65536];
    for (unsigned i = 0; i < 65536; i++)
        in[i] = (uint16_t)i;
    lad_convert_force_scalar(true);
    lad_load_f32(t, in, a, 65536);
    lad_convert_force_scalar(false);
    lad_load_f32(t, in, b, 65536);
    expect(memcmp(a, b, sizeof a) == 0, name);
}

static void test_narrow(lad_dtype t, const char *name, uint32_t stride)
{
    enum { N = 1 << 16 };
    static uint32_t in[N];
    static uint16_t a[N], b[N];
    uint64_t bad = 0, first = 0;
    for (uint64_t base = 0; base < (1ull << 32); base += (uint64_t)N * stride) {
        for (uint32_t i = 0; i < N; i++)
            in[i] = (uint32_t)(base + (uint64_t)i * stride);
        lad_convert_force_scalar(true);
        lad_store_f32(t, (const float *)in, a, N);
        lad_convert_force_scalar(false);
        lad_store_f32(t, (const float *)in, b, N);
        for (uint32_t i = 0; i < N; i++)
            if (a[i] != b[i] && !bad++)
                first = in[i];
    }
    if (bad)
        printf("  %s: %llu mismatches, first at 0x%08llx\n", name, (unsigned long long)bad,
               (unsigned long long)first);
    expect(bad == 0, name);
}

/* The odd tails (n not a multiple of the vector width) take the scalar path
 * after the vector one: results must not depend on n. */
static void test_tails(void)
{
    float f[37];
    uint16_t h1[37], h2[37];
    for (int i = 0; i < 37; i++)
        f[i] = (float)i * 0.3377f - 5.0f;
    for (lad_dtype t = LAD_F16; t <= LAD_BF16; t++) {
        lad_store_f32(t, f, h1, 37);
        for (int i = 0; i < 37; i++)
            lad_store_f32(t, f + i, h2 + i, 1);
        expect(memcmp(h1, h2, sizeof h1) == 0, "tails");
    }
}

int main(void)
{
    const char *san = getenv("LADLE_SANITIZED");
    uint32_t stride = san && strcmp(san, "1") == 0 ? 257 : 1;
    printf("conversions: %s; fp32 patterns: %s\n", lad_convert_impl(),
           stride == 1 ? "all 2^32" : "1 in 257 (sanitizer build)");
    test_widen(LAD_BF16, "bf16 -> f32, all 65536");
    test_widen(LAD_F16, "f16 -> f32, all 65536");
    test_narrow(LAD_BF16, "f32 -> bf16, all fp32 patterns", stride);
    test_narrow(LAD_F16, "f32 -> f16, all fp32 patterns", stride);
    test_tails();
    printf("test_convert: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
