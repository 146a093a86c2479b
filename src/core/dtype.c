/*
 * The dtype table and the scalar reference conversions.
 *
 * Rounding is round-to-nearest-even, as PyTorch's .half() and .bfloat16()
 * do; subnormals are kept and NaN stays NaN (quieted, sign and top payload
 * bits kept). The bulk kernels in convert.c must agree with these bit for
 * bit; tests/unit checks that over every input.
 */
#include "ladle.h"

#include <math.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;   /* as safetensors spells it */
    const char *user;   /* as --dtype takes it, or NULL */
    const char *torch;  /* config.json torch_dtype, or NULL */
    unsigned bits;
} dtypes[LAD_DTYPE_COUNT] = {
    [LAD_BOOL] = {"BOOL", NULL, "bool", 8},
    [LAD_F4] = {"F4", NULL, NULL, 4},
    [LAD_F6_E2M3] = {"F6_E2M3", NULL, NULL, 6},
    [LAD_F6_E3M2] = {"F6_E3M2", NULL, NULL, 6},
    [LAD_U8] = {"U8", NULL, "uint8", 8},
    [LAD_I8] = {"I8", NULL, "int8", 8},
    [LAD_F8_E5M2] = {"F8_E5M2", NULL, "float8_e5m2", 8},
    [LAD_F8_E4M3] = {"F8_E4M3", NULL, "float8_e4m3fn", 8},
    [LAD_F8_E8M0] = {"F8_E8M0", NULL, NULL, 8},
    [LAD_I16] = {"I16", NULL, "int16", 16},
    [LAD_U16] = {"U16", NULL, NULL, 16},
    [LAD_F16] = {"F16", "f16", "float16", 16},
    [LAD_BF16] = {"BF16", "bf16", "bfloat16", 16},
    [LAD_I32] = {"I32", NULL, "int32", 32},
    [LAD_U32] = {"U32", NULL, NULL, 32},
    [LAD_F32] = {"F32", "f32", "float32", 32},
    [LAD_F64] = {"F64", "f64", "float64", 64},
    [LAD_C64] = {"C64", NULL, "complex64", 64},
    [LAD_I64] = {"I64", NULL, "int64", 64},
    [LAD_U64] = {"U64", NULL, NULL, 64},
};

const char *lad_dtype_name(lad_dtype t) { return dtypes[t].name; }
const char *lad_dtype_torch_name(lad_dtype t) { return dtypes[t].torch; }
unsigned lad_dtype_bits(lad_dtype t) { return dtypes[t].bits; }

bool lad_dtype_mergeable(lad_dtype t)
{
    return t == LAD_F16 || t == LAD_BF16 || t == LAD_F32 || t == LAD_F64;
}

int lad_dtype_parse(const char *name, lad_dtype *out)
{
    for (int t = 0; t < LAD_DTYPE_COUNT; t++)
        if (strcmp(name, dtypes[t].name) == 0) {
            *out = (lad_dtype)t;
            return 0;
        }
    return -1;
}

int lad_dtype_parse_user(const char *name, lad_dtype *out)
{
    static const struct { const char *alias; lad_dtype t; } aliases[] = {
        {"float16", LAD_F16}, {"half", LAD_F16}, {"fp16", LAD_F16},
        {"bfloat16", LAD_BF16}, {"float32", LAD_F32}, {"float", LAD_F32},
        {"fp32", LAD_F32},
    };
    for (int t = 0; t < LAD_DTYPE_COUNT; t++)
        if (dtypes[t].user && strcasecmp(name, dtypes[t].user) == 0 && t != LAD_F64) {
            *out = (lad_dtype)t;
            return 0;
        }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(name, aliases[i].alias) == 0) {
            *out = aliases[i].t;
            return 0;
        }
    return -1;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float lad_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

float lad_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) /* Inf or NaN; a NaN comes out quiet, as F16C does */
        return bits_f32(sign | 0x7f800000 | (mant << 13) | (mant ? 0x400000 : 0));
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: mant * 2^-24, exact in fp32 */
        float v = (float)mant * 0x1p-24f;
        return bits_f32(sign | f32_bits(v));
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t lad_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((u >> 16) | 0x0040);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

uint16_t lad_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t x = u & 0x7fffffff;
    if (x > 0x7f800000) /* NaN: quiet it, keep the top payload bits */
        return sign | 0x7e00 | ((x >> 13) & 0x3ff);
    if (x >= 0x477ff000) /* >= 65520 rounds to Inf (ties to even) */
        return sign | 0x7c00;
    if (x < 0x38800000) { /* below 2^-14: a subnormal half or zero */
        if (x <= 0x33000000) /* <= 2^-25: rounds to zero */
            return sign;
        uint32_t e = x >> 23, m = (x & 0x7fffff) | 0x800000;
        uint32_t s = 126 - e; /* 14..25 */
        uint32_t q = m >> s, r = m & ((1u << s) - 1), half = 1u << (s - 1);
        if (r > half || (r == half && (q & 1)))
            q++;
        return sign | (uint16_t)q;
    }
    uint32_t h = ((x >> 13) - (112u << 10));
    uint32_t r = x & 0x1fff;
    if (r > 0x1000 || (r == 0x1000 && (h & 1)))
        h++;
    return sign | (uint16_t)h;
}

/* ------------------------------------------------------------ minifloats */

/*
 * The OCP 8-bit floats (as PyTorch's float8_e4m3fn and float8_e5m2) and
 * MXFP4's E2M1, each a sign, exponent and mantissa with bias
 * 2^(ebits-1) - 1 and subnormals at exponent 0:
 *   E4M3 (fn): no infinities; S.1111.111 is NaN; largest 448
 *   E5M2:      IEEE-like; exponent 31 is Inf (mantissa 0) or NaN; largest 57344
 *   E2M1:      no Inf or NaN; values 0, 0.5, 1, 1.5, 2, 3, 4, 6
 */
typedef struct minifloat {
    int ebits, mbits;
    float max;           /* the largest finite value */
    uint8_t max_code;    /* its code (positive) */
    uint8_t nan_code;    /* a NaN's code (positive), or 0: none */
} minifloat;

static const minifloat E4M3 = {4, 3, 448.0f, 0x7e, 0x7f};
static const minifloat E5M2 = {5, 2, 57344.0f, 0x7b, 0x7f};
static const minifloat E2M1 = {2, 1, 6.0f, 0x7, 0};

static float mini_to_f32(const minifloat *f, unsigned code)
{
    unsigned bits = 1u + (unsigned)f->ebits + (unsigned)f->mbits;
    unsigned sign = code >> (bits - 1) & 1, e = code >> f->mbits & ((1u << f->ebits) - 1),
             m = code & ((1u << f->mbits) - 1);
    int bias = (1 << (f->ebits - 1)) - 1;
    float v;
    if (f->nan_code && (code & ((1u << (bits - 1)) - 1)) == f->nan_code)
        v = NAN;
    else if (f == &E5M2 && e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexpf((float)m, 1 - bias - f->mbits);
    else
        v = ldexpf((float)(m | 1u << f->mbits), (int)e - bias - f->mbits);
    return sign ? -v : v;
}

/* Rounds to nearest, ties to even, and saturates at the largest finite
 * value (Inf too); NaN stays NaN (E2M1 has none: 0). */
static uint8_t f32_to_mini(const minifloat *f, float x)
{
    unsigned bits = 1u + (unsigned)f->ebits + (unsigned)f->mbits;
    uint8_t sign = signbit(x) ? (uint8_t)(1u << (bits - 1)) : 0;
    float a = fabsf(x);
    if (isnan(x))
        return f->nan_code ? (uint8_t)(sign | f->nan_code) : 0;
    if (a >= f->max)
        return (uint8_t)(sign | f->max_code);
    int bias = (1 << (f->ebits - 1)) - 1, e;
    frexpf(a, &e);
    e -= 1; /* a = 1.m x 2^e */
    if (e < 1 - bias)
        e = 1 - bias; /* subnormals share the smallest normal's spacing */
    /* a / quantum is exact: a power-of-two scaling of an fp32 */
    float q = rintf(ldexpf(a, f->mbits - e));
    unsigned code = a == 0 ? 0
                           : (unsigned)(e + bias - 1) * (1u << f->mbits) + (unsigned)q;
    if (e == 1 - bias) /* subnormal range: q is the code itself */
        code = (unsigned)q;
    if (code > f->max_code)
        code = f->max_code;
    return (uint8_t)(sign | code);
}

float lad_fp8_to_f32(lad_dtype t, uint8_t code)
{
    return mini_to_f32(t == LAD_F8_E5M2 ? &E5M2 : &E4M3, code);
}

uint8_t lad_f32_to_fp8(lad_dtype t, float x)
{
    return f32_to_mini(t == LAD_F8_E5M2 ? &E5M2 : &E4M3, x);
}

float lad_e2m1_to_f32(uint8_t nibble) { return mini_to_f32(&E2M1, nibble & 0xf); }

uint8_t lad_f32_to_e2m1(float x) { return f32_to_mini(&E2M1, x); }

float lad_fp8_max(lad_dtype t) { return t == LAD_F8_E5M2 ? E5M2.max : E4M3.max; }
