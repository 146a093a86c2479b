/*
 * safetensors reader: validates a file completely before anything uses it.
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then
 * the data area. Rules, as the reference Rust crate enforces them:
 *   - N <= 100,000,000 and 8 + N <= file size;
 *   - the header is a JSON object; "__metadata__" maps strings to strings;
 *   - every other key is a tensor {dtype, shape, data_offsets} with a known
 *     dtype and shape x dtype size == end - start (overflow checked);
 *   - sorted by offset, tensors tile the data area exactly from 0: no gap,
 *     no overlap; and the data area ends exactly at end of file;
 *   - names are unique (jansson rejects a duplicate key while parsing).
 * Every error names the file and, where there is one, the tensor.
 */
#include "ladle.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER 100000000ULL

static int read_u64_array(json_t *arr, uint64_t *out, size_t max, size_t *n,
                          const char *what, const char *tname, lad_error *err)
{
    if (!json_is_array(arr))
        return lad_fail(err, "tensor '%s': %s is not an array", tname, what);
    if (json_array_size(arr) > max)
        return lad_fail(err, "tensor '%s': %s has %zu entries (at most %zu supported)", tname,
                        what, json_array_size(arr), max);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return lad_fail(err, "tensor '%s': %s[%zu] is not a non-negative integer", tname,
                            what, i);
        out[i] = (uint64_t)json_integer_value(v);
    }
    *n = json_array_size(arr);
    return 0;
}

static int parse_tensor(const char *name, json_t *info, lad_tensor *t, lad_error *err)
{
    memset(t, 0, sizeof *t);
    if (!json_is_object(info))
        return lad_fail(err, "tensor '%s': entry is not an object", name);
    json_t *dt = json_object_get(info, "dtype");
    if (!json_is_string(dt))
        return lad_fail(err, "tensor '%s': missing or non-string \"dtype\"", name);
    if (lad_dtype_parse(json_string_value(dt), &t->dtype) != 0)
        return lad_fail(err, "tensor '%s': unknown dtype \"%s\"", name, json_string_value(dt));

    size_t ndim, noff;
    uint64_t off[2];
    json_t *shape = json_object_get(info, "shape");
    if (!shape)
        return lad_fail(err, "tensor '%s': missing \"shape\"", name);
    if (read_u64_array(shape, t->shape, LAD_MAX_DIMS, &ndim, "shape", name, err))
        return -1;
    json_t *offs = json_object_get(info, "data_offsets");
    if (!offs)
        return lad_fail(err, "tensor '%s': missing \"data_offsets\"", name);
    if (read_u64_array(offs, off, 2, &noff, "data_offsets", name, err))
        return -1;
    if (noff != 2)
        return lad_fail(err, "tensor '%s': data_offsets must be [start, end]", name);
    if (off[1] < off[0])
        return lad_fail(err, "tensor '%s': data_offsets end %llu is before start %llu", name,
                        (unsigned long long)off[1], (unsigned long long)off[0]);
    t->ndim = (int)ndim;

    uint64_t nelem = 1, nbits;
    for (size_t d = 0; d < ndim; d++)
        if (lad_mul_overflow(nelem, t->shape[d], &nelem))
            return lad_fail(err, "tensor '%s': shape element count overflows 64 bits", name);
    if (lad_mul_overflow(nelem, lad_dtype_bits(t->dtype), &nbits))
        return lad_fail(err, "tensor '%s': shape byte size overflows 64 bits", name);
    if (nbits % 8)
        return lad_fail(err, "tensor '%s': %llu elements of %s do not fill whole bytes", name,
                        (unsigned long long)nelem, lad_dtype_name(t->dtype));
    t->nelem = nelem;
    t->nbytes = nbits / 8;
    if (off[1] - off[0] != t->nbytes)
        return lad_fail(err,
                        "tensor '%s': shape and dtype %s need %llu bytes but data_offsets "
                        "[%llu, %llu] span %llu",
                        name, lad_dtype_name(t->dtype), (unsigned long long)t->nbytes,
                        (unsigned long long)off[0], (unsigned long long)off[1],
                        (unsigned long long)(off[1] - off[0]));
    t->offset = off[0]; /* relative for now; made absolute after validation */
    if (!(t->name = strdup(name)))
        return lad_fail(err, "out of memory");
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const lad_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int check_metadata(json_t *meta, lad_error *err)
{
    if (!json_is_object(meta))
        return lad_fail(err, "__metadata__ is not an object of strings");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return lad_fail(err, "__metadata__ value for \"%s\" is not a string", k);
    }
    return 0;
}

static int parse_header(lad_file *file, const char *text, size_t len, lad_tensor **tensors,
                        size_t *ntensors, lad_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (strstr(je.text, "duplicate object key"))
            return lad_fail(err, "duplicate tensor name in header (%s)", je.text);
        return lad_fail(err, "header is not valid JSON: %s (header byte %d)", je.text,
                        je.position);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return lad_fail(err, "header is not a JSON object");
    }

    size_t cap = json_object_size(root), n = 0;
    lad_tensor *ts = calloc(cap ? cap : 1, sizeof *ts);
    if (!ts) {
        json_decref(root);
        return lad_fail(err, "out of memory");
    }
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = check_metadata(val, err)))
                break;
            file->metadata = json_incref(val);
            continue;
        }
        if ((rc = parse_tensor(key, val, &ts[n], err)))
            break;
        ts[n].file = file;
        n++;
    }
    json_decref(root);

    if (rc == 0) {
        qsort(ts, n, sizeof *ts, by_offset);
        uint64_t end = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (ts[i].offset != end)
                rc = lad_fail(err, "tensor '%s': data starts at %llu but the previous tensor "
                                   "ends at %llu (tensors must tile the data area: %s)",
                              ts[i].name, (unsigned long long)ts[i].offset,
                              (unsigned long long)end, ts[i].offset < end ? "overlap" : "gap");
            end = ts[i].offset + ts[i].nbytes;
        }
        if (rc == 0 && file->data_start + end != file->size)
            rc = lad_fail(err, "tensor data ends at byte %llu but the file has %llu bytes (%s)",
                          (unsigned long long)(file->data_start + end),
                          (unsigned long long)file->size,
                          file->data_start + end > file->size ? "truncated file"
                                                              : "trailing bytes");
    }
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(ts[i].name);
        free(ts);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        ts[i].offset += file->data_start;
    *tensors = ts;
    *ntensors = n;
    return 0;
}

int lad_safetensors_parse(lad_file *file, lad_tensor **tensors, size_t *ntensors,
                          lad_error *err)
{
    unsigned char len8[8];
    if (file->size < 8)
        return lad_fail(err, "%s: file is %llu bytes, too short for a safetensors header",
                        file->path, (unsigned long long)file->size);
    if (lad_pread_full(file->fd, len8, 8, 0, err))
        return lad_fail_prefix(err, "%s: ", file->path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | len8[i];
    if (n > MAX_HEADER)
        return lad_fail(err, "%s: header length %llu exceeds the 100 MB limit (not a "
                             "safetensors file?)",
                        file->path, (unsigned long long)n);
    if (n == 0)
        return lad_fail(err, "%s: header length is 0 (not a safetensors file)", file->path);
    if (8 + n > file->size)
        return lad_fail(err, "%s: header length %llu runs past the end of the file (%llu bytes)",
                        file->path, (unsigned long long)n, (unsigned long long)file->size);
    char *text = malloc(n);
    if (!text)
        return lad_fail(err, "%s: out of memory for a %llu-byte header", file->path,
                        (unsigned long long)n);
    if (lad_pread_full(file->fd, text, n, 8, err)) {
        free(text);
        return lad_fail_prefix(err, "%s: ", file->path);
    }
    file->data_start = 8 + n;
    int rc = parse_header(file, text, n, tensors, ntensors, err);
    free(text);
    if (rc)
        return lad_fail_prefix(err, "%s: ", file->path);
    return 0;
}
