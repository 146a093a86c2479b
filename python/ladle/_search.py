"""Greedy soups and sweeps with the evaluation in-process: candidates are
merged into memory by the library and handed to the caller's
``evaluate_fn``; the greedy policy itself is the library's (lad_greedy_run),
the one the CLI's ``ladle soup --greedy`` runs."""
import math
import sys
from ctypes import byref, c_double, c_void_p

from . import _capi as C
from ._capi import LadleError
from ._merge import Inputs, dtype_arg, merge, run
from ._models import Model, is_path, kind_of


def _label(model, i):
    if isinstance(model, Model):
        return model.path
    if is_path(model):
        return str(model)
    return f"ingredient {i + 1}"


def _score(evaluate_fn, candidate, label):
    value = evaluate_fn(candidate)
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise LadleError(f"evaluate_fn returned {value!r} for {label}: a score must be a "
                         f"number") from None
    if not math.isfinite(score):
        raise LadleError(f"evaluate_fn returned {score} for {label}: a score must be a finite "
                         f"number")
    return score


class GreedySoupResult(tuple):
    """(soup, score) as the seed's greedy_soup returns it, plus the search:
    ``accepted`` (the ingredients kept, best first), ``ranking`` (indexes,
    best first), ``scores`` (each ingredient's own), ``soup_scores`` and
    ``decisions`` (per rank: the soup's score when it was tried, kept?)."""

    def __new__(cls, soup, score, **info):
        self = super().__new__(cls, (soup, score))
        self.__dict__.update(info)
        return self

    soup = property(lambda self: self[0])
    score = property(lambda self: self[1])


def greedy_soup(models, val_accuracies=None, evaluate_fn=None, strict=False, dtype=None,
                out=None, verbose=True, minimize=False, tensors=None, **opts):
    """Greedy soup (Wortsman et al. 2022): ingredients ranked by their held-out
    score (val_accuracies, else evaluate_fn on each), best first; from the best,
    each next ingredient is kept when the uniform soup with it scores at least
    the best so far (strict: better). Every candidate is the soup of its
    ingredients as ``ladle soup --sum-first`` makes it (their fp32 sum in rank
    order, divided once, rounded once to dtype), handed to evaluate_fn as a
    fresh state dict; the soup's fp32 sum is kept in memory, so a candidate
    reads it and one new ingredient. Returns (soup, score): the soup as a
    state dict, or its path with out=."""
    models = list(models)
    n = len(models)
    if n == 0:
        raise LadleError("greedy_soup: no ingredients")
    if evaluate_fn is None and (val_accuracies is None or n > 1):
        raise LadleError("greedy_soup: needs evaluate_fn (the score of a candidate soup)")
    if val_accuracies is not None and len(val_accuracies) != n:
        raise LadleError(f"greedy_soup: {len(val_accuracies)} accuracies for {n} ingredients")
    inputs = Inputs()
    refs = [inputs.ref(m) for m in models]
    labels = [_label(m, i) for i, m in enumerate(models)]
    kind = tensors or kind_of(models)
    extra = ["--dtype", dtype_arg(dtype)] if dtype is not None else []
    state = {"exc": None, "done": 0}
    running = {"members": [], "sum": None}  # the fp32 sum of the soup so far

    def covered(idx):
        m = running["members"]
        return len(m) if len(m) >= 2 and idx[:len(m)] == m else 0

    def partial(idx):
        k = covered(idx)
        return ["--partial-sum", f"{inputs.ref(running['sum'])}:{k}"] if k else []

    def running_sum(idx):
        if running["members"] != idx:
            new = run(["soup", "--sum-first", "--sum-only"] + [refs[i] for i in idx]
                      + partial(idx), inputs, kind=kind)
            if running["sum"] is not None:
                inputs.forget(running["sum"])
            running.update(members=list(idx), sum=new)

    def say(msg):
        if verbose:
            print(f"ladle: greedy soup: {msg}", file=sys.stderr)

    def scorer(ctx, sets, sizes, count, scores, err):
        try:
            for k in range(count):
                idx = [sets[k][j] for j in range(sizes[k])]
                label = (labels[idx[0]] if len(idx) == 1
                         else f"soup of {len(idx)} (+ {labels[idx[-1]]})")
                if len(idx) >= 3:
                    running_sum(idx[:-1])
                candidate = run(["soup", "--sum-first"] + [refs[i] for i in idx] + extra
                                + partial(idx), inputs, kind=kind)
                scores[k] = _score(evaluate_fn, candidate, label)
                state["done"] += 1
                say(f"[{state['done']}] {label}: {scores[k]:.10g}")
            return 0
        except BaseException as e:  # re-raised once the library returns
            state["exc"] = e
            err.contents.set(str(e))
            return -1

    g = C.Greedy(n=n, strict=bool(strict), minimize=bool(minimize))
    if val_accuracies is not None:
        own = (c_double * n)(*[float(v) for v in val_accuracies])
        g.scores = own
    cb = C.SOUP_SCORER(scorer)
    err = C.Error()
    if C.greedy_run(byref(g), cb, None, byref(err)) != 0:
        if state["exc"] is not None:
            raise state["exc"]
        err.raise_()
    try:
        ranking = [g.rank[r] for r in range(n)]
        kept = [g.soup[k] for k in range(g.nsoup)]
        info = dict(accepted=[models[i] for i in kept], accepted_indices=kept,
                    ranking=ranking, scores=[g.own[i] for i in range(n)],
                    soup_scores=[g.soup_score[r] for r in range(n)],
                    decisions=[bool(g.accepted[r]) for r in range(n)])
        best = g.best
    finally:
        C.greedy_free(byref(g))
    if verbose:
        for r, i in enumerate(ranking):
            say(f"rank {r + 1}: {labels[i]}: own {info['scores'][i]:.10g}, soup "
                f"{info['soup_scores'][r]:.10g}, {'kept' if info['decisions'][r] else 'dropped'}")
    soup = merge(["soup", "--sum-first"] + [refs[i] for i in kept] + partial(kept), inputs,
                 dtype=dtype, out=out, tensors=kind, **opts)
    return GreedySoupResult(soup, best, **info)


def _axis(spec):
    a, err = C.Axis(), C.Error()
    if C.axis_parse(spec.encode(), byref(a), byref(err)) != 0:
        err.raise_()
    try:
        return [(a.v[i], a.text[i].decode()) for i in range(a.n)]
    finally:
        C.axis_free(byref(a))


def _sweep(points, make, evaluate_fn, name, verbose):
    results = []
    for value, text in points:
        candidate = make(text)
        score = _score(evaluate_fn, candidate, f"{name}={text}")
        if verbose:
            print(f"ladle: sweep {name}={text}: {score:.10g}", file=sys.stderr)
        results.append((value, score))
    return results


def alpha_sweep(a, b, evaluate_fn, n_steps=11, dtype=None, verbose=False, **opts):
    """[(alpha, score)] for alpha in numpy.linspace(0, 1, n_steps) (to 12
    significant digits, as ``ladle sweep`` takes them): each point the
    interpolation (1 - alpha) a + alpha b, scored by evaluate_fn."""
    inputs = Inputs()
    ra, rb = inputs.ref(a), inputs.ref(b)
    kind = opts.pop("tensors", None) or kind_of([a, b])
    extra = ["--dtype", dtype_arg(dtype)] if dtype is not None else []
    points = _axis(f"alpha=0:1:{int(n_steps)}")
    return _sweep(points, lambda t: run(["lerp", ra, rb, "--alpha", t] + extra, inputs,
                                        kind=kind, **opts),
                  evaluate_fn, "alpha", verbose)


def lambda_sweep(base, task_vector, evaluate_fn, lambdas=None, dtype=None, verbose=False,
                 **opts):
    """[(lambda, score)]: base + lambda * task_vector for each lambda (default
    0, 0.05, ..., 1: the grid Ilharco et al. choose from), scored by
    evaluate_fn."""
    spec = "lambda=0:1:21" if lambdas is None else "lambda=" + ",".join(repr(float(v))
                                                                      for v in lambdas)
    points = _axis(spec)
    return _sweep(points, lambda t: task_vector.apply_to(base, scaling=float(t), dtype=dtype,
                                                         **opts),
                  evaluate_fn, "lambda", verbose)
