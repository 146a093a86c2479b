/* A YAML document (libyaml) with the helpers the recipe reader needs: typed
 * access and errors that name the file, line and column. */
#ifndef LADLE_YAML_DOC_H
#define LADLE_YAML_DOC_H

#include "ladle.h"

#include <yaml.h>

typedef struct lad_yaml {
    yaml_document_t doc;
    char *path;
    bool loaded;
} lad_yaml;

/* Parses text (len bytes), or the file at path when text is NULL; path
 * names the document in errors either way. */
#define LAD_YAML_MAX_BYTES (1u << 20)
int lad_yaml_load(lad_yaml *y, const char *path, const char *text, size_t len, lad_error *err);
void lad_yaml_free(lad_yaml *y);
yaml_node_t *lad_yaml_root(lad_yaml *y);
yaml_node_t *lad_yaml_node(lad_yaml *y, int index);
/* The value of `key` in a mapping, or NULL. */
yaml_node_t *lad_yaml_get(lad_yaml *y, const yaml_node_t *map, const char *key);
/* A scalar's text, or NULL for any other node. */
const char *lad_yaml_str(const yaml_node_t *n);
bool lad_yaml_is_null(const yaml_node_t *n);
int lad_yaml_number(const lad_yaml *y, const yaml_node_t *n, const char *what, double *out,
                    lad_error *err);
int lad_yaml_bool(const lad_yaml *y, const yaml_node_t *n, const char *what, bool *out,
                  lad_error *err);
/* "FILE:LINE:COLUMN: message"; returns -1. */
int lad_yaml_fail(lad_error *err, const lad_yaml *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
