/* task --base BASE --add L:MODEL ... [--onto C] [--lambda S]: task
 * arithmetic, theta = C + S * sum_i L_i (theta_i - theta_BASE). */
#include "job.h"
#include "../methods/gta.h"

#include <stdio.h>

#define MAX_ADDS 60
enum { OPT_BASE = 1100, OPT_ADD, OPT_ONTO, OPT_LAMBDA, OPT_NORMALIZE_MAGNITUDE };

typedef struct task_args {
    const char *base, *onto;
    const char *model[MAX_ADDS];
    lad_sched_value weight[MAX_ADDS];
    char wname[MAX_ADDS][24];
    int nadd;
    lad_sched_value scale;
    bool normalize_magnitude;
    lad_schedule sched;
} task_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    task_args *a = args;
    switch (id) {
    case OPT_BASE:
        a->base = arg;
        return 0;
    case OPT_ONTO:
        a->onto = arg;
        return 0;
    case OPT_LAMBDA:
        return job_sched_value("--lambda", arg, &a->scale, err);
    case OPT_NORMALIZE_MAGNITUDE:
        a->normalize_magnitude = true;
        return 0;
    case OPT_ADD:
        if (a->nadd == MAX_ADDS)
            return lad_usage(err, "at most %d --add", MAX_ADDS);
        if (job_weighted_model(arg, &a->weight[a->nadd], &a->model[a->nadd], err))
            return -1;
        a->nadd++;
        return 0;
    }
    return 0;
}

/* values: lambda, weight1..N -> the task_arithmetic op (see its file), or
 * with magnitude normalisation the dense generalized one, which computes
 * the same operations in the same order after scaling the task vectors. */
static int build(const double *v, lad_op *op, const void *ctx, lad_error *err)
{
    (void)err;
    const task_args *a = ctx;
    if (a->normalize_magnitude) {
        op->method = &lad_method_gta;
        op->param[GTA_LAMBDA] = v[0];
        op->param[GTA_SPARSIFY] = GTA_DENSE;
        op->param[GTA_NORM_MAG] = 1;
        for (int i = 0; i < a->nadd; i++)
            op->param[GTA_TV(i, GTA_WEIGHT)] = v[1 + i];
        op->nparam = (size_t)GTA_TV(a->nadd, 0);
        return 0;
    }
    op->method = &lad_method_task_arithmetic;
    op->param[0] = v[0];
    op->param[1] = a->onto ? 1 : 0;
    for (int i = 0; i < a->nadd; i++)
        op->param[2 + i] = v[1 + i];
    op->nparam = 2 + (size_t)a->nadd;
    return 0;
}

int job_task(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {
        {"base", OPT_BASE, true}, {"add", OPT_ADD, true}, {"onto", OPT_ONTO, true},
        {"lambda", OPT_LAMBDA, true}, {"normalize-magnitude", OPT_NORMALIZE_MAGNITUDE, false},
        {0}};
    task_args *a = job_state(j, sizeof *a);
    char *const *pos;
    int n, rc;
    if (!a)
        return lad_fail(err, "out of memory");
    a->scale = (lad_sched_value){.v = {1.0}, .n = 1};
    if ((rc = job_parse(j, opts, take, a, &pos, &n, err)) != 0)
        return rc;
    if (n)
        rc = lad_usage(err, "unexpected argument '%s' (models are given with --base, --add and "
                            "--onto)",
                       pos[0]);
    else if (!a->base)
        rc = lad_usage(err, "--base BASE is required");
    else if (a->nadd == 0)
        rc = lad_usage(err, "at least one --add L:MODEL is required");
    else if (a->normalize_magnitude && a->onto)
        rc = lad_usage(err, "--normalize-magnitude with --onto is not supported yet");
    free((void *)pos);
    if (rc || (rc = job_models(j, (size_t)a->nadd + 1 + (a->onto != NULL), err)))
        return rc;
    size_t k = 0;
    j->refs[k] = a->base;
    j->roles[k++] = "base";
    a->sched = (lad_schedule){.names = {"lambda"}, .value = {a->scale},
                              .nparams = 1 + a->nadd, .build = build, .ctx = a};
    json_t *adds = json_array();
    for (int i = 0; i < a->nadd; i++) {
        j->refs[k] = a->model[i];
        j->roles[k++] = "task";
        snprintf(a->wname[i], sizeof a->wname[i], "weight%d", i + 1);
        a->sched.names[1 + i] = a->wname[i];
        a->sched.value[1 + i] = a->weight[i];
        json_array_append_new(adds, json_pack("{s:s, s:o}", "model", a->model[i], "weight",
                                              job_sched_json(&a->weight[i])));
    }
    if (a->onto) {
        j->refs[k] = a->onto;
        j->roles[k++] = "onto";
        j->template_model = k - 1;
    }
    j->schedule = &a->sched;
    j->params = json_pack("{s:o, s:o, s:s?, s:b}", "lambda", job_sched_json(&a->scale), "add",
                          adds, "onto", a->onto, "normalize_magnitude", a->normalize_magnitude);
    return 0;
}
