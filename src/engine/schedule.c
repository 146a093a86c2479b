/* Per-tensor parameters: gradients across layers and name-pattern
 * overrides, with mergekit's semantics (see ladle.h). */
#include "ladle.h"
#include "util.h"


#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lad_sched_parse_value(const char *s, lad_sched_value *out)
{
    out->n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || out->n == LAD_SCHED_MAX_VALUES)
            return -1;
        out->v[out->n++] = v;
        while (*end == ' ')
            end++;
        if (*end == 0)
            return 0;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
}

int lad_sched_add_override(lad_schedule *s, const char *spec, lad_error *err)
{
    const char *colon = strrchr(spec, ':');
    const char *eq = colon ? strchr(colon, '=') : NULL;
    if (!colon || !eq || colon == spec || colon - spec >= 256)
        return lad_fail(err, "--set takes PATTERN:NAME=VALUE (e.g. 'self_attn:t=0.3'), not '%s'",
                        spec);
    size_t nlen = (size_t)(eq - colon - 1);
    int param = -1;
    for (int i = 0; i < s->nparams; i++)
        if (strlen(s->names[i]) == nlen && strncmp(s->names[i], colon + 1, nlen) == 0)
            param = i;
    if (param < 0) {
        char known[512] = "";
        for (int i = 0; i < s->nparams; i++)
            if (strncmp(s->names[i], "weight", 6) != 0 || i == 0) {
                strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
                strncat(known, s->names[i], sizeof known - strlen(known) - 1);
            }
        return lad_fail(err, "--set '%s': this command has no parameter '%.*s' (it has: %s)",
                        spec, (int)nlen, colon + 1, known);
    }
    lad_sched_override o = {.param = param};
    memcpy(o.pattern, spec, (size_t)(colon - spec));
    bool layered;
    if (lad_pattern_check(o.pattern, &layered, err) != 0)
        return lad_fail_prefix(err, "--set '%s': ", spec);
    if (lad_sched_parse_value(eq + 1, &o.value) != 0)
        return lad_fail(err, "--set '%s': '%s' is not a number or a comma-separated list",
                        spec, eq + 1);
    lad_sched_override *grown = realloc(s->over, (s->nover + 1) * sizeof *grown);
    if (!grown)
        return lad_fail(err, "out of memory");
    s->over = grown;
    s->over[s->nover++] = o;
    return 0;
}

void lad_sched_free(lad_schedule *s)
{
    free(s->over);
    s->over = NULL;
    s->nover = 0;
}

static double evaluate(const lad_sched_value *v, double t)
{
    if (v->n == 1)
        return v->v[0];
    double scaled = t * (v->n - 1);
    int i0 = (int)scaled, i1 = i0 + 1 < v->n ? i0 + 1 : v->n - 1;
    double frac = scaled - i0;
    return (1 - frac) * v->v[i0] + frac * v->v[i1];
}

/* ------------------------------------------------------------ patterns */

enum { SEL_NONE, SEL_EMBED, SEL_HEAD, SEL_EARLY, SEL_MIDDLE, SEL_LATE, SEL_RANGE, SEL_BAD };

/* The layer group one alternative names (with a range's bounds), SEL_NONE
 * for a plain substring, SEL_BAD for a malformed or empty range. */
static int selector(const char *tok, size_t len, uint32_t *lo, uint32_t *hi)
{
    static const char *const names[] = {"embed", "head", "early", "middle", "late"};
    for (int k = 0; k < 5; k++)
        if (strlen(names[k]) == len && !strncmp(tok, names[k], len))
            return SEL_EMBED + k;
    if (len < 8 || strncmp(tok, "layers[", 7) || tok[len - 1] != ']')
        return SEL_NONE;
    char inner[64];
    if (len - 8 >= sizeof inner)
        return SEL_BAD;
    memcpy(inner, tok + 7, len - 8);
    inner[len - 8] = 0;
    char *colon = strchr(inner, ':'), *end;
    if (!colon)
        return SEL_BAD;
    *colon = 0;
    unsigned long a = 0, b = UINT32_MAX;
    if (*inner && (a = strtoul(inner, &end, 10), *end || !isdigit((unsigned char)*inner)))
        return SEL_BAD;
    if (colon[1] && (b = strtoul(colon + 1, &end, 10), *end || !isdigit((unsigned char)colon[1])))
        return SEL_BAD;
    if (a >= b || b > UINT32_MAX)
        return SEL_BAD;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
    return SEL_RANGE;
}

/* Calls fn on each '|'-separated alternative; stops when it returns true. */
static bool any_alternative(const char *pattern, bool (*fn)(const char *, size_t, void *),
                            void *ctx)
{
    for (const char *p = pattern;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (fn(p, len, ctx))
            return true;
        if (!bar)
            return false;
        p = bar + 1;
    }
}

typedef struct check_ctx {
    bool layered, bad;
    const char *tok;
    size_t len;
} check_ctx;

static bool check_one(const char *tok, size_t len, void *c)
{
    check_ctx *k = c;
    uint32_t lo, hi;
    int sel = selector(tok, len, &lo, &hi);
    k->layered |= sel != SEL_NONE;
    if (sel == SEL_BAD) {
        k->bad = true;
        k->tok = tok;
        k->len = len;
    }
    return sel == SEL_BAD;
}

int lad_pattern_check(const char *pattern, bool *layered, lad_error *err)
{
    check_ctx k = {0};
    if (any_alternative(pattern, check_one, &k))
        return lad_usage(err, "'%.*s' is not a layer range: layers[A:B] with A < B (either may "
                              "be left out), e.g. layers[0:8] or layers[24:]",
                         (int)k.len, k.tok);
    *layered = k.layered;
    return 0;
}

typedef struct match_ctx {
    const char *tensor;
    const lad_place *place;
} match_ctx;

static bool match_one(const char *tok, size_t len, void *c)
{
    const match_ctx *m = c;
    const lad_place *p = m->place;
    uint32_t lo = 0, hi = 0;
    switch (selector(tok, len, &lo, &hi)) {
    case SEL_EMBED:
        return p->stack < 0 && p->before;
    case SEL_HEAD:
        return p->stack < 0 && !p->before;
    case SEL_EARLY:
    case SEL_MIDDLE:
    case SEL_LATE:
        return p->stack >= 0 && p->len &&
               (int)(3ull * p->pos / p->len) == selector(tok, len, &lo, &hi) - SEL_EARLY;
    case SEL_RANGE:
        return p->stack >= 0 && p->pos >= lo && p->pos < hi;
    case SEL_BAD:
        return false;
    }
    if (len == 1 && *tok == '*')
        return true;
    char buf[256];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, tok, len);
    buf[len] = 0;
    return strstr(m->tensor, buf) != NULL;
}

bool lad_pattern_matches(const char *pattern, const char *tensor, const lad_place *place)
{
    match_ctx m = {tensor, place};
    return any_alternative(pattern, match_one, &m);
}

bool lad_sched_needs_layers(const lad_schedule *s)
{
    if (s->resolve)
        return s->resolve_needs_layers;
    bool g = false;
    for (int p = 0; p < s->nparams; p++)
        g |= s->value[p].n > 1;
    for (size_t o = 0; o < s->nover; o++) {
        bool layered = false;
        lad_error ignore;
        g |= s->over[o].value.n > 1;
        g |= lad_pattern_check(s->over[o].pattern, &layered, &ignore) == 0 && layered;
    }
    return g;
}

void lad_sched_resolve(const lad_schedule *s, const char *tensor, const lad_place *place,
                       double *values)
{
    for (int p = 0; p < s->nparams; p++) {
        const lad_sched_value *v = &s->value[p];
        for (size_t o = 0; o < s->nover; o++)
            if (s->over[o].param == p && lad_pattern_matches(s->over[o].pattern, tensor, place)) {
                v = &s->over[o].value;
                break;
            }
        values[p] = evaluate(v, place->t);
    }
}
