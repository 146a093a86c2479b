"""PyTorch checkpoints (.bin/.pt) as inputs: torch.save's zip archives read
without Python, every tensor's values as torch.load gives them, merges of
.bin inputs byte-identical to the same weights in safetensors, and hostile
pickles refused with nothing run and nothing written."""
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import st
from conftest import ladle

torch = st._torch()


def as_stored(t):
    """A torch tensor's values as st stores them (bf16 as uint16 bits)."""
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def state_dict(gen):
    base = torch.randn(10, 6, generator=gen)
    tied = torch.randn(8, 4, generator=gen)
    return {
        "model.embed_tokens.weight": tied,
        "lm_head.weight": tied,  # one storage, two names
        "model.layers.0.w": base[2:7],  # a view at an offset into a larger storage
        "model.layers.0.b16": torch.randn(3, 5, generator=gen).to(torch.bfloat16),
        "model.layers.0.h": torch.randn(4, generator=gen).half(),
        "model.layers.0.d": torch.randn(2, 2, generator=gen).double(),
        "model.position_ids": torch.arange(9),
        "model.mask": torch.tensor([True, False, True]),
        "model.i8": torch.tensor([-3, 4], dtype=torch.int8),
        "model.i32": torch.tensor([1 << 20], dtype=torch.int32),
        "model.i16": torch.tensor([-7], dtype=torch.int16),
        "model.u8": torch.tensor([200], dtype=torch.uint8),
        "model.scale": torch.tensor(0.5),
        "model.empty": torch.zeros(0, 3),
    }


@pytest.mark.parametrize("param,protocol", [(False, 2), (True, 2), (False, 4), (True, 5)])
def test_values_as_torch_load_gives_them(tmp_path, param, protocol):
    sd = state_dict(torch.Generator().manual_seed(1))
    if param:  # nn.Parameter pickles through _rebuild_parameter
        sd = {k: torch.nn.Parameter(v, requires_grad=v.is_floating_point()) for k, v in sd.items()}
    torch.save(sd, tmp_path / "m.bin", pickle_protocol=protocol)
    ladle("soup", tmp_path / "m.bin", "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    want = torch.load(tmp_path / "m.bin", weights_only=False)  # (we wrote it)
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k][1].shape == tuple(v.shape), k
        assert got[k][1].tobytes() == as_stored(v.detach()).tobytes(), k
    r = ladle("info", tmp_path / "m.bin")
    assert "model.layers.0.b16" in r.out and "BF16" in r.out


def hf_folder(path, tensors, shards=1):
    """A transformers folder of pytorch_model.bin (or shards and their index)."""
    os.makedirs(path)
    with open(path / "config.json", "w") as f:
        json.dump(st.config(layers=2, hidden=16, vocab=32), f)
    names = list(tensors)
    if shards == 1:
        torch.save(tensors, path / "pytorch_model.bin")
        return
    per = -(-len(names) // shards)
    wm = {}
    for s in range(shards):
        fn = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        torch.save({n: tensors[n] for n in names[s * per:(s + 1) * per]}, path / fn)
        wm.update({n: fn for n in names[s * per:(s + 1) * per]})
    with open(path / "pytorch_model.bin.index.json", "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)


def torch_of(tensors):
    out = {}
    for name, dtype, arr in tensors:
        if dtype == "BF16":
            out[name] = torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
        else:
            out[name] = torch.from_numpy(arr.copy())
    return out


@pytest.mark.parametrize("shards", [1, 3])
def test_merges_identical_to_safetensors(tmp_path, rng, shards):
    base = st.llama(rng, "BF16", layers=2, hidden=16, inter=16, vocab=32)
    ft = st.llama(rng, "BF16", layers=2, hidden=16, inter=16, vocab=32, base=base)
    for name, t in (("base", base), ("ft", ft)):
        st.write_hf(tmp_path / f"{name}-st", t, st.config(layers=2, hidden=16, vocab=32))
        hf_folder(tmp_path / f"{name}-bin", torch_of(t), shards)
    for cmd in (["lerp", "{base}", "{ft}", "--alpha", "0.3"],
                ["task", "--base", "{base}", "--add", "0.7:{ft}"],
                ["ties", "--base", "{base}", "--add", "1:{ft}", "--density", "0.5"]):
        outs = []
        for kind in ("st", "bin"):
            args = [a.format(base=tmp_path / f"base-{kind}", ft=tmp_path / f"ft-{kind}")
                    for a in cmd]
            out = tmp_path / f"{cmd[0]}-{kind}.safetensors"
            ladle(*args, "-o", out, "-q")
            outs.append(st.load(str(out))[0])
        assert outs[0].keys() == outs[1].keys()
        for k in outs[0]:
            assert outs[0][k][1].tobytes() == outs[1][k][1].tobytes(), (cmd[0], k)
    # a .bin folder and a safetensors folder merge together
    ladle("lerp", tmp_path / "base-bin", tmp_path / "ft-st", "--alpha", "0.5", "-o",
          tmp_path / "mixed", "-q")
    assert (tmp_path / "mixed" / "model.safetensors").exists()


# ------------------------------------------------------------- refused


def archive(path, pkl, storages=(), compress=False, prefix="archive", extra=()):
    """A zip laid out as torch.save lays it out, with the given data.pkl."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        for key, data in storages:
            z.writestr(f"{prefix}/data/{key}", data)
        for name, data in extra:
            z.writestr(f"{prefix}/{name}", data)


class Evil:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def refused(tmp_path, path, *words):
    out = tmp_path / "never.safetensors"
    r = ladle("soup", path, "-o", out, check=False)
    lines = r.err.strip().splitlines()
    assert r.code == 1 and len(lines) == 1 and lines[0].startswith("ladle: error: "), r.err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not out.exists()
    return lines[0]


def test_hostile_pickles_run_nothing(tmp_path):
    canary = tmp_path / "pwned"
    cases = {
        "system": (Evil(os.system, f"touch {canary}"), "system'"),
        "eval": (Evil(eval, f"open('{canary}', 'w')"), ".eval'"),
        # a good tensor first, the call nested inside another value after it
        "nested": ({"a": torch.zeros(2), "b": (1, [Evil(os.system, f"touch {canary}")])},
                   "system'"),
        "exec_in_tuple": ((Evil(exec, f"open('{canary}','w')"),), ".exec'"),
    }
    for name, (obj, words) in cases.items():
        buf = io.BytesIO()
        if name == "nested":
            torch.save(obj, buf)  # a real archive, its pickle calling os.system
            path = tmp_path / f"{name}.bin"
            path.write_bytes(buf.getvalue())
        else:
            path = tmp_path / f"{name}.bin"
            archive(path, pickle.dumps(obj, protocol=2))
        msg = refused(tmp_path, path, words, "never runs code")
        assert str(path) in msg
    assert not canary.exists()


def test_broken_archives(tmp_path):
    sd = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    torch.save(sd, tmp_path / "ok.bin")
    data = (tmp_path / "ok.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    refused(tmp_path, tmp_path / "cut.bin", "cut.bin")
    # the storage says more elements than the archive holds
    with zipfile.ZipFile(tmp_path / "ok.bin") as z:
        names = z.namelist()
        pkl = z.read([n for n in names if n.endswith("data.pkl")][0])
        key = [n for n in names if "/data/" in n][0].rsplit("/", 1)[1]
        blob = z.read([n for n in names if "/data/" in n][0])
    archive(tmp_path / "short.bin", pkl, [(key, blob[:20])])
    refused(tmp_path, tmp_path / "short.bin", "storage '0'", "archive holds 20 bytes")
    archive(tmp_path / "deflated.bin", pkl, [(key, blob)], compress=True)
    refused(tmp_path, tmp_path / "deflated.bin", "compressed")
    archive(tmp_path / "big.bin", pkl, [(key, blob)], extra=[("byteorder", "big")])
    refused(tmp_path, tmp_path / "big.bin", "big-endian")
    archive(tmp_path / "nostorage.bin", pkl)
    refused(tmp_path, tmp_path / "nostorage.bin", "storage '0' is not in the archive")
    # the format before PyTorch 1.6
    torch.save(sd, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    refused(tmp_path, tmp_path / "legacy.bin", "before PyTorch 1.6")
    # not a state dict of tensors, a strided view
    torch.save({"w": sd["w"], "epoch": 3}, tmp_path / "epoch.bin")
    refused(tmp_path, tmp_path / "epoch.bin", "entry 'epoch' is not a tensor")
    torch.save({"w": sd["w"].t()}, tmp_path / "strided.bin")
    refused(tmp_path, tmp_path / "strided.bin", "'w' is a strided view")
    torch.save([sd["w"]], tmp_path / "list.bin")
    refused(tmp_path, tmp_path / "list.bin", "no dict of tensors")
    # an unknown opcode (a protocol-0 text pickle's INT) and a missing STOP
    archive(tmp_path / "proto0.bin", b"I3\n.")
    refused(tmp_path, tmp_path / "proto0.bin", "opcode 0x49")
    archive(tmp_path / "nostop.bin", pkl[:-1], [(key, blob)])
    refused(tmp_path, tmp_path / "nostop.bin", "without STOP")


def test_hf_folder_prefers_safetensors(tmp_path, rng):
    t = st.llama(rng, "F32", layers=1, hidden=8, inter=8, vocab=8)
    st.write_hf(tmp_path / "m", t, st.config(layers=1, hidden=8, vocab=8))
    torch.save({"only.in.bin": torch.zeros(2)}, tmp_path / "m" / "pytorch_model.bin")
    r = ladle("info", tmp_path / "m")
    assert "only.in.bin" not in r.out and "model.embed_tokens.weight" in r.out
    os.makedirs(tmp_path / "empty")
    r = ladle("info", tmp_path / "empty", check=False)
    assert r.code == 1 and "pytorch_model.bin" in r.err


def zip64_of(path, out):
    """The same archive with zip64 records throughout (as torch.save writes
    archives over 4 GB): every size and offset in the central directory
    marked 0xFFFFFFFF and given in the zip64 extra field, and the zip64 end
    of central directory record and locator. Written from APPNOTE.TXT."""
    with zipfile.ZipFile(path) as z:
        entries = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    body, cdir = bytearray(), bytearray()
    for name, data in entries:
        off = len(body)
        n = name.encode()
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))  # local: sizes
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, zipfile.crc32(data),
                            0xFFFFFFFF, 0xFFFFFFFF, len(n), len(extra)) + n + extra
        body += data
        cx = struct.pack("<HHQQQ", 1, 24, len(data), len(data), off)
        cdir += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0,
                            zipfile.crc32(data), 0xFFFFFFFF, 0xFFFFFFFF, len(n), len(cx), 0, 0,
                            0, 0, 0xFFFFFFFF) + n + cx
    cd_off, eocd64 = len(body), len(body) + len(cdir)
    tail = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries),
                       len(cdir), cd_off)
    tail += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
    tail += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    out.write_bytes(bytes(body + cdir + tail))


def test_zip64_archives(tmp_path):
    sd = state_dict(torch.Generator().manual_seed(3))
    torch.save(sd, tmp_path / "m.bin")
    zip64_of(tmp_path / "m.bin", tmp_path / "m64.bin")
    with zipfile.ZipFile(tmp_path / "m64.bin") as z:  # a valid archive to Python's reader
        assert z.testzip() is None and z.infolist()[0].file_size < 0xFFFFFFFF
    for name in ("m.bin", "m64.bin"):
        ladle("soup", tmp_path / name, "-o", tmp_path / f"{name}.safetensors", "-q")
    a, _ = st.load(str(tmp_path / "m.bin.safetensors"))
    b, _ = st.load(str(tmp_path / "m64.bin.safetensors"))
    assert a.keys() == b.keys() and all(a[k][1].tobytes() == b[k][1].tobytes() for k in a)
