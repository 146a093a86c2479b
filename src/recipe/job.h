/*
 * Merges described by ladle's command-line arguments ("lerp A B --alpha
 * 0.3 -o OUT"): the one parser behind the CLI's merge commands, the
 * search's candidates and the Python package. A job is parsed from its
 * arguments alone (nothing is opened), then planned once its models are
 * opened. One file per command (job_*.c) turns its arguments into the
 * models, roles and op or schedule of the merge; job.c holds what they
 * share.
 */
#ifndef LADLE_JOB_H
#define LADLE_JOB_H

#include "ladle.h"
#include "util.h"

#include <jansson.h>

#define JOB_MAX_SETS 64

/* The options every merge command takes. */
typedef struct job_opts {
    const char *output;          /* -o, or NULL */
    const char *sets[JOB_MAX_SETS]; /* --set specs */
    int nsets;
    const char *layers[8];       /* --layers regexes */
    size_t nlayers;
    const char *take_unmergeable; /* --take-unmergeable MODEL */
    const char *tokenizer_source; /* --tokenizer-source base|union|MODEL */
    const char *chat_template;   /* --chat-template NAME|auto|FILE|TEMPLATE */
    uint64_t pad_multiple;       /* --pad-to-multiple-of N (0: none) */
    bool has_dtype;
    lad_dtype dtype;
    bool has_quant;              /* --quant TYPE (GGUF outputs) */
    uint32_t quant;
    int threads;
    uint64_t shard_size;
    uint32_t part, nparts;       /* --part I/N: part = I - 1 (nparts 0: none) */
    bool force, quiet;
} job_opts;

struct lad_job {
    const char *cmd;             /* argv[0]: "lerp" */
    const char *label;           /* the method as the card names it: "dare_ties" */
    int argc;
    char **argv;                 /* a copy of the arguments; the fields borrow from it */
    char *cmdline;               /* "ladle lerp ..." for the recipe and the card */
    job_opts o;
    bool dry_run;
    const char **refs;           /* the models in the method's order */
    const char **roles;
    size_t nmodels;
    size_t template_model;       /* config, tokenizer, non-float tensors */
    bool template_only;          /* ... and no values (lad_merge_request) */
    lad_op op;                   /* the op of every tensor, unless a schedule */
    const lad_token_rule *token_rules; /* a recipe's tokenizer: tokens:, or NULL */
    size_t ntoken_rules;
    lad_schedule *schedule;      /* per-tensor parameters, or NULL */
    json_t *params;              /* the parameters, for the recipe and the card */
    bool has_out_dtype;          /* the command's own default output dtype */
    lad_dtype out_dtype;         /* (--dtype still wins) */
    /* Explicit output tensors (recipe slices), built once the models are open. */
    int (*make_specs)(const lad_job *j, lad_model *const *models, lad_tensor_spec **specs,
                      size_t *n, uint64_t *num_layers, lad_error *err);
    void (*free_specs)(lad_tensor_spec *specs, size_t n);
    /* Resolved parameters of one tensor for --dry-run, or NULL. */
    int (*describe)(const lad_job *j, const char *tensor, const lad_place *place,
                    const void *spec_ctx, char *buf, size_t len, lad_error *err);
    /* Opens model i itself (a base with adapters), or NULL: the caller's opener. */
    int (*open_model)(const lad_job *j, size_t i, lad_model **out, lad_error *err);
    char *note;                  /* for the user (e.g. fewer checkpoints than asked), or NULL */
    void *state;                 /* the command's own parsed arguments, freed with the job */
    void (*free_state)(void *state);
    /* Set when planned. */
    lad_model **models;
    lad_tensor_spec *specs;
    size_t nspecs;
    lad_progress_fn progress;
    void *progress_ctx;
};

/* Each command's parser: fills the job from its arguments (argv[0] is the
 * command). Usage errors set err->usage. */
int job_lerp(lad_job *j, lad_error *err);
int job_slerp(lad_job *j, lad_error *err);
int job_soup(lad_job *j, lad_error *err);
int job_ckpt(lad_job *j, lad_error *err);
int job_task(lad_job *j, lad_error *err);
int job_gta(lad_job *j, lad_error *err); /* ties, dare, breadcrumbs, della */
int job_stock(lad_job *j, lad_error *err);
int job_yaml(lad_job *j, lad_error *err); /* merge CONFIG.yml */
int job_lora(lad_job *j, lad_error *err); /* lora apply BASE ADAPTER... */
int job_nearswap(lad_job *j, lad_error *err);
int job_nuslerp(lad_job *j, lad_error *err);
int job_multislerp(lad_job *j, lad_error *err);
int job_karcher(lad_job *j, lad_error *err);
int job_sce(lad_job *j, lad_error *err);
int job_ram(lad_job *j, lad_error *err);
int job_fusion(lad_job *j, lad_error *err); /* arcee-fusion */
int job_iso(lad_job *j, lad_error *err);    /* iso-c, iso-cts, tsv, wudi */
int job_consensus(lad_job *j, lad_error *err); /* consensus-ta */

/* Parses the job's arguments: the common options into j->o, the command's
 * own (`extra`, ended by an entry with id 0) to take(). Returns 0 with the
 * positionals in *pos (free it), 1 for --help, -1 with err. */
typedef int (*job_take_fn)(lad_job *j, void *args, int id, const char *arg, lad_error *err);
int job_parse(lad_job *j, const lad_optdef *extra, job_take_fn take, void *args,
              char *const **pos, int *npos, lad_error *err);

/* The command's parsed arguments, zeroed, owned by the job. */
void *job_state(lad_job *j, size_t size);
/* Sets the models (borrowed strings) and their roles. */
int job_models(lad_job *j, size_t n, lad_error *err);

/* Parsing helpers; each reports a usage error naming `opt`. */
int job_double(const char *opt, const char *s, double *out, lad_error *err);
int job_int(const char *opt, const char *s, long min, long max, long *out, lad_error *err);
/* A number or a gradient "a,b,c". */
int job_sched_value(const char *opt, const char *s, lad_sched_value *out, lad_error *err);
/* "0.5:path" or "0,1:path" -> weight (a scalar or a gradient), model. */
int job_weighted_model(const char *arg, lad_sched_value *weight, const char **model,
                       lad_error *err);
/* Every value of a scheduled parameter in [lo, hi]? */
bool job_sched_all(const lad_sched_value *v, double lo, double hi);
json_t *job_sched_json(const lad_sched_value *v);

#endif
