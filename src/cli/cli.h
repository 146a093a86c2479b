/* The command-line layer: the only code that prints or picks exit codes. */
#ifndef LADLE_CLI_H
#define LADLE_CLI_H

#include "ladle.h"
#include "../core/util.h"

#include <jansson.h>

enum { EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

#define COMMON_MERGE_HELP                                                                     \
    "  -o, --output OUT      where to write: NAME.safetensors for one file, anything else\n"  \
    "                        for a Hugging Face folder (config, tokenizer, model card),\n"    \
    "                        NAME.gguf for a GGUF file (llama.cpp)\n"                        \
    "      --dtype T         output dtype: f32, f16 or bf16 (default: each input tensor's)\n" \
    "      --quant T         a GGUF output's type for matrices: q8_0, q4_0, f16, bf16, f32\n" \
    "                        (default: each input tensor's; types ladle cannot write: q8_0)\n" \
    "  -j, --threads N       worker threads (default: all cores)\n"                           \
    "      --shard-size S    largest shard of a folder output, e.g. 2GB, 500MB; 0 = never\n"  \
    "                        shard (default 5GB, decimal units as transformers uses them)\n"  \
    "      --force           replace OUT if it exists\n"                                     \
    "      --part I/N        write only part I of N of a folder output's shards (parts\n"   \
    "                        balanced by bytes; N processes or machines, e.g. a Slurm\n"    \
    "                        array job); the last to finish completes OUT (ladle index)\n" \
    "      --set P:NAME=V    for tensors whose name contains P (or P1|P2), use V for the\n"   \
    "                        parameter NAME; V may be a gradient a,b,c (repeatable; the\n"   \
    "                        first match wins). Parameters given as a,b,c are gradients\n"   \
    "                        across the layers, as in mergekit. P may be a layer group:\n"  \
    "                        embed, head, early, middle, late, layers[A:B]\n"               \
    "      --layers REGEX    name a stack of blocks the names do not show: one capture\n"    \
    "                        group is the block index (repeatable; see ladle info)\n"        \
    "      --dry-run         print every output tensor with its inputs, depth t and\n"      \
    "                        resolved parameters; write nothing\n"                           \
    "      --take-unmergeable MODEL\n"                                                      \
    "                        integer and bool tensors that differ between the inputs are\n" \
    "                        an error; take them from MODEL (an input as given, or first)\n" \
    "      --tokenizer-source S\n"                                                          \
    "                        the output's vocabulary and tokenizer: base (the default: the\n" \
    "                        base's, or the first model's), MODEL (an input as given), or\n" \
    "                        union (every input's tokens; a tokenizer.json is written)\n"    \
    "      --chat-template T the output's chat template (tokenizer_config.json): chatml,\n"  \
    "                        llama3, alpaca, auto (the inputs' most common), a .jinja\n"    \
    "                        file, or the template itself\n"                                \
    "      --pad-to-multiple-of N\n"                                                       \
    "                        pad the vocabulary (embedding and head rows) to a multiple\n"  \
    "                        of N; the new rows are each model's mean row (mergekit's\n"    \
    "                        tokenizer: pad_to_multiple_of)\n"                             \
    "  -q, --quiet           no progress or summary on stderr\n"                             \
    "  -h, --help            this help\n"                                                   \
    "\n"                                                                                      \
    "Embeddings and heads of inputs with another vocabulary (added tokens, another\n"        \
    "order) are matched by token to the output's, through each model's\n"                   \
    "tokenizer.json: rows the output lacks are dropped, rows an input lacks come\n"          \
    "from the base (else the mean of the inputs that have them); a warning says so.\n"       \
    "config.json's vocab_size follows the output's vocabulary.\n"

/* The help of a merge command (help.c), or NULL. */
const char *merge_help(const char *cmd);

/* Parses a command's options (lad_opts_parse): on --help prints `help` and
 * sets *exit_code 0; on a usage error prints it and sets *exit_code 2;
 * either way returns false. True: the positionals are in *pos (free it). */
bool cli_parse(const char *cmd, const char *help, int argc, char **argv, const lad_optdef *defs,
               bool stop_at_positional, lad_opt_fn take, void *ctx, char *const **pos, int *npos,
               int *exit_code);

/* Printing. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "ladle: error: ..." and returns the exit code: 2 for a usage error
 * (with a pointer to cmd's --help when cmd is given), 130 for an interrupt. */
int report_cmd(const char *cmd, const lad_error *err);
int report(const lad_error *err);
void note(bool quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The progress bar on stderr (a lad_progress_fn). */
int progress_bar(void *ctx, uint64_t done, uint64_t total, double seconds, bool final);

int cmd_info(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_merge(int argc, char **argv); /* every merge command: lerp, soup, ..., merge */
int cmd_greedy(int argc, char **argv); /* soup --greedy */
int cmd_sweep(int argc, char **argv);
int cmd_lora(int argc, char **argv); /* lora apply (a merge), lora extract */
int cmd_masks(int argc, char **argv); /* masks, masks apply */
int cmd_index(int argc, char **argv); /* index: a merge in parts completed */

#endif
