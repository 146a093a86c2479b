#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (checked in under tests/fuzz/corpus/):
valid files of every kind plus every crafted bad file of the bad-input
tests, so fuzzing starts from inputs that reach deep into each parser.
Run it again after adding a reader rule or a recipe feature."""
import json
import os
import pathlib
import shutil
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "py"))
import st  # noqa: E402
from test_bad_input import CASES  # noqa: E402

corpus = HERE / "corpus"


def fresh(name):
    """The target's seed folder, emptied of earlier seeds; inputs that
    fuzzing found new coverage with (cov-*, tools/fuzz-merge.sh) stay."""
    d = corpus / name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.iterdir():
        if not f.name.startswith("cov-"):
            f.unlink()
    return d


# safetensors: small valid files (several dtypes, metadata, empty, 0-d),
# then one file per reader rule.
d = fresh("safetensors")
rng = np.random.default_rng(0)
st.write(d / "valid_f32", [("a", "F32", np.ones(2, np.float32)),
                           ("b", "F32", np.arange(6, dtype=np.float32).reshape(2, 3))])
st.write(d / "valid_meta", [("w", "F16", np.ones(4, np.float16))], metadata={"format": "pt"})
st.write(d / "valid_llama_bf16", st.llama(rng, "BF16", layers=1, hidden=8, inter=8, vocab=8))
st.write(d / "valid_empty_and_scalar", [("e", "F32", np.zeros((0, 4), np.float32)),
                                        ("s", "I64", np.array(7, np.int64))])
st.write(d / "valid_none", [])
for name, (make, _) in CASES.items():
    make(d / f"bad_{name}")

# index: for the fuzz target's fixed shards (a.weight, b.weight).
d = fresh("index")
s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
good = {"metadata": {"total_size": 16}, "weight_map": {"a.weight": s1, "b.weight": s2}}
seeds = {
    "valid": good,
    "valid_no_metadata": {"weight_map": good["weight_map"]},
    "missing_tensor": {"weight_map": {"a.weight": s1}},
    "ghost_tensor": {"weight_map": {**good["weight_map"], "c.weight": s1}},
    "maps_elsewhere": {"weight_map": {"a.weight": s2, "b.weight": s2}},
    "missing_shard": {"weight_map": {"a.weight": s1, "b.weight": "model-00003.safetensors"}},
    "path_traversal": {"weight_map": {"a.weight": "../" + s1, "b.weight": s2}},
    "absolute_path": {"weight_map": {"a.weight": "/etc/passwd", "b.weight": s2}},
    "not_string": {"weight_map": {"a.weight": 1, "b.weight": s2}},
    "no_weight_map": {"metadata": {}},
    "array": [1, 2],
}
for name, doc in seeds.items():
    (d / name).write_text(json.dumps(doc))
(d / "bad_json").write_text("{nope")
(d / "duplicate_key").write_text('{"weight_map": {"a.weight": "%s", "a.weight": "%s"}}'
                                 % (s1, s2))

# recipe: every example recipe (they name models/base, models/ft1..3,
# which the fuzz target creates).
d = fresh("recipe")
for y in sorted((HERE.parent.parent / "examples" / "recipes").glob("*.yml")):
    shutil.copy(y, d / y.stem)
(d / "anchors").write_text("base: &b models/base\nmodels:\n  - model: *b\n  - model: models/ft1\n"
                           "merge_method: task_arithmetic\nbase_model: *b\n"
                           "parameters: {weight: [0, 0.5, 1]}\n")
(d / "bad_indent").write_text("models:\n - model: models/ft1\n  parameters: [\n")
# journal: evaluation logs (whole, cut short by a crash) and evaluator output.
d = fresh("journal")
line = {"recipe": "ladle lerp A B --alpha 0.5", "eval": "python3 eval.py {model}",
        "label": "alpha=0.5", "path": "w/cand-0000.safetensors", "score": 0.93, "seconds": 1.5}
fail = {"recipe": "model A", "eval": "python3 eval.py {model}", "path": "A", "score": None,
        "seconds": 0.1, "error": "exit status 1"}
(d / "log_two_lines").write_text(json.dumps(line) + "\n" + json.dumps(fail) + "\n")
(d / "log_cut_short").write_text('{"recipe":"x","eval":"y","score":1}\n{"recipe":"cut')
(d / "stdout_plain").write_text("accuracy 93.1%\nscore: 0.25\n")
(d / "stdout_json").write_text('{"score": -1.5e-3, "n": 7}\n')
(d / "stdout_no_number").write_text("nan inf 0x1p3 1e999\n")
# safetensors: quantised checkpoints as they ship (paired when opened)
d = corpus / "safetensors"
codes = rng.integers(0, 0x7E, (20, 30), dtype=np.uint8)
st.write(d / "fp8_block", [("w", "F8_E4M3", codes), ("w_scale_inv", "F32",
                                                      np.ones((1, 1), np.float32))])
st.write(d / "fp8_channel", [("w", "F8_E5M2", codes), ("w_scale", "BF16",
                                                       np.ones((20, 1), np.uint16))])
st.write(d / "fp8_tensor", [("w", "F8_E4M3", codes), ("w_scale", "F32", np.ones((), np.float32))])
st.write(d / "mxfp4", [("e_blocks", "U8", rng.integers(0, 255, (2, 3, 2, 16), dtype=np.uint8)),
                       ("e_scales", "U8", np.full((2, 3, 2), 127, np.uint8))])

# structure: the tensor names of every naming scheme the structure tests
# cover, one name per line ("re:REGEX" first for --layers).
from test_structure import SCHEMES  # noqa: E402
d = fresh("structure")
for name, names in SCHEMES.items():
    (d / name).write_text("\n".join(names) + "\n")
(d / "regex").write_text("re:unit_(\\d+)\\.\n" + "\n".join(
    f"net.stage.unit_{i}.w" for i in range(4)) + "\nstem.weight\n")
(d / "flat").write_text("fc1.weight\nfc2.weight\n")

# tokenizer: tokenizer.json files of the fine-tune whose 9 rows are matched
# to its base's 6 (a b c d e <s>) by token.
from vocab_family import tokenizer  # noqa: E402
d = fresh("tokenizer")
for name, doc in {
    "added": tokenizer(list("abcde") + ["<s>", "<x>", "<y>", "<z>"], ("<s>", "<x>")),
    "reordered": tokenizer(list("edcba") + ["<s>", "q", "r", "s"]),
    "lacks_some": tokenizer(list("ab") + ["<s>"]),
    "unigram": tokenizer(list("bacde") + ["<s>", "\u0000", "\u00e9", "z"], unigram=True),
    "added_overrides": {"model": {"vocab": {"a": 0, "b": 1}},
                        "added_tokens": [{"id": 1, "content": "c"}, {"id": 8, "content": "a"}]},
    "gaps": {"model": {"vocab": {"a": 7, "b": 3}}},
    "huge_id": {"model": {"vocab": {"a": 16777216}}},
    "no_vocab": {"model": {"type": "WordLevel"}},
}.items():
    (d / name).write_text(json.dumps(doc))
(d / "nul_token").write_text('{"model":{"vocab":{"a\\u0000b":0,"a":1}}}')
(d / "bad_json").write_text('{"model":{"vocab":{"a":0,')
print("seeds written to", corpus)

# torch: PyTorch checkpoints, as torch.save writes them (a zip64 one too),
# and every crafted archive of the .bin tests.
import io  # noqa: E402
import pickle  # noqa: E402
import test_torch_bin as tb  # noqa: E402
torch = st._torch()
d = fresh("torch")
gen = torch.Generator().manual_seed(0)
torch.save(tb.state_dict(gen), d / "state_dict")
torch.save({k: torch.nn.Parameter(v, requires_grad=False) for k, v in
            tb.state_dict(gen).items()}, d / "parameters")
buf = io.BytesIO()
torch.save({"w": torch.arange(6.0)}, buf, pickle_protocol=4)
(d / "protocol4").write_bytes(buf.getvalue())
tb.zip64_of(d / "state_dict", d / "zip64")
small = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
torch.save(small, d / "small")
tb.archive(d / "system", pickle.dumps(tb.Evil(os.system, "true"), protocol=2))
torch.save({"w": small["w"].t()}, d / "strided")
torch.save({"w": small["w"], "epoch": 3}, d / "epoch")
print("torch seeds written")

# gguf: valid files (block types, unreadable types, every value type,
# alignment 64, version 2) and every crafted bad file of the GGUF tests.
import gguf  # noqa: E402
import test_gguf as tg  # noqa: E402
d = fresh("gguf")
kvs = tg.KVS + [("u8", gguf.U8, 7), ("i8", gguf.I8, -7), ("u16", gguf.U16, 7),
                ("i16", gguf.I16, -7), ("i32", gguf.I32, -7), ("b", gguf.BOOL, True),
                ("u64", gguf.U64, 1 << 40), ("i64", gguf.I64, -1), ("f64", gguf.F64, 0.5),
                ("empty", gguf.ARRAY, (gguf.U32, []))]
x = rng.standard_normal((4, 64)).astype(np.float32)
gguf.write(d / "blocks", kvs, [("blk.0.a.weight", "Q8_0", (4, 64), gguf.quant("Q8_0", x)),
                               ("blk.1.a.weight", "Q4_0", (4, 64), gguf.quant("Q4_0", x)),
                               ("blk.0.n.weight", "F32", (64,), x[0].tobytes()),
                               ("k", "Q4_K", (1, 256), bytes(range(144))),
                               ("iq", "IQ2_XXS", (256,), bytes(66)),
                               ("h", "F16", (2, 3), np.ones(6, np.float16).tobytes()),
                               ("s", "BF16", (), b"\x80\x3f")])
gguf.write(d / "aligned64", tg.KVS + [("general.alignment", gguf.U32, 64)],
           [("w", "F32", (3,), x[0, :3].tobytes()), ("v", "I32", (2,), bytes(8))],
           alignment=64)
gguf.write(d / "version2", tg.KVS[:1], [("w", "Q6_K", (256,), bytes(210))], version=2)
gguf.write(d / "empty", [], [])
for name, data, _ in tg.bad_files(None):
    (d / name).write_bytes(data)
print("gguf seeds written")
