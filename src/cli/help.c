/* The help of every merge command (ladle CMD --help, and the man page). */
#include "cli.h"
#include "search.h"

#include <string.h>

#define GTA_COMMON_HELP                                                                       \
    "      --base BASE       the model the fine-tunes started from (required)\n"             \
    "      --add W:MODEL     a fine-tune and the weight of its task vector (repeatable)\n"   \
    "      --lambda S        scale of the merged task vector (default 1)\n"                  \
    "      --normalize, --no-normalize\n"                                                    \
    "                        divide by the weights that contributed at each element\n"      \
    "      --normalize-magnitude\n"                                                          \
    "                        first scale each task vector to the mean norm of them all\n"   \
    "                        (per tensor), so no one fine-tune drowns the others\n"

static const char HELP_LERP[] =
    "usage: ladle lerp A B --alpha X -o OUT [options]\n"
    "\n"
    "Linear interpolation of two models: theta = (1 - X) * A + X * B, per tensor,\n"
    "computed in fp32 (fp64 for F64 tensors) and rounded once to the output dtype.\n"
    "A and B are .safetensors files, PyTorch .bin/.pt checkpoints or Hugging Face\n"
    "folders; config, tokenizer and non-float tensors come from A.\n"
    "\n"
    "  -a, --alpha X         weight of B, in [0, 1] (required); a gradient a,b,c varies\n"
    "                        it across the layers (embeddings take a, lm_head c)\n"
    "      --extrapolate     allow X outside [0, 1]\n" COMMON_MERGE_HELP;

static const char HELP_SLERP[] =
    "usage: ladle slerp A B --t X -o OUT [options]\n"
    "\n"
    "Spherical linear interpolation of two models, per tensor, as mergekit does it:\n"
    "the angle between A and B (normalised) sets the weights sin((1-X)th)/sin(th)\n"
    "and sin(X th)/sin(th) of A and B; tensors whose normalised dot product exceeds\n"
    "0.9995 in magnitude are interpolated linearly instead. X = 0 gives A, 1 gives B.\n"
    "Config, tokenizer and non-float tensors come from A.\n"
    "\n"
    "  -t, --t X             interpolation factor in [0, 1] (required); a gradient\n"
    "                        a,b,c varies it across the layers, as in mergekit\n" COMMON_MERGE_HELP;

static const char HELP_SOUP[] =
    "usage: ladle soup M1 M2 ... -o OUT [--weights w1,w2,...] [options]\n"
    "       ladle soup --greedy --eval CMD M1 M2 ... -o OUT [--scores s1,s2,...] [options]\n"
    "\n"
    "Uniform soup (Wortsman et al. 2022): the plain average of N models. With\n"
    "--weights, sum(w_i * theta_i) / sum(w_i). Computed in fp32 (fp64 for F64\n"
    "tensors), rounded once. Config, tokenizer and non-float tensors come from M1.\n"
    "\n"
    "Greedy soup (--greedy): rank the ingredients by their own held-out score\n"
    "(--scores, else evaluated with CMD), best first; start from the best; add\n"
    "each next one if the uniform soup with it scores at least as well as the\n"
    "best so far. Every candidate is the --sum-first soup of its ingredients,\n"
    "written in the output dtype and evaluated as it would be shipped; once\n"
    "the soup has a few ingredients, each reads the soup's stored fp32 sum\n"
    "and the newest ones only. While a candidate is evaluated, the next one as\n"
    "it is if this one is rejected is merged. OUT is bit-identical to the last\n"
    "accepted one.\n"
    "Prints a table (or --json) of ingredients, scores and decisions.\n"
    "\n"
    "      --weights W       comma-separated weights, one per model\n"
    "      --sum-first       the mean by one division: the fp32 sum in the order\n"
    "                        given, divided by N (the greedy soup's candidates)\n"
    "      --sum-only        with --sum-first: write that sum itself, in F32\n"
    "      --partial-sum FILE:K  with --sum-first: FILE holds the --sum-only sum of\n"
    "                        the first K models and stands in for them (M1 still\n"
    "                        gives config, tokenizer and dtypes); same bits\n"
    "      --greedy          greedy soup (needs --eval)\n"
    "      --scores S        the ingredients' own scores, comma-separated, in the\n"
    "                        order given (default: evaluate each with CMD)\n"
    "      --strict          add an ingredient only if the score improves\n"
    "      --json            print the greedy soup's table as JSON\n"
    "      --plot FILE.svg   draw the search: the soup's score as each ingredient is\n"
    "                        tried (rejected ones hollow), and each one's own score\n" SEARCH_HELP
    COMMON_MERGE_HELP;

static const char HELP_CKPT[] =
    "usage: ladle ckpt DIR [--last N] -o OUT [options]\n"
    "\n"
    "Checkpoint soup: the uniform average of the last N checkpoints of one run.\n"
    "DIR holds checkpoint-STEP.safetensors files or Hugging Face Trainer folders\n"
    "checkpoint-STEP/, ordered by STEP as a number (checkpoint-1000 comes after\n"
    "checkpoint-999). Config and tokenizer come from the newest one.\n"
    "\n"
    "      --last N          how many of the newest checkpoints (default 5)\n" COMMON_MERGE_HELP;

static const char HELP_TASK[] =
    "usage: ladle task --base BASE --add L:MODEL [--add L:MODEL ...] -o OUT\n"
    "                  [--onto C] [--lambda S] [options]\n"
    "\n"
    "Task arithmetic (Ilharco et al. 2023): task vectors tau_i = theta_i - theta_BASE,\n"
    "combined as theta = C + S * sum_i L_i * tau_i, in fp32 (fp64 for F64 tensors).\n"
    "  - a negative L removes a capability (negation);\n"
    "  - --onto C gives the analogy form, C + S * sum L_i * tau_i (default C = BASE).\n"
    "Config, tokenizer and non-float tensors come from C (BASE without --onto).\n"
    "L and S may be gradients a,b,c across the layers; --set names them lambda and\n"
    "weight1, weight2, ... (in --add order).\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --add L:MODEL     a fine-tune and the weight L of its task vector (repeatable)\n"
    "      --onto C          add the task vectors to C instead of BASE\n"
    "      --lambda S        scale of the summed task vectors (default 1)\n"
    "      --normalize-magnitude\n"
    "                        first scale each task vector to the mean norm of them all\n"
    "                        (per tensor), so no one fine-tune drowns the others\n" COMMON_MERGE_HELP;

static const char HELP_STOCK[] =
    "usage: ladle stock --base BASE M1 M2 [M3 ...] -o OUT [options]\n"
    "\n"
    "Model Stock (Jang et al. 2024), as mergekit computes it: per tensor, the mean\n"
    "cosine of the angles between the fine-tunes' displacements from BASE sets\n"
    "t = N cos / (1 + (N-1) cos), and out = t * mean(M_i) + (1 - t) * BASE.\n"
    "Needs at least two fine-tunes (at most 24).\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --filter-wise     one t per row (along the last dimension), as mergekit's\n"
    "                        filter_wise: true\n" COMMON_MERGE_HELP;

static const char HELP_SCE[] =
    "usage: ladle sce --base BASE M1 M2 ... [--select-topk F] -o OUT [options]\n"
    "\n"
    "SCE (Wan et al. 2024, FuseChat), as mergekit: per tensor, keep the elements whose\n"
    "task vectors vary most across the models (the top F fraction of the nonzero\n"
    "variances; exact, ties to the lowest index), weight each task vector by its mean\n"
    "square (normalised), elect a sign per element (of the sum), and average the\n"
    "agreeing entries by weight: out = BASE + sum w_i d_i / sum w_i over them.\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --select-topk F   fraction of elements kept (default 1: all)\n" COMMON_MERGE_HELP;

static const char HELP_RAM[] =
    "usage: ladle ram --base BASE M1 M2 ... [--plus [--r R] [--alpha A]] -o OUT [options]\n"
    "\n"
    "Reinforced Agent Merging, as mergekit's ram: per element, a task vector counts\n"
    "where |M_i - BASE| > E; out = BASE + the counting ones' sum divided by how many\n"
    "count (a change only one model makes is kept whole, shared ones averaged). With\n"
    "--plus (ramplus_tl), model i's unique changes are scaled by 1 + R * min(rho_i, A),\n"
    "rho_i = its shared / its unique counting elements in the tensor.\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --epsilon E       the threshold (default 1e-5)\n"
    "      --plus            RAM+ (ramplus_tl)\n"
    "      --r R             RAM+'s scale (default 0.1)\n"
    "      --alpha A         RAM+'s cap on rho (default 0.2)\n" COMMON_MERGE_HELP;

static const char HELP_MERGE[] =
    "usage: ladle merge CONFIG.yml -o OUT [--dry-run] [--var NAME=VALUE] [options]\n"
    "\n"
    "Runs a mergekit YAML recipe on ladle's engine: merge_method linear, slerp,\n"
    "nuslerp, multislerp, karcher, nearswap, task_arithmetic, ties, dare_ties,\n"
    "dare_linear, breadcrumbs, breadcrumbs_ties, della, della_linear, model_stock,\n"
    "sce, ram, ramplus_tl, arcee_fusion, iso_c, iso_cts, tsv or passthrough; models\n"
    "with per-model parameters, base_model, parameters as numbers, gradients or\n"
    "filter lists, dtype / out_dtype, tokenizer_source (base, union, a model) or\n"
    "tokenizer: {source, tokens, pad_to_multiple_of}, chat_template, model+lora\n"
    "references. Model paths are taken as written, else relative to the recipe's\n"
    "folder. Every error names the recipe's line.\n"
    "\n"
    "      --var NAME=VALUE  replace {NAME} in the recipe's text by VALUE before it is\n"
    "                        read (repeatable): one recipe for a whole `ladle sweep`,\n"
    "                        e.g. `t: {t}` with --var t={t} in the sweep's command\n"
    COMMON_MERGE_HELP;

static const char HELP_TIES[] =
    "usage: ladle ties --base BASE --add W:MODEL ... -o OUT [options]\n"
    "\n"
    "TIES merging (Yadav et al. 2023): trim each task vector to its top-D fraction by\n"
    "magnitude, elect a sign per element (sign of the weighted sum, or of the count\n"
    "of signs), keep only the agreeing entries and average them; out = BASE + S * mixed.\n"
    "Exactly int(D * n) entries are kept per tensor, ties broken by lowest index.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       fraction of each task vector kept (default 1: no trimming)\n"
    "      --majority M      sum (default) or count\n"
    "      --trim-scope S    tensor: trim each tensor to D (default, as mergekit); model:\n"
    "                        trim the whole model's task vector to D, as the TIES paper\n"
    "                        does (exact, streaming; one density for every tensor)\n"
    "                        (normalize is on by default)\n"
    "      --rescale M       l1: scale each trimmed task vector back to its L1 norm,\n"
    "                        per tensor (mergekit's rescale: true); none (default)\n" COMMON_MERGE_HELP;

static const char HELP_CONSENSUS_TIES[] =
    "usage: ladle consensus-ties --base BASE --add W:MODEL ... [--k K] [--tall-lambda L]\n"
    "                            -o OUT [ties options]\n"
    "\n"
    "Consensus TIES (Wang et al. 2024): TIES as `ladle ties` computes it, then per\n"
    "element task i's TALL mask holds where |tau_i| > L |mixed - tau_i| (tau_i the\n"
    "weighted task vector before trimming, mixed the TIES vector); mixed is kept where\n"
    "at least K masks hold and dropped elsewhere; out = BASE + S * kept. The paper's\n"
    "setting: --density 0.2 --trim-scope model --no-normalize.\n"
    "\n" GTA_COMMON_HELP
    "      --k K             how many tasks' masks must agree (default 2; 0: plain TIES)\n"
    "      --tall-lambda L   the TALL masks' lambda (default 0.6, as FusionBench)\n"
    "      --density D       fraction of each task vector kept (default 1: no trimming)\n"
    "      --majority M      sum (default) or count\n"
    "      --trim-scope S    tensor (default) or model, as `ladle ties`\n"
    "      --rescale M       l1 or none (default), as `ladle ties`\n" COMMON_MERGE_HELP;

static const char HELP_DARE[] =
    "usage: ladle dare --base BASE --add W:MODEL ... --density D -o OUT [options]\n"
    "\n"
    "DARE (Yu et al. 2023): drop each task-vector element with probability 1 - D and\n"
    "rescale the survivors by 1/D; then sum (dare_linear) or, with --sign-consensus,\n"
    "elect signs as TIES does (dare_ties). The drop mask comes from a counter-based\n"
    "generator keyed by (seed, tensor name, element index): the same for any -j.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       fraction of each task vector kept (required)\n"
    "      --sign-consensus  elect signs (dare_ties)\n"
    "      --seed N          the drop mask's seed (default 0)\n"
    "      --rescale M       p (default): divide survivors by their keep probability,\n"
    "                        as the paper; l1: scale each task vector back to its L1\n"
    "                        norm per tensor (mergekit's rescale); none (--no-rescale)\n" COMMON_MERGE_HELP;

static const char HELP_BREADCRUMBS[] =
    "usage: ladle breadcrumbs --base BASE --add W:MODEL ... --density D -o OUT [options]\n"
    "\n"
    "Model Breadcrumbs (Davari & Belilovsky 2023): per tensor, drop the largest-\n"
    "magnitude gamma fraction of each task vector (outliers) and the smallest, so that\n"
    "a D fraction survives; then sum, or with --ties elect signs as TIES does.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       fraction of each task vector kept (default 1)\n"
    "      --gamma G         fraction of largest entries dropped (default 0.01)\n"
    "      --ties            elect signs (breadcrumbs_ties)\n"
    "      --rescale M       l1: scale each trimmed task vector back to its L1 norm,\n"
    "                        per tensor (mergekit's rescale: true); none (default)\n" COMMON_MERGE_HELP;

static const char HELP_DELLA[] =
    "usage: ladle della --base BASE --add W:MODEL ... --density D -o OUT [options]\n"
    "\n"
    "DELLA (Deep et al. 2024): within each row of each task vector, rank the entries by\n"
    "magnitude; keep each with a probability from D - E (smallest) to D + E (largest),\n"
    "rescale survivors by 1/p, then elect signs as TIES does (della) or sum them\n"
    "(--linear: della_linear). Draws come from a counter-based generator keyed by\n"
    "(seed, tensor name, element index): the same for any -j.\n"
    "\n" GTA_COMMON_HELP
    "      --density D       average fraction kept (default 1: no pruning)\n"
    "      --epsilon E       spread of the keep probabilities (default 0.15)\n"
    "      --linear          no sign election (della_linear)\n"
    "      --majority M      sum (default) or count\n"
    "      --seed N          the draws' seed (default 0)\n"
    "      --rescale M       p (default): divide survivors by their keep probability,\n"
    "                        as the paper; l1: scale each task vector back to its L1\n"
    "                        norm per tensor (mergekit's rescale); none (--no-rescale)\n" COMMON_MERGE_HELP;

static const char HELP_LORA[] =
    "usage: ladle lora apply BASE ADAPTER [ADAPTER ...] -o OUT [--weights w1,...]\n"
    "                        [--scale S] [options]\n"
    "\n"
    "Merges PEFT LoRA adapters into their base: W + S * sum of w_i * s_i * B_i @ A_i\n"
    "for every module an adapter targets, in fp32, rounded once to W's dtype. Each\n"
    "ADAPTER is a PEFT folder (adapter_config.json, adapter_model.safetensors or\n"
    ".bin); s_i is its lora_alpha / r (alpha_pattern per module; / sqrt(r) with\n"
    "use_rslora); fan_in_fan_out and embedding adapters are transposed as PEFT does.\n"
    "DoRA adapters and adapters holding other tensors (modules_to_save, biases) are\n"
    "refused. The base streams; the adapters' matrices are held in memory (fp32).\n"
    "A BASE+ADAPTER reference does the same wherever a MODEL is taken.\n"
    "\n"
    "      --weights w1,...  one weight per adapter (default 1 each)\n"
    "      --scale S         multiplies every delta (default 1)\n" COMMON_MERGE_HELP;

static const char HELP_NUSLERP[] =
    "usage: ladle nuslerp A B --t X [--base BASE] [--per-row | --per-column] -o OUT\n"
    "                     [options]\n"
    "\n"
    "mergekit's nuslerp: spherical interpolation of A and B, or with --base of their\n"
    "task vectors A - BASE and B - BASE (BASE added back), per tensor, per row\n"
    "(--per-row: nuslerp_flatten: false) or per column (--per-column: also\n"
    "nuslerp_row_wise: true, vectors along the first dimension). Norms at least 1e-7;\n"
    "colinear vectors (|sin theta| < 1e-8) are interpolated linearly. X = 0 gives A,\n"
    "1 gives B (a recipe's weights w_A, w_B give X = w_B / (w_A + w_B)). Config,\n"
    "tokenizer and non-float tensors come from BASE (A without one).\n"
    "\n"
    "  -t, --t X             the position, in [0, 1] (required); a gradient a,b,c\n"
    "                        varies it across the layers\n"
    "      --base BASE       interpolate task vectors from BASE\n"
    "      --per-row         one angle per row (along the last dimension)\n"
    "      --per-column      one angle per column (along the first dimension)\n"
    COMMON_MERGE_HELP;

static const char HELP_NEARSWAP[] =
    "usage: ladle nearswap BASE B --t T -o OUT [options]\n"
    "\n"
    "mergekit's nearswap: per element, w = clamp(T / |BASE - B|, 0, 1) (1 where they\n"
    "are equal) and out = w * B + (1 - w) * BASE: B's value where the two are near,\n"
    "the base's where they differ by much more than T. In fp32 (fp64 for F64).\n"
    "\n"
    "  -t, --t T             the sameness threshold, above 0 (required); a gradient\n"
    "                        a,b,c varies it across the layers\n"
    COMMON_MERGE_HELP;

static const char HELP_MULTISLERP[] =
    "usage: ladle multislerp M1 M2 ... [--weights w1,...] [--base BASE] -o OUT [options]\n"
    "\n"
    "mergekit's multislerp: the weighted mean of the models (or with --base of their\n"
    "task vectors M_i - BASE, BASE added back) on the unit sphere, scaled by their\n"
    "weighted mean norm. Per tensor: out = sum_i c_i M_i, c_i = w_i / (|M_i| + eps) *\n"
    "(sum_j w_j |M_j|) / |sum_j w_j M_j / (|M_j| + eps)|; mergekit's tangent-space\n"
    "step adds exactly zero (see the README). Antipodal inputs whose weights cancel\n"
    "are refused (two are averaged linearly, as mergekit does).\n"
    "\n"
    "      --weights w1,...  one weight per model (default 1 each)\n"
    "      --no-normalize    use the weights as given (default: divided by their sum)\n"
    "      --base BASE       interpolate task vectors from BASE (its config and\n"
    "                        tokenizer are written)\n"
    "      --eps E           added to each norm (default 1e-8)\n" COMMON_MERGE_HELP;

static const char HELP_KARCHER[] =
    "usage: ladle karcher M1 M2 ... [--max-iter N] [--tol T] -o OUT [options]\n"
    "\n"
    "mergekit's karcher: per tensor, the Karcher (Riemannian) mean of the models'\n"
    "directions on the unit sphere, equal weights, found by up to N gradient steps\n"
    "(stopping when the step is shorter than T), times the models' mean norm. Models\n"
    "whose norm is at most T are left out of the direction. Two passes over the data\n"
    "whatever N is: the iteration runs on the models' Gram matrix.\n"
    "\n"
    "      --max-iter N      at most N iterations (default 10)\n"
    "      --tol T           convergence tolerance (default 1e-5)\n" COMMON_MERGE_HELP;

static const char HELP_FUSION[] =
    "usage: ladle arcee-fusion --base BASE MODEL -o OUT [options]\n"
    "\n"
    "mergekit's arcee_fusion: MODEL's changes kept only where they matter most. Per\n"
    "row (last dimension), kl = KL(softmax(MODEL) || softmax(BASE)); an element's\n"
    "importance is |MODEL - BASE| * kl; MODEL's value is taken where the importance\n"
    "is at least median + 1.5 IQR of the tensor's importances, BASE's elsewhere.\n"
    "The quantiles are exact over every element (mergekit samples 10^6 at random\n"
    "from larger tensors).\n"
    "\n"
    "      --base BASE       the model MODEL was fine-tuned from (required)\n"
    COMMON_MERGE_HELP;

#define SUBSPACE_HELP                                                                         \
    "      --base BASE       the model the fine-tunes started from (required)\n"             \
    "      --lambda S        scale of the merged task vector (default 1)\n"                  \
    "      --weights w1,...  one weight per fine-tune (default 1 each)\n"                    \
    "      --exclude REGEX   tensors whose name matches get the mean (repeatable)\n"

static const char HELP_ISO[] =
    "usage: ladle iso-c --base BASE M1 M2 ... [--lambda S] [--weights w1,...]\n"
    "                   [--exclude REGEX] -o OUT [options]\n"
    "\n"
    "Iso-C (Marczak et al. 2025), as FusionBench's iso_c: per 2-D weight matrix, the\n"
    "sum M of the task vectors w_i (M_i - BASE), M = U S V^T, every singular value\n"
    "replaced by their mean: merged = mean(S) U V^T (U V^T over the nonzero singular\n"
    "values: unique where M is rank-deficient). Embeddings, heads, other tensors and\n"
    "names --exclude matches get the mean of the task vectors. out = BASE + S * merged.\n"
    "One matrix at a time in memory (twice, fp32) with LAPACK's SVD.\n"
    "\n"
    SUBSPACE_HELP COMMON_MERGE_HELP;

static const char HELP_CTS[] =
    "usage: ladle iso-cts --base BASE M1 M2 ... [--common-space-fraction F]\n"
    "                     [--lambda S] [--weights w1,...] [--exclude REGEX] -o OUT\n"
    "\n"
    "Iso-CTS (Marczak et al. 2025), as FusionBench's iso_cts: per 2-D weight matrix,\n"
    "the top fraction F of the summed task vectors' singular directions (the common\n"
    "subspace) plus, from each task vector's part outside it, an equal share of its\n"
    "top directions; the stacked U's and V's orthogonalised (polar factors), every\n"
    "singular value replaced by their mean. Embeddings, heads, other tensors and\n"
    "names --exclude matches get the mean of the task vectors.\n"
    "\n"
    "      --common-space-fraction F\n"
    "                        the common subspace's share, in [0, 1] (default 0.8)\n"
    SUBSPACE_HELP COMMON_MERGE_HELP;

static const char HELP_WUDI[] =
    "usage: ladle wudi --base BASE M1 M2 ... [--iter-num N] [--lr R] [--lambda S]\n"
    "                  [--weights w1,...] [--exclude REGEX] -o OUT [options]\n"
    "\n"
    "WUDI (Cheng et al. 2025), as FusionBench's wudi_merging: per 2-D weight matrix,\n"
    "from X = sum of the task vectors tau_i = w_i (M_i - BASE), N steps of Adam\n"
    "(torch's, learning rate R) on sum_i |(X - tau_i) tau_i^T|^2 / |tau_i|^2, the\n"
    "interference X adds to the inputs each task's rows span; the gradient in closed\n"
    "form, in float64. Embeddings, heads, other tensors and names --exclude matches\n"
    "get the mean of the task vectors. out = BASE + S * X. Adam's steps are about R\n"
    "each, whatever the weights' scale: the reference's R suits CLIP/LLM fine-tunes.\n"
    "A step costs one m x n x n product per m x n matrix: --dry-run, then expect\n"
    "minutes per large matrix on a CPU.\n"
    "\n"
    "      --iter-num N      Adam steps (default 300, as the reference)\n"
    "      --lr R            Adam's learning rate (default 1e-5, as the reference)\n"
    SUBSPACE_HELP COMMON_MERGE_HELP;

static const char HELP_CONSENSUS[] =
    "usage: ladle consensus-ta --base BASE M1 M2 ... [--k K] [--tall-lambda L]\n"
    "                          [--lambda S] [--weights w1,...] -o OUT [options]\n"
    "\n"
    "Consensus task arithmetic (Wang et al. 2024): per element, task i's TALL mask\n"
    "holds where |tau_i| > L |tau_MTL - tau_i| (tau_i = w_i (M_i - BASE), tau_MTL\n"
    "their sum); the summed task vector is kept where at least K masks hold and\n"
    "dropped elsewhere; out = BASE + S * kept. K = 2 removes the weights only one\n"
    "task (or none) relies on; K = 0 is plain task arithmetic.\n"
    "\n"
    "      --base BASE       the model the fine-tunes started from (required)\n"
    "      --k K             how many tasks' masks must agree (default 2)\n"
    "      --tall-lambda L   the TALL masks' lambda (default 0.6, as FusionBench)\n"
    "      --lambda S        scale of the kept task vector (default 1)\n"
    "      --weights w1,...  one weight per fine-tune (default 1 each)\n"
    COMMON_MERGE_HELP;

static const char HELP_TSV[] =
    "usage: ladle tsv --base BASE M1 M2 ... [--lambda S] [--weights w1,...]\n"
    "                 [--exclude REGEX] -o OUT [options]\n"
    "\n"
    "TSV-M (Gargiulo et al. 2025), as FusionBench's compute_and_sum_svd_mem_reduction:\n"
    "per 2-D weight matrix, each task vector w_i (M_i - BASE) keeps its top\n"
    "int(min(m, n) / T) singular triplets; the kept U's and V's, side by side, are\n"
    "replaced by their nearest orthonormal matrices (polar factors) and recombined\n"
    "with the kept singular values. Embeddings, heads, other tensors and names\n"
    "--exclude matches get the mean of the task vectors. out = BASE + S * merged.\n"
    "The T task vectors of one matrix at a time are held in memory (fp32).\n"
    "\n"
    SUBSPACE_HELP COMMON_MERGE_HELP;

const char *merge_help(const char *cmd)
{
    static const struct {
        const char *cmd, *help;
    } HELPS[] = {
        {"lerp", HELP_LERP},
        {"slerp", HELP_SLERP},
        {"soup", HELP_SOUP},
        {"ckpt", HELP_CKPT},
        {"task", HELP_TASK},
        {"stock", HELP_STOCK},
        {"merge", HELP_MERGE},
        {"ties", HELP_TIES},
        {"consensus-ties", HELP_CONSENSUS_TIES},
        {"dare", HELP_DARE},
        {"breadcrumbs", HELP_BREADCRUMBS},
        {"della", HELP_DELLA},
        {"lora", HELP_LORA},
        {"nuslerp", HELP_NUSLERP},
        {"nearswap", HELP_NEARSWAP},
        {"multislerp", HELP_MULTISLERP},
        {"karcher", HELP_KARCHER},
        {"sce", HELP_SCE},
        {"ram", HELP_RAM},
        {"arcee-fusion", HELP_FUSION},
        {"iso-c", HELP_ISO},
        {"tsv", HELP_TSV},
        {"iso-cts", HELP_CTS},
        {"wudi", HELP_WUDI},
        {"consensus-ta", HELP_CONSENSUS},
    };
    for (size_t i = 0; i < sizeof HELPS / sizeof *HELPS; i++)
        if (!strcmp(cmd, HELPS[i].cmd))
            return HELPS[i].help;
    return NULL;
}
