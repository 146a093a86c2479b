/*
 * GGUF block types (src/formats/ggml.c) against ggml's own reference code:
 * tests/unit/ggml_vectors.bin holds blocks with the floats ggml's
 * dequantisers return and floats with the bytes its reference quantisers
 * write (ggml_vectors.md says how they were made). Every value and every
 * byte must match exactly. Plus hand-made blocks from the format's
 * description, and the type table.
 */
#include "expect.h"
#include "ladle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static uint32_t u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Same bits, or both NaN. */
static int same_float(float a, float b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

static void test_vectors(void)
{
    FILE *f = fopen("tests/unit/ggml_vectors.bin", "rb");
    expect(f != NULL, "tests/unit/ggml_vectors.bin opens (run from the repository root)");
    if (!f)
        return;
    static unsigned char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *magic = "LADLE-GGML-VECTORS 1\n";
    size_t at = strlen(magic);
    expect(len > at && memcmp(buf, magic, at) == 0, "vector file header");
    int records[LAD_GGML_COUNT][2] = {{0}};
    while (at + 16 <= len) {
        uint32_t kind = u32(buf + at), type = u32(buf + at + 4), n = u32(buf + at + 8),
                 nb = u32(buf + at + 12);
        at += 16;
        if (at + nb + 4ull * n > len || type >= LAD_GGML_COUNT || kind > 1) {
            expect(0, "a vector record fits the file");
            return;
        }
        const unsigned char *bytes = buf + at + (kind ? 4ull * n : 0);
        const unsigned char *fl = buf + at + (kind ? 0 : nb);
        float *want = malloc(4ull * n), *got = malloc(4ull * n);
        unsigned char *out = malloc(nb);
        memcpy(want, fl, 4ull * n);
        char what[128];
        if (kind == 0) {
            lad_ggml_dequantize(type, bytes, got, n);
            size_t bad = 0;
            for (uint32_t i = 0; i < n; i++)
                bad += !same_float(got[i], want[i]);
            snprintf(what, sizeof what, "%s dequantised as ggml does (record %d): %zu differ",
                     lad_ggml_type_name(type), records[type][0], bad);
            expect(bad == 0 && nb == n / lad_ggml_block_size(type) * lad_ggml_type_size(type),
                   what);
        } else {
            lad_ggml_quantize(type, want, out, n);
            size_t bad = 0;
            for (uint32_t i = 0; i < nb; i++)
                bad += out[i] != bytes[i];
            snprintf(what, sizeof what, "%s quantised as ggml's reference (record %d): %zu bytes differ",
                     lad_ggml_type_name(type), records[type][1], bad);
            expect(bad == 0, what);
        }
        records[type][kind]++;
        at += nb + 4ull * n;
        free(want);
        free(got);
        free(out);
    }
    expect(at == len, "the vector file ends on a record");
    static const uint32_t read[] = {LAD_GGML_Q4_0, LAD_GGML_Q4_1, LAD_GGML_Q5_0, LAD_GGML_Q5_1,
                                    LAD_GGML_Q8_0, LAD_GGML_Q2_K, LAD_GGML_Q3_K, LAD_GGML_Q4_K,
                                    LAD_GGML_Q5_K, LAD_GGML_Q6_K};
    for (size_t i = 0; i < sizeof read / sizeof *read; i++)
        expect(records[read[i]][0] == 7, "seven dequantisation records per readable type");
    expect(records[LAD_GGML_Q8_0][1] == 6 && records[LAD_GGML_Q4_0][1] == 6,
           "six quantisation records for Q8_0 and Q4_0");
}

/* Blocks written by hand from the format's description. */
static void test_by_hand(void)
{
    /* Q8_0: d = 0.5 (f16 0x3800), codes -128..127 -> code * 0.5 */
    unsigned char b[34] = {0x00, 0x38};
    for (int j = 0; j < 32; j++)
        b[2 + j] = (unsigned char)(int8_t)(j * 8 - 128);
    float y[256];
    lad_ggml_dequantize(LAD_GGML_Q8_0, b, y, 32);
    int ok = 1;
    for (int j = 0; j < 32; j++)
        ok &= y[j] == (j * 8 - 128) * 0.5f;
    expect(ok, "Q8_0 by hand: code x d");
    /* Q4_0: d = 2 (0x4000); byte j holds element j (low nibble) and j + 16 */
    unsigned char q[18] = {0x00, 0x40};
    for (int j = 0; j < 16; j++)
        q[2 + j] = (unsigned char)(j | (15 - j) << 4);
    lad_ggml_dequantize(LAD_GGML_Q4_0, q, y, 32);
    ok = 1;
    for (int j = 0; j < 16; j++)
        ok &= y[j] == (j - 8) * 2.0f && y[j + 16] == (15 - j - 8) * 2.0f;
    expect(ok, "Q4_0 by hand: (nibble - 8) x d, low nibbles first");
    /* Q4_1: d = 1, m = -3 (0xc200): nibble - 3 */
    unsigned char q1[20] = {0x00, 0x3c, 0x00, 0xc2};
    for (int j = 0; j < 16; j++)
        q1[4 + j] = (unsigned char)(j | j << 4);
    lad_ggml_dequantize(LAD_GGML_Q4_1, q1, y, 32);
    ok = 1;
    for (int j = 0; j < 16; j++)
        ok &= y[j] == j - 3.0f && y[j + 16] == j - 3.0f;
    expect(ok, "Q4_1 by hand: nibble x d + m");
    /* Q5_0: the fifth bit of element j is bit j of qh: all set -> nibble + 16 - 16 */
    unsigned char q5[22] = {0x00, 0x3c, 0xff, 0xff, 0xff, 0xff};
    lad_ggml_dequantize(LAD_GGML_Q5_0, q5, y, 32);
    ok = 1;
    for (int j = 0; j < 32; j++)
        ok &= y[j] == 0.0f;
    expect(ok, "Q5_0 by hand: fifth bits from qh");
    /* Q6_K: d = 1, every scale 1, every 6-bit code 33 -> 1 */
    unsigned char k6[210] = {0};
    memset(k6, 0x11, 128);      /* low nibbles 1 */
    memset(k6 + 128, 0xaa, 64); /* high bits 2 -> code 1 | 2 << 4 = 33 */
    memset(k6 + 192, 1, 16);
    k6[208] = 0x00;
    k6[209] = 0x3c;
    lad_ggml_dequantize(LAD_GGML_Q6_K, k6, y, 256);
    ok = 1;
    for (int j = 0; j < 256; j++)
        ok &= y[j] == 1.0f;
    expect(ok, "Q6_K by hand: d x scale x (code - 32)");
    /* Quantising a block of zeros: d = 0, codes 0 (Q8_0) and 8 (Q4_0) */
    float z[32] = {0};
    unsigned char o8[34], o4[18];
    lad_ggml_quantize(LAD_GGML_Q8_0, z, o8, 32);
    lad_ggml_quantize(LAD_GGML_Q4_0, z, o4, 32);
    ok = o8[0] == 0 && o8[1] == 0 && o4[0] == 0 && o4[1] == 0x80; /* Q4_0: 0 / -8 = -0 */
    for (int j = 0; j < 32; j++)
        ok &= o8[2 + j] == 0;
    for (int j = 0; j < 16; j++)
        ok &= o4[2 + j] == 0x88;
    expect(ok, "zero blocks quantise to d = 0 (Q4_0: -0)");
    /* a NaN value: code 0, as ggml's reference cast gives on x86-64 */
    z[3] = NAN;
    z[4] = 1;
    lad_ggml_quantize(LAD_GGML_Q8_0, z, o8, 32);
    expect(o8[2 + 3] == 0 && o8[2 + 4] == 127, "Q8_0: a NaN value becomes code 0");
}

static void test_table(void)
{
    expect(lad_ggml_type_size(LAD_GGML_Q4_K) == 144 && lad_ggml_block_size(LAD_GGML_Q4_K) == 256,
           "Q4_K is 144 bytes per 256");
    expect(lad_ggml_type_name(4) == NULL && lad_ggml_type_name(LAD_GGML_COUNT) == NULL,
           "ids ggml removed or never had have no name");
    uint32_t t = 99;
    expect(lad_ggml_type_parse("q8_0", &t) == 0 && t == LAD_GGML_Q8_0, "q8_0 parses");
    expect(lad_ggml_type_parse("q9_0", &t) != 0, "q9_0 does not parse");
    lad_dtype d;
    expect(lad_ggml_dtype(LAD_GGML_BF16, &d) && d == LAD_BF16, "BF16 is a plain dtype");
    expect(!lad_ggml_dtype(LAD_GGML_Q8_0, &d), "Q8_0 is not a plain dtype");
}

int main(void)
{
    test_vectors();
    test_by_hand();
    test_table();
    printf("test_ggml: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
