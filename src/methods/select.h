/*
 * Exact streaming top-K selection: which elements of a tensor are among
 * its K largest keys, without holding the tensor.
 *
 * Keys are unsigned integers whose order is the order wanted (the bit
 * pattern of |x| for a float x is monotonic in |x|). A radix select finds
 * the K-th largest key T one 16-bit digit per pass (2 passes for fp32
 * keys, 4 for fp64), from per-thread 65,536-bin histograms. A last pass
 * counts, per LAD_BLOCK block, the keys equal to T (a caller may count them
 * during the last digit pass instead: gta.c); with those counts a kernel
 * keeps every key above T and the first `ties` keys equal to T in index
 * order. So exactly K elements are kept, ties broken by lowest index, the
 * same for any thread count and chunking. In every block but the one where
 * the `ties` run out, the keys equal to T are all kept or all dropped
 * (lad_select_block_ties), so a kernel settles them one by one there only.
 *
 * For 2-digit keys the second digit pass and the tie pass can be skipped:
 * a sample of the keys (lad_select_window) names a window of first-digit
 * bins expected to hold T; the first digit pass keeps every key in the
 * window with its block (candidate chunks, below); when T's first digit
 * falls inside the window, the candidates give T's second digit and the
 * per-block counts of keys equal to T exactly (lad_select_settle). When it
 * does not, the passes run as before. Either way the same T and counts.
 */
#ifndef LADLE_SELECT_H
#define LADLE_SELECT_H

#include "ladle.h"

#include <math.h>
#include <string.h>

#define LAD_SELECT_BINS 65536u

typedef struct lad_select {
    uint64_t keep;      /* K */
    uint64_t total;     /* keys in the scope */
    bool all, none;     /* K >= n, K == 0: nothing to find */
    uint64_t prefix;    /* the digits of T found so far, in place */
    uint64_t need;      /* the rank still sought among keys matching prefix */
    uint64_t thresh;    /* T, once every digit is known */
    uint64_t ties;      /* how many keys equal to T are kept (UINT64_MAX: all) */
    uint64_t *before;   /* per block: keys equal to T in earlier blocks */
    uint64_t equal;     /* keys equal to T in all blocks (after lad_select_ties_done) */
    bool window;        /* first-digit bins [wlo, whi] are collected as candidates */
    uint32_t wlo, whi;
} lad_select;

/* Candidate chunks: runs of 32-bit words, each [selection, count, block
 * (low half), block (high half)] then `count` keys of that block. */
#define LAD_CAND_HEAD 4u

/* The key of |v|: its bit pattern, monotonic in |v|. */
static inline uint64_t lad_select_key_f32(float v)
{
    uint32_t u;
    v = fabsf(v);
    memcpy(&u, &v, 4);
    return u;
}

static inline uint64_t lad_select_key_f64(double v)
{
    uint64_t u;
    v = fabs(v);
    memcpy(&u, &v, 8);
    return u;
}

/* blocks: LAD_BLOCK blocks in the tensor; before: storage for them. */
void lad_select_init(lad_select *s, uint64_t n, uint64_t keep, uint64_t *before);

/* For digit pass `pass` of `digits`: the bin of key, or -1 if key does not
 * match the digits already found. */
static inline int lad_select_bin(const lad_select *s, uint64_t key, int pass, int digits)
{
    int shift = 16 * (digits - 1 - pass);
    if (pass > 0 && (key >> (shift + 16)) != (s->prefix >> (shift + 16)))
        return -1;
    return (int)((key >> shift) & 0xffff);
}

/* Folds the pass's histogram: fixes one more digit of T. */
void lad_select_digit_done(lad_select *s, const uint64_t *hist, int pass, int digits);

/* From a sample of sn keys of the scope's n, hist their first digits (2-digit
 * keys): sets the window of first-digit bins that holds T unless the sample
 * misleads by more than a wide margin; returns how many of the scope's keys
 * it expects in the window. 0 (no window) when K is 0 or n. */
uint64_t lad_select_window(lad_select *s, const uint64_t *hist, uint64_t sn);

/* After lad_select_digit_done on the first digit pass's histogram, with
 * the candidate chunks of every block (in any order; those of other
 * selections are skipped): T and the per-block tie counts (as
 * lad_select_ties_done leaves them) when T's first digit is in the window;
 * false, with nothing changed, when it is not. low: LAD_SELECT_BINS of
 * scratch. */
bool lad_select_settle(lad_select *s, uint32_t which, const uint32_t *cand, size_t words,
                       uint64_t nblocks, uint64_t *low);

/* After the tie-count pass filled before[b] with counts: prefix sums. */
void lad_select_ties_done(lad_select *s, uint64_t nblocks);

/* How block b treats its keys equal to T: 1 all kept, 0 all dropped, -1
 * some of each (settle them in index order with lad_select_keep). */
static inline int lad_select_block_ties(const lad_select *s, uint64_t b, uint64_t nblocks)
{
    if (s->ties == UINT64_MAX)
        return 1;
    uint64_t first = s->before[b], end = b + 1 < nblocks ? s->before[b + 1] : s->equal;
    return first + (end - first) <= s->ties ? 1 : first >= s->ties ? 0 : -1;
}

/* Is the element with this key kept? *seen counts keys equal to T met so
 * far, starting from before[block] at the block's first element. */
static inline bool lad_select_keep(const lad_select *s, uint64_t key, uint64_t *seen)
{
    if (s->all || s->none)
        return s->all;
    if (key != s->thresh)
        return key > s->thresh;
    return (*seen)++ < s->ties;
}

#endif
