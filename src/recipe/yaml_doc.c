/* YAML documents through libyaml: see yaml_doc.h. */
#include "yaml_doc.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int lad_yaml_fail(lad_error *err, const lad_yaml *y, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        return lad_fail(err, "%s:%zu:%zu: %s", y->path, n->start_mark.line + 1,
                        n->start_mark.column + 1, msg);
    return lad_fail(err, "%s: %s", y->path, msg);
}

int lad_yaml_load(lad_yaml *y, const char *path, const char *text, size_t len, lad_error *err)
{
    memset(y, 0, sizeof *y);
    if (!(y->path = lad_strdup(path)))
        return lad_fail(err, "out of memory");
    char *own = NULL;
    if (!text) {
        if (lad_read_file(path, LAD_YAML_MAX_BYTES, &own, &len, err))
            return -1;
        text = own;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(own);
        return lad_fail(err, "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&parser, &y->doc)) {
        rc = lad_fail(err, "%s:%zu:%zu: not valid YAML: %s%s%s", path,
                      parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                      parser.problem ? parser.problem : "parse error",
                      parser.context ? " " : "", parser.context ? parser.context : "");
    } else {
        y->loaded = true;
        if (!yaml_document_get_root_node(&y->doc))
            rc = lad_fail(err, "%s: the file is empty", path);
    }
    yaml_parser_delete(&parser);
    free(own);
    return rc;
}

void lad_yaml_free(lad_yaml *y)
{
    if (y->loaded)
        yaml_document_delete(&y->doc);
    free(y->path);
    memset(y, 0, sizeof *y);
}

yaml_node_t *lad_yaml_root(lad_yaml *y) { return yaml_document_get_root_node(&y->doc); }
yaml_node_t *lad_yaml_node(lad_yaml *y, int index) { return yaml_document_get_node(&y->doc, index); }

const char *lad_yaml_str(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

bool lad_yaml_is_null(const yaml_node_t *n)
{
    const char *s = lad_yaml_str(n);
    return !n || (s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                  (!*s || !strcmp(s, "~") || !strcasecmp(s, "null")));
}

yaml_node_t *lad_yaml_get(lad_yaml *y, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = lad_yaml_str(lad_yaml_node(y, p->key));
        if (k && !strcmp(k, key))
            return lad_yaml_node(y, p->value);
    }
    return NULL;
}

int lad_yaml_number(const lad_yaml *y, const yaml_node_t *n, const char *what, double *out,
                    lad_error *err)
{
    const char *s = lad_yaml_str(n);
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end || errno || !isfinite(v) ||
        n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return lad_yaml_fail(err, y, n, "%s must be a number", what);
    *out = v;
    return 0;
}

int lad_yaml_bool(const lad_yaml *y, const yaml_node_t *n, const char *what, bool *out,
                  lad_error *err)
{
    const char *s = lad_yaml_str(n);
    if (s && (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1")))
        *out = true;
    else if (s && (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0")))
        *out = false;
    else
        return lad_yaml_fail(err, y, n, "%s must be true or false", what);
    return 0;
}
