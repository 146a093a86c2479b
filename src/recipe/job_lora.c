/* lora apply BASE ADAPTER [ADAPTER ...] [--weights w1,...] [--scale S]:
 * the base with its LoRA adapters merged in, W + S * sum w_i * delta_i
 * (formats/lora.c), streamed like any merge of one model. */
#include "job.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ADAPTERS 64
enum { OPT_WEIGHTS = 1100, OPT_SCALE };

typedef struct lora_args {
    double w[MAX_ADAPTERS];
    int nw;                   /* -1: not given */
    double scale;
    const char *adapters[MAX_ADAPTERS];
    size_t n;
} lora_args;

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    lora_args *a = args;
    if (id == OPT_WEIGHTS && (a->nw = lad_parse_list(arg, a->w, MAX_ADAPTERS)) < 0)
        return lad_usage(err, "--weights takes comma-separated numbers, not '%s'", arg);
    if (id == OPT_SCALE && lad_parse_double(arg, &a->scale) != 0)
        return lad_usage(err, "--scale takes a number, not '%s'", arg);
    return 0;
}

/* The base, opened with the adapters attached. */
static int open_base(const lad_job *j, size_t i, lad_model **out, lad_error *err)
{
    const lora_args *a = j->state;
    double w[MAX_ADAPTERS];
    for (size_t k = 0; k < a->n; k++)
        w[k] = a->scale * (a->nw >= 0 ? a->w[k] : 1.0);
    if (lad_model_open(j->refs[i], out, err))
        return -1;
    if (lad_lora_attach(*out, a->adapters, w, a->n, err)) {
        lad_model_close(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int job_lora(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"weights", OPT_WEIGHTS, true}, {"scale", OPT_SCALE, true},
                                      {0}};
    lora_args *a = job_state(j, sizeof *a); /* (the job frees it) */
    if (!a)
        return lad_fail(err, "out of memory");
    a->nw = -1;
    a->scale = 1.0;
    char *const *pos;
    int n, rc;
    if ((rc = job_parse(j, opts, take, a, &pos, &n, err)) != 0)
        return rc;
    if (n < 1 || strcmp(pos[0], "apply"))
        rc = lad_usage(err, "lora takes a subcommand: apply BASE ADAPTER...");
    else if (n < 3)
        rc = lad_usage(err, "lora apply needs a base model and at least one adapter");
    else if (n - 2 > MAX_ADAPTERS)
        rc = lad_usage(err, "at most %d adapters at once", MAX_ADAPTERS);
    else if (a->nw >= 0 && a->nw != n - 2)
        rc = lad_usage(err, "%d weights for %d adapters", a->nw, n - 2);
    else if ((rc = job_models(j, 1, err)) == 0) {
        j->refs[0] = pos[1];
        j->roles[0] = "base";
        j->label = "lora";
        j->open_model = open_base;
        j->op.method = &lad_method_linear;
        j->op.param[0] = 1.0;
        j->op.nparam = 1;
        json_t *ads = json_array(), *ws = json_array();
        for (int k = 2; k < n; k++) {
            a->adapters[a->n++] = pos[k];
            json_array_append_new(ads, json_string(pos[k]));
            json_array_append_new(ws, json_real(a->nw >= 0 ? a->w[k - 2] : 1.0));
        }
        j->params = json_pack("{s:o, s:o, s:f}", "adapters", ads, "weights", ws, "scale",
                              a->scale);
    }
    free((void *)pos);
    return rc;
}
