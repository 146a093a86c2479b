/*
 * ladle sweep --grid NAME=START:STOP:STEPS ... --eval CMD [-o OUT] -- MERGE...
 *
 * Scores a merge command at every point of a parameter grid (the cartesian
 * product of the --grid axes): {NAME} in the command's arguments becomes
 * the point's value. Prints the table sorted by parameter with the best
 * marked, and writes the best merge to OUT if given.
 */
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
    "  -q, --quiet           no progress on stderr\n" SEARCH_HELP
    "  -h, --help            this help\n"
    "\n"
    "Candidates are written as OUT is (NAME.safetensors: files, else folders);\n"
    "without -o, as folders when the merge reads a folder. The evaluator also\n"
    "gets {NAME} for each axis.\n";

#define MAX_AXES 8
#define MAX_POINTS 100000

typedef struct axis {
    char name[64];
    double *v;
    char **text; /* the values as substituted (12 significant digits) */
    size_t n;
} axis;

typedef struct sweep_args {
    search_opts search;
    axis ax[MAX_AXES];
    size_t nax;
    const char *out;
    bool force, quiet, json;
} sweep_args;

enum { OPT_GRID = 1300, OPT_SWEEP_JSON, OPT_SWEEP_FORCE };

static const char *const MERGES[] = {"lerp", "soup", "task", "ckpt", "slerp", "ties", "dare",
                                     "breadcrumbs", "della", "stock", "merge"};

/* A grid value as it is substituted, and then used: rounded to 12
 * significant digits, so 0:1:11 gives 0.3, not 0.30000000000000004. */
static char *grid_text(double *v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.12g", *v);
    if (!strcmp(buf, "-0"))
        strcpy(buf, "0");
    *v = strtod(buf, NULL);
    return lad_strdup(buf);
}

static int parse_axis(sweep_args *a, const char *arg)
{
    if (a->nax == MAX_AXES)
        return usage_error("sweep", "at most %d --grid axes", MAX_AXES);
    axis *x = &a->ax[a->nax];
    const char *eq = strchr(arg, '=');
    size_t nl = eq ? (size_t)(eq - arg) : 0;
    if (!eq || !lad_is_identifier(arg, nl) || nl >= sizeof x->name)
        return usage_error("sweep", "--grid takes NAME=START:STOP:STEPS or NAME=v1,v2,..., not "
                                    "'%s'",
                           arg);
    memcpy(x->name, arg, nl);
    x->name[nl] = 0;
    if (!strcmp(x->name, "model") || !strcmp(x->name, "slot"))
        return usage_error("sweep", "--grid: '%s' is taken by the evaluator protocol", x->name);
    for (size_t k = 0; k < a->nax; k++)
        if (!strcmp(a->ax[k].name, x->name))
            return usage_error("sweep", "--grid: '%s' given twice", x->name);
    const char *spec = eq + 1;
    double start, stop;
    long steps;
    char s1[64], s2[64], s3[64];
    if (strchr(spec, ':')) {
        if (sscanf(spec, "%63[^:]:%63[^:]:%63s", s1, s2, s3) != 3 || parse_double(s1, &start) ||
            parse_double(s2, &stop) || parse_int(s3, 1, MAX_POINTS, &steps))
            return usage_error("sweep", "--grid %s: START:STOP:STEPS needs two numbers and a "
                                        "count from 1 to %d, not '%s'",
                               x->name, MAX_POINTS, spec);
        x->n = (size_t)steps;
        x->v = calloc(x->n, sizeof *x->v);
        if (!x->v)
            return usage_error("sweep", "out of memory");
        /* numpy.linspace: start + i * step, the last exactly stop. */
        double step = steps > 1 ? (stop - start) / (double)(steps - 1) : 0;
        for (size_t i = 0; i < x->n; i++)
            x->v[i] = start + (double)i * step;
        if (steps > 1)
            x->v[x->n - 1] = stop;
    } else {
        x->v = calloc(MAX_POINTS, sizeof *x->v);
        int n = x->v ? parse_list(spec, x->v, MAX_POINTS) : -1;
        if (n < 1)
            return usage_error("sweep", "--grid %s: '%s' is not START:STOP:STEPS or a list of "
                                        "numbers",
                               x->name, spec);
        x->n = (size_t)n;
    }
    x->text = calloc(x->n, sizeof *x->text);
    for (size_t i = 0; x->text && i < x->n; i++)
        if (!(x->text[i] = grid_text(&x->v[i])))
            return usage_error("sweep", "out of memory");
    if (!x->text)
        return usage_error("sweep", "out of memory");
    a->nax++;
    return 0;
}

static int take(void *ctx, int id, const char *arg)
{
    sweep_args *a = ctx;
    int t = search_opts_take(&a->search, "sweep", id, arg);
    if (t)
        return t > 1 ? t : 0;
    switch (id) {
    case 'g':
        return parse_axis(a, arg);
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

static bool names_folder(char *const *merge)
{
    for (size_t i = 1; merge[i]; i++)
        if (lad_is_dir(merge[i]))
            return true;
    return false;
}

int cmd_sweep(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"grid", required_argument, 0, 'g'},      {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, OPT_SWEEP_FORCE}, {"json", no_argument, 0, OPT_SWEEP_JSON},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        SEARCH_OPTIONS,                           {0, 0, 0, 0}};
    sweep_args a;
    memset(&a, 0, sizeof a);
    int first, code;
    /* "+": options end at the first non-option, so the merge command's own
     * options are left alone even without "--". */
    if (!parse_args("sweep", HELP, argc, argv, longopts, "+g:o:qh", NULL, take, &a, &first,
                    &code))
        goto done;
    code = EXIT_USAGE;
    char **tmpl = argv + first;
    int nt = argc - first;
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
    bool known = false;
    for (size_t i = 0; i < sizeof MERGES / sizeof *MERGES; i++)
        known |= !strcmp(tmpl[0], MERGES[i]);
    if (!known) {
        usage_error("sweep", "'%s' is not a merge command (lerp, soup, task, slerp, ties, ...)",
                    tmpl[0]);
        goto done;
    }
    for (int i = 1; i < nt; i++)
        if (!strcmp(tmpl[i], "-o") || !strncmp(tmpl[i], "--output", 8) ||
            !strncmp(tmpl[i], "-o", 2)) {
            usage_error("sweep", "the merge command must not name an output (%s): sweep writes "
                                 "candidates to its work folder and the best to its own -o",
                        tmpl[i]);
            goto done;
        }
    if (a.out && lad_exists(a.out) && !a.force) {
        usage_error("sweep", "%s already exists (--force to replace it once the best is known)",
                    a.out);
        goto done;
    }

    size_t npoints = 1;
    for (size_t k = 0; k < a.nax; k++)
        if ((npoints *= a.ax[k].n) > MAX_POINTS) {
            usage_error("sweep", "the grid has more than %d points", MAX_POINTS);
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

    bool folders = a.out ? !lad_ends_with(a.out, ".safetensors") : names_folder(c[0].merge);
    if (search_open(&s, "sweep", &a.search, a.quiet, folders, a.out, &err) != 0) {
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
        if (search_better(&s, c[p].score, c[best].score))
            best = p;
    if (a.out && search_write(&s, c[best].merge, a.out, a.force, &err) != 0) {
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
    for (size_t k = 0; k < a.nax; k++) {
        for (size_t i = 0; a.ax[k].text && i < a.ax[k].n; i++)
            free(a.ax[k].text[i]);
        free(a.ax[k].text);
        free(a.ax[k].v);
    }
    return code;
}
