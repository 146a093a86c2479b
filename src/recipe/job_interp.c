/* Interpolating two models, with one parameter (a number or a gradient):
 *   lerp A B --alpha X   theta = (1 - X) * A + X * B
 *   slerp A B --t X      spherical interpolation, per tensor (slerp.c) */
#include "job.h"

enum { OPT_EXTRAPOLATE = 1100 };

typedef struct interp_args {
    bool slerp;
    lad_sched_value x;
    bool have_x, extrapolate;
    lad_schedule sched;
} interp_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    interp_args *a = args;
    if (id == 'a' || id == 't') {
        if (job_sched_value(a->slerp ? "--t" : "--alpha", arg, &a->x, err))
            return -1;
        a->have_x = true;
    } else if (id == OPT_EXTRAPOLATE) {
        a->extrapolate = true;
    }
    return 0;
}

/* A tensor's op from its alpha (the linear kernel with 1 - alpha, alpha)
 * or its t. */
static int build(const double *v, lad_op *op, const void *ctx, lad_error *err)
{
    const interp_args *a = ctx;
    if ((v[0] < 0 || v[0] > 1) && !a->extrapolate)
        return lad_fail(err, a->slerp ? "t %g is outside [0, 1]"
                                      : "alpha %g is outside [0, 1]; add --extrapolate if you "
                                        "mean it",
                        v[0]);
    if (a->slerp) {
        op->method = &lad_method_slerp;
        op->param[0] = v[0];
        op->nparam = 1;
        return 0;
    }
    op->method = &lad_method_linear;
    op->param[0] = 1.0 - v[0];
    op->param[1] = v[0];
    op->nparam = 2;
    return 0;
}

static int job_interp(lad_job *j, bool slerp, lad_error *err)
{
    static const lad_optdef lerp_opts[] = {
        {"alpha", 'a', true}, {"extrapolate", OPT_EXTRAPOLATE, false}, {0}};
    static const lad_optdef slerp_opts[] = {{"t", 't', true}, {0}};
    interp_args *a = job_state(j, sizeof *a);
    const char *name = slerp ? "t" : "alpha";
    char *const *pos;
    int n, rc;
    if (!a)
        return lad_fail(err, "out of memory");
    a->slerp = slerp;
    if ((rc = job_parse(j, slerp ? slerp_opts : lerp_opts, take, a, &pos, &n, err)) != 0)
        return rc;
    if (n != 2)
        rc = lad_usage(err, "expected two models A B, got %d", n);
    else if (!a->have_x)
        rc = lad_usage(err, "--%s X is required (0 gives A, 1 gives B)", name);
    else if (!job_sched_all(&a->x, 0, 1) && !a->extrapolate)
        rc = lad_usage(err, slerp ? "--t is outside [0, 1]"
                                  : "--alpha outside [0, 1]; add --extrapolate if you mean it");
    else if ((rc = job_models(j, 2, err)) == 0) {
        j->refs[0] = pos[0];
        j->refs[1] = pos[1];
        j->roles[0] = "A";
        j->roles[1] = "B";
        a->sched = (lad_schedule){.names = {name}, .value = {a->x}, .nparams = 1,
                                  .build = build, .ctx = a};
        j->schedule = &a->sched;
        j->params = slerp ? json_pack("{s:o}", "t", job_sched_json(&a->x))
                          : json_pack("{s:o, s:b}", "alpha", job_sched_json(&a->x),
                                      "extrapolate", a->extrapolate);
    }
    free((void *)pos);
    return rc;
}

int job_lerp(lad_job *j, lad_error *err) { return job_interp(j, false, err); }
int job_slerp(lad_job *j, lad_error *err) { return job_interp(j, true, err); }
