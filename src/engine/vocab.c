/*
 * Vocabularies of different sizes or orders: the rows of embedding and head
 * tensors matched between models by token.
 *
 * The output's vocabulary is, as mergekit's tokenizer_source says:
 *   base      the tensor's first input's (the template: the base, or the
 *             first model), the default
 *   model     one input's (--tokenizer-source MODEL)
 *   union     the template's tokens, then every other input's tokens it
 *             lacks (model by model, in id order), then their added tokens
 * For every input, each output row reads the row of the same token, found
 * through both tokenizer.json files (by row number when one has none, or
 * when the two files are byte for byte the same; union needs them all).
 * Rows an input has but the output's vocabulary lacks are dropped; rows it
 * lacks are filled, as mergekit fills them: with the base's row when the
 * merge has a base that holds the token, else with the mean of the inputs
 * that hold it (rounded once to the input's dtype), else zeros. Every drop
 * and fill is reported by the plan.
 *
 * A tensor is a vocabulary tensor by its name (embed_tokens, wte,
 * word_embeddings, lm_head, ...) or when its first dimension is every
 * input's config.json vocab_size; only its first dimension may differ.
 */
#include "plan.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENIZER_BYTES (256u << 20)
#define EXAMPLES 3

enum { REL_UNKNOWN, REL_ROWS, REL_TOKENS };

/* What is known of one model's tokenizer.json. */
typedef struct model_vocab {
    int state;            /* 0: not looked at; 1: read; -1: none or unreadable */
    lad_vocab v;
    char *why;            /* state -1: why ("X has no tokenizer.json") */
} model_vocab;

/* How output rows (model a's) find model b's. */
typedef struct pair {
    int rel;              /* REL_ROWS: by row number; REL_TOKENS: by token */
    char *why;            /* REL_ROWS between different files: why not by token */
    /* What was done, for the warning: the first tensor's figures. */
    bool used;
    uint64_t dropped, filled, rows_out;
    int64_t drop_ex[EXAMPLES], fill_ex[EXAMPLES]; /* b's ids dropped, a's ids filled */
    bool reordered;
    char tensors[256];
    size_t ntensors;
} pair;

/* The vocabularies of models 0 .. n-1, and at n the union's. */
struct lad_vocabs {
    size_t n;
    model_vocab *mv;      /* per model, then the union */
    pair *pairs;          /* (n + 1) x n: [a * n + b], a = n: from the union */
    size_t union_base;    /* the union: ids below it are the template's */
    size_t *origin;       /* per union id from union_base on: the model it came from */
    int64_t **maps;       /* every row map handed out, for free */
    size_t nmaps, capmaps;
    struct lad_pad_cache **pads; /* every pad cache handed out, for free */
    size_t npads;
    uint64_t padded_from, padded_to; /* for the warning */
};

static char *tokenizer_path(const lad_model *m)
{
    return m->dir ? lad_asprintf("%s/tokenizer.json", m->dir) : NULL;
}

static bool file_exists(const char *path)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f)
        fclose(f);
    return f != NULL;
}

/* Loads model j's vocabulary once; a model without a readable one is
 * matched by row number, and the reason is kept for the warning. */
static model_vocab *vocab_of(lad_vocabs *vs, const lad_model *m, size_t j)
{
    model_vocab *mv = &vs->mv[j];
    if (mv->state)
        return mv;
    char *path = tokenizer_path(m);
    lad_error e = {0};
    if (!file_exists(path)) {
        mv->why = lad_asprintf("%s has no tokenizer.json", m->ref);
        mv->state = -1;
    } else if (lad_vocab_load(path, &mv->v, &e) != 0) {
        mv->why = lad_asprintf("%s", e.msg);
        mv->state = -1;
    } else {
        mv->state = 1;
    }
    free(path);
    return mv;
}

/* Are two files the same bytes? (Tokenizers of fine-tunes of one base
 * usually are; then they need not be parsed.) */
static bool same_file(const char *a, const char *b)
{
    char *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    lad_error e = {0};
    bool same = lad_read_file(a, MAX_TOKENIZER_BYTES, &ta, &la, &e) == 0 &&
                lad_read_file(b, MAX_TOKENIZER_BYTES, &tb, &lb, &e) == 0 && la == lb &&
                memcmp(ta, tb, la) == 0;
    free(ta);
    free(tb);
    return same;
}

/* How rows of vocabulary a (a model, or n: the union) find model b's. */
static pair *relation(lad_plan *p, size_t a, size_t b, lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    pair *pr = &vs->pairs[a * vs->n + b];
    if (pr->rel != REL_UNKNOWN)
        return pr;
    const lad_model *mb = p->req.models[b];
    if (a == vs->n) { /* the union: every row by token */
        model_vocab *vb = vocab_of(vs, mb, b);
        if (vb->state < 0) {
            lad_fail(err, "tokenizer_source union matches every input's rows by token, but %s",
                     vb->why);
            return NULL;
        }
        pr->rel = REL_TOKENS;
        return pr;
    }
    const lad_model *ma = p->req.models[a];
    pr->rel = REL_ROWS;
    char *pa = tokenizer_path(ma), *pb = tokenizer_path(mb);
    bool ea = file_exists(pa), eb = file_exists(pb);
    if (a == b || (ea && eb && same_file(pa, pb))) {
        pr->why = NULL;
    } else if (ea || eb) {
        model_vocab *va = vocab_of(vs, ma, a), *vb = vocab_of(vs, mb, b);
        if (va->state > 0 && vb->state > 0)
            pr->rel = REL_TOKENS;
        else
            pr->why = lad_strdup(va->state < 0 ? va->why : vb->why);
    } else {
        pr->why = lad_asprintf("neither %s nor %s has a tokenizer.json", ma->ref, mb->ref);
    }
    free(pa);
    free(pb);
    return pr;
}

/* Appends model m's tokens the union lacks, the plain ones (added = false)
 * or the added ones. */
static int union_add(lad_vocabs *vs, size_t m, bool added, lad_error *err)
{
    const lad_vocab *v = &vs->mv[m].v;
    lad_vocab *u = &vs->mv[vs->n].v;
    for (size_t id = 0; id < v->n; id++) {
        if (!v->tok[id] || (bool)v->added[id] != added ||
            lad_vocab_find(u, v->tok[id], v->len[id]) >= 0)
            continue;
        size_t *o = realloc(vs->origin, (u->n + 1 - vs->union_base) * sizeof *o);
        if (!o)
            return lad_fail(err, "out of memory");
        vs->origin = o;
        vs->origin[u->n - vs->union_base] = m;
        if (lad_vocab_append(u, v->tok[id], v->len[id], added, err))
            return -1;
    }
    return 0;
}

/* The union of the inputs' vocabularies, as mergekit builds it: the
 * template's (its ids kept), then the plain tokens of the others it
 * lacks, then their added tokens. */
static int build_union(lad_plan *p, lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    model_vocab *u = &vs->mv[vs->n];
    if (u->state)
        return 0;
    u->state = 1;
    size_t t = p->req.template_model;
    for (size_t j = 0; j < vs->n; j++) {
        model_vocab *mv = vocab_of(vs, p->req.models[j], j);
        if (mv->state < 0)
            return lad_fail(err, "tokenizer_source union builds the vocabulary from every "
                                 "input's tokenizer.json, but %s",
                            mv->why);
    }
    const lad_vocab *vt = &vs->mv[t].v;
    for (size_t id = 0; id < vt->n; id++) /* (a gap in its ids stays one) */
        if (lad_vocab_append(&u->v, vt->tok[id], vt->len[id], vt->added[id], err))
            return -1;
    vs->union_base = u->v.n;
    for (int added = 0; added < 2; added++)
        for (size_t j = 0; j < vs->n; j++)
            if (j != t && union_add(vs, j, added, err))
                return -1;
    return 0;
}

static const char *const VOCAB_SUFFIXES[] = {
    "embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight",
    "tok_embeddings.weight", "token_embd.weight", "lm_head.weight", "lm_head.bias",
    "embed_out.weight", "shared.weight",
};

bool lad_name_is_vocab(const char *name)
{
    if (strcmp(name, "output.weight") == 0)
        return true;
    for (size_t i = 0; i < sizeof VOCAB_SUFFIXES / sizeof *VOCAB_SUFFIXES; i++) {
        size_t n = strlen(name), s = strlen(VOCAB_SUFFIXES[i]);
        if (n >= s && strcmp(name + n - s, VOCAB_SUFFIXES[i]) == 0 &&
            (n == s || name[n - s - 1] == '.' || name[n - s - 1] == '_'))
            return true;
    }
    return false;
}

static json_int_t config_vocab(const lad_model *m)
{
    json_t *c = m->config, *v = c ? json_object_get(c, "vocab_size") : NULL;
    if (!json_is_integer(v) && c)
        v = json_object_get(json_object_get(c, "text_config"), "vocab_size");
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Same dimensions but the first? */
static bool rows_differ_only(const lad_tensor *a, const lad_tensor *b)
{
    if (a->ndim != b->ndim || a->ndim < 1)
        return false;
    for (int d = 1; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static bool is_vocab_tensor(const lad_plan_tensor *pt, const lad_tensor *first,
                            const lad_model *const *in_model)
{
    if (first->ndim < 1 || !lad_tensor_mergeable(first))
        return false;
    if (lad_name_is_vocab(pt->name))
        return true;
    if (first->ndim != 2)
        return false;
    for (size_t j = 0; j < pt->nin; j++) {
        json_int_t v = config_vocab(in_model[j]);
        if (v < 0 || (uint64_t)v != pt->in[j]->shape[0])
            return false;
    }
    return true;
}

static int keep_map(lad_vocabs *vs, int64_t *map, lad_error *err)
{
    if (vs->nmaps == vs->capmaps) {
        size_t cap = vs->capmaps ? vs->capmaps * 2 : 8;
        int64_t **grown = realloc(vs->maps, cap * sizeof *grown);
        if (!grown) {
            free(map);
            return lad_fail(err, "out of memory");
        }
        vs->maps = grown;
        vs->capmaps = cap;
    }
    vs->maps[vs->nmaps++] = map;
    return 0;
}

static void note_tensor(pair *pr, const char *name)
{
    size_t o = strlen(pr->tensors);
    if (pr->ntensors++ < 3)
        snprintf(pr->tensors + o, sizeof pr->tensors - o, "%s%s", o ? ", " : "", name);
}

/* The row map of input b (a tensor of Rb rows) for output rows [0, Ra) in
 * model a's vocabulary; NULL in *out when every row is its own. */
static int build_map(lad_plan *p, pair *pr, size_t a, size_t b, const char *name, uint64_t Ra,
                     uint64_t Rb, int64_t **out, lad_error *err)
{
    const lad_vocab *va = pr->rel == REL_TOKENS ? &p->vocabs->mv[a].v : NULL; /* a: or the union */
    const lad_vocab *vb = pr->rel == REL_TOKENS ? &p->vocabs->mv[b].v : NULL;
    int64_t *map = malloc((Ra + 1) * sizeof *map);
    unsigned char *seen = calloc(Rb + 1, 1);
    if (!map || !seen) {
        free(map);
        free(seen);
        return lad_fail(err, "out of memory");
    }
    bool identity = Ra == Rb, reordered = false;
    uint64_t filled = 0;
    int64_t fill_ex[EXAMPLES], drop_ex[EXAMPLES];
    for (uint64_t r = 0; r < Ra; r++) {
        int64_t src = (int64_t)r;
        if (va && r < va->n && va->tok[r])
            src = lad_vocab_find(vb, va->tok[r], va->len[r]);
        else if (va && r < vb->n && vb->tok[r])
            src = -1; /* a row without a token in a's, a token in b's */
        if (src >= (int64_t)Rb)
            src = -1;
        map[r] = src;
        identity &= src == (int64_t)r;
        reordered |= src >= 0 && src != (int64_t)r;
        if (src < 0) {
            if (filled < EXAMPLES)
                fill_ex[filled] = (int64_t)r;
            filled++;
        } else {
            seen[src] = 1;
        }
    }
    uint64_t dropped = 0;
    for (uint64_t s = 0; s < Rb && !identity; s++)
        if (!seen[s]) {
            if (dropped < EXAMPLES)
                drop_ex[dropped] = (int64_t)s;
            dropped++;
        }
    free(seen);
    if (identity) {
        free(map);
        *out = NULL;
        return 0;
    }
    if (!pr->used) {
        pr->used = true;
        pr->dropped = dropped;
        pr->filled = filled;
        pr->rows_out = Ra;
        pr->reordered = reordered;
        memcpy(pr->drop_ex, drop_ex, sizeof drop_ex);
        memcpy(pr->fill_ex, fill_ex, sizeof fill_ex);
    }
    note_tensor(pr, name);
    *out = map;
    return keep_map(p->vocabs, map, err);
}

static int init_vocabs(lad_plan *p, lad_error *err)
{
    size_t n = p->req.nmodels;
    lad_vocabs *vs = calloc(1, sizeof *vs);
    if (!vs || !(vs->mv = calloc(n + 1, sizeof *vs->mv)) ||
        !(vs->pairs = calloc((n + 1) * n, sizeof *vs->pairs))) {
        if (vs)
            free(vs->mv);
        free(vs);
        return lad_fail(err, "out of memory");
    }
    vs->n = n;
    p->vocabs = vs;
    return 0;
}

/* The output's vocabulary a (a model, or vs->n: the union), read. */
static const lad_vocab *output_vocab(lad_plan *p, size_t a, const char *why, lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    if (a == vs->n)
        return &vs->mv[a].v;
    model_vocab *mv = vocab_of(vs, p->req.models[a], a);
    if (mv->state < 0) {
        lad_fail(err, "%s needs the output vocabulary's tokenizer.json, but %s", why, mv->why);
        return NULL;
    }
    return &mv->v;
}

/* Model m's row of the output's token (output id r of vocabulary a): by
 * token through its tokenizer, else by row number; -1 if it has none. */
static int64_t row_of_token(lad_plan *p, size_t a, size_t m, uint64_t r, uint64_t rows,
                            lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    if (a == m)
        return r < rows ? (int64_t)r : -1;
    pair *pr = relation(p, a, m, err);
    if (!pr)
        return -2;
    int64_t src = (int64_t)r;
    if (pr->rel == REL_TOKENS) {
        const lad_vocab *va = &vs->mv[a].v;
        src = r < va->n && va->tok[r] ? lad_vocab_find(&vs->mv[m].v, va->tok[r], va->len[r])
                                      : -1;
    }
    return src >= 0 && (uint64_t)src < rows ? src : -1;
}

/* The token rules' sources for this tensor (rule_in, rule_row) and the
 * output rows they apply to (*rule_at, per rule). */
static int plan_rules(lad_plan *p, lad_plan_tensor *pt, size_t a, const size_t *model_of,
                      int **rin, int64_t **rrow, int64_t **rat, lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    size_t n = p->req.ntoken_rules;
    const lad_vocab *va = output_vocab(p, a, "tokenizer: tokens", err);
    if (!va)
        return -1;
    *rin = calloc(n + 1, sizeof **rin);
    *rrow = calloc(n + 1, sizeof **rrow);
    *rat = calloc(n + 1, sizeof **rat);
    if (!*rin || !*rrow || !*rat || keep_map(vs, (int64_t *)*rin, err) ||
        keep_map(vs, *rrow, err) || keep_map(vs, *rat, err))
        return lad_fail(err, "out of memory");
    for (size_t k = 0; k < n; k++) {
        const lad_token_rule *tr = &p->req.token_rules[k];
        int64_t at = lad_vocab_find(va, tr->token, strlen(tr->token));
        if (at < 0)
            return lad_fail(err, "tokenizer: tokens: '%s' is not in the output's vocabulary",
                            tr->token);
        (*rat)[k] = at;
        (*rin)[k] = -1;
        if (tr->kind == LAD_TOKEN_ZERO)
            continue;
        size_t j = 0;
        while (j < pt->nin && model_of[j] != tr->model)
            j++;
        const lad_model *m = p->req.models[tr->model];
        if (j == pt->nin)
            return lad_fail(err, "tensor '%s': tokenizer: tokens: '%s' comes from %s, which is "
                                 "not an input of it",
                            pt->name, tr->token, m->ref);
        uint64_t rows = pt->in[j]->shape[0];
        int64_t src;
        if (tr->kind == LAD_TOKEN_MODEL) {
            src = row_of_token(p, a, tr->model, (uint64_t)at, rows, err);
            if (src == -2)
                return -1;
            if (src < 0)
                return lad_fail(err, "tokenizer: tokens: %s has no token '%s'", m->ref,
                                tr->token);
        } else if (tr->src_token) {
            model_vocab *mv = vocab_of(vs, m, tr->model);
            if (mv->state < 0)
                return lad_fail(err, "tokenizer: tokens: '%s' takes %s's token '%s', but %s",
                                tr->token, m->ref, tr->src_token, mv->why);
            src = lad_vocab_find(&mv->v, tr->src_token, strlen(tr->src_token));
            if (src < 0 || (uint64_t)src >= rows)
                return lad_fail(err, "tokenizer: tokens: %s has no token '%s'", m->ref,
                                tr->src_token);
        } else {
            src = tr->src_id;
            if (src < 0 || (uint64_t)src >= rows)
                return lad_fail(err, "tokenizer: tokens: token id %lld is outside %s's %llu "
                                     "rows",
                                (long long)src, m->ref, (unsigned long long)rows);
        }
        (*rin)[k] = (int)j;
        (*rrow)[k] = src;
    }
    return 0;
}

int lad_vocab_plan(lad_plan *p, lad_plan_tensor *pt, const lad_model *const *in_model,
                   size_t first_in, const size_t *model_of, uint64_t *out_rows, lad_error *err)
{
    const lad_tensor *first = pt->in[first_in];
    pt->rows = NULL;
    pt->fill_from = -1;
    *out_rows = first->ndim ? first->shape[0] : 1;
    lad_tokenizer_source mode = p->req.tokenizer_source;
    bool extra = p->req.pad_multiple || p->req.ntoken_rules; /* pad or token rules */
    if (p->req.copy_all || (pt->nin < 2 && mode == LAD_TOKENIZER_BASE && !extra) ||
        !is_vocab_tensor(pt, first, in_model))
        return 0;
    if (!p->vocabs && init_vocabs(p, err))
        return -1;
    lad_vocabs *vs = p->vocabs;
    /* a: whose vocabulary the output has (vs->n: the union), and its rows */
    size_t a = mode == LAD_TOKENIZER_MODEL ? p->req.tokenizer_model
               : mode == LAD_TOKENIZER_UNION ? vs->n
                                             : model_of[first_in];
    uint64_t R = 0;
    if (a == vs->n) {
        if (build_union(p, err))
            return -1;
        R = vs->mv[vs->n].v.n;
    } else {
        bool found = false;
        for (size_t j = 0; j < pt->nin && !found; j++)
            if ((found = model_of[j] == a))
                R = pt->in[j]->shape[0];
        if (!found)
            return lad_fail(err, "tensor '%s': the tokenizer source %s has no input to it",
                            pt->name, p->req.models[a]->ref);
    }
    /* pad_to_multiple_of: the vocabulary's rows, rounded up; the rows past
     * it are each input's mean row (mergekit's PermutedEmbeddings) */
    uint64_t V = R, m = p->req.pad_multiple;
    if (m) { /* the tokenizer's size; without one, the rows' */
        model_vocab *mv = a == vs->n ? &vs->mv[a] : vocab_of(vs, p->req.models[a], a);
        V = mv->state > 0 ? mv->v.n : R;
        R = (V + m - 1) / m * m;
        vs->padded_from = V;
        vs->padded_to = R;
    }
    int *rin = NULL;
    int64_t *rrow = NULL, *rat = NULL;
    if (p->req.ntoken_rules && plan_rules(p, pt, a, model_of, &rin, &rrow, &rat, err))
        return -1;
    int64_t **rows = NULL;
    for (size_t j = 0; j < pt->nin; j++) {
        const lad_tensor *t = pt->in[j];
        if (!rows_differ_only(first, t))
            continue; /* other shapes: the planner's error */
        if (model_of[j] == a && t->shape[0] == R && !extra)
            continue; /* the output's own rows */
        pair *pr = relation(p, a, model_of[j], err);
        if (!pr)
            return -1;
        if (pr->rel == REL_ROWS && R == t->shape[0] && !extra)
            continue;
        int64_t *map = NULL;
        if ((model_of[j] != a || t->shape[0] != V) &&
            (pr->rel != REL_ROWS || V != t->shape[0]) &&
            build_map(p, pr, a, model_of[j], pt->name, V, t->shape[0], &map, err))
            return -1;
        if (extra) { /* rows past V, and the token rules */
            int64_t *full = malloc((R + 1) * sizeof *full);
            if (!full || keep_map(vs, full, err))
                return full ? -1 : lad_fail(err, "out of memory");
            for (uint64_t r = 0; r < R; r++)
                full[r] = r >= V ? LAD_ROW_PAD : map ? map[r] : (int64_t)r;
            for (size_t k = 0; k < p->req.ntoken_rules; k++)
                if (p->req.token_rules[k].force || full[rat[k]] < 0)
                    full[rat[k]] = LAD_ROW_RULE - (int64_t)k;
            map = full;
        }
        if (!map)
            continue;
        if (first->q.scheme || t->q.scheme || first->lora || t->lora)
            return lad_fail(err, "tensor '%s' is %s and its rows (vocabulary) differ "
                                 "between %s and the output; %s first",
                            pt->name, first->lora || t->lora ? "changed by a LoRA adapter"
                                                              : "quantised",
                            in_model[j]->ref,
                            first->lora || t->lora ? "apply the adapter (ladle lora apply)"
                                                   : "dequantise the inputs");
        if (!rows) {
            rows = calloc(pt->nin, sizeof *rows);
            if (!rows || keep_map(vs, (int64_t *)rows, err))
                return rows ? -1 : lad_fail(err, "out of memory");
        }
        rows[j] = map;
    }
    *out_rows = R;
    if (R > p->vocab_rows)
        p->vocab_rows = R;
    if (!rows)
        return 0;
    pt->rows = (const int64_t *const *)rows;
    pt->pad_from = V;
    pt->rule_in = rin;
    pt->rule_row = rrow;
    if (m) { /* the pad rows' means, computed by the engine on first use */
        struct lad_pad_cache *c = calloc(1, sizeof *c), **g;
        if (!c || !(c->mean = calloc(pt->nin, sizeof *c->mean)) ||
            pthread_mutex_init(&c->lock, NULL) != 0 ||
            !(g = realloc(vs->pads, (vs->npads + 1) * sizeof *g))) {
            if (c)
                free(c->mean);
            free(c);
            return lad_fail(err, "out of memory");
        }
        vs->pads = g;
        vs->pads[vs->npads++] = c;
        c->nin = pt->nin;
        pt->pad = c;
    }
    for (size_t j = 0; j < pt->nin; j++)
        if (p->req.roles && !strcmp(p->req.roles[model_of[j]], "base"))
            pt->fill_from = (int)j;
    return 0;
}

/* "'<|im_start|>', '<|im_end|>', ..." (tokens of model m's ids), or
 * "rows 32000, 32001, ..." without a vocabulary. */
static void examples(char *buf, size_t len, const model_vocab *mv, const int64_t *ids, uint64_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    bool toks = mv->state > 0;
    if (!toks)
        o += (size_t)snprintf(buf, len, "row%s ", n == 1 ? "" : "s");
    for (uint64_t k = 0; k < n && k < EXAMPLES && o < len; k++) {
        const char *t = toks && (size_t)ids[k] < mv->v.n ? mv->v.tok[ids[k]] : NULL;
        if (toks && t)
            o += (size_t)snprintf(buf + o, len - o, "%s'%.40s'", k ? ", " : "", t);
        else
            o += (size_t)snprintf(buf + o, len - o, "%s%s%lld", k ? ", " : "",
                                  toks ? "row " : "", (long long)ids[k]);
    }
    if (n > EXAMPLES && o < len)
        snprintf(buf + o, len - o, ", ...");
}

/* With union: what the output's vocabulary holds beyond the template's. */
static int union_note(lad_plan *p, lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    const lad_vocab *u = &vs->mv[vs->n].v;
    size_t more = u->n - vs->union_base;
    char ex[512];
    int64_t ids[EXAMPLES] = {0};
    for (size_t k = 0; k < EXAMPLES && k < more; k++)
        ids[k] = (int64_t)(vs->union_base + k);
    examples(ex, sizeof ex, &vs->mv[vs->n], ids, more);
    char *msg = lad_asprintf("the output's vocabulary is the union of the inputs': %zu tokens, "
                             "%zu more than %s's%s%s%s",
                             u->n, more, p->req.models[p->req.template_model]->ref,
                             more ? " (" : "", more ? ex : "", more ? ")" : "");
    return lad_plan_warn(p, msg, err);
}

int lad_vocab_warnings(lad_plan *p, lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    if (vs && vs->mv[vs->n].state > 0 && union_note(p, err))
        return -1;
    if (vs && vs->padded_to > vs->padded_from &&
        lad_plan_warn(p,
                      lad_asprintf("the vocabulary's %llu rows are padded to %llu "
                                   "(pad_to_multiple_of %llu): the new rows take each model's "
                                   "mean row",
                                   (unsigned long long)vs->padded_from,
                                   (unsigned long long)vs->padded_to,
                                   (unsigned long long)p->req.pad_multiple),
                      err))
        return -1;
    for (size_t a = 0; vs && a <= vs->n; a++)
        for (size_t b = 0; b < vs->n; b++) {
            pair *pr = &vs->pairs[a * vs->n + b];
            if (!pr->used)
                continue;
            const lad_model *mb = p->req.models[b];
            const char *aname =
                a == vs->n ? "the union of the inputs' vocabularies" : p->req.models[a]->ref;
            char tensors[320], ex[512], how[512];
            snprintf(tensors, sizeof tensors, "%s%s", pr->tensors,
                     pr->ntensors > 3 ? " and others" : "");
            if (pr->rel == REL_TOKENS)
                snprintf(how, sizeof how, "rows matched by token%s",
                         pr->reordered ? " (its vocabulary is in another order)" : "");
            else
                snprintf(how, sizeof how, "rows matched by number%s%s%s",
                         pr->why ? ": " : "", pr->why ? pr->why : "",
                         pr->why ? ", so ladle cannot match them by token" : "");
            char *msg = NULL;
            if (pr->dropped) {
                examples(ex, sizeof ex, &vs->mv[b], pr->drop_ex, pr->dropped);
                msg = lad_asprintf("%s: %llu row%s of %s (%s) %s not in the vocabulary of %s and "
                                   "%s dropped (the output has its %llu); %s",
                                   mb->ref, (unsigned long long)pr->dropped,
                                   pr->dropped == 1 ? "" : "s", tensors, ex,
                                   pr->dropped == 1 ? "is" : "are", aname,
                                   pr->dropped == 1 ? "is" : "are",
                                   (unsigned long long)pr->rows_out, how);
                if (lad_plan_warn(p, msg, err))
                    return -1;
            }
            if (pr->filled) {
                int base = -1;
                for (size_t j = 0; p->req.roles && j < vs->n; j++)
                    if (!strcmp(p->req.roles[j], "base"))
                        base = (int)j;
                char from[512];
                if (base == (int)a)
                    snprintf(from, sizeof from, "they take %s's rows", aname);
                else if (base >= 0)
                    snprintf(from, sizeof from, "they take the rows of the base (%s) where it "
                             "has them, else the mean of the models that have them",
                             p->req.models[base]->ref);
                else
                    snprintf(from, sizeof from, "they take the mean of the models that have "
                                                "them");
                examples(ex, sizeof ex, &vs->mv[a], pr->fill_ex, pr->filled);
                msg = lad_asprintf("%s lacks %llu of the %llu rows of %s in %s (%s): %s; %s",
                                   mb->ref, (unsigned long long)pr->filled,
                                   (unsigned long long)pr->rows_out, aname, tensors, ex, from,
                                   how);
                if (lad_plan_warn(p, msg, err))
                    return -1;
            }
            if (!pr->dropped && !pr->filled) {
                msg = lad_asprintf("%s: %s of %s (%s)", mb->ref, how, tensors, aname);
                if (lad_plan_warn(p, msg, err))
                    return -1;
            }
        }
    return 0;
}

void lad_vocabs_free(lad_vocabs *vs)
{
    if (!vs)
        return;
    for (size_t j = 0; j <= vs->n; j++) {
        lad_vocab_free(&vs->mv[j].v);
        free(vs->mv[j].why);
    }
    for (size_t k = 0; k < (vs->n + 1) * vs->n; k++)
        free(vs->pairs[k].why);
    free(vs->origin);
    for (size_t k = 0; k < vs->nmaps; k++)
        free(vs->maps[k]);
    free(vs->maps);
    for (size_t k = 0; k < vs->npads; k++) {
        pthread_mutex_destroy(&vs->pads[k]->lock);
        for (size_t j = 0; j < vs->pads[k]->nin; j++)
            free(vs->pads[k]->mean[j]);
        free(vs->pads[k]->mean);
        free(vs->pads[k]);
    }
    free(vs->pads);
    free(vs->mv);
    free(vs->pairs);
    free(vs);
}

/* ------------------------------------------------ a union's tokenizer files */

/* The entry model m's tokenizer.json gives added token tok (copied), or
 * NULL. */
static json_t *added_entry(json_t *root, const char *tok, size_t len)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(root, "added_tokens"), i, e)
    {
        json_t *c = json_object_get(e, "content");
        if (json_is_string(c) && json_string_length(c) == len &&
            memcmp(json_string_value(c), tok, len) == 0)
            return json_deep_copy(e);
    }
    return NULL;
}

static json_t *load_json(const char *dir, const char *name)
{
    char *path = dir ? lad_path_join(dir, name) : NULL;
    json_t *j = path ? json_load_file(path, JSON_ALLOW_NUL, NULL) : NULL;
    free(path);
    return j;
}

/* The entry of union id: its settings in the model it came from when it
 * was an added token there, else those of a token added by
 * tokenizer.add_tokens (normal, not special). */
static json_t *union_entry(const lad_vocabs *vs, json_t **roots, size_t id)
{
    const lad_vocab *u = &vs->mv[vs->n].v;
    json_t *e = u->added[id] ? added_entry(roots[vs->origin[id - vs->union_base]], u->tok[id],
                                           u->len[id])
                             : NULL;
    if (!e)
        e = json_pack("{s:s%, s:b, s:b, s:b, s:b, s:b}", "content", u->tok[id],
                      (size_t)u->len[id], "single_word", 0, "lstrip", 0, "rstrip", 0,
                      "normalized", 1, "special", 0);
    return e;
}

int lad_vocab_union_files(const lad_plan *p, char **tokenizer_json, char **tokenizer_config,
                          lad_error *err)
{
    *tokenizer_json = *tokenizer_config = NULL;
    const lad_vocabs *vs = p->vocabs;
    if (!vs || vs->mv[vs->n].state <= 0)
        return 0;
    const lad_vocab *u = &vs->mv[vs->n].v;
    const lad_model *tmpl = p->req.models[p->req.template_model];
    json_t **roots = calloc(vs->n, sizeof *roots);
    json_t *tok = load_json(tmpl->dir, "tokenizer.json");
    json_t *cfg = load_json(tmpl->dir, "tokenizer_config.json");
    json_t *decoder = cfg ? json_object_get(cfg, "added_tokens_decoder") : NULL;
    int rc = roots && tok ? 0 : lad_fail(err, "%s: cannot read its tokenizer.json again",
                                         tmpl->ref);
    for (size_t j = 0; rc == 0 && j < vs->n; j++)
        if (!(roots[j] = load_json(p->req.models[j]->dir, "tokenizer.json")))
            rc = lad_fail(err, "%s: cannot read its tokenizer.json again", p->req.models[j]->ref);
    json_t *added = tok ? json_object_get(tok, "added_tokens") : NULL;
    if (rc == 0 && !json_is_array(added)) {
        added = json_array();
        json_object_set_new(tok, "added_tokens", added);
    }
    for (size_t id = vs->union_base; rc == 0 && id < u->n; id++) {
        json_t *e = union_entry(vs, roots, id);
        if (!e) {
            rc = lad_fail(err, "out of memory");
            break;
        }
        if (json_is_object(decoder)) {
            char key[32];
            snprintf(key, sizeof key, "%zu", id);
            json_t *d = json_deep_copy(e);
            json_object_del(d, "id");
            json_object_set_new(decoder, key, d);
        }
        json_object_set_new(e, "id", json_integer((json_int_t)id));
        json_array_append_new(added, e);
    }
    if (rc == 0) {
        *tokenizer_json = json_dumps(tok, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (json_is_object(decoder))
            *tokenizer_config = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!*tokenizer_json || (json_is_object(decoder) && !*tokenizer_config))
            rc = lad_fail(err, "out of memory");
    }
    for (size_t j = 0; roots && j < vs->n; j++)
        json_decref(roots[j]);
    free(roots);
    json_decref(tok);
    json_decref(cfg);
    return rc;
}
