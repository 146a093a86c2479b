/* Command-line options, GNU style, without getopt's global state: library
 * code parses argument vectors (the bindings build them), possibly one
 * inside another's callback. */
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* The definition of --name (exact, else a unique prefix, as getopt_long
 * accepts), or NULL with err set. */
static const lad_optdef *find_long(const lad_optdef *defs, const char *name, size_t len,
                                   const char *arg, lad_error *err)
{
    const lad_optdef *hit = NULL;
    int prefixes = 0;
    for (const lad_optdef *d = defs; d->id; d++) {
        if (!d->name || strncmp(d->name, name, len) != 0)
            continue;
        if (d->name[len] == 0)
            return d;
        hit = d;
        prefixes++;
    }
    if (prefixes == 1)
        return hit;
    lad_usage(err, prefixes ? "option '%s' is ambiguous" : "unknown option '%s'", arg);
    return NULL;
}

static const lad_optdef *find_short(const lad_optdef *defs, char c)
{
    for (const lad_optdef *d = defs; d->id; d++)
        if (d->id == (unsigned char)c && d->id < 128)
            return d;
    return NULL;
}

int lad_opts_parse(int argc, char *const *argv, const lad_optdef *defs, bool stop_at_positional,
                   lad_opt_fn take, void *ctx, char *const **pos, int *npos, lad_error *err)
{
    char **out = calloc((size_t)argc + 1, sizeof *out);
    int n = 0, rc = 0;
    if (!out)
        return lad_fail(err, "out of memory");
    int i = 1;
    for (; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == 0) { /* a positional ("-" too) */
            if (stop_at_positional)
                break;
            out[n++] = argv[i];
            continue;
        }
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const lad_optdef *d = find_long(defs, name, len, a, err);
            const char *val = NULL;
            if (!d) {
                rc = -1;
            } else if (d->has_arg && eq) {
                val = eq + 1;
            } else if (d->has_arg && i + 1 < argc) {
                val = argv[++i];
            } else if (d->has_arg) {
                rc = lad_usage(err, "option '--%s' needs a value", d->name);
            } else if (eq) {
                rc = lad_usage(err, "option '--%s' takes no value", d->name);
            }
            if (rc == 0 && d->id == 'h')
                rc = 1;
            else if (rc == 0)
                rc = take(ctx, d->id, val, err);
            continue;
        }
        /* -x, -xVALUE, -x VALUE, or a cluster of flags -qh */
        for (const char *c = a + 1; *c && rc == 0; c++) {
            const lad_optdef *d = find_short(defs, *c);
            const char *val = NULL;
            if (!d) {
                rc = lad_usage(err, "unknown option '-%c'", *c);
                break;
            }
            if (d->has_arg) {
                if (c[1])
                    val = c + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    rc = lad_usage(err, "option '-%c' needs a value", *c);
            }
            if (rc == 0 && d->id == 'h')
                rc = 1;
            else if (rc == 0)
                rc = take(ctx, d->id, val, err);
            if (d->has_arg)
                break;
        }
    }
    for (; i < argc && rc == 0; i++) /* after "--" or the first positional */
        out[n++] = argv[i];
    if (rc != 0) {
        free(out);
        return rc;
    }
    *pos = out;
    *npos = n;
    return 0;
}
