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

struct lad_plan {
    lad_merge_request req;  /* the caller keeps the models open */
    lad_plan_tensor *t;
    size_t n;
    const lad_tensor **inptrs; /* storage behind every t[i].in */
    size_t max_in;          /* inputs per tensor at most */
    lad_shard *shards;
    size_t nshards;
    bool as_dir;            /* a Hugging Face folder, not one file */
    bool untie_head;        /* we add an lm_head.weight the template ties */
    uint64_t bytes_in, bytes_out;
    lad_op *ops;            /* per tensor, when the request has a schedule */
    lad_structure *structure; /* the template's stacks of blocks */
    json_t *recipe;         /* how the output was made, for metadata and card */
};

/* The texts of a folder output's config.json, index and README.md, and the
 * folder its tokenizer files come from (extras.c); free with
 * lad_extras_free. */
struct lad_hf_extras;
int lad_plan_extras(const struct lad_plan *p, struct lad_hf_extras *x, lad_error *err);
void lad_extras_free(struct lad_hf_extras *x);

#endif
