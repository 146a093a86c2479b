/* ladle masks: TALL-mask compression of a family of fine-tunes, and
 * ladle masks apply: one task's model back from it. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: ladle masks --base BASE M1 M2 ... -o MASKS.safetensors [--tall-lambda L]\n"
    "                   [--dtype T] [--force] [-q]\n"
    "       ladle masks apply --base BASE MASKS.safetensors --task I -o OUT.safetensors\n"
    "                   [--dtype T] [--force] [-q]\n"
    "\n"
    "TALL-mask compression (Wang et al. 2024): the fine-tunes M_i of BASE kept as\n"
    "their summed task vector tau_MTL = sum_i (M_i - BASE) and, per task, one bit per\n"
    "weight: its TALL mask |tau_i| > L |tau_MTL - tau_i| (the masks consensus-ta\n"
    "counts). `masks apply` rebuilds task I as BASE + mask_I * tau_MTL. T fine-tunes\n"
    "cost one model (tau_MTL) plus T bits per weight instead of T models.\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --tall-lambda L   the masks' lambda (default 0.6, as consensus-ta)\n"
    "      --dtype T         masks: tau_MTL's dtype (f32, the default, bf16, f16);\n"
    "                        apply: the model's (default: the base's)\n"
    "      --task I          apply: the task, by index (0 = M1) or as masks named it\n"
    "  -o, --output OUT      the .safetensors file to write\n"
    "      --force           replace OUT if it exists\n"
    "  -q, --quiet           no progress or summary on stderr\n"
    "  -h, --help            this help\n";

int cmd_masks(int argc, char **argv)
{
    lad_interrupt_install();
    bool apply = argc > 1 && !strcmp(argv[1], "apply"), quiet = false;
    const char *cmd = apply ? "masks apply" : "masks";
    lad_error err = {0};
    lad_masks_stats st;
    int rc = lad_masks_argv(argc, argv, progress_bar, NULL, &quiet, &st, &err);
    if (rc == 1) {
        fputs(HELP, stdout);
        return 0;
    }
    if (rc != 0)
        return report_cmd(cmd, &err);
    if (apply) {
        note(quiet, "masks apply: wrote the task's model");
    } else {
        char b[32];
        lad_format_bytes(st.bytes, b, sizeof b);
        note(quiet, "masks: %zu tensors' summed task vector and their masks (%s); %.1f%% of mask "
                    "bits set",
             st.tensors, b, 100 * st.kept_fraction);
    }
    return 0;
}
