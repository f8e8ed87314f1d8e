"""Loss functions `loss(predictions, targets, *, reduction="mean")` (seed 003 Q1, seed 004).

Argument order is optax's and PyTorch's (predictions first); Keras puts `y_true` first.
Every loss computes in at least float32, refuses to broadcast (`(N,)` against `(N, 1)`
is a ValueError, a classic silent bug), and reduces with `reduction`:

  "mean"  the mean over every loss term (elementwise losses: every entry; cross-entropies
          and KL: every example, after summing over the class axis),
  "sum"   their sum,
  "none"  the unreduced terms (elementwise shape, or the per-example shape `shape[:-1]`).

Elementwise losses follow PyTorch for "sum" and "none" (entries, not rows); Keras first
averages each row over the last axis, so its "sum" is ours divided by the row length.
Logarithms are natural (−log 0.01 ≈ 4.6, seed 003).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from jaxlayers._checks import check_one_of
from jaxlayers.layers import crf as _crf

__all__ = ["mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
           "sparse_categorical_crossentropy", "hinge", "kl_divergence", "crf_nll", "EPSILON",
           "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")
# Probabilities are clipped to [EPSILON, 1 - EPSILON] before a log (Keras's backend epsilon).
EPSILON = 1e-7


def _float_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32) if jnp.issubdtype(
        x.dtype, jnp.floating) else jnp.dtype(jnp.float32)


def _prepare(name, predictions, targets, reduction):
    """Check `reduction` and equal shapes; cast both to predictions' float (>= float32)."""
    check_one_of(name, "reduction", reduction, REDUCTIONS)
    p, t = jnp.asarray(predictions), jnp.asarray(targets)
    if p.shape != t.shape:
        raise ValueError(f"{name}: targets must have the same shape as predictions "
                         f"{tuple(p.shape)}, got {tuple(t.shape)}; losses do not broadcast, "
                         f"reshape one of them.")
    dtype = _float_dtype(p)
    return p.astype(dtype), t.astype(dtype)


def _check_classes(name, p):
    if p.ndim == 0:
        raise ValueError(f"{name}: predictions must have rank >= 1 (..., C) with classes "
                         f"on the last axis, got shape {tuple(p.shape)}.")


def _reduce(values, reduction):
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


def _clip(p):
    return jnp.clip(p, EPSILON, 1.0 - EPSILON)


def mse(predictions, targets, *, reduction: str = "mean"):
    """Mean squared error (seed 003 Q1): (1/n) Σ (predictions - targets)², no ½.

    Seed 003: y = [5, 8, 3], ŷ = [4.5, 9, 3.2] → squares 0.25, 1.00, 0.04 → 1.29/3 = 0.43.

    Shapes: predictions and targets (...), equal. Output: a scalar, or (...) for "none".

    Args:
      predictions, targets: arrays of the same shape.
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; shapes differ.

    Same as PyTorch's `mse_loss` and Keras's `MeanSquaredError`; optax's `l2_loss` has the ½.
    """
    p, t = _prepare("mse", predictions, targets, reduction)
    return _reduce(optax.squared_error(p, t), reduction)


def mae(predictions, targets, *, reduction: str = "mean"):
    """Mean absolute error: (1/n) Σ |predictions - targets| (seed 003 Q1; 0.5667 on 003's data).

    Shapes: predictions and targets (...), equal. Output: a scalar, or (...) for "none".

    Args:
      predictions, targets: arrays of the same shape.
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; shapes differ.

    PyTorch's `l1_loss`, Keras's `MeanAbsoluteError` (optax has no MAE).
    """
    p, t = _prepare("mae", predictions, targets, reduction)
    return _reduce(jnp.abs(p - t), reduction)


def huber(predictions, targets, *, delta: float = 1.0, reduction: str = "mean"):
    """Huber loss (seed 003 Q1), with r = predictions - targets, per entry:

      ½ r²               if |r| ≤ delta
      delta·|r| − ½ delta²  otherwise

    Quadratic near zero, linear (gradient clipped to ±delta) for outliers.

    Shapes: predictions and targets (...), equal. Output: a scalar, or (...) for "none".

    Args:
      predictions, targets: arrays of the same shape.
      delta: the switch point, > 0 (keyword-only, as optax).
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: `delta` <= 0; unknown `reduction`; shapes differ.

    Same as PyTorch's `huber_loss(delta=)` and Keras's `Huber`. PyTorch's `smooth_l1_loss`
    with `beta` is this loss divided by beta.
    """
    if not delta > 0:
        raise ValueError(f"huber: delta must be > 0, got {delta!r}.")
    p, t = _prepare("huber", predictions, targets, reduction)
    return _reduce(optax.huber_loss(p, t, delta=delta), reduction)


def binary_crossentropy(predictions, targets, *, from_logits: bool = False,
                        reduction: str = "mean"):
    """Binary cross-entropy (seed 003 Q1), per entry with p = predictions, y = targets:

      −[y·log p + (1 − y)·log(1 − p)]

    Seed 003: y = 1, p = 0.99 → 0.010050; y = 1, p = 0.01 → 4.605170 (natural log).

    `from_logits=False`: `predictions` are probabilities, clipped to [EPSILON, 1 − EPSILON]
    (1e-7) before the log, as Keras, so p = 0 or 1 gives a large finite loss (−log 1e-7 ≈
    16.1) and no gradient beyond the clip. PyTorch's `binary_cross_entropy` instead clamps
    each log at −100. `from_logits=True`: `predictions` are logits z, p = σ(z), computed as
    −[y·log σ(z) + (1 − y)·log σ(−z)] (optax's `sigmoid_binary_cross_entropy`): exact and
    finite for any z, as PyTorch's `binary_cross_entropy_with_logits`. Prefer it in training.

    Shapes: predictions and targets (...), equal; targets in [0, 1] (soft labels allowed).
    Output: a scalar, or (...) for "none".

    Args:
      predictions: probabilities, or logits with `from_logits=True`.
      targets: labels in [0, 1], the same shape.
      from_logits: whether `predictions` are logits.
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; shapes differ.

    Keras averages each row over the last axis first; "mean" agrees with it, "sum" does not.
    """
    p, t = _prepare("binary_crossentropy", predictions, targets, reduction)
    if from_logits:
        terms = optax.sigmoid_binary_cross_entropy(p, t)
    else:
        p = _clip(p)
        terms = -(t * jnp.log(p) + (1.0 - t) * jnp.log1p(-p))
    return _reduce(terms, reduction)


def categorical_crossentropy(predictions, targets, *, from_logits: bool = False,
                             reduction: str = "mean"):
    """Categorical cross-entropy with one-hot (or soft) targets, per example:

      −Σ_c targets_c · log p_c   over the class axis (the last)

    then reduced over the examples (seed 003 Q1: per example a sum over classes).
    Seed 003: one-hot class 3 with p_3 = 0.85 → −log 0.85 = 0.1625; p_3 = 0.05 → 2.9957.

    `from_logits=False`: `predictions` are probabilities (a softmax output), clipped to
    [EPSILON, 1 − EPSILON] and not renormalised (Keras divides by their sum first).
    `from_logits=True`: `predictions` are logits z, p = softmax(z), computed as
    −Σ targets·log_softmax(z) (optax's `softmax_cross_entropy`): finite for any z. Its
    gradient with respect to z is p − targets per example (seed 003 Q9), divided by the
    number of examples under "mean".

    Shapes: predictions and targets (..., C), equal. Output: a scalar, or (...) for "none".

    Args:
      predictions: probabilities, or logits with `from_logits=True`.
      targets: one-hot or soft labels, the same shape.
      from_logits: whether `predictions` are logits.
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; shapes differ; rank-0 predictions.

    PyTorch's `cross_entropy` always takes logits (with probabilities as targets, this is
    `from_logits=True`); Keras's `CategoricalCrossentropy` matches up to the renormalisation.
    """
    name = "categorical_crossentropy"
    p, t = _prepare(name, predictions, targets, reduction)
    _check_classes(name, p)
    if from_logits:
        terms = optax.softmax_cross_entropy(p, t)
    else:
        terms = -jnp.sum(t * jnp.log(_clip(p)), axis=-1)
    return _reduce(terms, reduction)


def sparse_categorical_crossentropy(predictions, targets, *, from_logits: bool = False,
                                    reduction: str = "mean"):
    """Categorical cross-entropy with integer class labels, per example: −log p[targets].

    The same value as `categorical_crossentropy` with one-hot targets, without building
    them. Labels are 0-based (seed 003: digit 3 is index 3). Label values are not checked
    (they are unknown at trace time): one outside [0, C) gives nan, a negative one counts
    from the end.

    `from_logits=False`: `predictions` are probabilities, clipped to [EPSILON, 1 − EPSILON].
    `from_logits=True`: logits, via optax's `softmax_cross_entropy_with_integer_labels`
    (logsumexp(z) − z[label]): finite for any z.

    Shapes: predictions (..., C), targets (...) integer (predictions' shape without the
    class axis). Output: a scalar, or (...) for "none".

    Args:
      predictions: probabilities, or logits with `from_logits=True`.
      targets: integer class indices.
      from_logits: whether `predictions` are logits.
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; rank-0 predictions; targets' shape is not
        predictions.shape[:-1].
      TypeError: targets without an integer dtype.

    PyTorch's `cross_entropy(logits, labels)` (classes on axis 1 there, the last axis here;
    no `ignore_index`); Keras's `SparseCategoricalCrossentropy`.
    """
    name = "sparse_categorical_crossentropy"
    check_one_of(name, "reduction", reduction, REDUCTIONS)
    p, t = jnp.asarray(predictions), jnp.asarray(targets)
    _check_classes(name, p)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise TypeError(f"{name}: targets must have an integer dtype (class indices), got "
                        f"{t.dtype}; use categorical_crossentropy for one-hot targets.")
    if t.shape != p.shape[:-1]:
        raise ValueError(f"{name}: targets must have shape {tuple(p.shape[:-1])} (predictions "
                         f"{tuple(p.shape)} without the class axis), got {tuple(t.shape)}.")
    p = p.astype(_float_dtype(p))
    if from_logits:
        terms = optax.softmax_cross_entropy_with_integer_labels(p, t)
    else:
        picked = jnp.take_along_axis(p, t[..., None], axis=-1)[..., 0]
        terms = -jnp.log(_clip(picked))
    return _reduce(terms, reduction)


def hinge(predictions, targets, *, reduction: str = "mean"):
    """Hinge loss (seed 004), per entry: max(0, 1 − targets · predictions).

    Seed 004 prints Σ max(θ, 1 − y·ŷ); the θ is a typo for 0.

    Shapes: predictions (raw scores) and targets (...), equal; targets in {−1, 1}.
    Output: a scalar, or (...) for "none".

    Args:
      predictions: raw scores (not probabilities).
      targets: labels −1 or 1 (not checked: values are unknown at trace time).
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; shapes differ.

    Keras's `Hinge` converts 0/1 labels to −1/1; this does not (a 0 label gives a loss of
    1 whatever the score). optax's `hinge_loss` is the elementwise term. PyTorch has no
    plain hinge (`hinge_embedding_loss` is a different loss).
    """
    p, t = _prepare("hinge", predictions, targets, reduction)
    return _reduce(optax.hinge_loss(p, t), reduction)


def kl_divergence(predictions, targets, *, reduction: str = "mean"):
    """Kullback–Leibler divergence KL(targets ‖ predictions), per example:

      Σ_c targets_c · log(targets_c / predictions_c)   over the last axis

    `targets` is the reference distribution P, `predictions` the model's Q. Terms with
    targets_c = 0 count 0 (0·log 0 = 0); predictions are clipped to [EPSILON, 1], as Keras.
    Both are probabilities (not logs). optax's `kl_divergence(log_predictions, targets)`
    takes log-predictions, PyTorch's `kl_div(input, target)` takes log-predictions as
    `input`; this function takes probabilities and takes the log itself.

    Shapes: predictions and targets (..., C), equal. Output: a scalar, or (...) for "none".

    Args:
      predictions: the model's probabilities Q.
      targets: the reference probabilities P.
      reduction: "mean" (default; the mean over examples), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; shapes differ; rank-0 predictions.

    "mean" is PyTorch's `reduction="batchmean"` on (N, C); PyTorch's "mean" divides by N·C,
    and its "none" is elementwise. Keras's `KLDivergence` also clips targets to [EPSILON, 1].
    The gradient with respect to targets stays finite at targets_c = 0 (optax's is nan).
    """
    name = "kl_divergence"
    p, t = _prepare(name, predictions, targets, reduction)
    _check_classes(name, p)
    # optax.kl_divergence computes the same value, but its where() after the log gives a
    # nan gradient with respect to targets at targets_c = 0; guarding the log's input does not.
    log_t = jnp.log(jnp.where(t > 0, t, 1.0))
    terms = jnp.sum(t * (log_t - jnp.log(jnp.clip(p, EPSILON, 1.0))), axis=-1)
    return _reduce(terms, reduction)


def crf_nll(predictions, targets, *, reduction: str = "mean"):
    """Negative log-likelihood of tag sequences under a linear-chain CRF, per sequence:

      −log p(y | emit) = log Z − score(y),
      score(y) = start[y_1] + Σ_t emit[t, y_t] + Σ_{t>1} transitions[y_{t-1}, y_t] + end[y_T]

    with log Z by the forward algorithm (`jl.CRF` gives the recursion), over the valid
    steps of each sequence. "mean" averages over sequences (a sequence with no valid step
    counts 0), as pytorch-crf's reduction="mean"; divide a "sum" by the number of valid
    tokens for its "token_mean".

    Shapes: predictions a `jl.CRFOutput` (what `jl.CRF` returns: emissions (N, T, K),
    mask, transitions, start, end); targets int (N, T). Output: a scalar, or (N,) for
    "none"; in at least float32.

    Args:
      predictions: the `jl.CRFOutput` of a `jl.CRF` layer.
      targets: the gold tags; values at padded steps are ignored (pad with anything).
      reduction: "mean" (default), "sum" or "none".

    Raises:
      ValueError: unknown `reduction`; targets not of shape (N, T); concrete targets
        outside [0, K) at a valid step (under jit they give NaN instead).
      TypeError: predictions not a `jl.CRFOutput`; non-integer targets.

    TensorFlow Addons returns log-likelihoods (`crf_log_likelihood`, maximised); this is
    a loss to minimise, like pytorch-crf's `-crf(emissions, tags)`.
    """
    check_one_of("crf_nll", "reduction", reduction, REDUCTIONS)
    if not isinstance(predictions, _crf.CRFOutput):
        raise TypeError(f"crf_nll: predictions must be the jl.CRFOutput of a jl.CRF layer, "
                        f"got {type(predictions).__name__}; end the model with jl.CRF(K).")
    p = predictions
    emit, trans, start, end, mask = _crf._potentials("crf_nll", p.emissions, p.transitions,
                                                     p.start, p.end, p.mask)
    tags = _crf._check_tags("crf_nll", targets, mask, emit.shape[-1])
    nll = _crf._forward(emit, trans, start, end, mask) - _crf._score(emit, tags, trans,
                                                                     start, end, mask)
    return _reduce(nll, reduction)
