/* ladle diff A B [--base BASE] [--subspace] [--json] [--plot F.svg]: will averaging these work? */
#include "cli.h"
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char HELP[] =
    "usage: ladle diff A B [--base BASE [--subspace]] [--json] [--plot FILE.svg]\n"
    "\n"
    "Diagnoses two models before a merge: per tensor and overall, the norms of their\n"
    "task vectors (A - BASE, B - BASE; the weights themselves without --base), their\n"
    "cosine similarity, the fraction of elements where they pull in opposite\n"
    "directions (sign conflicts, among elements where both are non-zero) and the\n"
    "ratio of the larger norm to the smaller; then a recommendation.\n"
    "\n"
    "      --base BASE       the model both were fine-tuned from\n"
    "      --subspace        also, per 2-D task vector (not embeddings or heads; each\n"
    "                        decomposed whole with LAPACK's SVD): each one's effective\n"
    "                        rank, the directions holding 90%% of its energy (k), and the\n"
    "                        overlap of the two top-k subspaces (1: one holds the other;\n"
    "                        chance: what unrelated ones give); high overlap is what\n"
    "                        TSV, Iso-C and Iso-CTS separate or flatten\n"
    "      --json            print the same as JSON\n"
    "      --plot FILE.svg   draw the per-tensor profile: cosine, sign conflicts (and\n"
    "                        with --subspace the subspace overlap against chance)\n"
    "  -h, --help            this help\n";

typedef struct diff_args {
    const char *base, *plot;
    bool json, subspace;
} diff_args;

enum { OPT_BASE = 1000, OPT_JSON, OPT_SUBSPACE, OPT_PLOT };

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    (void)err;
    diff_args *a = ctx;
    if (id == OPT_BASE)
        a->base = arg;
    else if (id == OPT_JSON)
        a->json = true;
    else if (id == OPT_SUBSPACE)
        a->subspace = true;
    else if (id == OPT_PLOT)
        a->plot = arg;
    return 0;
}

static double cosine(double aa, double bb, double ab)
{
    return aa > 0 && bb > 0 ? ab / (sqrt(aa) * sqrt(bb)) : 0;
}

static double ratio(double aa, double bb)
{
    double x = sqrt(aa), y = sqrt(bb), lo = x < y ? x : y, hi = x < y ? y : x;
    return lo > 0 ? hi / lo : INFINITY;
}

/* --plot: the per-tensor profile, in the models' tensor order. */
static int plot_diff(const diff_args *a, const char *const *refs, const lad_diff_tensor *d,
                     size_t n, lad_error *err)
{
    double *v = malloc(6 * n * sizeof *v + 1);
    const char **names = calloc(n + 1, sizeof *names);
    if (!v || !names) {
        free(v);
        free(names);
        return lad_fail(err, "out of memory");
    }
    double *x = v, *cs = v + n, *conf = v + 2 * n, *ovl = v + 3 * n, *ch = v + 4 * n;
    for (size_t i = 0; i < n; i++) {
        x[i] = (double)i;
        names[i] = d[i].name;
        cs[i] = cosine(d[i].aa, d[i].bb, d[i].ab);
        conf[i] = d[i].both_nonzero ? 100.0 * (double)d[i].conflicts / (double)d[i].both_nonzero
                                    : NAN;
        ovl[i] = d[i].subspace ? (d[i].overlap_u + d[i].overlap_v) / 2 : NAN;
        ch[i] = d[i].subspace ? (d[i].chance_u + d[i].chance_v) / 2 : NAN;
    }
    plot_series s[4] = {
        {.name = "cosine", .x = x, .y = cs, .n = n, .labels = names},
        {.name = "sign conflicts, %", .x = x, .y = conf, .n = n, .labels = names},
        {.name = "top-k subspace overlap", .x = x, .y = ovl, .n = n, .labels = names},
        {.name = "chance", .x = x, .y = ch, .n = n, .labels = names}};
    plot_panel p[3] = {
        {.xlabel = "tensor", .ylabel = "cosine", .series = &s[0], .nseries = 1, .xticks = names,
         .nxticks = n, .ymin = -1, .ymax = 1},
        {.xlabel = "tensor", .ylabel = "sign conflicts, %", .series = &s[1], .nseries = 1,
         .xticks = names, .nxticks = n, .ymin = 0, .ymax = 100},
        {.xlabel = "tensor", .ylabel = "overlap", .series = &s[2], .nseries = 2, .xticks = names,
         .nxticks = n, .ymin = 0, .ymax = 1}};
    char title[512];
    snprintf(title, sizeof title, "ladle diff %s %s%s%s", refs[0], refs[1],
             a->base ? " --base " : "", a->base ? a->base : "");
    int rc = plot_lines(a->plot, title, p, a->subspace ? 3 : 2, err);
    free(v);
    free(names);
    return rc;
}

/* The plain advice the figures support. */
static const char *recommend(double conflict, double nratio, double cos, char *buf, size_t len)
{
    if (conflict > 0.3)
        snprintf(buf, len, "sign conflicts on %.0f%% of elements: prefer ties or dare (sign "
                           "election) over soup or task arithmetic",
                 100 * conflict);
    else if (nratio > 2)
        snprintf(buf, len, "one task vector is %.1fx larger than the other: it will dominate an "
                           "average; lower its weight or normalise magnitudes",
                 nratio);
    else if (cos > 0.9)
        snprintf(buf, len, "the task vectors point the same way (cosine %.2f): a plain soup or "
                           "lerp is enough",
                 cos);
    else
        snprintf(buf, len, "little interference (%.0f%% sign conflicts, cosine %.2f): task "
                           "arithmetic or a soup should work; sweep the weights",
                 100 * conflict, cos);
    return buf;
}

int cmd_diff(int argc, char **argv)
{
    static const lad_optdef defs[] = {
        {"base", OPT_BASE, true}, {"json", OPT_JSON, false}, {"subspace", OPT_SUBSPACE, false},
        {"plot", OPT_PLOT, true}, {"help", 'h', false}, {0}};
    diff_args a = {0};
    char *const *pos;
    int npos, code;
    if (!cli_parse("diff", HELP, argc, argv, defs, false, take, &a, &pos, &npos, &code))
        return code;
    if (npos != 2) {
        free((void *)pos);
        return usage_error("diff", "expected two models A B");
    }
    if (a.subspace && !a.base) {
        free((void *)pos);
        return usage_error("diff", "--subspace compares task vectors: give --base");
    }
    lad_error perr = {0};
    if (a.plot && plot_check(a.plot, &perr) != 0) {
        free((void *)pos);
        return usage_error("diff", "%s", perr.msg);
    }
    lad_error err = {0};
    lad_model *m[3] = {0};
    const char *refs[3] = {pos[0], pos[1], a.base};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        if (refs[i] && lad_model_open(refs[i], &m[i], &err) != 0)
            rc = report(&err);
    lad_diff_tensor *d = NULL;
    size_t n = 0;
    if (rc == 0 && lad_diff(m[0], m[1], m[2], a.subspace, &d, &n, &err) != 0)
        rc = report(&err);
    if (rc == 0 && a.plot && plot_diff(&a, refs, d, n, &err) != 0)
        rc = report(&err);
    if (rc == 0) {
        double aa = 0, bb = 0, ab = 0;
        uint64_t both = 0, conf = 0;
        json_t *rows = json_array();
        if (!a.json)
            printf("%-60s %12s %12s %8s %9s %7s%s\n", "tensor", "|a|", "|b|", "cosine",
                   "conflict", "ratio",
                   a.subspace ? "  erank_a erank_b   k_a   k_b overlap  chance" : "");
        double ovl = 0, wsum = 0; /* the overlap, weighted by the tensors' k */
        for (size_t i = 0; i < n; i++) {
            aa += d[i].aa;
            bb += d[i].bb;
            ab += d[i].ab;
            both += d[i].both_nonzero;
            conf += d[i].conflicts;
            double c = d[i].both_nonzero ? (double)d[i].conflicts / (double)d[i].both_nonzero : 0;
            double cs = cosine(d[i].aa, d[i].bb, d[i].ab), r = ratio(d[i].aa, d[i].bb);
            double o = (d[i].overlap_u + d[i].overlap_v) / 2;
            double ch = (d[i].chance_u + d[i].chance_v) / 2;
            if (d[i].subspace) {
                double wt = (double)(d[i].k_a < d[i].k_b ? d[i].k_a : d[i].k_b);
                ovl += wt * o;
                wsum += wt;
            }
            if (a.json) {
                json_t *row = json_pack("{s:s, s:f, s:f, s:f, s:f, s:f}", "name", d[i].name,
                                        "norm_a", sqrt(d[i].aa), "norm_b", sqrt(d[i].bb),
                                        "cosine", cs, "sign_conflict", c, "norm_ratio",
                                        isfinite(r) ? r : -1);
                if (d[i].subspace)
                    json_object_set_new(
                        row, "subspace",
                        json_pack("{s:f, s:f, s:I, s:I, s:f, s:f, s:f, s:f}", "erank_a",
                                  d[i].erank_a, "erank_b", d[i].erank_b, "k_a",
                                  (json_int_t)d[i].k_a, "k_b", (json_int_t)d[i].k_b,
                                  "overlap_u", d[i].overlap_u, "overlap_v", d[i].overlap_v,
                                  "chance_u", d[i].chance_u, "chance_v", d[i].chance_v));
                json_array_append_new(rows, row);
            } else if (d[i].subspace) {
                printf("%-60s %12.5g %12.5g %8.4f %8.1f%% %7.2f  %7.1f %7.1f %5llu %5llu %7.3f "
                       "%7.3f\n",
                       d[i].name, sqrt(d[i].aa), sqrt(d[i].bb), cs, 100 * c, r, d[i].erank_a,
                       d[i].erank_b, (unsigned long long)d[i].k_a,
                       (unsigned long long)d[i].k_b, o, ch);
            } else {
                printf("%-60s %12.5g %12.5g %8.4f %8.1f%% %7.2f\n", d[i].name, sqrt(d[i].aa),
                       sqrt(d[i].bb), cs, 100 * c, r);
            }
        }
        double c = both ? (double)conf / (double)both : 0, cs = cosine(aa, bb, ab);
        double r = ratio(aa, bb);
        char advice[512];
        recommend(c, r, cs, advice, sizeof advice);
        if (a.json) {
            json_t *root = json_pack("{s:s, s:s, s:s?, s:o, s:{s:f, s:f, s:f, s:f, s:f}, s:s}",
                                     "a", refs[0], "b", refs[1], "base", refs[2], "tensors", rows,
                                     "overall", "norm_a", sqrt(aa), "norm_b", sqrt(bb), "cosine",
                                     cs, "sign_conflict", c, "norm_ratio", isfinite(r) ? r : -1,
                                     "recommendation", advice);
            if (a.subspace && wsum > 0)
                json_object_set_new(json_object_get(root, "overall"), "subspace_overlap",
                                    json_real(ovl / wsum));
            json_dumpf(root, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
            json_decref(root);
        } else {
            json_decref(rows);
            printf("\noverall: |a| %.5g, |b| %.5g, cosine %.4f, sign conflicts %.1f%%, norm "
                   "ratio %.2f\nrecommendation: %s\n",
                   sqrt(aa), sqrt(bb), cs, 100 * c, r, advice);
            if (a.subspace && wsum > 0)
                printf("subspace overlap (weighted by k): %.3f\n", ovl / wsum);
        }
    }
    free(d);
    for (int i = 0; i < 3; i++)
        lad_model_close(m[i]);
    free((void *)pos);
    return rc;
}
