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

char *lad_eval_expand(const char *tmpl, const char *model, int slot, const char *const *names,
                      const char *const *values, size_t nvars)
{
    sbuf b = {0};
    put(&b, "", 0);
    for (const char *p = tmpl; *p;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (close) {
            size_t n = (size_t)(close - p - 1);
            const char *key = p + 1;
            char num[16];
            const char *val = NULL;
            bool quote = false;
            if (n == 5 && !strncmp(key, "model", 5)) {
                val = model;
                quote = true;
            } else if (n == 4 && !strncmp(key, "slot", 4)) {
                snprintf(num, sizeof num, "%d", slot);
                val = num;
            } else {
                for (size_t i = 0; i < nvars && !val; i++)
                    if (strlen(names[i]) == n && !strncmp(key, names[i], n))
                        val = values[i];
            }
            if (val) {
                if (quote)
                    put_quoted(&b, val);
                else
                    put(&b, val, strlen(val));
                p = close + 1;
                continue;
            }
        }
        put(&b, p, 1);
        p++;
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
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
