"""Models with vocabularies of their own for the vocabulary tests (CLI and
package) and the tokenizer fuzz seeds: a base of 32 tokens and fine-tunes
that add tokens, reorder them or lack some, each with its tokenizer.json."""
import json
import os

import numpy as np

import st

VOCAB = ("model.embed_tokens.weight", "lm_head.weight")
BASE_TOKENS = [f"tok{i}" for i in range(32)]


def tokenizer(tokens, added=(), unigram=False):
    """tokenizer.json: tokens in id order; `added` of them are added_tokens."""
    vocab = ([[t, -float(i)] for i, t in enumerate(tokens)] if unigram
             else {t: i for i, t in enumerate(tokens) if t not in added})
    return {"version": "1.0", "truncation": None,
            "added_tokens": [{"id": tokens.index(t), "content": t, "special": True,
                              "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False} for t in added],
            "model": {"type": "Unigram" if unigram else "BPE", "vocab": vocab,
                      **({} if unigram else {"merges": []})}}


class Model:
    def __init__(self, path, tensors, tokens, tok_json=True):
        self.path, self.tokens = path, tokens
        self.t = {n: (d, a) for n, d, a in tensors}
        self.tok_json = tok_json


def write_model(path, tensors, tokens, added=(), tok_json=True, unigram=False):
    cfg = st.config(layers=1, hidden=16, vocab=len(tokens))
    st.write_hf(path, tensors, cfg)
    if tok_json:
        with open(os.path.join(path, "tokenizer.json"), "w") as f:
            json.dump(tokenizer(tokens, added, unigram), f)
    else:
        os.remove(os.path.join(path, "tokenizer.json"))
    return Model(path, tensors, tokens, tok_json)


def family(tmp_path, rng, dtype="BF16"):
    """base (32 tokens); ft1: 3 added tokens; ft2: the base's tokens in
    another order plus one added; small: lacks the base's last 4 tokens."""
    base_t = st.llama(rng, dtype, layers=1, hidden=16, inter=16, vocab=32)
    base = write_model(tmp_path / "base", base_t, BASE_TOKENS)
    brow = {n: base.t[n][1] for n in VOCAB}

    def derived(name, tokens, added=()):
        t = [(n, d, a) for n, d, a in st.llama(rng, dtype, layers=1, hidden=16, inter=16,
                                                vocab=32, base=base_t) if n not in VOCAB]
        for n in VOCAB:
            rows = []
            for tok in tokens:
                if tok in BASE_TOKENS:
                    b = st.to_f32(dtype, brow[n][BASE_TOKENS.index(tok)])
                    rows.append(b + rng.standard_normal(16).astype(np.float32) * 0.02)
                else:
                    rows.append(rng.standard_normal(16).astype(np.float32) * 0.05)
            t.append((n, dtype, st.round_to(dtype, np.stack(rows).astype(np.float32))))
        return write_model(tmp_path / name, t, tokens, added)

    perm = list(rng.permutation(32))
    ft1 = derived("ft1", BASE_TOKENS + ["<|a|>", "<|b|>", "<|c|>"], ("<|a|>", "<|b|>", "<|c|>"))
    ft2 = derived("ft2", [BASE_TOKENS[i] for i in perm] + ["<|x|>"], ("<|x|>",))
    small = derived("small", BASE_TOKENS[:28])
    return base, ft1, ft2, small
