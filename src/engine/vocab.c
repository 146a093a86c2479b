/*
 * Vocabularies of different sizes or orders: the rows of embedding and head
 * tensors matched between models by token.
 *
 * The output has the vocabulary of the tensor's first input (the template:
 * the base, or the first model), as mergekit's default does. For every
 * other input, each output row reads the row of the same token, found
 * through both models' tokenizer.json (by row number when either has none,
 * or when the two files are byte for byte the same). Rows an input has but
 * the output's vocabulary lacks are dropped; rows it lacks are filled, as
 * mergekit fills them: with the base's row when the merge has a base that
 * holds the token, else with the mean of the inputs that hold it (rounded
 * once to the input's dtype). Every drop and fill is reported by the plan.
 *
 * A tensor is a vocabulary tensor by its name (embed_tokens, wte,
 * word_embeddings, lm_head, ...) or when its first dimension is every
 * input's config.json vocab_size; only its first dimension may differ.
 */
#include "plan.h"
#include "util.h"

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

struct lad_vocabs {
    size_t n;
    model_vocab *mv;      /* per model */
    pair *pairs;          /* n x n: [a * n + b] */
    int64_t **maps;       /* every row map handed out, for free */
    size_t nmaps, capmaps;
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

static pair *relation(lad_plan *p, size_t a, size_t b)
{
    lad_vocabs *vs = p->vocabs;
    pair *pr = &vs->pairs[a * vs->n + b];
    if (pr->rel != REL_UNKNOWN)
        return pr;
    const lad_model *ma = p->req.models[a], *mb = p->req.models[b];
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

static const char *const VOCAB_SUFFIXES[] = {
    "embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight",
    "tok_embeddings.weight", "token_embd.weight", "lm_head.weight", "lm_head.bias",
    "embed_out.weight", "shared.weight",
};

static bool name_is_vocab(const char *name)
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
    if (name_is_vocab(pt->name))
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
    const lad_vocab *va = pr->rel == REL_TOKENS ? &p->vocabs->mv[a].v : NULL;
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

int lad_vocab_plan(lad_plan *p, lad_plan_tensor *pt, const lad_model *const *in_model,
                   size_t first_in, const size_t *model_of, lad_error *err)
{
    pt->rows = NULL;
    pt->fill_from = -1;
    if (p->req.copy_all || pt->nin < 2 || !is_vocab_tensor(pt, pt->in[first_in], in_model))
        return 0;
    if (!p->vocabs) {
        lad_vocabs *vs = calloc(1, sizeof *vs);
        size_t n = p->req.nmodels;
        if (!vs || !(vs->mv = calloc(n, sizeof *vs->mv)) ||
            !(vs->pairs = calloc(n * n, sizeof *vs->pairs))) {
            if (vs)
                free(vs->mv);
            free(vs);
            return lad_fail(err, "out of memory");
        }
        vs->n = n;
        p->vocabs = vs;
    }
    const lad_tensor *first = pt->in[first_in];
    size_t a = model_of[first_in];
    int64_t **rows = NULL;
    for (size_t j = 0; j < pt->nin; j++) {
        const lad_tensor *t = pt->in[j];
        if (j == first_in || !rows_differ_only(first, t))
            continue; /* other shapes: the planner's error */
        pair *pr = relation(p, a, model_of[j]);
        if (pr->rel == REL_ROWS && first->shape[0] == t->shape[0])
            continue;
        int64_t *map = NULL;
        if (build_map(p, pr, a, model_of[j], pt->name, first->shape[0], t->shape[0], &map, err))
            return -1;
        if (!map)
            continue;
        if (first->q.scheme || t->q.scheme)
            return lad_fail(err, "tensor '%s' is quantised and its rows (vocabulary) differ "
                                 "between %s and %s; dequantise the inputs first",
                            pt->name, in_model[first_in]->ref, in_model[j]->ref);
        if (!rows) {
            rows = calloc(pt->nin, sizeof *rows);
            if (!rows || keep_map(p->vocabs, (int64_t *)rows, err))
                return rows ? -1 : lad_fail(err, "out of memory");
        }
        rows[j] = map;
    }
    if (!rows)
        return 0;
    pt->rows = (const int64_t *const *)rows;
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

int lad_vocab_warnings(lad_plan *p, lad_error *err)
{
    lad_vocabs *vs = p->vocabs;
    for (size_t a = 0; vs && a < vs->n; a++)
        for (size_t b = 0; b < vs->n; b++) {
            pair *pr = &vs->pairs[a * vs->n + b];
            if (!pr->used)
                continue;
            const lad_model *ma = p->req.models[a], *mb = p->req.models[b];
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
                                   pr->dropped == 1 ? "is" : "are", ma->ref,
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
                    snprintf(from, sizeof from, "they take %s's rows", ma->ref);
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
                                   (unsigned long long)pr->rows_out, ma->ref, tensors, ex, from,
                                   how);
                if (lad_plan_warn(p, msg, err))
                    return -1;
            }
            if (!pr->dropped && !pr->filled) {
                msg = lad_asprintf("%s: %s of %s (%s)", mb->ref, how, tensors, ma->ref);
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
    for (size_t j = 0; j < vs->n; j++) {
        lad_vocab_free(&vs->mv[j].v);
        free(vs->mv[j].why);
    }
    for (size_t k = 0; k < vs->n * vs->n; k++)
        free(vs->pairs[k].why);
    for (size_t k = 0; k < vs->nmaps; k++)
        free(vs->maps[k]);
    free(vs->maps);
    free(vs->mv);
    free(vs->pairs);
    free(vs);
}
