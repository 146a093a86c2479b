/* Exact streaming top-K selection: see select.h. */
#include "select.h"

void lad_select_init(lad_select *s, uint64_t n, uint64_t keep, uint64_t *before)
{
    *s = (lad_select){.keep = keep, .total = n, .all = keep >= n, .none = keep == 0,
                      .need = keep, .before = before};
}

void lad_select_digit_done(lad_select *s, const uint64_t *hist, int pass, int digits)
{
    if (s->all || s->none)
        return;
    int shift = 16 * (digits - 1 - pass);
    uint64_t above = 0;
    for (int b = (int)LAD_SELECT_BINS - 1; b >= 0; b--) {
        if (above + hist[b] >= s->need) {
            s->need -= above;
            s->prefix |= (uint64_t)b << shift;
            break;
        }
        above += hist[b];
    }
    if (pass == digits - 1) {
        s->thresh = s->prefix;
        s->ties = s->need;
    }
}

void lad_select_ties_done(lad_select *s, uint64_t nblocks)
{
    if (s->all || s->none)
        return;
    uint64_t sum = 0;
    for (uint64_t b = 0; b < nblocks; b++) {
        uint64_t c = s->before[b];
        s->before[b] = sum;
        sum += c;
    }
    s->equal = sum;
}

uint64_t lad_select_window(lad_select *s, const uint64_t *hist, uint64_t sn)
{
    s->window = false;
    if (s->all || s->none || sn == 0)
        return 0;
    /* T's rank from the top in the sample, and a margin: six standard
     * deviations of a sampled quantile, plus 1/256 of the sample against
     * a sample unlike the rest (the window only costs memory). */
    double scope = (double)s->total, q = (double)s->keep * (double)sn / scope;
    double p = q / (double)sn;
    double margin = 6 * sqrt((double)sn * p * (1 - p)) + (double)sn / 256 + 16;
    double top = q - margin < 1 ? 1 : q - margin;
    double bottom = q + margin > (double)sn ? (double)sn : q + margin;
    uint64_t above = 0, in = 0;
    int hi = -1, lo = -1;
    for (int b = (int)LAD_SELECT_BINS - 1; b >= 0; b--) {
        above += hist[b];
        if (hi < 0 && (double)above >= top)
            hi = b;
        if (hi >= 0)
            in += hist[b];
        if ((double)above >= bottom) {
            lo = b;
            break;
        }
    }
    if (hi < 0)
        return 0;
    if (lo < 0)
        lo = 0;
    s->window = true;
    s->wlo = (uint32_t)lo;
    s->whi = (uint32_t)hi;
    return (uint64_t)((double)in * scope / (double)sn) + 1;
}

bool lad_select_settle(lad_select *s, uint32_t which, const uint32_t *cand, size_t words,
                       uint64_t nblocks, uint64_t *low)
{
    if (s->all || s->none || !s->window)
        return false;
    uint32_t first = (uint32_t)(s->prefix >> 16);
    if (first < s->wlo || first > s->whi)
        return false;
    memset(low, 0, LAD_SELECT_BINS * sizeof *low);
    for (size_t w = 0; w + LAD_CAND_HEAD <= words;) {
        uint32_t sel = cand[w], count = cand[w + 1];
        const uint32_t *key = cand + w + LAD_CAND_HEAD;
        w += LAD_CAND_HEAD + count;
        if (sel != which)
            continue;
        /* the keys of T's first digit gathered first (a loop without an
         * unpredictable branch), then counted */
        uint32_t match[256];
        for (uint32_t e0 = 0; e0 < count; e0 += 256) {
            uint32_t end = count - e0 < 256 ? count : e0 + 256, nm = 0;
            for (uint32_t e = e0; e < end; e++) {
                match[nm] = key[e];
                nm += key[e] >> 16 == first;
            }
            for (uint32_t j = 0; j < nm; j++)
                low[match[j] & 0xffff]++;
        }
    }
    lad_select_digit_done(s, low, 1, 2);
    if (s->ties == low[s->thresh & 0xffff]) {
        s->ties = UINT64_MAX; /* every key equal to T is kept */
        return true;
    }
    memset(s->before, 0, nblocks * sizeof *s->before);
    for (size_t w = 0; w + LAD_CAND_HEAD <= words;) {
        uint32_t sel = cand[w], count = cand[w + 1];
        uint64_t block = cand[w + 2] | (uint64_t)cand[w + 3] << 32;
        const uint32_t *key = cand + w + LAD_CAND_HEAD;
        w += LAD_CAND_HEAD + count;
        if (sel != which)
            continue;
        uint64_t c = 0;
        for (uint32_t e = 0; e < count; e++)
            c += key[e] == (uint32_t)s->thresh;
        s->before[block] += c;
    }
    lad_select_ties_done(s, nblocks);
    return true;
}
