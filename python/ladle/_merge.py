"""Merges: every function builds the arguments of the matching CLI command
and hands them to the library's one parser (lad_job_parse), so a function
and its command compute the same bits. Models are paths, ``ladle.load``
results, or state dicts held in memory; the result is a state dict, or with
``out=`` the path of a file or folder the engine streamed to disk."""
import ctypes
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from ctypes import byref, c_char_p, c_void_p

from . import _capi as C
from ._capi import LadleError
from ._models import Model, allocate, is_path, kind_of, memory_model

_DTYPES = {"f32": "f32", "float32": "f32", "fp32": "f32", "f16": "f16", "float16": "f16",
           "fp16": "f16", "half": "f16", "bf16": "bf16", "bfloat16": "bf16", "f64": "f64",
           "float64": "f64", "double": "f64"}


def dtype_arg(dtype):
    """"bf16", "bfloat16", torch.bfloat16, numpy.float16 ... -> the CLI's name."""
    if dtype is None:
        return None
    name = str(getattr(dtype, "__name__", dtype)).replace("torch.", "").lower()
    if name not in _DTYPES:
        raise LadleError(f"dtype {dtype!r}: ladle writes f32, f16, bf16 or f64")
    return _DTYPES[name]


def parse_size(size):
    if isinstance(size, int):
        return size
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    text = str(size).strip().upper()
    num = text.rstrip("KMGTIB")
    try:
        return int(float(num) * units[text[len(num):]])
    except (KeyError, ValueError):
        raise LadleError(f"shard size {size!r}: give bytes or e.g. '5GB'") from None


def num(x):
    """A number (or a gradient across the layers: a list) as an argument.
    repr() of a float reads back to the same double."""
    if isinstance(x, (list, tuple)):
        return ",".join(num(v) for v in x)
    if isinstance(x, bool) or not isinstance(x, (int, float)) and not hasattr(x, "__float__"):
        raise LadleError(f"{x!r} is not a number")
    return repr(float(x))


class _Progress:
    """The default progress bar (verbose): stderr, for merges over a second."""

    def __init__(self):
        self.shown = 0.0

    def __call__(self, done, total, seconds, final):
        if seconds < 1 or (not final and seconds - self.shown < 0.5):
            return
        self.shown = seconds
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30) + "." * (30 - int(frac * 30))
        sys.stderr.write(f"\r[{bar}] {frac * 100:3.0f}% {done / 1e9:.2f} / {total / 1e9:.2f} GB "
                         f"{'in' if final else ''} {seconds:.0f}s ")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


class Inputs:
    """The models of one call: paths stay paths; state dicts get a label
    ("<state dict 2>") that the open callback resolves to memory."""

    def __init__(self):
        self.memory = {}
        self.count = 0

    def ref(self, model):
        if isinstance(model, Model):
            return model.path
        if is_path(model):
            return os.fsdecode(model)
        if isinstance(model, Mapping):
            for label, m in self.memory.items():
                if m is model:
                    return label
            self.count += 1
            label = f"<state dict {self.count}>"
            self.memory[label] = model
            return label
        raise LadleError(f"a model is a path, a ladle.load() result or a state dict, not a "
                         f"{type(model).__name__}")

    def forget(self, model):
        """Lets a state dict this call made for itself go (a running sum)."""
        for label, m in list(self.memory.items()):
            if m is model:
                del self.memory[label]


class _Call:
    """One run of a job: the callbacks the library calls back into, and
    the Python exception one of them raised, re-raised once C returns."""

    def __init__(self, inputs, progress):
        self.inputs = inputs
        self.progress = progress
        self.keep = []
        self.exc = None
        self.open_cb = C.OPEN_FN(self._open)
        self.progress_cb = C.PROGRESS_FN(self._progress)

    def _open(self, ctx, ref, out, err):
        try:
            label = ref.decode()
            if label in self.inputs.memory:
                out[0] = memory_model(self.inputs.memory[label], label, self.keep).value
                return 0
            return C.model_open(ref, out, err)
        except BaseException as e:  # noqa: B902 -- re-raised once C returns
            self.exc = e
            err.contents.set(str(e))
            return -1

    def _progress(self, ctx, done, total, seconds, final):
        try:
            if self.progress:
                self.progress(done, total, seconds, final)
            return 0
        except BaseException as e:  # KeyboardInterrupt lands here: stop the merge
            self.exc = e
            return 1

    def fail(self, err):
        if self.exc is not None:
            raise self.exc
        err.raise_()


def _warn(msg, category):
    """A warning attributed to the caller's line, outside this package."""
    here, level, frame = os.path.dirname(os.path.abspath(__file__)), 1, sys._getframe(0)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, category, stacklevel=level)


def run(args, inputs=None, kind=None, verbose=False, progress=None):
    """Runs one merge described by CLI arguments (["lerp", A, B, "--alpha",
    "0.3", ...]). Without "-o" the result is returned as a state dict of
    `kind` ("torch" or "numpy"); with it, the output path."""
    inputs = inputs or Inputs()
    if progress is None and verbose:
        progress = _Progress()
    call = _Call(inputs, progress)
    argv = (c_char_p * len(args))(*[os.fsencode(a) for a in args])
    job, plan, err = c_void_p(), c_void_p(), C.Error()
    rc = C.job_parse(len(args), argv, byref(job), byref(err))
    if rc == 1:
        raise LadleError(f"{args[0]}: --help is the CLI's ('ladle {args[0]} --help')")
    if rc != 0:
        err.raise_()
    try:
        note = C.job_note(job)
        if note and verbose:
            print(f"ladle: {note.decode()}", file=sys.stderr)
        C.job_set_progress(job, call.progress_cb, None)
        if C.job_plan(job, call.open_cb, None, byref(plan), byref(err)) != 0:
            call.fail(err)
        for i in range(C.plan_nwarnings(plan)):  # rows of a vocabulary dropped or filled
            _warn(f"ladle: {C.plan_warning(plan, i).decode()}", UserWarning)
        stats = C.RunStats()
        out = C.job_output(job)
        t0 = time.monotonic()
        if out:
            if C.plan_execute(plan, byref(stats), byref(err)) != 0:
                call.fail(err)
            result = os.fsdecode(out)
        else:
            from ._models import _infos
            infos = _infos(C.plan_ntensors(plan), lambda i, p: C.plan_tensor_info(plan, i, p))
            result, ptrs = allocate(infos, kind or "numpy")
            dst = (c_void_p * max(1, len(ptrs)))(*ptrs)
            if C.plan_execute_memory(plan, dst, byref(stats), byref(err)) != 0:
                call.fail(err)
        if call.exc is not None:
            raise call.exc
        if stats.nonfinite:
            _warn(f"ladle: {stats.nonfinite} NaN/Inf value(s) in {stats.nonfinite_tensors} "
                  f"tensor(s) (first: {stats.first_nonfinite.decode()}): an input holds "
                  f"NaN/Inf, or a value overflowed (f16 ends at 65504)", RuntimeWarning)
        if verbose:
            print(f"ladle: {args[0]}: {stats.bytes_written / 1e9:.3f} GB written from "
                  f"{stats.bytes_read / 1e9:.3f} GB read in {time.monotonic() - t0:.2f}s",
                  file=sys.stderr)
        return result
    finally:
        C.plan_free(plan)
        C.job_free(job)


def merge(args, *models, out=None, dtype=None, force=False, threads=None, shard_size=None,
          tensors=None, verbose=False, progress=None, layers=None, sets=None,
          take_unmergeable=None, tokenizer_source=None, chat_template=None,
          pad_to_multiple_of=None):
    """Shared tail of the public functions: common options, then run.
    `args` holds model references already (Inputs.ref). layers: regexes
    naming the stacks (--layers); sets: {pattern: {param: value}} overrides
    (--set), patterns as the CLI takes them (substrings or layer groups:
    embed, head, early, middle, late, layers[a:b]); take_unmergeable: the
    input whose integer and bool tensors to keep when the inputs differ;
    tokenizer_source: "base", "union" or an input (--tokenizer-source);
    chat_template: chatml, llama3, alpaca, auto, a file or a template;
    pad_to_multiple_of: pad the vocabulary's rows to a multiple of it."""
    inputs = models[0] if models and isinstance(models[0], Inputs) else Inputs()
    args = list(args)
    if take_unmergeable is not None:
        args += ["--take-unmergeable", inputs.ref(take_unmergeable)]
    if chat_template is not None:
        args += ["--chat-template", os.fspath(chat_template)]
    if pad_to_multiple_of is not None:
        args += ["--pad-to-multiple-of", str(int(pad_to_multiple_of))]
    if tokenizer_source is not None:
        args += ["--tokenizer-source", tokenizer_source if tokenizer_source in ("base", "union")
                 else inputs.ref(tokenizer_source)]
    for regex in [layers] if isinstance(layers, str) else (layers or []):
        args += ["--layers", regex]
    for pattern, params in (sets or {}).items():
        for name, value in params.items():
            args += ["--set", f"{pattern}:{name}={num(value)}"]
    if dtype is not None:
        args += ["--dtype", dtype_arg(dtype)]
    if threads is not None:
        args += ["-j", str(int(threads))]
    if out is not None:
        args += ["-o", os.fspath(out)]
        if shard_size is not None:
            args += ["--shard-size", str(parse_size(shard_size))]
        if force:
            args += ["--force"]
    kind = tensors or kind_of(inputs.memory.values())
    return run(args, inputs, kind=kind, verbose=verbose, progress=progress)


def linear_interpolate(a, b, alpha=0.5, dtype=None, out=None, extrapolate=False, **opts):
    """(1 - alpha) * a + alpha * b, per tensor (``ladle lerp``). alpha may be
    a list: a gradient across the layers."""
    inp = Inputs()
    args = ["lerp", inp.ref(a), inp.ref(b), "--alpha", num(alpha)]
    if extrapolate:
        args.append("--extrapolate")
    return merge(args, inp, dtype=dtype, out=out, **opts)


def uniform_soup(models, weights=None, dtype=None, out=None, **opts):
    """The average of the models, or sum(w_i m_i) / sum(w_i) with weights
    (``ladle soup``)."""
    inp = Inputs()
    models = list(models)
    args = ["soup"] + [inp.ref(m) for m in models]
    if weights is not None:
        args += ["--weights", ",".join(num(w) for w in weights)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def checkpoint_soup(run_dir, last_n=5, dtype=None, out=None, **opts):
    """The uniform soup of a training run's last N checkpoints
    (checkpoint-STEP.safetensors files or Trainer folders), steps ordered as
    numbers (``ladle ckpt``)."""
    args = ["ckpt", os.fspath(run_dir), "--last", str(int(last_n))]
    return merge(args, dtype=dtype, out=out, **opts)


def slerp(a, b, t=0.5, dtype=None, out=None, **opts):
    """Spherical interpolation per tensor, as mergekit (``ladle slerp``)."""
    inp = Inputs()
    return merge(["slerp", inp.ref(a), inp.ref(b), "--t", num(t)], inp, dtype=dtype, out=out,
                 **opts)


def nuslerp(a, b, t=0.5, base=None, per_row=False, per_column=False, dtype=None, out=None,
            **opts):
    """mergekit's nuslerp: spherical interpolation of a and b, or of their
    task vectors from base, per tensor, per row or per column (mergekit's
    nuslerp_row_wise) (``ladle nuslerp``)."""
    inp = Inputs()
    args = ["nuslerp", inp.ref(a), inp.ref(b), "--t", num(t)]
    if base is not None:
        args += ["--base", inp.ref(base)]
    if per_row:
        args.append("--per-row")
    if per_column:
        args.append("--per-column")
    return merge(args, inp, dtype=dtype, out=out, **opts)


def nearswap(base, model, t, dtype=None, out=None, **opts):
    """mergekit's nearswap: model's values where they are within about t of
    the base's, the base's elsewhere (``ladle nearswap``)."""
    inp = Inputs()
    return merge(["nearswap", inp.ref(base), inp.ref(model), "--t", num(t)], inp, dtype=dtype,
                 out=out, **opts)


def multislerp(models, weights=None, base=None, normalize=True, eps=1e-8, dtype=None, out=None,
               **opts):
    """mergekit's multislerp: the weighted mean of the models (or of their
    task vectors from base) on the unit sphere, scaled by their weighted
    mean norm (``ladle multislerp``)."""
    inp = Inputs()
    args = ["multislerp"] + [inp.ref(m) for m in models]
    if weights is not None:
        args += ["--weights", ",".join(num(w) for w in weights)]
    if base is not None:
        args += ["--base", inp.ref(base)]
    if not normalize:
        args.append("--no-normalize")
    if eps != 1e-8:
        args += ["--eps", num(eps)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def karcher(models, max_iter=10, tol=1e-5, dtype=None, out=None, **opts):
    """mergekit's karcher: the Karcher mean of the models' directions on the
    unit sphere times their mean norm (``ladle karcher``)."""
    inp = Inputs()
    args = ["karcher"] + [inp.ref(m) for m in models]
    args += ["--max-iter", str(int(max_iter)), "--tol", num(tol)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def model_stock(base, models, filter_wise=False, dtype=None, out=None, **opts):
    """Model Stock (``ladle stock``); filter_wise: one t per row."""
    inp = Inputs()
    args = ["stock", "--base", inp.ref(base)] + [inp.ref(m) for m in models]
    if filter_wise:
        args.append("--filter-wise")
    return merge(args, inp, dtype=dtype, out=out, **opts)


def sce(base, models, select_topk=1.0, dtype=None, out=None, **opts):
    """SCE, as mergekit's sce (``ladle sce``): keep the select_topk fraction
    of elements that vary most across the task vectors, weight each by its
    mean square, elect signs, average the agreeing entries."""
    inp = Inputs()
    args = ["sce", "--base", inp.ref(base)] + [inp.ref(m) for m in models]
    args += ["--select-topk", num(select_topk)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def ram(base, models, plus=False, r=0.1, alpha=0.2, epsilon=1e-5, dtype=None, out=None,
        **opts):
    """Reinforced Agent Merging, as mergekit's ram, or with plus=True
    ramplus_tl (``ladle ram``)."""
    inp = Inputs()
    args = ["ram", "--base", inp.ref(base)] + [inp.ref(m) for m in models]
    args += ["--epsilon", num(epsilon)]
    if plus:
        args += ["--plus", "--r", num(r), "--alpha", num(alpha)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def _subspace(cmd, base, models, weights, lambda_, exclude, dtype, out, opts, extra=()):
    inp = Inputs()
    args = [cmd, "--base", inp.ref(base)] + [inp.ref(m) for m in models]
    args += ["--lambda", num(lambda_), *extra]
    if weights is not None:
        args += ["--weights", ",".join(num(w) for w in weights)]
    for pat in [exclude] if isinstance(exclude, str) else (exclude or []):
        args += ["--exclude", pat]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def iso_c(base, models, weights=None, lambda_=1.0, exclude=None, dtype=None, out=None, **opts):
    """Iso-C (``ladle iso-c``): per 2-D weight matrix, the summed task
    vectors with every singular value replaced by their mean; embeddings,
    heads, other tensors and names matching `exclude` (regexes) get the
    mean task vector. base + lambda_ * merged."""
    return _subspace("iso-c", base, models, weights, lambda_, exclude, dtype, out, opts)


def iso_cts(base, models, common_space_fraction=0.8, weights=None, lambda_=1.0, exclude=None,
            dtype=None, out=None, **opts):
    """Iso-CTS (``ladle iso-cts``): per 2-D weight matrix, a common subspace
    (the top common_space_fraction of the summed task vectors' directions)
    and equal task-specific shares outside it, orthogonalised, spectrum
    flattened; other tensors get the mean task vector."""
    return _subspace("iso-cts", base, models, weights, lambda_, exclude, dtype, out, opts,
                     ["--common-space-fraction", num(common_space_fraction)])


def wudi(base, models, iter_num=300, lr=1e-5, weights=None, lambda_=1.0, exclude=None,
         dtype=None, out=None, **opts):
    """WUDI (``ladle wudi``): per 2-D weight matrix, iter_num steps of Adam
    (learning rate lr) from the summed task vectors on the interference
    sum_i |(X - tau_i) tau_i^T|^2 / |tau_i|^2; other tensors (and names
    matching `exclude`) get the mean task vector. base + lambda_ * X."""
    return _subspace("wudi", base, models, weights, lambda_, exclude, dtype, out, opts,
                     ["--iter-num", str(int(iter_num)), "--lr", num(lr)])


def consensus_ta(base, models, weights=None, lambda_=1.0, k=2, tall_lambda=0.6, dtype=None,
                 out=None, **opts):
    """Consensus task arithmetic (``ladle consensus-ta``): the summed task
    vector, kept where at least k tasks' TALL masks hold."""
    inp = Inputs()
    args = ["consensus-ta", "--base", inp.ref(base)] + [inp.ref(m) for m in models]
    args += ["--lambda", num(lambda_), "--k", str(int(k)), "--tall-lambda", num(tall_lambda)]
    if weights is not None:
        args += ["--weights", ",".join(num(w) for w in weights)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def tsv(base, models, weights=None, lambda_=1.0, exclude=None, dtype=None, out=None, **opts):
    """TSV-M (``ladle tsv``): per 2-D weight matrix, each task vector's top
    singular triplets, orthogonalised together; other tensors (and names
    matching `exclude`) get the mean task vector. base + lambda_ * merged."""
    return _subspace("tsv", base, models, weights, lambda_, exclude, dtype, out, opts)


def arcee_fusion(base, model, dtype=None, out=None, **opts):
    """mergekit's arcee_fusion: model's changes kept where |model - base| *
    KL(softmax(model row) || softmax(base row)) is at least median + 1.5 IQR
    of the tensor's (``ladle arcee-fusion``)."""
    inp = Inputs()
    args = ["arcee-fusion", "--base", inp.ref(base), inp.ref(model)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def _rescale(value):
    """rescale=True (1/p for dare and della), "l1" (mergekit's L1 norm
    matching), "p", "none" or False, or None: the method's default."""
    if value is None:
        return None
    if value is True or value is False:
        return "p" if value else "none"
    return str(value)


def _gta(cmd, base, models, weights, flags, dtype, out, opts):
    inp = Inputs()
    models = list(models)
    weights = [1.0] * len(models) if weights is None else list(weights)
    if len(weights) != len(models):
        raise LadleError(f"{cmd}: {len(weights)} weights for {len(models)} models")
    args = [cmd, "--base", inp.ref(base)]
    for w, m in zip(weights, models):
        args += ["--add", f"{num(w)}:{inp.ref(m)}"]
    for name, value in flags:
        if value is None or value is False:
            continue
        args += [name] if value is True else [name, value if isinstance(value, str)
                                              else num(value)]
    return merge(args, inp, dtype=dtype, out=out, **opts)


def ties(base, models, weights=None, density=1.0, lambda_=1.0, majority="sum", normalize=None,
         trim_scope="tensor", normalize_magnitude=False, rescale=None, dtype=None, out=None,
         **opts):
    """TIES merging (``ladle ties``): trim each task vector to its top
    density fraction, elect signs, average the agreeing entries.
    rescale="l1": mergekit's rescale (L1 norm matching)."""
    flags = [("--density", density), ("--lambda", lambda_), ("--majority", majority),
             ("--normalize" if normalize else "--no-normalize", normalize is not None),
             ("--trim-scope", trim_scope), ("--normalize-magnitude", normalize_magnitude),
             ("--rescale", _rescale(rescale))]
    return _gta("ties", base, models, weights, flags, dtype, out, opts)


def consensus_ties(base, models, weights=None, k=2, tall_lambda=0.6, density=1.0, lambda_=1.0,
                   majority="sum", normalize=None, trim_scope="tensor", rescale=None, dtype=None,
                   out=None, **opts):
    """Consensus TIES (``ladle consensus-ties``): the TIES vector, kept where
    at least k tasks' TALL masks (|tau_i| > tall_lambda |ties - tau_i|) hold.
    The paper's setting: density=0.2, trim_scope="model", normalize=False."""
    flags = [("--k", str(int(k))), ("--tall-lambda", tall_lambda), ("--density", density),
             ("--lambda", lambda_), ("--majority", majority),
             ("--normalize" if normalize else "--no-normalize", normalize is not None),
             ("--trim-scope", trim_scope), ("--rescale", _rescale(rescale))]
    return _gta("consensus-ties", base, models, weights, flags, dtype, out, opts)


def dare(base, models, weights=None, density=0.5, lambda_=1.0, sign_consensus=False, seed=0,
         rescale=True, normalize=None, majority="sum", normalize_magnitude=False, dtype=None,
         out=None, **opts):
    """DARE (``ladle dare``): random drop with rescale (True: by 1/density;
    "l1": mergekit's L1 norm matching; False: none); sign_consensus gives
    dare_ties. The mask depends on (seed, tensor name, element) only."""
    flags = [("--density", density), ("--lambda", lambda_),
             ("--sign-consensus", sign_consensus), ("--seed", str(int(seed))),
             ("--rescale", _rescale(rescale)), ("--majority", majority),
             ("--normalize" if normalize else "--no-normalize", normalize is not None),
             ("--normalize-magnitude", normalize_magnitude)]
    return _gta("dare", base, models, weights, flags, dtype, out, opts)


def della(base, models, weights=None, density=1.0, epsilon=0.15, lambda_=1.0, linear=False,
          seed=0, rescale=True, majority="sum", normalize=None, dtype=None, out=None, **opts):
    """DELLA (``ladle della``): magnitude-ranked random drop; rescale as
    dare's."""
    flags = [("--density", density), ("--epsilon", epsilon), ("--lambda", lambda_),
             ("--linear", linear), ("--seed", str(int(seed))), ("--rescale", _rescale(rescale)),
             ("--majority", majority),
             ("--normalize" if normalize else "--no-normalize", normalize is not None)]
    return _gta("della", base, models, weights, flags, dtype, out, opts)


def breadcrumbs(base, models, weights=None, density=1.0, gamma=0.01, lambda_=1.0, ties=False,
                rescale=None, dtype=None, out=None, **opts):
    """Model Breadcrumbs (``ladle breadcrumbs``); rescale="l1" as ties'."""
    flags = [("--density", density), ("--gamma", gamma), ("--lambda", lambda_),
             ("--ties", ties), ("--rescale", _rescale(rescale))]
    return _gta("breadcrumbs", base, models, weights, flags, dtype, out, opts)


def lora_apply(base, adapters, weights=None, scale=1.0, dtype=None, out=None, **opts):
    """The base (a path) with PEFT LoRA adapters (folders) merged in:
    W + scale * sum w_i * lora_alpha_i / r_i * B_i @ A_i, per targeted
    tensor (``ladle lora apply``)."""
    if not is_path(base):
        raise LadleError("lora_apply: the base is a path (the adapters are applied as it "
                         "streams from its files)")
    adapters = [adapters] if is_path(adapters) else list(adapters)
    args = ["lora", "apply", os.fsdecode(base), *[os.fsdecode(a) for a in adapters],
            "--scale", num(scale)]
    if weights is not None:
        args += ["--weights", ",".join(num(w) for w in weights)]
    return merge(args, Inputs(), dtype=dtype, out=out, **opts)


def lora_extract(base, fine_tuned, out, rank=128, sv_epsilon=0.0, embed_lora=False,
                 distribute_scale=True, include=None, exclude=None, exact=False,
                 power_iters=4, seed=0, base_name=None, dtype=None, force=False,
                 verbose=False, progress=None):
    """A PEFT LoRA adapter (folder out) that turns base into about
    fine_tuned: the rank-`rank` truncated SVD of each changed weight's delta
    (``ladle lora extract``; randomized SVD, or LAPACK's with exact=True).
    Both are paths. Returns a dict: the adapter's
    path, how many modules became LoRAs, full copies and bias deltas, and
    the relative error |D - B A| / |D| of the LoRA modules together."""
    for name, m in (("base", base), ("fine_tuned", fine_tuned)):
        if not is_path(m):
            raise LadleError(f"lora_extract: {name} is a path (a model file or folder)")
    args = ["lora", "extract", "--base", os.fsdecode(base), "--fine-tuned",
            os.fsdecode(fine_tuned), "-o", os.fsdecode(out), "--rank", str(int(rank)),
            "--power-iters", str(int(power_iters)), "--seed", str(int(seed))]
    if sv_epsilon:
        args += ["--sv-epsilon", num(sv_epsilon)]
    for flag, on in (("--embed-lora", embed_lora), ("--no-distribute-scale", not distribute_scale),
                     ("--exact", exact), ("--force", force)):
        if on:
            args.append(flag)
    for flag, pats in (("--include", include), ("--exclude", exclude)):
        for p in [pats] if isinstance(pats, str) else (pats or []):
            args += [flag, p]
    if base_name is not None:
        args += ["--base-name", base_name]
    if dtype is not None:
        args += ["--dtype", dtype_arg(dtype)]
    if progress is None and verbose:
        progress = _Progress()
    call = _Call(None, progress)
    argv = (ctypes.c_char_p * len(args))(*[a.encode() for a in args])
    at_extract = ctypes.cast(ctypes.byref(argv, ctypes.sizeof(ctypes.c_char_p)),
                             ctypes.POINTER(ctypes.c_char_p))
    err, stats, quiet = C.Error(), C.ExtractStats(), ctypes.c_bool()
    rc = C.lora_extract_argv(len(args) - 1, at_extract, call.progress_cb, None,
                             ctypes.byref(quiet), ctypes.byref(stats), ctypes.byref(err))
    if rc != 0:
        call.fail(err)
    return {"path": os.fspath(out), "lora": stats.lora, "full": stats.full,
            "biases": stats.biases, "unchanged": stats.same, "left_out": stats.left_out,
            "relative_error": stats.rel_error, "seconds": stats.seconds}


def _masks(args, verbose, progress):
    if progress is None and verbose:
        progress = _Progress()
    call = _Call(None, progress)
    argv = (ctypes.c_char_p * len(args))(*[a.encode() for a in args])
    err, stats, quiet = C.Error(), C.MasksStats(), ctypes.c_bool()
    rc = C.masks_argv(len(args), argv, call.progress_cb, None, ctypes.byref(quiet),
                      ctypes.byref(stats), ctypes.byref(err))
    if rc != 0:
        call.fail(err)
    return stats


def tall_masks(base, models, out, tall_lambda=0.6, dtype=None, force=False, verbose=False,
               progress=None):
    """TALL-mask compression (``ladle masks``): the fine-tunes `models` of
    `base` (paths) as their summed task vector and one bit-packed TALL mask
    per task, in the .safetensors file `out`. Returns a dict: the path, the
    tensors, the bytes written and the fraction of mask bits set."""
    for m in [base, *models]:
        if not is_path(m):
            raise LadleError("tall_masks: models are paths (model files or folders)")
    args = ["masks", "--base", os.fsdecode(base), *map(os.fsdecode, models), "-o",
            os.fsdecode(out), "--tall-lambda", num(tall_lambda)]
    if dtype is not None:
        args += ["--dtype", dtype_arg(dtype)]
    if force:
        args.append("--force")
    st = _masks(args, verbose, progress)
    return {"path": os.fspath(out), "tensors": st.tensors, "bytes": st.bytes,
            "kept_fraction": st.kept_fraction}


def tall_masks_apply(base, masks, task, out, dtype=None, force=False):
    """One task's model back from a masks file (``ladle masks apply``):
    base + mask_task * tau_MTL, written to the .safetensors file `out`.
    task: its index (0 = the first fine-tune) or its label in the file."""
    for m in (base, masks):
        if not is_path(m):
            raise LadleError("tall_masks_apply: base and masks are paths")
    args = ["masks", "apply", "--base", os.fsdecode(base), os.fsdecode(masks), "--task",
            str(task), "-o", os.fsdecode(out)]
    if dtype is not None:
        args += ["--dtype", dtype_arg(dtype)]
    if force:
        args.append("--force")
    _masks(args, False, None)
    return os.fspath(out)


def merge_recipe(recipe, out=None, dtype=None, variables=None, **opts):
    """Runs a mergekit YAML recipe (``ladle merge``): a path, or the recipe
    as a dict (model paths in it as mergekit takes them)."""
    tmp = None
    if isinstance(recipe, Mapping):
        try:
            text = json.dumps(recipe)  # JSON is YAML
        except TypeError as e:
            raise LadleError(f"merge_recipe: the recipe dict must hold plain values and model "
                             f"paths ({e})") from None
        fd, tmp = tempfile.mkstemp(suffix=".yml", prefix="ladle-recipe-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        recipe = tmp
    args = ["merge", os.fspath(recipe)]
    for k, v in (variables or {}).items():
        args += ["--var", f"{k}={v}"]
    try:
        return merge(args, dtype=dtype, out=out, **opts)
    finally:
        if tmp:
            os.unlink(tmp)
