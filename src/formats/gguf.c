/*
 * GGUF files (llama.cpp, Ollama, LM Studio), versions 2 and 3: read as a
 * model like any other, and written.
 *
 *   "GGUF" u32 version, u64 tensors, u64 key-values
 *   key-values   string key, u32 type, value (arrays: u32 type, u64 count, items)
 *   tensor infos string name, u32 dims, u64 ne[dims] (innermost first), u32
 *                ggml type, u64 offset (from the data section, aligned)
 *   data         at the header's end rounded up to general.alignment (32)
 *
 * Every count, length and offset is checked before it is trusted, as
 * ggml's own reader (gguf.cpp) does and as strictly: known value types, no
 * nested arrays, unique keys and names, names under 64 bytes, at most 4
 * dimensions, rows a whole number of blocks, and tensors laid out one
 * after another in info order, each at the previous one's end rounded up
 * to the alignment, all inside the file.
 *
 * A tensor's shape is given row-major, as safetensors and PyTorch hold it
 * (ne reversed), so names, shapes and element order agree with the same
 * model in safetensors. F32, F16, BF16, F64 and the integer types are plain
 * dtypes; the block types ladle reads (ggml.c) are quantised tensors
 * (LAD_Q_GGML) read as fp32; other types are kept as bytes with their
 * ggml type, never merged (the planner copies them only when every input
 * holds the same bytes).
 */
#include "util.h"
#include "writer.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64,
    T_F64, T_COUNT
};
static const char *const TYPE_NAMES[T_COUNT] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32",
                                                "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
                                                "UINT64", "INT64", "FLOAT64"};
static const unsigned TYPE_SIZE[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

#define MAX_NAME 64         /* ggml's GGML_MAX_NAME, terminator included */
#define MAX_KEY (1u << 16)
#define MAX_DIMS 4
#define DEFAULT_ALIGNMENT 32u

typedef struct gguf_kv {
    char *key;
    uint32_t type;         /* T_ARRAY: the value starts with the item type and count */
    uint64_t off, len;     /* the value's bytes in the file */
} gguf_kv;

struct lad_gguf_meta {
    uint32_t version, alignment;
    gguf_kv *kv;
    size_t nkv;
};

/* A buffered reader over a file's bytes with its position. */
typedef struct cursor {
    const lad_file *f;
    uint64_t pos;
    unsigned char buf[1 << 16];
    uint64_t buf_at;       /* file offset of buf[0] */
    size_t buf_len;
    lad_error *err;
} cursor;

static int short_file(cursor *c, const char *what)
{
    return lad_fail(c->err, "%s: not a valid GGUF file: it ends inside %s (at byte %llu of %llu)",
                    c->f->path, what, (unsigned long long)c->pos,
                    (unsigned long long)c->f->size);
}

static int take(cursor *c, void *dst, uint64_t n, const char *what)
{
    if (n > c->f->size || c->pos > c->f->size - n)
        return short_file(c, what);
    unsigned char *d = dst;
    while (n) {
        if (c->pos < c->buf_at || c->pos >= c->buf_at + c->buf_len) {
            uint64_t left = c->f->size - c->pos;
            size_t want = left < sizeof c->buf ? (size_t)left : sizeof c->buf;
            if (lad_file_read(c->f, c->buf, want, c->pos, c->err))
                return -1;
            c->buf_at = c->pos;
            c->buf_len = want;
        }
        size_t at = (size_t)(c->pos - c->buf_at), k = c->buf_len - at;
        if (k > n)
            k = (size_t)n;
        if (d) {
            memcpy(d, c->buf + at, k);
            d += k;
        }
        c->pos += k;
        n -= k;
    }
    return 0;
}

static int skip(cursor *c, uint64_t n, const char *what)
{
    if (n > c->f->size || c->pos > c->f->size - n)
        return short_file(c, what);
    c->pos += n;
    return 0;
}

static uint64_t le(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int u32_at(cursor *c, uint32_t *v, const char *what)
{
    unsigned char b[4];
    if (take(c, b, 4, what))
        return -1;
    *v = (uint32_t)le(b, 4);
    return 0;
}

static int u64_at(cursor *c, uint64_t *v, const char *what)
{
    unsigned char b[8];
    if (take(c, b, 8, what))
        return -1;
    *v = le(b, 8);
    return 0;
}

/* A string: u64 length, bytes; held (NUL-terminated) when out is not NULL. */
static int string_at(cursor *c, uint64_t max, char **out, const char *what)
{
    uint64_t n;
    if (u64_at(c, &n, what))
        return -1;
    if (n > max)
        return lad_fail(c->err, "%s: not a valid GGUF file: %s at byte %llu is %llu bytes long "
                                "(at most %llu)",
                        c->f->path, what, (unsigned long long)c->pos - 8, (unsigned long long)n,
                        (unsigned long long)max);
    if (!out)
        return skip(c, n, what);
    char *s = malloc((size_t)n + 1);
    if (!s)
        return lad_fail(c->err, "out of memory");
    if (take(c, s, n, what)) {
        free(s);
        return -1;
    }
    s[n] = 0;
    if (strlen(s) != n) {
        free(s);
        return lad_fail(c->err, "%s: not a valid GGUF file: %s holds a NUL byte", c->f->path,
                        what);
    }
    *out = s;
    return 0;
}

/* A value of type `type` (not an array), for display; skipped if out NULL. */
static int value_at(cursor *c, uint32_t type, char *out, size_t len, const char *key)
{
    if (type == T_STRING) {
        char *s = NULL;
        if (string_at(c, c->f->size, out ? &s : NULL, key))
            return -1;
        if (out)
            snprintf(out, len, "%s", s);
        free(s);
        return 0;
    }
    unsigned char b[8];
    if (take(c, b, TYPE_SIZE[type], key))
        return -1;
    if (!out)
        return 0;
    uint64_t v = le(b, TYPE_SIZE[type]);
    switch (type) {
    case T_I8: snprintf(out, len, "%d", (int8_t)v); break;
    case T_I16: snprintf(out, len, "%d", (int16_t)v); break;
    case T_I32: snprintf(out, len, "%d", (int32_t)v); break;
    case T_I64: snprintf(out, len, "%lld", (long long)(int64_t)v); break;
    case T_BOOL: snprintf(out, len, "%s", v ? "true" : "false"); break;
    case T_F32: {
        float f;
        uint32_t u = (uint32_t)v;
        memcpy(&f, &u, 4);
        snprintf(out, len, "%.9g", f);
        break;
    }
    case T_F64: {
        double d;
        memcpy(&d, &v, 8);
        snprintf(out, len, "%.17g", d);
        break;
    }
    default: snprintf(out, len, "%llu", (unsigned long long)v); break;
    }
    return 0;
}

static int bad(cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(cursor *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lad_fail(c->err, "%s: not a valid GGUF file: %s", c->f->path, msg);
}

/* One key-value: recorded in meta, shown in `shown` (the file's metadata). */
static int read_kv(cursor *c, struct lad_gguf_meta *meta, json_t *shown)
{
    gguf_kv *kv = &meta->kv[meta->nkv];
    if (string_at(c, MAX_KEY, &kv->key, "a key"))
        return -1;
    meta->nkv++;
    if (!kv->key[0])
        return bad(c, "key %zu is empty", meta->nkv - 1);
    if (json_object_get(shown, kv->key))
        return bad(c, "key '%s' appears twice", kv->key);
    if (u32_at(c, &kv->type, kv->key))
        return -1;
    if (kv->type >= T_COUNT)
        return bad(c, "key '%s' has value type %u, which GGUF does not define", kv->key,
                   kv->type);
    kv->off = c->pos;
    char text[512] = "";
    if (kv->type != T_ARRAY) {
        if (value_at(c, kv->type, text, sizeof text, kv->key))
            return -1;
    } else {
        uint32_t it;
        uint64_t n;
        if (u32_at(c, &it, kv->key) || u64_at(c, &n, kv->key))
            return -1;
        if (it >= T_COUNT || it == T_ARRAY)
            return bad(c, "array '%s' has item type %u (nested arrays and undefined types are "
                          "not GGUF values)",
                       kv->key, it);
        if (it != T_STRING) {
            if (n > (c->f->size - c->pos) / TYPE_SIZE[it])
                return short_file(c, kv->key);
            if (skip(c, n * TYPE_SIZE[it], kv->key))
                return -1;
        } else {
            for (uint64_t i = 0; i < n; i++)
                if (string_at(c, c->f->size, NULL, kv->key))
                    return -1;
        }
        snprintf(text, sizeof text, "[%llu %s values]", (unsigned long long)n, TYPE_NAMES[it]);
    }
    kv->len = c->pos - kv->off;
    if (!strcmp(kv->key, "general.alignment")) {
        uint64_t a = 0;
        if (kv->type != T_U32)
            return bad(c, "%s must be a UINT32", kv->key);
        unsigned char b[4];
        if (lad_file_read(c->f, b, 4, kv->off, c->err))
            return -1;
        a = le(b, 4);
        if (a == 0 || (a & (a - 1)))
            return bad(c, "general.alignment %llu is not a power of two", (unsigned long long)a);
        meta->alignment = (uint32_t)a;
    }
    json_object_set_new(shown, kv->key, json_string(text));
    return 0;
}

static void free_meta(struct lad_gguf_meta *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nkv; i++)
        free(m->kv[i].key);
    free(m->kv);
    free(m);
}

void lad_gguf_free(lad_file *f)
{
    free_meta(f->gguf);
    f->gguf = NULL;
}

/* One tensor info into t (offset relative to the data section). */
static int read_tensor(cursor *c, lad_tensor *t, json_t *names)
{
    if (string_at(c, MAX_NAME - 1, &t->name, "a tensor name"))
        return -1;
    if (!t->name[0])
        return bad(c, "a tensor has an empty name");
    if (json_object_get(names, t->name))
        return bad(c, "tensor '%s' appears twice", t->name);
    json_object_set_new(names, t->name, json_true());
    uint32_t nd, type;
    if (u32_at(c, &nd, t->name))
        return -1;
    if (nd > MAX_DIMS)
        return bad(c, "tensor '%s' has %u dimensions (at most 4)", t->name, nd);
    uint64_t ne[MAX_DIMS];
    t->ndim = (int)nd;
    t->nelem = 1;
    for (uint32_t d = 0; d < nd; d++) {
        if (u64_at(c, &ne[d], t->name))
            return -1;
        if (ne[d] > (uint64_t)INT64_MAX || (ne[d] && t->nelem > (uint64_t)INT64_MAX / ne[d]))
            return bad(c, "tensor '%s' has more elements than a file can hold", t->name);
        t->nelem *= ne[d];
        t->shape[nd - 1 - d] = ne[d];
    }
    if (u32_at(c, &type, t->name) || u64_at(c, &t->offset, t->name))
        return -1;
    uint32_t bs = lad_ggml_block_size(type), ts = lad_ggml_type_size(type);
    if (!bs)
        return bad(c, "tensor '%s' has ggml type %u, which ggml does not define", t->name, type);
    if (nd && ne[0] % bs)
        return bad(c, "tensor '%s' is %s, but its rows of %llu are not whole blocks of %u", t->name,
                   lad_ggml_type_name(type), (unsigned long long)ne[0], bs);
    if (t->nelem % bs)
        return bad(c, "tensor '%s' is not a whole number of %s blocks", t->name,
                   lad_ggml_type_name(type));
    if (t->nelem / bs > UINT64_MAX / ts)
        return bad(c, "tensor '%s' has more bytes than a file can hold", t->name);
    t->nbytes = t->nelem / bs * ts;
    if (lad_ggml_dtype(type, &t->dtype))
        return 0;
    t->dtype = LAD_U8;
    t->q.ggml_type = type;
    if (lad_ggml_is_block(type))
        t->q.scheme = LAD_Q_GGML;
    return 0;
}

int lad_gguf_parse(lad_file *f, lad_tensor **tensors, size_t *ntensors, lad_error *err)
{
    cursor *c = calloc(1, sizeof *c);
    struct lad_gguf_meta *meta = calloc(1, sizeof *meta);
    json_t *shown = json_object(), *names = json_object();
    lad_tensor *ts = NULL;
    uint64_t nt = 0, nkv = 0;
    uint32_t version = 0;
    int rc = 0;
    if (!c || !meta || !shown || !names) {
        rc = lad_fail(err, "out of memory");
        goto out;
    }
    *c = (cursor){.f = f, .err = err};
    unsigned char magic[4];
    if (take(c, magic, 4, "the header") || u32_at(c, &version, "the header")) {
        rc = -1;
        goto out;
    }
    if (memcmp(magic, "GGUF", 4)) {
        rc = lad_fail(err, "%s: not a GGUF file (no GGUF magic)", f->path);
        goto out;
    }
    if (version != 2 && version != 3) {
        rc = lad_fail(err, "%s: GGUF version %u, which ladle does not read (2 and 3 only)",
                      f->path, version);
        goto out;
    }
    if (u64_at(c, &nt, "the header") || u64_at(c, &nkv, "the header")) {
        rc = -1;
        goto out;
    }
    /* A key-value takes at least 13 bytes, a tensor info at least 24. */
    if (nkv > f->size / 13 || nt > f->size / 24) {
        rc = lad_fail(err, "%s: not a valid GGUF file: it claims %llu key-values and %llu tensors, "
                           "more than its %llu bytes can hold",
                      f->path, (unsigned long long)nkv, (unsigned long long)nt,
                      (unsigned long long)f->size);
        goto out;
    }
    meta->version = version;
    meta->alignment = DEFAULT_ALIGNMENT;
    if (!(meta->kv = calloc((size_t)nkv + 1, sizeof *meta->kv)) ||
        !(ts = calloc((size_t)nt + 1, sizeof *ts))) {
        rc = lad_fail(err, "out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < nkv && rc == 0; i++)
        rc = read_kv(c, meta, shown);
    for (uint64_t i = 0; i < nt && rc == 0; i++)
        rc = read_tensor(c, &ts[i], names);
    if (rc)
        goto out;
    uint64_t a = meta->alignment, start = (c->pos + a - 1) / a * a, expect = 0;
    for (uint64_t i = 0; i < nt; i++) {
        lad_tensor *t = &ts[i];
        if (t->offset != expect) {
            rc = lad_fail(err, "%s: not a valid GGUF file: tensor '%s' is at offset %llu of the "
                               "data, where the tensors before it end at %llu (aligned to %llu)",
                          f->path, t->name, (unsigned long long)t->offset,
                          (unsigned long long)expect, (unsigned long long)a);
            goto out;
        }
        if (start > f->size || t->offset > f->size - start ||
            t->nbytes > f->size - start - t->offset) {
            rc = lad_fail(err, "%s: not a valid GGUF file: tensor '%s' (%llu bytes at %llu) ends "
                               "past the end of the file (%llu bytes)",
                          f->path, t->name, (unsigned long long)t->nbytes,
                          (unsigned long long)(start + t->offset), (unsigned long long)f->size);
            goto out;
        }
        expect = (t->offset + t->nbytes + a - 1) / a * a;
        t->offset += start;
        t->file = f;
    }
    f->data_start = start;
    f->metadata = shown;
    f->gguf = meta;
    shown = NULL;
    meta = NULL;
    *tensors = ts;
    *ntensors = (size_t)nt;
    ts = NULL;
out:
    for (uint64_t i = 0; ts && i < nt; i++)
        free(ts[i].name);
    free(ts);
    free_meta(meta);
    json_decref(shown);
    json_decref(names);
    free(c);
    return rc;
}

/* ------------------------------------------------------------ writing */

uint32_t lad_gguf_alignment(const lad_file *tmpl)
{
    return tmpl && tmpl->gguf ? tmpl->gguf->alignment : DEFAULT_ALIGNMENT;
}

typedef struct outbuf {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} outbuf;

static unsigned char *grow(outbuf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    unsigned char *at = b->p + b->len;
    b->len += n;
    return at;
}

static void put_le(outbuf *b, uint64_t v, unsigned n)
{
    unsigned char *p = grow(b, n);
    for (unsigned i = 0; p && i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_str(outbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_le(b, n, 8);
    unsigned char *p = grow(b, n);
    if (p)
        memcpy(p, s, n);
}

static void put_kv_str(outbuf *b, const char *key, const char *value)
{
    put_str(b, key);
    put_le(b, T_STRING, 4);
    put_str(b, value);
}

static void put_kv_u32(outbuf *b, const char *key, uint32_t value)
{
    put_str(b, key);
    put_le(b, T_U32, 4);
    put_le(b, value, 4);
}

/* "ARCH.block_count", where general.architecture is ARCH; or NULL. */
static char *block_count_key(const lad_file *f, const struct lad_gguf_meta *m, lad_error *err)
{
    for (size_t i = 0; m && i < m->nkv; i++) {
        const gguf_kv *kv = &m->kv[i];
        if (strcmp(kv->key, "general.architecture") || kv->type != T_STRING || kv->len < 8)
            continue;
        char *arch = calloc(1, (size_t)kv->len - 8 + sizeof ".block_count");
        if (!arch || lad_file_read(f, arch, (size_t)kv->len - 8, kv->off + 8, err)) {
            free(arch);
            return NULL;
        }
        strcat(arch, ".block_count");
        return arch;
    }
    return NULL;
}

int lad_writer_add_gguf(lad_writer *w, const lad_file *tmpl, const char *model_name,
                        const char *recipe, int file_type, uint64_t block_count,
                        const lad_gguf_out *ts, size_t n, int *fd, uint64_t *data_start,
                        lad_error *err)
{
    const struct lad_gguf_meta *m = tmpl ? tmpl->gguf : NULL;
    char *blocks_key = block_count ? block_count_key(tmpl, m, err) : NULL;
    uint64_t align = lad_gguf_alignment(tmpl);
    outbuf b = {0};
    size_t nkv = 0;
    bool named = false, typed = false;
    put_le(&b, 0x46554747u, 4); /* "GGUF" */
    put_le(&b, 3, 4);
    put_le(&b, n, 8);
    size_t nkv_at = b.len;
    put_le(&b, 0, 8); /* the count, once known */
    int rc = 0;
    /* The template's key-values, in order, with ladle's replaced. */
    for (size_t i = 0; m && i < m->nkv && rc == 0 && !b.oom; i++) {
        const gguf_kv *kv = &m->kv[i];
        if (!strcmp(kv->key, "ladle.recipe"))
            continue;
        nkv++;
        if (!strcmp(kv->key, "general.name")) {
            put_kv_str(&b, kv->key, model_name);
            named = true;
        } else if (!strcmp(kv->key, "general.file_type") && file_type >= 0) {
            put_kv_u32(&b, kv->key, (uint32_t)file_type);
            typed = true;
        } else if (blocks_key && !strcmp(kv->key, blocks_key) && kv->type == T_U32) {
            put_kv_u32(&b, kv->key, (uint32_t)block_count);
        } else {
            put_str(&b, kv->key);
            put_le(&b, kv->type, 4);
            unsigned char *p = grow(&b, (size_t)kv->len);
            if (p)
                rc = lad_file_read(tmpl, p, (size_t)kv->len, kv->off, err);
        }
    }
    if (!named) {
        put_kv_str(&b, "general.name", model_name);
        nkv++;
    }
    if (!typed && file_type >= 0) {
        put_kv_u32(&b, "general.file_type", (uint32_t)file_type);
        nkv++;
    }
    if (recipe) {
        put_kv_str(&b, "ladle.recipe", recipe);
        nkv++;
    }
    uint64_t data = 0;
    for (size_t i = 0; i < n; i++) {
        put_str(&b, ts[i].name);
        put_le(&b, (uint64_t)ts[i].ndim, 4);
        for (int d = ts[i].ndim - 1; d >= 0; d--)
            put_le(&b, ts[i].shape[d], 8);
        put_le(&b, ts[i].type, 4);
        put_le(&b, ts[i].offset, 8);
        data = (ts[i].offset + ts[i].nbytes + align - 1) / align * align;
    }
    size_t pad = (size_t)((b.len + align - 1) / align * align - b.len);
    unsigned char *p = grow(&b, pad);
    if (p)
        memset(p, 0, pad);
    if (rc == 0 && b.oom)
        rc = lad_fail(err, "out of memory building a GGUF header");
    if (rc == 0) {
        for (unsigned i = 0; i < 8; i++)
            b.p[nkv_at + i] = (unsigned char)((uint64_t)nkv >> (8 * i));
        rc = lad_writer_add_file(w, NULL, b.p, b.len, b.len + data, fd, err);
        *data_start = b.len;
    }
    free(b.p);
    free(blocks_key);
    return rc;
}
