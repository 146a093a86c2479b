/* ladle: the command dispatcher. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "ladle " LADLE_VERSION " - weight-space model merging\n"
    "\n"
    "usage: ladle COMMAND [options]    (ladle COMMAND --help for its options)\n"
    "\n"
    "commands:\n"
    "  info MODEL                       tensors, dtypes, shapes, metadata\n"
    "  lerp A B --alpha X               (1 - X) * A + X * B\n"
    "  soup M1 M2 ... [--weights W]     uniform or weighted average\n"
    "  task --base B --add L:M ...      task arithmetic: B + S * sum L_i (M_i - B)\n"
    "  ckpt DIR [--last N]              average of a run's last N checkpoints\n"
    "  slerp A B --t X                  spherical interpolation, per tensor\n"
    "  nuslerp A B --t X [--base B]     mergekit's nuslerp: of task vectors, per row\n"
    "  nearswap BASE B --t T            B where it is within T of BASE\n"
    "  multislerp M1 M2 ... [--base B]  mergekit's multislerp: weighted mean on the sphere\n"
    "  karcher M1 M2 ...                the Karcher mean on the sphere, by mean norm\n"
    "  ties --base B --add W:M ...      trim, elect sign, disjoint merge (TIES)\n"
    "  dare --base B --add W:M ...      random drop and rescale (DARE), linear or TIES\n"
    "  breadcrumbs --base B --add W:M   drop outliers and small deltas (Breadcrumbs)\n"
    "  della --base B --add W:M ...     magnitude-ranked random drop (DELLA)\n"
    "  stock --base B M1 M2 ...         Model Stock: interpolate to the base by angle\n"
    "  sce --base B M1 M2 ...           SCE: select by variance, weight, erase signs\n"
    "  ram --base B M1 M2 ... [--plus]  RAM: shared deltas averaged, unique ones kept\n"
    "  arcee-fusion --base B M          M's changes where they matter most (by KL)\n"
    "  iso-c --base B M1 M2 ...         Iso-C: the summed task matrices, spectrum flattened\n"
    "  iso-cts --base B M1 M2 ...       Iso-CTS: a common and task-specific subspaces, flat\n"
    "  tsv --base B M1 M2 ...           TSV-M: each task's top singular vectors, orthogonalised\n"
    "  wudi --base B M1 M2 ...          WUDI: the merge that least disturbs each task's inputs\n"
    "  consensus-ta --base B M1 M2 ...  task arithmetic where >= k tasks' TALL masks agree\n"
    "  consensus-ties --base B --add W:M ...\n"
    "                                   TIES where >= k tasks' TALL masks agree\n"
    "  diff A B [--base B]              will averaging work? norms, cosine, sign conflicts\n"
    "  masks --base B M1 M2 ... -o F    TALL-mask compression: one task vector + T bit masks\n"
    "  index OUT                        complete a merge written in parts (--part I/N)\n"
    "  masks apply --base B F --task I -o OUT\n"
    "                                   one task's model back from its mask\n"
    "  merge CONFIG.yml [--dry-run]     run a mergekit YAML recipe\n"
    "  lora apply BASE ADAPTER... -o OUT\n"
    "                                   merge PEFT LoRA adapters into their base\n"
    "  lora extract --base B --fine-tuned M --rank R -o DIR\n"
    "                                   a PEFT LoRA adapter from a fine-tune (truncated SVD)\n"
    "  soup --greedy --eval CMD M...    greedy soup: add ingredients while the score holds\n"
    "  sweep --grid N=A:B:K --eval CMD -- MERGE...\n"
    "                                   score a merge over a parameter grid, keep the best\n"
    "\n"
    "A MODEL is a .safetensors file, a PyTorch .bin/.pt checkpoint, a Hugging Face\n"
    "folder (model.safetensors, pytorch_model.bin, or their index with its shards),\n"
    "or BASE+ADAPTER: a model with a PEFT LoRA adapter applied.\n";

static const struct {
    const char *name;
    int (*run)(int, char **);
} commands[] = {
    {"info", cmd_info},   {"lerp", cmd_merge},  {"soup", cmd_merge},
    {"task", cmd_merge},  {"ckpt", cmd_merge},  {"slerp", cmd_merge},
    {"ties", cmd_merge},  {"dare", cmd_merge},  {"breadcrumbs", cmd_merge},
    {"stock", cmd_merge}, {"diff", cmd_diff},   {"della", cmd_merge},
    {"merge", cmd_merge}, {"sweep", cmd_sweep},  {"lora", cmd_lora},
    {"nearswap", cmd_merge}, {"nuslerp", cmd_merge}, {"multislerp", cmd_merge},
    {"karcher", cmd_merge}, {"sce", cmd_merge}, {"ram", cmd_merge},
    {"arcee-fusion", cmd_merge}, {"iso-c", cmd_merge}, {"tsv", cmd_merge},
    {"iso-cts", cmd_merge}, {"wudi", cmd_merge}, {"consensus-ta", cmd_merge},
    {"consensus-ties", cmd_merge}, {"masks", cmd_masks}, {"index", cmd_index},
};

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("ladle %s (conversions: %s)\n", LADLE_VERSION, lad_convert_impl());
        return 0;
    }
    lad_interrupt_install();
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    return usage_error(NULL, "unknown command '%s'", argv[1]);
}
