/*
 * What greedy soups and sweeps share: candidates made by a ladle merge (run
 * as a child process), scored by the user's evaluator (the protocol in
 * ladle.h), several at once, logged, and resumable.
 */
#ifndef LADLE_SEARCH_H
#define LADLE_SEARCH_H

#include "cli.h"

/* One thing to score: the output of a merge, or a model as it is. */
typedef struct candidate {
    char *label;        /* in tables and messages: "alpha=0.3", "ft-2" */
    char **merge;       /* ladle arguments (command first, no -o), NULL-ended; */
    const char *model;  /* or, when merge is NULL, a model scored as it is */
    /* A merge's output the caller made ahead (or is making): its child and
     * path, which search_eval takes over instead of merging (made_taken);
     * NULL: none. */
    lad_child *made;
    const char *made_path;
    bool made_taken;
    char *recipe;       /* what the log knows it by (a command line) */
    const char *const *var_names, *const *var_values; /* {NAME} in the evaluator */
    size_t nvars;
    /* results */
    bool scored, from_log;
    double score, seconds;
} candidate;

enum {
    OPT_EVAL = 1100, OPT_EVAL_TIMEOUT, OPT_JOBS, OPT_MINIMIZE, OPT_KEEP, OPT_WORK, OPT_LOG,
    OPT_RESUME,
};

/* The search options' definitions, to append to a command's own. */
extern const lad_optdef SEARCH_OPTIONS[];
extern const size_t NSEARCH_OPTIONS;

#define SEARCH_HELP                                                                           \
    "      --eval CMD        the evaluator: run by /bin/sh -c once per candidate, {model}\n"  \
    "                        replaced by its path (quoted; also in $LADLE_MODEL) and {slot}\n" \
    "                        by 0..N-1 (--jobs N; also $LADLE_SLOT). Its score is the last\n" \
    "                        number on its stdout; higher is better\n"                       \
    "      --minimize        lower scores are better (a loss, a perplexity)\n"                \
    "      --eval-timeout S  an evaluation running longer than S seconds fails\n"            \
    "      --jobs N          evaluate up to N candidates at once (default 1)\n"             \
    "      --work DIR        where candidates are written (default: a temporary folder\n"    \
    "                        beside OUT, removed at the end); the log goes there too\n"      \
    "      --log FILE        the log: one JSON line per evaluation (default:\n"               \
    "                        DIR/ladle-log.jsonl with --work, none without)\n"               \
    "      --resume          re-use every score in the log; evaluate only the rest\n"        \
    "      --keep-candidates keep every candidate (default: deleted once scored)\n"

typedef struct search_opts {
    const char *eval;
    double timeout;     /* 0: none */
    int jobs;
    bool minimize, keep, resume;
    const char *work, *log;
} search_opts;

/* Handles a search option: 0 taken, 1 not one, -1 a usage error in err. */
int search_opts_take(search_opts *o, int id, const char *arg, lad_error *err);

typedef struct search {
    const char *cmd;    /* "soup" or "sweep", for messages */
    search_opts o;
    bool quiet;
    const char *suffix; /* candidates: ".safetensors", ".gguf", or "" (folders) */
    char *self;         /* this executable, to run merges */
    char *work;
    bool work_temp;     /* made by us: removed at the end */
    lad_journal log;
    bool has_log;
    int seq;            /* candidate names */
    size_t done, total; /* progress */
    size_t planned;     /* evaluations the whole search will need, if known */
    /* A merge for the caller to start in the background once search_eval's
     * own are done, while its evaluations run (search_after). */
    char *const *after;
    const char *after_out;
    lad_child *after_child;
    bool after_started;
} search;

/* out: where the result goes (the default work folder is made beside it),
 * or NULL. Checks the options (--resume needs a log). */
int search_open(search *s, const char *cmd, const search_opts *o, bool quiet, const char *suffix,
                const char *out, lad_error *err);
/* What candidates are: as OUT is, or without OUT as the first model input
 * (a GGUF file gives GGUF files, a folder folders, else safetensors). */
const char *search_suffix(const char *out, char *const *merge);
/* Scores every candidate that is not scored yet: from the log, else by
 * merging and evaluating it. Fails on the first failed merge or evaluation
 * (after letting the others running finish and be logged). */
int search_eval(search *s, candidate *c, size_t n, lad_error *err);
/* Asks the next search_eval to start `ladle MERGE... -o OUT` as ch once it
 * has merged its own candidates (so that merge overlaps their evaluation);
 * s->after_started then tells whether it did, and the caller waits for it
 * (search_make_wait) or stops it (search_make_cancel). */
void search_after(search *s, char *const *merge, const char *out, lad_child *ch);
/* Runs `ladle MERGE... -o OUT` with the child's messages passed on. */
int search_write(search *s, char *const *merge, const char *out, bool force, lad_error *err);
/* A file the search makes for itself, without its report, in the
 * background while the search goes on: started, then waited for (its
 * failure as search_write's), or stopped and its output removed. */
int search_make_start(search *s, char *const *merge, const char *out, lad_child *ch,
                      lad_error *err);
int search_make_wait(search *s, lad_child *ch, const char *out, lad_error *err);
void search_make_cancel(search *s, lad_child *ch, const char *out);
/* A fresh name in the work folder, "cand-KIND-NNNN" with the candidates'
 * suffix (a run killed earlier leaves it to remove_stale); allocated. */
char *search_work_file(search *s, const char *kind);
void search_close(search *s);
void candidate_free(candidate *c);
/* Frees a NULL-ended argument list. */
void argv_free(char **argv);
/* The log's recipe for a merge: "ladle ARGS..." quoted as a shell would. */
char *recipe_of(char *const *merge);

#endif
