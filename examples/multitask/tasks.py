"""The tasks: the same digits seen in different ways (shared by train.py
and eval.py)."""
import numpy as np

TASKS = ["rotated", "mirrored", "inverted", "shuffled", "parity"]
# a fixed pixel order for "shuffled"
PERM = np.random.default_rng(1234).permutation(64)


def view(task, x, y):
    """The task's inputs and labels for 8x8 digits x (n x 64, in [0, 1])."""
    img = x.reshape(-1, 8, 8)
    if task == "rotated":
        return np.rot90(img, 1, axes=(1, 2)).reshape(-1, 64).copy(), y
    if task == "mirrored":
        return img[:, :, ::-1].reshape(-1, 64).copy(), y
    if task == "inverted":
        return (1.0 - x).astype(np.float32), y
    if task == "shuffled":
        return x[:, PERM].copy(), y
    if task == "parity":
        return x, y % 2
    raise ValueError(task)
