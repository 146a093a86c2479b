/*
 * The evaluator protocol's two text rules: how a command template becomes
 * a command, and how a score is read from what the command printed.
 */
#include "ladle.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *g = realloc(b->s, cap);
        if (!g) {
            b->oom = true;
            return;
        }
        b->s = g;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

/* POSIX shell single quotes: 'it'\''s' */
static void put_quoted(sbuf *b, const char *s)
{
    put(b, "'", 1);
    for (; *s; s++)
        if (*s == '\'')
            put(b, "'\\''", 4);
        else
            put(b, s, 1);
    put(b, "'", 1);
}

char *lad_shell_quote(const char *s)
{
    sbuf b = {0};
    put_quoted(&b, s);
    if (b.oom)
        free(b.s);
    return b.oom ? NULL : b.s;
}

bool lad_is_identifier(const char *s, size_t n)
{
    if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

char *lad_expand(const char *tmpl, lad_expand_fn lookup, void *ctx)
{
    sbuf b = {0};
    put(&b, "", 0);
    for (const char *p = tmpl; *p;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        size_t n = close ? (size_t)(close - p - 1) : 0;
        bool quote = false;
        const char *val = close && lad_is_identifier(p + 1, n) ? lookup(p + 1, n, &quote, ctx)
                                                               : NULL;
        if (!val) {
            put(&b, p++, 1);
            continue;
        }
        if (quote)
            put_quoted(&b, val);
        else
            put(&b, val, strlen(val));
        p = close + 1;
    }
    if (b.oom)
        free(b.s);
    return b.oom ? NULL : b.s;
}

typedef struct eval_vars {
    const char *model;
    char slot[16];
    const char *const *names, *const *values;
    size_t nvars;
} eval_vars;

static const char *eval_lookup(const char *name, size_t n, bool *quote, void *ctx)
{
    eval_vars *v = ctx;
    if (n == 5 && !strncmp(name, "model", 5)) {
        *quote = true;
        return v->model;
    }
    if (n == 4 && !strncmp(name, "slot", 4))
        return v->slot;
    for (size_t i = 0; i < v->nvars; i++)
        if (strlen(v->names[i]) == n && !strncmp(name, v->names[i], n))
            return v->values[i];
    return NULL;
}

char *lad_eval_expand(const char *tmpl, const char *model, int slot, const char *const *names,
                      const char *const *values, size_t nvars)
{
    eval_vars v = {.model = model, .names = names, .values = values, .nvars = nvars};
    snprintf(v.slot, sizeof v.slot, "%d", slot);
    return lad_expand(tmpl, eval_lookup, &v);
}

static bool separator(char c)
{
    return isspace((unsigned char)c) || (c && strchr(",;:=()[]{}%\"'", c));
}

int lad_eval_score(const char *text, double *score)
{
    bool found = false;
    const char *p = text;
    while (*p) {
        while (*p && separator(*p))
            p++;
        const char *start = p;
        while (*p && !separator(*p))
            p++;
        if (p == start)
            break;
        char tok[128];
        size_t n = (size_t)(p - start);
        if (n >= sizeof tok)
            continue;
        memcpy(tok, start, n);
        tok[n] = 0;
        /* strtod also reads "nan", "inf" and hex floats: a score must be
         * a plain finite decimal number. */
        if (!isdigit((unsigned char)tok[tok[0] == '-' || tok[0] == '+'] ) &&
            tok[tok[0] == '-' || tok[0] == '+'] != '.')
            continue;
        if (strpbrk(tok, "xXpP"))
            continue;
        char *end;
        errno = 0;
        double v = strtod(tok, &end);
        if (*end || errno == ERANGE || !isfinite(v))
            continue;
        *score = v;
        found = true;
    }
    return found ? 0 : -1;
}
