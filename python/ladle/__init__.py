"""ladle: weight-space model merging on ladle's C engine.

    import ladle
    soup, acc = ladle.greedy_soup(state_dicts, val_accuracies, evaluate_fn)
    tau = ladle.TaskVector(base, finetuned)
    merged = (0.5 * tau).apply_to(base)
    ladle.uniform_soup(["a/", "b/", "c/"], out="soup/")   # streamed, bounded memory

Models are paths (a .safetensors file, a PyTorch .bin, a Hugging Face folder,
or "BASE+ADAPTER": a base with a PEFT LoRA adapter applied), results of
ladle.load(), or state dicts of torch tensors or numpy arrays. Results are
state dicts of the same kind, or with out= the path the engine wrote. Every
function computes what the matching ``ladle`` command computes, bit for bit:
both go through the library's one parser of merge arguments. Errors raise
ladle.LadleError (a ValueError) with the library's message.
"""
from ._capi import LadleError, __version__
from ._merge import (arcee_fusion, breadcrumbs, checkpoint_soup, consensus_ta, consensus_ties, dare, della,
                     iso_c, iso_cts, karcher, linear_interpolate, lora_apply, lora_extract, merge_recipe, model_stock,
                     multislerp, nearswap, nuslerp, ram, sce, slerp, tall_masks, tall_masks_apply, ties, tsv, uniform_soup, wudi)
from ._merge import run as run_args
from ._models import Bits, Model, bf16_to_f32, f32_to_bf16, load, save
from ._search import GreedySoupResult, alpha_sweep, greedy_soup, lambda_sweep
from ._task import TaskVector

__all__ = ["LadleError", "__version__", "load", "save", "Model", "Bits", "bf16_to_f32",
           "f32_to_bf16", "linear_interpolate", "uniform_soup", "checkpoint_soup", "slerp",
           "model_stock", "ties", "dare", "della", "breadcrumbs", "merge_recipe", "TaskVector",
           "greedy_soup", "GreedySoupResult", "alpha_sweep", "lambda_sweep", "run_args",
           "lora_apply", "nuslerp", "nearswap", "multislerp", "karcher",
           "sce", "ram", "arcee_fusion", "lora_extract", "iso_c", "iso_cts", "tsv", "wudi",
           "consensus_ta", "consensus_ties", "tall_masks", "tall_masks_apply"]
