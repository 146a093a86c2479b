"""Models as Python holds them: files opened lazily (memory-mapped, zero
copy) and state dicts (torch tensors or numpy arrays) handed to the library
without copying when they are contiguous on the CPU."""
import json
import math
import mmap
import os
import sys
import warnings
from collections.abc import Mapping
from ctypes import POINTER, byref, c_uint64, c_void_p, cast, string_at

import numpy as np

from . import _capi as C
from ._capi import LadleError

_NUMPY = {C.F64: np.float64, C.F32: np.float32, C.F16: np.float16, C.I64: np.int64,
          C.I32: np.int32, C.I16: np.int16, C.I8: np.int8, C.U8: np.uint8, C.U16: np.uint16,
          C.U32: np.uint32, C.U64: np.uint64, C.BOOL: np.bool_, C.C64: np.complex64}
_FROM_NUMPY = {np.dtype(v): k for k, v in _NUMPY.items()}
# dtypes numpy lacks: as torch dtypes when torch is there, else raw bits
_RAW = {C.BF16: np.uint16, C.F8_E4M3: np.uint8, C.F8_E5M2: np.uint8, C.F8_E8M0: np.uint8}


def torch_module():
    """PyTorch if it is installed (it is optional), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_loaded():
    """PyTorch if the program uses it already: a torch tensor can only come
    from there, and importing torch costs ~200 MB that numpy users need not
    pay."""
    return sys.modules.get("torch")


def _torch_dtypes(torch):
    table = {C.F64: torch.float64, C.F32: torch.float32, C.F16: torch.float16,
             C.BF16: torch.bfloat16, C.I64: torch.int64, C.I32: torch.int32,
             C.I16: torch.int16, C.I8: torch.int8, C.U8: torch.uint8, C.BOOL: torch.bool,
             C.C64: torch.complex64}
    for code, name in ((C.F8_E4M3, "float8_e4m3fn"), (C.F8_E5M2, "float8_e5m2")):
        if hasattr(torch, name):
            table[code] = getattr(torch, name)
    return table


class Bits:
    """A tensor given as the raw bits of a dtype numpy lacks, e.g.
    ``ladle.Bits(u16_array, "BF16")`` for bfloat16 held as uint16."""

    def __init__(self, array, dtype):
        self.array = np.ascontiguousarray(array)
        self.dtype = dtype.upper()
        if self.dtype not in C.DTYPE_NAMES:
            raise LadleError(f"Bits: unknown dtype '{dtype}' (one of {C.DTYPE_NAMES})")
        if self.array.dtype != _RAW.get(C.DTYPE_NAMES.index(self.dtype), self.array.dtype):
            raise LadleError(f"Bits: {self.dtype} is held as "
                             f"{np.dtype(_RAW[C.DTYPE_NAMES.index(self.dtype)]).name}, "
                             f"not {self.array.dtype.name}")
        self.shape = self.array.shape


def bf16_to_f32(bits):
    """bfloat16 bit patterns (uint16) -> float32, exactly."""
    bits = np.ascontiguousarray(bits, dtype=np.uint16)
    out = np.empty(bits.shape, np.float32)
    C.load_f32(C.BF16, bits.ctypes.data, out.ctypes.data, bits.size)
    return out


def f32_to_bf16(x):
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even as
    ladle (and PyTorch) round."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, np.uint16)
    C.store_f32(C.BF16, x.ctypes.data, out.ctypes.data, x.size)
    return out


def _infos(count, info_at):
    out = []
    for i in range(count):
        t = C.TensorInfo()
        info_at(i, byref(t))
        out.append((t.name.decode(), t.dtype, tuple(t.shape[:t.ndim]), t.nbytes,
                    os.fsdecode(t.path) if t.path else None, t.offset))
    return out


def _view(buf, offset, dtype, shape, nbytes):
    """A read-only array over buf (numpy, or torch for dtypes numpy lacks)."""
    if dtype in _NUMPY:
        count = nbytes // np.dtype(_NUMPY[dtype]).itemsize
        if count != math.prod(shape):  # a GGUF tensor in ggml blocks: its raw bytes
            return np.frombuffer(buf, np.uint8, nbytes, offset)
        return np.frombuffer(buf, _NUMPY[dtype], count, offset).reshape(shape)
    if dtype in _RAW:
        raw = np.frombuffer(buf, _RAW[dtype], nbytes // np.dtype(_RAW[dtype]).itemsize,
                            offset).reshape(shape)
        torch = torch_module()
        table = _torch_dtypes(torch) if torch else {}
        if dtype not in table:
            return raw
        if raw.dtype == np.uint16:  # torch has no uint16: the same bits as int16
            raw = raw.view(np.int16)
        with warnings.catch_warnings():  # torch warns that the mapping is read-only
            warnings.simplefilter("ignore")
            return torch.from_numpy(raw).view(table[dtype])
    return np.frombuffer(buf, np.uint8, nbytes, offset)  # sub-byte dtypes: the raw bytes


class Model(Mapping):
    """A model file or Hugging Face folder, opened by ``ladle.load``: a
    read-only mapping of tensor names to arrays, each memory-mapped from its
    file when first read (nothing is loaded up front). bf16 (and float8)
    tensors come as torch tensors when PyTorch is installed, else as their
    raw bits (uint16 for bf16; see ``bf16_to_f32``). A GGUF file's tensors in
    ggml's block types (Q8_0, Q4_K, ...) come as their raw bytes; merges read
    them dequantised."""

    def __init__(self, path):
        self.path = os.fspath(path)
        handle, err = c_void_p(), C.Error()
        if C.model_open(os.fsencode(self.path), byref(handle), byref(err)) != 0:
            err.raise_()
        try:
            self._tensors = {t[0]: t[1:] for t in _infos(
                C.model_ntensors(handle), lambda i, p: C.model_tensor_info(handle, i, p))}
            text = C.model_config_json(handle)
            self.config = json.loads(string_at(text).decode()) if text else None
            if text:
                C.libc_free(text)
        finally:
            C.model_close(handle)
        self._maps = {}

    def _map(self, path):
        if path not in self._maps:
            with open(path, "rb") as f:
                self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._maps[path]

    def __getitem__(self, name):
        dtype, shape, nbytes, path, offset = self._tensors[name]
        return _view(self._map(path), offset, dtype, shape, nbytes)

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self):
        return len(self._tensors)

    def dtype(self, name):
        """The tensor's dtype as safetensors names it ("BF16")."""
        return C.DTYPE_NAMES[self._tensors[name][0]]

    def close(self):
        """Unmaps the files (arrays already taken keep theirs alive)."""
        for m in self._maps.values():
            try:
                m.close()
            except BufferError:
                pass
        self._maps = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"ladle.Model({self.path!r}, {len(self)} tensors)"


def load(path):
    """Opens a .safetensors file, a PyTorch .bin/.pt checkpoint (read without
    unpickling anything) or a Hugging Face folder (sharded or not),
    validated as the CLI validates it, as a lazy read-only mapping of the
    tensors as stored."""
    p = os.fsdecode(path) if is_path(path) else path
    if isinstance(p, str) and "+" in p and not os.path.exists(p):
        raise LadleError(f"{p}: ladle.load maps stored tensors; a base with a LoRA adapter "
                         "is computed: use ladle.lora_apply(base, adapter), or pass "
                         "'BASE+ADAPTER' to a merge")
    return Model(path)


def is_path(x):
    return isinstance(x, (str, bytes, os.PathLike))


def _c_tensor(name, value, keep):
    """(lad_dtype, shape, data pointer) of a state dict entry, keeping any
    contiguous copy alive in `keep`."""
    torch = torch_loaded()
    if isinstance(value, Bits):
        keep.append(value.array)
        return C.DTYPE_NAMES.index(value.dtype), value.array.shape, value.array.ctypes.data
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        table = {v: k for k, v in _torch_dtypes(torch).items()}
        if t.dtype not in table:
            raise LadleError(f"tensor '{name}': ladle cannot hold torch dtype {t.dtype}")
        keep.append(t)
        return table[t.dtype], tuple(t.shape), t.data_ptr()
    if isinstance(value, np.ndarray) or np.isscalar(value):
        a = np.ascontiguousarray(value)
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if a.dtype not in _FROM_NUMPY:
            raise LadleError(f"tensor '{name}': ladle cannot hold numpy dtype {a.dtype}")
        keep.append(a)
        return _FROM_NUMPY[a.dtype], a.shape, a.ctypes.data
    raise LadleError(f"state dict entry '{name}' is a {type(value).__name__}, not a torch "
                     f"tensor or a numpy array")


def memory_model(state_dict, label, keep, config=None):
    """A lad_model over a state dict's tensors (borrowed: `keep` must
    outlive it). Returns the handle; close it with C.model_close."""
    if not isinstance(state_dict, Mapping):
        raise LadleError(f"{label}: a model is a path or a state dict (a mapping of names to "
                         f"tensors), not a {type(state_dict).__name__}")
    items = list(state_dict.items())
    arr = (C.MemTensor * max(1, len(items)))()
    names, shapes = [], []
    for i, (name, value) in enumerate(items):
        dtype, shape, ptr = _c_tensor(name, value, keep)
        names.append(str(name).encode())
        shapes.append((c_uint64 * max(1, len(shape)))(*shape))
        arr[i].name = names[-1]
        arr[i].dtype = dtype
        arr[i].ndim = len(shape)
        arr[i].shape = cast(shapes[-1], POINTER(c_uint64))
        arr[i].data = ptr
    keep.extend([arr, names, shapes])
    handle, err = c_void_p(), C.Error()
    cfg = json.dumps(config).encode() if config is not None else None
    if C.model_from_memory(label.encode(), arr, len(items), cfg, byref(handle), byref(err)):
        err.raise_()
    return handle


def kind_of(models):
    """"torch" when any in-memory input holds torch tensors, else "numpy"."""
    torch = torch_loaded()
    for m in models:
        if isinstance(m, Mapping) and not isinstance(m, Model) and torch is not None:
            if any(isinstance(v, torch.Tensor) for v in m.values()):
                return "torch"
    return "numpy"


def allocate(infos, kind):
    """Empty output tensors for a plan's infos: (dict, [data pointers])."""
    torch = torch_module()
    tables = _torch_dtypes(torch) if torch else {}
    out, ptrs = {}, []
    for name, dtype, shape, nbytes, _, _ in infos:
        if kind == "torch" and dtype in tables:
            t = torch.empty(shape, dtype=tables[dtype])
            ptrs.append(t.data_ptr())
        elif dtype in _NUMPY:
            t = np.empty(shape, _NUMPY[dtype])
            ptrs.append(t.ctypes.data)
        elif dtype in tables:  # bf16 in a numpy result: torch when installed
            t = torch.empty(shape, dtype=tables[dtype])
            ptrs.append(t.data_ptr())
        else:
            t = np.empty(shape, _RAW.get(dtype, np.uint8))
            ptrs.append(t.ctypes.data)
        out[name] = t
    return out, ptrs


def save(state_dict, path, metadata=None, force=False, shard_size="5GB"):
    """Writes a state dict (torch tensors or numpy arrays), or a model from
    ``ladle.load``, to path: NAME.safetensors, a Hugging Face folder, or
    NAME.gguf (a GGUF model's blocks are copied as stored, so only a .gguf
    path takes one). Atomic like every ladle output; metadata is a dict of
    strings."""
    from ._merge import parse_size
    keep, err = [], C.Error()
    if isinstance(state_dict, Model) or is_path(state_dict):
        src = state_dict.path if isinstance(state_dict, Model) else os.fspath(state_dict)
        handle = c_void_p()
        if C.model_open(os.fsencode(src), byref(handle), byref(err)) != 0:
            err.raise_()
    else:
        handle = memory_model(state_dict, "<state dict>", keep)
    try:
        meta = None
        if metadata is not None:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
                raise LadleError("metadata must map strings to strings (safetensors' "
                                 "__metadata__)")
            meta = json.dumps(metadata).encode()
        if C.save(handle, os.fsencode(path), meta, force, parse_size(shard_size),
                  byref(err)) != 0:
            err.raise_()
    finally:
        C.model_close(handle)
    return os.fspath(path)
