/*
 * The non-weight files of a Hugging Face folder output, written from the
 * texts the engine makes of a plan (engine/extras.c):
 *   config.json                  the template's, edited to describe the output
 *   tokenizer files etc.         small files copied from the template folder
 *                                (the tokenizer's from another model's, or a
 *                                union's tokenizer.json written)
 *   model.safetensors.index.json when sharded: metadata.total_size, weight_map
 *   README.md                    a model card saying how the model was made
 */
#include "util.h"
#include "writer.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_COPY_BYTES (512ull << 20) /* tokenizer.json can be tens of MB */

/* Weights and files we write ourselves are never copied. */
static bool skip_file(const char *name)
{
    static const char *const exact[] = {"config.json", "README.md",
                                        "model.safetensors.index.json",
                                        "pytorch_model.bin.index.json"};
    static const char *const suffix[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt",
                                         ".gguf", ".h5", ".msgpack", ".onnx", ".npz",
                                         ".pkl", ".index.json"};
    if (name[0] == '.')
        return true;
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (!strcmp(name, exact[i]))
            return true;
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++)
        if (lad_ends_with(name, suffix[i]))
            return true;
    return false;
}

/* A tokenizer's files, as transformers' tokenizers save them. */
static bool tokenizer_file(const char *name)
{
    static const char *const prefix[] = {"tokenizer", "special_tokens_map", "added_tokens",
                                         "vocab.", "merges.txt", "spiece.model",
                                         "sentencepiece", "chat_template"};
    for (size_t i = 0; i < sizeof prefix / sizeof *prefix; i++)
        if (!strncmp(name, prefix[i], strlen(prefix[i])))
            return true;
    return false;
}

/* Copies dir's small files: only the tokenizer's (tokenizer > 0), all but
 * the tokenizer's (< 0), or all (0); never one the extras write. */
static int copy_small_files(lad_writer *w, const char *dir, int tokenizer,
                            const lad_hf_extras *x, lad_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (skip_file(e->d_name) || (tokenizer && tokenizer_file(e->d_name) != (tokenizer > 0)))
            continue;
        if ((x->tokenizer_json && !strcmp(e->d_name, "tokenizer.json")) ||
            (x->tokenizer_config && !strcmp(e->d_name, "tokenizer_config.json")) ||
            (x->drop_chat_template_files && !strncmp(e->d_name, "chat_template", 13)))
            continue;
        char *src = lad_path_join(dir, e->d_name);
        struct stat st;
        if (src && stat(src, &st) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t)st.st_size <= MAX_COPY_BYTES)
            rc = lad_writer_copy_in(w, e->d_name, src, err);
        free(src);
    }
    closedir(d);
    return rc;
}

/* Writes text as fname in the folder, a trailing newline added. */
static int add_text(lad_writer *w, const char *fname, const char *text, lad_error *err)
{
    size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (!line)
        return lad_fail(err, "out of memory");
    memcpy(line, text, n);
    if (n == 0 || text[n - 1] != '\n')
        line[n++] = '\n';
    int rc = lad_writer_add_bytes(w, fname, line, n, err);
    free(line);
    return rc;
}

int lad_hf_write(lad_writer *w, const lad_hf_extras *x, lad_error *err)
{
    if (x->template_dir && copy_small_files(w, x->template_dir, x->tokenizer_dir ? -1 : 0, x, err))
        return -1;
    if (x->tokenizer_dir && copy_small_files(w, x->tokenizer_dir, 1, x, err))
        return -1;
    if (x->tokenizer_json && add_text(w, "tokenizer.json", x->tokenizer_json, err))
        return -1;
    if (x->tokenizer_config && add_text(w, "tokenizer_config.json", x->tokenizer_config, err))
        return -1;
    if (x->config && add_text(w, "config.json", x->config, err))
        return -1;
    if (x->index && add_text(w, "model.safetensors.index.json", x->index, err))
        return -1;
    if (x->card && add_text(w, "README.md", x->card, err))
        return -1;
    return 0;
}
