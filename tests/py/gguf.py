"""Independent GGUF I/O and ggml's Q8_0 / Q4_0 for the reference tests.

Written from the GGUF specification (ggml's docs/gguf.md) and the block
definitions of ggml-common.h / ggml-quants.c with numpy only; it shares no
code with ladle. Shapes are row-major (as numpy and safetensors hold them);
GGUF stores the dimensions reversed (innermost first).
"""
import struct

import numpy as np

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml types: id -> (name, block elements, block bytes)
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
        6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84),
        11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
        14: ("Q6_K", 256, 210), 16: ("IQ2_XXS", 256, 66), 24: ("I8", 1, 1),
        25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
        30: ("BF16", 1, 2)}
TYPE = {v[0]: k for k, v in GGML.items()}
PLAIN = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
         "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64}


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype == STRING:
        return _str(v)
    if vtype == ARRAY:
        itype, items = v
        return struct.pack("<IQ", itype, len(items)) + b"".join(_value(itype, x) for x in items)
    return struct.pack(SCALAR[vtype], v)


def nbytes(type_name, shape):
    _, bs, ts = GGML[TYPE[type_name]]
    n = int(np.prod(shape)) if len(shape) else 1
    return n // bs * ts


def write(path, kvs, tensors, alignment=32, version=3):
    """kvs: list of (key, value type, value); arrays as (ARRAY, (item type, items)).
    tensors: list of (name, type name, shape, raw bytes), in file order."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, v in kvs:
        out += _str(key) + struct.pack("<I", vtype) + _value(vtype, v)
    offset, blobs = 0, []
    for name, tname, shape, raw in tensors:
        assert len(raw) == nbytes(tname, shape), name
        out += _str(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        out += struct.pack("<IQ", TYPE[tname], offset)
        pad = (-len(raw)) % alignment
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    out += b"\0" * ((-len(out)) % alignment)
    with open(path, "wb") as f:
        f.write(out + b"".join(blobs))


class _R:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.p:self.p + n]
        self.p += n
        return s.decode()

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            itype, n = self.take("<I"), self.take("<Q")
            return (itype, [self.value(itype) for _ in range(n)])
        return self.take(SCALAR[vtype])


def read(path):
    """-> (kvs: list of (key, type, value), tensors: dict name -> (type name, shape, raw),
    tensor names in file order)."""
    with open(path, "rb") as f:
        data = f.read()
    r = _R(data)
    assert data[:4] == b"GGUF"
    r.p = 4
    version, nt, nkv = r.take("<I"), r.take("<Q"), r.take("<Q")
    assert version in (2, 3)
    kvs = []
    for _ in range(nkv):
        key, vtype = r.string(), r.take("<I")
        kvs.append((key, vtype, r.value(vtype)))
    align = next((v for k, t, v in kvs if k == "general.alignment"), 32)
    infos = []
    for _ in range(nt):
        name, nd = r.string(), r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        t, off = r.take("<I"), r.take("<Q")
        infos.append((name, GGML[t][0], tuple(reversed(ne)), off))
    start = (r.p + align - 1) // align * align
    tensors, order, expect = {}, [], 0
    for name, tname, shape, off in infos:
        assert off == expect and off % align == 0, name
        n = nbytes(tname, shape)
        tensors[name] = (tname, shape, data[start + off:start + off + n])
        assert start + off + n <= len(data)
        expect = (off + n + align - 1) // align * align
        order.append(name)
    return kvs, tensors, order


def values(tname, shape, raw):
    """A plain tensor's values (BF16 as uint16 patterns), shaped."""
    return np.frombuffer(raw, dtype=PLAIN[tname]).reshape(shape)


def plain(tname, arr):
    return (tname, tuple(arr.shape), np.ascontiguousarray(arr).astype(PLAIN[tname]).tobytes())


# ---- Q8_0 and Q4_0, from ggml's definitions

def _f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def dequant(tname, shape, raw):
    n = int(np.prod(shape))
    b = np.frombuffer(raw, dtype=np.uint8)
    if tname == "Q8_0":
        b = b.reshape(-1, 34)
        d = b[:, :2].copy().view(np.float16).astype(np.float32)
        q = b[:, 2:].view(np.int8).astype(np.float32)
        return (q * d).reshape(shape)
    if tname == "Q4_0":
        b = b.reshape(-1, 18)
        d = b[:, :2].copy().view(np.float16).astype(np.float32)
        q = b[:, 2:]
        lo = (q & 15).astype(np.int32) - 8
        hi = (q >> 4).astype(np.int32) - 8
        return (np.concatenate([lo, hi], axis=1).astype(np.float32) * d).reshape(shape)
    raise ValueError(tname)


def quant(tname, x):
    """ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref over 32-value blocks."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    with np.errstate(divide="ignore", invalid="ignore"):
        if tname == "Q8_0":
            amax = np.abs(x).max(axis=1)
            d = (amax / np.float32(127)).astype(np.float32)
            idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            v = (x * idv[:, None]).astype(np.float64)
            q = np.copysign(np.floor(np.abs(v) + 0.5), v)  # roundf: halves away from zero
            out = np.zeros((x.shape[0], 34), dtype=np.uint8)
            out[:, :2] = _f16(d).view(np.uint8).reshape(-1, 2)
            out[:, 2:] = q.astype(np.int8).view(np.uint8)
            return out.tobytes()
        if tname == "Q4_0":
            idx = np.argmax(np.abs(x), axis=1)  # the first of the largest magnitudes
            mx = x[np.arange(x.shape[0]), idx]
            d = (mx / np.float32(-8)).astype(np.float32)
            idv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
            v = (x * idv[:, None]).astype(np.float32) + np.float32(8.5)
            q = np.minimum(15, np.trunc(v).astype(np.int32)).astype(np.uint8)
            out = np.zeros((x.shape[0], 18), dtype=np.uint8)
            out[:, :2] = _f16(d).view(np.uint8).reshape(-1, 2)
            out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
            return out.tobytes()
    raise ValueError(tname)
