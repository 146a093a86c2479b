/* The plan's internals, shared by the planner (plan.c), the engine
 * (engine.c) and the output extras (formats/hf_output.c). */
#ifndef LADLE_PLAN_H
#define LADLE_PLAN_H

#include "ladle.h"

#include <jansson.h>

typedef struct lad_shard {
    char *fname;            /* "model-00001-of-00002.safetensors" */
    size_t first, count;    /* its tensors: plan->t[first .. first+count) */
    uint64_t data_bytes;
} lad_shard;

/* Is tensor i written by this part (always, without --part)? (plan.c) */
bool lad_plan_in_part(const lad_plan *p, size_t i);
struct lad_writer;
/* Runs the plan into the writer's files (committing or aborting w), or
 * into memory (w NULL) (engine.c). */
int lad_engine_execute(lad_plan *p, struct lad_writer *w, unsigned char *const *mem,
                       lad_run_stats *stats, lad_error *err);
/* --part (parts.c): the part's merge, staged and moved into OUT; and its
 * staging folder's manifest, from every shard's file size. */
int lad_part_execute(lad_plan *p, lad_run_stats *stats, lad_parts_status *st, lad_error *err);
int lad_part_manifest(const lad_plan *p, struct lad_writer *w, const uint64_t *file_bytes,
                      lad_error *err);

struct lad_plan {
    lad_merge_request req;  /* the caller keeps the models open */
    lad_plan_tensor *t;
    size_t n;
    const lad_tensor **inptrs; /* storage behind every t[i].in */
    size_t max_in;          /* inputs per tensor at most */
    lad_shard *shards;
    size_t nshards;
    uint32_t *shard_part;   /* with req.nparts: the part that writes each shard */
    bool as_dir;            /* a Hugging Face folder, not one file */
    bool as_gguf;           /* one GGUF file (OUT ends in .gguf) */
    size_t gguf_fallback;   /* tensors written Q8_0: their type is one ladle cannot write */
    uint32_t gguf_fallback_type;
    bool untie_head;        /* we add an lm_head.weight the template ties */
    uint64_t bytes_in, bytes_out;
    lad_op *ops;            /* per tensor, when the request has a schedule */
    lad_structure *structure; /* the template's stacks of blocks */
    json_t *recipe;         /* how the output was made, for metadata and card */
    size_t *model_ids;      /* 0, 1, ... nmodels - 1: input j of a tensor is model j */
    struct lad_vocabs *vocabs; /* tokenizers and row maps (vocab.c), or NULL */
    uint64_t vocab_rows;    /* the output's vocabulary rows (0: no such tensor) */
    char *chat_template;    /* the output's chat template, resolved, or NULL */
    char **warnings;        /* what the caller should tell the user */
    size_t nwarnings;
};

/* The pad rows of a vocabulary tensor (pad_to_multiple_of): per input, its
 * mean row over the vocabulary's rows in its dtype, filled by the engine
 * on first use under the lock. */
#include <pthread.h>
struct lad_pad_cache {
    pthread_mutex_t lock;
    size_t nin;
    unsigned char **mean;
};

/* Vocabularies (vocab.c). For a vocabulary tensor (embeddings, heads),
 * sets pt->rows where an input's rows are not the output's (another size
 * or order) and pt->fill_from; model_of[j] is input j's model index;
 * *out_rows: the output's first dimension. */
typedef struct lad_vocabs lad_vocabs;
int lad_vocab_plan(lad_plan *p, lad_plan_tensor *pt, const lad_model *const *in_model,
                   size_t first_in, const size_t *model_of, uint64_t *out_rows, lad_error *err);
/* With tokenizer_source union: the template's tokenizer.json and
 * tokenizer_config.json (NULL when it has none, or no added_tokens_decoder)
 * with the tokens the union adds; both NULL without a union. */
int lad_vocab_union_files(const lad_plan *p, char **tokenizer_json, char **tokenizer_config,
                          lad_error *err);
/* Adds the plan's warnings on dropped, filled and reordered rows. */
int lad_vocab_warnings(lad_plan *p, lad_error *err);
void lad_vocabs_free(lad_vocabs *vs);
/* Resolves req.chat_template into p->chat_template (extras.c). */
int lad_plan_chat_template(lad_plan *p, lad_error *err);
/* Adds a warning (msg, allocated, is the plan's even on failure; NULL: out
 * of memory). */
int lad_plan_warn(lad_plan *p, char *msg, lad_error *err);

/* The texts of a folder output's config.json, index and README.md, and the
 * folder its tokenizer files come from (extras.c); free with
 * lad_extras_free. */
struct lad_hf_extras;
int lad_plan_extras(const struct lad_plan *p, struct lad_hf_extras *x, lad_error *err);
void lad_extras_free(struct lad_hf_extras *x);

/* The Hub id of a model: its config's _name_or_path, else the path it was
 * given by when that reads like one; or NULL (extras.c). */
const char *lad_model_hub_id(const lad_model *m);

#endif
