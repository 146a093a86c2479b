/*
 * The output writer: the only code that touches the output path.
 *
 * Everything is written under a temporary sibling of OUT (a file for a
 * .safetensors output, a folder otherwise), flushed, and renamed into place
 * by lad_writer_commit; lad_writer_abort removes it. So OUT appears complete
 * or not at all, and an existing OUT (with --force) is replaced only once the
 * new one is on disk.
 */
#ifndef LADLE_WRITER_H
#define LADLE_WRITER_H

#include "ladle.h"

#include <jansson.h>

typedef struct lad_out_tensor {
    const char *name;
    lad_dtype dtype;
    int ndim;
    const uint64_t *shape;
    uint64_t nbytes;
} lad_out_tensor;

typedef struct lad_writer lad_writer;

/* Checks OUT (exists? --force? a folder that is not a model?) and creates
 * the temporary. as_dir: OUT is a Hugging Face folder. */
int lad_writer_begin(const char *out, bool as_dir, bool force, lad_writer **w, lad_error *err);

/* Creates one safetensors file (fname inside the folder; ignored for a
 * single-file output), writes its header and reserves its size. The caller
 * pwrite()s tensor data to *fd at *data_start + the tensor's offset. */
int lad_writer_add_safetensors(lad_writer *w, const char *fname, const lad_out_tensor *ts,
                               size_t n, json_t *metadata, int *fd, uint64_t *data_start,
                               lad_error *err);

/* Any file of the output: its header bytes written at 0 and its size
 * (total bytes) reserved; the caller pwrite()s the rest to *fd. */
int lad_writer_add_file(lad_writer *w, const char *fname, const void *hdr, size_t hlen,
                        uint64_t total, int *fd, lad_error *err);

/* A GGUF output file (gguf.c): the template's key-values (when it is a
 * GGUF file) with general.name and ladle.recipe set (general.file_type
 * when file_type >= 0, ARCH.block_count when block_count > 0), then the tensor
 * infos; tensor i's data goes at *data_start + ts[i].offset, offsets
 * aligned to lad_gguf_alignment(template). */
typedef struct lad_gguf_out {
    const char *name;
    uint32_t type;         /* ggml type */
    int ndim;
    const uint64_t *shape; /* row-major, as ladle holds it (GGUF stores it reversed) */
    uint64_t nbytes, offset;
} lad_gguf_out;
int lad_writer_add_gguf(lad_writer *w, const lad_file *tmpl, const char *model_name,
                        const char *recipe, int file_type, uint64_t block_count,
                        const lad_gguf_out *ts, size_t n, int *fd, uint64_t *data_start,
                        lad_error *err);

/* Small files of a folder output. */
int lad_writer_add_bytes(lad_writer *w, const char *fname, const void *data, size_t len,
                         lad_error *err);
int lad_writer_copy_in(lad_writer *w, const char *fname, const char *src, lad_error *err);

int lad_writer_commit(lad_writer *w, lad_error *err); /* frees w */
void lad_writer_abort(lad_writer *w);                 /* frees w */

/* The non-weight files of a Hugging Face folder output (hf_output.c):
 * small files copied from template_dir (tokenizer, generation config; never
 * weights or files written here), then each text that is not NULL. */
typedef struct lad_hf_extras {
    const char *template_dir;
    const char *tokenizer_dir; /* tokenizer files from here instead, or NULL */
    char *tokenizer_json;  /* tokenizer.json and tokenizer_config.json written */
    char *tokenizer_config; /* instead of copied, or NULL */
    bool drop_chat_template_files; /* chat_template.jinja etc. not copied (replaced) */
    char *config;          /* config.json */
    char *index;           /* model.safetensors.index.json */
    char *card;            /* README.md */
} lad_hf_extras;
int lad_hf_write(lad_writer *w, const lad_hf_extras *x, lad_error *err);

/* The safetensors header for these tensors, laid out in the given order,
 * padded with spaces to a multiple of 8 bytes. */
char *lad_safetensors_header(const lad_out_tensor *ts, size_t n, json_t *metadata,
                             size_t *len);

#endif
