/* Small internal helpers shared by the layers: checked arithmetic, full
 * reads and writes, paths. Not part of the public API. */
#ifndef LADLE_UTIL_H
#define LADLE_UTIL_H

#include "ladle.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool lad_mul_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

int lad_pread_full(int fd, void *buf, size_t n, uint64_t off, lad_error *err);
int lad_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, lad_error *err);

char *lad_strdup(const char *s);                     /* NULL on OOM */
char *lad_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *lad_path_join(const char *dir, const char *name);
bool lad_is_dir(const char *path);
bool lad_is_file(const char *path);
bool lad_exists(const char *path);
bool lad_ends_with(const char *s, const char *suffix);
/* Absolute, normalised path even when the last component does not exist. */
char *lad_abspath(const char *path);
/* The folder holding path ("." for a bare name), and its last component;
 * trailing slashes are ignored. Both allocated. */
char *lad_dirname(const char *path);
char *lad_basename(const char *path);
/* Is `inner` equal to or below `outer` (both absolute)? */
bool lad_path_within(const char *inner, const char *outer);
/* Reads a whole small file (at most max bytes). */
int lad_read_file(const char *path, size_t max, char **data, size_t *len, lad_error *err);
/* Removes a file or a folder tree; best effort, used for our own temporaries. */
void lad_remove_tree(const char *path);
/* Parses "5GB", "500MB", "2GiB", "1000" (decimal units as transformers). */
int lad_parse_size(const char *s, uint64_t *out);
/* A whole string as a finite number / an integer in [min, max]; 0 or -1. */
int lad_parse_double(const char *s, double *out);
int lad_parse_long(const char *s, long min, long max, long *out);
/* "0.3,0.7" -> values; the count, or -1. */
int lad_parse_list(const char *s, double *out, int max);
/* "1.23 GB" */
void lad_format_bytes(uint64_t n, char *buf, size_t len);

/*
 * Command-line options, GNU style: options and positionals in any order
 * ("--" ends the options; with stop_at_positional, the first positional
 * does too), --name=VALUE or --name VALUE (a unique prefix of a long name
 * will do), -x VALUE or -xVALUE, clusters of flags (-qh). Each option goes
 * to take() in order; the positionals come back in *pos (an allocated
 * array of argv's strings, NULL-ended). Returns 0, 1 when -h/--help was
 * given (an option with id 'h'), or -1 with err (a usage error).
 */
typedef struct lad_optdef {
    const char *name;      /* long name without "--", or NULL */
    int id;                /* a short option's letter when < 128; 0 ends a list */
    bool has_arg;
} lad_optdef;
typedef int (*lad_opt_fn)(void *ctx, int id, const char *arg, lad_error *err);
int lad_opts_parse(int argc, char *const *argv, const lad_optdef *defs, bool stop_at_positional,
                   lad_opt_fn take, void *ctx, char *const **pos, int *npos, lad_error *err);

#endif
