/*
 * ladle soup --greedy --eval CMD M1 M2 ... -o OUT: greedy soup (Wortsman et
 * al. 2022, recipe 1). Ingredients are ranked by their own held-out score
 * (--scores, else evaluated), best first, ties in the order given; the soup
 * starts as the best one; each next ingredient is added to a candidate
 * soup (the uniform average of the accepted ones and it), which is kept
 * when its score is at least the best so far (--strict: better).
 *
 * Every candidate is the soup of its ingredients computed from the input
 * files in fp32 and rounded once to the output dtype: the running soup is
 * never stored rounded between steps, and a resumed search recomputes
 * exactly the same candidates. OUT is written by the same merge as the
 * last accepted candidate, so the two are bit-identical.
 */
#include "greedy.h"
#include "search.h"
#include "../core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The soup of the given ingredients, as ladle arguments; `final` adds what
 * changes no bit but how it runs (-j) and is stored (--shard-size). */
static char **soup_argv(const greedy_args *g, const size_t *idx, size_t n, bool final)
{
    char **argv = calloc(n + 10, sizeof *argv);
    if (!argv)
        return NULL;
    size_t k = 0;
    bool ok = (argv[k++] = lad_strdup("soup")) != NULL;
    for (size_t i = 0; i < n; i++)
        ok &= (argv[k++] = lad_strdup(g->models[idx[i]])) != NULL;
    if (g->merge.has_dtype) {
        ok &= (argv[k++] = lad_strdup("--dtype")) != NULL;
        ok &= (argv[k++] = lad_strdup(lad_dtype_name(g->merge.dtype))) != NULL;
    }
    if (final && g->merge.threads) {
        ok &= (argv[k++] = lad_strdup("-j")) != NULL;
        ok &= (argv[k++] = lad_asprintf("%d", g->merge.threads)) != NULL;
    }
    if (final) {
        ok &= (argv[k++] = lad_strdup("--shard-size")) != NULL;
        ok &= (argv[k++] = lad_asprintf("%llu", (unsigned long long)g->merge.shard_size)) != NULL;
    }
    if (!ok) {
        argv_free(argv);
        return NULL;
    }
    return argv;
}

/* A candidate made by soup_argv; its recipe (the log's key) leaves out what
 * changes no bit. */
static int soup_candidate(const greedy_args *g, const size_t *idx, size_t n, candidate *c,
                          const char *label, lad_error *err)
{
    memset(c, 0, sizeof *c);
    char **plain = soup_argv(g, idx, n, false);
    c->recipe = plain ? recipe_of(plain) : NULL;
    argv_free(plain);
    c->merge = soup_argv(g, idx, n, true);
    c->label = lad_strdup(label);
    if (!c->recipe || !c->merge || !c->label) {
        candidate_free(c);
        return lad_fail(err, "out of memory");
    }
    return 0;
}

static void print_table(const greedy_args *g, const size_t *rank, const double *own,
                        const double *soup_score, const bool *accepted, double best, size_t nacc)
{
    size_t w = 10;
    for (size_t i = 0; i < g->nmodels; i++)
        if (strlen(g->models[i]) > w)
            w = strlen(g->models[i]);
    printf("greedy soup (%s is better)\n", g->search.minimize ? "lower" : "higher");
    printf("  %-4s  %-*s  %-14s  %-14s  %s\n", "rank", (int)w, "ingredient", "score",
           "soup score", "accepted");
    for (size_t r = 0; r < g->nmodels; r++) {
        size_t i = rank[r];
        printf("  %-4zu  %-*s  %-14.10g  %-14.10g  %s\n", r + 1, (int)w, g->models[i], own[i],
               soup_score[r], accepted[r] ? "yes" : "no");
    }
    printf("soup of %zu of %zu:", nacc, g->nmodels);
    for (size_t r = 0; r < g->nmodels; r++)
        if (accepted[r])
            printf(" %s", g->models[rank[r]]);
    printf("\nheld-out score %.10g -> %s\n", best, g->merge.output);
}

static void print_json(const greedy_args *g, const size_t *rank, const double *own,
                       const double *soup_score, const bool *accepted, double best)
{
    json_t *rows = json_array(), *soup = json_array();
    for (size_t r = 0; r < g->nmodels; r++) {
        size_t i = rank[r];
        json_array_append_new(rows, json_pack("{s:i,s:s,s:f,s:f,s:b}", "rank", (int)r + 1,
                                              "model", g->models[i], "score", own[i],
                                              "soup_score", soup_score[r], "accepted",
                                              accepted[r]));
        if (accepted[r])
            json_array_append_new(soup, json_string(g->models[i]));
    }
    json_t *doc = json_pack("{s:o,s:o,s:f,s:b,s:s}", "ingredients", rows, "soup", soup, "score",
                            best, "minimize", g->search.minimize, "output", g->merge.output);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
        puts(text);
    free(text);
    json_decref(doc);
}

int greedy_soup(greedy_args *g)
{
    const char *out = g->merge.output;
    if (!out)
        return usage_error("soup", "no output given (-o OUT)");
    if (g->nmodels < 2)
        return usage_error("soup", "a greedy soup needs at least 2 ingredients");
    if (g->nscores >= 0 && (size_t)g->nscores != g->nmodels)
        return usage_error("soup", "%d scores for %zu ingredients", g->nscores, g->nmodels);
    if (lad_exists(out) && !g->merge.force)
        return usage_error("soup", "%s already exists (--force to replace it once the soup is "
                                   "chosen)",
                           out);
    size_t n = g->nmodels;
    lad_error err = {0};
    search s;
    candidate *own = calloc(n, sizeof *own), step;
    size_t *rank = calloc(n, sizeof *rank), *acc = calloc(n, sizeof *acc);
    double *score = calloc(n, sizeof *score), *soup_score = calloc(n, sizeof *soup_score);
    bool *accepted = calloc(n, sizeof *accepted);
    char **final = NULL;
    int rc = 1;
    memset(&step, 0, sizeof step);
    if (search_open(&s, "soup", &g->search, g->merge.quiet,
                    !lad_ends_with(out, ".safetensors"), out, &err) != 0) {
        rc = report(&err);
        search_close(&s);
        goto free_all;
    }
    if (!own || !rank || !acc || !score || !soup_score || !accepted) {
        rc = report(&(lad_error){.msg = "out of memory"});
        goto out;
    }

    s.total = s.planned = (g->nscores >= 0 ? 0 : n) + n - 1;

    /* 1. Each ingredient's own score: given, or measured. With --dtype an
     * ingredient is scored as a one-model soup in that dtype: what would
     * be shipped if it stayed alone. */
    if (g->nscores >= 0) {
        for (size_t i = 0; i < n; i++)
            score[i] = g->scores[i];
    } else {
        for (size_t i = 0; i < n; i++) {
            if (g->merge.has_dtype) {
                if (soup_candidate(g, &i, 1, &own[i], g->models[i], &err) != 0) {
                    rc = report(&err);
                    goto out;
                }
            } else {
                own[i].model = g->models[i];
                own[i].label = lad_strdup(g->models[i]);
                own[i].recipe = lad_asprintf("model %s", g->models[i]);
                if (!own[i].label || !own[i].recipe) {
                    rc = report(&(lad_error){.msg = "out of memory"});
                    goto out;
                }
            }
        }
        if (search_eval(&s, own, n, &err) != 0) {
            rc = report(&err);
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            score[i] = own[i].score;
    }

    /* 2. Rank: best first, ties in the order given (a stable insertion). */
    for (size_t i = 0; i < n; i++) {
        size_t r = i;
        while (r > 0 && search_better(&s, score[i], score[rank[r - 1]])) {
            rank[r] = rank[r - 1];
            r--;
        }
        rank[r] = i;
    }

    /* 3. Add each next ingredient if the soup's score does not drop. */
    size_t nacc = 1;
    acc[0] = rank[0];
    accepted[0] = true;
    double best = soup_score[0] = score[rank[0]];
    for (size_t r = 1; r < n; r++) {
        acc[nacc] = rank[r];
        char label[1100];
        snprintf(label, sizeof label, "soup of %zu (+ %.1000s)", nacc + 1, g->models[rank[r]]);
        if (soup_candidate(g, acc, nacc + 1, &step, label, &err) != 0 ||
            search_eval(&s, &step, 1, &err) != 0) {
            rc = report(&err);
            goto out;
        }
        soup_score[r] = step.score;
        accepted[r] = g->strict ? search_better(&s, step.score, best)
                                : !search_better(&s, best, step.score);
        if (accepted[r]) {
            best = step.score;
            nacc++;
        }
        candidate_free(&step);
    }

    /* 4. OUT: the last accepted candidate, by the same merge. */
    if (!(final = soup_argv(g, acc, nacc, true))) {
        rc = report(&(lad_error){.msg = "out of memory"});
        goto out;
    }
    if (search_write(&s, final, out, g->merge.force, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    if (g->json)
        print_json(g, rank, score, soup_score, accepted, best);
    else
        print_table(g, rank, score, soup_score, accepted, best, nacc);
    rc = 0;
out:
    search_close(&s);
free_all:
    for (size_t i = 0; own && i < n; i++)
        candidate_free(&own[i]);
    candidate_free(&step);
    argv_free(final);
    free(own);
    free(rank);
    free(acc);
    free(score);
    free(soup_score);
    free(accepted);
    return rc;
}
