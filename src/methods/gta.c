/*
 * Generalized task arithmetic, as mergekit defines it: TIES, DARE (linear
 * and TIES) and Model Breadcrumbs are one algorithm with different
 * sparsification and sign consensus. Per tensor, for each fine-tune i:
 *
 *   d_i  = x_i - base                         the task vector
 *   d_i  = sparsify(d_i)                       magnitude top-k (TIES), random
 *                                              drop (DARE), or drop the top
 *                                              gamma outliers and the smallest
 *                                              (Breadcrumbs)
 *   wd_i = w_i * d_i
 *   with sign consensus: the elected sign is that of sum_i wd_i (or of the
 *   count of signs); mixed = sum of the wd_i with that sign, divided (when
 *   normalize) by the sum of their w_i; without: mixed = sum_i wd_i, divided
 *   (when normalize) by sum_i w_i
 *   out  = base + lambda * mixed
 *
 * All in fp32 (fp64 for F64 tensors), in this order. Magnitude selection is
 * exact (select.h): exactly int(density * n) elements per tensor, ties at
 * the threshold broken by lowest index; with GTA_SCOPE, int(density * n)
 * of the whole model's task vector (all merged tensors flattened in order),
 * as the TIES paper's code trims. With fp32 keys the inputs are read
 * twice, not three or four times: a sample (every GTA_STRIDE-th work item)
 * picks a window of first-digit bins around the threshold, the first digit
 * pass keeps the keys in it (at most GTA_CAND_BUDGET bytes; a small tensor
 * keeps all its keys, unsampled), and they settle the threshold and its tie
 * counts exactly; a sample that misleads costs the passes of before, never
 * other bits (select.h). DARE keeps an element when a
 * counter-based hash of (seed, tensor name, task index, element index) is
 * below density * 2^32, so the mask is the same for any thread count and
 * chunking, and rescales survivors by 1/density (as the DARE paper; mergekit
 * now matches L1 norms instead).
 *
 * With GTA_RESCALE_L1 (mergekit's rescale: true), each sparsified task
 * vector is scaled per tensor by sum |d_i| / sum |kept d_i| (not when
 * either is below 1e-7), measured in a last statistics pass (fp64, per
 * work item, in item order) and applied before the weight: d_i * r_i * w_i.
 * Not with GTA_SCOPE (mergekit rescales per tensor).
 *
 * With magnitude normalisation (GTA_NORM_MAG), a first statistics pass
 * measures each task vector's norm per tensor, and every d_i is scaled by
 * mean_j |d_j| / |d_i| (1 for a zero vector) before anything else.
 *
 * DELLA (lad_method_della) works on whole rows (the last dimension; a 1-D
 * tensor is one row): it ranks |d_i| within the row, ascending, ties to the
 * lower index; rank r of R gives the keep probability p = (density - eps)
 * + 2 eps (r - 1) / (R - 1); the draw is DARE's hash; survivors are
 * rescaled by 1/p, as the DELLA paper does (mergekit now matches L1 norms).
 *
 * With GTA_TALL_K = K > 0 (consensus TIES: Wang et al., "Localizing Task
 * Information for Improved Model Merging and Compression", ICML 2024, as
 * their code's consensus with use_ties): per element, task i's TALL mask
 * holds where |tau_i| > GTA_TALL_LAMBDA |mixed - tau_i|, tau_i = w_i d_i
 * before sparsification and mixed the merged vector before lambda (their
 * TALL masks compare each task with the vector being masked); mixed is
 * kept where at least K masks hold, else 0.
 *
 * Differences from mergekit, deliberate: density 0 drops the task vector
 * instead of failing; Breadcrumbs with int(gamma * n) == 0 keeps the top
 * int(density * n) instead of nothing (mergekit's indices[n_bot:-0] slice).
 */
#define _GNU_SOURCE /* qsort_r */
#include "gta.h"
#include "kernel.h"
#include "select.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct gta_stats {
    int ntv, targets, digits;
    int first_select;               /* the pass the selection starts at */
    uint64_t nblocks;
    size_t nitems;
    double scale[GTA_MAX_TV];       /* magnitude normalisation, else 1 */
    float scalef[GTA_MAX_TV];
    double *norms;                  /* per item x task vector: |d|^2 */
    bool l1;                        /* GTA_RESCALE_L1: the last pass sums */
    double *l1sums;                 /* per item x task vector: sum |d|, sum |kept d| */
    double l1r[GTA_MAX_TV];         /* the factors, 1 until measured */
    float l1rf[GTA_MAX_TV];
    lad_select sel[GTA_MAX_TV * 2]; /* per task vector: keep-top, drop-top */
    /* The last digit pass also keeps, per selection and block, the
     * distinct last digits of the keys that match the digits found before
     * it, with their counts (GTA_MAP pairs; the block's before[] counts
     * them, GTA_MAP + 1: more than fit). With T known, each block's count
     * of keys equal to T is there, and the tie pass is not run. NULL when
     * the map would take more than GTA_MAP_BUDGET bytes. */
    uint32_t *map;
    bool ties_settled;
    /* fp32 keys: a sampling pass (every GTA_STRIDE-th work item) sets
     * each selection's window, the first digit pass keeps the keys in it
     * (candidate chunks, select.h), and a selection whose threshold they
     * settle (won) needs no second digit pass nor tie pass. A tensor whose
     * keys all fit in GTA_ALL_BYTES keeps them all, unsampled. */
    bool sample;                    /* the sampling pass is run */
    bool won[GTA_MAX_TV * 2];
    bool all_won;
    uint32_t *cand;                 /* GTA_CAND_BUDGET at most; NULL: none kept */
    size_t cand_cap;                /* words */
    atomic_size_t cand_used;
    atomic_bool cand_full;          /* a chunk did not fit: nothing is settled */
} gta_stats;

#define GTA_MAP 8
#define GTA_MAP_BUDGET (64u << 20)
#define GTA_STRIDE 16
#define GTA_CAND_BUDGET ((size_t)256 << 20)
/* Keys kept all, unsampled, up to this: lad_select_settle scans them on one
 * thread, which for a 2048 x 2048 tensor's 8M keys cost more than the
 * sample pass it saves (32 MB here made the bench's TIES 1.7x slower). */
#define GTA_ALL_BYTES ((size_t)4 << 20)

/* What pass p of the tensor is: its magnitude norms, the sample, else the
 * selection's pass: digit passes from 0, then the tie count, then L1. */
enum { PASS_NORMS = -2, PASS_SAMPLE = -1 };

static int phase_of(const gta_stats *st, int pass)
{
    if (pass < st->first_select)
        return PASS_NORMS;
    pass -= st->first_select;
    if (st->targets > 0 && st->digits == 2) {
        if (pass == 0)
            return PASS_SAMPLE;
        pass--;
    }
    return pass;
}

static size_t ntv(const lad_op *op) { return op->ninputs - 1; }
static int kind(const lad_op *op) { return (int)op->param[GTA_SPARSIFY]; }

static int targets(const lad_op *op)
{
    return kind(op) == GTA_MAGNITUDE ? 1 : kind(op) == GTA_OUTLIERS ? 2 : 0;
}

static bool norm_mag(const lad_op *op) { return op->param[GTA_NORM_MAG] != 0; }
static bool l1(const lad_op *op)
{
    return op->param[GTA_RESCALE] == GTA_RESCALE_L1 && kind(op) != GTA_DENSE;
}

/* fp32 keys (two digits) are sampled first; fp64 keys are not. */
static bool sampled(const lad_op *op, bool wide) { return targets(op) > 0 && !wide; }

static int gta_npasses(const lad_op *op, bool wide)
{
    int n = norm_mag(op) ? 1 : 0;
    if (targets(op) > 0)
        n += (wide ? 4 : 2) + 1 + sampled(op, wide); /* [sample], digits, tie count */
    return n + l1(op);
}

static bool gta_model_scope(const lad_op *op) { return op->param[GTA_SCOPE] != 0; }

static size_t map_size(const lad_kctx *k)
{
    size_t n = ntv(k->op) * (size_t)targets(k->op) * (size_t)k->nblocks * GTA_MAP * 4;
    return n <= GTA_MAP_BUDGET ? n : 0;
}

static size_t gta_stats_size(const lad_kctx *k)
{
    const lad_op *op = k->op;
    return sizeof(gta_stats) + ntv(op) * (size_t)targets(op) * (size_t)k->nblocks * sizeof(uint64_t) +
           ntv(op) * k->nitems * sizeof(double) * 3 + map_size(k);
}

static size_t gta_acc_size(const lad_op *op)
{
    return ntv(op) * (size_t)targets(op) * LAD_SELECT_BINS * sizeof(uint64_t);
}

/* How many of n to keep from the top, per target, in mergekit's terms. */
static void keep_counts(const lad_op *op, size_t i, uint64_t n, uint64_t *keep_top,
                        uint64_t *drop_top)
{
    double density = op->param[GTA_TV(i, GTA_DENSITY)];
    if (density >= 1) {
        *keep_top = n;
        *drop_top = 0;
        return;
    }
    uint64_t target = density > 0 ? (uint64_t)(density * (double)n) : 0;
    *keep_top = target;
    *drop_top = 0;
    if (kind(op) == GTA_OUTLIERS) {
        double gamma = op->param[GTA_TV(i, GTA_GAMMA)];
        uint64_t top = gamma > 0 ? (uint64_t)(gamma * (double)n) : 0;
        if (target + top > n) /* mergekit: fewer outliers to keep the density */
            top = n - target;
        *keep_top = target + top;
        *drop_top = top;
    }
}

static void cand_alloc(gta_stats *st, size_t keys);

static void gta_stats_init(const lad_kctx *k, bool wide)
{
    gta_stats *st = k->stats;
    const lad_op *op = k->op;
    st->ntv = (int)ntv(op);
    st->targets = targets(op);
    st->digits = wide ? 4 : 2;
    st->nblocks = k->nblocks;
    st->nitems = k->nitems;
    st->first_select = norm_mag(op) ? 1 : 0;
    st->l1 = l1(op);
    for (int i = 0; i < st->ntv; i++) {
        st->scale[i] = 1;
        st->scalef[i] = 1;
        st->l1r[i] = 1;
        st->l1rf[i] = 1;
    }
    uint64_t *blocks = (uint64_t *)(st + 1);
    st->norms = (double *)(blocks + (size_t)st->ntv * (size_t)st->targets * st->nblocks);
    st->l1sums = st->norms + (size_t)st->ntv * k->nitems;
    st->map = map_size(k) ? (uint32_t *)(st->l1sums + (size_t)st->ntv * k->nitems * 2) : NULL;
    for (int i = 0; i < st->ntv; i++) {
        uint64_t keep_top, drop_top;
        keep_counts(op, (size_t)i, k->nelem, &keep_top, &drop_top);
        for (int t = 0; t < st->targets; t++) {
            lad_select_init(&st->sel[i * st->targets + t], k->nelem, t == 0 ? keep_top : drop_top,
                            blocks);
            blocks += st->nblocks;
        }
    }
    st->sample = sampled(op, wide);
    int nsel = st->ntv * st->targets;
    if (st->sample && k->nelem * (uint64_t)nsel * 4 <= GTA_ALL_BYTES) {
        /* every key kept: no sample needed */
        st->sample = false;
        bool any = false;
        for (int s = 0; s < nsel; s++) {
            lad_select *sel = &st->sel[s];
            if (sel->all || sel->none)
                continue;
            sel->window = any = true;
            sel->wlo = 0;
            sel->whi = LAD_SELECT_BINS - 1;
        }
        if (any)
            cand_alloc(st, (size_t)nsel * (size_t)k->nelem);
    }
}

/* Room for `keys` candidate keys in chunks: one chunk per selection and
 * kernel call at most. No room (or too much asked): no windows. */
static void cand_alloc(gta_stats *st, size_t keys)
{
    size_t nsel = (size_t)st->ntv * (size_t)st->targets;
    size_t words = keys + nsel * (st->nblocks + st->nitems) * LAD_CAND_HEAD;
    st->cand = words * 4 <= GTA_CAND_BUDGET ? malloc(words * 4) : NULL;
    st->cand_cap = st->cand ? words : 0;
    if (!st->cand)
        for (size_t s = 0; s < nsel; s++)
            st->sel[s].window = false;
}

static void cand_free(gta_stats *st)
{
    free(st->cand);
    st->cand = NULL;
    st->cand_cap = 0;
}

static void gta_stats_release(const lad_kctx *k) { cand_free(k->stats); }

/* Stores a block's candidate keys of selection `sel` as one chunk. */
static void cand_put(gta_stats *st, uint32_t sel, uint64_t block, const uint32_t *keys,
                     size_t n)
{
    if (n == 0 || atomic_load_explicit(&st->cand_full, memory_order_relaxed))
        return;
    size_t at = atomic_fetch_add(&st->cand_used, n + LAD_CAND_HEAD);
    if (at + n + LAD_CAND_HEAD > st->cand_cap) {
        atomic_store(&st->cand_full, true);
        return;
    }
    uint32_t *c = st->cand + at;
    c[0] = sel;
    c[1] = (uint32_t)n;
    c[2] = (uint32_t)block;
    c[3] = (uint32_t)(block >> 32);
    memcpy(c + LAD_CAND_HEAD, keys, n * sizeof *keys);
}

#define key_f32 lad_select_key_f32
#define key_f64 lad_select_key_f64

/* DELLA's doubles after the compute type's arrays in the scratch (an odd
 * number of floats would misalign them; the scratch has room). */
static double *aligned(void *p) { return (double *)(((uintptr_t)p + 7) & ~(uintptr_t)7); }

static void sparsify_f32(const lad_kctx *k, const float *const *in, size_t n, float *wd,
                         double *fac, double *row, bool weighted);
static void sparsify_f64(const lad_kctx *k, const double *const *in, size_t n, double *wd,
                         double *fac, double *row, bool weighted);

/* The keys of the block's task vector, for the digit passes. */
#define GTA_KEYS(NAME, T, KT, KEY)                                                              \
    LAD_KERNEL static void NAME(KT *restrict keys, const T *restrict x,                        \
                                const T *restrict b, T sc, size_t n)                            \
    {                                                                                           \
        for (size_t e = 0; e < n; e++)                                                          \
            keys[e] = (KT)KEY((x[e] - b[e]) * sc);                                              \
    }

/* fp32 keys fit in 32 bits: half the bytes, twice the vector width */
GTA_KEYS(keys_f32, float, uint32_t, key_f32)
GTA_KEYS(keys_f64, double, uint64_t, key_f64)

/* Counts one more key with last digit d in a block's map of `used` pairs
 * (digit in the low 16 bits, count above); returns the new `used`. */
static inline uint64_t map_add(uint32_t *map, uint64_t used, uint32_t d)
{
    if (used > GTA_MAP)
        return used;
    for (uint64_t j = 0; j < used; j++)
        if ((map[j] & 0xffff) == d) {
            map[j] += 1u << 16;
            return used;
        }
    if (used == GTA_MAP)
        return GTA_MAP + 1;
    map[used] = d | 1u << 16;
    return used + 1;
}

/* Selection s's histograms of every thread, added into the first. */
/* The selection whose first-digit histogram (the sample's, or pass 0's of
 * every key) is selection s's too: Breadcrumbs' two selections of a task
 * vector share its keys, so the first of them still selecting histograms
 * them for both. s itself when none before it does, and in later passes
 * (each selection's own prefix filters them). */
static int twin_of(const gta_stats *st, int s, int pass)
{
    if (pass > 0)
        return s;
    for (int t = s - s % st->targets; t < s; t++)
        if (!st->sel[t].all && !st->sel[t].none)
            return t;
    return s;
}

static uint64_t *hist_of(void *const *accs, int s)
{
    return (uint64_t *)accs[0] + (size_t)s * LAD_SELECT_BINS;
}

static uint64_t *fold(void *const *accs, size_t naccs, int s)
{
    uint64_t *h0 = (uint64_t *)accs[0] + (size_t)s * LAD_SELECT_BINS;
    for (size_t a = 1; a < naccs; a++) {
        const uint64_t *h = (const uint64_t *)accs[a] + (size_t)s * LAD_SELECT_BINS;
        for (size_t b = 0; b < LAD_SELECT_BINS; b++)
            h0[b] += h[b];
    }
    return h0;
}

/* After the last digit pass: each block's count of keys equal to T, from
 * the maps, as the tie pass would count them; false (the tie pass runs)
 * when a map overflowed or there are none. A selection that keeps every
 * key equal to T (counted in the histogram) needs no counts at all. */
static bool settle_ties(gta_stats *st, void *const *accs)
{
    int nsel = st->ntv * st->targets;
    bool settled = true;
    for (int s = 0; s < nsel && settled; s++) {
        lad_select *sel = &st->sel[s];
        if (sel->all || sel->none || st->won[s])
            continue;
        const uint64_t *h0 = (const uint64_t *)accs[0] + (size_t)s * LAD_SELECT_BINS;
        if (sel->ties == h0[sel->thresh & 0xffff]) {
            sel->ties = UINT64_MAX; /* every key equal to T is kept */
            continue;
        }
        if (!st->map) {
            settled = false;
            break;
        }
        for (uint64_t b = 0; b < st->nblocks && settled; b++)
            settled = sel->before[b] <= GTA_MAP;
        for (uint64_t b = 0; b < st->nblocks && settled; b++) {
            const uint32_t *map = st->map + ((size_t)s * st->nblocks + b) * GTA_MAP;
            uint64_t c = 0;
            for (uint64_t j = 0; j < sel->before[b]; j++)
                if ((map[j] & 0xffff) == (sel->thresh & 0xffff))
                    c = map[j] >> 16;
            sel->before[b] = c;
        }
        if (settled)
            lad_select_ties_done(sel, st->nblocks);
    }
    /* Not settled: the tie pass counts every selection's blocks afresh
     * (and a selection keeping every key equal to T stays so). */
    return settled;
}

/* The statistics passes, once per compute type: digit passes histogram the
 * keys that still match, the last pass counts keys equal to T per block;
 * the sample histograms its items' first digits, and the first digit pass
 * keeps each window's keys as candidates. */
#define GTA_STATS(NAME, T, KT, KEY, SCALE, SPARSIFY, KEYS)                                     \
    static void NAME(const lad_kctx *k, int pass, void *acc, const T *const *in, size_t n)      \
    {                                                                                           \
        gta_stats *st = k->stats;                                                               \
        uint64_t *hist = acc;                                                                   \
        uint64_t block = k->block_base + k->start / LAD_BLOCK;                                  \
        pass = phase_of(st, pass);                                                              \
        if (pass == PASS_NORMS) { /* magnitude normalisation: the norms */                      \
            for (int i = 0; i < st->ntv; i++) {                                                 \
                double s2 = 0;                                                                  \
                for (size_t e = 0; e < n; e++) {                                                \
                    double d = (double)(in[i + 1][e] - in[0][e]);                               \
                    s2 += d * d;                                                                \
                }                                                                               \
                st->norms[k->item * (size_t)st->ntv + (size_t)i] += s2;                         \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        if (st->l1 && pass == (st->targets ? st->digits + 1 : 0)) { /* the L1 sums */          \
            size_t m = (size_t)st->ntv;                                                         \
            T *wd = k->scratch;                                                                 \
            double *fac = aligned(wd + (m + 4) * n), *row = fac + m * n;                        \
            SPARSIFY(k, in, n, wd, fac, row, false);                                            \
            for (size_t i = 0; i < m; i++) {                                                    \
                double all = 0, kept = 0;                                                       \
                for (size_t e = 0; e < n; e++) {                                                \
                    T d = (in[i + 1][e] - in[0][e]) * (T)st->SCALE[i];                          \
                    all += fabs((double)d);                                                     \
                    kept += fabs((double)wd[i * n + e]);                                        \
                }                                                                               \
                st->l1sums[(k->item * m + i) * 2] += all;                                       \
                st->l1sums[(k->item * m + i) * 2 + 1] += kept;                                  \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        for (int i = 0; i < st->ntv; i++) {                                                     \
            bool keyed = false; /* Breadcrumbs' two selections share the keys */               \
            for (int t = 0; t < st->targets; t++) {                                             \
                size_t sel = (size_t)(i * st->targets + t);                                     \
                const lad_select *s = &st->sel[sel];                                            \
                if (s->all || s->none || (pass > 0 && st->won[sel]))                            \
                    continue;                                                                   \
                const T *x = in[i + 1], *b = in[0], sc = (T)st->SCALE[i];                       \
                if (pass < st->digits) {                                                        \
                    uint64_t *h = hist + sel * LAD_SELECT_BINS;                                 \
                    const bool twin = twin_of(st, (int)sel, pass) != (int)sel;                  \
                    /* the keys first (a loop that vectorises), then the histogram */         \
                    KT *keys = k->scratch;                                                      \
                    if (!keyed)                                                                 \
                        KEYS(keys, x, b, sc, n);                                                \
                    keyed = true;                                                               \
                    const int shift = 16 * (st->digits - 1 - (pass < 0 ? 0 : pass));            \
                    if (pass == 0 && s->window && st->cand) { /* and the candidates */          \
                        uint32_t *c = (uint32_t *)(keys + n);                                   \
                        const uint32_t lo = s->wlo, span = s->whi - s->wlo;                     \
                        size_t nc = 0;                                                          \
                        for (size_t e = 0; e < n && !twin; e++) {                               \
                            uint32_t key = (uint32_t)keys[e];                                   \
                            h[key >> 16]++;                                                     \
                            c[nc] = key;                                                        \
                            nc += (key >> 16) - lo <= span;                                     \
                        }                                                                       \
                        for (size_t e = 0; e < n && twin; e++) { /* its twin histograms */     \
                            uint32_t key = (uint32_t)keys[e];                                   \
                            c[nc] = key;                                                        \
                            nc += (key >> 16) - lo <= span;                                     \
                        }                                                                       \
                        cand_put(st, (uint32_t)sel, block, c, nc);                              \
                        continue;                                                               \
                    }                                                                           \
                    if (pass == st->digits - 1 && st->map) {                                    \
                        uint32_t *map = st->map + (sel * st->nblocks + block) * GTA_MAP;        \
                        uint64_t used = s->before[block];                                       \
                        const KT want = (KT)(s->prefix >> 16);                                  \
                        for (size_t e = 0; e < n; e++)                                          \
                            if (keys[e] >> 16 == want) {                                        \
                                h[keys[e] & 0xffff]++;                                          \
                                used = map_add(map, used, (uint32_t)(keys[e] & 0xffff));        \
                            }                                                                   \
                        s->before[block] = used;                                                \
                        continue;                                                               \
                    }                                                                           \
                    if (pass <= 0) { /* the first digit, of the sample or of every key */      \
                        for (size_t e = 0; e < n && !twin; e++)                                 \
                            h[keys[e] >> shift]++;                                              \
                    } else {                                                                    \
                        const KT want = (KT)(s->prefix >> (shift + 16));                        \
                        for (size_t e = 0; e < n; e++)                                          \
                            if (keys[e] >> (shift + 16) == want)                                \
                                h[(keys[e] >> shift) & 0xffff]++;                               \
                    }                                                                           \
                } else {                                                                        \
                    uint64_t c = 0;                                                             \
                    for (size_t e = 0; e < n; e++)                                              \
                        c += KEY((x[e] - b[e]) * sc) == s->thresh;                              \
                    s->before[block] = c;                                                       \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

GTA_STATS(gta_stats_f32, float, uint32_t, key_f32, scalef, sparsify_f32, keys_f32)
GTA_STATS(gta_stats_f64, double, uint64_t, key_f64, scale, sparsify_f64, keys_f64)

static const char *gta_pass_end(const lad_kctx *k, int pass, bool wide, void *const *accs, size_t naccs)
{
    (void)wide;
    gta_stats *st = k->stats;
    pass = phase_of(st, pass);
    if (pass == PASS_NORMS) {
        /* Norms added in item order (the same for any -j), then the scale
         * that brings each task vector to the mean norm. */
        double norm[GTA_MAX_TV], mean = 0;
        for (int i = 0; i < st->ntv; i++) {
            double s2 = 0;
            for (size_t it = 0; it < st->nitems; it++)
                s2 += st->norms[it * (size_t)st->ntv + (size_t)i];
            norm[i] = sqrt(s2);
            mean += norm[i] / st->ntv;
        }
        for (int i = 0; i < st->ntv; i++) {
            st->scale[i] = norm[i] > 0 ? mean / norm[i] : 1;
            st->scalef[i] = (float)st->scale[i];
        }
        return NULL;
    }
    if (st->l1 && pass == (st->targets ? st->digits + 1 : 0)) {
        /* mergekit's rescale: |d|_1 / |kept d|_1, unless either is below 1e-7 */
        for (int i = 0; i < st->ntv; i++) {
            double all = 0, kept = 0;
            for (size_t it = 0; it < st->nitems; it++) {
                all += st->l1sums[(it * (size_t)st->ntv + (size_t)i) * 2];
                kept += st->l1sums[(it * (size_t)st->ntv + (size_t)i) * 2 + 1];
            }
            st->l1r[i] = all < 1e-7 || kept < 1e-7 ? 1 : all / kept;
            st->l1rf[i] = (float)st->l1r[i];
        }
        return NULL;
    }
    int nsel = st->ntv * st->targets;
    if (pass == PASS_SAMPLE) {
        /* each selection's window, from the sample's first digits */
        size_t keys = 0;
        for (int s = 0; s < nsel; s++) {
            int tw = twin_of(st, s, pass);
            const uint64_t *h0 = tw == s ? fold(accs, naccs, s) : hist_of(accs, tw);
            uint64_t sn = 0;
            for (size_t b = 0; b < LAD_SELECT_BINS; b++)
                sn += h0[b];
            keys += lad_select_window(&st->sel[s], h0, sn);
        }
        if (keys)
            cand_alloc(st, keys + keys / 2);
        return NULL;
    }
    for (int s = 0; s < nsel; s++) {
        lad_select *sel = &st->sel[s];
        if (st->won[s])
            continue;
        if (pass == st->digits) {
            lad_select_ties_done(sel, st->nblocks);
            continue;
        }
        int tw = twin_of(st, s, pass);
        lad_select_digit_done(sel, tw == s ? fold(accs, naccs, s) : hist_of(accs, tw), pass,
                              st->digits);
    }
    /* After every digit is read: a settle takes its selection's histogram as
     * scratch (a twin's is unused). */
    bool all_won = true;
    for (int s = 0; s < nsel && pass == 0; s++) {
        lad_select *sel = &st->sel[s];
        if (!st->won[s] && st->cand && !atomic_load(&st->cand_full))
            st->won[s] = lad_select_settle(sel, (uint32_t)s, st->cand,
                                           atomic_load(&st->cand_used), st->nblocks,
                                           hist_of(accs, s));
        all_won &= sel->all || sel->none || st->won[s];
    }
    if (pass == 0) {
        st->all_won = all_won;
        cand_free(st); /* settled, or the passes run as before */
    }
    if (pass == st->digits - 1 && nsel > 0)
        st->ties_settled = settle_ties(st, accs);
    return NULL;
}

static bool gta_pass_skip(const lad_kctx *k, int pass)
{
    const gta_stats *st = k->stats;
    if (st->targets == 0)
        return false;
    pass = phase_of(st, pass);
    if (pass == PASS_SAMPLE)
        return !st->sample;
    if (pass > 0 && pass < st->digits)
        return st->all_won;
    return pass == st->digits && (st->all_won || st->ties_settled);
}

static unsigned gta_pass_stride(const lad_kctx *k, int pass)
{
    const gta_stats *st = k->stats;
    return st->targets > 0 && phase_of(st, pass) == PASS_SAMPLE ? GTA_STRIDE : 1;
}

/* lowbias32 (C. Wellons): a 32-bit mixer for the counter-based RNG. */
static inline uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* The RNG key of task vector i of this tensor under this seed. */
static uint32_t tv_key(const lad_kctx *k, size_t i)
{
    uint64_t seed = (uint64_t)k->op->param[GTA_SEED];
    return mix32(k->key ^ mix32((uint32_t)seed ^ mix32((uint32_t)(seed >> 32) ^ mix32((uint32_t)i + 1))));
}

static inline uint32_t draw(uint32_t tvkey, uint64_t index)
{
    return mix32((uint32_t)index ^ mix32((uint32_t)(index >> 32) ^ tvkey));
}

/* LSD radix sort of n values (key << 32 | index) by the key's 8-bit digits
 * lo..hi (0 the lowest; keys are below 2^31), stable; a digit every value
 * shares is not scattered. The sorted values end in v; tmp: n of scratch.
 * Each pass counts and scatters four quarters of the array in one loop:
 * a bin's counter incremented by one element after another chains each
 * store to the next load, and four quarters are four independent chains
 * (each quarter's elements of a bin go after the previous quarter's). */
static void radix_digits(uint64_t *restrict v, uint64_t *restrict tmp, size_t n, int lo, int hi)
{
    uint64_t all = ~(uint64_t)0, any = 0;
    for (size_t e = 0; e < n; e++) {
        all &= v[e];
        any |= v[e];
    }
    const uint64_t varies = all ^ any;
    const size_t q = n / 4, q3 = 3 * q; /* quarters; the last one runs to n */
    uint64_t *v0 = v;
    for (int d = lo; d <= hi; d++) {
        const int shift = 32 + 8 * d;
        if ((varies >> shift & 255) == 0)
            continue; /* every value has this digit: the order stands */
        uint32_t c[4][256];
        memset(c, 0, sizeof c);
        for (size_t e = 0; e < q; e++) {
            c[0][v[e] >> shift & 255]++;
            c[1][v[q + e] >> shift & 255]++;
            c[2][v[2 * q + e] >> shift & 255]++;
            c[3][v[q3 + e] >> shift & 255]++;
        }
        for (size_t e = q3 + q; e < n; e++)
            c[3][v[e] >> shift & 255]++;
        for (uint32_t b = 0, sum = 0; b < 256; b++)
            for (int part = 0; part < 4; part++) {
                uint32_t here = c[part][b];
                c[part][b] = sum;
                sum += here;
            }
        for (size_t e = 0; e < q; e++) {
            uint64_t a = v[e], b = v[q + e], x = v[2 * q + e], y = v[q3 + e];
            tmp[c[0][a >> shift & 255]++] = a;
            tmp[c[1][b >> shift & 255]++] = b;
            tmp[c[2][x >> shift & 255]++] = x;
            tmp[c[3][y >> shift & 255]++] = y;
        }
        for (size_t e = q3 + q; e < n; e++)
            tmp[c[3][v[e] >> shift & 255]++] = v[e];
        uint64_t *t = v;
        v = tmp;
        tmp = t;
    }
    if (v != v0) /* an odd number of scatters: back into the caller's array */
        memcpy(v0, v, n * sizeof *v);
}

/* Insertion sort of v[0..n), for short runs. */
static void insertion_sort(uint64_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint64_t x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Sorts n values (key << 32 | index) ascending: by key, ties in index
 * order (the index makes every value distinct). The keys of a bf16 model's
 * task vector are |d|'s fp32 bit patterns, and most have their low 16 bits
 * zero (d needs no more than bf16's 8 significant bits): so the values are
 * sorted by the key's high half, which leaves them in order but within
 * runs of equal high halves whose low halves differ, and only those runs
 * are sorted further: a short one by insertion; a long one split, stably,
 * into its keys with a zero low half (already in order, and first) and
 * the others, sorted by insertion or by the low half's digits. tmp: n of
 * scratch. */
static void radix_sort(uint64_t *restrict v, uint64_t *restrict tmp, size_t n)
{
    radix_digits(v, tmp, n, 2, 3);
    for (size_t e = 1; e < n; e++) {
        if (v[e] > v[e - 1])
            continue;
        /* out of order: the run of v[e]'s high half around it */
        const uint64_t high = v[e] >> 48;
        size_t s = e - 1, end = e + 1;
        while (s > 0 && v[s - 1] >> 48 == high)
            s--;
        while (end < n && v[end] >> 48 == high)
            end++;
        e = end;
        if (end - s <= 32) {
            insertion_sort(v + s, end - s);
            continue;
        }
        size_t zero = s, rest = 0;
        for (size_t i = s; i < end; i++) {
            if ((v[i] >> 32 & 0xffff) == 0)
                v[zero++] = v[i]; /* (zero <= i: in place) */
            else
                tmp[rest++] = v[i];
        }
        if (rest <= 64)
            insertion_sort(tmp, rest);
        else /* the run's tail is free: the digit passes' scratch */
            radix_digits(tmp, v + zero, rest, 0, 1);
        memcpy(v + zero, tmp, rest * sizeof *v);
    }
}

/* Ascending |d|, then index, for fp64 rows (keys wider than 32 bits). */
static int by_magnitude(const void *a, const void *b, void *ctx)
{
    const double *mag = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (mag[i] != mag[j])
        return mag[i] < mag[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* A key's bin for della_count_ranks: 0 for a zero key, else its high half
 * from the lowest nonzero key's (lo) on, from 1 (without a branch). */
static inline uint32_t della_bin(uint32_t key, uint32_t lo)
{
    return ((key >> 16) - lo + 1) & (0u - (uint32_t)(key != 0));
}

/* The ranks of n fp32 keys (ascending key, ties to the lower index) by
 * counting, when the keys' high halves span few enough bins: rank[e] for
 * each e; false (nothing usable written) when they span more than n bins
 * or more than n / 4 keys have a nonzero low half. A bin is a high half
 * (a zero key has one of its own, first); in index order each key with a
 * zero low half takes its bin's next rank, which puts them first in the
 * bin and in index order; the others, sorted by (key, index), then take
 * the ranks left in their bins. The same ranks as sorting every key.
 * work: 2n + 4 uint32 (the bins, then as uint64 the keys with a nonzero
 * low half and their sort's scratch). */
LAD_KERNEL static bool della_count_ranks(const uint32_t *restrict key, size_t n,
                                         uint32_t *restrict rank, uint32_t *restrict work)
{
    uint32_t lo = UINT32_MAX, hi = 0, loose = 0;
    for (size_t e = 0; e < n; e++) { /* (without branches: the loop vectorises) */
        uint32_t h = key[e] >> 16, hz = h | (0u - (uint32_t)(key[e] == 0)); /* 0: above all */
        lo = hz < lo ? hz : lo;
        hi = h > hi ? h : hi;
        loose += (key[e] & 0xffff) != 0;
    }
    if (lo == UINT32_MAX)
        lo = hi; /* every key is zero */
    const size_t bins = (size_t)(hi - lo) + 2; /* bin 0: the zero keys */
    if (bins > n + 1 || loose > n / 4)
        return false;
    uint32_t *next = work;
    memset(next, 0, bins * sizeof *next);
    for (size_t e = 0; e < n; e++)
        next[della_bin(key[e], lo)]++;
    for (size_t b = 0, sum = 0; b < bins; b++) {
        uint32_t here = next[b];
        next[b] = (uint32_t)sum;
        sum += here;
    }
    uint64_t *rest = (uint64_t *)(void *)(work + ((bins + 1) & ~(size_t)1)), *tmp = rest + loose;
    size_t nrest = 0;
    for (size_t e = 0; e < n; e++) {
        uint32_t x = key[e];
        if (x & 0xffff)
            rest[nrest++] = (uint64_t)x << 32 | e;
        else
            rank[e] = next[della_bin(x, lo)]++;
    }
    radix_sort(rest, tmp, nrest);
    for (size_t j = 0; j < nrest; j++)
        rank[(uint32_t)rest[j]] = next[della_bin((uint32_t)(rest[j] >> 32), lo)]++;
    return true;
}

/* DELLA's factor of each element of a row from its rank r (ascending |d|):
 * p = (density - eps) + 2 eps r / (n - 1); kept when its draw is below
 * p 2^32, then 1/p (or 1), else 0. out: n doubles. */
LAD_KERNEL static void della_ranked(const uint32_t *restrict rank, size_t n, uint32_t tvkey,
                                    uint64_t start, double density, double eps, bool rescale,
                                    double *restrict out)
{
    const double lo = density - eps, q = 2 * eps, last = (double)(n - 1);
    if (n == 1) {
        double p = lo;
        out[0] = (double)draw(tvkey, start) < p * 4294967296.0 ? (rescale ? 1 / p : 1) : 0;
        return;
    }
    if ((start >> 32) != ((start + n - 1) >> 32)) { /* the row crosses 2^32: rare */
        for (size_t e = 0; e < n; e++) {
            double p = lo + q * (double)rank[e] / last;
            bool keep = (double)draw(tvkey, start + e) < p * 4294967296.0;
            out[e] = keep ? (rescale ? 1 / p : 1) : 0;
        }
        return;
    }
    /* draw() with the index's high half fixed for the row */
    const uint32_t inner = mix32((uint32_t)(start >> 32) ^ tvkey), lo32 = (uint32_t)start;
    for (size_t e = 0; e < n; e++) {
        double p = lo + q * (double)(int32_t)rank[e] / last; /* rows are below 2^31 */
        uint32_t u = mix32((lo32 + (uint32_t)e) ^ inner);
        /* (double)u exactly, through the signed conversion vectors have */
        double ud = (double)(int32_t)(u ^ 0x80000000u) + 2147483648.0;
        double f = rescale ? 1 / p : 1;
        out[e] = ud < p * 4294967296.0 ? f : 0;
    }
}

/* DELLA: per task vector, the factor each element of this row is
 * multiplied by: 0 when dropped, 1/p (or 1) when kept. d: the row's task
 * vector (already scaled), in fp64; narrow: its values are fp32, so the
 * magnitudes' fp32 bit patterns order them. work: 3n uint64 when narrow
 * (the ranks and keys as uint32, then the counting's bins or the sort),
 * else n (the ranks and the comparison sort's order). */
static void della_factors(const lad_kctx *k, size_t i, const double *d, size_t n, bool narrow,
                          double *fac, void *work)
{
    const lad_op *op = k->op;
    double density = op->param[GTA_TV(i, GTA_DENSITY)];
    double eps = op->param[GTA_TV(i, GTA_EPSILON)];
    bool rescale = op->param[GTA_RESCALE] == GTA_RESCALE_P;
    if (density >= 1 || density <= 0) {
        for (size_t e = 0; e < n; e++)
            fac[e] = density >= 1;
        return;
    }
    uint32_t *rank = work;
    if (narrow) {
        uint32_t *key = rank + n;
        for (size_t e = 0; e < n; e++)
            key[e] = (uint32_t)key_f32((float)d[e]);
        if (!della_count_ranks(key, n, rank, key + n)) {
            /* (key << 32 | index) sorted, after the keys */
            uint64_t *sorted = (uint64_t *)(void *)(key + n), *tmp = sorted + n;
            for (size_t e = 0; e < n; e++)
                sorted[e] = (uint64_t)key[e] << 32 | e;
            radix_sort(sorted, tmp, n);
            for (size_t r = 0; r < n; r++)
                rank[(uint32_t)sorted[r]] = (uint32_t)r;
        }
    } else {
        uint32_t *order = rank + n;
        double *mag = fac; /* fac is free until filled below */
        for (size_t e = 0; e < n; e++) {
            order[e] = (uint32_t)e;
            mag[e] = fabs(d[e]);
        }
        qsort_r(order, n, sizeof *order, by_magnitude, mag);
        for (size_t r = 0; r < n; r++)
            rank[order[r]] = (uint32_t)r;
    }
    della_ranked(rank, n, tv_key(k, i), k->start, density, eps, rescale, fac);
}

/*
 * The merge pass, once per compute type, as a sequence of simple loops the
 * compiler vectorises: each task vector's weighted, sparsified values wd_i
 * for the chunk, then the sign election, the sums and the output. The
 * operations and their order are those of the scalar definition at the top.
 *
 * Scratch layout (n elements, m task vectors): wd (m x n), sum, mixed, div,
 * elected (n each); DELLA also: a row (n doubles), factors (m x n doubles)
 * and della_factors' work (3n words for fp32 rows; n for fp64, which is
 * what LAD_SCRATCH_BYTES leaves a LAD_MAX_ROW row of F64).
 */
/* The magnitude selection's vector pass: wd for keys clearly above (or,
 * with outliers, between) the thresholds; returns how many keys equal a
 * threshold, which the caller settles in index order. A function with
 * clones of its own (so never inlined): inlined into the kernel, GCC 12
 * left this loop scalar. */
#define GTA_MAGNITUDE(NAME, T, ST, KEY)                                                         \
    LAD_KERNEL static int NAME(T *restrict wi, const T *restrict x, const T *restrict b, size_t n,  \
                           T sc, T r, T w, int k0, int z0, int k1, int z1, int q0, int q1,      \
                           int64_t s0t64, int64_t s1t64)                                        \
    {                                                                                           \
        int equal = 0;                                                                          \
        const ST s0t = (ST)s0t64, s1t = (ST)s1t64;                                              \
        for (size_t e = 0; e < n; e++) {                                                        \
            T d = (x[e] - b[e]) * sc, v = d * r * w;                                            \
            ST kk = (ST)KEY(d);                                                                 \
            int keep = k0 | (!z0 & (kk > s0t));                                                 \
            keep &= !z1 & !(k1 & (kk > s1t));                                                   \
            equal += (q0 & (kk == s0t)) | (q1 & (kk == s1t));                                   \
            wi[e] = keep ? v : (T)0;                                                            \
        }                                                                                       \
        return equal;                                                                           \
    }

/* fp32 keys and thresholds (T - 1 >= -1) fit in an int32: compares twice as
 * wide as int64's */
GTA_MAGNITUDE(magnitude_f32, float, int32_t, key_f32)
GTA_MAGNITUDE(magnitude_f64, double, int64_t, key_f64)

/* DARE's random drop, with clones of its own for the same reason: kept
 * when the element's draw is below thr (all: every one), then scaled. The
 * factors are multiplied one by one, in the definition's order. */
#define GTA_RANDOM(NAME, T)                                                                     \
    LAD_KERNEL static void NAME(T *restrict wi, const T *restrict x, const T *restrict b,       \
                                size_t n, T sc, T rs, T r, T w, int all, uint32_t thr,          \
                                uint32_t lo, uint32_t inner)                                    \
    {                                                                                           \
        for (size_t e = 0; e < n; e++) {                                                        \
            T v = (x[e] - b[e]) * sc * rs * r * w;                                              \
            int keep = all | (mix32((lo + (uint32_t)e) ^ inner) < thr);                         \
            wi[e] = keep ? v : (T)0;                                                            \
        }                                                                                       \
    }

GTA_RANDOM(random_f32, float)
GTA_RANDOM(random_f64, double)

/* The combination, from each task vector's wd: sign election (or not),
 * the disjoint sum, the division by the contributing weights: mixed.
 * A function with clones of its own, for the same reason as above. */
#define GTA_COMBINE(NAME, T)                                                                    \
    LAD_KERNEL static void NAME(                                                                \
        const lad_op *op, const T *restrict wd, size_t m, size_t n, int cons, T wsum,           \
        T *restrict sum, T *restrict mixed, T *restrict div)                                    \
    {                                                                                           \
        if (cons == GTA_NO_CONSENSUS || m == 0) {                                               \
            for (size_t e = 0; e < n; e++)                                                      \
                mixed[e] = 0;                                                                   \
            for (size_t i = 0; i < m; i++)                                                      \
                for (size_t e = 0; e < n; e++)                                                  \
                    mixed[e] += wd[i * n + e];                                                  \
            for (size_t e = 0; e < n; e++)                                                      \
                div[e] = wsum;                                                                  \
            if (op->param[GTA_NORMALIZE] != 0)                                                  \
                for (size_t e = 0; e < n; e++)                                                  \
                    mixed[e] /= div[e];                                                         \
            return;                                                                             \
        }                                                                                       \
        /* The passes of the definition, fewer: the first input's terms are    \
         * assigned, not added to zeros (0 + x is x for each of them: a -0 sum  \
         * elects + as 0 does, and a -0 term never agrees), and the elected     \
         * sign is sum >= 0, not an array. */                                                   \
        const bool by_sum = cons == GTA_SUM, normalize = op->param[GTA_NORMALIZE] != 0;         \
        for (size_t i = 0; i < m; i++) {                                                        \
            const T *restrict v = wd + i * n;                                                   \
            if (i == 0 && by_sum)                                                               \
                for (size_t e = 0; e < n; e++)                                                  \
                    sum[e] = v[e];                                                              \
            else if (i == 0)                                                                    \
                for (size_t e = 0; e < n; e++)                                                  \
                    sum[e] = (T)((v[e] > 0) - (v[e] < 0));                                      \
            else if (by_sum)                                                                    \
                for (size_t e = 0; e < n; e++)                                                  \
                    sum[e] += v[e];                                                             \
            else                                                                                \
                for (size_t e = 0; e < n; e++)                                                  \
                    sum[e] += (T)((v[e] > 0) - (v[e] < 0));                                     \
        }                                                                                       \
        for (size_t i = 0; i < m; i++) {                                                        \
            const T w = (T)op->param[GTA_TV(i, GTA_WEIGHT)];                                    \
            const T *restrict v = wd + i * n;                                                   \
            if (i == 0)                                                                         \
                for (size_t e = 0; e < n; e++) {                                                \
                    int agree = ((v[e] > 0) & (sum[e] >= 0)) | ((v[e] < 0) & !(sum[e] >= 0));   \
                    mixed[e] = agree ? v[e] : (T)0;                                             \
                    div[e] = agree ? w : (T)0;                                                  \
                }                                                                               \
            else                                                                                \
                for (size_t e = 0; e < n; e++) {                                                \
                    int agree = ((v[e] > 0) & (sum[e] >= 0)) | ((v[e] < 0) & !(sum[e] >= 0));   \
                    mixed[e] += agree ? v[e] : (T)0;                                            \
                    div[e] += agree ? w : (T)0;                                                 \
                }                                                                               \
        }                                                                                       \
        if (normalize)                                                                          \
            for (size_t e = 0; e < n; e++)                                                      \
                mixed[e] /= div[e] == 0 ? (T)1 : div[e];                                        \
    }

GTA_COMBINE(combine_f32, float)
GTA_COMBINE(combine_f64, double)

/* out = base + lambda mixed, mixed kept where at least K TALL masks hold
 * (K = 0: everywhere); count: n of scratch. */
#define GTA_OUTPUT(NAME, T)                                                                     \
    LAD_KERNEL static void NAME(const lad_op *op, const T *const *in, const T *restrict sc,     \
                                size_t m, size_t n, T lambda, const T *restrict mixed,         \
                                T *restrict count, T *restrict out)                             \
    {                                                                                           \
        const T *restrict b = in[0];                                                            \
        const T need = (T)op->param[GTA_TALL_K], tall = (T)op->param[GTA_TALL_LAMBDA];          \
        if (need == 0) {                                                                        \
            for (size_t e = 0; e < n; e++)                                                      \
                out[e] = b[e] + lambda * mixed[e];                                              \
            return;                                                                             \
        }                                                                                       \
        for (size_t e = 0; e < n; e++)                                                          \
            count[e] = 0;                                                                       \
        for (size_t i = 0; i < m; i++) {                                                        \
            const T w = (T)op->param[GTA_TV(i, GTA_WEIGHT)], s = sc ? sc[i] : (T)1;             \
            const T *restrict x = in[i + 1];                                                    \
            for (size_t e = 0; e < n; e++) {                                                    \
                T tau = (x[e] - b[e]) * s * w, rest = mixed[e] - tau;                           \
                count[e] += (tau < 0 ? -tau : tau) > tall * (rest < 0 ? -rest : rest)           \
                                ? (T)1 : (T)0;                                                  \
            }                                                                                   \
        }                                                                                       \
        for (size_t e = 0; e < n; e++)                                                          \
            out[e] = b[e] + lambda * (count[e] >= need ? mixed[e] : (T)0);                      \
    }

GTA_OUTPUT(output_f32, float)
GTA_OUTPUT(output_f64, double)

/* Each task vector's sparsified values for the chunk, in wd (m x n): with
 * weighted, d_i * r_i * w_i (r_i the L1 factor or 1), else d_i. fac and
 * row: DELLA's scratch (see below). */
#define GTA_SPARSIFY(NAME, T, KEY, SCALE, L1R, NARROW, MAGNITUDE, RANDOM)                       \
    static void NAME(const lad_kctx *k, const T *const *in, size_t n, T *restrict wd,           \
                     double *fac, double *row, bool weighted)                                   \
    {                                                                                           \
        const lad_op *op = k->op;                                                               \
        const gta_stats *st = k->stats;                                                         \
        const size_t m = ntv(op);                                                               \
        const int sp = kind(op);                                                                \
        const T *restrict b = in[0];                                                            \
        uint64_t block = k->block_base + k->start / LAD_BLOCK;                                  \
        if (sp == GTA_DELLA)                                                                    \
            for (size_t i = 0; i < m; i++) {                                                    \
                const T sc = st ? (T)st->SCALE[i] : (T)1, *restrict x = in[i + 1];              \
                for (size_t e = 0; e < n; e++)                                                  \
                    row[e] = (double)((x[e] - b[e]) * sc);                                      \
                della_factors(k, i, row, n, NARROW, fac + i * n, row + n);        \
            }                                                                                   \
        for (size_t i = 0; i < m; i++) {                                                        \
            const T sc = st ? (T)st->SCALE[i] : (T)1;                                           \
            const T w = weighted ? (T)op->param[GTA_TV(i, GTA_WEIGHT)] : (T)1;                  \
            const T r = weighted && st ? (T)st->L1R[i] : (T)1;                                  \
            const T *restrict x = in[i + 1];                                                    \
            T *restrict wi = wd + i * n;                                                        \
            double density = op->param[GTA_TV(i, GTA_DENSITY)];                                 \
            if (sp == GTA_DENSE) {                                                              \
                for (size_t e = 0; e < n; e++)                                                  \
                    wi[e] = (x[e] - b[e]) * sc * w;                                             \
            } else if (sp == GTA_RANDOM) {                                                      \
                const T rs = op->param[GTA_RESCALE] == GTA_RESCALE_P && density > 0 &&          \
                                     density < 1                                                \
                                 ? (T)(1.0 / density) : (T)1;                                   \
                const bool all = density >= 1;                                                  \
                const uint32_t thr = density > 0 && !all ? (uint32_t)(density * 4294967296.0) : 0; \
                const uint32_t inner = mix32((uint32_t)(k->start >> 32) ^ tv_key(k, i));        \
                RANDOM(wi, x, b, n, sc, rs, r, w, all, thr, (uint32_t)k->start, inner);         \
            } else if (sp == GTA_DELLA) {                                                       \
                const double *restrict f = fac + i * n;                                         \
                for (size_t e = 0; e < n; e++) {                                                \
                    T v = (x[e] - b[e]) * sc * (T)f[e] * r * w;                                 \
                    wi[e] = f[e] != 0 ? v : (T)0;                                               \
                }                                                                               \
            } else {                                                                            \
                const lad_select *s0 = &st->sel[i * (size_t)st->targets];                       \
                const lad_select *s1 = sp == GTA_OUTLIERS ? s0 + 1 : NULL;                      \
                const bool all0 = s0->all, none0 = s0->none;                                    \
                const uint64_t t0 = s0->thresh, t1 = s1 ? s1->thresh : 0;                       \
                const bool out1 = s1 && !s1->none, all1 = s1 && s1->all;                        \
                /* keys are below 2^63 (the sign bit is cleared): signed compares; in a  \
                 * block whose keys equal to a threshold all go one way, the threshold      \
                 * moves down one for "kept" (> T - 1 is >= T) and nothing is left over */  \
                const int k0 = all0, z0 = none0, k1 = out1 && !all1, z1 = all1;                  \
                const int m0 = k0 || z0 ? 0 : lad_select_block_ties(s0, block, st->nblocks);    \
                const int m1 = k1 ? lad_select_block_ties(s1, block, st->nblocks) : 0;          \
                const int64_t s0t = (int64_t)t0 - (m0 == 1), s1t = (int64_t)t1 - (k1 && m1 == 1); \
                const int q0 = !all0 && !none0 && m0 < 0, q1 = k1 && m1 < 0;                    \
                int equal = MAGNITUDE(wi, x, b, n, sc, r, w, k0, z0, k1, z1, q0, q1, s0t, s1t);   \
                if (equal == 0)                                                                 \
                    continue;                                                                   \
                /* keys equal to a threshold: kept or dropped in index order */                 \
                uint64_t seen0 = all0 || none0 ? 0 : s0->before[block];                         \
                uint64_t seen1 = out1 && !all1 ? s1->before[block] : 0;                         \
                for (size_t e = 0; e < n; e++) {                                                \
                    T d = (x[e] - b[e]) * sc;                                                   \
                    uint64_t kk = KEY(d);                                                       \
                    bool eq0 = !all0 && !none0 && kk == t0, eq1 = out1 && !all1 && kk == t1;    \
                    if (!eq0 && !eq1)                                                           \
                        continue;                                                               \
                    bool keep = all0 || (!none0 && (kk > t0 || (eq0 && seen0 < s0->ties)));     \
                    seen0 += eq0;                                                               \
                    if (out1) {                                                                 \
                        bool top = !all1 ? (kk > t1 || (eq1 && seen1 < s1->ties)) : true;       \
                        keep = keep && !top;                                                    \
                        seen1 += eq1;                                                           \
                    }                                                                           \
                    wi[e] = keep ? d * r * w : (T)0;                                            \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

GTA_SPARSIFY(sparsify_f32, float, key_f32, scalef, l1rf, true, magnitude_f32, random_f32)
GTA_SPARSIFY(sparsify_f64, double, key_f64, scale, l1r, false, magnitude_f64, random_f64)

#define GTA_KERNEL(NAME, T, SPARSIFY, COMBINE, OUTPUT, SCALE)                                   \
    LAD_KERNEL static void NAME(const lad_kctx *k, T *restrict out, const T *const *in,        \
                                size_t n)                                                       \
    {                                                                                           \
        const lad_op *op = k->op;                                                               \
        const size_t m = ntv(op);                                                               \
        const int cons = (int)op->param[GTA_CONSENSUS];                                         \
        const T lambda = (T)op->param[GTA_LAMBDA];                                              \
        T *restrict wd = k->scratch, *restrict sum = wd + m * n, *restrict mixed = sum + n;     \
        T *restrict div = mixed + n, *restrict elected = div + n;                               \
        double *fac = aligned(elected + n), *row = fac + m * n;                                 \
        T wsum = 0;                                                                             \
        for (size_t i = 0; i < m; i++)                                                          \
            wsum += (T)op->param[GTA_TV(i, GTA_WEIGHT)];                                        \
        if (fabs((double)wsum) < 1e-8)                                                          \
            wsum = 1;                                                                           \
        SPARSIFY(k, in, n, wd, fac, row, true);                                                 \
        COMBINE(op, wd, m, n, cons, wsum, sum, mixed, div);                                     \
        const gta_stats *st = k->stats;                                                         \
        OUTPUT(op, in, st ? st->SCALE : NULL, m, n, lambda, mixed, sum, out);                   \
    }

GTA_KERNEL(gta_f32, float, sparsify_f32, combine_f32, output_f32, scalef)
GTA_KERNEL(gta_f64, double, sparsify_f64, combine_f64, output_f64, scale)

static uint64_t della_row_length(const lad_op *op, int ndim, const uint64_t *shape)
{
    (void)op;
    return ndim == 0 ? 1 : ndim == 1 ? shape[0] : ndim == 2 ? shape[1] : 0;
}

const lad_method lad_method_della = {
    .name = "della",
    .chunk_f32 = gta_f32,
    .chunk_f64 = gta_f64,
    .npasses = gta_npasses,
    .stats_size = gta_stats_size,
    .stats_init = gta_stats_init,
    .acc_size = gta_acc_size,
    .stats_f32 = gta_stats_f32,
    .stats_f64 = gta_stats_f64,
    .pass_end = gta_pass_end,
    .pass_skip = gta_pass_skip,
    .pass_stride = gta_pass_stride,
    .stats_release = gta_stats_release,
    .row_length = della_row_length,
};

const lad_method lad_method_gta = {
    .name = "gta",
    .chunk_f32 = gta_f32,
    .chunk_f64 = gta_f64,
    .npasses = gta_npasses,
    .stats_size = gta_stats_size,
    .stats_init = gta_stats_init,
    .model_scope = gta_model_scope,
    .acc_size = gta_acc_size,
    .stats_f32 = gta_stats_f32,
    .stats_f64 = gta_stats_f64,
    .pass_end = gta_pass_end,
    .pass_skip = gta_pass_skip,
    .pass_stride = gta_pass_stride,
    .stats_release = gta_stats_release,
};
