/*
 * The planner: turns a merge request into "output tensor T = method(inputs)"
 * and checks everything checkable before the first byte is written.
 *
 * The output has the template model's tensors in its order (file, then
 * offset). Every other model must hold the same tensor names with the same
 * shapes; the one tolerated difference is a tied lm_head.weight that a model
 * omits because its config ties it to the input embeddings, as transformers
 * saves it: that model's embedding stands in for its head.
 */
#include "plan.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char *const HEAD = "lm_head.weight";
static const char *const EMBEDDINGS[] = {
    "model.embed_tokens.weight", "transformer.wte.weight", "model.decoder.embed_tokens.weight",
    "embed_tokens.weight", "transformer.word_embeddings.weight", "gpt_neox.embed_in.weight",
    "tok_embeddings.weight", "embeddings.word_embeddings.weight", "model.embed_in.weight",
};

static bool config_ties(const lad_model *m)
{
    if (!m->config)
        return false;
    json_t *tie = json_object_get(m->config, "tie_word_embeddings");
    return !tie || json_is_true(tie); /* transformers' default is to tie */
}

static const lad_tensor *tied_embedding(const lad_model *m)
{
    for (size_t i = 0; i < sizeof EMBEDDINGS / sizeof *EMBEDDINGS; i++) {
        const lad_tensor *t = lad_model_find(m, EMBEDDINGS[i]);
        if (t)
            return t;
    }
    return NULL;
}

/* The tensor standing for `name` in model m, or NULL with err set. */
static const lad_tensor *resolve(const lad_model *m, const char *name, const lad_model *tmpl,
                                 lad_error *err)
{
    const lad_tensor *t = lad_model_find(m, name);
    if (t)
        return t;
    if (strcmp(name, HEAD) == 0) {
        if (!config_ties(m)) {
            lad_fail(err, "tensor '%s' is in %s but not in %s, and %s does not say its "
                          "embeddings are tied (no config.json with tie_word_embeddings)",
                     name, tmpl->ref, m->ref, m->ref);
            return NULL;
        }
        if ((t = tied_embedding(m)))
            return t;
        lad_fail(err, "%s ties lm_head.weight to its input embeddings, but none of the known "
                      "embedding tensors is in it",
                 m->ref);
        return NULL;
    }
    lad_fail(err, "tensor '%s' is in %s but not in %s; the models must share one "
                  "architecture",
             name, tmpl->ref, m->ref);
    return NULL;
}

/* The same dimensions, but perhaps the first (a scalar has none). */
static bool a_rows_only(const lad_tensor *a, const lad_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 1; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

/* Does input t fit an output shaped as first, but for its first dimension
 * (rows: the output's vocabulary), which t's rows map to when mapped? */
static bool fits(const lad_tensor *first, const lad_tensor *t, uint64_t rows, bool mapped)
{
    if (!a_rows_only(first, t))
        return false;
    return first->ndim == 0 || mapped || t->shape[0] == rows;
}

/* gpt-oss's experts: one input MXFP4 ([..., R, C], as stored), the other
 * in transformers' dequantised layout ([..., C, R]: what
 * convert_moe_packed_tensors returns and gpt-oss checkpoints in bf16 hold,
 * and what ladle writes). Square ones too: beside an MXFP4 expert, a plain
 * tensor of that name is always in that layout. */
static bool swapped_layout(const lad_tensor *a, const lad_tensor *b)
{
    int n = a->ndim;
    if (n < 2 || b->ndim != n || (a->q.scheme != LAD_Q_MXFP4) == (b->q.scheme != LAD_Q_MXFP4))
        return false;
    for (int d = 0; d < n - 2; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return a->shape[n - 2] == b->shape[n - 1] && a->shape[n - 1] == b->shape[n - 2];
}

static void shape_str(const lad_tensor *t, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < t->ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)t->shape[d]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

/* The op of tensor i from the schedule: parameters resolved at its depth. */
static int resolve_op(lad_plan *p, size_t i, const char *name, lad_error *err)
{
    const lad_schedule *s = p->req.schedule;
    const lad_tensor_spec *spec = p->req.specs ? &p->req.specs[i] : NULL;
    double values[LAD_SCHED_MAX_PARAMS];
    lad_place place = lad_plan_tensor_place(p, i);
    lad_op *op = &p->ops[i];
    memset(op, 0, sizeof *op);
    int rc;
    if (s->resolve) {
        rc = s->resolve(name, &place, spec ? spec->ctx : NULL, op, s->ctx, err);
    } else {
        lad_sched_resolve(s, name, &place, values);
        rc = s->build(values, op, s->ctx, err);
    }
    if (rc != 0)
        return lad_fail_prefix(err, "tensor '%s': ", name);
    op->ninputs = spec ? spec->nin : p->req.nmodels;
    for (size_t k = 0; k < op->nparam; k++)
        op->paramf[k] = (float)op->param[k];
    p->t[i].op = op;
    return 0;
}

/* A quantised weight ladle could not pair with its scales, or a model
 * whose quantization_config ladle cannot read: refused, never copied from
 * one input while something else is merged (that corrupts the model). */
static int unreadable(const lad_model *m, const lad_tensor *t, lad_error *err)
{
    if (!t->q.problem)
        return 0;
    return lad_fail(err, "%s: tensor '%s' is %s, a quantised weight, but %s: ladle cannot merge "
                         "it; dequantise the inputs (e.g. to bf16) first",
                    m->ref, t->name, lad_dtype_name(t->dtype), t->q.problem);
}

static int unsupported_method(const lad_model *m, lad_error *err)
{
    if (!m->quant_method)
        return 0;
    return lad_fail(err, "%s: config.json's quantization_config (quant_method '%s') is not one "
                         "ladle reads (fp8, compressed-tensors FP8, fbgemm_fp8, mxfp4); "
                         "dequantise the inputs (e.g. to bf16) first",
                    m->ref, m->quant_method);
}

/* A GGUF output's merged tensor: --quant (matrices whose rows are whole
 * blocks), else --dtype, else the template's type: re-quantised with
 * ggml's reference quantiser where ladle has it (Q8_0, Q4_0), else Q8_0
 * (a warning says so). Quantised safetensors inputs (FP8, MXFP4) give
 * F32. */
static void gguf_output(lad_plan *p, lad_plan_tensor *pt, const lad_tensor *first)
{
    const lad_merge_request *r = &p->req;
    uint64_t cols = pt->ndim ? pt->shape[pt->ndim - 1] : 1;
    uint32_t t = LAD_GGML_F32;
    if (r->has_quant && pt->ndim >= 2 && cols % lad_ggml_block_size(r->quant) == 0)
        t = r->quant;
    else if (r->has_out_dtype)
        lad_ggml_from_dtype(r->out_dtype, &t);
    else if (first->q.scheme == LAD_Q_GGML)
        t = first->q.ggml_type;
    else if (!first->q.scheme)
        lad_ggml_from_dtype(first->dtype, &t);
    if (lad_ggml_is_block(t) && !lad_ggml_can_write(t)) {
        p->gguf_fallback++;
        p->gguf_fallback_type = t;
        t = LAD_GGML_Q8_0;
    }
    pt->ggml_type = t;
    pt->oq = lad_ggml_quant(t);
    if (pt->oq) {
        pt->out_dtype = LAD_U8;
        pt->nbytes = pt->nelem / lad_ggml_block_size(t) * lad_ggml_type_size(t);
    } else {
        lad_ggml_dtype(t, &pt->out_dtype);
        pt->nbytes = pt->nelem * lad_dtype_bits(pt->out_dtype) / 8;
    }
}

/* The output of a merged tensor: its dtype, and the scheme it is
 * re-quantised in (the template's, unless --dtype; in memory, bf16; a
 * GGUF block type to anything but GGUF: f32, which holds its values
 * exactly). */
static int output_of(lad_plan *p, lad_plan_tensor *pt, const lad_tensor *first, lad_error *err)
{
    const lad_merge_request *r = &p->req;
    if (p->as_gguf) {
        gguf_output(p, pt, first);
        return 0;
    }
    if (first->q.scheme == LAD_Q_GGML && !r->has_out_dtype) {
        pt->out_dtype = LAD_F32;
        pt->oq = NULL;
        pt->nbytes = pt->nelem * 4;
        return 0;
    }
    pt->out_dtype = r->has_out_dtype ? r->out_dtype : first->dtype;
    pt->oq = NULL;
    (void)err;
    if (first->q.scheme == LAD_Q_MXFP4 && (r->has_out_dtype || !r->output)) {
        /* dequantised experts in transformers' layout, as its
         * convert_moe_packed_tensors returns them: the last two dims swapped */
        pt->transpose = true;
        pt->shape[pt->ndim - 1] = first->shape[pt->ndim - 2];
        pt->shape[pt->ndim - 2] = first->shape[pt->ndim - 1];
    }
    if (first->q.scheme && !r->has_out_dtype) {
        if (!r->output) {
            pt->out_dtype = LAD_BF16; /* in memory: the dequantised values */
        } else {
            pt->oq = &first->q;
            pt->scale_dtype = first->q.scales->dtype;
            pt->scale_nbytes = first->q.scales->nbytes;
        }
    }
    pt->nbytes = pt->nelem * lad_dtype_bits(pt->out_dtype) / 8;
    return 0;
}

/* Do every input's bytes of an unmergeable tensor equal first's? Read in
 * chunks: such tensors are small, but need not be. */
static int same_bytes(const lad_plan_tensor *pt, const lad_tensor *first, const lad_model *fm,
                      const lad_model *const *in_model, lad_error *err)
{
    enum { STEP = 1 << 20 };
    unsigned char *a = NULL, *b = NULL;
    int rc = 0;
    for (size_t j = 0; j < pt->nin && rc == 0; j++) {
        const lad_tensor *t = pt->in[j];
        if (t == first || (t->file == first->file && t->offset == first->offset))
            continue;
        if (!a && (!(a = malloc(STEP)) || !(b = malloc(STEP)))) {
            rc = lad_fail(err, "out of memory");
            break;
        }
        for (uint64_t at = 0; at < first->nbytes && rc == 0; at += STEP) {
            size_t n = (size_t)(first->nbytes - at < STEP ? first->nbytes - at : STEP);
            if (lad_file_read(first->file, a, n, first->offset + at, err) ||
                lad_file_read(t->file, b, n, t->offset + at, err))
                rc = lad_fail_prefix(err, "tensor '%s': ", pt->name);
            else if (memcmp(a, b, n))
                rc = lad_fail(err, "tensor '%s' is %s, which %s, and %s and %s "
                                   "hold different values for it; choose one with "
                                   "--take-unmergeable MODEL",
                              pt->name, lad_tensor_type_name(first),
                              first->q.ggml_type ? "ladle cannot read" : "cannot be merged", fm->ref,
                              in_model[j]->ref);
        }
    }
    free(a);
    free(b);
    return rc;
}

/* Fills p->t[i] once pt->in[0..nin) are set: shapes, dtypes, kind, op.
 * in_model[j] names input j's model for errors; `first` is the input whose
 * dtype and non-float data the output takes. */
static int finish_tensor(lad_plan *p, size_t i, const char *name, const lad_model *const *in_model,
                         const size_t *model_of, size_t first_in, lad_error *err);

/* Fills p->t[i] for output tensor `name` of the template (or an added
 * lm_head), its inputs found by name in every model. */
static int plan_tensor(lad_plan *p, size_t i, const char *name, lad_error *err)
{
    const lad_merge_request *r = &p->req;
    const lad_model *tmpl = r->models[r->template_model];
    lad_plan_tensor *pt = &p->t[i];
    pt->name = name;
    pt->in = p->inptrs + i * p->max_in;
    pt->nin = r->nmodels;
    for (size_t j = 0; j < r->nmodels; j++) {
        if (!(pt->in[j] = resolve(r->models[j], name, tmpl, err)))
            return -1;
    }
    return finish_tensor(p, i, name, (const lad_model *const *)r->models, p->model_ids,
                         r->template_model, err);
}

/* Fills p->t[i] from an explicit spec: inputs by model and name. */
static int plan_spec(lad_plan *p, size_t i, lad_error *err)
{
    const lad_merge_request *r = &p->req;
    const lad_tensor_spec *s = &r->specs[i];
    lad_plan_tensor *pt = &p->t[i];
    const lad_model *in_model[LAD_SPEC_MAX_IN];
    size_t model_of[LAD_SPEC_MAX_IN];
    pt->name = s->name;
    pt->in = p->inptrs + i * p->max_in;
    pt->nin = s->nin;
    for (size_t j = 0; j < s->nin; j++) {
        in_model[j] = r->models[s->model[j]];
        model_of[j] = s->model[j];
        if (!(pt->in[j] = lad_model_find(in_model[j], s->in_name[j])))
            return lad_fail(err, "tensor '%s' (for output '%s') is not in %s", s->in_name[j],
                            s->name, in_model[j]->ref);
    }
    return finish_tensor(p, i, s->name, in_model, model_of, 0, err);
}

/* A template without values (soup --partial-sum): its tensor gave the
 * shape and the output dtype; the op's inputs are the others. */
static int drop_template(lad_plan_tensor *pt, const char *name, lad_error *err)
{
    if (pt->rows)
        return lad_fail(err, "tensor '%s': the models' vocabularies differ, which a partial sum "
                             "cannot carry; merge the ingredients themselves",
                        name);
    pt->in++;
    pt->nin--;
    pt->swapped >>= 1;
    return 0;
}

static int finish_tensor(lad_plan *p, size_t i, const char *name, const lad_model *const *in_model,
                         const size_t *model_of, size_t first_in, lad_error *err)
{
    const lad_merge_request *r = &p->req;
    lad_plan_tensor *pt = &p->t[i];
    const lad_tensor *first = pt->in[first_in];
    const lad_model *tmpl = in_model[first_in];
    if (r->copy_all && first->lora)
        return lad_fail(err, "%s: tensor '%s' has a LoRA delta, which a copy of the stored "
                             "tensors leaves out; apply it with a merge (ladle lora apply)",
                        tmpl->ref, first->name);
    if (r->copy_all) { /* a save: the tensor as stored (MXFP4 blocks as U8) */
        bool packed = first->q.phys_name != NULL;
        pt->kind = LAD_COPY;
        pt->name = packed ? first->q.phys_name : first->name;
        pt->ndim = packed ? first->q.phys_ndim : first->ndim;
        memcpy(pt->shape, packed ? first->q.phys_shape : first->shape, sizeof pt->shape);
        pt->nelem = first->nelem;
        pt->out_dtype = packed ? LAD_U8 : first->dtype;
        pt->nbytes = first->nbytes;
        if (first->q.ggml_type && !p->as_gguf)
            return lad_fail(err, "%s: tensor '%s' is %s, GGUF blocks, which only a .gguf "
                                 "output holds as stored; merge it (values come dequantised) "
                                 "or write OUT.gguf",
                            tmpl->ref, first->name, lad_tensor_type_name(first));
        if (p->as_gguf && !(pt->ggml_type = first->q.ggml_type) &&
            !lad_ggml_from_dtype(pt->out_dtype, &pt->ggml_type))
            return lad_fail(err, "%s: tensor '%s' is %s, which a GGUF file cannot hold",
                            tmpl->ref, first->name, lad_dtype_name(pt->out_dtype));
        p->bytes_in += pt->nbytes;
        p->bytes_out += pt->nbytes;
        return 0;
    }
    /* Embeddings and heads: rows matched by token (vocab.c). */
    uint64_t rows;
    if (lad_vocab_plan(p, pt, in_model, first_in, model_of, &rows, err) != 0)
        return -1;
    for (size_t j = 0; j < pt->nin; j++) {
        char sa[256], sb[256];
        const lad_tensor *t = pt->in[j];
        if (unreadable(in_model[j], t, err))
            return -1;
        if (swapped_layout(first, t) && j < 64) {
            pt->swapped |= 1ull << j; /* read as the transpose of how it is stored */
        } else if (!fits(first, t, rows, pt->rows && pt->rows[j])) {
            shape_str(first, sa, sizeof sa);
            shape_str(t, sb, sizeof sb);
            return lad_fail(err, "tensor '%s' has shape %s in %s but %s in %s", name, sa,
                            tmpl->ref, sb, in_model[j]->ref);
        }
        bool ma = lad_tensor_mergeable(first), mb = lad_tensor_mergeable(t);
        if (ma != mb || (!ma && (first->dtype != t->dtype ||
                                 first->q.ggml_type != t->q.ggml_type)))
            return lad_fail(err, "tensor '%s' is %s in %s but %s in %s", name,
                            lad_tensor_type_name(first), tmpl->ref, lad_tensor_type_name(t),
                            in_model[j]->ref);
    }
    pt->ndim = first->ndim;
    memcpy(pt->shape, first->shape, sizeof pt->shape);
    pt->nelem = first->nelem;
    if (pt->ndim && rows != pt->shape[0]) { /* the output's vocabulary */
        pt->nelem = first->shape[0] ? first->nelem / first->shape[0] * rows : 0;
        pt->shape[0] = rows;
    }
    if (lad_tensor_mergeable(first)) {
        pt->kind = LAD_MERGE;
        pt->op = &p->req.op;
        if (r->schedule && resolve_op(p, i, name, err) != 0)
            return -1;
        if (output_of(p, pt, first, err) != 0)
            return -1;
        if (r->template_only && drop_template(pt, name, err) != 0)
            return -1;
    } else {
        /* Integer and bool tensors: copied unchanged (position ids must
         * never become floats), from the template when every input holds
         * the same bytes, else from the model the user named. */
        if (r->take_unmergeable && !r->specs) {
            first = pt->in[r->take_unmergeable - 1];
        } else if (same_bytes(pt, first, tmpl, in_model, err) != 0) {
            return -1;
        }
        pt->kind = LAD_COPY;
        pt->in[0] = first;
        pt->nin = 1;
        pt->out_dtype = first->dtype;
        pt->nbytes = first->nbytes;
        if (p->as_gguf && !(pt->ggml_type = first->q.ggml_type) &&
            !lad_ggml_from_dtype(first->dtype, &pt->ggml_type))
            return lad_fail(err, "tensor '%s' is %s, which a GGUF file cannot hold; write a "
                                 ".safetensors output instead",
                            name, lad_dtype_name(first->dtype));
        if (!p->as_gguf && first->q.ggml_type)
            return lad_fail(err, "tensor '%s' is %s, a GGUF type ladle cannot read, which only "
                                 "a .gguf output can hold; write OUT.gguf",
                            name, lad_tensor_type_name(first));
    }
    for (size_t j = 0; j < pt->nin; j++)
        p->bytes_in += pt->in[j]->nbytes + (pt->in[j]->q.scales ? pt->in[j]->q.scales->nbytes : 0);
    p->bytes_out += pt->nbytes + pt->scale_nbytes;
    return 0;
}

/* Every tensor of every model must be in the output (nothing dropped
 * silently), apart from a head the template ties. */
static int check_no_extra(const lad_plan *p, lad_error *err)
{
    const lad_merge_request *r = &p->req;
    const lad_model *tmpl = r->models[r->template_model];
    for (size_t j = 0; j < r->nmodels; j++) {
        const lad_model *m = r->models[j];
        for (size_t k = 0; k < m->ntensors; k++) {
            const char *name = m->tensors[k].name;
            if (m->tensors[k].hidden) /* scales: they travel with their weight */
                continue;
            if (!lad_model_find(tmpl, name) && strcmp(name, HEAD) != 0)
                return lad_fail(err, "tensor '%s' is in %s but not in %s; the models must "
                                     "share one architecture",
                                name, m->ref, tmpl->ref);
        }
    }
    return 0;
}

static int check_output_path(const lad_plan *p, lad_error *err)
{
    const lad_merge_request *r = &p->req;
    char *out = lad_abspath(r->output);
    if (!out)
        return lad_fail(err, "%s: the folder that would hold the output does not exist",
                        r->output);
    int rc = 0;
    for (size_t j = 0; j < r->nmodels && rc == 0; j++) {
        const lad_model *m = r->models[j];
        if (!m->nfiles || m->files[0].mem)
            continue; /* held in memory */
        char *in = lad_abspath(m->dir ? m->dir : m->files[0].path);
        if (!in)
            rc = lad_fail(err, "out of memory");
        else if (lad_path_within(out, in))
            rc = lad_fail(err, "output %s is %s input %s; choose another output path",
                          r->output, strcmp(out, in) ? "inside" : "the same as", m->ref);
        else if (lad_path_within(in, out))
            rc = lad_fail(err, "output %s would replace the folder holding input %s; choose "
                               "another output path",
                          r->output, m->ref);
        /* Shards of an index may live elsewhere only via links; check them too. */
        for (size_t f = 0; f < m->nfiles && rc == 0; f++) {
            char *fp = lad_abspath(m->files[f].path);
            if (fp && (lad_path_within(fp, out) || lad_path_within(out, fp)))
                rc = lad_fail(err, "output %s overlaps input file %s; choose another output "
                                   "path",
                              r->output, m->files[f].path);
            free(fp);
        }
        free(in);
    }
    free(out);
    return rc;
}

static int check_stacks(const lad_plan *p, const lad_model *m, lad_error *err)
{
    const lad_structure *st = p->structure;
    size_t n = lad_structure_nstacks(st);
    if (n == 0)
        return lad_fail(err, "%s: no stacks of numbered blocks in its tensor names (such as "
                             "model.layers.N.*), so a gradient or a layer group has no layers to "
                             "run across; name them with --layers REGEX (one capture group: the "
                             "block index), or give a single value",
                        m->ref);
    json_t *cfg = m->config ? json_object_get(m->config, "num_hidden_layers") : NULL;
    uint32_t len = lad_structure_stack(st, 0)->len;
    if (n == 1 && json_is_integer(cfg) && json_integer_value(cfg) != (json_int_t)len)
        return lad_fail(err, "%s: config.json gives %lld layers but the tensors number %u "
                             "('%s'), so a gradient would give them the wrong values",
                        m->ref, (long long)json_integer_value(cfg), len,
                        lad_structure_stack(st, 0)->name);
    return 0;
}

/* A --set naming a layer group must select something: a range past the
 * model's blocks is a mistake, never a silent no-op. */
static int check_overrides(const lad_plan *p, lad_error *err)
{
    const lad_schedule *s = p->req.schedule;
    for (size_t o = 0; o < s->nover; o++) {
        bool layered = false, any = false;
        if (lad_pattern_check(s->over[o].pattern, &layered, err) != 0)
            return -1;
        for (size_t i = 0; layered && !any && i < p->n; i++) {
            lad_place place = lad_plan_tensor_place(p, i);
            any = lad_pattern_matches(s->over[o].pattern, p->t[i].name, &place);
        }
        if (layered && !any)
            return lad_fail(err, "--set '%s:%s=...' selects no tensor of %s", s->over[o].pattern,
                            s->names[s->over[o].param],
                            p->req.models[p->req.template_model]->ref);
    }
    return 0;
}

/* A GGUF output: one file, each tensor at the previous one's end rounded
 * up to the template's alignment. */
static int layout_gguf(lad_plan *p, lad_error *err)
{
    const lad_model *tmpl = p->req.models[p->req.template_model];
    uint64_t a = lad_gguf_alignment(tmpl->nfiles ? &tmpl->files[0] : NULL), at = 0;
    if (!(p->shards = calloc(1, sizeof *p->shards)) ||
        !(p->shards[0].fname = lad_strdup("model.gguf")))
        return lad_fail(err, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        p->t[i].shard = 0;
        p->t[i].offset = at;
        at = (at + p->t[i].nbytes + a - 1) / a * a;
    }
    p->shards[0] = (lad_shard){p->shards[0].fname, 0, p->n, at};
    p->nshards = 1;
    if (p->gguf_fallback)
        return lad_plan_warn(p, lad_asprintf("%zu tensors are %s, which ladle cannot write: "
                                             "they are written as Q8_0 (--quant chooses another "
                                             "type)",
                                             p->gguf_fallback,
                                             lad_ggml_type_name(p->gguf_fallback_type)),
                             err);
    return 0;
}

static int layout_shards(lad_plan *p, lad_error *err)
{
    if (p->as_gguf)
        return layout_gguf(p, err);
    uint64_t limit = p->as_dir ? p->req.shard_size : 0;
    p->shards = calloc(p->n + 1, sizeof *p->shards);
    if (!p->shards)
        return lad_fail(err, "out of memory");
    size_t ns = 0;
    if (p->n == 0)
        p->shards[ns++] = (lad_shard){0};
    for (size_t i = 0; i < p->n; i++) {
        /* As transformers does: start a new shard when this tensor would
         * overflow a non-empty one; a tensor over the limit gets its own. */
        uint64_t bytes = p->t[i].nbytes + p->t[i].scale_nbytes; /* codes, then scales */
        if (ns == 0 || (limit && p->shards[ns - 1].count &&
                        p->shards[ns - 1].data_bytes + bytes > limit)) {
            p->shards[ns].first = i;
            ns++;
        }
        lad_shard *s = &p->shards[ns - 1];
        p->t[i].shard = ns - 1;
        p->t[i].offset = s->data_bytes;
        p->t[i].scale_offset = s->data_bytes + p->t[i].nbytes;
        s->data_bytes += bytes;
        s->count++;
    }
    p->nshards = ns;
    for (size_t s = 0; s < ns; s++) {
        p->shards[s].fname = ns == 1 ? lad_strdup("model.safetensors")
                                     : lad_asprintf("model-%05zu-of-%05zu.safetensors", s + 1, ns);
        if (!p->shards[s].fname)
            return lad_fail(err, "out of memory");
    }
    return 0;
}

/* --part: shard s goes to the part whose share of the output's bytes holds
 * the shard's middle byte, so parts are contiguous runs of shards balanced
 * by bytes, and every process computes the same assignment from the plan. */
static int assign_parts(lad_plan *p, lad_error *err)
{
    uint32_t n = p->req.nparts;
    if (!n)
        return 0;
    if (!p->as_dir || p->as_gguf)
        return lad_usage(err, "--part writes some of a Hugging Face folder's shards: give a "
                              "folder output (-o NAME, not a .safetensors or .gguf file)");
    for (size_t i = 0; i < p->n; i++) {
        const lad_op *op = p->t[i].op;
        if (p->t[i].kind == LAD_MERGE && op && op->method->model_scope &&
            op->method->model_scope(op))
            return lad_usage(err, "--part: trimming over the whole model (--trim-scope model) "
                                  "needs every tensor's statistics in one process; merge it "
                                  "on one machine");
    }
    if (!(p->shard_part = calloc(p->nshards + 1, sizeof *p->shard_part)))
        return lad_fail(err, "out of memory");
    uint64_t total = 0, at = 0;
    for (size_t s = 0; s < p->nshards; s++)
        total += p->shards[s].data_bytes;
    for (size_t s = 0; s < p->nshards; s++) {
        long double mid = (long double)at + (long double)p->shards[s].data_bytes / 2;
        uint32_t part = total ? (uint32_t)(mid * n / (long double)total) : 0;
        p->shard_part[s] = part < n ? part : n - 1;
        at += p->shards[s].data_bytes;
    }
    size_t mine = 0;
    for (size_t s = 0; s < p->nshards; s++)
        mine += p->shard_part[s] == p->req.part;
    if (mine == 0)
        return lad_plan_warn(p, lad_asprintf("part %u of %u has none of the output's %zu "
                                             "shards to write (a smaller --shard-size makes "
                                             "more)",
                                             p->req.part + 1, n, p->nshards),
                             err);
    return 0;
}

uint32_t lad_plan_nparts(const lad_plan *p) { return p->req.nparts; }

bool lad_plan_in_part(const lad_plan *p, size_t tensor)
{
    return !p->req.nparts || p->shard_part[p->t[tensor].shard] == p->req.part;
}

static json_t *build_recipe(const lad_plan *p)
{
    const lad_merge_request *r = &p->req;
    json_t *inputs = json_array();
    for (size_t j = 0; j < r->nmodels; j++)
        json_array_append_new(inputs, json_pack("{s:s, s:s, s:I}", "role", r->roles[j], "path",
                                                r->models[j]->ref, "bytes",
                                                (json_int_t)r->models[j]->total_bytes));
    return json_pack("{s:s, s:s, s:s, s:O, s:o, s:s}", "ladle_version", LADLE_VERSION,
                     "command", r->command ? r->command : "", "method", r->method_label,
                     "parameters", r->params_json ? r->params_json : json_object(), "inputs",
                     inputs, "dtype",
                     r->has_out_dtype ? lad_dtype_name(r->out_dtype) : "as input");
}

int lad_plan_build(const lad_merge_request *req, lad_plan **out, lad_error *err)
{
    if (req->nmodels == 0 || req->template_model >= req->nmodels ||
        req->take_unmergeable > req->nmodels)
        return lad_fail(err, "no input models");
    lad_plan *p = calloc(1, sizeof *p);
    if (!p)
        return lad_fail(err, "out of memory");
    p->req = *req;
    p->as_gguf = req->output && lad_ends_with(req->output, ".gguf");
    p->as_dir = req->output && !lad_ends_with(req->output, ".safetensors") && !p->as_gguf;
    if (req->has_quant && !p->as_gguf) {
        free(p);
        return lad_usage(err, "--quant is for GGUF outputs (OUT ending in .gguf); use --dtype "
                              "for safetensors");
    }
    if (req->template_only && (req->template_model != 0 || req->nmodels < 2 || req->specs ||
                               req->schedule || req->copy_all)) {
        free(p);
        return lad_fail(err, "a template without values needs it first, an input after it, "
                             "and one op for every tensor");
    }
    if (req->template_only)
        p->req.op.ninputs = req->nmodels - 1;
    const lad_model *tmpl = req->models[req->template_model];

    /* The template's tensors, plus a head it ties but another model has. */
    bool add_head = !lad_model_find(tmpl, HEAD);
    if (add_head) {
        add_head = false;
        for (size_t j = 0; j < req->nmodels; j++)
            add_head |= lad_model_find(req->models[j], HEAD) != NULL;
    }
    size_t shown = 0;
    for (size_t i = 0; i < tmpl->ntensors; i++)
        shown += !tmpl->tensors[i].hidden || req->copy_all;
    p->n = shown + add_head;
    p->untie_head = add_head;
    if (req->specs) {
        p->n = req->nspecs;
        p->untie_head = false;
    }
    p->max_in = req->nmodels;
    for (size_t i = 0; req->specs && i < req->nspecs; i++)
        p->max_in = req->specs[i].nin > p->max_in ? req->specs[i].nin : p->max_in;
    p->t = calloc(p->n + 1, sizeof *p->t);
    p->inptrs = calloc((p->n + 1) * p->max_in, sizeof *p->inptrs);
    if (req->schedule)
        p->ops = calloc(p->n + 1, sizeof *p->ops);
    p->model_ids = calloc(req->nmodels, sizeof *p->model_ids);
    for (size_t j = 0; p->model_ids && j < req->nmodels; j++)
        p->model_ids[j] = j;
    int rc = (!p->t || !p->inptrs || !p->model_ids || (req->schedule && !p->ops))
                 ? lad_fail(err, "out of memory")
                 : 0;
    if (rc == 0)
        rc = lad_structure_build(tmpl, req->layers, req->nlayers, &p->structure, err);
    for (size_t j = 0; rc == 0 && !req->copy_all && j < req->nmodels; j++)
        rc = unsupported_method(req->models[j], err);
    /* A gradient or a layer group must land on the model's own stacks:
     * refuse rather than guess when there are none. */
    if (rc == 0 && req->schedule && !req->specs && lad_sched_needs_layers(req->schedule))
        rc = check_stacks(p, tmpl, err);
    if (req->specs) {
        for (size_t i = 0; i < req->nspecs && rc == 0; i++)
            rc = plan_spec(p, i, err);
    } else {
        for (size_t i = 0, k = 0; i < tmpl->ntensors && rc == 0; i++)
            if (!tmpl->tensors[i].hidden || req->copy_all)
                rc = plan_tensor(p, k++, tmpl->tensors[i].name, err);
        if (rc == 0 && add_head)
            rc = plan_tensor(p, p->n - 1, HEAD, err);
        if (rc == 0)
            rc = check_no_extra(p, err);
    }
    if (rc == 0 && req->schedule && !req->schedule->resolve)
        rc = check_overrides(p, err);
    if (rc == 0)
        rc = lad_vocab_warnings(p, err);
    if (rc == 0)
        rc = lad_plan_chat_template(p, err);
    if (rc == 0 && req->output)
        rc = check_output_path(p, err);
    if (rc == 0)
        rc = layout_shards(p, err);
    if (rc == 0)
        rc = assign_parts(p, err);
    if (rc == 0 && !(p->recipe = build_recipe(p)))
        rc = lad_fail(err, "out of memory");
    if (rc) {
        lad_plan_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

void lad_plan_free(lad_plan *p)
{
    if (!p)
        return;
    for (size_t s = 0; s < p->nshards; s++)
        free(p->shards[s].fname);
    free(p->shards);
    free(p->shard_part);
    free(p->t);
    free(p->inptrs);
    free(p->ops);
    lad_structure_free(p->structure);
    json_decref(p->recipe);
    lad_vocabs_free(p->vocabs);
    free(p->model_ids);
    free(p->chat_template);
    for (size_t k = 0; k < p->nwarnings; k++)
        free(p->warnings[k]);
    free(p->warnings);
    free(p);
}

size_t lad_plan_ntensors(const lad_plan *p) { return p->n; }
uint64_t lad_plan_bytes_read(const lad_plan *p) { return p->bytes_in; }
uint64_t lad_plan_bytes_written(const lad_plan *p) { return p->bytes_out; }

const void *lad_plan_tensor_ctx(const lad_plan *p, size_t i)
{
    return p->req.specs ? p->req.specs[i].ctx : NULL;
}

lad_place lad_plan_tensor_place(const lad_plan *p, size_t i)
{
    if (p->req.specs)
        return p->req.specs[i].place;
    return lad_structure_place(p->structure, p->t[i].name);
}

const lad_structure *lad_plan_structure(const lad_plan *p) { return p->structure; }

size_t lad_plan_nwarnings(const lad_plan *p) { return p->nwarnings; }
const char *lad_plan_warning(const lad_plan *p, size_t i)
{
    return i < p->nwarnings ? p->warnings[i] : NULL;
}

int lad_plan_warn(lad_plan *p, char *msg, lad_error *err)
{
    char **grown = msg ? realloc(p->warnings, (p->nwarnings + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(msg);
        return lad_fail(err, "out of memory");
    }
    p->warnings = grown;
    p->warnings[p->nwarnings++] = msg;
    return 0;
}

const lad_plan_tensor *lad_plan_tensor_at(const lad_plan *p, size_t i) { return &p->t[i]; }

void lad_plan_tensor_info(const lad_plan *p, size_t i, lad_tensor_info *out)
{
    const lad_plan_tensor *t = &p->t[i];
    *out = (lad_tensor_info){.name = t->name, .dtype = t->out_dtype, .ndim = t->ndim,
                             .nbytes = t->nbytes};
    memcpy(out->shape, t->shape, sizeof out->shape);
}

int lad_save(const lad_model *m, const char *out, const char *metadata_json, bool force,
             uint64_t shard_size, lad_error *err)
{
    json_t *meta = NULL;
    if (metadata_json) {
        json_error_t je;
        meta = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &je);
        const char *k;
        json_t *v;
        bool strings = json_is_object(meta);
        json_object_foreach(meta, k, v) strings &= json_is_string(v);
        if (!strings) {
            json_decref(meta);
            return lad_fail(err, "%s: metadata must map names to strings (safetensors' "
                                 "__metadata__)",
                            out);
        }
    }
    lad_model *models[1] = {(lad_model *)m};
    const char *roles[1] = {"model"};
    lad_merge_request req = {.command = "", .method_label = "save", .models = models,
                             .roles = roles, .nmodels = 1, .output = out, .metadata = meta,
                             .copy_all = true, .force = force, .shard_size = shard_size};
    lad_plan *p = NULL;
    int rc = lad_plan_build(&req, &p, err);
    if (rc == 0)
        rc = lad_plan_execute(p, NULL, err);
    lad_plan_free(p);
    json_decref(meta);
    return rc;
}
