/*
 * A model's stacks of blocks, found from its tensor names: where each
 * tensor sits along the forward pass, for per-layer gradients and layer
 * selectors (see ladle.h).
 *
 * A stack is a prefix followed by a block index, "PREFIX.N.REST": the
 * first numbered path component of a name is its block index, so numbers
 * inside a block (Mixtral's experts, T5's layer.K, a Sequential inside an
 * attention) are never layers. A numbered family is a stack when its
 * blocks are modules (REST has at least two components: "attn.weight", not
 * "weight": nn.Sequential heads are not stacks) and, with two blocks or
 * more, when some REST appears in two of them (blocks repeat one
 * structure). A model may have several stacks (encoder and decoder, vision
 * tower and language model), each with its own depth.
 *
 * Sequences that one forward pass runs through in order are one stack:
 *   input_blocks.N, middle_block, output_blocks.N  (a Stable Diffusion UNet:
 *                                                   the 25 "MBW" positions)
 *   down_blocks.N, mid_block, up_blocks.N          (diffusers' UNet)
 *   double_blocks.N, single_blocks.N               (FLUX)
 *
 * Outside every stack, a tensor whose name holds an embedding word (embed,
 * wte, patch, pos_, cls_token, conv_in, img_in, ...) comes before the
 * stacks (depth 0); everything else after them (final norms, heads,
 * projections: depth 1), as mergekit places its pre- and post-weights.
 *
 * --layers REGEX replaces detection: each regex (POSIX extended, \d
 * accepted) is one stack and its one capture group the block index.
 */
#define _GNU_SOURCE
#include "ladle.h"
#include "util.h"

#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 3
#define MAX_BLOCKS (1L << 20) /* a larger index is not a layer */

typedef struct part {
    char *prefix;          /* "model.layers" (no trailing dot) */
    uint32_t offset;       /* its block 0's position in the stack */
    bool single;           /* the whole prefix is one position (middle_block) */
} part;

typedef struct stack {
    part parts[MAX_PARTS];
    int nparts;
    int regex;             /* --layers: its regex, else -1 */
    lad_stack_info info;
} stack;

struct lad_structure {
    stack *stacks;
    size_t nstacks;
    regex_t *re;
    size_t nre;
};

/* ------------------------------------------------------------ names */

/* The first path component of name made only of digits: its offset and
 * length, or -1. */
static long first_number(const char *name, size_t *len)
{
    for (const char *c = name; *c;) {
        const char *e = c;
        while (isdigit((unsigned char)*e))
            e++;
        if (e > c && (*e == '.' || *e == 0)) {
            *len = (size_t)(e - c);
            return (long)(c - name);
        }
        c = strchr(c, '.');
        if (!c)
            break;
        c++;
    }
    return -1;
}

static bool embedding_name(const char *name)
{
    static const char *const words[] = {
        "embed", "embd", "wte", "wpe", "patch", "pos_", "position", "cls_token",
        "class_embedding", "register_tokens", "mask_token", "ln_pre", "pre_layrnorm",
        "conv_in", "img_in", "txt_in", "time_in", "vector_in", "guidance_in", "label_emb",
        "visual.conv1", "shared.",
    };
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strstr(name, words[i]))
            return true;
    return false;
}

static bool has_prefix(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return !strncmp(name, prefix, n) && name[n] == '.';
}

/* ------------------------------------------------------------ detection */

typedef struct rec {
    const char *name;
    size_t plen;           /* prefix bytes, without the dot */
    unsigned long index;
    const char *rest;      /* after "N." */
} rec;

static int by_prefix_rest(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    size_t n = x->plen < y->plen ? x->plen : y->plen;
    int c = strncmp(x->name, y->name, n);
    if (c || x->plen != y->plen)
        return c ? c : (x->plen < y->plen ? -1 : 1);
    c = strcmp(x->rest, y->rest);
    return c ? c : (x->index < y->index ? -1 : x->index > y->index);
}

typedef struct group {
    const char *name;      /* a member, whose first plen bytes are the prefix */
    size_t plen;
    unsigned long max;
    size_t nblocks, ntensors;
    bool stack, used;
} group;

static bool same_prefix(const rec *a, const rec *b)
{
    return a->plen == b->plen && !strncmp(a->name, b->name, a->plen);
}

/* Is group g (records r[0..n), sorted by rest then index) a stack? */
static bool is_stack(const rec *r, size_t n, group *g)
{
    unsigned long *seen = calloc(n, sizeof *seen);
    size_t nseen = 0, best_share = 0;
    bool modules = true;
    if (!seen)
        return false;
    for (size_t i = 0; i < n;) {
        modules &= strchr(r[i].rest, '.') != NULL;
        size_t j = i, share = 0;
        for (; j < n && !strcmp(r[j].rest, r[i].rest); j++)
            share += j == i || r[j].index != r[j - 1].index;
        best_share = share > best_share ? share : best_share;
        for (size_t k = i; k < j; k++) {
            size_t s = 0;
            while (s < nseen && seen[s] != r[k].index)
                s++;
            if (s == nseen)
                seen[nseen++] = r[k].index;
            g->max = r[k].index > g->max ? r[k].index : g->max;
        }
        i = j;
    }
    free(seen);
    g->nblocks = nseen;
    g->ntensors = n;
    return modules && (nseen == 1 || best_share >= 2) && g->max < MAX_BLOCKS;
}

static group *find_group(group *gs, size_t ng, const char *prefix, size_t plen)
{
    for (size_t i = 0; i < ng; i++)
        if (gs[i].plen == plen && !strncmp(gs[i].name, prefix, plen))
            return &gs[i];
    return NULL;
}

static int add_stack(lad_structure *s, lad_error *err)
{
    stack *grown = realloc(s->stacks, (s->nstacks + 1) * sizeof *grown);
    if (!grown)
        return lad_fail(err, "out of memory");
    s->stacks = grown;
    memset(&s->stacks[s->nstacks], 0, sizeof *s->stacks);
    s->stacks[s->nstacks].regex = -1;
    s->nstacks++;
    return 0;
}

static int add_part(stack *st, const char *prefix, size_t plen, uint32_t offset, bool single,
                    lad_error *err)
{
    part *p = &st->parts[st->nparts++];
    p->offset = offset;
    p->single = single;
    if (!(p->prefix = lad_asprintf("%.*s", (int)plen, prefix)))
        return lad_fail(err, "out of memory");
    return 0;
}

/* The sequences a forward pass runs through in order (see the top). */
static const struct {
    const char *first, *middle, *last;
} SEQUENCES[] = {
    {"input_blocks", "middle_block", "output_blocks"},
    {"down_blocks", "mid_block", "up_blocks"},
    {"double_blocks", NULL, "single_blocks"},
};

/* Joins groups into a sequence stack when g is a sequence's first part. */
static int try_sequence(lad_structure *s, group *gs, size_t ng, group *g, lad_error *err)
{
    const char *last_dot = memrchr(g->name, '.', g->plen);
    size_t parent = last_dot ? (size_t)(last_dot - g->name) + 1 : 0;
    const char *comp = g->name + parent;
    size_t clen = g->plen - parent;
    for (size_t q = 0; q < sizeof SEQUENCES / sizeof *SEQUENCES; q++) {
        if (strlen(SEQUENCES[q].first) != clen || strncmp(comp, SEQUENCES[q].first, clen))
            continue;
        char *lastp = lad_asprintf("%.*s%s", (int)parent, g->name, SEQUENCES[q].last);
        group *l = lastp ? find_group(gs, ng, lastp, strlen(lastp)) : NULL;
        free(lastp);
        if (!l || !l->stack)
            return 0;
        if (add_stack(s, err))
            return -1;
        stack *st = &s->stacks[s->nstacks - 1];
        uint32_t pos = (uint32_t)g->max + 1;
        if (add_part(st, g->name, g->plen, 0, false, err))
            return -1;
        if (SEQUENCES[q].middle) {
            char *mid = lad_asprintf("%.*s%s", (int)parent, g->name, SEQUENCES[q].middle);
            if (!mid || add_part(st, mid, strlen(mid), pos++, true, err)) {
                free(mid);
                return lad_fail(err, "out of memory");
            }
            /* numbered groups inside the middle block belong to it */
            for (size_t i = 0; i < ng; i++)
                if (gs[i].plen >= strlen(mid) && !strncmp(gs[i].name, mid, strlen(mid)) &&
                    (gs[i].plen == strlen(mid) || gs[i].name[strlen(mid)] == '.'))
                    gs[i].used = true;
            free(mid);
        }
        if (add_part(st, l->name, l->plen, pos, false, err))
            return -1;
        st->info.len = pos + (uint32_t)l->max + 1;
        g->used = l->used = true;
        return 1;
    }
    return 0;
}

static int detect(lad_structure *s, const lad_model *m, lad_error *err)
{
    rec *r = calloc(m->ntensors + 1, sizeof *r);
    group *gs = calloc(m->ntensors + 1, sizeof *gs);
    size_t n = 0, ng = 0;
    int rc = 0;
    if (!r || !gs) {
        free(r);
        free(gs);
        return lad_fail(err, "out of memory");
    }
    for (size_t i = 0; i < m->ntensors; i++) {
        const char *name = m->tensors[i].name;
        size_t len;
        long at = first_number(name, &len);
        if (at <= 0 || !name[at + (long)len])
            continue; /* no number, a number first, or a number last */
        r[n++] = (rec){name, (size_t)at - 1, strtoul(name + at, NULL, 10),
                       name + at + (long)len + 1};
    }
    qsort(r, n, sizeof *r, by_prefix_rest);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && same_prefix(&r[j], &r[i]))
            j++;
        gs[ng] = (group){.name = r[i].name, .plen = r[i].plen};
        gs[ng].stack = is_stack(r + i, j - i, &gs[ng]);
        ng++;
        i = j;
    }
    for (size_t i = 0; i < ng && rc == 0; i++)
        if (gs[i].stack && !gs[i].used)
            rc = try_sequence(s, gs, ng, &gs[i], err) < 0 ? -1 : 0;
    for (size_t i = 0; i < ng && rc == 0; i++) {
        if (!gs[i].stack || gs[i].used)
            continue;
        if ((rc = add_stack(s, err)) == 0) {
            stack *st = &s->stacks[s->nstacks - 1];
            rc = add_part(st, gs[i].name, gs[i].plen, 0, false, err);
            st->info.len = (uint32_t)gs[i].max + 1;
        }
    }
    free(r);
    free(gs);
    return rc;
}

/* ------------------------------------------------------------ --layers */

static int compile_regexes(lad_structure *s, const char *const *res, size_t nre, lad_error *err)
{
    if (!(s->re = calloc(nre, sizeof *s->re)))
        return lad_fail(err, "out of memory");
    for (size_t k = 0; k < nre; k++) {
        /* glibc's matcher can take exponential time on stacked quantifiers
         * ("(\d+)+", "a**"): a stack's name never needs them. */
        bool stacked = strlen(res[k]) > 256;
        for (const char *c = res[k]; *c && !stacked; c++) {
            if (*c == '\\' && c[1]) {
                c++;
                continue;
            }
            stacked = strchr("+*?{", *c) && c[1] && strchr("+*?{", c[1]);
            stacked |= *c == ')' && c[1] && strchr("+*?{", c[1]) && strchr(res[k], '(') &&
                       strpbrk(strchr(res[k], '('), "+*{") < c;
        }
        if (stacked)
            return lad_usage(err, "--layers '%s': too intricate (longer than 256 characters, or "
                                  "a repeated group or quantifier); name the block index with "
                                  "one plain group, e.g. 'resblocks\\.(\\d+)\\.'",
                             res[k]);
        /* POSIX has no \d; users write it. */
        char *pat = malloc(strlen(res[k]) * 5 + 1), *o = pat;
        if (!pat)
            return lad_fail(err, "out of memory");
        for (const char *c = res[k]; *c; c++) {
            if (c[0] == '\\' && c[1] == 'd') {
                o += sprintf(o, "[0-9]");
                c++;
            } else {
                *o++ = *c;
            }
        }
        *o = 0;
        int rc = regcomp(&s->re[k], pat, REG_EXTENDED);
        free(pat);
        if (rc != 0) {
            char msg[256];
            regerror(rc, &s->re[k], msg, sizeof msg);
            return lad_usage(err, "--layers '%s': not a regular expression: %s", res[k], msg);
        }
        s->nre++;
        if (s->re[k].re_nsub != 1)
            return lad_usage(err, "--layers '%s': needs exactly one capture group, the block "
                                  "index, e.g. 'resblocks\\.(\\d+)\\.'",
                             res[k]);
        if (add_stack(s, err))
            return -1;
        s->stacks[k].regex = (int)k;
        s->stacks[k].info.name = lad_strdup(res[k]);
        if (!s->stacks[k].info.name)
            return lad_fail(err, "out of memory");
    }
    return 0;
}

/* The block index regex k captures in name, or -1. */
static long regex_index(const lad_structure *s, size_t k, const char *name)
{
    regmatch_t mt[2];
    if (regexec(&s->re[k], name, 2, mt, 0) != 0 || mt[1].rm_so < 0)
        return -1;
    char digits[24];
    size_t len = (size_t)(mt[1].rm_eo - mt[1].rm_so);
    if (len == 0 || len >= sizeof digits)
        return -1;
    memcpy(digits, name + mt[1].rm_so, len);
    digits[len] = 0;
    char *end;
    long v = strtol(digits, &end, 10);
    return *end || v < 0 || v >= MAX_BLOCKS ? -1 : v;
}

/* ------------------------------------------------------------ places */

static void set_t(lad_place *p)
{
    p->t = p->len > 1 ? (double)p->pos / (double)(p->len - 1) : 1.0;
}

lad_place lad_structure_place(const lad_structure *s, const char *name)
{
    lad_place p = {.stack = -1};
    for (size_t k = 0; k < s->nstacks; k++) {
        const stack *st = &s->stacks[k];
        if (st->regex >= 0) {
            long idx = regex_index(s, (size_t)st->regex, name);
            if (idx < 0)
                continue;
            p = (lad_place){.stack = (int)k, .pos = (uint32_t)idx, .len = st->info.len};
            set_t(&p);
            return p;
        }
        for (int q = 0; q < st->nparts; q++) {
            const part *pt = &st->parts[q];
            if (!has_prefix(name, pt->prefix))
                continue;
            const char *d = name + strlen(pt->prefix) + 1, *e = d;
            while (isdigit((unsigned char)*e))
                e++;
            if (!pt->single && (e == d || *e != '.')) /* "N." as detection saw it */
                continue;
            p = (lad_place){.stack = (int)k, .pos = pt->offset, .len = st->info.len};
            if (!pt->single)
                p.pos += (uint32_t)strtoul(d, NULL, 10);
            set_t(&p);
            return p;
        }
    }
    p.before = embedding_name(name);
    p.t = p.before ? 0.0 : 1.0;
    return p;
}

/* Names, lengths and counts of the stacks, from the model's tensors. */
static int describe(lad_structure *s, const lad_model *m, lad_error *err)
{
    for (size_t k = 0; k < s->nstacks; k++) {
        stack *st = &s->stacks[k];
        if (st->regex >= 0) {
            for (size_t i = 0; i < m->ntensors; i++) {
                long idx = regex_index(s, (size_t)st->regex, m->tensors[i].name);
                if (idx >= 0 && lad_structure_place(s, m->tensors[i].name).stack == (int)k &&
                    (uint32_t)idx + 1 > st->info.len)
                    st->info.len = (uint32_t)idx + 1;
            }
            if (!st->info.len)
                return lad_fail(err, "%s: --layers '%s' matches no tensor name", m->ref,
                                st->info.name);
            continue;
        }
        char name[1024];
        size_t o = 0;
        for (int q = 0; q < st->nparts && o < sizeof name; q++)
            o += (size_t)snprintf(name + o, sizeof name - o, "%s%s%s", q ? " + " : "",
                                  st->parts[q].prefix, st->parts[q].single ? "" : ".N");
        if (!(st->info.name = lad_strdup(name)))
            return lad_fail(err, "out of memory");
    }
    /* tensors and blocks present (a gap in the numbering shows here) */
    for (size_t k = 0; k < s->nstacks; k++) {
        stack *st = &s->stacks[k];
        unsigned char *present = calloc(st->info.len + 1, 1);
        if (!present)
            return lad_fail(err, "out of memory");
        for (size_t i = 0; i < m->ntensors; i++) {
            lad_place p = lad_structure_place(s, m->tensors[i].name);
            if (p.stack == (int)k && p.pos < st->info.len) {
                st->info.ntensors++;
                st->info.npresent += !present[p.pos];
                present[p.pos] = 1;
            }
        }
        free(present);
    }
    return 0;
}

int lad_structure_build(const lad_model *m, const char *const *layers, size_t nlayers,
                        lad_structure **out, lad_error *err)
{
    lad_structure *s = calloc(1, sizeof *s);
    if (!s)
        return lad_fail(err, "out of memory");
    int rc = nlayers ? compile_regexes(s, layers, nlayers, err) : detect(s, m, err);
    if (rc == 0)
        rc = describe(s, m, err);
    if (rc) {
        lad_structure_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void lad_structure_free(lad_structure *s)
{
    if (!s)
        return;
    for (size_t k = 0; k < s->nstacks; k++) {
        for (int q = 0; q < s->stacks[k].nparts; q++)
            free(s->stacks[k].parts[q].prefix);
        free(s->stacks[k].info.name);
    }
    for (size_t k = 0; k < s->nre; k++)
        regfree(&s->re[k]);
    free(s->re);
    free(s->stacks);
    free(s);
}

size_t lad_structure_nstacks(const lad_structure *s) { return s->nstacks; }

const lad_stack_info *lad_structure_stack(const lad_structure *s, size_t i)
{
    return &s->stacks[i].info;
}

char *lad_structure_rename(const lad_structure *s, const char *name, uint32_t pos)
{
    lad_place p = lad_structure_place(s, name);
    if (p.stack < 0)
        return lad_strdup(name);
    const stack *st = &s->stacks[p.stack];
    if (st->regex >= 0) { /* the capture group's digits */
        regmatch_t mt[2];
        if (regexec(&s->re[st->regex], name, 2, mt, 0) != 0)
            return NULL;
        return lad_asprintf("%.*s%u%s", (int)mt[1].rm_so, name, pos, name + mt[1].rm_eo);
    }
    if (st->nparts != 1)
        return NULL;
    const char *pre = st->parts[0].prefix, *rest = name + strlen(pre) + 1;
    while (isdigit((unsigned char)*rest))
        rest++;
    return lad_asprintf("%s.%u%s", pre, pos, rest);
}
