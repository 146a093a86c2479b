/*
 * The greedy soup's policy (see ladle.h): rank, start from the best, keep
 * each next ingredient whose soup does not score worse. How a candidate
 * soup is made and scored is the caller's: files and an evaluator command
 * (the CLI), or memory and a callback (the Python package).
 */
#include "ladle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool lad_better(double a, double b, bool minimize) { return minimize ? a < b : a > b; }

void lad_greedy_free(lad_greedy *g)
{
    free(g->rank);
    free(g->own);
    free(g->soup_score);
    free(g->accepted);
    free(g->soup);
    g->rank = g->soup = NULL;
    g->own = g->soup_score = NULL;
    g->accepted = NULL;
    g->nsoup = 0;
}

static int checked(const double *s, size_t n, lad_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(s[i]))
            return lad_fail(err, "a score of %g: scores must be finite numbers", s[i]);
    return 0;
}

int lad_greedy_run(lad_greedy *g, lad_soup_scorer score, void *ctx, lad_error *err)
{
    size_t n = g->n;
    if (n < 1)
        return lad_fail(err, "a greedy soup needs at least one ingredient");
    g->rank = calloc(n, sizeof *g->rank);
    g->own = calloc(n, sizeof *g->own);
    g->soup_score = calloc(n, sizeof *g->soup_score);
    g->accepted = calloc(n, sizeof *g->accepted);
    g->soup = calloc(n, sizeof *g->soup);
    size_t *one = calloc(n, sizeof *one), *ones = calloc(n, sizeof *ones);
    const size_t **sets = calloc(n, sizeof *sets);
    int rc = 0;
    if (!g->rank || !g->own || !g->soup_score || !g->accepted || !g->soup || !one || !ones ||
        !sets) {
        rc = lad_fail(err, "out of memory");
        goto out;
    }

    /* 1. Each ingredient's own score: given, or scored alone (all at once). */
    if (g->scores) {
        memcpy(g->own, g->scores, n * sizeof *g->own);
    } else {
        for (size_t i = 0; i < n; i++) {
            one[i] = i;
            ones[i] = 1;
            sets[i] = &one[i];
        }
        rc = score(ctx, sets, ones, n, g->own, err);
    }
    if (rc == 0)
        rc = checked(g->own, n, err);
    if (rc)
        goto out;

    /* 2. Rank: best first, ties in the order given (a stable insertion). */
    for (size_t i = 0; i < n; i++) {
        size_t r = i;
        while (r > 0 && lad_better(g->own[i], g->own[g->rank[r - 1]], g->minimize)) {
            g->rank[r] = g->rank[r - 1];
            r--;
        }
        g->rank[r] = i;
    }

    /* 3. Add each next ingredient if the soup's score does not drop. */
    g->soup[0] = g->rank[0];
    g->nsoup = 1;
    g->accepted[0] = true;
    g->best = g->soup_score[0] = g->own[g->rank[0]];
    for (size_t r = 1; r < n; r++) {
        g->soup[g->nsoup] = g->rank[r];
        const size_t *set = g->soup;
        size_t size = g->nsoup + 1;
        if (g->next && r + 1 < n) { /* if rank r is rejected: the soup with rank r + 1 */
            memcpy(one, g->soup, g->nsoup * sizeof *one);
            one[g->nsoup] = g->rank[r + 1];
            g->next(ctx, one, g->nsoup + 1);
        }
        double s;
        if ((rc = score(ctx, &set, &size, 1, &s, err)) != 0 || (rc = checked(&s, 1, err)) != 0)
            goto out;
        g->soup_score[r] = s;
        g->accepted[r] = g->strict ? lad_better(s, g->best, g->minimize)
                                   : !lad_better(g->best, s, g->minimize);
        if (g->accepted[r]) {
            g->best = s;
            g->nsoup++;
        }
    }
out:
    free(one);
    free(ones);
    free(sets);
    if (rc)
        lad_greedy_free(g);
    return rc;
}
