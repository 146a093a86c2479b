/*
 * ladle soup --greedy --eval CMD M1 M2 ... -o OUT: greedy soup (Wortsman et
 * al. 2022, recipe 1), the library's policy (lad_greedy_run) with candidates
 * written to disk and scored by the evaluator command (search.c).
 *
 * Every candidate is `soup --sum-first` of its ingredients in rank order:
 * their fp32 sum, divided once by their count and rounded once to the
 * output dtype. Once the soup is large enough (partial_from), the sum of a
 * prefix of it is kept in the work folder (F32, never rounded to the output
 * dtype), so each candidate reads that sum, the few of the soup's
 * ingredients not yet in it, and the new one: O(N) model reads for N
 * ingredients, not O(N^2); the sum is extended only when a candidate that
 * needs it is merged (a resumed
 * search takes its scores from the log and merges nothing). The stored sum
 * continues the plain sum bit for bit, so a candidate, the same soup
 * merged from the ingredients themselves, and OUT are bit-identical.
 *
 * While a candidate is evaluated, two merges may run beside it: the sum
 * with its ingredient (the next sum, if it is kept: sum_ahead) and the next
 * step's candidate as it is if it is rejected (the policy tells it:
 * tell_next, spec_plan); each is taken by the step that wants it, else
 * stopped and removed.
 */
#include "cli.h"
#include "plot.h"
#include "search.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GREEDY_MAX 64

enum { OPT_GREEDY = 1200, OPT_SCORES, OPT_STRICT, OPT_JSON, OPT_DTYPE, OPT_SHARD_SIZE,
       OPT_FORCE, OPT_SET, OPT_PLOT, OPT_PASS };

/* Options that shape the soup, passed on to every candidate's merge. */
static const char *const PASSED[] = {"tokenizer-source", "chat-template", "pad-to-multiple-of",
                                     "take-unmergeable"};
#define NPASSED (sizeof PASSED / sizeof *PASSED)

typedef struct greedy_args {
    search_opts search;
    const char *out, *dtype, *threads, *shard_size, *plot;
    bool force, quiet, strict, json;
    double scores[GREEDY_MAX]; /* --scores */
    int nscores;               /* -1: not given */
    const char *const *models;
    size_t nmodels;
    const char *passed[NPASSED]; /* PASSED's values, or NULL */
    search s;                  /* the evaluator, while scoring */
    /* The running sum: candidates read it (not GGUF, no vocabulary options). */
    bool running;
    char *sum;                   /* the F32 sum of sum_set[0..sum_k-1] in the work folder */
    size_t sum_set[GREEDY_MAX], sum_k;
    /* The sum with the newest candidate's ingredient, made while that
     * candidate is merged and evaluated: the next sum if it is kept. */
    bool ahead;
    lad_child ahead_child;
    char *ahead_path;
    size_t ahead_set[GREEDY_MAX], ahead_k;
    double sum_seconds, eval_seconds; /* the last sum made in the foreground (-1: none
                                       * yet), the last evaluation */
    /* The candidate the next step scores if the newest is rejected (most
     * are), told by the policy (next_k > 0) and merged while the newest is
     * evaluated (spec): the next step takes it when its set is the same,
     * else it is stopped and removed. */
    size_t next_set[GREEDY_MAX], next_k;
    bool spec;
    lad_child spec_child;
    char *spec_path;
    size_t spec_set[GREEDY_MAX], spec_k;
    size_t partial_from;         /* candidates of more ingredients read the sum */
    size_t loose_max;            /* ... and at most loose_max - 1 of the soup's beside it */
} greedy_args;

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    greedy_args *g = ctx;
    int t = search_opts_take(&g->search, id, arg, err);
    if (t <= 0)
        return t;
    switch (id) {
    case 'o':
        g->out = arg;
        return 0;
    case OPT_DTYPE:
        g->dtype = arg;
        return 0;
    case 'j':
        g->threads = arg;
        return 0;
    case OPT_SHARD_SIZE:
        g->shard_size = arg;
        return 0;
    case OPT_FORCE:
        g->force = true;
        return 0;
    case 'q':
        g->quiet = true;
        return 0;
    case OPT_SET:
        return lad_usage(err, "--set: a soup has no per-tensor parameters");
    case OPT_SCORES:
        if ((g->nscores = lad_parse_list(arg, g->scores, GREEDY_MAX)) < 1)
            return lad_usage(err, "--scores takes comma-separated numbers, not '%s'", arg);
        return 0;
    case OPT_STRICT:
        g->strict = true;
        return 0;
    case OPT_JSON:
        g->json = true;
        return 0;
    case OPT_PLOT:
        g->plot = arg;
        return 0;
    }
    if (id >= OPT_PASS && id < OPT_PASS + (int)NPASSED) {
        g->passed[id - OPT_PASS] = arg;
        return 0;
    }
    return 0; /* --greedy */
}

/* How soup_argv's merge runs: with -j, --shard-size (neither changes a
 * bit), or as the running sum itself (F32, not divided). */
enum { SOUP_RUN = 1, SOUP_STORE = 2, SOUP_SUM = 4 };

/* The soup of the given ingredients, as ladle arguments; with partial, the
 * stored sum of the first pk of them stands in for those. */
static char **soup_argv(const greedy_args *g, const size_t *idx, size_t n, int how,
                        const char *partial, size_t pk)
{
    char **argv = calloc(n + 16 + 2 * NPASSED, sizeof *argv);
    if (!argv)
        return NULL;
    size_t k = 0;
    bool ok = (argv[k++] = lad_strdup("soup")) != NULL;
    ok &= (argv[k++] = lad_strdup("--sum-first")) != NULL;
    for (size_t i = 0; i < n; i++)
        ok &= (argv[k++] = lad_strdup(g->models[idx[i]])) != NULL;
    for (size_t i = 0; i < NPASSED; i++)
        if (g->passed[i]) {
            ok &= (argv[k++] = lad_asprintf("--%s", PASSED[i])) != NULL;
            ok &= (argv[k++] = lad_strdup(g->passed[i])) != NULL;
        }
    if (how & SOUP_SUM) {
        ok &= (argv[k++] = lad_strdup("--sum-only")) != NULL;
    } else if (g->dtype) {
        ok &= (argv[k++] = lad_strdup("--dtype")) != NULL;
        ok &= (argv[k++] = lad_strdup(g->dtype)) != NULL;
    }
    if (partial) {
        ok &= (argv[k++] = lad_strdup("--partial-sum")) != NULL;
        ok &= (argv[k++] = lad_asprintf("%s:%zu", partial, pk)) != NULL;
    }
    if ((how & SOUP_RUN) && g->threads) {
        ok &= (argv[k++] = lad_strdup("-j")) != NULL;
        ok &= (argv[k++] = lad_strdup(g->threads)) != NULL;
    }
    if ((how & SOUP_STORE) && g->shard_size) {
        ok &= (argv[k++] = lad_strdup("--shard-size")) != NULL;
        ok &= (argv[k++] = lad_strdup(g->shard_size)) != NULL;
    }
    if (!ok) {
        argv_free(argv);
        return NULL;
    }
    return argv;
}

/* From how many ingredients on reading the running sum pays: the F32 sum
 * is `ratio` ingredients' worth of bytes (2 for bf16), a candidate from it
 * reads ratio + 1 and each kept ingredient costs ratio + 1 reads and ratio
 * written to extend it, while a candidate from its k ingredients reads k:
 * the sum is used once the soup has 2 ratio + 1 (bf16: 5; f32: 3). And
 * writing costs more than reading (a new file's pages are allocated): the
 * sum is extended only once ratio + 1 of the soup's ingredients are not in
 * it yet, which candidates read beside it meanwhile (*loose). */
static size_t partial_from(const char *model, size_t *loose)
{
    *loose = 2;
    lad_model *m = NULL;
    lad_error err = {0};
    if (lad_model_open(model, &m, &err) != 0)
        return 3; /* the merge will say what is wrong */
    uint64_t bytes = 0, f32 = 0;
    for (size_t i = 0; i < m->ntensors; i++)
        if (!m->tensors[i].hidden && lad_tensor_mergeable(&m->tensors[i])) {
            bytes += m->tensors[i].nbytes;
            f32 += m->tensors[i].nelem * 4;
        }
    lad_model_close(m);
    double ratio = bytes ? (double)f32 / (double)bytes : 1;
    size_t from = (size_t)ceil(2 * ratio + 1);
    *loose = (size_t)ceil(ratio) + 1;
    return from < 2 ? 2 : from;
}

/* Does the running sum hold a prefix of idx[0..n-1] of at least 2? */
static size_t sum_covers(const greedy_args *g, const size_t *idx, size_t n)
{
    return g->sum && g->sum_k >= 2 && g->sum_k <= n &&
                   !memcmp(g->sum_set, idx, g->sum_k * sizeof *idx)
               ? g->sum_k
               : 0;
}

static void adopt(greedy_args *g, char *path, const size_t *idx, size_t n)
{
    if (g->sum)
        lad_remove_tree(g->sum);
    free(g->sum);
    g->sum = path;
    g->sum_k = n;
    memcpy(g->sum_set, idx, n * sizeof *idx);
}

/* The sum made ahead: taken when it is the one wanted (idx[0..n-1]), else
 * stopped and removed. */
static int settle_ahead(greedy_args *g, const size_t *idx, size_t n, lad_error *err)
{
    if (!g->ahead)
        return 0;
    g->ahead = false;
    char *path = g->ahead_path;
    g->ahead_path = NULL;
    if (idx && g->ahead_k == n && !memcmp(g->ahead_set, idx, n * sizeof *idx)) {
        if (search_make_wait(&g->s, &g->ahead_child, path, err) != 0) {
            free(path);
            return -1;
        }
        adopt(g, path, idx, n);
        return 0;
    }
    search_make_cancel(&g->s, &g->ahead_child, path);
    free(path);
    return 0;
}

/* Starts the sum of idx[0..n-1] in the background, from the running sum
 * of idx[0..n-2] (or from the two ingredients). */
static int sum_ahead(greedy_args *g, const size_t *idx, size_t n, lad_error *err)
{
    size_t pk = sum_covers(g, idx, n);
    char *next = search_work_file(&g->s, "sum");
    char **argv = next ? soup_argv(g, idx, n, SOUP_RUN | SOUP_SUM, pk ? g->sum : NULL, pk)
                       : NULL;
    int rc = argv ? search_make_start(&g->s, argv, next, &g->ahead_child, err)
                  : lad_fail(err, "out of memory");
    argv_free(argv);
    if (rc) {
        free(next);
        return -1;
    }
    g->ahead = true;
    g->ahead_path = next;
    g->ahead_k = n;
    memcpy(g->ahead_set, idx, n * sizeof *idx);
    return 0;
}

/* Makes the running sum that of idx[0..n-1] (n >= 2): the one made ahead,
 * or from the one held when it holds a prefix, else from the ingredients. */
static int running_sum(greedy_args *g, const size_t *idx, size_t n, lad_error *err)
{
    if (settle_ahead(g, idx, n, err) != 0)
        return -1;
    if (g->sum && g->sum_k == n && sum_covers(g, idx, n))
        return 0;
    /* in the foreground: started and waited for at once, and timed */
    double t0 = lad_now();
    int rc = sum_ahead(g, idx, n, err) == 0 ? settle_ahead(g, idx, n, err) : -1;
    g->sum_seconds = lad_now() - t0;
    return rc;
}

/* The speculative candidate, no longer wanted: stopped, removed. */
static void spec_cancel(greedy_args *g)
{
    if (g->spec)
        search_make_cancel(&g->s, &g->spec_child, g->spec_path);
    g->spec = false;
    free(g->spec_path);
    g->spec_path = NULL;
}

static void tell_next(void *ctx, const size_t *set, size_t size)
{
    greedy_args *g = ctx;
    memcpy(g->next_set, set, size * sizeof *set);
    g->next_k = size;
}

/* Is the log's score of the soup of idx[0..n-1] known? recipe: its key. */
static bool logged(const greedy_args *g, const char *recipe)
{
    double score;
    return recipe && g->s.has_log && lad_journal_find(&g->s.log, recipe, g->s.o.eval, &score);
}

/* Asks the search to merge the candidate told by the policy (next_set)
 * once this step's is merged, from the running sum as it stands: nothing
 * replaces that sum while the merge may read it (the step that takes the
 * merge makes no sum in the foreground; any other step stops it first).
 * Not for a soup whose score the log holds. *argv: its arguments, the
 * caller's to free once search_eval has run (NULL: none planned). */
static int spec_plan(greedy_args *g, char ***argv, lad_error *err)
{
    *argv = NULL;
    size_t k = g->next_k;
    g->next_k = 0;
    if (k < 2)
        return 0;
    char **plain = soup_argv(g, g->next_set, k, 0, NULL, 0);
    char *recipe = plain ? recipe_of(plain) : NULL;
    argv_free(plain);
    bool known = logged(g, recipe);
    free(recipe);
    if (known)
        return 0;
    size_t pk = g->running && k - 1 >= g->partial_from ? sum_covers(g, g->next_set, k - 1) : 0;
    g->spec_path = search_work_file(&g->s, "next");
    *argv = g->spec_path ? soup_argv(g, g->next_set, k, SOUP_RUN, pk ? g->sum : NULL, pk) : NULL;
    if (!*argv) {
        spec_cancel(g);
        return lad_fail(err, "out of memory");
    }
    memcpy(g->spec_set, g->next_set, k * sizeof *g->spec_set);
    g->spec_k = k;
    search_after(&g->s, *argv, g->spec_path, &g->spec_child);
    return 0;
}

/* A candidate made by soup_argv; its recipe (the log's key) leaves out what
 * changes no bit. premade: merged ahead (the speculative candidate), so no
 * sum is made for it. */
static int soup_candidate(greedy_args *g, const size_t *idx, size_t n, candidate *c,
                          const char *label, bool premade, lad_error *err)
{
    memset(c, 0, sizeof *c);
    char **plain = soup_argv(g, idx, n, 0, NULL, 0);
    c->recipe = plain ? recipe_of(plain) : NULL;
    argv_free(plain);
    bool known = logged(g, c->recipe);
    /* Read from the running sum of a prefix of the soup, extended to all of
     * it once too many are left beside it (not for a score the log holds:
     * search_eval merges nothing then). */
    bool partial = g->running && n - 1 >= g->partial_from && !known;
    size_t pk = partial ? sum_covers(g, idx, n - 1) : 0;
    if (c->recipe && partial && !premade && (n - 1) - pk >= g->loose_max) {
        if (running_sum(g, idx, n - 1, err) != 0) {
            candidate_free(c);
            return -1;
        }
        pk = n - 1;
    }
    c->merge = soup_argv(g, idx, n, SOUP_RUN, pk ? g->sum : NULL, pk);
    c->label = lad_strdup(label);
    if (!c->recipe || !c->merge || !c->label) {
        candidate_free(c);
        return lad_fail(err, "out of memory");
    }
    /* While it is merged and evaluated, the sum with it: the next step's,
     * if it is kept (made for nothing if not; never past the last). Only
     * when evaluations take longer than a sum: else it would slow this
     * candidate's merge more than it saves. */
    if (settle_ahead(g, NULL, 0, err) != 0) {
        candidate_free(c);
        return -1;
    }
    if (partial && n < g->nmodels && n - pk >= g->loose_max && g->sum_seconds >= 0 &&
        g->eval_seconds > g->sum_seconds && sum_ahead(g, idx, n, err) != 0) {
        candidate_free(c);
        return -1;
    }
    return 0;
}

/* The scorer: an ingredient alone is scored as it is (without --dtype:
 * the file itself) or as a one-model soup in the output dtype (what would
 * be shipped if it stayed alone); a soup by the merge that makes it. */
static int score(void *ctx, const size_t *const *sets, const size_t *sizes, size_t n,
                 double *scores, lad_error *err)
{
    greedy_args *g = ctx;
    candidate *c = calloc(n, sizeof *c);
    int rc = c ? 0 : lad_fail(err, "out of memory");
    /* A step (one soup): the speculative candidate, if it is this one, is
     * its merge (moved out of g: the next one goes there); else stopped. */
    bool premade = n == 1 && g->spec && g->spec_k == sizes[0] &&
                   !memcmp(g->spec_set, sets[0], sizes[0] * sizeof *sets[0]);
    lad_child made = {0};
    char *made_path = NULL, **spec_argv = NULL;
    if (premade) {
        made = g->spec_child;
        made_path = g->spec_path;
        g->spec = false;
        g->spec_path = NULL;
    }
    spec_cancel(g);
    for (size_t k = 0; k < n && rc == 0; k++) {
        const char *last = g->models[sets[k][sizes[k] - 1]];
        if (sizes[k] > 1 || g->dtype) {
            char label[1100];
            if (sizes[k] > 1)
                snprintf(label, sizeof label, "soup of %zu (+ %.1000s)", sizes[k], last);
            else
                snprintf(label, sizeof label, "%.1000s", last);
            rc = soup_candidate(g, sets[k], sizes[k], &c[k], label, premade, err);
            if (rc == 0 && premade) {
                c[k].made = &made;
                c[k].made_path = made_path;
            }
        } else {
            c[k].model = last;
            c[k].label = lad_strdup(last);
            c[k].recipe = lad_asprintf("model %s", last);
            if (!c[k].label || !c[k].recipe)
                rc = lad_fail(err, "out of memory");
        }
    }
    if (rc == 0 && n == 1 && sizes[0] > 1)
        rc = spec_plan(g, &spec_argv, err);
    if (rc == 0)
        rc = search_eval(&g->s, c, n, err);
    /* what search_eval started meanwhile is the next speculative candidate */
    g->spec = g->s.after_started;
    g->s.after_started = false;
    if (!g->spec)
        spec_cancel(g);
    if (premade && !(c && c[0].made_taken)) /* (a failure before its merge was taken) */
        search_make_cancel(&g->s, &made, made_path);
    free(made_path);
    argv_free(spec_argv);
    for (size_t k = 0; rc == 0 && k < n; k++) {
        scores[k] = c[k].score;
        if (!c[k].from_log)
            g->eval_seconds = c[k].seconds;
    }
    for (size_t k = 0; c && k < n; k++)
        candidate_free(&c[k]);
    free(c);
    return rc;
}

static void print_table(const greedy_args *g, const lad_greedy *r)
{
    size_t w = 10;
    for (size_t i = 0; i < g->nmodels; i++)
        if (strlen(g->models[i]) > w)
            w = strlen(g->models[i]);
    printf("greedy soup (%s is better)\n", g->search.minimize ? "lower" : "higher");
    printf("  %-4s  %-*s  %-14s  %-14s  %s\n", "rank", (int)w, "ingredient", "score",
           "soup score", "accepted");
    for (size_t k = 0; k < g->nmodels; k++) {
        size_t i = r->rank[k];
        printf("  %-4zu  %-*s  %-14.10g  %-14.10g  %s\n", k + 1, (int)w, g->models[i], r->own[i],
               r->soup_score[k], r->accepted[k] ? "yes" : "no");
    }
    printf("soup of %zu of %zu:", r->nsoup, g->nmodels);
    for (size_t k = 0; k < r->nsoup; k++)
        printf(" %s", g->models[r->soup[k]]);
    printf("\nheld-out score %.10g -> %s\n", r->best, g->out);
}

/* --plot: in rank order, the soup's score as each ingredient is tried
 * (accepted filled, rejected hollow, the final soup starred) and each
 * ingredient's own score. */
static int plot_greedy(const greedy_args *g, const lad_greedy *r, lad_error *err)
{
    size_t n = r->n;
    double *x = malloc(3 * n * sizeof *x + 1);
    double *soup = x ? x + n : NULL, *own = x ? x + 2 * n : NULL;
    unsigned char *mk = malloc(n + 1);
    const char **names = calloc(n + 1, sizeof *names);
    int rc = x && mk && names ? 0 : lad_fail(err, "out of memory");
    size_t last = 0;
    for (size_t k = 0; rc == 0 && k < n; k++) {
        size_t i = r->rank[k];
        const char *slash = strrchr(g->models[i], '/');
        names[k] = slash && slash[1] ? slash + 1 : g->models[i];
        x[k] = (double)k;
        soup[k] = r->soup_score[k];
        own[k] = r->own[i];
        mk[k] = r->accepted[k] ? PLOT_POINT : PLOT_REJECTED;
        if (r->accepted[k])
            last = k;
    }
    if (rc == 0) {
        mk[last] = PLOT_BEST;
        plot_series s[2] = {{.name = "soup with it tried (hollow: rejected)", .x = x, .y = soup,
                             .n = n, .mark = mk, .labels = names},
                            {.name = "ingredient alone", .x = x, .y = own, .n = n,
                             .labels = names}};
        plot_panel p = {.xlabel = "ingredients, best first", .ylabel = "score", .series = s,
                        .nseries = 2, .xticks = names, .nxticks = n};
        char title[256];
        snprintf(title, sizeof title, "ladle soup --greedy: %zu of %zu ingredients, score %.6g",
                 r->nsoup, n, r->best);
        rc = plot_lines(g->plot, title, &p, 1, err);
    }
    free(x);
    free(mk);
    free(names);
    return rc;
}

static void print_json(const greedy_args *g, const lad_greedy *r)
{
    json_t *rows = json_array(), *soup = json_array();
    for (size_t k = 0; k < g->nmodels; k++) {
        size_t i = r->rank[k];
        json_array_append_new(rows, json_pack("{s:i,s:s,s:f,s:f,s:b}", "rank", (int)k + 1,
                                              "model", g->models[i], "score", r->own[i],
                                              "soup_score", r->soup_score[k], "accepted",
                                              r->accepted[k]));
    }
    for (size_t k = 0; k < r->nsoup; k++)
        json_array_append_new(soup, json_string(g->models[r->soup[k]]));
    json_t *doc = json_pack("{s:o,s:o,s:f,s:b,s:s}", "ingredients", rows, "soup", soup, "score",
                            r->best, "minimize", g->search.minimize, "output", g->out);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
        puts(text);
    free(text);
    json_decref(doc);
}

/* The soup's arguments must be a merge ladle accepts: checked (on the
 * whole soup, with -j and --shard-size) before anything runs. */
static int check_soup(const greedy_args *g)
{
    size_t *all = calloc(g->nmodels, sizeof *all);
    for (size_t i = 0; all && i < g->nmodels; i++)
        all[i] = i;
    char **argv = all ? soup_argv(g, all, g->nmodels, SOUP_RUN | SOUP_STORE, NULL, 0) : NULL;
    free(all);
    if (!argv)
        return report(&(lad_error){.msg = "out of memory"});
    int n = 0;
    while (argv[n])
        n++;
    lad_job *job = NULL;
    lad_error err = {0};
    int rc = lad_job_parse(n, argv, &job, &err) != 0 ? report_cmd("soup", &err) : 0;
    lad_job_free(job);
    argv_free(argv);
    return rc;
}

int cmd_greedy(int argc, char **argv)
{
    static const lad_optdef own[] = {
        {"output", 'o', true},          {"dtype", OPT_DTYPE, true},   {"threads", 'j', true},
        {"shard-size", OPT_SHARD_SIZE, true}, {"force", OPT_FORCE, false},
        {"quiet", 'q', false},          {"set", OPT_SET, true},       {"help", 'h', false},
        {"greedy", OPT_GREEDY, false},  {"scores", OPT_SCORES, true},
        {"strict", OPT_STRICT, false},  {"json", OPT_JSON, false},    {"plot", OPT_PLOT, true}};
    enum { NOWN = sizeof own / sizeof *own };
    lad_optdef defs[NOWN + 16 + NPASSED];
    memcpy(defs, own, sizeof own);
    for (size_t i = 0; i < NPASSED; i++)
        defs[NOWN + i] = (lad_optdef){PASSED[i], OPT_PASS + (int)i, true};
    memcpy(defs + NOWN + NPASSED, SEARCH_OPTIONS, NSEARCH_OPTIONS * sizeof *defs);
    memset(&defs[NOWN + NPASSED + NSEARCH_OPTIONS], 0, sizeof *defs);
    static greedy_args g; /* large; one search per process */
    g = (greedy_args){.nscores = -1, .sum_seconds = -1};
    char *const *pos = NULL;
    int n, rc;
    if (!cli_parse("soup", merge_help("soup"), argc, argv, defs, false, take, &g, &pos, &n, &rc))
        return rc;
    g.models = (const char *const *)pos;
    g.nmodels = (size_t)n;
    rc = EXIT_USAGE;
    lad_error perr = {0};
    if (!g.search.eval)
        usage_error("soup", "--greedy needs an evaluator: --eval 'CMD {model}'");
    else if (!g.out)
        usage_error("soup", "no output given (-o OUT)");
    else if (n > GREEDY_MAX)
        usage_error("soup", "at most %d ingredients", GREEDY_MAX);
    else if (n < 2)
        usage_error("soup", "a greedy soup needs at least 2 ingredients");
    else if (g.nscores >= 0 && g.nscores != n)
        usage_error("soup", "%d scores for %d ingredients", g.nscores, n);
    else if (lad_exists(g.out) && !g.force)
        usage_error("soup", "%s already exists (--force to replace it once the soup is chosen)",
                    g.out);
    else if (g.plot && plot_check(g.plot, &perr) != 0)
        usage_error("soup", "%s", perr.msg);
    else
        rc = check_soup(&g);
    if (rc) {
        free((void *)pos);
        return rc;
    }

    lad_error err = {0};
    lad_greedy r = {.n = g.nmodels, .scores = g.nscores >= 0 ? g.scores : NULL,
                    .strict = g.strict, .minimize = g.search.minimize, .next = tell_next};
    char **final = NULL;
    rc = 1;
    if (search_open(&g.s, "soup", &g.search, g.quiet, search_suffix(g.out, NULL), g.out,
                    &err) != 0) {
        rc = report(&err);
        goto out;
    }
    g.running = strcmp(g.s.suffix, ".gguf") != 0;
    g.partial_from = partial_from(g.models[0], &g.loose_max);
    for (size_t i = 0; i < NPASSED; i++)
        g.running &= g.passed[i] == NULL;
    g.s.total = g.s.planned = (g.nscores >= 0 ? 0 : g.nmodels) + g.nmodels - 1;
    if (lad_greedy_run(&r, score, &g, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    /* OUT: the last accepted candidate, by the same merge (from the running
     * sum when it holds a prefix of the soup). */
    if (r.nsoup >= 2 && settle_ahead(&g, r.soup, r.nsoup, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    size_t pk = sum_covers(&g, r.soup, r.nsoup);
    if (!(final = soup_argv(&g, r.soup, r.nsoup, SOUP_RUN | SOUP_STORE, pk ? g.sum : NULL, pk))) {
        rc = report(&(lad_error){.msg = "out of memory"});
        goto out;
    }
    if (search_write(&g.s, final, g.out, g.force, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    if (g.plot && plot_greedy(&g, &r, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    if (g.json)
        print_json(&g, &r);
    else
        print_table(&g, &r);
    rc = 0;
out:
    spec_cancel(&g);
    settle_ahead(&g, NULL, 0, &err);
    if (g.sum)
        lad_remove_tree(g.sum);
    free(g.sum);
    search_close(&g.s);
    lad_greedy_free(&r);
    argv_free(final);
    free((void *)pos);
    return rc;
}
