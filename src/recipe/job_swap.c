/* Two more ways to blend two models, with mergekit's semantics:
 *   nearswap BASE B --t T      B's value where it is within ~T of the
 *                              base's, the base's elsewhere (nearswap.c)
 *   nuslerp A B --t X [--base BASE] [--per-row]
 *                              spherical interpolation of the models, or of
 *                              their task vectors from BASE, per tensor or
 *                              per row (nuslerp.c)
 * T and X may be gradients across the layers, and --set overrides them. */
#include "job.h"

#include <stdlib.h>
#include <string.h>

enum { OPT_BASE = 1100, OPT_ROWS, OPT_COLS };

typedef struct swap_args {
    bool nuslerp, rows, cols;
    const char *base;
    lad_sched_value t;
    bool have_t;
    lad_schedule sched;
} swap_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    swap_args *a = args;
    if (id == 't') {
        if (job_sched_value("--t", arg, &a->t, err))
            return -1;
        a->have_t = true;
    } else if (id == OPT_BASE) {
        a->base = arg;
    } else if (id == OPT_ROWS) {
        a->rows = true;
    } else if (id == OPT_COLS) {
        a->cols = true;
    }
    return 0;
}

static int build(const double *v, lad_op *op, const void *ctx, lad_error *err)
{
    const swap_args *a = ctx;
    if (!a->nuslerp) {
        if (!(v[0] > 0))
            return lad_fail(err, "nearswap's t is %g; it must be above 0", v[0]);
        op->method = &lad_method_nearswap;
        op->param[0] = v[0];
        op->nparam = 1;
        return 0;
    }
    if (v[0] < 0 || v[0] > 1)
        return lad_fail(err, "t %g is outside [0, 1]", v[0]);
    op->method = a->rows   ? &lad_method_nuslerp_rows
                 : a->cols ? &lad_method_nuslerp_cols
                           : &lad_method_nuslerp;
    op->param[0] = v[0];
    op->param[1] = a->rows ? NUSLERP_ROWS : a->cols ? NUSLERP_COLS : NUSLERP_FLAT;
    op->param[2] = a->base != NULL;
    op->nparam = 3;
    return 0;
}

static int job_swap(lad_job *j, bool nuslerp, lad_error *err)
{
    static const lad_optdef near_opts[] = {{"t", 't', true}, {0}};
    static const lad_optdef nu_opts[] = {
        {"t", 't', true}, {"base", OPT_BASE, true}, {"per-row", OPT_ROWS, false},
        {"per-column", OPT_COLS, false}, {0}};
    swap_args *a = job_state(j, sizeof *a);
    char *const *pos;
    int n, rc;
    if (!a)
        return lad_fail(err, "out of memory");
    a->nuslerp = nuslerp;
    if ((rc = job_parse(j, nuslerp ? nu_opts : near_opts, take, a, &pos, &n, err)) != 0)
        return rc;
    size_t nm = 2 + (a->base != NULL);
    if (n != 2)
        rc = lad_usage(err, "expected two models, got %d", n);
    else if (a->rows && a->cols)
        rc = lad_usage(err, "--per-row or --per-column, not both");
    else if (!a->have_t)
        rc = lad_usage(err, nuslerp ? "--t X is required (0 gives A, 1 gives B)"
                                    : "--t T is required (the sameness threshold, above 0)");
    else if ((rc = job_models(j, nm, err)) == 0) {
        j->refs[0] = pos[0];
        j->refs[1] = pos[1];
        j->roles[0] = nuslerp ? "A" : "base";
        j->roles[1] = "B";
        if (a->base) {
            j->refs[2] = a->base;
            j->roles[2] = "base";
        }
        /* nuslerp with a base: the base's config and tokenizer */
        j->template_model = a->base ? 2 : 0;
        a->sched = (lad_schedule){.names = {"t"}, .value = {a->t}, .nparams = 1,
                                  .build = build, .ctx = a};
        j->schedule = &a->sched;
        j->params = nuslerp ? json_pack("{s:o, s:b, s:b, s:b}", "t", job_sched_json(&a->t),
                                        "base", a->base != NULL, "per_row", a->rows,
                                        "per_column", a->cols)
                            : json_pack("{s:o}", "t", job_sched_json(&a->t));
    }
    free((void *)pos);
    return rc;
}

int job_nearswap(lad_job *j, lad_error *err) { return job_swap(j, false, err); }
int job_nuslerp(lad_job *j, lad_error *err) { return job_swap(j, true, err); }
