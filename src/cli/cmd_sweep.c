/*
 * ladle sweep --grid NAME=START:STOP:STEPS ... --eval CMD [-o OUT] -- MERGE...
 *
 * Scores a merge command at every point of a parameter grid (the cartesian
 * product of the --grid axes): {NAME} in the command's arguments becomes
 * the point's value. Prints the table sorted by parameter with the best
 * marked, and writes the best merge to OUT if given.
 */
#include "plot.h"
#include "search.h"
#include "../core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: ladle sweep --grid NAME=START:STOP:STEPS [--grid ...] --eval CMD [-o OUT]\n"
    "                   [options] -- MERGE-COMMAND...\n"
    "\n"
    "Evaluates a merge at every point of a grid and picks the best: {NAME} in\n"
    "the merge command is replaced by the point's value. For example\n"
    "  ladle sweep --grid alpha=0:1:11 --eval 'python3 eval.py {model}' \\\n"
    "      -o best -- lerp A B --alpha {alpha}\n"
    "  ladle sweep --grid lam=0.1:1.0:10 --eval ... -- task --base B --add {lam}:M\n"
    "  ladle sweep --grid t=0:1:5 --eval ... -- merge slerp.yml --var t={t}\n"
    "      (a mergekit recipe with `t: {t}` in it)\n"
    "\n"
    "  -g, --grid G          an axis: NAME=START:STOP:STEPS (STEPS evenly spaced values\n"
    "                        from START to STOP, as numpy.linspace, to 12 significant\n"
    "                        digits) or NAME=v1,v2,...; axes make a cartesian product\n"
    "  -o, --output OUT      write the best point's merge to OUT\n"
    "      --force           replace OUT if it exists\n"
    "      --json            print the table as JSON\n"
    "      --plot FILE.svg   also draw it: the score against the axis (one axis), a\n"
    "                        heat map (two), or the best score at each value of each\n"
    "                        axis (more); plain SVG, any browser shows it\n"
    "  -q, --quiet           no progress on stderr\n" SEARCH_HELP
    "  -h, --help            this help\n"
    "\n"
    "Candidates are written as OUT is (NAME.safetensors or NAME.gguf: files, else\n"
    "folders); without -o, as the first model input is (GGUF, a folder, else\n"
    "safetensors files). The evaluator also gets {NAME} for each axis.\n";

#define MAX_AXES 8

typedef struct sweep_args {
    search_opts search;
    lad_axis ax[MAX_AXES];
    size_t nax;
    const char *out, *plot;
    bool force, quiet, json;
} sweep_args;

enum { OPT_SWEEP_JSON = 1300, OPT_SWEEP_FORCE, OPT_SWEEP_PLOT };

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    sweep_args *a = ctx;
    int t = search_opts_take(&a->search, id, arg, err);
    if (t <= 0)
        return t;
    switch (id) {
    case 'g':
        if (a->nax == MAX_AXES)
            return lad_usage(err, "at most %d --grid axes", MAX_AXES);
        if (lad_axis_parse(arg, &a->ax[a->nax], err) != 0)
            return -1;
        for (size_t k = 0; k < a->nax; k++)
            if (!strcmp(a->ax[k].name, a->ax[a->nax].name))
                return lad_usage(err, "--grid: '%s' given twice", a->ax[k].name);
        a->nax++;
        return 0;
    case 'o':
        a->out = arg;
        return 0;
    case 'q':
        a->quiet = true;
        return 0;
    case OPT_SWEEP_JSON:
        a->json = true;
        return 0;
    case OPT_SWEEP_FORCE:
        a->force = true;
        return 0;
    case OPT_SWEEP_PLOT:
        a->plot = arg;
        return 0;
    }
    return 0;
}

/* lad_expand over the axes at one grid point; an unknown {identifier} is
 * remembered (it is an error) and the axes used are marked. */
typedef struct point_vars {
    const sweep_args *a;
    const size_t *at;
    bool *used;
    char bad[64];
} point_vars;

static const char *axis_lookup(const char *name, size_t n, bool *quote, void *ctx)
{
    (void)quote;
    point_vars *v = ctx;
    for (size_t k = 0; k < v->a->nax; k++)
        if (strlen(v->a->ax[k].name) == n && !strncmp(v->a->ax[k].name, name, n)) {
            v->used[k] = true;
            return v->a->ax[k].text[v->at[k]];
        }
    if (!v->bad[0])
        snprintf(v->bad, sizeof v->bad, "%.*s", (int)n, name);
    return NULL;
}

static void print_table(const sweep_args *a, const candidate *c, size_t n, size_t best)
{
    for (size_t k = 0; k < a->nax; k++)
        printf("  %-12s", a->ax[k].name);
    printf("  score\n");
    for (size_t i = 0; i < n; i++) {
        const char *l = c[i].label; /* "a=1,b=2": print the values */
        for (size_t k = 0; k < a->nax; k++) {
            const char *eq = strchr(l, '='), *end = strchr(l, ',');
            size_t len = end ? (size_t)(end - eq - 1) : strlen(eq + 1);
            printf("  %-12.*s", (int)len, eq + 1);
            l = end ? end + 1 : l;
        }
        printf("  %-14.10g%s\n", c[i].score, i == best ? "  <- best" : "");
    }
    printf("best: %s, score %.10g%s%s\n", c[best].label, c[best].score, a->out ? " -> " : "",
           a->out ? a->out : "");
}

static void print_json(const sweep_args *a, const candidate *c, size_t n, size_t best,
                       const size_t *coord)
{
    json_t *grid = json_object(), *points = json_array();
    for (size_t k = 0; k < a->nax; k++) {
        json_t *vals = json_array();
        for (size_t i = 0; i < a->ax[k].n; i++)
            json_array_append_new(vals, json_real(a->ax[k].v[i]));
        json_object_set_new(grid, a->ax[k].name, vals);
    }
    json_t *best_params = NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *params = json_object();
        for (size_t k = 0; k < a->nax; k++)
            json_object_set_new(params, a->ax[k].name,
                                json_real(a->ax[k].v[coord[i * a->nax + k]]));
        if (i == best)
            best_params = json_deep_copy(params);
        json_array_append_new(points, json_pack("{s:o,s:f,s:s,s:b}", "params", params, "score",
                                                c[i].score, "recipe", c[i].recipe, "best",
                                                i == best));
    }
    json_t *doc = json_pack("{s:o,s:o,s:{s:o,s:f},s:b,s:s?}", "grid", grid, "points", points,
                            "best", "params", best_params, "score", c[best].score, "minimize",
                            a->search.minimize, "output", a->out);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
        puts(text);
    free(text);
    json_decref(doc);
}

/* The chart of --plot (see the help). */
static int plot_sweep(const sweep_args *a, const candidate *c, size_t n, size_t best,
                      const size_t *coord, lad_error *err)
{
    char title[256];
    snprintf(title, sizeof title, "ladle sweep: best %s, score %.6g", c[best].label,
             c[best].score);
    if (a->nax == 2) {
        const lad_axis *x = &a->ax[0], *y = &a->ax[1];
        double *z = malloc(n * sizeof *z + 1);
        if (!z)
            return lad_fail(err, "out of memory");
        for (size_t p = 0; p < n; p++) /* row = y index, column = x index */
            z[coord[p * 2 + 1] * x->n + coord[p * 2]] = c[p].score;
        size_t b = coord[best * 2 + 1] * x->n + coord[best * 2];
        int rc = plot_heatmap(a->plot, title, x->name, (const char *const *)x->text, x->n,
                              y->name, (const char *const *)y->text, y->n, z, b, err);
        free(z);
        return rc;
    }
    /* per axis: the best score at each of its values (the score, for one axis) */
    plot_panel panels[MAX_AXES];
    plot_series series[MAX_AXES];
    double *buf = malloc(3 * n * sizeof *buf + 1);
    unsigned char *marks = malloc(n + 1);
    if (!buf || !marks) {
        free(buf);
        free(marks);
        return lad_fail(err, "out of memory");
    }
    double *xs = buf, *ys = buf + n;
    size_t used = 0;
    for (size_t k = 0; k < a->nax; k++) {
        const lad_axis *ax = &a->ax[k];
        double *x = xs + used, *y = ys + used;
        unsigned char *mk = marks + used;
        for (size_t i = 0; i < ax->n; i++) {
            x[i] = ax->v[i];
            y[i] = NAN;
            mk[i] = PLOT_POINT;
        }
        for (size_t p = 0; p < n; p++) {
            size_t i = coord[p * a->nax + k];
            if (isnan(y[i]) || lad_better(c[p].score, y[i], a->search.minimize))
                y[i] = c[p].score;
        }
        mk[coord[best * a->nax + k]] = PLOT_BEST;
        series[k] = (plot_series){.name = a->nax == 1 ? "score" : "best score", .x = x, .y = y,
                                  .n = ax->n, .mark = mk,
                                  .labels = (const char *const *)ax->text};
        panels[k] = (plot_panel){.xlabel = ax->name, .ylabel = "score", .series = &series[k],
                                 .nseries = 1};
        used += ax->n;
    }
    int rc = plot_lines(a->plot, title, panels, a->nax, err);
    free(buf);
    free(marks);
    return rc;
}

/* Each candidate's arguments must be a merge ladle can run, without an
 * output of its own: checked on the first point before anything runs. */
static int check_merge(char *const *merge, int n)
{
    lad_job *job = NULL;
    lad_error err = {0};
    int rc = lad_job_parse(n, merge, &job, &err);
    if (rc == 1)
        rc = usage_error("sweep", "--help in the merge command");
    else if (rc != 0)
        rc = usage_error("sweep", "the merge command: %s", err.msg);
    else if (lad_job_output(job))
        rc = usage_error("sweep", "the merge command must not name an output (-o %s): sweep "
                                  "writes candidates to its work folder and the best to its own "
                                  "-o",
                         lad_job_output(job));
    lad_job_free(job);
    return rc;
}

int cmd_sweep(int argc, char **argv)
{
    lad_optdef defs[NSEARCH_OPTIONS + 8];
    static const lad_optdef own[] = {
        {"grid", 'g', true},    {"output", 'o', true},        {"force", OPT_SWEEP_FORCE, false},
        {"json", OPT_SWEEP_JSON, false}, {"quiet", 'q', false}, {"help", 'h', false},
        {"plot", OPT_SWEEP_PLOT, true}};
    enum { NOWN = sizeof own / sizeof *own };
    memcpy(defs, own, sizeof own);
    memcpy(defs + NOWN, SEARCH_OPTIONS, NSEARCH_OPTIONS * sizeof *defs);
    memset(&defs[NOWN + NSEARCH_OPTIONS], 0, sizeof *defs);
    sweep_args a;
    memset(&a, 0, sizeof a);
    char *const *pos = NULL;
    int nt = 0, code;
    /* Options end at the first positional, so the merge command's own
     * options are left alone even without "--". */
    if (!cli_parse("sweep", HELP, argc, argv, defs, true, take, &a, &pos, &nt, &code))
        goto done;
    code = EXIT_USAGE;
    char *const *tmpl = pos;
    if (!a.nax) {
        usage_error("sweep", "no --grid given");
        goto done;
    }
    if (!a.search.eval) {
        usage_error("sweep", "no evaluator given (--eval 'CMD {model}')");
        goto done;
    }
    if (nt < 1) {
        usage_error("sweep", "no merge command given (after --, e.g. -- lerp A B --alpha "
                             "{alpha})");
        goto done;
    }
    if (a.out && lad_exists(a.out) && !a.force) {
        usage_error("sweep", "%s already exists (--force to replace it once the best is known)",
                    a.out);
        goto done;
    }

    if (a.plot) {
        lad_error perr = {0};
        if (plot_check(a.plot, &perr) != 0) {
            usage_error("sweep", "%s", perr.msg);
            goto done;
        }
    }
    size_t npoints = 1;
    for (size_t k = 0; k < a.nax; k++)
        if ((npoints *= a.ax[k].n) > LAD_GRID_MAX_POINTS) {
            usage_error("sweep", "the grid has more than %d points", LAD_GRID_MAX_POINTS);
            goto done;
        }
    candidate *c = calloc(npoints, sizeof *c);
    size_t *coord = calloc(npoints * a.nax, sizeof *coord);
    char **names = calloc(a.nax, sizeof *names);
    lad_error err = {0};
    search s;
    bool opened = false;
    if (!c || !coord || !names) {
        code = report(&(lad_error){.msg = "out of memory"});
        goto free_points;
    }
    for (size_t k = 0; k < a.nax; k++)
        names[k] = a.ax[k].name;
    /* Points in lexicographic order of the axes: the table's order. */
    bool used[MAX_AXES] = {false};
    for (size_t p = 0; p < npoints; p++) {
        size_t *at = &coord[p * a.nax], rest = p;
        for (size_t k = a.nax; k-- > 0;) {
            at[k] = rest % a.ax[k].n;
            rest /= a.ax[k].n;
        }
        c[p].merge = calloc((size_t)nt + 1, sizeof *c[p].merge);
        if (!c[p].merge) {
            code = report(&(lad_error){.msg = "out of memory"});
            goto free_points;
        }
        point_vars pv = {.a = &a, .at = at, .used = used};
        for (int i = 0; i < nt; i++)
            if (!(c[p].merge[i] = lad_expand(tmpl[i], axis_lookup, &pv))) {
                code = report(&(lad_error){.msg = "out of memory"});
                goto free_points;
            }
        if (pv.bad[0]) {
            usage_error("sweep", "{%s} in the merge command is not a --grid axis", pv.bad);
            goto free_points;
        }
        c[p].recipe = recipe_of(c[p].merge);
        char label[1024] = "";
        size_t o = 0;
        for (size_t k = 0; k < a.nax; k++)
            o += (size_t)snprintf(label + o, sizeof label - o, "%s%s=%s", k ? "," : "",
                                  a.ax[k].name, a.ax[k].text[at[k]]);
        c[p].label = lad_strdup(label);
        c[p].var_names = (const char *const *)names;
        c[p].var_values = calloc(a.nax, sizeof(char *));
        if (!c[p].recipe || !c[p].label || !c[p].var_values) {
            code = report(&(lad_error){.msg = "out of memory"});
            goto free_points;
        }
        for (size_t k = 0; k < a.nax; k++)
            ((const char **)c[p].var_values)[k] = a.ax[k].text[at[k]];
        c[p].nvars = a.nax;
    }
    for (size_t k = 0; k < a.nax; k++)
        if (!used[k]) {
            usage_error("sweep", "--grid %s: {%s} is not in the merge command", a.ax[k].name,
                        a.ax[k].name);
            goto free_points;
        }
    if ((code = check_merge(c[0].merge, nt)) != 0)
        goto free_points;
    code = EXIT_USAGE;

    if (search_open(&s, "sweep", &a.search, a.quiet, search_suffix(a.out, c[0].merge), a.out,
                    &err) != 0) {
        code = report(&err);
        search_close(&s);
        goto free_points;
    }
    opened = true;
    if (search_eval(&s, c, npoints, &err) != 0) {
        code = report(&err);
        goto free_points;
    }
    size_t best = 0;
    for (size_t p = 1; p < npoints; p++)
        if (lad_better(c[p].score, c[best].score, a.search.minimize))
            best = p;
    if (a.out && search_write(&s, c[best].merge, a.out, a.force, &err) != 0) {
        code = report(&err);
        goto free_points;
    }
    if (a.plot && plot_sweep(&a, c, npoints, best, coord, &err) != 0) {
        code = report(&err);
        goto free_points;
    }
    if (a.json)
        print_json(&a, c, npoints, best, coord);
    else
        print_table(&a, c, npoints, best);
    code = 0;
free_points:
    if (opened)
        search_close(&s);
    for (size_t p = 0; c && p < npoints; p++) {
        free((void *)c[p].var_values);
        candidate_free(&c[p]);
    }
    free(c);
    free(coord);
    free(names);
done:
    for (size_t k = 0; k < a.nax; k++)
        lad_axis_free(&a.ax[k]);
    free((void *)pos);
    return code;
}
