/* ladle lora apply ... (a merge command) and ladle lora extract ...: a PEFT
 * LoRA adapter from a base and its fine-tune. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: ladle lora extract --base BASE --fine-tuned MODEL -o ADAPTER_DIR\n"
    "                          [--rank R] [options]\n"
    "\n"
    "Extracts a PEFT LoRA adapter that turns BASE into (nearly) MODEL, as\n"
    "mergekit-extract-lora does: each changed 2-D weight's delta D = MODEL - BASE is\n"
    "replaced by its rank-R truncated SVD, written as lora_A = sqrt(S) Vt and lora_B\n"
    "= U sqrt(S) (B @ A ~= D; lora_alpha = r, so the scale is 1). Changed biases of\n"
    "those modules become lora_B.bias deltas; other changed tensors (norms, the\n"
    "embeddings and head unless --embed-lora) are saved whole (modules_to_save).\n"
    "Unchanged tensors are left out. The summary gives the relative error |D - B A|\n"
    "/ |D| of the LoRA modules together: what rank R loses.\n"
    "\n"
    "      --base BASE       the model MODEL was fine-tuned from (required)\n"
    "      --fine-tuned MODEL\n"
    "                        the fine-tune (required)\n"
    "  -o, --output DIR      the adapter folder: adapter_model.safetensors,\n"
    "                        adapter_config.json, README.md (required)\n"
    "  -r, --rank R          the largest rank (default 128, as mergekit)\n"
    "      --sv-epsilon E    also drop singular values at or below E (smaller ranks go to\n"
    "                        rank_pattern)\n"
    "      --embed-lora      give the input embedding (lora_embedding_A/B) and the head\n"
    "                        LoRAs too, instead of full copies\n"
    "      --no-distribute-scale\n"
    "                        lora_A = S Vt, lora_B = U\n"
    "      --include REGEX   only tensors whose name matches (repeatable)\n"
    "      --exclude REGEX   leave out tensors whose name matches (repeatable)\n"
    "      --exact           LAPACK's full SVD of each delta (sgesdd, as mergekit's\n"
    "                        torch.linalg.svd): the optimal error, ~10x slower\n"
    "      --randomized      the default: a randomized SVD (range finder, R + max(R, 10)\n"
    "                        columns, power iterations), near-optimal error\n"
    "      --power-iters N   its power iterations (default 4)\n"
    "      --seed N          its random test matrices' seed (default 0)\n"
    "      --base-name NAME  base_model_name_or_path in adapter_config.json (default:\n"
    "                        the base's Hub id, else its path)\n"
    "      --dtype T         the adapter's dtype: f32, f16 or bf16 (default: each\n"
    "                        tensor's)\n"
    "      --force           replace ADAPTER_DIR if it exists\n"
    "  -q, --quiet           no progress or summary on stderr\n"
    "  -h, --help            this help\n";

static int extract_progress(void *ctx, uint64_t done, uint64_t total, double seconds, bool final)
{
    double *last = ctx; /* when it was last drawn: four times a second at most */
    if (!final && seconds - *last < 0.25)
        return 0;
    *last = seconds;
    double frac = total ? (double)done / (double)total : 1.0;
    fprintf(stderr, "\rextracting: %3.0f%% of the weights  %s %.0fs ", frac * 100,
            final ? "in" : "eta",
            final ? seconds : (frac > 0 ? seconds * (1 - frac) / frac : 0));
    if (final)
        fputc('\n', stderr);
    return 0;
}

static int cmd_extract(int argc, char **argv)
{
    lad_interrupt_install();
    lad_error err = {0};
    lad_extract_stats st;
    double last = -1;
    bool quiet = false;
    int rc = lad_lora_extract_argv(argc, argv, extract_progress, &last, &quiet, &st, &err);
    if (rc == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (rc != 0) {
        if (!quiet && last >= 0)
            fputc('\n', stderr);
        return report_cmd("lora extract", &err);
    }
    note(quiet,
         "lora extract: %zu modules as LoRAs (relative error %.4g), %zu bias deltas, %zu full "
         "copies; %zu tensors unchanged%s%s, in %.1fs",
         st.lora, st.rel_error, st.biases, st.full, st.same,
         st.left_out ? ", some changed ones left out by --include/--exclude" : "",
         st.below_epsilon ? ", some below --sv-epsilon" : "", st.seconds);
    return 0;
}

int cmd_lora(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "extract"))
        return cmd_extract(argc - 1, argv + 1);
    return cmd_merge(argc, argv);
}
