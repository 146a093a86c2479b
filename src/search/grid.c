/* A sweep's axes: parsed, spaced as numpy.linspace, and rounded to the 12
 * significant digits they are substituted with (see ladle.h). */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A value as it is substituted, and then used: rounded to 12 significant
 * digits, so 0:1:11 gives 0.3, not 0.30000000000000004. */
static char *grid_text(double *v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.12g", *v);
    if (!strcmp(buf, "-0"))
        strcpy(buf, "0");
    *v = strtod(buf, NULL);
    return lad_strdup(buf);
}

void lad_axis_free(lad_axis *a)
{
    for (size_t i = 0; a->text && i < a->n; i++)
        free(a->text[i]);
    free(a->text);
    free(a->v);
    memset(a, 0, sizeof *a);
}

static int values(lad_axis *x, const char *spec, lad_error *err)
{
    if (!strchr(spec, ':')) {
        x->v = calloc(LAD_GRID_MAX_POINTS, sizeof *x->v);
        int n = x->v ? lad_parse_list(spec, x->v, LAD_GRID_MAX_POINTS) : -1;
        if (n < 1)
            return lad_usage(err, "--grid %s: '%s' is not START:STOP:STEPS or a list of numbers",
                             x->name, spec);
        x->n = (size_t)n;
        return 0;
    }
    double start, stop;
    long steps;
    char s1[64], s2[64], s3[64];
    if (sscanf(spec, "%63[^:]:%63[^:]:%63s", s1, s2, s3) != 3 || lad_parse_double(s1, &start) ||
        lad_parse_double(s2, &stop) || lad_parse_long(s3, 1, LAD_GRID_MAX_POINTS, &steps))
        return lad_usage(err, "--grid %s: START:STOP:STEPS needs two numbers and a count from 1 "
                              "to %d, not '%s'",
                         x->name, LAD_GRID_MAX_POINTS, spec);
    x->n = (size_t)steps;
    if (!(x->v = calloc(x->n, sizeof *x->v)))
        return lad_fail(err, "out of memory");
    /* numpy.linspace: start + i * step, the last exactly stop. */
    double step = steps > 1 ? (stop - start) / (double)(steps - 1) : 0;
    for (size_t i = 0; i < x->n; i++)
        x->v[i] = start + (double)i * step;
    if (steps > 1)
        x->v[x->n - 1] = stop;
    return 0;
}

int lad_axis_parse(const char *spec, lad_axis *x, lad_error *err)
{
    memset(x, 0, sizeof *x);
    const char *eq = strchr(spec, '=');
    size_t nl = eq ? (size_t)(eq - spec) : 0;
    if (!eq || !lad_is_identifier(spec, nl) || nl >= sizeof x->name)
        return lad_usage(err, "--grid takes NAME=START:STOP:STEPS or NAME=v1,v2,..., not '%s'",
                         spec);
    memcpy(x->name, spec, nl);
    if (!strcmp(x->name, "model") || !strcmp(x->name, "slot"))
        return lad_usage(err, "--grid: '%s' is taken by the evaluator protocol", x->name);
    int rc = values(x, eq + 1, err);
    if (rc == 0 && !(x->text = calloc(x->n, sizeof *x->text)))
        rc = lad_fail(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < x->n; i++)
        if (!(x->text[i] = grid_text(&x->v[i])))
            rc = lad_fail(err, "out of memory");
    if (rc)
        lad_axis_free(x);
    return rc;
}
