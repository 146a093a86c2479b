/*
 * TALL-mask compression (Wang et al., "Localizing Task Information for
 * Improved Model Merging and Compression", ICML 2024): T fine-tunes of one
 * base kept as the base, their summed task vector tau_MTL and one bit per
 * task and weight, the task's TALL mask m_t = |tau_t| > lambda |tau_MTL -
 * tau_t|; task t's model comes back as base + m_t * tau_MTL. (The same
 * masks as consensus_ta's, in the same fp32 arithmetic: tau_t = x_t - base,
 * tau_MTL summed in task order.)
 *
 * The masks file ("ladle-tall-masks" version 1) is one safetensors file:
 *   NAME             tau_MTL of each float tensor of the base (F32 unless
 *                    asked otherwise: a rounded task vector loses the
 *                    small changes fine-tuning made)
 *   tall_mask.NAME   U8 [T, ceil(n / 8)]: row t is task t's mask, packed as
 *                    numpy.packbits packs (element 8i + j in bit 7 - j of
 *                    byte i, zero padding)
 *   __metadata__     format, version, tasks (a JSON array of the task
 *                    labels), tall_lambda, base (the base's label)
 * Other tensors (integers) are the base's at apply time.
 *
 * Both directions stream CHUNK elements at a time: (T + 2) CHUNK floats.
 */
#include "util.h"
#include "../formats/writer.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 16) /* elements; a multiple of 8 */
#define PREFIX "tall_mask."

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int interrupted(lad_error *err)
{
    if (!lad_interrupted())
        return 0;
    err->interrupted = true;
    return lad_fail(err, "interrupted; nothing was written");
}

/* ------------------------------------------------------------ compress */

int lad_masks_write(const lad_masks_request *q, lad_masks_stats *stats, lad_error *err)
{
    memset(stats, 0, sizeof *stats);
    const lad_model *B = q->base;
    const size_t T = q->ntasks;
    if (T < 2)
        return lad_usage(err, "TALL masks need at least two fine-tunes, got %zu", T);
    if (T > 255)
        return lad_usage(err, "at most 255 fine-tunes");
    if (!(q->tall_lambda >= 0) || !isfinite(q->tall_lambda))
        return lad_usage(err, "--tall-lambda must be at least 0");
    lad_dtype vdt = q->has_dtype ? q->dtype : LAD_F32;
    if (vdt != LAD_F32 && vdt != LAD_BF16 && vdt != LAD_F16 && vdt != LAD_F64)
        return lad_usage(err, "the merged task vector is stored as f32, bf16, f16 or f64");
    /* every tensor checked first */
    size_t nt = 0;
    for (size_t i = 0; i < B->ntensors; i++) {
        const lad_tensor *b = &B->tensors[i];
        if (b->hidden || !lad_tensor_mergeable(b))
            continue;
        for (size_t t = 0; t < T; t++) {
            const lad_tensor *x = lad_model_find(q->tasks[t], b->name);
            if (!x)
                return lad_fail(err, "tensor '%s' is in %s but not in %s; TALL masks need "
                                     "fine-tunes of the base",
                                b->name, B->ref, q->tasks[t]->ref);
            if (!lad_tensor_same_shape(x, b) || !lad_tensor_mergeable(x))
                return lad_fail(err, "tensor '%s' has another shape or type in %s than in %s",
                                b->name, q->tasks[t]->ref, B->ref);
        }
        nt++;
    }
    if (nt == 0)
        return lad_fail(err, "%s has no float tensors to compress", B->ref);
    lad_out_tensor *outs = calloc(2 * nt + 1, sizeof *outs);
    uint64_t(*mshape)[2] = calloc(nt + 1, sizeof *mshape);
    char **mnames = calloc(nt + 1, sizeof *mnames);
    const lad_tensor **src = calloc(nt + 1, sizeof *src);
    uint64_t *off = calloc(2 * nt + 1, sizeof *off);
    float *buf = malloc((T + 2) * (size_t)CHUNK * sizeof *buf);
    unsigned char *raw = malloc((size_t)CHUNK * 8), *bits = malloc(T * (CHUNK / 8));
    void *vraw = malloc((size_t)CHUNK * 8);
    int rc = outs && mshape && mnames && src && off && buf && raw && bits && vraw
                 ? 0 : lad_fail(err, "out of memory");
    size_t k = 0;
    uint64_t at = 0, total = 0;
    for (size_t i = 0; rc == 0 && i < B->ntensors; i++) {
        const lad_tensor *b = &B->tensors[i];
        if (b->hidden || !lad_tensor_mergeable(b))
            continue;
        uint64_t nb = (b->nelem + 7) / 8;
        src[k] = b;
        mshape[k][0] = T;
        mshape[k][1] = nb;
        size_t len = strlen(b->name) + sizeof PREFIX;
        if (!(mnames[k] = malloc(len))) {
            rc = lad_fail(err, "out of memory");
            break;
        }
        snprintf(mnames[k], len, PREFIX "%s", b->name);
        outs[2 * k] = (lad_out_tensor){b->name, vdt, b->ndim, b->shape,
                                       b->nelem * (lad_dtype_bits(vdt) / 8)};
        outs[2 * k + 1] = (lad_out_tensor){mnames[k], LAD_U8, 2, mshape[k], T * nb};
        off[2 * k] = at;
        at += outs[2 * k].nbytes;
        off[2 * k + 1] = at;
        at += outs[2 * k + 1].nbytes;
        total += b->nelem;
        k++;
    }
    json_t *tasks = json_array(), *meta = NULL;
    for (size_t t = 0; rc == 0 && t < T; t++)
        json_array_append_new(tasks, json_string(q->tasks[t]->ref));
    char lam[32];
    snprintf(lam, sizeof lam, "%.17g", q->tall_lambda);
    char *tasks_text = rc == 0 ? json_dumps(tasks, JSON_COMPACT) : NULL;
    if (rc == 0)
        meta = json_pack("{s:s, s:s, s:s, s:s, s:s}", "format", "ladle-tall-masks", "version",
                         "1", "tasks", tasks_text ? tasks_text : "[]", "tall_lambda", lam,
                         "base", B->ref);
    lad_writer *w = NULL;
    int fd = -1;
    uint64_t data = 0;
    if (rc == 0 && (!meta || lad_writer_begin(q->output, false, q->force, &w, err) ||
                    lad_writer_add_safetensors(w, "masks.safetensors", outs, 2 * nt, meta, &fd,
                                               &data, err)))
        rc = meta ? -1 : lad_fail(err, "out of memory");
    float *bb = buf, *mtl = buf + CHUNK, *xs = buf + 2 * (size_t)CHUNK;
    uint64_t done = 0, kept_bits = 0; /* done: bytes written */
    double t0 = now();
    for (size_t j = 0; rc == 0 && j < nt; j++) {
        const lad_tensor *b = src[j];
        uint64_t nb = mshape[j][1];
        for (uint64_t s = 0; rc == 0 && s < b->nelem; s += CHUNK) {
            size_t n = (size_t)(b->nelem - s < CHUNK ? b->nelem - s : CHUNK);
            if (lad_tensor_read_f32(b, s, n, raw, bb, err)) {
                rc = -1;
                break;
            }
            for (size_t e = 0; e < n; e++)
                mtl[e] = 0;
            for (size_t t = 0; t < T && rc == 0; t++) {
                float *x = xs + t * CHUNK;
                const lad_tensor *xt = lad_model_find(q->tasks[t], b->name);
                if (lad_tensor_read_f32(xt, s, n, raw, x, err))
                    rc = -1;
                for (size_t e = 0; rc == 0 && e < n; e++) {
                    x[e] -= bb[e]; /* tau_t */
                    mtl[e] += x[e];
                }
            }
            for (size_t e = 0; rc == 0 && e < n; e++)
                if (!isfinite(mtl[e]))
                    rc = lad_fail(err, "tensor '%s': a task vector is not finite at element "
                                       "%llu; a TALL mask of it would mean nothing",
                                  b->name, (unsigned long long)(s + e));
            size_t nbytes = (n + 7) / 8;
            const float lambda = (float)q->tall_lambda;
            for (size_t t = 0; rc == 0 && t < T; t++) {
                const float *x = xs + t * CHUNK;
                unsigned char *row = bits + t * (CHUNK / 8);
                memset(row, 0, nbytes);
                for (size_t e = 0; e < n; e++) {
                    float rest = mtl[e] - x[e];
                    if (fabsf(x[e]) > lambda * fabsf(rest)) {
                        row[e >> 3] |= (unsigned char)(0x80u >> (e & 7));
                        kept_bits++;
                    }
                }
                if (lad_pwrite_full(fd, row, nbytes, data + off[2 * j + 1] + t * nb + s / 8,
                                   err))
                    rc = -1;
            }
            if (rc == 0) {
                size_t es = lad_dtype_bits(vdt) / 8;
                lad_store_f32(vdt, mtl, vraw, n);
                if (lad_pwrite_full(fd, vraw, n * es, data + off[2 * j] + s * es, err))
                    rc = -1;
            }
            done += n * (lad_dtype_bits(vdt) / 8) + T * nbytes;
            if (rc == 0 && q->progress &&
                q->progress(q->progress_ctx, done, at, now() - t0, false))
                rc = interrupted(err);
            if (rc == 0)
                rc = interrupted(err);
        }
    }
    if (rc == 0) {
        stats->tensors = nt;
        stats->elements = total;
        stats->kept_fraction = total ? (double)kept_bits / ((double)total * (double)T) : 0;
        stats->bytes = at;
        rc = lad_writer_commit(w, err);
        w = NULL;
    }
    if (w)
        lad_writer_abort(w);
    if (rc == 0 && q->progress)
        q->progress(q->progress_ctx, at, at, now() - t0, true);
    json_decref(meta);
    json_decref(tasks);
    free(tasks_text);
    for (size_t j = 0; mnames && j < nt; j++)
        free(mnames[j]);
    free(mnames);
    free(outs);
    free(mshape);
    free(src);
    free(off);
    free(buf);
    free(raw);
    free(bits);
    free(vraw);
    return rc;
}

/* ------------------------------------------------------------ apply */

/* The task's index from a number (0-based) or a label the file lists. */
static int task_index(const json_t *tasks, const char *want, const char *path, size_t *out,
                      lad_error *err)
{
    size_t n = json_array_size(tasks);
    char *end;
    unsigned long v = strtoul(want, &end, 10);
    if (*want && !*end) {
        if (v >= n)
            return lad_usage(err, "--task %lu: %s holds tasks 0 to %zu", v, path, n - 1);
        *out = v;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(tasks, i));
        if (s && !strcmp(s, want)) {
            *out = i;
            return 0;
        }
    }
    return lad_usage(err, "--task %s: not one of the tasks %s holds (give its index, 0 to %zu, "
                          "or its label as `ladle info` shows it)",
                     want, path, n - 1);
}

int lad_masks_apply(const lad_masks_apply_request *q, lad_error *err)
{
    const lad_model *B = q->base, *M = q->masks;
    const json_t *meta = M->nfiles ? M->files[0].metadata : NULL;
    const char *fmt = json_string_value(json_object_get(meta, "format"));
    const char *ver = json_string_value(json_object_get(meta, "version"));
    const char *tasks_text = json_string_value(json_object_get(meta, "tasks"));
    if (!fmt || strcmp(fmt, "ladle-tall-masks"))
        return lad_fail(err, "%s is not a TALL masks file (`ladle masks` writes them)", M->ref);
    if (!ver || strcmp(ver, "1"))
        return lad_fail(err, "%s is a TALL masks file of version %s; this ladle reads version 1",
                        M->ref, ver ? ver : "(none)");
    json_t *tasks = tasks_text ? json_loads(tasks_text, 0, NULL) : NULL;
    size_t T = json_array_size(tasks), ti = 0;
    int rc = json_is_array(tasks) && T >= 1
                 ? 0 : lad_fail(err, "%s: its tasks list is damaged", M->ref);
    if (rc == 0)
        rc = task_index(tasks, q->task, M->ref, &ti, err);
    /* every tensor checked first */
    size_t nout = 0;
    for (size_t i = 0; rc == 0 && i < B->ntensors; i++) {
        const lad_tensor *b = &B->tensors[i];
        if (b->hidden)
            continue;
        nout++;
        if (!lad_tensor_mergeable(b))
            continue;
        const lad_tensor *v = lad_model_find(M, b->name);
        char name[1024];
        snprintf(name, sizeof name, PREFIX "%s", b->name);
        const lad_tensor *m = lad_model_find(M, name);
        if (!v || !m)
            rc = lad_fail(err, "tensor '%s' of %s is not in %s: were the masks made from "
                               "another base?",
                          b->name, B->ref, M->ref);
        else if (!lad_tensor_same_shape(v, b) || !lad_tensor_mergeable(v))
            rc = lad_fail(err, "tensor '%s' has another shape in %s than in %s", b->name, M->ref,
                          B->ref);
        else if (m->dtype != LAD_U8 || m->ndim != 2 || m->shape[0] != T ||
                 m->shape[1] != (b->nelem + 7) / 8)
            rc = lad_fail(err, "%s: tensor '%s' is not a U8 [%zu, %llu] mask", M->ref, name, T,
                          (unsigned long long)((b->nelem + 7) / 8));
    }
    lad_out_tensor *outs = rc == 0 ? calloc(nout + 1, sizeof *outs) : NULL;
    const lad_tensor **src = rc == 0 ? calloc(nout + 1, sizeof *src) : NULL;
    uint64_t *off = rc == 0 ? calloc(nout + 1, sizeof *off) : NULL;
    if (rc == 0 && (!outs || !src || !off))
        rc = lad_fail(err, "out of memory");
    size_t k = 0;
    uint64_t at = 0;
    for (size_t i = 0; rc == 0 && i < B->ntensors; i++) {
        const lad_tensor *b = &B->tensors[i];
        if (b->hidden)
            continue;
        lad_dtype dt = !lad_tensor_mergeable(b) ? b->dtype
                       : q->has_dtype           ? q->dtype
                       : b->q.scheme            ? LAD_BF16
                                                : b->dtype;
        src[k] = b;
        outs[k] = (lad_out_tensor){b->name, dt, b->ndim, b->shape,
                                   lad_tensor_mergeable(b) ? b->nelem * (lad_dtype_bits(dt) / 8)
                                                           : b->nbytes};
        off[k] = at;
        at += outs[k].nbytes;
        k++;
    }
    json_t *ometa = rc == 0 ? json_pack("{s:s, s:s}", "tall_masks", M->ref, "task",
                                        json_string_value(json_array_get(tasks, ti)))
                            : NULL;
    lad_writer *w = NULL;
    int fd = -1;
    uint64_t data = 0;
    if (rc == 0 && (!ometa || lad_writer_begin(q->output, false, q->force, &w, err) ||
                    lad_writer_add_safetensors(w, "model.safetensors", outs, nout, ometa, &fd,
                                               &data, err)))
        rc = ometa ? -1 : lad_fail(err, "out of memory");
    float *bb = malloc(2 * (size_t)CHUNK * sizeof *bb);
    unsigned char *raw = malloc((size_t)CHUNK * 8), *bits = malloc(CHUNK / 8);
    if (rc == 0 && (!bb || !raw || !bits))
        rc = lad_fail(err, "out of memory");
    for (size_t j = 0; rc == 0 && j < nout; j++) {
        const lad_tensor *b = src[j];
        if (!lad_tensor_mergeable(b)) { /* copied as it is */
            unsigned char *all = malloc(b->nbytes + 1);
            rc = all ? lad_file_read(b->file, all, b->nbytes, b->offset, err)
                     : lad_fail(err, "out of memory");
            if (rc == 0)
                rc = lad_pwrite_full(fd, all, b->nbytes, data + off[j], err);
            free(all);
            continue;
        }
        const lad_tensor *v = lad_model_find(M, b->name);
        char name[1024];
        snprintf(name, sizeof name, PREFIX "%s", b->name);
        const lad_tensor *m = lad_model_find(M, name);
        uint64_t nb = m->shape[1];
        size_t es = lad_dtype_bits(outs[j].dtype) / 8;
        for (uint64_t s = 0; rc == 0 && s < b->nelem; s += CHUNK) {
            size_t n = (size_t)(b->nelem - s < CHUNK ? b->nelem - s : CHUNK);
            float *tau = bb + CHUNK;
            if (lad_tensor_read_f32(b, s, n, raw, bb, err) ||
                lad_tensor_read_f32(v, s, n, raw, tau, err) ||
                lad_file_read(m->file, bits, (n + 7) / 8, m->offset + ti * nb + s / 8, err)) {
                rc = -1;
                break;
            }
            for (size_t e = 0; e < n; e++)
                bb[e] = bb[e] + ((bits[e >> 3] >> (7 - (e & 7))) & 1 ? tau[e] : 0.0f);
            lad_store_f32(outs[j].dtype, bb, raw, n);
            rc = lad_pwrite_full(fd, raw, n * es, data + off[j] + s * es, err);
            if (rc == 0)
                rc = interrupted(err);
        }
    }
    if (rc == 0) {
        rc = lad_writer_commit(w, err);
        w = NULL;
    }
    if (w)
        lad_writer_abort(w);
    json_decref(ometa);
    json_decref(tasks);
    free(outs);
    free(src);
    free(off);
    free(bb);
    free(raw);
    free(bits);
    return rc;
}
