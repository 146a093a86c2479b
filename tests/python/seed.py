"""The model-soup and task-arithmetic functions as the seed lesson defines
them (after Wortsman et al. 2022 and Ilharco et al. 2023), written in
PyTorch on fp32 copies of the weights: the independent reference the
package is checked against. Nothing here calls ladle."""
import torch


def f32(sd):
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def uniform_soup(state_dicts):
    sds = [f32(sd) for sd in state_dicts]
    return {k: sum(sd[k] for sd in sds) / len(sds) if sds[0][k].is_floating_point()
            else sds[0][k] for k in sds[0]}


def linear_interpolate(a, b, alpha):
    a, b = f32(a), f32(b)
    return {k: (1 - alpha) * a[k] + alpha * b[k] if a[k].is_floating_point() else a[k]
            for k in a}


def greedy_soup(state_dicts, val_accuracies, evaluate_fn):
    """Recipe 1 of the model-soups paper: rank by held-out accuracy; add an
    ingredient when the soup with it does at least as well."""
    ranked = sorted(range(len(state_dicts)), key=lambda i: val_accuracies[i], reverse=True)
    kept, best = [ranked[0]], val_accuracies[ranked[0]]
    for i in ranked[1:]:
        acc = evaluate_fn(uniform_soup([state_dicts[j] for j in kept + [i]]))
        if acc >= best:
            kept.append(i)
            best = acc
    return uniform_soup([state_dicts[j] for j in kept]), best, kept


class TaskVector:
    """Ilharco et al.'s task vector: finetuned - pretrained, per float
    tensor; +, -, * by a number; apply_to adds a scaled vector."""

    def __init__(self, pretrained=None, finetuned=None, vector=None):
        if vector is not None:
            self.vector = vector
        else:
            pre, ft = f32(pretrained), f32(finetuned)
            self.vector = {k: ft[k] - pre[k] for k in pre if pre[k].is_floating_point()}

    def __add__(self, other):
        return TaskVector(vector={k: self.vector[k] + other.vector[k] for k in self.vector})

    def __neg__(self):
        return TaskVector(vector={k: -v for k, v in self.vector.items()})

    def __mul__(self, c):
        return TaskVector(vector={k: c * v for k, v in self.vector.items()})

    __rmul__ = __mul__

    def apply_to(self, pretrained, scaling_coef=1.0):
        pre = f32(pretrained)
        return {k: pre[k] + scaling_coef * self.vector[k] if k in self.vector else pre[k]
                for k in pre}


def checkpoint_soup(checkpoints_by_step, last_n):
    steps = sorted(checkpoints_by_step)[-last_n:]
    return uniform_soup([checkpoints_by_step[s] for s in steps])
