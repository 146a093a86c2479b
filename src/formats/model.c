/*
 * Model references: what a user can name where a MODEL is taken.
 *
 *   path/to/file.safetensors            one file
 *   path/to/file.bin (.pt, .pth)        a PyTorch checkpoint (torch_read.c)
 *   path/to/file.gguf                   a GGUF file (gguf.c)
 *   path/to/hf-folder/                  model.safetensors, or
 *                                       model.safetensors.index.json + shards,
 *                                       else pytorch_model.bin or its index
 *
 * Opening validates every file and, for an index, that every tensor it maps
 * is in its shard and that no shard holds a tensor the index does not map
 * to it. config.json, when the folder has one, is parsed for the planner
 * (tied embeddings) and the writer (copied to the output).
 */
#include "quant.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INDEX_BYTES (256u << 20)

static int open_file(lad_file *f, const char *path, lad_error *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (!(f->path = lad_strdup(path)))
        return lad_fail(err, "out of memory");
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return lad_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return lad_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return lad_fail(err, "%s: not a regular file", path);
    f->size = (uint64_t)st.st_size;
    return 0;
}

static int append_tensors(lad_model *m, lad_tensor *ts, size_t n, lad_error *err)
{
    lad_tensor *grown = realloc(m->tensors, (m->ntensors + n + 1) * sizeof *grown);
    if (!grown)
        return lad_fail(err, "out of memory");
    memcpy(grown + m->ntensors, ts, n * sizeof *ts);
    m->tensors = grown;
    m->ntensors += n;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(lad_tensor *const *)a)->name, (*(lad_tensor *const *)b)->name);
}

const lad_tensor *lad_model_find(const lad_model *m, const char *name)
{
    lad_tensor key = {.name = (char *)name}, *kp = &key;
    lad_tensor **hit = bsearch(&kp, m->by_name, m->ntensors, sizeof *m->by_name, by_name);
    return hit ? *hit : NULL;
}

/* Reads and validates one file into the model. */
static int load_file(lad_model *m, const char *path, lad_error *err)
{
    lad_file *f = &m->files[m->nfiles];
    int rc = open_file(f, path, err);
    m->nfiles++; /* counted even on failure so close() releases it */
    if (rc)
        return -1;
    m->total_bytes += f->size;
    lad_tensor *ts = NULL;
    size_t n = 0;
    unsigned char magic[4] = {0};
    if (f->size >= 4 && lad_file_read(f, magic, 4, 0, err))
        return -1;
    if (!memcmp(magic, "PK\3\4", 4)) { /* torch.save's zip archive */
        /* (or a safetensors header of exactly 0x04034b50 bytes: legal) */
        lad_error st_err = {0};
        if (lad_torch_parse(f, &ts, &n, err) && lad_safetensors_parse(f, &ts, &n, &st_err))
            return -1;
    } else if (!memcmp(magic, "GGUF", 4)) { /* llama.cpp's format */
        /* (a safetensors header of 0x46554747 bytes is over its limit) */
        if (lad_gguf_parse(f, &ts, &n, err))
            return -1;
    } else if (!memcmp(magic, "\x80\x02\x8a\x0a", 4)) {
        /* a bare pickle: PROTO 2, then torch's magic number as a LONG1 (as a
         * safetensors header length, over its 100 MB limit) */
        return lad_fail(err, "%s: a PyTorch checkpoint in the format before PyTorch 1.6 (a "
                             "bare pickle, not a zip archive), which ladle does not read; "
                             "save it again with a recent torch.save, or convert it to "
                             "safetensors",
                        path);
    } else if (lad_safetensors_parse(f, &ts, &n, err)) {
        return -1;
    }
    rc = append_tensors(m, ts, n, err);
    if (rc)
        for (size_t i = 0; i < n; i++)
            free(ts[i].name);
    free(ts);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int load_index(lad_model *m, const char *index_path, lad_error *err)
{
    char *text;
    size_t len;
    if (lad_read_file(index_path, MAX_INDEX_BYTES, &text, &len, err))
        return -1;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return lad_fail(err, "%s: not valid JSON: %s (line %d)", index_path, je.text, je.line);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = 0;
    const char **shards = NULL;
    size_t nshards = 0;
    if (!json_is_object(root) || !json_is_object(wm)) {
        rc = lad_fail(err, "%s: no \"weight_map\" object", index_path);
        goto out;
    }
    /* Distinct shard names, validated as plain names in this folder. */
    shards = calloc(json_object_size(wm) + 1, sizeof *shards);
    if (!shards) {
        rc = lad_fail(err, "out of memory");
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            rc = lad_fail(err, "%s: weight_map entry for '%s' is not a file name", index_path,
                          name);
            goto out;
        }
        const char *s = json_string_value(v);
        if (!*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")) {
            rc = lad_fail(err, "%s: tensor '%s' maps to \"%s\", which is not a file name in "
                               "the model folder",
                          index_path, name, s);
            goto out;
        }
        size_t i;
        for (i = 0; i < nshards && strcmp(shards[i], s); i++)
            ;
        if (i == nshards)
            shards[nshards++] = s;
    }
    qsort(shards, nshards, sizeof *shards, cmp_str);
    m->files = calloc(nshards + 1, sizeof *m->files);
    if (!m->files) {
        rc = lad_fail(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nshards && rc == 0; i++) {
        char *p = lad_path_join(m->dir, shards[i]);
        if (!p) {
            rc = lad_fail(err, "out of memory");
            break;
        }
        if (!lad_is_file(p))
            rc = lad_fail(err, "%s: shard %s named by the index does not exist", index_path,
                          shards[i]);
        else
            rc = load_file(m, p, err);
        free(p);
    }
    if (rc)
        goto out;
    /* Every tensor a shard holds must be the one the index maps there. */
    for (size_t i = 0; i < m->ntensors; i++) {
        lad_tensor *t = &m->tensors[i];
        json_t *want = json_object_get(wm, t->name);
        const char *fname = strrchr(t->file->path, '/') + 1;
        if (!want) {
            rc = lad_fail(err, "%s: holds tensor '%s', which %s does not list", t->file->path,
                          t->name, index_path);
            goto out;
        }
        if (strcmp(json_string_value(want), fname)) {
            rc = lad_fail(err, "%s: holds tensor '%s', which %s maps to %s", t->file->path,
                          t->name, index_path, json_string_value(want));
            goto out;
        }
    }
    /* ... and every tensor the index maps must be in its shard. Counts
     * suffice: each held tensor matched a distinct index entry above. */
    if (m->ntensors != json_object_size(wm)) {
        json_object_foreach(wm, name, v) {
            size_t i;
            for (i = 0; i < m->ntensors && strcmp(m->tensors[i].name, name); i++)
                ;
            if (i == m->ntensors) {
                rc = lad_fail(err, "%s: tensor '%s' is mapped to %s, which does not hold it",
                              index_path, name, json_string_value(v));
                goto out;
            }
        }
    }
out:
    free(shards);
    json_decref(root);
    return rc;
}

static int load_config(lad_model *m, lad_error *err)
{
    char *path = lad_path_join(m->dir, "config.json");
    if (!path)
        return lad_fail(err, "out of memory");
    int rc = 0;
    if (lad_is_file(path)) {
        json_error_t je;
        json_t *cfg = json_load_file(path, 0, &je);
        m->config = cfg;
        if (!cfg || !json_is_object(cfg))
            rc = lad_fail(err, "%s: not a valid JSON object: %s (line %d)", path,
                          cfg ? "top level is not an object" : je.text, je.line);
    }
    free(path);
    return rc;
}

static int open_model(lad_model *m, const char *ref, lad_error *err)
{
    if (lad_is_dir(ref)) {
        if (!(m->dir = lad_strdup(ref)))
            return lad_fail(err, "out of memory");
        /* safetensors first, as transformers prefers them */
        static const char *const SINGLE[] = {"model.safetensors", "pytorch_model.bin"};
        static const char *const INDEX[] = {"model.safetensors.index.json",
                                            "pytorch_model.bin.index.json"};
        int rc = 1;
        for (int k = 0; k < 2 && rc == 1; k++) {
            char *single = lad_path_join(ref, SINGLE[k]), *index = lad_path_join(ref, INDEX[k]);
            if (!single || !index) {
                rc = lad_fail(err, "out of memory");
            } else if (lad_is_file(single)) {
                m->files = calloc(1, sizeof *m->files);
                rc = m->files ? load_file(m, single, err) : lad_fail(err, "out of memory");
            } else if (lad_is_file(index)) {
                rc = load_index(m, index, err);
            }
            free(single);
            free(index);
        }
        if (rc == 1)
            rc = lad_fail(err, "%s: no model.safetensors, pytorch_model.bin or their "
                               ".index.json in this folder",
                          ref);
        return rc ? rc : load_config(m, err);
    }
    if (!lad_exists(ref)) {
        if (!strchr(ref, '/') || (ref[0] != '/' && ref[0] != '.' && strchr(ref, '/') == strrchr(ref, '/')))
            return lad_fail(err, "%s: no such file or folder (a Hugging Face Hub name? "
                                 "download it first, e.g. with huggingface-cli download)",
                            ref);
        return lad_fail(err, "%s: no such file or folder", ref);
    }
    m->files = calloc(1, sizeof *m->files);
    return m->files ? load_file(m, ref, err) : lad_fail(err, "out of memory");
}

/* The by-name index of an opened model; a name may appear once. */
static int index_names(lad_model *m, const char *ref, lad_error *err)
{
    m->by_name = malloc((m->ntensors + 1) * sizeof *m->by_name);
    if (!m->by_name)
        return lad_fail(err, "out of memory");
    for (size_t i = 0; i < m->ntensors; i++)
        m->by_name[i] = &m->tensors[i];
    qsort(m->by_name, m->ntensors, sizeof *m->by_name, by_name);
    for (size_t i = 1; i < m->ntensors; i++)
        if (!strcmp(m->by_name[i]->name, m->by_name[i - 1]->name))
            return lad_fail(err, "%s: tensor '%s' appears twice (in %s and %s)", ref,
                            m->by_name[i]->name, m->by_name[i - 1]->file->path,
                            m->by_name[i]->file->path);
    return 0;
}

/* Names indexed, quantised weights paired with their scales (an MXFP4
 * weight takes its logical name: the index is made again). */
static int finish(lad_model *m, lad_error *err)
{
    bool renamed = false;
    if (index_names(m, m->ref, err) || lad_quant_pair(m, err))
        return -1;
    for (size_t i = 0; i < m->ntensors; i++)
        renamed |= m->tensors[i].q.phys_name != NULL;
    if (!renamed)
        return 0;
    free(m->by_name);
    return index_names(m, m->ref, err);
}

/* "BASE+ADAPTER" (mergekit's model+lora) where no file has that name: the
 * '+' (from the right) with a model before it and an adapter after. */
static char *lora_split(const char *ref, const char **adapter)
{
    if (lad_exists(ref))
        return NULL;
    for (size_t i = strlen(ref); i-- > 0;) { /* each '+', from the right */
        if (ref[i] != '+')
            continue;
        char *base = strndup(ref, i);
        if (base && lad_exists(base) && lad_is_dir(ref + i + 1)) {
            *adapter = ref + i + 1;
            return base;
        }
        free(base);
    }
    return NULL;
}

int lad_model_open(const char *ref, lad_model **out, lad_error *err)
{
    lad_model *m = calloc(1, sizeof *m);
    if (!m)
        return lad_fail(err, "out of memory");
    const char *adapter = NULL;
    char *base = lora_split(ref, &adapter);
    int rc = (m->ref = lad_strdup(ref)) ? open_model(m, base ? base : ref, err)
                                        : lad_fail(err, "out of memory");
    if (rc == 0)
        rc = finish(m, err);
    if (rc == 0 && base) /* (on the indexed tensors) */
        rc = lad_lora_attach(m, &adapter, NULL, 1, err);
    free(base);
    if (rc) {
        lad_model_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

int lad_file_read(const lad_file *f, void *buf, size_t n, uint64_t off, lad_error *err)
{
    if (!f->mem)
        return lad_pread_full(f->fd, buf, n, off, err);
    memcpy(buf, (const unsigned char *)f->mem + off, n);
    return 0;
}

/* One tensor held in memory: its own "file" of exactly its bytes. */
static int memory_tensor(lad_model *m, const lad_mem_tensor *mt, lad_error *err)
{
    lad_file *f = &m->files[m->nfiles];
    lad_tensor *t = &m->tensors[m->ntensors];
    *f = (lad_file){.fd = -1, .mem = mt->data};
    m->nfiles++;
    if (!(f->path = lad_strdup(m->ref)))
        return lad_fail(err, "out of memory");
    if (!mt->name || !*mt->name)
        return lad_fail(err, "%s: a tensor without a name", m->ref);
    if (mt->dtype < 0 || mt->dtype >= LAD_DTYPE_COUNT)
        return lad_fail(err, "%s: tensor '%s': unknown dtype %d", m->ref, mt->name, mt->dtype);
    if (mt->ndim < 0 || mt->ndim > LAD_MAX_DIMS)
        return lad_fail(err, "%s: tensor '%s' has %d dimensions (at most %d)", m->ref, mt->name,
                        mt->ndim, LAD_MAX_DIMS);
    *t = (lad_tensor){.dtype = mt->dtype, .ndim = mt->ndim, .nelem = 1, .file = f};
    uint64_t bits;
    for (int d = 0; d < mt->ndim; d++)
        if (lad_mul_overflow(t->nelem, mt->shape[d], &t->nelem))
            return lad_fail(err, "%s: tensor '%s': its shape overflows", m->ref, mt->name);
    memcpy(t->shape, mt->shape, (size_t)mt->ndim * sizeof *t->shape);
    if (lad_mul_overflow(t->nelem, lad_dtype_bits(mt->dtype), &bits) || bits % 8)
        return lad_fail(err, "%s: tensor '%s': %llu elements of %s are not whole bytes", m->ref,
                        mt->name, (unsigned long long)t->nelem, lad_dtype_name(mt->dtype));
    if (t->nelem && !mt->data)
        return lad_fail(err, "%s: tensor '%s' has no data", m->ref, mt->name);
    t->nbytes = f->size = bits / 8;
    m->total_bytes += t->nbytes;
    if (!(t->name = lad_strdup(mt->name)))
        return lad_fail(err, "out of memory");
    m->ntensors++;
    return 0;
}

int lad_model_from_memory(const char *label, const lad_mem_tensor *ts, size_t n,
                          const char *config_json, lad_model **out, lad_error *err)
{
    lad_model *m = calloc(1, sizeof *m);
    if (!m)
        return lad_fail(err, "out of memory");
    int rc = 0;
    m->ref = lad_strdup(label ? label : "<memory>");
    m->files = calloc(n + 1, sizeof *m->files);
    m->tensors = calloc(n + 1, sizeof *m->tensors);
    if (!m->ref || !m->files || !m->tensors)
        rc = lad_fail(err, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = memory_tensor(m, &ts[i], err);
    if (rc == 0 && config_json) {
        json_error_t je;
        json_t *cfg = json_loads(config_json, JSON_REJECT_DUPLICATES, &je);
        m->config = cfg;
        if (!json_is_object(cfg))
            rc = lad_fail(err, "%s: the config is not a JSON object: %s", m->ref,
                          cfg ? "top level is not an object" : je.text);
    }
    if (rc == 0)
        rc = finish(m, err);
    if (rc) {
        lad_model_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

size_t lad_model_ntensors(const lad_model *m) { return m->ntensors; }

void lad_model_tensor_info(const lad_model *m, size_t i, lad_tensor_info *out)
{
    const lad_tensor *t = &m->tensors[i]; /* as stored: MXFP4 blocks as U8 */
    bool packed = t->q.phys_name != NULL;
    *out = (lad_tensor_info){.name = packed ? t->q.phys_name : t->name,
                             .dtype = packed ? LAD_U8 : t->dtype,
                             .ndim = packed ? t->q.phys_ndim : t->ndim, .nbytes = t->nbytes,
                             .path = t->file->mem ? NULL : t->file->path, .offset = t->offset};
    memcpy(out->shape, packed ? t->q.phys_shape : t->shape, sizeof out->shape);
}

char *lad_model_config_json(const lad_model *m)
{
    return m->config ? json_dumps(m->config, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

void lad_model_close(lad_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->ntensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].q.phys_name);
        lad_lora_free(m->tensors[i].lora);
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        if (m->files[i].fd >= 0)
            close(m->files[i].fd);
        free(m->files[i].path);
        json_decref(m->files[i].metadata);
        lad_gguf_free(&m->files[i]);
    }
    json_decref(m->config);
    free(m->files);
    free(m->tensors);
    free(m->by_name);
    free(m->dir);
    free(m->ref);
    free(m);
}
