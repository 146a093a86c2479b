"""Task vectors (Ilharco et al. 2023) as recipes, not tensors: a TaskVector
records which fine-tune minus which base, with a coefficient, so
``0.6 * tau_code + 0.5 * tau_math - 0.4 * tau_toxic`` is a short list, and
``apply_to`` streams the whole expression in one pass of ``ladle task``."""
import numbers
import os

import numpy as np

from ._capi import LadleError
from ._merge import Inputs, merge, num
from ._capi import DTYPE_NAMES
from ._models import _NUMPY, _RAW, Bits, Model, is_path


def _same(a, b):
    if a is b:
        return True
    key = lambda m: os.path.realpath(m.path if isinstance(m, Model) else os.fsdecode(m))
    return (is_path(a) or isinstance(a, Model)) and (is_path(b) or isinstance(b, Model)) \
        and key(a) == key(b)


class TaskVector:
    """tau = finetuned - base (or a vector given as a state dict with
    ``vector=``). Supports +, -, unary -, and * by numbers; nothing is
    computed until ``apply_to``."""

    def __init__(self, base=None, finetuned=None, vector=None):
        if vector is not None:
            if base is not None or finetuned is not None:
                raise LadleError("TaskVector: give base and finetuned, or vector, not both")
            self.terms = ((None, vector, 1.0),)
        elif base is None or finetuned is None:
            raise LadleError("TaskVector: needs base and finetuned (or vector=)")
        else:
            self.terms = ((base, finetuned, 1.0),)

    @classmethod
    def _of(cls, terms):
        tv = cls.__new__(cls)
        tv.terms = tuple(terms)
        return tv

    def __add__(self, other):
        if isinstance(other, numbers.Number) and other == 0:
            return self  # sum([...]) starts from 0
        if not isinstance(other, TaskVector):
            return NotImplemented
        return TaskVector._of(self.terms + other.terms)

    __radd__ = __add__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        if not isinstance(other, TaskVector):
            return NotImplemented
        return self + (-other)

    def __mul__(self, k):
        if not isinstance(k, numbers.Real) or isinstance(k, bool):
            return NotImplemented
        return TaskVector._of((b, f, c * float(k)) for b, f, c in self.terms)

    __rmul__ = __mul__

    def __repr__(self):
        def name(m):
            if isinstance(m, Model) or is_path(m):
                return repr(m.path if isinstance(m, Model) else os.fsdecode(m))
            return f"<state dict: {len(m)} tensors>"
        return "TaskVector(" + " + ".join(
            f"{c:g} * ({name(f)} - {name(b)})" if b is not None else f"{c:g} * {name(f)}"
            for b, f, c in self.terms) + ")"

    def _base(self):
        bases = [b for b, _, _ in self.terms]
        if any(b is None for b in bases):
            if not all(b is None for b in bases):
                raise LadleError("TaskVector: vectors given directly (vector=) and vectors of "
                                 "a base cannot be applied in one pass; apply one, then the "
                                 "other")
            return None
        for b in bases[1:]:
            if not _same(b, bases[0]):
                raise LadleError("TaskVector: these task vectors come from different base "
                                 "models; task arithmetic adds vectors of one base")
        return bases[0]

    def apply_to(self, model, scaling=1.0, dtype=None, out=None, **opts):
        """model + scaling * (the expression), per tensor in fp32, rounded
        once (``ladle task --base B --add c:FT ... --lambda scaling``, with
        ``--onto model`` when model is not the base: the analogy form)."""
        base = self._base()
        inp = Inputs()
        terms = self.terms
        if base is None:
            # Vectors given directly are fine-tunes of a zero base; a tensor
            # a vector leaves out (integer buffers, say) is a zero change.
            base = _zeros_of(model)
            terms = [(base, {**{k: z for k, z in base.items() if k not in v}, **v}, c)
                     for _, v, c in terms]
            # their integer and bool tensors are placeholders: keep model's
            opts.setdefault("take_unmergeable", model)
        args = ["task", "--base", inp.ref(base)]
        for _, ft, c in terms:
            args += ["--add", f"{num(c)}:{inp.ref(ft)}"]
        args += ["--lambda", num(scaling)]
        if not _same(model, base):
            args += ["--onto", inp.ref(model)]
        return merge(args, inp, dtype=dtype, out=out, **opts)


def _zeros_of(model):
    """Zeros shaped like every tensor of model, as numpy arrays (calloc'd:
    pages never written cost no memory when read)."""
    if isinstance(model, Model) or is_path(model):
        m = model if isinstance(model, Model) else Model(model)
        return {k: _zeros(m.dtype(k), m._tensors[k][1]) for k in m}
    out = {}
    for k, t in model.items():
        if isinstance(t, Bits):
            out[k] = Bits(np.zeros(t.shape, t.array.dtype), t.dtype)
        elif isinstance(t, np.ndarray):
            out[k] = np.zeros(t.shape, t.dtype)
        else:  # torch
            name = str(t.dtype).replace("torch.", "")
            out[k] = _zeros({"bfloat16": "BF16"}.get(name, "numpy"), tuple(t.shape),
                            None if name == "bfloat16" else t.new_empty(0).numpy().dtype)
    return out


def _zeros(dtype, shape, np_dtype=None):
    if np_dtype is not None:
        return np.zeros(shape, np_dtype)
    code = DTYPE_NAMES.index(dtype)
    if code in _NUMPY:
        return np.zeros(shape, _NUMPY[code])
    return Bits(np.zeros(shape, _RAW[code]), dtype)
