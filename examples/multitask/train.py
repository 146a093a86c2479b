#!/usr/bin/python3
"""The task vectors of a multi-task merging benchmark, on a CPU in seconds.

    train.py OUT_DIR

A shared pre-trained encoder, then one fine-tune of it per task, as the
8-task CLIP benchmark of the merging papers has them, in miniature:
scikit-learn's digits (1,797 handwritten 8x8 digits, UCI), split once into
train / validation / test. The encoder (an MLP, 64 -> 256 -> 256) and a
head are pre-trained on noisy digits; each task is the digits seen another
way (rotated, mirrored, inverted, pixels in a fixed shuffled order, and the
upright digits with a parity label) and gets a frozen head, as CLIP's tasks
get frozen zero-shot heads from one text space: the pre-trained digit head
(the parity task: a linear probe of the pre-trained features); then its own
fine-tune of the encoder alone.
Written as safetensors: base.safetensors (the pre-trained encoder),
TASK.safetensors (each fine-tuned encoder), heads/TASK.safetensors, and
data.npz. Merging methods then merge the encoders only.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model_soup"))
from safetensors_io import save  # noqa: E402

from tasks import TASKS, view  # noqa: E402

torch.set_num_threads(2)
HIDDEN = 256


def encoder():
    return torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU())


def train(enc, head, x, y, *, epochs, lr, noise=0.0, seed=0, params=None):
    gen = torch.Generator().manual_seed(seed)
    params = params if params is not None else list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 32):
            xb, yb = x[perm[i:i + 32]], y[perm[i:i + 32]]
            if noise:
                xb = xb + noise * torch.randn(xb.shape, generator=gen)
            opt.zero_grad()
            loss_fn(head(enc(xb)), yb).backward()
            opt.step()


def tensors(module, names):
    layers = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    out = {}
    for name, layer in zip(names, layers):
        out[f"{name}.weight"] = layer.weight.detach().numpy().copy()
        out[f"{name}.bias"] = layer.bias.detach().numpy().copy()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "heads"), exist_ok=True)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    split = {"train": order[:900], "val": order[900:1300], "test": order[1300:]}
    np.savez(os.path.join(args.out, "data.npz"), x=x, y=y,
             **{k: v for k, v in split.items()})

    torch.manual_seed(0)
    enc, head = encoder(), torch.nn.Linear(HIDDEN, 10)
    train(enc, head, x[split["train"]], y[split["train"]], epochs=8, lr=0.05, noise=0.8)
    save(os.path.join(args.out, "base.safetensors"), tensors(enc, ["fc1", "fc2"]))
    info = {}
    for i, task in enumerate(TASKS):
        xt, yt = view(task, x[split["train"]], y[split["train"]])
        t_enc, t_head = encoder(), torch.nn.Linear(HIDDEN, int(yt.max()) + 1)
        t_enc.load_state_dict(enc.state_dict())
        if t_head.out_features == 10:
            t_head.load_state_dict(head.state_dict())
        else:  # a probe of the pre-trained features
            train(t_enc, t_head, xt, yt, epochs=2, lr=0.05, seed=50 + i,
                  params=list(t_head.parameters()))
        train(t_enc, t_head, xt, yt, epochs=10, lr=0.05, seed=100 + i,
              params=list(t_enc.parameters()))
        save(os.path.join(args.out, f"{task}.safetensors"), tensors(t_enc, ["fc1", "fc2"]))
        save(os.path.join(args.out, "heads", f"{task}.safetensors"), tensors(t_head, ["head"]))
        info[task] = {"classes": t_head.out_features}
        print(f"train: {task}")
    with open(os.path.join(args.out, "tasks.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
