"""Metrics `metric(predictions, targets) -> scalar`, the batch mean, for `fit` and `evaluate`.

    jl.fit(..., metrics=("loss", "accuracy", jl.metrics.top_k_accuracy(5)))

Names `fit`, `evaluate` and `make_eval_step` accept: "loss" (the loss function itself),
"accuracy", "binary_accuracy", "top_5_accuracy", "mae", "mse"; or any callable,
logged under its `__name__`. With `metrics=None` they follow the loss (`for_loss`):
classification losses add their accuracy, regression losses nothing but the loss.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax.numpy as jnp

from jaxlayers import losses
from jaxlayers._checks import check_int_at_least

__all__ = ["accuracy", "binary_accuracy", "top_k_accuracy", "mae", "mse", "for_loss",
           "resolve"]


def accuracy(predictions, targets):
    """Fraction of examples whose arg-max class is the target class.

    Math: mean(argmax(predictions, -1) == t), t = targets (integer labels) or
    argmax(targets, -1) (one-hot or soft targets). Logits, probabilities or any scores
    work, as argmax is unchanged by softmax.

    Shapes: predictions (..., C); targets (...) integers, or (..., C) floats -> scalar.

    Raises:
      ValueError: a single-column prediction (use `binary_accuracy`) or shapes that match
        neither form.
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    labels = _labels("accuracy", predictions, targets)
    return jnp.mean(jnp.argmax(predictions, axis=-1) == labels, dtype=jnp.float32)


def _labels(name, predictions, targets):
    if predictions.ndim == 0 or predictions.shape[-1] < 2:
        raise ValueError(f"{name}: predictions must have a class axis of size >= 2 last, "
                         f"got shape {predictions.shape}; for one sigmoid output use "
                         f"jl.metrics.binary_accuracy, for regression metrics=('loss',).")
    if jnp.issubdtype(targets.dtype, jnp.integer) and targets.shape == predictions.shape[:-1]:
        return targets
    if targets.shape == predictions.shape:
        return jnp.argmax(targets, axis=-1)
    raise ValueError(f"{name}: targets must be integer labels of shape "
                     f"{predictions.shape[:-1]} or one-hot of shape {predictions.shape}, "
                     f"got {targets.dtype} {targets.shape}.")


def binary_accuracy(predictions, targets, *, threshold: float = 0.5):
    """Fraction of entries on the right side of `threshold`: mean((p > threshold) == (t > 0.5)).

    threshold 0.5 for sigmoid probabilities, 0.0 for logits.

    Shapes: predictions and targets of the same shape (e.g. (N, 1)) -> scalar.

    Raises:
      ValueError: shapes differ ((N,) against (N, 1) is an error, not a broadcast).
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.shape != targets.shape:
        raise ValueError(f"binary_accuracy: predictions and targets must have the same shape, "
                         f"got {predictions.shape} and {targets.shape}.")
    return jnp.mean((predictions > threshold) == (targets > 0.5), dtype=jnp.float32)


def top_k_accuracy(k: int) -> Callable:
    """The metric "the target class is among the k highest scores", named `top_{k}_accuracy`.

    Math: mean over examples of [t ∈ top-k(predictions)]; ties at the k-th score count
    as in (`jax.lax.top_k` order). k = 1 is `accuracy`.

    Shapes: as `accuracy`; C >= k.

    Raises:
      ValueError: k < 1 (construction); C < k (trace time).
    """
    k = check_int_at_least("top_k_accuracy", "k", k, 1)

    def metric(predictions, targets):
        predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
        labels = _labels(metric.__name__, predictions, targets)
        if predictions.shape[-1] < k:
            raise ValueError(f"{metric.__name__}: needs at least {k} classes, got "
                             f"predictions of shape {predictions.shape}.")
        kth = jnp.sort(predictions, axis=-1)[..., -k]
        target_score = jnp.take_along_axis(predictions, labels[..., None], axis=-1)[..., 0]
        return jnp.mean(target_score >= kth, dtype=jnp.float32)

    metric.__name__ = metric.__qualname__ = f"top_{k}_accuracy"
    return metric


def mae(predictions, targets):
    """Mean absolute error, mean(|p - t|), as a metric (the loss `jl.losses.mae`)."""
    return losses.mae(predictions, targets)


def mse(predictions, targets):
    """Mean squared error, mean((p - t)²), as a metric (the loss `jl.losses.mse`)."""
    return losses.mse(predictions, targets)


_BY_NAME = {"accuracy": accuracy, "binary_accuracy": binary_accuracy, "mae": mae, "mse": mse}
_CLASSIFICATION = {losses.sparse_categorical_crossentropy: "accuracy",
                   losses.categorical_crossentropy: "accuracy",
                   losses.binary_crossentropy: "binary_accuracy"}


def for_loss(loss) -> tuple[str, ...]:
    """The default metrics for a loss: ("loss", "accuracy") for the categorical
    cross-entropies, ("loss", "binary_accuracy") for the binary one (with
    from_logits=True bound by functools.partial, its threshold moves to 0), and ("loss",)
    for anything else: a regression loss gets no accuracy."""
    fn, keywords = loss, {}
    while isinstance(fn, functools.partial):
        keywords = {**fn.keywords, **keywords}
        fn = fn.func
    name = _CLASSIFICATION.get(fn)
    if name is None:
        return ("loss",)
    if name == "binary_accuracy" and keywords.get("from_logits"):
        return ("loss", functools.partial(binary_accuracy, threshold=0.0))
    return ("loss", name)


def resolve(where: str, metrics) -> dict[str, Callable]:
    """Name -> fn for the metrics other than "loss" (which the step computes itself).

    metrics: a name, a callable, or a sequence of them. A functools.partial is logged
    under its function's name.
    """
    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    out = {}
    for m in metrics:
        if m == "loss":
            continue
        if isinstance(m, str):
            top_k = m.startswith("top_") and m.endswith("_accuracy") and m[4:-9].isdigit()
            if m not in _BY_NAME and not top_k:
                raise ValueError(f"{where}: unknown metric {m!r}; use one of "
                                 f"{['loss'] + sorted(_BY_NAME) + ['top_5_accuracy']} or a "
                                 f"callable metric(predictions, targets) -> scalar.")
            name, fn = m, (top_k_accuracy(int(m[4:-9])) if top_k else _BY_NAME[m])
        elif callable(m):
            inner = m.func if isinstance(m, functools.partial) else m
            name, fn = getattr(inner, "__name__", type(m).__name__), m
        else:
            raise TypeError(f"{where}: a metric must be a name or a callable, got {m!r}.")
        if name in out or name == "loss":
            raise ValueError(f"{where}: metric name {name!r} appears twice.")
        out[name] = fn
    return out
