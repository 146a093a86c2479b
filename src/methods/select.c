/* Exact streaming top-K selection: see select.h. */
#include "select.h"

void lad_select_init(lad_select *s, uint64_t n, uint64_t keep, uint64_t *before)
{
    *s = (lad_select){.keep = keep, .all = keep >= n, .none = keep == 0, .need = keep,
                      .before = before};
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
