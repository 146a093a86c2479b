"""Vocabularies of different sizes and orders (fine-tunes with added tokens,
reordered vocabularies): every command merges embedding and head rows
matched by token, as mergekit's default does.

The reference, written from mergekit's definition (tokenizer_source: base;
PermutedEmbeddings): the output has the template's vocabulary; each input's
row of a token is the row of the same token in its own tokenizer.json;
rows an input lacks take the base's row where the merge has a base that
holds the token, else the mean of the inputs that hold it; rows of tokens
the template lacks are dropped. Each test aligns the inputs that way in
numpy, writes them out with the template's tokenizer, runs the same
command on both and compares every byte of the outputs."""
import json
import os
import shutil

import numpy as np
import pytest

import st
from conftest import ladle
from vocab_family import BASE_TOKENS, VOCAB, family, tokenizer, write_model


def round64(dtype, x):
    """float64 -> stored values, rounded once (bf16 via PyTorch from float64)."""
    if dtype == "BF16":
        torch = st._torch()
        t = torch.from_numpy(np.asarray(x, np.float64)).to(torch.bfloat16)
        return t.view(torch.int16).numpy().view(np.uint16)
    return x.astype(st.NP[dtype])


def aligned(tmp_path, models, template, base=None, tokens=None, tokenizer_file=None):
    """The inputs aligned to the template's vocabulary (or `tokens`) by the
    reference rule, written with the template's tokenizer (or that file):
    folders to run the same command on."""
    out = []
    tokens = tokens or template.tokens
    tokenizer_file = tokenizer_file or os.path.join(template.path, "tokenizer.json")
    for k, m in enumerate(models):
        tensors = []
        for name, (d, a) in m.t.items():
            if name not in VOCAB:
                tensors.append((name, d, a))
                continue
            rows = []
            for tok in tokens:
                if tok in m.tokens:
                    rows.append(a[m.tokens.index(tok)])
                    continue
                if base is not None and tok in base.tokens:
                    donors = [base]
                else:
                    donors = [o for o in models if tok in o.tokens]
                vals = [st.to_f64(o.t[name][0], o.t[name][1][o.tokens.index(tok)])
                        for o in donors]
                rows.append(round64(d, np.mean(vals, axis=0) if len(vals) > 1 else vals[0]))
            tensors.append((name, d, np.stack(rows)))
        p = tmp_path / f"aligned{k}"
        st.write_hf(p, tensors, st.config(layers=1, hidden=16, vocab=len(tokens)))
        shutil.copy(tokenizer_file, p / "tokenizer.json")
        out.append(p)
    return out


def same_outputs(a, b):
    ta, _ = st.load(str(a))
    tb, _ = st.load(str(b))
    assert ta.keys() == tb.keys()
    for n in ta:
        assert ta[n][1].shape == tb[n][1].shape, n
        assert ta[n][1].tobytes() == tb[n][1].tobytes(), n


def recipe(tmp_path, base, models):
    y = tmp_path / "r.yml"
    y.write_text("merge_method: ties\nbase_model: %s\nparameters:\n  density: 0.6\nmodels:\n%s"
                 % (base, "".join(f"  - model: {m}\n    parameters:\n      weight: 0.7\n"
                                  for m in models)))
    return ["merge", y]


COMMANDS = {
    "lerp": lambda b, ms: ["lerp", b, ms[0], "--alpha", "0.4"],
    "slerp": lambda b, ms: ["slerp", b, ms[0], "--t", "0.3"],
    "soup": lambda b, ms: ["soup", b, *ms],
    "task": lambda b, ms: ["task", "--base", b] + sum((["--add", f"0.{k + 5}:{m}"]
                                                       for k, m in enumerate(ms)), []),
    "ties": lambda b, ms: ["ties", "--base", b, "--density", "0.5"] +
                          sum((["--add", f"1:{m}"] for m in ms), []),
    "stock": lambda b, ms: ["stock", "--base", b, *ms],
}


@pytest.mark.parametrize("cmd", list(COMMANDS) + ["recipe"])
def test_added_and_reordered_tokens_every_command(tmp_path, rng, cmd):
    base, ft1, ft2, _ = family(tmp_path, rng)
    fts = [ft1] if cmd in ("lerp", "slerp") else [ft1, ft2]
    has_base = cmd in ("task", "ties", "stock", "recipe")
    al = aligned(tmp_path, [base] + fts, base, base if has_base else None)
    make = (lambda b, ms: recipe(tmp_path, b, ms)) if cmd == "recipe" else COMMANDS[cmd]
    r = ladle(*make(base.path, [m.path for m in fts]), "-o", tmp_path / "out", "-q")
    ladle(*make(al[0], al[1:]), "-o", tmp_path / "ref", "-q")
    same_outputs(tmp_path / "out", tmp_path / "ref")
    got, _ = st.load(str(tmp_path / "out"))
    assert got["model.embed_tokens.weight"][1].shape == (32, 16)
    assert json.load(open(tmp_path / "out" / "config.json"))["vocab_size"] == 32
    warns = [ln for ln in r.err.splitlines() if ln.startswith("ladle: warning:")]
    assert len(warns) == len(fts), r.err
    assert "ft1: 3 rows of model.embed_tokens.weight, lm_head.weight ('<|a|>', '<|b|>', " \
           "'<|c|>') are not in the vocabulary of" in warns[0]
    assert "rows matched by token" in warns[0] and "another order" not in warns[0]
    if len(fts) > 1:
        assert "ft2: 1 row of" in warns[1] and "('<|x|>') is not in" in warns[1]
        assert "another order" in warns[1]


def test_kept_rows_values(tmp_path, rng):
    """Directly: lerp's kept rows are (1 - a) base + a ft1 of the same token."""
    base, ft1, ft2, _ = family(tmp_path, rng, dtype="F32")
    ladle("lerp", base.path, ft2.path, "--alpha", "0.25", "-o", tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in VOCAB:
        b, f = base.t[n][1], ft2.t[n][1]
        idx = [ft2.tokens.index(t) for t in BASE_TOKENS]
        want = (np.float32(0.75) * b + np.float32(0.25) * f[idx]).astype(np.float32)
        np.testing.assert_array_equal(got[n][1], want)


def test_rows_an_input_lacks(tmp_path, rng):
    """The template has tokens an input lacks: the base's row (task: a zero
    delta), or the mean of the inputs that hold them (soup)."""
    base, ft1, ft2, small = family(tmp_path, rng, dtype="F32")
    r = ladle("task", "--base", base.path, "--add", f"0.8:{small.path}", "-o", tmp_path / "t",
              "-q")
    assert "small lacks 4 of the 32 rows of" in r.err and "'tok28', 'tok29', 'tok30', ..." in r.err
    got, _ = st.load(str(tmp_path / "t"))
    for n in VOCAB:
        np.testing.assert_array_equal(got[n][1][28:], base.t[n][1][28:])
    # soup (no base): ft1 is the template; small lacks 4 + 3 rows, ft2 lacks 3
    for dtype in ("F32", "BF16"):
        d = tmp_path / dtype
        d.mkdir()
        base, ft1, ft2, small = family(d, rng, dtype=dtype)
        al = aligned(d, [ft1, small, ft2], ft1)
        r = ladle("soup", ft1.path, small.path, ft2.path, "-o", d / "s", "-q")
        ladle("soup", *al, "-o", d / "ref", "-q")
        same_outputs(d / "s", d / "ref")
        assert "small lacks 7 of the 35 rows" in r.err and "mean of the models" in r.err
        assert "ft2: 1 row of" in r.err and "ft2 lacks 3 of the 35 rows" in r.err


def test_no_tokenizer_matches_rows_by_number(tmp_path, rng):
    base, ft1, _, _ = family(tmp_path, rng)
    for m in (base, ft1):
        st.write(tmp_path / f"{os.path.basename(m.path)}.safetensors",
                 [(n, d, a) for n, (d, a) in m.t.items()])
    r = ladle("lerp", tmp_path / "base.safetensors", tmp_path / "ft1.safetensors", "--alpha",
              "0.5", "-o", tmp_path / "o.safetensors", "-q")
    assert "rows 32, 33, 34" in r.err and "matched by number" in r.err
    assert "neither" in r.err and "has a tokenizer.json" in r.err
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    assert got["lm_head.weight"][1].shape == (32, 16)


def test_same_size_reordered_is_matched_by_token(tmp_path, rng):
    """Same shapes, another order: matched by token, never by row number."""
    base, _, _, _ = family(tmp_path, rng, dtype="F32")
    perm = list(rng.permutation(32))
    toks = [BASE_TOKENS[i] for i in perm]
    t = [(n, d, a[perm] if n in VOCAB else a) for n, (d, a) in base.t.items()]
    write_model(tmp_path / "shuffled", t, toks, unigram=True)  # a Unigram vocabulary too
    r = ladle("lerp", base.path, tmp_path / "shuffled", "--alpha", "0.5", "-o",
              tmp_path / "o.safetensors", "-q")
    assert "another order" in r.err and "dropped" not in r.err
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    for n in VOCAB:  # the same rows, reordered: the lerp gives them back
        np.testing.assert_array_equal(got[n][1], base.t[n][1])


def test_dry_run_and_other_shapes(tmp_path, rng):
    base, ft1, _, _ = family(tmp_path, rng)
    r = ladle("lerp", base.path, ft1.path, "--alpha", "0.5", "-o", tmp_path / "o", "--dry-run")
    line = [ln for ln in r.out.splitlines() if "lm_head.weight" in ln][0]
    assert "matched to the output's vocabulary" in line and "[32, 16]" in line
    assert not (tmp_path / "o").exists()
    # any other difference of shape is still an error
    t = dict((n, (d, a)) for n, (d, a) in ft1.t.items())
    d, a = t["model.layers.0.mlp.up_proj.weight"]
    t["model.layers.0.mlp.up_proj.weight"] = (d, a[:8])
    write_model(tmp_path / "bad", [(n, d, a) for n, (d, a) in t.items()], ft1.tokens)
    r = ladle("lerp", base.path, tmp_path / "bad", "--alpha", "0.5", "-o", tmp_path / "o",
              check=False)
    assert r.code == 1 and "'model.layers.0.mlp.up_proj.weight' has shape [16, 16]" in r.err


def test_rows_across_work_items(tmp_path, rng):
    """Tensors larger than a work item, rows not dividing it: rows split
    between items, runs of consecutive rows, fills, all in place."""
    H, toks = 1000, [f"w{i}" for i in range(300)]
    perm = rng.permutation(300)
    ft_toks = [toks[i] for i in perm[:150]] + ["<new>"] + toks[150:280]  # lacks some, reorders
    ft_toks = list(dict.fromkeys(ft_toks))
    b = rng.standard_normal((300, H)).astype(np.float32)
    f = rng.standard_normal((len(ft_toks), H)).astype(np.float32)
    for d, a, tk in (("base", b, toks), ("ft", f, ft_toks)):
        os.makedirs(tmp_path / d)
        st.write(tmp_path / d / "model.safetensors", [("model.embed_tokens.weight", "F32", a)])
        with open(tmp_path / d / "tokenizer.json", "w") as fh:
            json.dump(tokenizer(tk), fh)
    ladle("task", "--base", tmp_path / "base", "--add", f"0.5:{tmp_path / 'ft'}", "-o",
          tmp_path / "o.safetensors", "-q")
    got, _ = st.load(str(tmp_path / "o.safetensors"))
    fa = np.stack([f[ft_toks.index(t)] if t in ft_toks else b[i] for i, t in enumerate(toks)])
    want = (b + np.float32(0.5) * (fa - b)).astype(np.float32)
    np.testing.assert_array_equal(got["model.embed_tokens.weight"][1], want)


def union_tokens(models, added_of):
    """mergekit's union, from its definition: the template's tokens, then the
    plain tokens of the others it lacks, then their added tokens (model by
    model, in id order)."""
    out = list(models[0].tokens)
    for want_added in (False, True):
        for m in models[1:]:
            for t in m.tokens:
                if (t in added_of(m)) == want_added and t not in out:
                    out.append(t)
    return out


ADDED = {"ft1": ("<|a|>", "<|b|>", "<|c|>"), "ft2": ("<|x|>",)}


@pytest.mark.parametrize("cmd", ["soup", "task", "recipe"])
def test_tokenizer_source_union(tmp_path, rng, cmd):
    base, ft1, ft2, small = family(tmp_path, rng)
    plain = [ft1.tokens[0]] + ["<plain>"] + ft1.tokens[1:]  # a plain token only ft3 has
    t = {n: (d, a) for n, (d, a) in ft1.t.items()}
    for n in VOCAB:  # ft1's rows moved, one more, and all of them changed
        d, a = t[n]
        a = np.concatenate([a[:1], a[5:6], a[1:]])
        t[n] = (d, st.round_to(d, st.to_f32(d, a) + rng.standard_normal(a.shape).astype(
            np.float32) * np.float32(0.01)))
    ft3 = write_model(tmp_path / "ft3", [(n, d, a) for n, (d, a) in t.items()], plain,
                      ADDED["ft1"])
    (base.path / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": 4096, "added_tokens_decoder": {}}))
    fts = [ft1, ft2, ft3]

    def command(paths, union):
        b, ms = paths[0], paths[1:]
        flag = ["--tokenizer-source", "union"] if union else []
        if cmd == "recipe":
            y = tmp_path / f"r{int(union)}.yml"
            y.write_text(f"merge_method: ties\nbase_model: {b}\n" +
                         ("tokenizer_source: union\n" if union else "") +
                         "parameters: {density: 0.6, weight: 0.7}\nmodels:\n" +
                         "".join(f"  - model: {m}\n" for m in ms))
            return ["merge", y]
        if cmd == "task":
            return ["task", "--base", b, *flag] + sum((["--add", f"0.5:{m}"] for m in ms), [])
        return ["soup", b, *ms, *flag]

    has_base = cmd != "soup"
    r = ladle(*command([m.path for m in [base] + fts], True), "-o", tmp_path / "out", "-q")
    toks = union_tokens([base] + fts, lambda m: ADDED.get(os.path.basename(m.path), ()))
    assert toks[32:] == ["<plain>", "<|a|>", "<|b|>", "<|c|>", "<|x|>"]
    assert "union of the inputs': 37 tokens, 5 more than" in r.err
    out = tmp_path / "out"
    al = aligned(tmp_path, [base] + fts, base, base if has_base else None, toks,
                 out / "tokenizer.json")
    ref_args = command(al, False)
    ladle(*ref_args, "-o", tmp_path / "ref", "-q")
    same_outputs(out, tmp_path / "ref")
    got, _ = st.load(str(out))
    assert got["lm_head.weight"][1].shape == (37, 16)
    assert json.load(open(out / "config.json"))["vocab_size"] == 37
    tj = json.load(open(out / "tokenizer.json"))
    new = {e["id"]: e for e in tj["added_tokens"] if e["id"] >= 32}
    assert [new[i]["content"] for i in range(32, 37)] == toks[32:]
    assert new[32]["special"] is False and new[32]["normalized"] is True  # add_tokens' defaults
    assert all(new[i]["special"] is True for i in range(33, 37))  # their own settings
    assert tj["model"]["vocab"] == json.load(open(base.path / "tokenizer.json"))["model"]["vocab"]
    dec = json.load(open(out / "tokenizer_config.json"))["added_tokens_decoder"]
    assert sorted(dec) == [str(i) for i in range(32, 37)] and dec["34"]["content"] == "<|b|>"
    assert "id" not in dec["34"]


def test_tokenizer_source_model(tmp_path, rng):
    base, ft1, ft2, _ = family(tmp_path, rng)
    (ft1.path / "special_tokens_map.json").write_text('{"eos_token": "<|a|>"}')
    (base.path / "special_tokens_map.json").write_text('{"eos_token": "tok0"}')
    r = ladle("soup", base.path, ft1.path, ft2.path, "--tokenizer-source", ft1.path, "-o",
              tmp_path / "out", "-q")
    assert "base lacks 3 of the 35 rows of" in r.err
    al = aligned(tmp_path, [ft1, base, ft2], ft1)
    ladle("soup", al[1], al[0], al[2], "-o", tmp_path / "ref", "-q")
    same_outputs(tmp_path / "out", tmp_path / "ref")
    out = tmp_path / "out"
    assert json.load(open(out / "config.json"))["vocab_size"] == 35
    for f in ("tokenizer.json", "special_tokens_map.json"):  # ft1's tokenizer files
        assert (out / f).read_bytes() == (ft1.path / f).read_bytes()
    assert (out / "generation_config.json").exists()  # the rest still from the template
    # mergekit's spelling, and a recipe naming the model relative to itself
    y = tmp_path / "r.yml"
    y.write_text("merge_method: linear\ntokenizer:\n  source: model:ft1\nmodels:\n"
                 "  - model: base\n    parameters: {weight: 1}\n"
                 "  - model: ft1\n    parameters: {weight: 1}\n"
                 "  - model: ft2\n    parameters: {weight: 1}\n")
    ladle("merge", y, "-o", tmp_path / "rec", "-q")
    same_outputs(tmp_path / "rec", tmp_path / "ref")
    r = ladle("soup", base.path, ft1.path, "--tokenizer-source", "nope", "-o", tmp_path / "x",
              check=False)
    assert r.code == 2 and "not base, union or one of the inputs" in r.err
    r = ladle("soup", base.path, ft1.path, "--tokenizer-source", "union", "-o",
              tmp_path / "x.safetensors", check=False)
    assert r.code == 0
    os.remove(base.path / "tokenizer.json")
    r = ladle("soup", base.path, ft1.path, "--tokenizer-source", "union", "-o",
              tmp_path / "y", check=False)
    assert r.code == 1 and "union" in r.err and "has no tokenizer.json" in r.err


def test_pad_to_multiple_and_token_rules(tmp_path, rng):
    """mergekit's tokenizer: pad_to_multiple_of and tokens: (its
    PermutedEmbeddings): rules' rows replace those of the inputs that lack
    the token, or of every input with force; the rows past the vocabulary
    are each input's mean row. Compared byte for byte with the same recipe
    on inputs aligned by a reference of that rule."""
    base, ft1, ft2, small = family(tmp_path, rng)
    models = [base, ft1, ft2, small]
    rules = {  # token: (source model, its token, force); None: zeros
        "tok3": (ft1, "tok3", True),
        "tok5": (None, None, True),
        "tok29": (ft1, "tok29", False),   # small lacks it: ft1's row, not the base's
        "tok30": (ft2, "<|x|>", False),   # everyone has it: nothing changes
    }
    y = tmp_path / "r.yml"
    y.write_text(
        f"merge_method: task_arithmetic\nbase_model: {base.path}\n"
        "parameters: {weight: 0.5}\n"
        "tokenizer:\n  source: base\n  pad_to_multiple_of: 48\n  tokens:\n"
        f"    tok3: {{source: {ft1.path}, force: true}}\n"
        "    tok5: {source: {kind: zero}, force: true}\n"
        f"    tok29: {{source: {ft1.path}}}\n"
        f"    tok30:\n      source: {{kind: model_token, model: {ft2.path}, token: '<|x|>'}}\n"
        "models:\n" + "".join(f"  - model: {m.path}\n" for m in models[1:]))
    ladle("merge", y, "-o", tmp_path / "out", "-q")
    got, _ = st.load(str(tmp_path / "out"))
    assert got["model.embed_tokens.weight"][1].shape == (48, 16)
    assert json.load(open(tmp_path / "out" / "config.json"))["vocab_size"] == 48

    al = aligned(tmp_path, models, base, base)
    for k, (m, p) in enumerate(zip(models, al)):
        t, _ = st.load(str(p))
        tensors = []
        for name, (d, a) in t.items():
            if name in VOCAB:
                a = a.copy()
                for tok, (src, stok, force) in rules.items():
                    if force or tok not in m.tokens:
                        a[BASE_TOKENS.index(tok)] = (
                            np.zeros(16, a.dtype) if src is None
                            else src.t[name][1][src.tokens.index(stok)])
                mean = np.mean(st.to_f64(d, a), axis=0)
                a = np.concatenate([a, np.stack([round64(d, mean)] * 16)])
            tensors.append((name, d, a))
        st.write_hf(p, tensors, st.config(layers=1, hidden=16, vocab=48))
        shutil.copy(base.path / "tokenizer.json", p / "tokenizer.json")
    y2 = tmp_path / "r2.yml"
    y2.write_text(f"merge_method: task_arithmetic\nbase_model: {al[0]}\n"
                  "parameters: {weight: 0.5}\nmodels:\n" +
                  "".join(f"  - model: {p}\n" for p in al[1:]))
    ladle("merge", y2, "-o", tmp_path / "ref", "-q")
    same_outputs(tmp_path / "out", tmp_path / "ref")
    # the CLI's --pad-to-multiple-of is the same padding
    ladle("lerp", base.path, ft1.path, "--alpha", "0.5", "--pad-to-multiple-of", "8", "-o",
          tmp_path / "p8", "-q")
    assert st.load(str(tmp_path / "p8"))[0]["lm_head.weight"][1].shape == (32, 16)
    ladle("lerp", base.path, ft1.path, "--alpha", "0.5", "--pad-to-multiple-of", "20", "-o",
          tmp_path / "p20", "-q")
    assert st.load(str(tmp_path / "p20"))[0]["lm_head.weight"][1].shape == (40, 16)


def test_token_rule_errors(tmp_path, rng):
    base, ft1, ft2, _ = family(tmp_path, rng)
    cases = (
        ("    nope: {source: %s}\n" % ft1.path, "not in the output's vocabulary"),
        ("    tok1: {force: true}\n", "needs a source"),
        ("    tok1: {source: {kind: other}}\n", "zero or model_token"),
        ("    tok1: {source: %s}\n" % ft2.path, "not one of the recipe's models"),
        ("    tok1: {source: /no/such/model}\n", "not found"),
        ("    tok1:\n      source: {kind: model_token, model: %s, token: zzz}\n" % ft1.path,
         "has no token 'zzz'"),
        ("    tok1:\n      source: {kind: model_token, model: %s, token_id: 99}\n" % ft1.path,
         "outside"),
    )
    for body, msg in cases:
        y = tmp_path / "r.yml"
        y.write_text(f"merge_method: linear\nparameters: {{weight: 1}}\n"
                     f"tokenizer:\n  source: base\n  tokens:\n{body}"
                     f"models:\n  - model: {base.path}\n  - model: {ft1.path}\n")
        r = ladle("merge", y, "-o", tmp_path / "x", check=False)
        assert r.code in (1, 2) and msg in r.err, (body, r.err)
        assert not (tmp_path / "x").exists()


def test_greedy_soup_passes_the_vocabulary_options(tmp_path, rng):
    """soup --greedy takes --tokenizer-source (and the other options that
    shape a soup) and hands them to every candidate: OUT is the same soup
    (--sum-first, the greedy soup's mean) made directly."""
    base, ft1, ft2, _ = family(tmp_path, rng)
    models = [base.path, ft1.path, ft2.path]
    ladle("soup", "--greedy", *models, "--scores", "1,1,1", "--eval", "echo 1",
          "--tokenizer-source", "union", "--pad-to-multiple-of", "8", "-o", tmp_path / "g",
          "-q")
    ladle("soup", "--sum-first", *models, "--tokenizer-source", "union", "--pad-to-multiple-of",
          "8", "-o", tmp_path / "d", "-q")
    same_outputs(tmp_path / "g", tmp_path / "d")
    assert st.load(str(tmp_path / "g"))[0]["lm_head.weight"][1].shape == (40, 16)
