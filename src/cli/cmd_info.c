/* ladle info MODEL [--json]: what a model holds. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

static const char HELP[] =
    "usage: ladle info MODEL [--json]\n"
    "\n"
    "Validates MODEL (a .safetensors file, a PyTorch .bin/.pt checkpoint or a Hugging\n"
    "Face folder, sharded or not) and lists its tensors with dtype, shape and bytes,\n"
    "totals per dtype, and the files' __metadata__, and its stacks of blocks: where\n"
    "each tensor sits along the forward pass, as per-layer gradients and layer\n"
    "groups see it.\n"
    "\n"
    "      --json            print the same as JSON\n"
    "      --layers REGEX    name a stack: one capture group is the block index\n"
    "                        (repeatable; as merge commands take it)\n"
    "  -h, --help            this help\n";

enum { OPT_JSON = 1000, OPT_LAYERS };

typedef struct info_args {
    bool json;
    const char *layers[8];
    size_t nlayers;
} info_args;

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    info_args *a = ctx;
    if (id == OPT_JSON)
        a->json = true;
    if (id == OPT_LAYERS) {
        if (a->nlayers == sizeof a->layers / sizeof *a->layers)
            return lad_usage(err, "at most %zu --layers", a->nlayers);
        a->layers[a->nlayers++] = arg;
    }
    return 0;
}

static json_t *shape_json(int ndim, const uint64_t *shape)
{
    json_t *a = json_array();
    for (int d = 0; d < ndim; d++)
        json_array_append_new(a, json_integer((json_int_t)shape[d]));
    return a;
}

/* The stacks of blocks and what lies before and after them. */
static void print_structure(const lad_model *m, const lad_structure *st)
{
    size_t n = lad_structure_nstacks(st);
    if (n == 0)
        printf("\nno stacks of blocks: every tensor is outside them (a gradient or a layer "
               "group needs --layers REGEX)\n");
    else
        printf("\n%zu stack%s of blocks:\n", n, n == 1 ? "" : "s");
    for (size_t k = 0; k < n; k++) {
        const lad_stack_info *s = lad_structure_stack(st, k);
        printf("  %s: %u blocks", s->name, s->len);
        if (s->npresent != s->len)
            printf(" (%u present)", s->npresent);
        printf(", %llu tensors\n", (unsigned long long)s->ntensors);
    }
    for (int before = 1; before >= 0; before--) {
        size_t shown = 0, count = 0;
        for (size_t i = 0; i < m->ntensors; i++) {
            lad_place p = lad_structure_place(st, m->tensors[i].name);
            count += p.stack < 0 && p.before == before;
        }
        if (!count)
            continue;
        printf("%s the stacks (depth %d): %zu tensor%s:", before ? "before" : "after", !before,
               count, count == 1 ? "" : "s");
        for (size_t i = 0; i < m->ntensors && shown < 6; i++) {
            lad_place p = lad_structure_place(st, m->tensors[i].name);
            if (p.stack < 0 && p.before == before)
                printf("%s %s", shown++ ? "," : "", m->tensors[i].name);
        }
        printf("%s\n", count > shown ? ", ..." : "");
    }
}

static json_t *structure_json(const lad_model *m, const lad_structure *st)
{
    json_t *stacks = json_array(), *before = json_array(), *after = json_array();
    for (size_t k = 0; k < lad_structure_nstacks(st); k++) {
        const lad_stack_info *s = lad_structure_stack(st, k);
        json_array_append_new(stacks, json_pack("{s:s, s:i, s:i, s:I}", "name", s->name,
                                                "blocks", (int)s->len, "present",
                                                (int)s->npresent, "tensors",
                                                (json_int_t)s->ntensors));
    }
    for (size_t i = 0; i < m->ntensors; i++) {
        lad_place p = lad_structure_place(st, m->tensors[i].name);
        if (p.stack < 0)
            json_array_append_new(p.before ? before : after, json_string(m->tensors[i].name));
    }
    return json_pack("{s:o, s:o, s:o}", "stacks", stacks, "before", before, "after", after);
}

/* How a quantised weight, or the scales of one, is read. */
static void quant_note(const lad_model *m, const lad_tensor *t, char *buf, size_t len)
{
    buf[0] = 0;
    if (t->q.scheme == LAD_Q_GGML)
        snprintf(buf, len, "  ggml blocks, read as ggml dequantises them");
    else if (t->q.ggml_type)
        snprintf(buf, len, "  not mergeable: a ggml type ladle cannot read (copied when "
                           "every input holds the same bytes)");
    else if (t->q.scheme == LAD_Q_FP8_BLOCK)
        snprintf(buf, len, "  %s %ux%u, scales %s", lad_qscheme_name(t->q.scheme),
                 t->q.block[0], t->q.block[1], t->q.scales->name);
    else if (t->q.scheme)
        snprintf(buf, len, "  %s, scales %s", lad_qscheme_name(t->q.scheme), t->q.scales->name);
    else if (t->q.problem)
        snprintf(buf, len, "  not mergeable: %s", t->q.problem);
    for (size_t i = 0; t->hidden && i < m->ntensors; i++)
        if (m->tensors[i].q.scales == t)
            snprintf(buf, len, "  scales of %s", m->tensors[i].name);
}

static void print_text(const lad_model *m)
{
    /* totals per dtype, then per ggml type (GGUF) */
    enum { NTYPES = LAD_DTYPE_COUNT + LAD_GGML_COUNT };
    uint64_t bytes[NTYPES] = {0}, elems[NTYPES] = {0}, params = 0;
    printf("%-60s %-8s %-24s %14s\n", "tensor", "dtype", "shape", "bytes");
    for (size_t i = 0; i < m->ntensors; i++) {
        const lad_tensor *t = &m->tensors[i];
        lad_tensor_info ti; /* as stored: MXFP4 blocks as U8 */
        lad_model_tensor_info(m, i, &ti);
        char shape[128], note[512];
        int o = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < ti.ndim && o < (int)sizeof shape; d++)
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%llu", d ? ", " : "",
                          (unsigned long long)ti.shape[d]);
        if (o < (int)sizeof shape)
            snprintf(shape + o, sizeof shape - (size_t)o, "]");
        quant_note(m, t, note, sizeof note);
        bool ggml = t->q.ggml_type != 0;
        printf("%-60s %-8s %-24s %14llu%s\n", ti.name,
               ggml ? lad_tensor_type_name(t) : lad_dtype_name(ti.dtype), shape,
               (unsigned long long)t->nbytes, note);
        size_t k = ggml ? LAD_DTYPE_COUNT + t->q.ggml_type : (size_t)ti.dtype;
        bytes[k] += t->nbytes;
        elems[k] += t->nelem;
        params += t->hidden ? 0 : t->nelem;
    }
    char total[32];
    lad_format_bytes(m->total_bytes, total, sizeof total);
    printf("\n%zu tensors, %llu parameters, %zu file%s, %s on disk\n", m->ntensors,
           (unsigned long long)params, m->nfiles, m->nfiles == 1 ? "" : "s", total);
    for (int t = 0; t < NTYPES; t++)
        if (elems[t] || bytes[t])
            printf("  %-8s %14llu elements %16llu bytes\n",
                   t < LAD_DTYPE_COUNT ? lad_dtype_name((lad_dtype)t)
                                       : lad_ggml_type_name((uint32_t)(t - LAD_DTYPE_COUNT)),
                   (unsigned long long)elems[t], (unsigned long long)bytes[t]);
    for (size_t f = 0; f < m->nfiles; f++) {
        const char *k;
        json_t *v;
        if (!m->files[f].metadata)
            continue;
        printf("\nmetadata of %s:\n", m->files[f].path);
        json_object_foreach((json_t *)m->files[f].metadata, k, v)
            printf("  %s: %s\n", k, json_string_value(v));
    }
}

static int print_json(const lad_model *m, const lad_structure *st)
{
    json_t *tensors = json_array(), *files = json_array();
    uint64_t params = 0;
    for (size_t i = 0; i < m->ntensors; i++) {
        const lad_tensor *t = &m->tensors[i];
        lad_tensor_info ti;
        lad_model_tensor_info(m, i, &ti);
        params += t->hidden ? 0 : t->nelem;
        json_t *row = json_pack("{s:s, s:s, s:o, s:I, s:s}", "name", ti.name, "dtype",
                                t->q.ggml_type ? lad_tensor_type_name(t)
                                               : lad_dtype_name(ti.dtype),
                                "shape", shape_json(ti.ndim, ti.shape),
                                "bytes", (json_int_t)t->nbytes, "file", t->file->path);
        if (t->q.scheme == LAD_Q_GGML) {
            json_object_set_new(row, "quant", json_pack("{s:s, s:s}", "scheme", "ggml", "type",
                                                        lad_tensor_type_name(t)));
        } else if (t->q.ggml_type) {
            json_object_set_new(row, "not_mergeable",
                                json_string("a ggml type ladle cannot read"));
        } else if (t->q.scheme) {
            json_t *q = json_pack("{s:s, s:s, s:s}", "scheme", lad_qscheme_name(t->q.scheme),
                                  "scales", t->q.scales->name, "tensor", t->name);
            if (t->q.scheme == LAD_Q_FP8_BLOCK)
                json_object_set_new(q, "block", json_pack("[i, i]", (int)t->q.block[0],
                                                          (int)t->q.block[1]));
            json_object_set_new(row, "quant", q);
        } else if (t->q.problem) {
            json_object_set_new(row, "not_mergeable", json_string(t->q.problem));
        }
        for (size_t k = 0; t->hidden && k < m->ntensors; k++)
            if (m->tensors[k].q.scales == t)
                json_object_set_new(row, "scales_of", json_string(m->tensors[k].name));
        json_array_append_new(tensors, row);
    }
    for (size_t f = 0; f < m->nfiles; f++)
        json_array_append_new(files, json_pack("{s:s, s:I, s:O}", "path", m->files[f].path,
                                               "bytes", (json_int_t)m->files[f].size,
                                               "metadata",
                                               m->files[f].metadata ? m->files[f].metadata
                                                                    : json_null()));
    json_t *root = json_pack("{s:s, s:I, s:I, s:o, s:o, s:o}", "model", m->ref, "parameters",
                             (json_int_t)params, "bytes", (json_int_t)m->total_bytes, "files",
                             files, "tensors", tensors, "structure", structure_json(m, st));
    if (!root)
        return -1;
    json_dumpf(root, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(root);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    static const lad_optdef defs[] = {
        {"json", OPT_JSON, false}, {"layers", OPT_LAYERS, true}, {"help", 'h', false}, {0}};
    info_args a = {0};
    char *const *pos;
    int n, code;
    if (!cli_parse("info", HELP, argc, argv, defs, false, take, &a, &pos, &n, &code))
        return code;
    const char *ref = n == 1 ? pos[0] : NULL;
    free((void *)pos);
    if (!ref)
        return usage_error("info", "expected one MODEL");
    lad_model *m;
    lad_structure *st = NULL;
    lad_error err = {0};
    if (lad_model_open(ref, &m, &err) != 0)
        return report(&err);
    int rc = 0;
    if (lad_structure_build(m, a.layers, a.nlayers, &st, &err) != 0)
        rc = report_cmd("info", &err);
    else if (a.json)
        rc = print_json(m, st) ? report(&(lad_error){.msg = "out of memory"}) : 0;
    else {
        print_text(m);
        print_structure(m, st);
    }
    lad_structure_free(st);
    lad_model_close(m);
    if (fflush(stdout) != 0)
        rc = 1;
    return rc;
}
