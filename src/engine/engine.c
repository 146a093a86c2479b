/*
 * The streaming engine: executes a plan in bounded memory on N threads.
 *
 * Work is cut into items of at most CHUNK elements of one output tensor.
 * A thread takes the next item, pread()s each input's slice into its own
 * buffer, converts it to fp32 (fp64 for F64 tensors) BLOCK elements at a
 * time so the compute buffers stay in L1, runs the method's kernel, rounds
 * once to the output dtype and pwrite()s the result at its final offset.
 * Memory is (threads x inputs x CHUNK) bytes whatever the model's size;
 * nothing is mmap'd, so no page of a model is ever resident in this process.
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
#include "../formats/writer.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1u << 17) /* elements per work item: 256 KiB of bf16 */
#define BLOCK 1024u      /* elements per conversion + kernel step */
#define MAX_INPUTS 64

typedef struct item {
    size_t tensor;
    uint64_t start, count; /* elements (bytes for a COPY) */
} item;

typedef struct run {
    lad_plan *plan;
    item *items;
    size_t nitems;
    atomic_size_t next;
    atomic_uint_least64_t done_bytes;
    int *fds;               /* per shard */
    uint64_t *data_start;   /* per shard */
    pthread_mutex_t lock;
    atomic_bool failed;
    lad_error err;
} run;

typedef struct worker {
    run *r;
    unsigned char *raw[MAX_INPUTS];
    unsigned char *out_raw;
    void *comp[MAX_INPUTS]; /* BLOCK fp32/fp64 values per input */
    void *comp_out;
} worker;

static void fail_run(run *r, const lad_error *e)
{
    pthread_mutex_lock(&r->lock);
    if (!r->failed) {
        r->failed = true;
        r->err = *e;
    }
    pthread_mutex_unlock(&r->lock);
}

static size_t esize(lad_dtype t) { return lad_dtype_bits(t) / 8; }

static int do_merge(worker *w, const lad_plan_tensor *pt, const item *it, lad_error *err)
{
    run *r = w->r;
    bool wide = pt->out_dtype == LAD_F64;
    for (size_t j = 0; j < pt->nin; j++)
        wide |= pt->in[j]->dtype == LAD_F64;
    for (size_t j = 0; j < pt->nin; j++) {
        const lad_tensor *t = pt->in[j];
        size_t es = esize(t->dtype);
        if (lad_pread_full(t->file->fd, w->raw[j], it->count * es, t->offset + it->start * es,
                           err))
            return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    }
    size_t oes = esize(pt->out_dtype);
    for (uint64_t b = 0; b < it->count; b += BLOCK) {
        size_t n = (size_t)(it->count - b < BLOCK ? it->count - b : BLOCK);
        if (wide) {
            const double *in[MAX_INPUTS];
            for (size_t j = 0; j < pt->nin; j++) {
                lad_load_f64(pt->in[j]->dtype, w->raw[j] + b * esize(pt->in[j]->dtype),
                             w->comp[j], n);
                in[j] = w->comp[j];
            }
            pt->op->method->chunk_f64(pt->op, w->comp_out, in, n);
            lad_store_f64(pt->out_dtype, w->comp_out, w->out_raw + b * oes, n);
        } else {
            const float *in[MAX_INPUTS];
            for (size_t j = 0; j < pt->nin; j++) {
                lad_load_f32(pt->in[j]->dtype, w->raw[j] + b * esize(pt->in[j]->dtype),
                             w->comp[j], n);
                in[j] = w->comp[j];
            }
            pt->op->method->chunk_f32(pt->op, w->comp_out, in, n);
            lad_store_f32(pt->out_dtype, w->comp_out, w->out_raw + b * oes, n);
        }
    }
    size_t s = pt->shard;
    if (lad_pwrite_full(r->fds[s], w->out_raw, it->count * oes,
                        r->data_start[s] + pt->offset + it->start * oes, err))
        return lad_fail_prefix(err, "%s: writing tensor '%s': ", r->plan->req.output, pt->name);
    atomic_fetch_add(&r->done_bytes, it->count * oes);
    return 0;
}

static int do_copy(worker *w, const lad_plan_tensor *pt, const item *it, lad_error *err)
{
    run *r = w->r;
    const lad_tensor *t = pt->in[0];
    if (lad_pread_full(t->file->fd, w->out_raw, it->count, t->offset + it->start, err))
        return lad_fail_prefix(err, "%s: tensor '%s': ", t->file->path, t->name);
    size_t s = pt->shard;
    if (lad_pwrite_full(r->fds[s], w->out_raw, it->count, r->data_start[s] + pt->offset + it->start,
                        err))
        return lad_fail_prefix(err, "%s: writing tensor '%s': ", r->plan->req.output, pt->name);
    atomic_fetch_add(&r->done_bytes, it->count);
    return 0;
}

static void *work(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    lad_error err = {0};
    for (;;) {
        size_t k = atomic_fetch_add(&r->next, 1);
        if (k >= r->nitems || r->failed)
            break;
        if (lad_interrupted()) {
            lad_fail(&err, "interrupted");
            err.interrupted = true;
            fail_run(r, &err);
            break;
        }
        const item *it = &r->items[k];
        const lad_plan_tensor *pt = &r->plan->t[it->tensor];
        int rc = pt->kind == LAD_MERGE ? do_merge(w, pt, it, &err) : do_copy(w, pt, it, &err);
        if (rc) {
            fail_run(r, &err);
            break;
        }
    }
    return NULL;
}

static int make_items(run *r, lad_error *err)
{
    size_t cap = 16, n = 0;
    item *items = malloc(cap * sizeof *items);
    for (size_t i = 0; items && i < r->plan->n; i++) {
        const lad_plan_tensor *pt = &r->plan->t[i];
        uint64_t total = pt->kind == LAD_MERGE ? pt->nelem : pt->nbytes;
        uint64_t step = pt->kind == LAD_MERGE ? CHUNK : (uint64_t)CHUNK * 8;
        for (uint64_t s = 0; s < total; s += step) {
            if (n == cap) {
                item *grown = realloc(items, (cap *= 2) * sizeof *items);
                if (!grown) {
                    free(items);
                    items = NULL;
                    break;
                }
                items = grown;
            }
            items[n++] = (item){i, s, total - s < step ? total - s : step};
        }
    }
    if (!items)
        return lad_fail(err, "out of memory");
    r->items = items;
    r->nitems = n;
    return 0;
}

static void free_worker(worker *w)
{
    for (size_t j = 0; j < MAX_INPUTS; j++) {
        free(w->raw[j]);
        free(w->comp[j]);
    }
    free(w->out_raw);
    free(w->comp_out);
}

static int init_worker(worker *w, run *r, lad_error *err)
{
    memset(w, 0, sizeof *w);
    w->r = r;
    size_t nin = r->plan->req.nmodels;
    bool ok = (w->out_raw = malloc((size_t)CHUNK * 8)) && (w->comp_out = malloc(BLOCK * 8));
    for (size_t j = 0; j < nin && ok; j++)
        ok = (w->raw[j] = malloc((size_t)CHUNK * 8)) && (w->comp[j] = malloc(BLOCK * 8));
    if (!ok) {
        free_worker(w);
        return lad_fail(err, "out of memory for work buffers");
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void draw_progress(uint64_t done, uint64_t total, double t0, bool final)
{
    double el = now() - t0, frac = total ? (double)done / (double)total : 1.0;
    int width = 30, fill = (int)(frac * width);
    char bar[32], d[32], tot[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    lad_format_bytes(done, d, sizeof d);
    lad_format_bytes(total, tot, sizeof tot);
    double rate = el > 0 ? (double)done / el : 0;
    fprintf(stderr, "\r[%s] %3.0f%% %s / %s  %.2f GB/s  %s %.0fs ", bar, frac * 100, d, tot,
            rate / 1e9, final ? "in" : "eta",
            final ? el : (rate > 0 ? (double)(total - done) / rate : 0));
    if (final)
        fputc('\n', stderr);
}

/* Runs the items on the thread pool; the calling thread draws progress. */
static int run_items(run *r, int nthreads, bool progress, lad_error *err)
{
    worker *ws = calloc((size_t)nthreads, sizeof *ws);
    pthread_t *tids = calloc((size_t)nthreads, sizeof *tids);
    if (!ws || !tids) {
        free(ws);
        free(tids);
        return lad_fail(err, "out of memory");
    }
    int started = 0, rc = 0;
    for (; started < nthreads; started++) {
        if (init_worker(&ws[started], r, err) ||
            pthread_create(&tids[started], NULL, work, &ws[started]) != 0) {
            if (!err->msg[0])
                lad_fail(err, "cannot start a worker thread");
            fail_run(r, err);
            rc = -1;
            break;
        }
    }
    double t0 = now();
    uint64_t total = r->plan->bytes_out;
    while (progress && rc == 0) {
        size_t next = atomic_load(&r->next);
        if (next >= r->nitems || r->failed)
            break;
        draw_progress(atomic_load(&r->done_bytes), total, t0, false);
        usleep(100000);
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    for (int i = 0; i < nthreads; i++)
        if (ws[i].r)
            free_worker(&ws[i]);
    free(ws);
    free(tids);
    if (progress && !r->failed)
        draw_progress(atomic_load(&r->done_bytes), total, t0, true);
    if (r->failed) {
        *err = r->err;
        return -1;
    }
    return rc;
}

static int open_outputs(run *r, lad_writer *w, lad_error *err)
{
    lad_plan *p = r->plan;
    json_t *meta = json_object();
    char *recipe = json_dumps(p->recipe, JSON_COMPACT);
    if (!meta || !recipe) {
        json_decref(meta);
        free(recipe);
        return lad_fail(err, "out of memory");
    }
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(meta, "ladle_recipe", json_string(recipe));
    free(recipe);
    int rc = 0;
    for (size_t s = 0; s < p->nshards && rc == 0; s++) {
        lad_shard *sh = &p->shards[s];
        lad_out_tensor *ts = calloc(sh->count + 1, sizeof *ts);
        if (!ts) {
            rc = lad_fail(err, "out of memory");
            break;
        }
        for (size_t i = 0; i < sh->count; i++) {
            const lad_plan_tensor *pt = &p->t[sh->first + i];
            ts[i] = (lad_out_tensor){pt->name, pt->out_dtype, pt->ndim, pt->shape, pt->nbytes};
        }
        rc = lad_writer_add_safetensors(w, sh->fname, ts, sh->count, meta, &r->fds[s],
                                        &r->data_start[s], err);
        free(ts);
    }
    json_decref(meta);
    return rc;
}

int lad_plan_execute(lad_plan *p, lad_run_stats *stats, lad_error *err)
{
    if (p->req.nmodels > MAX_INPUTS)
        return lad_fail(err, "at most %d input models can be merged at once", MAX_INPUTS);
    run r = {.plan = p};
    pthread_mutex_init(&r.lock, NULL);
    r.fds = calloc(p->nshards, sizeof *r.fds);
    r.data_start = calloc(p->nshards, sizeof *r.data_start);
    lad_writer *w = NULL;
    double t0 = now();
    int rc = (!r.fds || !r.data_start) ? lad_fail(err, "out of memory") : 0;
    if (rc == 0)
        rc = lad_writer_begin(p->req.output, p->as_dir, p->req.force, &w, err);
    if (rc == 0)
        rc = open_outputs(&r, w, err);
    if (rc == 0)
        rc = make_items(&r, err);
    for (size_t j = 0; rc == 0 && j < p->req.nmodels; j++)
        for (size_t f = 0; f < p->req.models[j]->nfiles; f++)
            posix_fadvise(p->req.models[j]->files[f].fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (rc == 0) {
        int nthreads = p->req.threads > 0 ? p->req.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (nthreads < 1)
            nthreads = 1;
        rc = run_items(&r, nthreads, p->req.progress, err);
    }
    if (rc == 0 && p->as_dir)
        rc = lad_hf_write_extras(w, p, err);
    if (rc == 0) {
        rc = lad_writer_commit(w, err); /* aborts (removes the temporary) on failure */
        w = NULL;
    }
    if (w)
        lad_writer_abort(w);
    if (rc && lad_interrupted())
        err->interrupted = true;
    if (rc == 0 && stats) {
        stats->bytes_read = p->bytes_in;
        stats->bytes_written = p->bytes_out;
        stats->seconds = now() - t0;
        stats->nshards = p->nshards;
    }
    free(r.items);
    free(r.fds);
    free(r.data_start);
    pthread_mutex_destroy(&r.lock);
    return rc;
}
