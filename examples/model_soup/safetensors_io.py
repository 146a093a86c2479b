"""Just enough safetensors for this example (F32 tensors), with numpy: the
format is an 8-byte little-endian header length, a JSON header, the data."""
import json
import os
import struct

import numpy as np


def save(path, tensors):
    """tensors: dict name -> float32 array, written in the dict's order."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def load(path):
    """A .safetensors file, or a folder holding model.safetensors -> dict of
    float32 arrays (bf16 is widened by its bit pattern)."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = data[8 + n + start:8 + n + end]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, DTYPES[info["dtype"]]).astype(np.float32)
        out[name] = arr.reshape(info["shape"])
    return out
