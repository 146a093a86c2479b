/* Per-tensor parameters: gradients across layers and name-pattern
 * overrides, with mergekit's semantics (see ladle.h). */
#include "ladle.h"
#include "util.h"

#include <jansson.h>

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

long lad_sched_layer_index(const char *name, size_t *pos, size_t *len)
{
    static const char *const keys[] = {"layers.", "h.", "blocks.", "layer."};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        size_t kl = strlen(keys[k]);
        for (const char *p = strstr(name, keys[k]); p; p = strstr(p + 1, keys[k])) {
            if (p != name && p[-1] != '.')
                continue; /* a whole path component only */
            const char *d = p + kl;
            if (!isdigit((unsigned char)*d))
                continue;
            char *end;
            long v = strtol(d, &end, 10);
            if (*end == '.' || *end == 0) {
                if (pos)
                    *pos = (size_t)(d - name);
                if (len)
                    *len = (size_t)(end - d);
                return v;
            }
        }
    }
    return -1;
}

uint64_t lad_sched_count_layers(const lad_model *m)
{
    if (m->config) {
        json_t *n = json_object_get(m->config, "num_hidden_layers");
        if (json_is_integer(n) && json_integer_value(n) > 0)
            return (uint64_t)json_integer_value(n);
    }
    long max = -1;
    for (size_t i = 0; i < m->ntensors; i++) {
        long l = lad_sched_layer_index(m->tensors[i].name, NULL, NULL);
        max = l > max ? l : max;
    }
    return (uint64_t)(max + 1);
}

bool lad_sched_has_gradient(const lad_schedule *s)
{
    if (s->resolve)
        return s->resolve_gradient;
    bool g = false;
    for (int p = 0; p < s->nparams; p++)
        g |= s->value[p].n > 1;
    for (size_t o = 0; o < s->nover; o++)
        g |= s->over[o].value.n > 1;
    return g;
}

/* A stack as lad_sched_layer_index sees it: the text before the index. */
#define MAX_STACKS 16
typedef struct stack_seen {
    const char *name; /* a tensor of it; the prefix is its first plen bytes */
    size_t plen;
    long max;
} stack_seen;

/* The first path component of name made of digits only, before `limit`
 * (a byte offset), or -1. */
static long numbered_component(const char *name, size_t limit)
{
    for (const char *c = name; *c && (size_t)(c - name) < limit;) {
        const char *e = c;
        while (isdigit((unsigned char)*e))
            e++;
        if (e > c && (*e == '.' || *e == 0))
            return (long)(c - name);
        c = strchr(c, '.');
        if (!c)
            break;
        c++;
    }
    return -1;
}

int lad_sched_check_layers(const lad_model *m, uint64_t nlayers, lad_error *err)
{
    static const char advice[] = "give each parameter a single value, not a gradient";
    stack_seen st[MAX_STACKS];
    size_t ns = 0;
    for (size_t i = 0; i < m->ntensors; i++) {
        const char *name = m->tensors[i].name;
        size_t pos = 0, len = 0;
        long l = lad_sched_layer_index(name, &pos, &len);
        long other = numbered_component(name, l >= 0 ? pos : strlen(name));
        if (other >= 0)
            return lad_fail(err, "%s: tensor '%s': its blocks are numbered as '%.*sN', which "
                                 "ladle does not place across the layers yet, so a gradient "
                                 "would give them the wrong values; %s",
                            m->ref, name, (int)other, name, advice);
        if (l < 0)
            continue;
        size_t k = 0;
        while (k < ns && !(st[k].plen == pos && !strncmp(st[k].name, name, pos)))
            k++;
        if (k == ns) {
            if (ns == MAX_STACKS)
                return lad_fail(err, "%s: more than %d stacks of numbered layers; %s", m->ref,
                                MAX_STACKS, advice);
            st[ns++] = (stack_seen){name, pos, l};
        }
        st[k].max = l > st[k].max ? l : st[k].max;
    }
    if (ns == 0)
        return lad_fail(err, "%s: no tensor name holds a layer index (layers.N, h.N, blocks.N, "
                             "layer.N), so a gradient has no layers to run across; %s",
                        m->ref, advice);
    for (size_t k = 0; k < ns; k++) {
        if ((uint64_t)st[k].max + 1 == nlayers)
            continue;
        if (ns > 1)
            return lad_fail(err, "%s: its stacks of layers '%.*sN' (%ld blocks) and '%.*sN' "
                                 "(%ld blocks) would be numbered as one stack of %llu, so a "
                                 "gradient would give them the wrong values; %s",
                            m->ref, (int)st[0].plen, st[0].name, st[0].max + 1,
                            (int)st[k ? k : 1].plen, st[k ? k : 1].name, st[k ? k : 1].max + 1,
                            (unsigned long long)nlayers, advice);
        return lad_fail(err, "%s: config.json gives %llu layers but the tensors number %ld "
                             "('%.*sN'), so a gradient would give them the wrong values; %s",
                        m->ref, (unsigned long long)nlayers, st[k].max + 1, (int)st[k].plen,
                        st[k].name, advice);
    }
    return 0;
}

double lad_sched_depth(const char *tensor, uint64_t nlayers)
{
    long l = lad_sched_layer_index(tensor, NULL, NULL);
    if (l >= 0)
        return nlayers > 1 ? (double)l / (double)(nlayers - 1) : 1.0;
    /* Outside the layers: mergekit's pre-weights (embeddings) at 0, the
     * post-weights (final norm, lm_head) at 1. */
    static const char *const pre[] = {"embed", "wte", "wpe", "tok_embeddings"};
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++)
        if (strstr(tensor, pre[i]))
            return 0.0;
    return 1.0;
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

static bool matches(const char *patterns, const char *tensor)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", patterns);
    char *save = NULL;
    for (char *p = strtok_r(buf, "|", &save); p; p = strtok_r(NULL, "|", &save))
        if (!strcmp(p, "*") || strstr(tensor, p))
            return true;
    return false;
}

void lad_sched_resolve(const lad_schedule *s, const char *tensor, double t, double *values)
{
    for (int p = 0; p < s->nparams; p++) {
        const lad_sched_value *v = &s->value[p];
        for (size_t o = 0; o < s->nover; o++)
            if (s->over[o].param == p && matches(s->over[o].pattern, tensor)) {
                v = &s->over[o].value;
                break;
            }
        values[p] = evaluate(v, t);
    }
}
