#!/usr/bin/python3
"""The model-soup and task-arithmetic workflow of the seed lesson, in PyTorch,
with ladle's package doing the merging and the evaluation staying in-process.

    examples/python/soup_and_task_vectors.py        (about 30 s on 2 CPU cores)

1. Pre-train a small MLP on scikit-learn's digits (noisy inputs: a stand-in
   for pre-training on another distribution), then fine-tune 12 ingredients
   from it with a grid of learning rates, augmentation, weight decay and
   label smoothing. Everything stays in memory as state dicts.
2. Greedy soup: ``ladle.greedy_soup(state_dicts, val_accuracies,
   evaluate_fn)``, where evaluate_fn loads a candidate into the model already
   built and scores it on the validation split, no files written.
3. Task vectors: fine-tune a "specialist" on the even digits only; its task
   vector tau = specialist - pretrained. Negating it (pretrained - lambda tau)
   should make the model forget what the specialist learnt about even digits
   while keeping the odd ones (Ilharco et al.: negation), with lambda chosen
   by ``ladle.lambda_sweep`` as the paper does: the largest drop on the
   forgotten task that keeps the control task above 95% of the pretrained
   model's accuracy.
"""
import os
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "model_soup"))
sys.path.insert(0, os.path.join(here, "..", "..", "python"))  # ladle, from this repository
import ladle  # noqa: E402
from train import mlp, splits, train  # noqa: E402  (the CLI example's training code)

torch.set_num_threads(2)


def state_dict(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def accuracy(model, sd, x, y):
    model.load_state_dict(sd)
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean() * 100)


def main():
    data = splits()
    torch.manual_seed(0)
    pre = train(mlp(), data["x_train"], data["y_train"], epochs=10, lr=0.05, noise=1.0)
    pretrained = state_dict(pre)
    net = mlp()  # the one model every evaluation loads into

    def val(sd):
        return accuracy(net, sd, data["x_val"], data["y_val"])

    def test(sd):
        return accuracy(net, sd, data["x_test"], data["y_test"])

    print("== 1. fine-tune 12 ingredients from the pre-trained model")
    ingredients = []
    for i, (lr, aug, (wd, ls)) in enumerate([(lr, aug, reg) for lr in (0.05, 0.1, 0.2)
                                              for aug in (False, True)
                                              for reg in ((0.0, 0.0), (1e-3, 0.1))]):
        model = mlp()
        model.load_state_dict(pretrained)
        train(model, data["x_train"], data["y_train"], epochs=5, lr=lr, wd=wd, smoothing=ls,
              aug=aug, seed=100 + i)
        ingredients.append(state_dict(model))
    val_acc = [val(sd) for sd in ingredients]
    best = int(np.argmax(val_acc))

    print("== 2. greedy soup, evaluated in-process")
    greedy = ladle.greedy_soup(ingredients, val_acc, val, verbose=False)
    soup, soup_val = greedy
    uniform = ladle.uniform_soup(ingredients)
    rows = [("best single ingredient", ingredients[best]),
            (f"uniform soup (all {len(ingredients)})", uniform),
            (f"greedy soup ({len(greedy.accepted)} of {len(ingredients)})", soup)]
    print(f"{'model':34s} {'val acc %':>10s} {'test acc %':>10s}")
    for name, sd in rows:
        print(f"{name:34s} {val(sd):10.2f} {test(sd):10.2f}")

    print("== 3. task vector negation: forget the even digits")
    even = data["y_train"] % 2 == 0
    special = mlp()
    special.load_state_dict(pretrained)
    train(special, data["x_train"][even], data["y_train"][even], epochs=15, lr=0.1, seed=7)
    tau = ladle.TaskVector(pretrained, state_dict(special))
    x, y = data["x_val"], data["y_val"]

    def acc_on(sd, parity):
        sel = y % 2 == parity
        return accuracy(net, sd, x[sel], y[sel])

    control0 = acc_on(pretrained, 1)
    # score: the forgotten task's accuracy, lowest wins, as long as the control
    # task keeps 95% of the pretrained model's accuracy
    sweep = ladle.lambda_sweep(pretrained, -tau, lambda sd: (
        -acc_on(sd, 0) if acc_on(sd, 1) >= 0.95 * control0 else -1000.0),
        lambdas=np.linspace(0, 2, 21))
    lam = max(sweep, key=lambda p: p[1])[0]
    forgot = (-tau).apply_to(pretrained, scaling=lam)
    print(f"{'model':34s} {'even %':>10s} {'odd %':>10s}")
    for name, sd in [("pretrained", pretrained), ("even-digit specialist", state_dict(special)),
                     (f"pretrained - {lam:g} tau (negation)", forgot)]:
        print(f"{name:34s} {acc_on(sd, 0):10.2f} {acc_on(sd, 1):10.2f}")


if __name__ == "__main__":
    main()
