/*
 * The streaming engine: executes a plan in bounded memory on N threads.
 *
 * Work is cut into items of at most CHUNK elements of one output tensor.
 * A worker takes the next item, pread()s each input's slice into its own
 * buffer, converts it to fp32 (fp64 for F64 tensors) BLOCK elements at a
 * time so the compute buffers stay in L1, runs the method's kernel, rounds
 * once to the output dtype and pwrite()s the result at its final offset.
 *
 * Work runs in phases: a phase is one pass over a range of items. Methods
 * without statistics run as a single merge phase over every item. For a
 * method with statistics passes (norms, top-k thresholds), each tensor gets
 * its passes as phases of their own, each thread folding its chunks into
 * its own accumulator, then the tensor's merge phase. The main thread sets
 * up phases, folds the accumulators and draws the progress bar.
 *
 * Memory is (threads x inputs x CHUNK) bytes plus one tensor's statistics
 * (TIES-family candidates: 256 MB at most), whatever the model's size; nothing is mmap'd, so no page of a model is
 * ever resident in this process.
 *
 * Measured and rejected (bench/, 3 x 2.1 GB bf16 soup, 2 cores): mmap'd
 * input windows with MAP_POPULATE (slower than pread, and a file truncated
 * under a mapping is SIGBUS, not an error); one writer thread fed by a
 * buffer pool so only one thread waits on the output's inode lock (1.3-2.0 s
 * against 0.8-1.2 s: each buffer then crosses cores); the output mapped
 * shared, each item's window populated with MADV_POPULATE_WRITE and stored
 * into directly (no faster: allocating page-cache pages, not the copy, is
 * what costs). The merge runs at the I/O floor (bench/iofloor.c).
 */
#define _GNU_SOURCE
#include "plan.h"
#include "util.h"
#include "../formats/quant.h"
#include "../formats/writer.h"
#include "../linalg/linalg.h"
#include "../methods/kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK LAD_MAX_ROW /* elements per work item: 256 KiB of bf16 */
#define BLOCK LAD_BLOCK  /* elements per conversion + kernel step */
#define MAX_INPUTS 64
#define MERGE_PASS (-1)
#define AMAX_PASS (-2) /* the merged values' largest magnitude (an FP8 tensor scale) */
#define MAX_QUANT_ITEM (1u << 25) /* values of a re-quantised item: 128 rows of 256K */

typedef struct item {
    size_t tensor;
    uint64_t start, count; /* elements (bytes for a COPY) */
    size_t index;          /* within its tensor */
} item;

typedef struct run {
    lad_plan *plan;
    item *items;
    size_t nitems;
    size_t *first_item;     /* per tensor, and [n] = nitems */
    uint32_t *keys;         /* per tensor: hash of its name */
    atomic_uint_least64_t *nonfinite; /* per tensor: NaN/Inf results */
    int *fds;               /* per shard (-1: another part's) */
    pthread_mutex_t *wlocks; /* per shard: one pwrite at a time (see put_at) */
    uint64_t *data_start;   /* per shard */
    uint64_t *file_bytes;   /* per shard: its file's size */
    unsigned char *const *mem; /* a memory output: per tensor, where it goes */
    atomic_uint_least64_t done_bytes;
    atomic_uint_least64_t read_bytes; /* every pass's reads */

    /* The phase being run, set by the main thread under `lock`. */
    pthread_mutex_t lock;
    pthread_cond_t go, idle;
    unsigned long phase_id;
    size_t phase_end;
    int pass;               /* a statistics pass, or MERGE_PASS */
    unsigned stride;        /* a sampling pass: every stride-th item of a tensor */
    void *stats;            /* the statistics of the tensor (or model) in a phased run */
    /* Model scope: statistics over every merged tensor at once. */
    bool model_scope;
    uint64_t *block_base;   /* per tensor: merged blocks before it */
    size_t *item_base;      /* per tensor: merged items before it */
    uint64_t scope_nelem, scope_nblocks;
    size_t scope_nitems;
    void **accs;            /* per worker accumulator for a statistics pass */
    int running;            /* workers still in the phase */
    bool finished;
    atomic_size_t next;

    uint64_t max_item;      /* elements (bytes for a copy) of the largest item */
    float tensor_amax;      /* after an AMAX_PASS: the tensor's largest magnitude */
    atomic_bool failed;
    atomic_bool stop;       /* the progress callback asked to stop */
    lad_error err;
} run;

typedef struct worker {
    run *r;
    int index;
    unsigned char *raw[MAX_INPUTS];
    unsigned char *out_raw; /* the output bytes of the item at hand: one of */
    unsigned char *out_buf[2];
    /* An item's output bytes not yet written (in the other buffer), while
     * another worker was writing to the same file. */
    struct {
        bool any;
        size_t shard;
        const unsigned char *bytes;
        uint64_t n, off;
        const char *tensor;
    } pend;
    void *comp[MAX_INPUTS]; /* fp32/fp64 values per input: BLOCK, or a row */
    void *comp_out;
    void *scratch;          /* for the kernels: LAD_SCRATCH_BYTES */
    float *deq[MAX_INPUTS]; /* a quantised input's item, read as fp32 */
    float *merged;          /* a quantised output's item, before its codes */
    unsigned char *qscales; /* and its scales */
    float amax;             /* AMAX_PASS: this worker's largest magnitude */
} worker;

static void fail_run(run *r, const lad_error *e)
{
    pthread_mutex_lock(&r->lock);
    if (!r->failed) {
        r->err = *e;
        r->failed = true;
    }
    pthread_mutex_unlock(&r->lock);
}

static size_t esize(lad_dtype t) { return lad_dtype_bits(t) / 8; }

/* An input whose values are computed when read (dequantised, or with LoRA
 * deltas added): read as fp32 items. */
static bool derived(const lad_tensor *t) { return t->q.scheme != LAD_Q_NONE || t->lora; }

static int read_derived(const lad_tensor *t, uint64_t start, size_t n, float *out,
                        lad_error *err)
{
    return t->lora ? lad_lora_read(t, start, n, out, err) : lad_quant_read(t, start, n, out, err);
}

/* Quantised (or LoRA) inputs, or quantised outputs: read and written as
 * fp32 items. */
static bool quantised(const lad_plan_tensor *pt)
{
    bool q = pt->oq != NULL || pt->swapped;
    for (size_t j = 0; j < pt->nin; j++)
        q |= derived(pt->in[j]);
    return q;
}

static bool is_wide(const lad_plan_tensor *pt)
{
    bool wide = pt->out_dtype == LAD_F64;
    for (size_t j = 0; j < pt->nin; j++)
        wide |= pt->in[j]->dtype == LAD_F64;
    return wide && !quantised(pt);
}

static uint64_t cols_of(const lad_plan_tensor *pt)
{
    return pt->ndim ? pt->shape[pt->ndim - 1] : 1;
}

static uint64_t nblocks_of(uint64_t nelem) { return (nelem + LAD_BLOCK - 1) / LAD_BLOCK; }

static uint64_t row_of(const lad_plan_tensor *pt);

/* The kernel context of tensor t's statistics scope (its chunk fields are
 * filled by the caller). */
static lad_kctx scope_ctx(const run *r, size_t t)
{
    const lad_plan_tensor *pt = &r->plan->t[t];
    lad_kctx k = {.op = pt->op, .stats = r->stats, .key = r->keys[t], .row = row_of(pt),
                  .ndim = pt->ndim, .shape = pt->shape};
    if (r->model_scope) {
        k.nelem = r->scope_nelem;
        k.nitems = r->scope_nitems;
        k.nblocks = r->scope_nblocks;
        k.block_base = r->block_base[t];
        k.item = r->item_base[t];
    } else {
        k.nelem = pt->nelem;
        k.nitems = r->first_item[t + 1] - r->first_item[t];
        k.nblocks = nblocks_of(pt->nelem);
    }
    return k;
}

/* Elements per kernel call: BLOCK, or a whole row for a row method (0 if
 * the method cannot handle the tensor's shape). */
static uint64_t row_of(const lad_plan_tensor *pt)
{
    const lad_method *m = pt->kind == LAD_MERGE ? pt->op->method : NULL;
    return m && m->row_length ? m->row_length(pt->op, pt->ndim, pt->shape) : 0;
}

static int npasses(const lad_plan_tensor *pt)
{
    const lad_method *m = pt->kind == LAD_MERGE ? pt->op->method : NULL;
    return m && m->npasses ? m->npasses(pt->op, is_wide(pt)) : 0;
}

static bool needs_amax(const lad_plan_tensor *pt)
{
    return pt->oq && pt->oq->scheme == LAD_Q_FP8_TENSOR;
}

/* One item of a merged tensor: a statistics pass or the merge pass. */
/* NaN and +-Inf, counted in the stored output: the values whose exponent
 * bits are all ones. Counting after rounding also catches a finite fp32
 * result that overflows f16 (beyond 65504). The common case (none) is an
 * OR over the chunk, which vectorises; only a chunk that has some is
 * counted. */
#define COUNT_NONFINITE(NAME, U)                                                              \
    LAD_KERNEL static uint64_t NAME(const void *raw, size_t n, U exp)                         \
    {                                                                                         \
        const U *u = raw;                                                                     \
        U any = 0;                                                                            \
        for (size_t i = 0; i < n; i++)                                                        \
            any |= (U)((u[i] & exp) == exp);                                                  \
        if (!any)                                                                             \
            return 0;                                                                         \
        uint64_t c = 0;                                                                       \
        for (size_t i = 0; i < n; i++)                                                        \
            c += (u[i] & exp) == exp;                                                         \
        return c;                                                                             \
    }
COUNT_NONFINITE(count_nonfinite16, uint16_t)
COUNT_NONFINITE(count_nonfinite32, uint32_t)
COUNT_NONFINITE(count_nonfinite64, uint64_t)

static uint64_t count_nonfinite(lad_dtype t, const void *raw, size_t n)
{
    switch (t) {
    case LAD_F16:
        return count_nonfinite16(raw, n, 0x7c00u);
    case LAD_BF16:
        return count_nonfinite16(raw, n, 0x7f80u);
    case LAD_F32:
        return count_nonfinite32(raw, n, 0x7f800000u);
    case LAD_F64:
        return count_nonfinite64(raw, n, 0x7ff0000000000000ull);
    default:
        return 0;
    }
}

/* Writes with the shard's lock held, and releases it. */
static int write_locked(run *r, size_t shard, const void *bytes, uint64_t n, uint64_t off,
                        const char *tensor, lad_error *err)
{
    int rc = lad_pwrite_full(r->fds[shard], bytes, n, off, err);
    pthread_mutex_unlock(&r->wlocks[shard]);
    if (rc)
        return lad_fail_prefix(err, "%s: writing tensor '%s': ", r->plan->req.output, tensor);
    atomic_fetch_add(&r->done_bytes, n);
    return 0;
}

static int write_at(run *r, size_t shard, const void *bytes, uint64_t n, uint64_t off,
                    const char *tensor, lad_error *err)
{
    pthread_mutex_lock(&r->wlocks[shard]);
    return write_locked(r, shard, bytes, n, off, tensor, err);
}

/* Writes the worker's deferred output bytes, if any. */
static int flush_pending(worker *w, lad_error *err)
{
    if (!w->pend.any)
        return 0;
    w->pend.any = false;
    return write_at(w->r, w->pend.shard, w->pend.bytes, w->pend.n, w->pend.off, w->pend.tensor,
                    err);
}

/* An item's output bytes, at byte `at` of its tensor: written to the file
 * (a memory output holds them already). Writes to one file are serialised
 * by the kernel (the inode's lock), and a thread waiting there spins on
 * the CPU: so each file has a lock of its own, and a worker that finds it
 * taken while its bytes are in its own output buffer keeps them for later
 * and goes on to the next item in its other buffer (one deferred write at
 * a time; the next write, or the phase's end, flushes it). */
static int put_at(worker *w, const lad_plan_tensor *pt, const void *bytes, uint64_t n,
                  uint64_t at, lad_error *err)
{
    run *r = w->r;
    if (r->mem) {
        atomic_fetch_add(&r->done_bytes, n);
        return 0;
    }
    if (flush_pending(w, err))
        return -1;
    size_t s = pt->shard;
    uint64_t off = r->data_start[s] + pt->offset + at;
    if (bytes != w->out_raw)
        return write_at(r, s, bytes, n, off, pt->name, err);
    if (pthread_mutex_trylock(&r->wlocks[s]) == 0)
        return write_locked(r, s, bytes, n, off, pt->name, err);
    w->pend.any = true;
    w->pend.shard = s;
    w->pend.bytes = bytes;
    w->pend.n = n;
    w->pend.off = off;
    w->pend.tensor = pt->name;
    w->out_raw = w->out_raw == w->out_buf[0] ? w->out_buf[1] : w->out_buf[0];
    return 0;
}

static int put(worker *w, const item *it, const void *bytes, uint64_t n, uint64_t at,
               lad_error *err)
{
    return put_at(w, &w->r->plan->t[it->tensor], bytes, n, at, err);
}

/* A quantised output's item (merged fp32 values in w->merged): its codes
 * and scales, re-quantised in the template's scheme and written. */
static int put_quantised(worker *w, const item *it, lad_error *err)
{
    run *r = w->r;
    const lad_plan_tensor *pt = &r->plan->t[it->tensor];
    const lad_quant *q = pt->oq;
    size_t n = (size_t)it->count, ses = esize(pt->scale_dtype);
    uint64_t C = cols_of(pt), nonfinite = count_nonfinite(LAD_F32, w->merged, n);
    uint64_t code_at, code_bytes, scale_at, scale_bytes;
    if (nonfinite)
        atomic_fetch_add(&r->nonfinite[it->tensor], nonfinite);
    if (q->scheme == LAD_Q_GGML) { /* whole blocks, their scales inside */
        uint64_t bs = lad_ggml_block_size(q->ggml_type), ts = lad_ggml_type_size(q->ggml_type);
        lad_ggml_quantize(q->ggml_type, w->merged, w->out_raw, n);
        return put(w, it, w->out_raw, n / bs * ts, it->start / bs * ts, err);
    }
    if (q->scheme == LAD_Q_MXFP4) {
        lad_quant_encode_mxfp4(n, w->merged, w->out_raw, w->qscales);
        code_at = it->start / 2;
        code_bytes = n / 2;
        scale_at = it->start / 32;
        scale_bytes = n / 32;
    } else {
        lad_quant_encode_fp8(q, pt->out_dtype, pt->scale_dtype, C, n, w->merged, w->out_raw,
                             w->qscales, r->tensor_amax);
        code_at = it->start;
        code_bytes = n;
        if (q->scheme == LAD_Q_FP8_TENSOR) {
            scale_at = 0;
            scale_bytes = it->index == 0 ? ses : 0;
        } else if (q->scheme == LAD_Q_FP8_CHANNEL) {
            scale_at = it->start / C * ses;
            scale_bytes = n / C * ses;
        } else { /* one row of blocks */
            uint64_t sc = (C + q->block[1] - 1) / q->block[1];
            scale_at = it->start / (C * q->block[0]) * sc * ses;
            scale_bytes = sc * ses;
        }
    }
    const lad_plan_tensor scales = {.shard = pt->shard, .offset = pt->scale_offset,
                                    .name = q->scales->name};
    if (put_at(w, pt, w->out_raw, code_bytes, code_at, err) ||
        put_at(w, &scales, w->qscales, scale_bytes, scale_at, err))
        return -1;
    return 0;
}

/* A matrix merged in its inputs' layout (w->merged, R x C), stored
 * transposed (C x R), a block of each output row at a time. */
static int put_transposed(worker *w, const item *it, unsigned char *out, lad_error *err)
{
    run *r = w->r;
    const lad_plan_tensor *pt = &r->plan->t[it->tensor];
    uint64_t R = pt->shape[pt->ndim - 1], C = pt->shape[pt->ndim - 2]; /* output: C x R */
    size_t oes = esize(pt->out_dtype);
    float *col = w->comp_out;
    uint64_t nonfinite = count_nonfinite(LAD_F32, w->merged, (size_t)it->count);
    if (nonfinite)
        atomic_fetch_add(&r->nonfinite[it->tensor], nonfinite);
    for (uint64_t c = 0; c < C; c++)
        for (uint64_t r0 = 0; r0 < R; r0 += BLOCK) {
            size_t n = (size_t)(R - r0 < BLOCK ? R - r0 : BLOCK);
            for (size_t i = 0; i < n; i++)
                col[i] = w->merged[(r0 + i) * C + c];
            lad_store_f32(pt->out_dtype, col, out + (c * R + r0) * oes, n);
        }
    return put(w, it, out, it->count * oes, it->start * oes, err);
}

/* Input j's row for output row r of a vocabulary tensor (-1: it lacks it). */
static int64_t source_row(const lad_plan_tensor *pt, size_t j, uint64_t r)
{
    return pt->rows[j] ? pt->rows[j][r] : (int64_t)r;
}

static int read_rows(const lad_plan_tensor *pt, size_t j, uint64_t start, uint64_t count,
                     unsigned char *dst, lad_error *err);

/* Input j's mean row over the vocabulary's rows [0, pad_from), as it reads
 * them (mapped, filled), in its dtype: computed once, under the lock. */
static const unsigned char *pad_mean(const lad_plan_tensor *pt, size_t j, uint64_t L,
                                     lad_error *err)
{
    struct lad_pad_cache *c = pt->pad;
    size_t es = esize(pt->in[j]->dtype);
    pthread_mutex_lock(&c->lock);
    if (!c->mean[j]) {
        double *sum = calloc(L + 1, sizeof *sum), *v = malloc((L + 1) * sizeof *v);
        unsigned char *row = malloc(L * es + 1), *mean = malloc(L * es + 1);
        int rc = sum && v && row && mean ? 0 : lad_fail(err, "out of memory");
        for (uint64_t r = 0; rc == 0 && r < pt->pad_from; r++) {
            if ((rc = read_rows(pt, j, r * L, L, row, err)) != 0)
                break;
            lad_load_f64(pt->in[j]->dtype, row, v, (size_t)L);
            for (uint64_t i = 0; i < L; i++)
                sum[i] += v[i];
        }
        for (uint64_t i = 0; rc == 0 && i < L; i++)
            sum[i] /= (double)pt->pad_from;
        if (rc == 0) {
            lad_store_f64(pt->in[j]->dtype, sum, mean, (size_t)L);
            c->mean[j] = mean;
            mean = NULL;
        }
        free(sum);
        free(v);
        free(row);
        free(mean);
    }
    const unsigned char *m = c->mean[j];
    pthread_mutex_unlock(&c->lock);
    return m;
}

/* Row r of token rule k for input j, columns [c0, c0 + n), in input j's
 * dtype: the rule's source row converted, or zeros. */
static int rule_row(const lad_plan_tensor *pt, size_t j, int64_t k, uint64_t L, uint64_t c0,
                    size_t n, unsigned char *dst, lad_error *err)
{
    double v[BLOCK];
    unsigned char raw[BLOCK * 8];
    for (size_t b = 0; b < n; b += BLOCK) {
        size_t m = n - b < BLOCK ? n - b : BLOCK;
        memset(v, 0, m * sizeof *v);
        if (pt->rule_in[k] >= 0) {
            const lad_tensor *t = pt->in[pt->rule_in[k]];
            size_t es = esize(t->dtype);
            uint64_t at = ((uint64_t)pt->rule_row[k] * L + c0 + b) * es;
            if (lad_file_read(t->file, raw, m * es, t->offset + at, err))
                return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
            lad_load_f64(t->dtype, raw, v, m);
        }
        lad_store_f64(pt->in[j]->dtype, v, dst + b * esize(pt->in[j]->dtype), m);
    }
    return 0;
}

/* A row input j lacks, columns [c0, c0 + n) of it, in input j's dtype: the
 * row of input fill_from when it has it, else the mean of the inputs that
 * do (the output's first input always does), rounded once; a pad row or a
 * token rule's row (LAD_ROW_PAD, LAD_ROW_RULE - k). */
static int fill_row(const lad_plan_tensor *pt, size_t j, uint64_t r, uint64_t L, uint64_t c0,
                    size_t n, unsigned char *dst, lad_error *err)
{
    int64_t how = source_row(pt, j, r);
    if (how <= LAD_ROW_RULE)
        return rule_row(pt, j, LAD_ROW_RULE - how, L, c0, n, dst, err);
    if (how == LAD_ROW_PAD) {
        const unsigned char *mean = pad_mean(pt, j, L, err);
        if (!mean)
            return -1;
        size_t es = esize(pt->in[j]->dtype);
        memcpy(dst, mean + c0 * es, n * es);
        return 0;
    }
    double sum[BLOCK], v[BLOCK];
    unsigned char raw[BLOCK * 8];
    size_t donors[MAX_INPUTS], nd = 0;
    if (pt->fill_from >= 0 && source_row(pt, (size_t)pt->fill_from, r) >= 0)
        donors[nd++] = (size_t)pt->fill_from;
    else
        for (size_t k = 0; k < pt->nin; k++)
            if (k != j && source_row(pt, k, r) >= 0)
                donors[nd++] = k;
    /* nd == 0: no input holds the token (a union's token beyond every
     * model's rows): zeros, as mergekit's ZeroEmbedding */
    for (size_t b = 0; b < n; b += BLOCK) {
        size_t m = n - b < BLOCK ? n - b : BLOCK;
        memset(sum, 0, m * sizeof *sum);
        for (size_t d = 0; d < nd; d++) {
            const lad_tensor *t = pt->in[donors[d]];
            size_t es = esize(t->dtype);
            uint64_t at = ((uint64_t)source_row(pt, donors[d], r) * L + c0 + b) * es;
            if (lad_file_read(t->file, raw, m * es, t->offset + at, err))
                return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
            lad_load_f64(t->dtype, raw, v, m);
            for (size_t i = 0; i < m; i++)
                sum[i] += v[i];
        }
        for (size_t i = 0; i < m && nd > 1; i++)
            sum[i] /= (double)nd;
        lad_store_f64(pt->in[j]->dtype, sum, dst + b * esize(pt->in[j]->dtype), m);
    }
    return 0;
}

/* Input j's elements [start, start + count) of a tensor whose rows it
 * holds in another order (or not at all): runs of consecutive rows read at
 * once, missing rows filled. */
static int read_rows(const lad_plan_tensor *pt, size_t j, uint64_t start, uint64_t count,
                     unsigned char *dst, lad_error *err)
{
    const lad_tensor *t = pt->in[j];
    size_t es = esize(t->dtype);
    uint64_t L = pt->nelem / pt->shape[0], end = start + count;
    for (uint64_t pos = start; pos < end;) {
        uint64_t r = pos / L, c0 = pos % L, n = L - c0 < end - pos ? L - c0 : end - pos;
        int64_t src = source_row(pt, j, r);
        unsigned char *at = dst + (pos - start) * es;
        if (src < 0) {
            if (fill_row(pt, j, r, L, c0, (size_t)n, at, err))
                return -1;
        } else {
            /* whole rows following on in both: one read */
            while (c0 == 0 && n == L && pos + n + L <= end &&
                   source_row(pt, j, r + n / L) == src + (int64_t)(n / L))
                n += L;
            if (lad_file_read(t->file, at, n * es, t->offset + ((uint64_t)src * L + c0) * es,
                              err))
                return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
        }
        pos += n;
    }
    return 0;
}

static bool is_swapped(const lad_plan_tensor *pt, size_t j) { return j < 64 && (pt->swapped >> j & 1); }

/* Input j of a tensor it stores transposed: this item's matrix (stored
 * P x Q), read as fp32 and transposed into w->deq[j] (Q x P). */
static int read_swapped(worker *w, const lad_plan_tensor *pt, size_t j, const item *it,
                        lad_error *err)
{
    const lad_tensor *t = pt->in[j];
    uint64_t P = t->shape[t->ndim - 2], Q = t->shape[t->ndim - 1];
    size_t n = (size_t)it->count, es = esize(t->dtype);
    float *deq = w->deq[j], *tr = (float *)w->raw[j];
    if (derived(t)) {
        if (read_derived(t, it->start, n, deq, err))
            return -1;
    } else {
        if (lad_file_read(t->file, w->raw[j], n * es, t->offset + it->start * es, err))
            return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
        lad_load_f32(t->dtype, w->raw[j], deq, n);
    }
    for (uint64_t p = 0; p < P; p++)
        for (uint64_t q = 0; q < Q; q++)
            tr[q * P + p] = deq[p * Q + q];
    memcpy(deq, tr, n * sizeof *deq);
    return 0;
}

static int do_merge(worker *w, const item *it, int pass, lad_error *err)
{
    run *r = w->r;
    const lad_plan_tensor *pt = &r->plan->t[it->tensor];
    const lad_method *m = pt->op->method;
    bool wide = is_wide(pt);
    for (size_t j = 0; j < pt->nin; j++) {
        const lad_tensor *t = pt->in[j];
        size_t es = esize(t->dtype);
        if (is_swapped(pt, j)) {
            if (read_swapped(w, pt, j, it, err))
                return -1;
        } else if (derived(t)) {
            if (read_derived(t, it->start, (size_t)it->count, w->deq[j], err))
                return -1;
        } else if (pt->rows && pt->rows[j]) {
            if (read_rows(pt, j, it->start, it->count, w->raw[j], err))
                return -1;
        } else if (lad_file_read(t->file, w->raw[j], it->count * es, t->offset + it->start * es,
                                 err)) {
            return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
        }
    }
    uint64_t in_bytes = 0;
    for (size_t j = 0; j < pt->nin; j++)
        in_bytes += it->count * esize(pt->in[j]->dtype);
    atomic_fetch_add(&r->read_bytes, in_bytes);
    lad_kctx k = scope_ctx(r, it->tensor);
    k.item += it->index;
    k.item_start = it->start;
    k.item_end = it->start + it->count;
    k.scratch = w->scratch;
    void *acc = pass == MERGE_PASS ? NULL : r->accs[w->index];
    size_t oes = esize(pt->out_dtype);
    /* Rounded straight into a memory output, else into the buffer written. */
    unsigned char *out = r->mem ? r->mem[it->tensor] + it->start * oes : w->out_raw;
    uint64_t step = m->row_length ? row_of(pt) : BLOCK;
    for (uint64_t b = 0; b < it->count; b += step) {
        size_t n = (size_t)(it->count - b < step ? it->count - b : step);
        k.start = it->start + b;
        if (wide) {
            const double *in[MAX_INPUTS];
            for (size_t j = 0; j < pt->nin; j++) {
                lad_load_f64(pt->in[j]->dtype, w->raw[j] + b * esize(pt->in[j]->dtype),
                             w->comp[j], n);
                in[j] = w->comp[j];
            }
            if (pass != MERGE_PASS) {
                m->stats_f64(&k, pass, acc, in, n);
                continue;
            }
            m->chunk_f64(&k, w->comp_out, in, n);
            lad_store_f64(pt->out_dtype, w->comp_out, out + b * oes, n);
        } else {
            const float *in[MAX_INPUTS];
            for (size_t j = 0; j < pt->nin; j++) {
                if (derived(pt->in[j]) || is_swapped(pt, j)) {
                    in[j] = w->deq[j] + b;
                    continue;
                }
                lad_load_f32(pt->in[j]->dtype, w->raw[j] + b * esize(pt->in[j]->dtype),
                             w->comp[j], n);
                in[j] = w->comp[j];
            }
            if (pass >= 0) {
                m->stats_f32(&k, pass, acc, in, n);
                continue;
            }
            if (pt->oq || pt->transpose) { /* the whole item first: its scales (or its
                                            * transposition) need it all */
                m->chunk_f32(&k, w->merged + b, in, n);
                continue;
            }
            m->chunk_f32(&k, w->comp_out, in, n);
            lad_store_f32(pt->out_dtype, w->comp_out, out + b * oes, n);
        }
    }
    if (pass == AMAX_PASS) {
        for (uint64_t i = 0; i < it->count; i++)
            w->amax = isnan(w->merged[i]) || isnan(w->amax) ? NAN
                                                             : fmaxf(w->amax, fabsf(w->merged[i]));
        return 0;
    }
    if (pass != MERGE_PASS)
        return 0;
    if (pt->oq)
        return put_quantised(w, it, err);
    if (pt->transpose)
        return put_transposed(w, it, out, err);
    uint64_t nonfinite = count_nonfinite(pt->out_dtype, out, it->count);
    if (nonfinite)
        atomic_fetch_add(&r->nonfinite[it->tensor], nonfinite);
    return put(w, it, out, it->count * oes, it->start * oes, err);
}

static int do_copy(worker *w, const item *it, lad_error *err)
{
    run *r = w->r;
    const lad_tensor *t = r->plan->t[it->tensor].in[0];
    unsigned char *out = r->mem ? r->mem[it->tensor] + it->start : w->out_raw;
    if (lad_file_read(t->file, out, it->count, t->offset + it->start, err))
        return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    atomic_fetch_add(&r->read_bytes, it->count);
    return put(w, it, out, it->count, it->start, err);
}

static void run_phase_items(worker *w)
{
    run *r = w->r;
    lad_error err = {0};
    for (;;) {
        size_t k = atomic_fetch_add(&r->next, 1);
        if (k >= r->phase_end || r->failed)
            break;
        if (lad_interrupted() || atomic_load(&r->stop)) {
            lad_fail(&err, "interrupted");
            err.interrupted = true;
            fail_run(r, &err);
            break;
        }
        const item *it = &r->items[k];
        if (r->stride > 1 && it->index % r->stride != 0)
            continue; /* a sampling pass: not this one */
        bool merge = r->plan->t[it->tensor].kind == LAD_MERGE;
        if (!merge && r->pass != MERGE_PASS)
            continue; /* a model-scope statistics pass: copies wait for the merge */
        int rc = merge ? do_merge(w, it, r->pass, &err) : do_copy(w, it, &err);
        if (rc) {
            fail_run(r, &err);
            break;
        }
    }
    /* the phase ends with every byte of it written (a failed run writes
     * nothing more: its output is removed) */
    if (!r->failed && flush_pending(w, &err))
        fail_run(r, &err);
    w->pend.any = false;
}

static void *work(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        while (r->phase_id == seen && !r->finished)
            pthread_cond_wait(&r->go, &r->lock);
        seen = r->phase_id;
        bool stop = r->finished;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            return NULL;
        run_phase_items(w);
        pthread_mutex_lock(&r->lock);
        if (--r->running == 0)
            pthread_cond_signal(&r->idle);
        pthread_mutex_unlock(&r->lock);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct pool {
    worker *ws;
    pthread_t *tids;
    int n, started;
    double t0;
} pool;

/* The caller's progress callback; a non-zero answer stops the merge. */
static void report_progress(run *r, const pool *pl, bool final)
{
    const lad_merge_request *q = &r->plan->req;
    if (q->progress && q->progress(q->progress_ctx, atomic_load(&r->done_bytes),
                                   r->plan->bytes_out, now() - pl->t0, final) != 0)
        atomic_store(&r->stop, true);
}

/* Runs items [first, end) as `pass` on every worker; returns when all are
 * done, drawing progress meanwhile. */
static int run_phase(run *r, pool *pl, size_t first, size_t end, int pass, unsigned stride)
{
    pthread_mutex_lock(&r->lock);
    r->phase_end = end;
    r->pass = pass;
    r->stride = stride;
    atomic_store(&r->next, first);
    r->running = pl->started;
    r->phase_id++;
    pthread_cond_broadcast(&r->go);
    while (r->running > 0) {
        if (r->plan->req.progress) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&r->idle, &r->lock, &ts);
            report_progress(r, pl, false);
        } else {
            pthread_cond_wait(&r->idle, &r->lock);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return r->failed ? -1 : 0;
}

/* A pass's stride: 1 unless the method samples. */
static unsigned stride_of(const lad_method *m, const lad_kctx *k, int pass)
{
    unsigned s = m->pass_stride ? m->pass_stride(k, pass) : 1;
    return s ? s : 1;
}

static void release_stats(run *r, const lad_method *m, const lad_kctx *k)
{
    if (r->stats && m->stats_release)
        m->stats_release(k);
    free(r->stats);
    r->stats = NULL;
}

/* A tensor's statistics passes, then its merge pass. */
static int run_tensor_with_stats(run *r, pool *pl, size_t t, lad_error *err)
{
    const lad_plan_tensor *pt = &r->plan->t[t];
    const lad_method *m = pt->op->method;
    size_t first = r->first_item[t], end = r->first_item[t + 1];
    bool wide = is_wide(pt);
    size_t acc_bytes = npasses(pt) ? m->acc_size(pt->op) : 0;
    lad_kctx k = scope_ctx(r, t);
    /* No passes (an FP8 output's amax pass alone): no statistics, NULL as
     * in a phase of tensors without them. */
    r->stats = npasses(pt) ? calloc(1, m->stats_size(&k) + 1) : NULL;
    k.stats = r->stats;
    int rc = r->stats || !npasses(pt)
                 ? 0 : lad_fail(err, "out of memory for the statistics of '%s'", pt->name);
    if (rc == 0 && npasses(pt) && m->stats_init)
        m->stats_init(&k, wide);
    for (int pass = 0; rc == 0 && pass < npasses(pt); pass++) {
        if (m->pass_skip && m->pass_skip(&k, pass))
            continue;
        for (int i = 0; acc_bytes && i < pl->started; i++)
            memset(r->accs[i], 0, acc_bytes);
        const char *why;
        if (run_phase(r, pl, first, end, pass, stride_of(m, &k, pass)) != 0)
            rc = -1;
        else if ((why = m->pass_end(&k, pass, wide, r->accs, (size_t)pl->started)))
            rc = lad_fail(err, "tensor '%s': %s: %s", pt->name, m->name, why);
    }
    if (rc == 0 && needs_amax(pt)) {
        for (int i = 0; i < pl->started; i++)
            pl->ws[i].amax = 0;
        if (run_phase(r, pl, first, end, AMAX_PASS, 1) != 0)
            rc = -1;
        r->tensor_amax = 0;
        for (int i = 0; i < pl->started; i++)
            r->tensor_amax = isnan(pl->ws[i].amax) || isnan(r->tensor_amax)
                                 ? NAN
                                 : fmaxf(r->tensor_amax, pl->ws[i].amax);
    }
    if (rc == 0 && run_phase(r, pl, first, end, MERGE_PASS, 1) != 0)
        rc = -1;
    release_stats(r, m, &k);
    return rc;
}

/* Model scope: every statistics pass over all merged tensors at once, then
 * one merge pass over everything. All merged tensors must share the op. */
static int run_model_scope(run *r, pool *pl, size_t t0, lad_error *err)
{
    lad_plan *p = r->plan;
    const lad_op *op = p->t[t0].op;
    r->block_base = calloc(p->n + 1, sizeof *r->block_base);
    r->item_base = calloc(p->n + 1, sizeof *r->item_base);
    if (!r->block_base || !r->item_base)
        return lad_fail(err, "out of memory");
    for (size_t t = 0; t < p->n; t++) {
        const lad_plan_tensor *pt = &p->t[t];
        if (pt->kind != LAD_MERGE)
            continue;
        if (needs_amax(pt))
            return lad_fail(err, "tensor '%s': a whole-model selection with FP8 outputs scaled "
                                 "per tensor is not supported; add --dtype to write them "
                                 "dequantised",
                            pt->name);
        if (pt->op->method != op->method || memcmp(pt->op->param, op->param, sizeof op->param))
            return lad_fail(err, "tensor '%s': its parameters differ from '%s', but a "
                                 "whole-model selection needs one set for every tensor",
                            pt->name, p->t[t0].name);
        if (is_wide(pt) != is_wide(&p->t[t0]))
            return lad_fail(err, "tensor '%s': a whole-model selection cannot mix F64 and "
                                 "narrower tensors",
                            pt->name);
        r->block_base[t] = r->scope_nblocks;
        r->item_base[t] = r->scope_nitems;
        r->scope_nblocks += nblocks_of(pt->nelem);
        r->scope_nitems += r->first_item[t + 1] - r->first_item[t];
        r->scope_nelem += pt->nelem;
    }
    r->model_scope = true;
    const lad_method *m = op->method;
    bool wide = is_wide(&p->t[t0]);
    size_t acc_bytes = m->acc_size(op);
    lad_kctx k = scope_ctx(r, t0);
    k.item = 0;
    k.block_base = 0;
    r->stats = calloc(1, m->stats_size(&k) + 1);
    k.stats = r->stats;
    int rc = r->stats ? 0 : lad_fail(err, "out of memory for whole-model statistics");
    if (rc == 0 && m->stats_init)
        m->stats_init(&k, wide);
    for (int pass = 0; rc == 0 && pass < npasses(&p->t[t0]); pass++) {
        if (m->pass_skip && m->pass_skip(&k, pass))
            continue;
        for (int i = 0; acc_bytes && i < pl->started; i++)
            memset(r->accs[i], 0, acc_bytes);
        const char *why;
        if (run_phase(r, pl, 0, r->nitems, pass, stride_of(m, &k, pass)) != 0)
            rc = -1;
        else if ((why = m->pass_end(&k, pass, wide, r->accs, (size_t)pl->started)))
            rc = lad_fail(err, "%s: %s", m->name, why);
    }
    if (rc == 0 && run_phase(r, pl, 0, r->nitems, MERGE_PASS, 1) != 0)
        rc = -1;
    release_stats(r, m, &k);
    return rc;
}

static int run_all(run *r, pool *pl, lad_error *err)
{
    size_t t = 0, n = r->plan->n;
    for (size_t u = 0; u < n; u++) {
        const lad_plan_tensor *pt = &r->plan->t[u];
        if (npasses(pt) > 0 && pt->op->method->model_scope &&
            pt->op->method->model_scope(pt->op))
            return run_model_scope(r, pl, u, err);
    }
    while (t < n) {
        if (!lad_plan_in_part(r->plan, t)) { /* (no items: nothing to run) */
            t++;
            continue;
        }
        if (npasses(&r->plan->t[t]) > 0 || needs_amax(&r->plan->t[t])) {
            if (run_tensor_with_stats(r, pl, t, err) != 0)
                return -1;
            t++;
            continue;
        }
        /* A run of tensors without statistics: one phase over all of them. */
        size_t u = t;
        while (u < n && npasses(&r->plan->t[u]) == 0 && !needs_amax(&r->plan->t[u]))
            u++;
        if (run_phase(r, pl, r->first_item[t], r->first_item[u], MERGE_PASS, 1) != 0)
            return -1;
        t = u;
    }
    return 0;
}

/* Elements (bytes for a copy) per work item: CHUNK, whole rows for a row
 * method. */
/* Elements (bytes for a copy) per work item: CHUNK; whole rows for a row
 * method or an FP8 output scaled per row; one row of blocks for an FP8
 * output scaled per block (its scales need every value of the block). */
static uint64_t item_step(const lad_plan_tensor *pt)
{
    if (pt->kind != LAD_MERGE)
        return (uint64_t)CHUNK * 8;
    uint64_t C = cols_of(pt);
    if (pt->transpose || pt->swapped) /* whole matrices: every value of a row lands in
                                         * another */
        return pt->shape[pt->ndim - 1] * pt->shape[pt->ndim - 2];
    if (pt->oq && pt->oq->scheme == LAD_Q_FP8_BLOCK)
        return pt->oq->block[0] * C;
    uint64_t row = pt->op->method->row_length ? row_of(pt) : 0;
    if (pt->oq && pt->oq->scheme == LAD_Q_FP8_CHANNEL)
        row = C; /* (a row method's rows are these rows) */
    if (row > CHUNK)
        return row;
    return row > 0 ? CHUNK / row * row : CHUNK;
}

static int make_items(run *r, lad_error *err)
{
    size_t n = r->plan->n, total = 0;
    r->first_item = calloc(n + 1, sizeof *r->first_item);
    r->keys = calloc(n + 1, sizeof *r->keys);
    r->nonfinite = calloc(n + 1, sizeof *r->nonfinite);
    if (!r->first_item || !r->keys || !r->nonfinite)
        return lad_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const lad_plan_tensor *pt = &r->plan->t[i];
        uint64_t size = pt->kind == LAD_MERGE ? pt->nelem : pt->nbytes;
        uint64_t step = item_step(pt);
        if (pt->kind == LAD_MERGE && pt->op->method->row_length && pt->nelem) {
            uint64_t row = row_of(pt);
            if (row == 0)
                return lad_fail(err, "tensor '%s': %s supports tensors of 1 or 2 dimensions "
                                     "only",
                                pt->name, pt->op->method->name);
            if (row > CHUNK)
                return lad_fail(err, "tensor '%s': %s needs whole rows, and its rows of %llu "
                                     "elements exceed ladle's limit of %u",
                                pt->name, pt->op->method->name, (unsigned long long)row, CHUNK);
        }
        if ((pt->oq || pt->transpose || pt->swapped) && step > MAX_QUANT_ITEM)
            return lad_fail(err, "tensor '%s': re-quantising it needs %llu values at once, "
                                 "more than ladle's limit of %u; add --dtype to write it "
                                 "dequantised",
                            pt->name, (unsigned long long)step, MAX_QUANT_ITEM);
        r->first_item[i] = total;
        if (!lad_plan_in_part(r->plan, i))
            continue; /* another part's shard: no work here */
        total += (size_t)((size + step - 1) / step);
        uint64_t largest = size < step ? size : step;
        r->max_item = largest > r->max_item ? largest : r->max_item;
        /* FNV-1a of the name, then mixed: the RNG key of the tensor. */
        uint32_t h = 2166136261u;
        for (const char *c = pt->name; *c; c++)
            h = (h ^ (unsigned char)*c) * 16777619u;
        h ^= h >> 16;
        h *= 0x7feb352du;
        h ^= h >> 15;
        r->keys[i] = h;
    }
    r->first_item[n] = total;
    r->items = calloc(total + 1, sizeof *r->items);
    if (!r->items)
        return lad_fail(err, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const lad_plan_tensor *pt = &r->plan->t[i];
        uint64_t size = pt->kind == LAD_MERGE ? pt->nelem : pt->nbytes;
        uint64_t step = item_step(pt);
        for (uint64_t s = 0, idx = 0; lad_plan_in_part(r->plan, i) && s < size; s += step, idx++)
            r->items[k++] = (item){i, s, size - s < step ? size - s : step, (size_t)idx};
    }
    r->nitems = total;
    return 0;
}

static void free_worker(worker *w)
{
    for (size_t j = 0; j < MAX_INPUTS; j++) {
        free(w->raw[j]);
        free(w->comp[j]);
        free(w->deq[j]);
    }
    free(w->merged);
    free(w->qscales);
    free(w->out_buf[0]);
    free(w->out_buf[1]);
    free(w->comp_out);
    free(w->scratch);
    memset(w, 0, sizeof *w);
}

static bool uses_rows(const lad_plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].kind == LAD_MERGE && p->t[i].op->method->row_length)
            return true;
    return false;
}

static int init_worker(worker *w, run *r, int index, lad_error *err)
{
    memset(w, 0, sizeof *w);
    w->r = r;
    w->index = index;
    const lad_plan *p = r->plan;
    size_t nin = p->max_in, item = (size_t)r->max_item;
    bool rows = uses_rows(p), qin = false, qout = false;
    for (size_t i = 0; i < p->n; i++) {
        qout |= p->t[i].oq != NULL || p->t[i].transpose;
        for (size_t j = 0; p->t[i].kind == LAD_MERGE && j < p->t[i].nin; j++)
            qin |= derived(p->t[i].in[j]) || p->t[i].swapped;
    }
    size_t comp = (rows ? (size_t)CHUNK : BLOCK) * 8;
    bool ok = (w->out_buf[0] = malloc(item * 8 + 8)) && (w->out_buf[1] = malloc(item * 8 + 8)) &&
              (w->comp_out = malloc(comp)) &&
              (w->scratch = malloc(LAD_SCRATCH_BYTES(nin, rows ? LAD_MAX_ROW : BLOCK)));
    if (ok && qout) /* merged values, and scales: at most one per value */
        ok = (w->merged = malloc(item * 4 + 4)) && (w->qscales = malloc(item * 4 + 64));
    for (size_t j = 0; j < nin && ok; j++) {
        ok = (w->raw[j] = malloc(item * 8 + 8)) && (w->comp[j] = malloc(comp));
        if (ok && qin)
            ok = (w->deq[j] = malloc(item * 4 + 4)) != NULL;
    }
    if (!ok) {
        free_worker(w);
        return lad_fail(err, "out of memory for work buffers");
    }
    w->out_raw = w->out_buf[0];
    return 0;
}

/* The largest per-thread accumulator any tensor's method asks for. */
static size_t max_acc_size(const lad_plan *p)
{
    size_t max = 0;
    for (size_t i = 0; i < p->n; i++)
        if (npasses(&p->t[i]) > 0) {
            size_t a = p->t[i].op->method->acc_size(p->t[i].op);
            max = a > max ? a : max;
        }
    return max;
}

static int run_items(run *r, int nthreads, lad_error *err)
{
    pool pl = {.n = nthreads, .t0 = now()};
    pl.ws = calloc((size_t)nthreads, sizeof *pl.ws);
    pl.tids = calloc((size_t)nthreads, sizeof *pl.tids);
    r->accs = calloc((size_t)nthreads, sizeof *r->accs);
    size_t acc_bytes = max_acc_size(r->plan);
    int rc = (!pl.ws || !pl.tids || !r->accs) ? lad_fail(err, "out of memory") : 0;
    for (int i = 0; rc == 0 && i < nthreads; i++)
        if (acc_bytes && !(r->accs[i] = malloc(acc_bytes)))
            rc = lad_fail(err, "out of memory for statistics");
    for (; rc == 0 && pl.started < nthreads; pl.started++) {
        if (init_worker(&pl.ws[pl.started], r, pl.started, err))
            rc = -1;
        else if (pthread_create(&pl.tids[pl.started], NULL, work, &pl.ws[pl.started]) != 0)
            rc = lad_fail(err, "cannot start a worker thread");
        if (rc)
            free_worker(&pl.ws[pl.started]);
    }
    if (rc == 0 && run_all(r, &pl, err) != 0)
        rc = -1;
    pthread_mutex_lock(&r->lock);
    r->finished = true;
    pthread_cond_broadcast(&r->go);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < pl.started; i++) {
        pthread_join(pl.tids[i], NULL);
        free_worker(&pl.ws[i]);
    }
    for (int i = 0; r->accs && i < nthreads; i++)
        free(r->accs[i]);
    free(r->accs);
    free(pl.ws);
    free(pl.tids);
    if (r->failed) {
        *err = r->err;
        return -1;
    }
    if (rc == 0)
        report_progress(r, &pl, true);
    if (rc == 0 && atomic_load(&r->stop)) { /* asked at the very end: still nothing written */
        rc = lad_fail(err, "interrupted");
        err->interrupted = true;
    }
    return rc;
}

/* llama.cpp's general.file_type for an output whose merged tensors all
 * take --quant's or --dtype's type; -1 keeps the template's. */
static int gguf_file_type(const lad_plan *p)
{
    uint32_t t;
    if (p->req.has_quant)
        t = p->req.quant;
    else if (!p->req.has_out_dtype || !lad_ggml_from_dtype(p->req.out_dtype, &t))
        return p->gguf_fallback ? lad_ggml_file_type(LAD_GGML_Q8_0) : -1;
    return lad_ggml_file_type(t);
}

/* A GGUF output: the template's key-values, general.name from OUT's file
 * name, the recipe as ladle.recipe, the block count of a frankenmerge. */
static int open_gguf(run *r, lad_writer *w, lad_error *err)
{
    lad_plan *p = r->plan;
    const lad_model *tmpl = p->req.models[p->req.template_model];
    lad_gguf_out *ts = calloc(p->n + 1, sizeof *ts);
    char *recipe = json_dumps(p->recipe, JSON_COMPACT);
    const char *out = p->req.output, *slash = strrchr(out, '/');
    char *name = lad_strdup(slash ? slash + 1 : out);
    int rc = 0;
    if (!ts || !recipe || !name) {
        rc = lad_fail(err, "out of memory");
    } else {
        name[strlen(name) - strlen(".gguf")] = 0;
        for (size_t i = 0; i < p->n; i++) {
            const lad_plan_tensor *pt = &p->t[i];
            ts[i] = (lad_gguf_out){pt->name, pt->ggml_type, pt->ndim, pt->shape, pt->nbytes,
                                   pt->offset};
        }
        rc = lad_writer_add_gguf(w, tmpl->nfiles ? &tmpl->files[0] : NULL, name, recipe,
                                 gguf_file_type(p), p->req.num_layers, ts, p->n, &r->fds[0],
                                 &r->data_start[0], err);
    }
    free(ts);
    free(recipe);
    free(name);
    return rc;
}

static int open_outputs(run *r, lad_writer *w, lad_error *err)
{
    lad_plan *p = r->plan;
    if (p->as_gguf)
        return open_gguf(r, w, err);
    json_t *meta = p->req.metadata ? json_deep_copy(p->req.metadata) : json_object();
    char *recipe = p->req.metadata ? NULL : json_dumps(p->recipe, JSON_COMPACT);
    if (!meta || (!recipe && !p->req.metadata)) {
        json_decref(meta);
        free(recipe);
        return lad_fail(err, "out of memory");
    }
    if (!json_object_get(meta, "format"))
        json_object_set_new(meta, "format", json_string("pt"));
    if (recipe)
        json_object_set_new(meta, "ladle_recipe", json_string(recipe));
    free(recipe);
    int rc = 0;
    for (size_t s = 0; s < p->nshards && rc == 0; s++) {
        lad_shard *sh = &p->shards[s];
        lad_out_tensor *ts = calloc(2 * sh->count + 1, sizeof *ts);
        size_t n = 0;
        if (!ts) {
            rc = lad_fail(err, "out of memory");
            break;
        }
        for (size_t i = 0; i < sh->count; i++) {
            const lad_plan_tensor *pt = &p->t[sh->first + i];
            const lad_quant *q = pt->oq;
            if (!q) {
                ts[n++] = (lad_out_tensor){pt->name, pt->out_dtype, pt->ndim, pt->shape,
                                           pt->nbytes};
                continue;
            }
            /* a re-quantised weight is stored as its codes, then its scales */
            if (q->scheme == LAD_Q_MXFP4)
                ts[n++] = (lad_out_tensor){q->phys_name, LAD_U8, q->phys_ndim, q->phys_shape,
                                           pt->nbytes};
            else
                ts[n++] = (lad_out_tensor){pt->name, pt->out_dtype, pt->ndim, pt->shape,
                                           pt->nbytes};
            ts[n++] = (lad_out_tensor){q->scales->name, pt->scale_dtype, q->scales->ndim,
                                       q->scales->shape, pt->scale_nbytes};
        }
        uint64_t data = 0;
        for (size_t i = 0; i < n; i++)
            data += ts[i].nbytes;
        if (!p->req.nparts || p->shard_part[s] == p->req.part) {
            rc = lad_writer_add_safetensors(w, sh->fname, ts, n, meta, &r->fds[s],
                                            &r->data_start[s], err);
            r->file_bytes[s] = r->data_start[s] + data;
        } else { /* another part's: only its size, for the manifest */
            size_t hlen;
            char *hdr = lad_safetensors_header(ts, n, meta, &hlen);
            rc = hdr ? 0 : lad_fail(err, "out of memory");
            r->fds[s] = -1;
            r->file_bytes[s] = hlen + data;
            free(hdr);
        }
        free(ts);
    }
    json_decref(meta);
    return rc;
}


int lad_plan_execute(lad_plan *p, lad_run_stats *stats, lad_error *err)
{
    if (!p->req.output)
        return lad_fail(err, "this plan has no output file: run it with lad_plan_execute_memory");
    if (p->req.nparts) {
        lad_parts_status st;
        lad_run_stats own;
        int rc = lad_part_execute(p, stats ? stats : &own, &st, err);
        if (rc == 0 && stats) {
            stats->part_complete = st.complete;
            stats->part_published = st.published;
            stats->part_shards = 0;
            for (size_t s = 0; s < p->nshards; s++)
                stats->part_shards += p->shard_part[s] == p->req.part;
        }
        return rc;
    }
    lad_writer *w = NULL;
    if (lad_writer_begin(p->req.output, p->as_dir, p->req.force, &w, err) != 0)
        return -1;
    return lad_engine_execute(p, w, NULL, stats, err);
}

int lad_plan_execute_memory(lad_plan *p, void *const *dst, lad_run_stats *stats, lad_error *err)
{
    if (p->req.output)
        return lad_fail(err, "this plan writes %s, not memory", p->req.output);
    return lad_engine_execute(p, NULL, (unsigned char *const *)dst, stats, err);
}

int lad_engine_execute(lad_plan *p, lad_writer *w, unsigned char *const *mem,
                       lad_run_stats *stats, lad_error *err)
{
    if (p->req.nmodels > MAX_INPUTS) {
        if (w)
            lad_writer_abort(w);
        return lad_fail(err, "at most %d input models can be merged at once", MAX_INPUTS);
    }
    run r = {.plan = p, .mem = mem};
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.go, NULL);
    pthread_cond_init(&r.idle, NULL);
    r.fds = calloc(p->nshards, sizeof *r.fds);
    r.wlocks = calloc(p->nshards, sizeof *r.wlocks);
    for (size_t s = 0; r.wlocks && s < p->nshards; s++)
        pthread_mutex_init(&r.wlocks[s], NULL);
    r.data_start = calloc(p->nshards, sizeof *r.data_start);
    r.file_bytes = calloc(p->nshards + 1, sizeof *r.file_bytes);
    double t0 = now();
    int rc = (!r.fds || !r.wlocks || !r.data_start || !r.file_bytes)
                 ? lad_fail(err, "out of memory") : 0;
    if (rc == 0 && w)
        rc = open_outputs(&r, w, err);
    if (rc == 0)
        rc = make_items(&r, err);
    for (size_t j = 0; rc == 0 && j < p->req.nmodels; j++)
        for (size_t f = 0; f < p->req.models[j]->nfiles; f++)
            if (!p->req.models[j]->files[f].mem)
                posix_fadvise(p->req.models[j]->files[f].fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (rc == 0) {
        int nthreads = p->req.threads > 0 ? p->req.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (nthreads < 1)
            nthreads = 1;
        /* BLAS's thread count changes how OpenBLAS splits its sums, so its
         * results: one count for any -j (the machine's), so that -j never
         * changes a bit (the engine's workers are idle during decompositions). */
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        lad_linalg_threads(ncpu > 0 ? (int)ncpu : 1);
        rc = run_items(&r, nthreads, err);
    }
    if (rc == 0 && w && p->req.nparts)
        rc = lad_part_manifest(p, w, r.file_bytes, err);
    if (rc == 0 && w && p->as_dir) {
        lad_hf_extras x;
        if ((rc = lad_plan_extras(p, &x, err)) == 0) {
            rc = lad_hf_write(w, &x, err);
            lad_extras_free(&x);
        }
    }
    if (rc == 0 && w) {
        rc = lad_writer_commit(w, err); /* aborts (removes the temporary) on failure */
        w = NULL;
    }
    if (w)
        lad_writer_abort(w);
    if (rc && (lad_interrupted() || atomic_load(&r.stop)))
        err->interrupted = true;
    if (rc == 0 && stats) {
        stats->bytes_read = p->bytes_in;
        stats->bytes_written = p->bytes_out;
        stats->bytes_read_passes = atomic_load(&r.read_bytes);
        stats->seconds = now() - t0;
        stats->nshards = p->nshards;
        stats->nonfinite = 0;
        stats->nonfinite_tensors = 0;
        stats->first_nonfinite = NULL;
        for (size_t t = 0; t < p->n; t++)
            if (r.nonfinite[t]) {
                stats->nonfinite += r.nonfinite[t];
                if (!stats->nonfinite_tensors++)
                    stats->first_nonfinite = p->t[t].name;
            }
    }
    free(r.items);
    free(r.block_base);
    free(r.item_base);
    free(r.first_item);
    free(r.keys);
    free(r.nonfinite);
    free(r.fds);
    for (size_t s = 0; r.wlocks && s < p->nshards; s++)
        pthread_mutex_destroy(&r.wlocks[s]);
    free(r.wlocks);
    free(r.data_start);
    free(r.file_bytes);
    pthread_cond_destroy(&r.go);
    pthread_cond_destroy(&r.idle);
    pthread_mutex_destroy(&r.lock);
    return rc;
}
