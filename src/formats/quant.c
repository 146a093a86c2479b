/*
 * Quantised checkpoints as the frontier ships them (see ladle.h): a weight
 * and its scales paired into one logical tensor, read as fp32 values, and
 * written back in the same scheme from merged fp32 values.
 *
 * Pairing follows the names and shapes the checkpoints use, with
 * config.json's quantization_config for the block size:
 *   DeepSeek-V3/R1, Kimi K2, Qwen3-FP8   W (F8_E4M3) + W_scale_inv [R/b0, C/b1]
 *   compressed-tensors, FBGEMM           W (F8) + W_scale: [], [1], [R], [R, 1]
 *                                        or, with strategy block, [R/b0, C/b1]
 *   gpt-oss                              X_blocks (U8 [..., G, 16]) + X_scales
 *                                        (U8 [..., G])
 * A low-bit tensor that pairs with nothing keeps a `problem` the planner
 * reports; a quantization_config ladle cannot read marks the model
 * (quant_method) and the planner refuses it. Opening never fails on them,
 * so `ladle info` shows any checkpoint.
 *
 * Re-quantising (lad_quant_encode_*):
 *   FP8    scale = amax / 448 (E4M3; 57344 for E5M2) over the block, row or
 *          tensor, stored in the scale tensor's dtype; codes = the value
 *          divided by the stored scale, rounded to nearest even and
 *          saturated (DeepSeek's and llm-compressor's rule). An all-zero
 *          block gets scale 1 and zero codes (the rule divides 0 by 0).
 *   MXFP4  the OCP MX rule as triton_kernels' downcast_to_mxfp does it: per
 *          32 values, scale = amax / 6 rounded up to a power of two (the
 *          E8M0 byte is its exponent), codes = value x (1 / scale) to E2M1
 *          with ties away from zero, saturated at 6.
 */
#include "quant.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *lad_qscheme_name(lad_qscheme s)
{
    static const char *const names[] = {"none", "fp8 per tensor", "fp8 per channel",
                                        "fp8 block", "mxfp4", "ggml blocks"};
    return s <= LAD_Q_GGML ? names[s] : "?";
}

const char *lad_tensor_type_name(const lad_tensor *t)
{
    if (t->q.ggml_type)
        return lad_ggml_type_name(t->q.ggml_type);
    return lad_dtype_name(t->dtype);
}

int lad_tensor_read_f32(const lad_tensor *t, uint64_t start, size_t n, void *raw, float *out,
                        lad_error *err)
{
    if (t->lora) /* with LoRA deltas */
        return lad_lora_read(t, start, n, out, err);
    if (t->q.scheme) /* quantised: its dequantised values */
        return lad_quant_read(t, start, n, out, err);
    size_t es = lad_dtype_bits(t->dtype) / 8;
    if (lad_file_read(t->file, raw, n * es, t->offset + start * es, err))
        return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    lad_load_f32(t->dtype, raw, out, n);
    return 0;
}

bool lad_tensor_same_shape(const lad_tensor *a, const lad_tensor *b)
{
    return a->ndim == b->ndim && !memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape);
}

bool lad_tensor_mergeable(const lad_tensor *t)
{
    return t->q.scheme != LAD_Q_NONE || lad_dtype_mergeable(t->dtype);
}

static bool fp8(lad_dtype t) { return t == LAD_F8_E4M3 || t == LAD_F8_E5M2; }

static bool lowbit_float(lad_dtype t)
{
    return fp8(t) || t == LAD_F4 || t == LAD_F6_E2M3 || t == LAD_F6_E3M2 || t == LAD_F8_E8M0;
}

/* ------------------------------------------------------------ pairing */

typedef struct qconfig {
    json_t *qc;
    const char *method;
    uint32_t block[2];     /* from weight_block_size / block_structure, or 0 */
} qconfig;

static bool pair_of(json_t *a, uint32_t *out)
{
    if (!json_is_array(a) || json_array_size(a) != 2)
        return false;
    for (int k = 0; k < 2; k++) {
        json_t *v = json_array_get(a, (size_t)k);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 20)
            return false;
        out[k] = (uint32_t)json_integer_value(v);
    }
    return true;
}

/* What quantization_config says, and whether ladle reads that method. */
static void read_config(const lad_model *m, qconfig *c)
{
    memset(c, 0, sizeof *c);
    static const char *const keys[] = {"quantization_config", "compression_config"};
    for (size_t k = 0; m->config && !c->qc && k < 2; k++)
        c->qc = json_object_get(m->config, keys[k]);
    if (!c->qc)
        return;
    c->method = json_string_value(json_object_get(c->qc, "quant_method"));
    pair_of(json_object_get(c->qc, "weight_block_size"), c->block);
    /* compressed-tensors: every group's weights must be 8-bit floats */
    json_t *groups = json_object_get(c->qc, "config_groups");
    const char *k;
    json_t *g;
    json_object_foreach(groups, k, g) {
        json_t *w = json_object_get(g, "weights");
        const char *type = json_string_value(json_object_get(w, "type"));
        json_t *bits = json_object_get(w, "num_bits");
        if (!type || strcmp(type, "float") || json_integer_value(bits) != 8)
            c->method = "compressed-tensors (non-FP8 weights)";
        pair_of(json_object_get(w, "block_structure"), c->block);
    }
}

static bool method_supported(const char *method)
{
    static const char *const ok[] = {"fp8", "compressed-tensors", "fbgemm_fp8", "mxfp4"};
    for (size_t i = 0; method && i < sizeof ok / sizeof *ok; i++)
        if (!strcmp(method, ok[i]))
            return true;
    return false;
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* The block size whose ceilings give the scale grid (sr, sc) for an R x C
 * weight: the config's, else 128 x 128, else what the shapes imply. */
static bool block_of(uint64_t R, uint64_t C, uint64_t sr, uint64_t sc, const qconfig *c,
                     uint32_t *b)
{
    uint32_t tries[3][2] = {{c->block[0], c->block[1]}, {128, 128},
                            {(uint32_t)(sr ? ceil_div(R, sr) : 0),
                             (uint32_t)(sc ? ceil_div(C, sc) : 0)}};
    for (int i = 0; i < 3; i++) {
        if (!tries[i][0] || !tries[i][1])
            continue;
        if (ceil_div(R, tries[i][0]) == sr && ceil_div(C, tries[i][1]) == sc) {
            b[0] = tries[i][0];
            b[1] = tries[i][1];
            return true;
        }
        if (i == 0) /* the config names the size: nothing else will do */
            return false;
    }
    return false;
}

static int pair_fp8(lad_model *m, lad_tensor *t, const qconfig *c, lad_error *err)
{
    char *name[2] = {lad_asprintf("%s_scale_inv", t->name), lad_asprintf("%s_scale", t->name)};
    lad_tensor *s = NULL;
    for (int k = 0; k < 2 && !s; k++)
        s = name[k] ? (lad_tensor *)lad_model_find(m, name[k]) : NULL;
    free(name[0]);
    free(name[1]);
    if (!name[0] || !name[1])
        return lad_fail(err, "out of memory");
    if (!s) {
        t->q.problem = "it has no scales (NAME_scale_inv or NAME_scale) beside it";
        return 0;
    }
    if (!lad_dtype_mergeable(s->dtype) || s->dtype == LAD_F64) {
        t->q.problem = "its scales are not F32, BF16 or F16";
        return 0;
    }
    lad_quant q = {.scales = s};
    uint64_t R = t->ndim == 2 ? t->shape[0] : 0, C = t->ndim == 2 ? t->shape[1] : 0;
    if (s->nelem == 1)
        q.scheme = LAD_Q_FP8_TENSOR;
    else if (R && (s->ndim == 1 || (s->ndim == 2 && s->shape[1] == 1)) && s->shape[0] == R)
        q.scheme = LAD_Q_FP8_CHANNEL;
    else if (R && s->ndim == 2 && block_of(R, C, s->shape[0], s->shape[1], c, q.block))
        q.scheme = LAD_Q_FP8_BLOCK;
    if (!q.scheme) {
        t->q.problem = "its scales' shape fits no scheme ladle knows (per tensor, per row, "
                       "or blocks of the weight)";
        return 0;
    }
    t->q = q;
    s->hidden = true;
    return 0;
}

static int pair_mxfp4(lad_model *m, lad_tensor *t, lad_error *err)
{
    size_t len = strlen(t->name) - strlen("_blocks");
    char *sname = lad_asprintf("%.*s_scales", (int)len, t->name);
    if (!sname)
        return lad_fail(err, "out of memory");
    lad_tensor *s = (lad_tensor *)lad_model_find(m, sname);
    free(sname);
    if (!s)
        return 0; /* a plain U8 tensor that happens to end in _blocks */
    if (s->dtype != LAD_U8 || t->ndim < 2 || t->shape[t->ndim - 1] != 16 ||
        s->ndim != t->ndim - 1 || memcmp(s->shape, t->shape, (size_t)s->ndim * 8)) {
        t->q.problem = "MXFP4 blocks need [..., G, 16] with U8 scales [..., G]";
        return 0;
    }
    char *logical = lad_asprintf("%.*s", (int)len, t->name);
    if (!logical)
        return lad_fail(err, "out of memory");
    t->q = (lad_quant){.scheme = LAD_Q_MXFP4, .scales = s, .phys_name = t->name,
                       .phys_ndim = t->ndim};
    memcpy(t->q.phys_shape, t->shape, sizeof t->shape);
    t->name = logical;
    t->ndim -= 1;
    t->shape[t->ndim - 1] *= 32;
    t->shape[t->ndim] = 0;
    t->nelem *= 2;
    t->dtype = LAD_F4;
    s->hidden = true;
    return 0;
}

int lad_quant_pair(lad_model *m, lad_error *err)
{
    qconfig c;
    read_config(m, &c);
    if (c.qc && !method_supported(c.method)) {
        m->quant_method = c.method ? c.method : "?";
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < m->ntensors && rc == 0; i++) {
        lad_tensor *t = &m->tensors[i];
        if (fp8(t->dtype))
            rc = pair_fp8(m, t, &c, err);
        else if (t->dtype == LAD_U8 && lad_ends_with(t->name, "_blocks"))
            rc = pair_mxfp4(m, t, err);
    }
    for (size_t i = 0; i < m->ntensors && rc == 0; i++) {
        lad_tensor *t = &m->tensors[i];
        if (lowbit_float(t->dtype) && !t->q.scheme && !t->hidden && !t->q.problem)
            t->q.problem = "ladle finds no scales to pair it with";
    }
    return rc;
}

/* ------------------------------------------------------------ reading */

static float scale_at(const lad_tensor *s, const unsigned char *raw, size_t i)
{
    float v;
    lad_load_f32(s->dtype, raw + i * (lad_dtype_bits(s->dtype) / 8), &v, 1);
    return v;
}

static int read_fp8(const lad_tensor *t, uint64_t start, size_t n, float *out, lad_error *err)
{
    const lad_quant *q = &t->q;
    const lad_tensor *s = q->scales;
    size_t es = lad_dtype_bits(s->dtype) / 8;
    uint64_t C = t->ndim == 2 ? t->shape[1] : 1;
    uint64_t r0 = start / C, r1 = (start + n - 1) / C;
    uint64_t first = 0, count = 1, cols = 1; /* the scales this range needs */
    if (q->scheme == LAD_Q_FP8_CHANNEL) {
        first = r0;
        count = r1 - r0 + 1;
    } else if (q->scheme == LAD_Q_FP8_BLOCK) {
        cols = s->shape[1];
        first = r0 / q->block[0] * cols;
        count = (r1 / q->block[0] - r0 / q->block[0] + 1) * cols;
    }
    size_t at = (n + 7) & ~(size_t)7; /* the scales aligned for their dtype */
    unsigned char *codes = malloc(at + count * es + 1);
    if (!codes)
        return lad_fail(err, "out of memory");
    unsigned char *scales = codes + at;
    int rc = lad_file_read(t->file, codes, n, t->offset + start, err);
    if (rc == 0)
        rc = lad_file_read(s->file, scales, count * es, s->offset + first * es, err);
    if (rc) {
        free(codes);
        return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    }
    float lut[256];
    for (int c = 0; c < 256; c++)
        lut[c] = lad_fp8_to_f32(t->dtype, (uint8_t)c);
    for (size_t i = 0; i < n; i++) {
        uint64_t e = start + i, r = e / C;
        size_t k = 0;
        if (q->scheme == LAD_Q_FP8_CHANNEL)
            k = (size_t)(r - r0);
        else if (q->scheme == LAD_Q_FP8_BLOCK)
            k = (size_t)((r / q->block[0] - r0 / q->block[0]) * cols + (e % C) / q->block[1]);
        out[i] = lut[codes[i]] * scale_at(s, scales, k);
    }
    free(codes);
    return 0;
}

static float e8m0(uint8_t s) { return s == 0xff ? NAN : ldexpf(1.0f, (int)s - 127); }

static int read_mxfp4(const lad_tensor *t, uint64_t start, size_t n, float *out, lad_error *err)
{
    const lad_tensor *s = t->q.scales;
    uint64_t b0 = start / 2, b1 = (start + n - 1) / 2, s0 = start / 32, s1 = (start + n - 1) / 32;
    size_t nb = (size_t)(b1 - b0 + 1), ns = (size_t)(s1 - s0 + 1);
    unsigned char *codes = malloc(nb + ns), *scales = codes + nb;
    if (!codes)
        return lad_fail(err, "out of memory");
    if (lad_file_read(t->file, codes, nb, t->offset + b0, err) ||
        lad_file_read(s->file, scales, ns, s->offset + s0, err)) {
        free(codes);
        return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->q.phys_name);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t e = start + i;
        uint8_t byte = codes[e / 2 - b0], nib = e % 2 ? byte >> 4 : byte & 0xf;
        out[i] = lad_e2m1_to_f32(nib) * e8m0(scales[e / 32 - s0]);
    }
    free(codes);
    return 0;
}

/* A GGUF block type: the blocks covering the range, dequantised as ggml
 * does (ggml.c). Engine items start and end on whole blocks; any other
 * range goes through a copy. */
static int read_ggml(const lad_tensor *t, uint64_t start, size_t n, float *out, lad_error *err)
{
    uint32_t type = t->q.ggml_type, bs = lad_ggml_block_size(type), ts = lad_ggml_type_size(type);
    uint64_t b0 = start / bs, b1 = (start + n + bs - 1) / bs;
    size_t nb = (size_t)(b1 - b0), bytes = nb * ts;
    bool whole = start % bs == 0 && n % bs == 0;
    size_t fbytes = whole ? 0 : nb * bs * sizeof(float); /* (floats first: aligned) */
    unsigned char *buf = malloc(fbytes + bytes), *raw = buf + fbytes;
    if (!buf)
        return lad_fail(err, "out of memory");
    int rc = lad_file_read(t->file, raw, bytes, t->offset + b0 * ts, err);
    if (rc) {
        lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    } else if (whole) {
        lad_ggml_dequantize(type, raw, out, n);
    } else {
        float *all = (float *)(void *)buf;
        lad_ggml_dequantize(type, raw, all, nb * bs);
        memcpy(out, all + (start - b0 * bs), n * sizeof *out);
    }
    free(buf);
    return rc;
}

int lad_quant_read(const lad_tensor *t, uint64_t start, size_t n, float *out, lad_error *err)
{
    if (n == 0)
        return 0;
    if (t->q.scheme == LAD_Q_MXFP4)
        return read_mxfp4(t, start, n, out, err);
    if (t->q.scheme == LAD_Q_GGML)
        return read_ggml(t, start, n, out, err);
    return read_fp8(t, start, n, out, err);
}

/* ------------------------------------------------------------ writing */

/* The scale as the scale tensor stores it, read back: codes are computed
 * from this value, so code x stored scale is what a loader sees. */
static float stored(lad_dtype t, float v, unsigned char *raw)
{
    lad_store_f32(t, &v, raw, 1);
    float back;
    lad_load_f32(t, raw, &back, 1);
    return back;
}

static float fp8_scale(lad_dtype codes, lad_dtype sdt, float amax, unsigned char *raw)
{
    float s = amax / lad_fp8_max(codes);
    if (s == 0) /* all zeros (or too small to scale): zero codes, scale 1 */
        s = 1;
    return stored(sdt, s, raw);
}

void lad_quant_encode_fp8(const lad_quant *q, lad_dtype codes, lad_dtype sdt, uint64_t cols,
                          size_t n, const float *x, uint8_t *out, unsigned char *scales,
                          float tensor_amax)
{
    size_t es = lad_dtype_bits(sdt) / 8;
    uint64_t C = cols ? cols : 1;
    if (q->scheme == LAD_Q_FP8_TENSOR) {
        float s = fp8_scale(codes, sdt, tensor_amax, scales);
        for (size_t i = 0; i < n; i++)
            out[i] = lad_f32_to_fp8(codes, x[i] / s);
        return;
    }
    if (q->scheme == LAD_Q_FP8_CHANNEL) { /* the range is whole rows */
        for (size_t r = 0; r < n / C; r++) {
            const float *row = x + r * C;
            float amax = 0;
            bool nan = false;
            for (uint64_t j = 0; j < C; j++) {
                nan |= isnan(row[j]);
                amax = fmaxf(amax, fabsf(row[j]));
            }
            float s = fp8_scale(codes, sdt, nan ? NAN : amax, scales + r * es);
            for (uint64_t j = 0; j < C; j++)
                out[r * C + j] = lad_f32_to_fp8(codes, row[j] / s);
        }
        return;
    }
    /* blocks: the range is one row of blocks (b0 rows, fewer at the edge) */
    uint64_t rows = n / C, b1 = q->block[1], nblk = (C + b1 - 1) / b1;
    for (uint64_t cb = 0; cb < nblk; cb++) {
        uint64_t c0 = cb * b1, c1 = c0 + b1 < C ? c0 + b1 : C;
        float amax = 0;
        bool nan = false;
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t j = c0; j < c1; j++) {
                float a = fabsf(x[r * C + j]);
                nan |= isnan(a);
                amax = fmaxf(amax, a);
            }
        float s = fp8_scale(codes, sdt, nan ? NAN : amax, scales + cb * es);
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t j = c0; j < c1; j++)
                out[r * C + j] = lad_f32_to_fp8(codes, x[r * C + j] / s);
    }
}

/* E2M1 as triton_kernels' downcast does it, from the fp32 bits of a value
 * already divided by its scale: ties away from zero, saturated at 6. */
static uint8_t e2m1_triton(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    uint32_t sign = u & 0x80000000u, e = (u >> 23) & 0xff, m = u & 0x7fffff;
    if (e < 127) { /* below 1: the subnormal and 0.5 range */
        uint32_t shift = 126 - e;
        m = shift >= 32 ? 0 : (0x400000u | (m >> 1)) >> shift;
    }
    uint32_t ee = (e > 126 ? e : 126) - 126;
    uint32_t code = (((ee << 2) | (m >> 21)) + 1) >> 1;
    if (code > 7)
        code = 7;
    return (uint8_t)((sign >> 28) | code);
}

void lad_quant_encode_mxfp4(size_t n, const float *x, uint8_t *out, uint8_t *scales)
{
    /* n is a multiple of 32 (a row of the logical tensor is G x 32) */
    for (size_t g = 0; g < n / 32; g++) {
        const float *v = x + g * 32;
        float amax = 0;
        bool nan = false;
        for (int i = 0; i < 32; i++) {
            nan |= isnan(v[i]);
            amax = fmaxf(amax, fabsf(v[i]));
        }
        float ds = nan ? NAN : amax / 6.0f;
        uint32_t bits;
        memcpy(&bits, &ds, 4);
        bits = (bits + 0x007fffffu) & 0x7f800000u; /* up to a power of two */
        float rounded;
        memcpy(&rounded, &bits, 4);
        float inv = rounded == 0 ? 0 : 1.0f / rounded;
        scales[g] = (uint8_t)(bits >> 23);
        for (int i = 0; i < 32; i += 2)
            out[g * 16 + (size_t)i / 2] = (uint8_t)(e2m1_triton(v[i] * inv) |
                                                    e2m1_triton(v[i + 1] * inv) << 4);
    }
}
