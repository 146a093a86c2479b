#!/usr/bin/python3
"""The ingredients of a model soup, on real data in a minute on a CPU.

    train.py OUT_DIR [--ingredients N]

scikit-learn's digits (1,797 handwritten 8x8 digits, UCI) are split once
into train / validation / test. A small MLP is pre-trained on the training
split with heavily corrupted inputs (a stand-in for pre-training on another
distribution), then fine-tuned from those same weights N times (default 12)
with a grid of hyperparameters: learning rate, weight decay, augmentation
(one-pixel shifts and pixel noise) and label smoothing. Everything is written
as safetensors: pretrained.safetensors, ft-XX.safetensors, and the splits
in data.npz for eval.py.
"""
import argparse
import itertools
import json
import os

import numpy as np
import torch
from sklearn.datasets import load_digits

from safetensors_io import save

torch.set_num_threads(2)


def splits(seed=0):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    train, val, test = order[:500], order[500:1000], order[1000:]
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val],
            "x_test": x[test], "y_test": y[test]}


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 10))


def augment(x, gen):
    """Shifts a quarter of the 8x8 images by one pixel (left, right, up or
    down, zero-filled) and adds a little pixel noise to all."""
    img = x.view(-1, 8, 8).clone()
    pick = torch.randint(0, 16, (len(img),), generator=gen)
    for k, (dy, dx) in enumerate([(0, 1), (0, -1), (1, 0), (-1, 0)]):
        sel = pick == k
        moved = torch.roll(img[sel], shifts=(dy, dx), dims=(1, 2))
        if dx:
            moved[:, :, 0 if dx > 0 else -1] = 0
        if dy:
            moved[:, 0 if dy > 0 else -1, :] = 0
        img[sel] = moved
    return img.reshape(-1, 64) + 0.05 * torch.randn(x.shape, generator=gen)


def train(model, x, y, *, epochs, lr, wd=0.0, smoothing=0.0, aug=False, noise=0.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    x, y = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 32):
            xb, yb = x[perm[i:i + 32]], y[perm[i:i + 32]]
            if aug:
                xb = augment(xb, gen)
            if noise:
                xb = xb + noise * torch.randn(xb.shape, generator=gen)
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    return model


def weights(model):
    names = ["fc1", "fc2", "head"]
    layers = [m for m in model if isinstance(m, torch.nn.Linear)]
    out = {}
    for name, layer in zip(names, layers):
        out[f"{name}.weight"] = layer.weight.detach().numpy().copy()
        out[f"{name}.bias"] = layer.bias.detach().numpy().copy()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--ingredients", type=int, default=12)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = splits()
    np.savez(os.path.join(args.out, "data.npz"), **data)

    torch.manual_seed(0)
    pre = train(mlp(), data["x_train"], data["y_train"], epochs=10, lr=0.05, noise=1.0)
    save(os.path.join(args.out, "pretrained.safetensors"), weights(pre))

    grid = list(itertools.product([0.05, 0.1, 0.2],           # learning rate
                                  [False, True],              # augmentation
                                  [(0.0, 0.0), (1e-3, 0.1)]))  # weight decay, smoothing
    hparams = []
    for i, (lr, aug, (wd, ls)) in enumerate(grid[:args.ingredients]):
        model = mlp()
        model.load_state_dict(pre.state_dict())
        train(model, data["x_train"], data["y_train"], epochs=5, lr=lr, wd=wd, smoothing=ls,
              aug=aug, seed=100 + i)
        name = f"ft-{i:02d}.safetensors"
        save(os.path.join(args.out, name), weights(model))
        hparams.append({"model": name, "lr": lr, "augment": aug, "weight_decay": wd,
                        "label_smoothing": ls})
        print(f"train: {name}  lr={lr:<5} augment={str(aug):<5} weight_decay={wd:<6} "
              f"label_smoothing={ls}")
    with open(os.path.join(args.out, "hparams.json"), "w") as f:
        json.dump(hparams, f, indent=1)


if __name__ == "__main__":
    main()
