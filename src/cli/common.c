/* What every merge command shares: common options, opening the models,
 * planning, running, and the one-line error and summary output. */
#include "cli.h"
#include "../core/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ladle: error: %s%s%s (see 'ladle %s%s--help')\n", cmd ? cmd : "",
            cmd ? ": " : "", msg, cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

int report(const lad_error *err)
{
    fprintf(stderr, "ladle: error: %s\n", err->msg);
    return err->interrupted ? EXIT_INTERRUPTED : 1;
}

void note(bool quiet, const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("ladle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int parse_list(const char *s, double *out, int max)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    if (!copy)
        return -1;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max || parse_double(tok, &out[n]) != 0) {
            free(copy);
            return -1;
        }
        n++;
    }
    free(copy);
    return n;
}

char *command_line(int argc, char **argv)
{
    size_t cap = 16;
    for (int i = 0; i < argc; i++)
        cap += strlen(argv[i]) * 4 + 3;
    char *s = malloc(cap), *o = s;
    if (!s)
        return NULL;
    o += sprintf(o, "ladle");
    for (int i = 0; i < argc; i++) {
        bool plain = argv[i][0] != 0;
        for (const char *c = argv[i]; *c; c++)
            plain &= !!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "0123456789-_./:=,+@%", *c);
        char *quoted = plain ? NULL : lad_shell_quote(argv[i]);
        if (!plain && !quoted) {
            free(s);
            return NULL;
        }
        o += sprintf(o, " %s", plain ? argv[i] : quoted);
        free(quoted);
    }
    return s;
}

int parse_weighted_model(const char *cmd, const char *arg, lad_sched_value *weight,
                         const char **model)
{
    const char *colon = strchr(arg, ':');
    char num[1024];
    size_t len = colon ? (size_t)(colon - arg) : 0;
    if (!colon || len == 0 || len >= sizeof num || !colon[1])
        return usage_error(cmd, "--add takes WEIGHT:MODEL (e.g. 0.5:ft-math), not '%s'", arg);
    memcpy(num, arg, len);
    num[len] = 0;
    if (lad_sched_parse_value(num, weight) != 0)
        return usage_error(cmd, "--add '%s': '%s' is not a number or a list a,b,c", arg, num);
    *model = colon + 1;
    return 0;
}

int parse_sched_option(const char *cmd, const char *opt, const char *arg, lad_sched_value *out)
{
    if (lad_sched_parse_value(arg, out) != 0)
        return usage_error(cmd, "%s takes a number or a gradient a,b,c, not '%s'", opt, arg);
    return 0;
}

bool sched_all(const lad_sched_value *v, double lo, double hi)
{
    for (int i = 0; i < v->n; i++)
        if (v->v[i] < lo || v->v[i] > hi)
            return false;
    return true;
}

json_t *sched_json(const lad_sched_value *v)
{
    if (v->n == 1)
        return json_real(v->v[0]);
    json_t *a = json_array();
    for (int i = 0; i < v->n; i++)
        json_array_append_new(a, json_real(v->v[i]));
    return a;
}

void merge_opts_init(merge_opts *o)
{
    memset(o, 0, sizeof *o);
    o->shard_size = 5000000000ULL;
}

int merge_opts_take(merge_opts *o, const char *cmd, int id, const char *arg)
{
    long n;
    switch (id) {
    case 'o':
        o->output = arg;
        return 1;
    case OPT_DTYPE:
        if (lad_dtype_parse_user(arg, &o->dtype) != 0) {
            usage_error(cmd, "--dtype takes f32, f16 or bf16, not '%s'", arg);
            return -1;
        }
        o->has_dtype = true;
        return 1;
    case 'j':
        if (parse_int(arg, 1, 1024, &n) != 0) {
            usage_error(cmd, "-j takes a thread count from 1 to 1024, not '%s'", arg);
            return -1;
        }
        o->threads = (int)n;
        return 1;
    case OPT_SHARD_SIZE:
        if (lad_parse_size(arg, &o->shard_size) != 0) {
            usage_error(cmd, "--shard-size takes a size such as 5GB, 500MB or 0, not '%s'", arg);
            return -1;
        }
        return 1;
    case OPT_FORCE:
        o->force = true;
        return 1;
    case OPT_SET:
        if (o->nsets == MAX_SETS) {
            usage_error(cmd, "at most %d --set", MAX_SETS);
            return -1;
        }
        o->sets[o->nsets++] = arg;
        return 1;
    case 'q':
        o->quiet = true;
        return 1;
    default:
        return 0;
    }
}

bool parse_args(const char *cmd, const char *help, int argc, char **argv,
                const struct option *longopts, const char *shortopts, merge_opts *common,
                opt_handler take, void *ctx, int *first, int *exit_code)
{
    char optstring[128];
    /* ':' reports missing values; a leading '+' (stop at the first
     * positional) must stay first. */
    if (shortopts[0] == '+')
        snprintf(optstring, sizeof optstring, "+:%s", shortopts + 1);
    else
        snprintf(optstring, sizeof optstring, ":%s", shortopts);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            *exit_code = 0;
            return false;
        }
        if (c == '?' || c == ':') {
            const char *opt = argv[optind - 1];
            *exit_code = c == ':' ? usage_error(cmd, "option '%s' needs a value", opt)
                                  : usage_error(cmd, "unknown option '%s'", opt);
            return false;
        }
        int t = common ? merge_opts_take(common, cmd, c, optarg) : 0;
        if (t < 0) {
            *exit_code = EXIT_USAGE;
            return false;
        }
        if (t == 0 && (*exit_code = take(ctx, c, optarg)) != 0)
            return false;
    }
    *first = optind;
    return true;
}

static void print_shape(const lad_plan_tensor *pt)
{
    printf("[");
    for (int d = 0; d < pt->ndim; d++)
        printf("%s%llu", d ? ", " : "", (unsigned long long)pt->shape[d]);
    printf("]");
}

/* --dry-run: what would be written, from what, how. */
static int print_plan(const lad_plan *plan, const merge_job *job, lad_error *err)
{
    printf("inputs:\n");
    for (size_t j = 0; j < job->nmodels; j++)
        printf("  %zu  %-10s %s\n", j, job->roles[j], job->refs[j]);
    printf("tensors:\n");
    for (size_t i = 0; i < lad_plan_ntensors(plan); i++) {
        const lad_plan_tensor *pt = lad_plan_tensor_at(plan, i);
        printf("  %s %s ", pt->name, lad_dtype_name(pt->out_dtype));
        print_shape(pt);
        if (pt->kind == LAD_COPY) {
            printf(" copy of %s from %s\n", pt->in[0]->name, pt->in[0]->file->path);
            continue;
        }
        if (pt->nin == 1 && strcmp(pt->in[0]->name, pt->name)) /* renamed (slices) */
            printf(" from %s of %s", pt->in[0]->name, pt->in[0]->file->path);
        printf(" %s", job->cmd);
        char desc[4096] = "";
        if (job->describe &&
            job->describe(pt->name, lad_plan_tensor_depth(plan, i), lad_plan_tensor_ctx(plan, i),
                          desc, sizeof desc, job->describe_ctx, err) != 0)
            return -1;
        printf("%s%s\n", desc[0] ? " " : "", desc);
    }
    char rd[32], wr[32];
    lad_format_bytes(lad_plan_bytes_read(plan), rd, sizeof rd);
    lad_format_bytes(lad_plan_bytes_written(plan), wr, sizeof wr);
    printf("%zu tensors: would read %s and write %s (dry run: nothing written)\n",
           lad_plan_ntensors(plan), rd, wr);
    return 0;
}

int run_merge(const merge_opts *o, merge_job *job, int argc, char **argv)
{
    lad_error err = {0};
    lad_model **models = calloc(job->nmodels, sizeof *models);
    lad_plan *plan = NULL;
    char *cmdline = command_line(argc, argv);
    lad_tensor_spec *specs = NULL;
    size_t nspecs = 0;
    uint64_t num_layers = 0;
    int rc = 0;
    if (!o->output) {
        rc = usage_error(job->cmd, "no output given (-o OUT)");
        goto out;
    }
    if (!models || !cmdline) {
        rc = report(&(lad_error){.msg = "out of memory"});
        goto out;
    }
    if (o->nsets && !job->schedule) {
        rc = usage_error(job->cmd, "--set: this method has no per-tensor parameters");
        goto out;
    }
    for (int i = 0; i < o->nsets; i++)
        if (lad_sched_add_override(job->schedule, o->sets[i], &err) != 0) {
            rc = usage_error(job->cmd, "%s", err.msg);
            goto out;
        }
    if (job->schedule && o->nsets) {
        json_t *sets = json_array();
        for (int i = 0; i < o->nsets; i++)
            json_array_append_new(sets, json_string(o->sets[i]));
        json_object_set_new(job->params, "set", sets);
    }
    for (size_t i = 0; i < job->nmodels; i++)
        if (lad_model_open(job->refs[i], &models[i], &err) != 0) {
            rc = report(&err);
            goto out;
        }
    if (job->make_specs &&
        job->make_specs(models, &specs, &nspecs, &num_layers, job->specs_ctx, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    lad_merge_request req = {
        .command = cmdline,
        .method_label = job->cmd,
        .models = models,
        .roles = (const char **)job->roles,
        .nmodels = job->nmodels,
        .template_model = job->template_model,
        .op = job->op,
        .schedule = job->schedule,
        .specs = specs,
        .nspecs = nspecs,
        .num_layers = num_layers,
        .params_json = job->params,
        .output = o->output,
        .has_out_dtype = o->has_dtype || job->has_out_dtype,
        .out_dtype = o->has_dtype ? o->dtype : job->out_dtype,
        .shard_size = o->shard_size,
        .threads = o->threads,
        .force = o->force,
        .progress = !o->quiet && isatty(STDERR_FILENO),
    };
    req.op.ninputs = job->nmodels;
    for (size_t i = 0; i < req.op.nparam; i++)
        req.op.paramf[i] = (float)req.op.param[i];
    if (lad_plan_build(&req, &plan, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    if (job->dry_run) {
        if (print_plan(plan, job, &err) != 0)
            rc = report(&err);
        goto out;
    }
    lad_run_stats st;
    if (lad_plan_execute(plan, &st, &err) != 0) {
        rc = report(&err);
        goto out;
    }
    if (st.nonfinite) /* a warning even with -q: the model may be broken */
        fprintf(stderr,
                "ladle: warning: %s: %llu NaN/Inf value%s in %zu tensor%s (first: %s): an input "
                "holds NaN/Inf, or a value overflowed (f16 ends at 65504); check with care\n",
                o->output, (unsigned long long)st.nonfinite, st.nonfinite == 1 ? "" : "s",
                st.nonfinite_tensors, st.nonfinite_tensors == 1 ? "" : "s", st.first_nonfinite);
    char rd[32], wr[32];
    lad_format_bytes(st.bytes_read, rd, sizeof rd);
    lad_format_bytes(st.bytes_written, wr, sizeof wr);
    note(o->quiet, "%s: wrote %s to %s (%zu tensor%s in %zu file%s) from %s read, in %.2fs",
         job->cmd, wr, o->output, lad_plan_ntensors(plan), lad_plan_ntensors(plan) == 1 ? "" : "s",
         st.nshards, st.nshards == 1 ? "" : "s", rd, st.seconds);
out:
    lad_plan_free(plan);
    if (specs)
        job->free_specs(specs, nspecs);
    for (size_t i = 0; models && i < job->nmodels; i++)
        lad_model_close(models[i]);
    free(models);
    free(cmdline);
    json_decref(job->params);
    if (job->schedule)
        lad_sched_free(job->schedule);
    return rc;
}
