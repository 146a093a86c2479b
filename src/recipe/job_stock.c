/* stock --base BASE M1 M2 ...: Model Stock. */
#include "job.h"

#define MAX_FINETUNES 24
enum { OPT_BASE = 1100 };

static int take(lad_job *j, void *args, int id, const char *arg, lad_error *err)
{
    (void)j;
    (void)err;
    if (id == OPT_BASE)
        *(const char **)args = arg;
    return 0;
}

int job_stock(lad_job *j, lad_error *err)
{
    static const lad_optdef opts[] = {{"base", OPT_BASE, true}, {0}};
    const char *base = NULL;
    char *const *pos;
    int n, rc;
    if ((rc = job_parse(j, opts, take, &base, &pos, &n, err)) != 0)
        return rc;
    if (!base)
        rc = lad_usage(err, "--base BASE is required");
    else if (n < 2 || n > MAX_FINETUNES)
        rc = lad_usage(err, "needs 2 to %d fine-tunes besides the base, got %d", MAX_FINETUNES,
                       n);
    else if ((rc = job_models(j, (size_t)n + 1, err)) == 0) {
        j->refs[0] = base;
        j->roles[0] = "base";
        for (int i = 0; i < n; i++) {
            j->refs[i + 1] = pos[i];
            j->roles[i + 1] = "model";
        }
        j->label = "model_stock";
        j->op.method = &lad_method_model_stock;
        j->params = json_object();
    }
    free((void *)pos);
    return rc;
}
