/* Merges described by command-line arguments: what every command's parser
 * shares, and parsing, planning and freeing a job (see job.h). */
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_DTYPE = 1000, OPT_SHARD_SIZE, OPT_FORCE, OPT_SET, OPT_LAYERS, OPT_DRY_RUN, OPT_TAKE,
    OPT_TOKENIZER, OPT_CHAT_TEMPLATE, OPT_PAD, OPT_QUANT, OPT_PART,
};

static const lad_optdef COMMON[] = {
    {"output", 'o', true},          {"dtype", OPT_DTYPE, true},  {"threads", 'j', true},
    {"shard-size", OPT_SHARD_SIZE, true}, {"force", OPT_FORCE, false},
    {"quiet", 'q', false},          {"set", OPT_SET, true},      {"help", 'h', false},
    {"layers", OPT_LAYERS, true},   {"dry-run", OPT_DRY_RUN, false},
    {"take-unmergeable", OPT_TAKE, true}, {"tokenizer-source", OPT_TOKENIZER, true},
    {"chat-template", OPT_CHAT_TEMPLATE, true},
    {"pad-to-multiple-of", OPT_PAD, true}, {"quant", OPT_QUANT, true},
    {"part", OPT_PART, true},
};
#define NCOMMON (sizeof COMMON / sizeof *COMMON)

static int take_common(lad_job *j, int id, const char *arg, lad_error *err)
{
    job_opts *o = &j->o;
    long n;
    switch (id) {
    case OPT_LAYERS:
        if (o->nlayers == sizeof o->layers / sizeof *o->layers)
            return lad_usage(err, "at most %zu --layers", o->nlayers);
        o->layers[o->nlayers++] = arg;
        return 0;
    case OPT_DRY_RUN:
        j->dry_run = true;
        return 0;
    case OPT_TAKE:
        o->take_unmergeable = arg;
        return 0;
    case OPT_TOKENIZER:
        o->tokenizer_source = arg;
        return 0;
    case OPT_CHAT_TEMPLATE:
        o->chat_template = arg;
        return 0;
    case OPT_PAD:
        if (job_int("--pad-to-multiple-of", arg, 1, 1048576, &n, err))
            return -1;
        o->pad_multiple = (uint64_t)n;
        return 0;
    case 'o':
        o->output = arg;
        return 0;
    case OPT_DTYPE:
        if (lad_dtype_parse_user(arg, &o->dtype) != 0)
            return lad_usage(err, "--dtype takes f32, f16 or bf16, not '%s'", arg);
        o->has_dtype = true;
        return 0;
    case OPT_QUANT: {
        uint32_t t;
        if (lad_ggml_type_parse(arg, &t) != 0 ||
            !(lad_ggml_can_write(t) || t == LAD_GGML_F32 || t == LAD_GGML_F16 ||
              t == LAD_GGML_BF16))
            return lad_usage(err, "--quant takes q8_0, q4_0, f16, bf16 or f32, not '%s'", arg);
        o->quant = t;
        o->has_quant = true;
        return 0;
    }
    case 'j':
        if (job_int("-j", arg, 1, 1024, &n, err))
            return -1;
        o->threads = (int)n;
        return 0;
    case OPT_SHARD_SIZE:
        if (lad_parse_size(arg, &o->shard_size) != 0)
            return lad_usage(err, "--shard-size takes a size such as 5GB, 500MB or 0, not '%s'",
                             arg);
        return 0;
    case OPT_FORCE:
        o->force = true;
        return 0;
    case OPT_PART: {
        unsigned i, n;
        char tail;
        if (sscanf(arg, "%u/%u%c", &i, &n, &tail) != 2 || n < 1 || n > 4096 || i < 1 || i > n)
            return lad_usage(err, "--part takes I/N with 1 <= I <= N <= 4096 (e.g. 2/8: the "
                                  "second of 8), not '%s'",
                             arg);
        o->part = i - 1;
        o->nparts = n;
        return 0;
    }
    case OPT_SET:
        if (o->nsets == JOB_MAX_SETS)
            return lad_usage(err, "at most %d --set", JOB_MAX_SETS);
        o->sets[o->nsets++] = arg;
        return 0;
    case 'q':
        o->quiet = true;
        return 0;
    }
    return 1; /* not a common option */
}

typedef struct parse_ctx {
    lad_job *j;
    job_take_fn take;
    void *args;
} parse_ctx;

static int dispatch(void *ctx, int id, const char *arg, lad_error *err)
{
    parse_ctx *c = ctx;
    int rc = take_common(c->j, id, arg, err);
    if (rc <= 0)
        return rc;
    return c->take(c->j, c->args, id, arg, err);
}

int job_parse(lad_job *j, const lad_optdef *extra, job_take_fn take, void *args,
              char *const **pos, int *npos, lad_error *err)
{
    size_t nextra = 0;
    while (extra[nextra].id)
        nextra++;
    lad_optdef *defs = calloc(NCOMMON + nextra + 1, sizeof *defs);
    if (!defs)
        return lad_fail(err, "out of memory");
    memcpy(defs, COMMON, sizeof COMMON);
    memcpy(defs + NCOMMON, extra, nextra * sizeof *defs);
    parse_ctx c = {j, take, args};
    int rc = lad_opts_parse(j->argc, j->argv, defs, false, dispatch, &c, pos, npos, err);
    free(defs);
    return rc;
}

void *job_state(lad_job *j, size_t size)
{
    j->state = calloc(1, size);
    return j->state;
}

int job_models(lad_job *j, size_t n, lad_error *err)
{
    j->refs = calloc(n + 1, sizeof *j->refs);
    j->roles = calloc(n + 1, sizeof *j->roles);
    j->nmodels = n;
    if (!j->refs || !j->roles)
        return lad_fail(err, "out of memory");
    return 0;
}

/* ------------------------------------------------------------ helpers */

int job_double(const char *opt, const char *s, double *out, lad_error *err)
{
    if (lad_parse_double(s, out) != 0)
        return lad_usage(err, "%s takes a number, not '%s'", opt, s);
    return 0;
}

int job_int(const char *opt, const char *s, long min, long max, long *out, lad_error *err)
{
    if (lad_parse_long(s, min, max, out) != 0)
        return lad_usage(err, "%s takes a whole number from %ld to %ld, not '%s'", opt, min, max,
                         s);
    return 0;
}

int job_sched_value(const char *opt, const char *s, lad_sched_value *out, lad_error *err)
{
    if (lad_sched_parse_value(s, out) != 0)
        return lad_usage(err, "%s takes a number or a gradient a,b,c, not '%s'", opt, s);
    return 0;
}

int job_weighted_model(const char *arg, lad_sched_value *weight, const char **model,
                       lad_error *err)
{
    const char *colon = strchr(arg, ':');
    char num[1024];
    size_t len = colon ? (size_t)(colon - arg) : 0;
    if (!colon || len == 0 || len >= sizeof num || !colon[1])
        return lad_usage(err, "--add takes WEIGHT:MODEL (e.g. 0.5:ft-math), not '%s'", arg);
    memcpy(num, arg, len);
    num[len] = 0;
    if (lad_sched_parse_value(num, weight) != 0)
        return lad_usage(err, "--add '%s': '%s' is not a number or a list a,b,c", arg, num);
    *model = colon + 1;
    return 0;
}

bool job_sched_all(const lad_sched_value *v, double lo, double hi)
{
    for (int i = 0; i < v->n; i++)
        if (v->v[i] < lo || v->v[i] > hi)
            return false;
    return true;
}

json_t *job_sched_json(const lad_sched_value *v)
{
    if (v->n == 1)
        return json_real(v->v[0]);
    json_t *a = json_array();
    for (int i = 0; i < v->n; i++)
        json_array_append_new(a, json_real(v->v[i]));
    return a;
}

/* ------------------------------------------------------------ jobs */

static const struct {
    const char *name;
    int (*parse)(lad_job *j, lad_error *err);
} COMMANDS[] = {
    {"lerp", job_lerp}, {"slerp", job_slerp}, {"soup", job_soup},   {"ckpt", job_ckpt},
    {"task", job_task}, {"ties", job_gta},    {"dare", job_gta},    {"breadcrumbs", job_gta},
    {"della", job_gta}, {"stock", job_stock}, {"merge", job_yaml}, {"lora", job_lora},
    {"nearswap", job_nearswap}, {"nuslerp", job_nuslerp}, {"multislerp", job_multislerp},
    {"karcher", job_karcher}, {"sce", job_sce}, {"ram", job_ram},
    {"arcee-fusion", job_fusion}, {"iso-c", job_iso}, {"tsv", job_iso},
    {"iso-cts", job_iso}, {"wudi", job_iso}, {"consensus-ta", job_consensus},
    {"consensus-ties", job_gta},
};

/* "ladle ARGS..." as a shell would read it back. */
static char *command_line(int argc, char *const *argv)
{
    size_t cap = 16;
    for (int i = 0; i < argc; i++)
        cap += strlen(argv[i]) * 4 + 3;
    char *s = malloc(cap), *o = s;
    if (!s)
        return NULL;
    o += sprintf(o, "ladle");
    for (int i = 0; i < argc; i++) {
        /* --part is where a shard was merged, not what it holds: left out,
         * so every part writes the bytes the whole merge would */
        if (!strcmp(argv[i], "--part")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--part=", 7))
            continue;
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

char *lad_command_line(int argc, char *const *argv) { return command_line(argc, argv); }

/* --set: overrides of the schedule's parameters, recorded in the params. */
static int apply_sets(lad_job *j, lad_error *err)
{
    if (!j->o.nsets)
        return 0;
    if (!j->schedule)
        return lad_usage(err, "--set: this method has no per-tensor parameters");
    json_t *sets = json_array();
    for (int i = 0; i < j->o.nsets; i++) {
        if (lad_sched_add_override(j->schedule, j->o.sets[i], err) != 0) {
            json_decref(sets);
            err->usage = true;
            return -1;
        }
        json_array_append_new(sets, json_string(j->o.sets[i]));
    }
    json_object_set_new(j->params, "set", sets);
    return 0;
}

int lad_job_parse(int argc, char *const *argv, lad_job **out, lad_error *err)
{
    if (argc < 1)
        return lad_usage(err, "no command given");
    int (*parse)(lad_job *, lad_error *) = NULL;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[0], COMMANDS[i].name))
            parse = COMMANDS[i].parse;
    if (!parse)
        return lad_usage(err, "'%s' is not a merge command (lerp, soup, task, ckpt, slerp, "
                              "nuslerp, multislerp, karcher, nearswap, ties, dare, breadcrumbs, "
                              "della, stock, sce, ram, arcee-fusion, iso-c, iso-cts, tsv, "
                              "wudi, consensus-ta, consensus-ties, merge, lora)",
                         argv[0]);
    lad_job *j = calloc(1, sizeof *j);
    if (!j)
        return lad_fail(err, "out of memory");
    j->argc = argc;
    j->argv = calloc((size_t)argc + 1, sizeof *j->argv);
    bool ok = j->argv != NULL;
    for (int i = 0; ok && i < argc; i++)
        ok = (j->argv[i] = lad_strdup(argv[i])) != NULL;
    if (!ok || !(j->cmdline = command_line(argc, argv))) {
        lad_job_free(j);
        return lad_fail(err, "out of memory");
    }
    j->cmd = j->label = j->argv[0];
    j->o.shard_size = 5000000000ULL;
    int rc = parse(j, err);
    if (rc == 0 && !j->params)
        rc = lad_fail(err, "out of memory");
    if (rc == 0)
        rc = apply_sets(j, err);
    if (rc != 0) {
        lad_job_free(j);
        return rc;
    }
    j->op.ninputs = j->nmodels;
    for (size_t i = 0; i < j->op.nparam; i++)
        j->op.paramf[i] = (float)j->op.param[i];
    *out = j;
    return 0;
}

const char *lad_job_command(const lad_job *j) { return j->label; }
const char *lad_job_output(const lad_job *j) { return j->o.output; }
bool lad_job_quiet(const lad_job *j) { return j->o.quiet; }
bool lad_job_dry_run(const lad_job *j) { return j->dry_run; }
const char *lad_job_note(const lad_job *j) { return j->note; }
size_t lad_job_ninputs(const lad_job *j) { return j->nmodels; }
const char *lad_job_input(const lad_job *j, size_t i) { return i < j->nmodels ? j->refs[i] : NULL; }
const char *lad_job_role(const lad_job *j, size_t i) { return i < j->nmodels ? j->roles[i] : NULL; }

void lad_job_set_progress(lad_job *j, lad_progress_fn fn, void *ctx)
{
    j->progress = fn;
    j->progress_ctx = ctx;
}

static int open_path(void *ctx, const char *ref, lad_model **out, lad_error *err)
{
    (void)ctx;
    return lad_model_open(ref, out, err);
}

int lad_job_plan(lad_job *j, lad_open_fn open, void *ctx, lad_plan **out, lad_error *err)
{
    if (j->models)
        return lad_fail(err, "this job is planned already");
    if (!open)
        open = open_path;
    size_t take = 0;
    for (size_t i = 0; j->o.take_unmergeable && !take && i < j->nmodels; i++)
        if (!strcmp(j->o.take_unmergeable, j->refs[i]) ||
            (!strcmp(j->o.take_unmergeable, "first") && i == 0))
            take = i + 1;
    if (j->o.take_unmergeable && !take)
        return lad_usage(err, "--take-unmergeable '%s' is not one of the inputs (name one as "
                              "given, or 'first')",
                         j->o.take_unmergeable);
    /* --tokenizer-source base | union | MODEL (or model:MODEL, mergekit's form) */
    const char *ts = j->o.tokenizer_source;
    lad_tokenizer_source tsrc = LAD_TOKENIZER_BASE;
    size_t tmodel = 0;
    if (ts && !strcmp(ts, "union")) {
        tsrc = LAD_TOKENIZER_UNION;
    } else if (ts && strcmp(ts, "base")) {
        const char *name = strncmp(ts, "model:", 6) ? ts : ts + 6;
        tsrc = LAD_TOKENIZER_MODEL;
        for (tmodel = 0; tmodel < j->nmodels && strcmp(name, j->refs[tmodel]); tmodel++)
            ;
        if (tmodel == j->nmodels)
            return lad_usage(err, "--tokenizer-source '%s' is not base, union or one of the "
                                  "inputs (name one as given)",
                             ts);
    }
    if (!(j->models = calloc(j->nmodels + 1, sizeof *j->models)))
        return lad_fail(err, "out of memory");
    for (size_t i = 0; i < j->nmodels; i++)
        if ((j->open_model ? j->open_model(j, i, &j->models[i], err)
                           : open(ctx, j->refs[i], &j->models[i], err)) != 0)
            return -1;
    uint64_t num_layers = 0;
    if (j->make_specs &&
        j->make_specs(j, j->models, &j->specs, &j->nspecs, &num_layers, err) != 0)
        return -1;
    lad_merge_request req = {
        .command = j->cmdline,
        .method_label = j->label,
        .models = j->models,
        .roles = j->roles,
        .nmodels = j->nmodels,
        .template_model = j->template_model,
        .template_only = j->template_only,
        .op = j->op,
        .schedule = j->schedule,
        .layers = j->o.layers,
        .nlayers = j->o.nlayers,
        .specs = j->specs,
        .nspecs = j->nspecs,
        .num_layers = num_layers,
        .params_json = j->params,
        .output = j->o.output,
        .has_out_dtype = j->o.has_dtype || j->has_out_dtype,
        .out_dtype = j->o.has_dtype ? j->o.dtype : j->out_dtype,
        .has_quant = j->o.has_quant,
        .quant = j->o.quant,
        .shard_size = j->o.shard_size,
        .part = j->o.part,
        .nparts = j->o.nparts,
        .threads = j->o.threads,
        .force = j->o.force,
        .take_unmergeable = take,
        .tokenizer_source = tsrc,
        .tokenizer_model = tmodel,
        .pad_multiple = j->o.pad_multiple,
        .token_rules = j->token_rules,
        .ntoken_rules = j->ntoken_rules,
        .chat_template = j->o.chat_template,
        .progress = j->progress,
        .progress_ctx = j->progress_ctx,
    };
    return lad_plan_build(&req, out, err);
}

/* The subspace methods' choice for a tensor: its matrix decomposed, or the
 * mean task vector (not 2-D, an embedding or head, excluded). */
static const char *treatment(const lad_plan_tensor *pt)
{
    const lad_op *op = pt->op;
    if (pt->kind != LAD_MERGE || !op ||
        (op->method != &lad_method_iso_c && op->method != &lad_method_tsv &&
         op->method != &lad_method_iso_cts && op->method != &lad_method_wudi))
        return NULL;
    return pt->ndim == 2 && op->param[ISO_MEAN_ONLY] == 0 ? " treatment=subspace"
                                                          : " treatment=mean";
}

int lad_job_describe(const lad_job *j, const lad_plan *p, size_t i, char *buf, size_t len,
                     lad_error *err)
{
    const char *name = lad_plan_tensor_at(p, i)->name;
    const char *how = treatment(lad_plan_tensor_at(p, i));
    lad_place place = lad_plan_tensor_place(p, i);
    size_t o;
    if (place.stack >= 0)
        o = (size_t)snprintf(buf, len, "t=%.6g stack=%d block=%u/%u", place.t, place.stack,
                             place.pos, place.len);
    else
        o = (size_t)snprintf(buf, len, "t=%.6g place=%s", place.t,
                             place.before ? "before" : "after");
    if (how && o < len)
        o += (size_t)snprintf(buf + o, len - o, "%s", how);
    if (o >= len)
        return 0;
    if (j->describe)
        return j->describe(j, name, &place, lad_plan_tensor_ctx(p, i), buf + o + 1, len - o - 1,
                           err) == 0
                   ? (buf[o] = ' ', 0)
                   : -1;
    const lad_schedule *s = j->schedule;
    if (!s || s->resolve)
        return 0;
    double values[LAD_SCHED_MAX_PARAMS];
    lad_sched_resolve(s, name, &place, values);
    for (int k = 0; k < s->nparams && o < len; k++)
        o += (size_t)snprintf(buf + o, len - o, " %s=%.6g", s->names[k], values[k]);
    return 0;
}

void lad_job_free(lad_job *j)
{
    if (!j)
        return;
    if (j->specs)
        j->free_specs(j->specs, j->nspecs);
    for (size_t i = 0; j->models && i < j->nmodels; i++)
        lad_model_close(j->models[i]);
    free(j->models);
    if (j->schedule)
        lad_sched_free(j->schedule);
    if (j->state && j->free_state)
        j->free_state(j->state);
    free(j->state);
    json_decref(j->params);
    free(j->refs);
    free(j->roles);
    for (int i = 0; j->argv && i < j->argc; i++)
        free(j->argv[i]);
    free(j->argv);
    free(j->cmdline);
    free(j->note);
    free(j);
}
