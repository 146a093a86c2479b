/* The command-line layer: the only code that prints or picks exit codes. */
#ifndef LADLE_CLI_H
#define LADLE_CLI_H

#include "ladle.h"

#include <getopt.h>
#include <jansson.h>

enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* Option ids past the printable characters used for short options. */
enum {
    OPT_DTYPE = 1000, OPT_SHARD_SIZE, OPT_FORCE, OPT_JSON, OPT_ALPHA, OPT_EXTRAPOLATE,
    OPT_WEIGHTS, OPT_BASE, OPT_ADD, OPT_ONTO, OPT_LAMBDA, OPT_LAST, OPT_DENSITY, OPT_MAJORITY,
    OPT_NORMALIZE, OPT_NO_NORMALIZE, OPT_TRIM_SCOPE, OPT_SIGN_CONSENSUS, OPT_SEED,
    OPT_NO_RESCALE, OPT_GAMMA, OPT_TIES, OPT_SET, OPT_NORMALIZE_MAGNITUDE, OPT_EPSILON, OPT_LINEAR, OPT_DRY_RUN,
};

#define COMMON_MERGE_OPTIONS                                                                  \
    {"output", required_argument, 0, 'o'}, {"dtype", required_argument, 0, OPT_DTYPE},       \
        {"threads", required_argument, 0, 'j'},                                               \
        {"shard-size", required_argument, 0, OPT_SHARD_SIZE},                                 \
        {"force", no_argument, 0, OPT_FORCE}, {"quiet", no_argument, 0, 'q'},                 \
        {"set", required_argument, 0, OPT_SET}, {"help", no_argument, 0, 'h'}
#define COMMON_MERGE_SHORT "o:j:qh"

#define COMMON_MERGE_HELP                                                                     \
    "  -o, --output OUT      where to write: NAME.safetensors for one file, anything else\n"  \
    "                        for a Hugging Face folder (config, tokenizer, model card)\n"     \
    "      --dtype T         output dtype: f32, f16 or bf16 (default: each input tensor's)\n" \
    "  -j, --threads N       worker threads (default: all cores)\n"                           \
    "      --shard-size S    largest shard of a folder output, e.g. 2GB, 500MB; 0 = never\n"  \
    "                        shard (default 5GB, decimal units as transformers uses them)\n"  \
    "      --force           replace OUT if it exists\n"                                     \
    "      --set P:NAME=V    for tensors whose name contains P (or P1|P2), use V for the\n"   \
    "                        parameter NAME; V may be a gradient a,b,c (repeatable; the\n"   \
    "                        first match wins). Parameters given as a,b,c are gradients\n"   \
    "                        across the layers, as in mergekit\n"                           \
    "  -q, --quiet           no progress or summary on stderr\n"                             \
    "  -h, --help            this help\n"

#define MAX_SETS 64

typedef struct merge_opts {
    const char *output;
    const char *sets[MAX_SETS]; /* --set specs, applied to the job's schedule */
    int nsets;
    bool has_dtype;
    lad_dtype dtype;
    int threads;
    uint64_t shard_size;
    bool force, quiet;
} merge_opts;

void merge_opts_init(merge_opts *o);
/* Handles a common option; returns 1 if it was one, 0 if not, -1 on a bad
 * value (message printed). */
int merge_opts_take(merge_opts *o, const char *cmd, int id, const char *arg);

/* Everything a merge command hands over once it has parsed its arguments. */
typedef struct merge_job {
    const char *cmd;            /* "lerp" */
    const char *const *refs;    /* model references in the method's input order */
    const char *const *roles;
    size_t nmodels;
    size_t template_model;
    lad_op op;                  /* used when there is no schedule */
    lad_schedule *schedule;     /* per-tensor parameters, or NULL */
    json_t *params;             /* stolen */
    bool has_out_dtype;         /* the job's own default output dtype */
    lad_dtype out_dtype;        /* (--dtype still wins) */
    /* --dry-run: print the plan, with each tensor's parameters, instead */
    bool dry_run;
    int (*describe)(const char *tensor, double depth, const void *spec_ctx, char *buf,
                    size_t len, const void *ctx, lad_error *err);
    const void *describe_ctx;
    /* Explicit output tensors (recipe slices), built once the models are open. */
    int (*make_specs)(lad_model *const *models, lad_tensor_spec **specs, size_t *n,
                      uint64_t *num_layers, const void *ctx, lad_error *err);
    void (*free_specs)(lad_tensor_spec *specs, size_t n);
    const void *specs_ctx;
} merge_job;

/* Opens the models, plans, runs, prints a summary; returns the exit code. */
int run_merge(const merge_opts *o, merge_job *job, int argc, char **argv);

/* Parses argv with getopt_long (options and positionals in any order).
 * Common merge options go to `common` (when not NULL), --help prints `help`,
 * anything else to `take`, which returns 0 or an exit code after printing.
 * Returns true to go on, with the positionals in argv[*first..argc);
 * false with *exit_code set. */
typedef int (*opt_handler)(void *ctx, int id, const char *arg);
bool parse_args(const char *cmd, const char *help, int argc, char **argv,
                const struct option *longopts, const char *shortopts, merge_opts *common,
                opt_handler take, void *ctx, int *first, int *exit_code);

/* Printing and parsing helpers. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int report(const lad_error *err); /* prints "ladle: error: ..." and returns the exit code */
void note(bool quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int parse_double(const char *s, double *out);
int parse_int(const char *s, long min, long max, long *out);
/* "0.3,0.7" -> values; returns count or -1. */
int parse_list(const char *s, double *out, int max);
char *command_line(int argc, char **argv);
/* "0.5:path" or "0,1:path" -> weight (a scalar or a gradient), model;
 * prints a usage error. */
int parse_weighted_model(const char *cmd, const char *arg, lad_sched_value *weight,
                         const char **model);
/* A scalar option that may be a gradient "a,b,c"; prints a usage error. */
int parse_sched_option(const char *cmd, const char *opt, const char *arg, lad_sched_value *out);
/* Every value of a scheduled parameter, for range checks at parse time. */
bool sched_all(const lad_sched_value *v, double lo, double hi);
json_t *sched_json(const lad_sched_value *v);

int cmd_info(int argc, char **argv);
int cmd_lerp(int argc, char **argv);
int cmd_soup(int argc, char **argv);
int cmd_task(int argc, char **argv);
int cmd_ckpt(int argc, char **argv);
int cmd_slerp(int argc, char **argv);
int cmd_ties(int argc, char **argv);
int cmd_dare(int argc, char **argv);
int cmd_breadcrumbs(int argc, char **argv);
int cmd_della(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_stock(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_sweep(int argc, char **argv);

#endif
