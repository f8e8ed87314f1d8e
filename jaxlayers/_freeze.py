"""Freezing parameters by path: `path_mask` (a bool mask), `label_params`, `frozen` (an optax optimizer).

Every leaf of a params pytree has a path string, its keys joined by "/" as `jl.summary`
prints them: a keyword child's name, a positional child's index, then the param name.
For `jl.models.lenet5()`: "features/conv1/kernel", "features/conv1/bias", ...,
"classifier/fc3/bias"; for `jl.serial(jl.Dense(8), jl.Dense(2))`: "0/kernel", ..., "1/bias".
`path_strings(params)` lists them. A predicate is a function of that string:

    import optax, jaxlayers as jl
    conv = lambda path: path.startswith("features/")           # all the convolutions
    optimizer = jl.frozen(optax.adam(1e-3), params, conv)      # trains the classifier only
    ts, history = jl.fit(model, (params, state), data, optimizer=optimizer, ...)

Frozen leaves get the update -0.0, so `optax.apply_updates` leaves them bit-identical
(w + (-0.0) == w for every float w, +0.0 and -0.0 included; w + 0.0 would turn -0.0 into
+0.0), and the inner optimizer keeps no state for them (optax.multi_transform masks them
out). Only params are frozen: a BatchNorm's running statistics live in `state` and still
update under `training=True`; apply the frozen part with `training=False` to keep them
(Keras does that for a layer with trainable=False).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxlayers._paths import path_string

__all__ = ["path_mask", "label_params", "frozen"]

FROZEN, TRAINABLE = "frozen", "trainable"


def path_mask(params, predicate: Callable[[str], bool]):
    """A mask with the structure of `params`: True where predicate(path string) is true.

    Math: mask[leaf] = bool(predicate(path_string(leaf's path))); True means frozen.
    `frozen` and `label_params` build on it; `optax.masked(optax.set_to_zero(), mask)`
    or `jax.tree.map(jnp.where, ...)` can use it directly.

    Shapes: params a pytree of arrays (or ShapeDtypeStructs) -> the same pytree of bools.

    Args:
      params: the model's params (from `model.init`).
      predicate: predicate(path) -> bool, path a "/"-joined string such as
        "features/conv1/kernel" (see `path_strings`), e.g.
        `lambda path: path.startswith("features/")` or `lambda path: "conv1" in path`.

    Raises:
      TypeError: predicate not callable, or returning something other than a bool.
      ValueError: params has no leaves, or predicate selects none of them (a misspelt
        path must not silently train everything); the message lists the paths.
    """
    if not callable(predicate):
        raise TypeError(f"path_mask: predicate must be a callable predicate(path: str) -> bool, "
                        f"got {predicate!r}.")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [path_string(p) for p, _ in leaves]
    if not paths:
        raise ValueError("path_mask: params has no leaves to freeze.")
    mask = []
    for path in paths:
        hit = predicate(path)
        if not isinstance(hit, (bool, jnp.bool_)):
            raise TypeError(f"path_mask: predicate must return a bool, got {hit!r} for path "
                            f"{path!r}.")
        mask.append(bool(hit))
    if not any(mask):
        raise ValueError(f"path_mask: predicate matched none of the {len(paths)} param paths: "
                         f"{', '.join(paths)}.")
    return jax.tree_util.tree_unflatten(treedef, mask)


def label_params(params, predicate: Callable[[str], bool]):
    """`optax.multi_transform` labels: "frozen" where predicate(path) is true, else "trainable".

    Shapes: params a pytree -> the same pytree of strings.

    Raises:
      as `path_mask`.
    """
    return jax.tree.map(lambda f: FROZEN if f else TRAINABLE, path_mask(params, predicate))


def _keep() -> optax.GradientTransformation:
    """Updates of -0.0 (not +0.0): w + (-0.0) is w bit for bit, -0.0 included."""
    return optax.stateless(lambda updates, params=None: jax.tree.map(
        lambda u: jnp.full_like(u, -0.0), updates))


def frozen(optimizer: optax.GradientTransformation, params,
           predicate: Callable[[str], bool]) -> optax.GradientTransformation:
    """`optimizer` on the params predicate(path) rejects; the ones it selects never change.

    Math: u = optimizer's update on trainable leaves, u = -0.0 on frozen ones, so that
    `optax.apply_updates` (w + u) leaves a frozen w bit-identical. It is
    optax.multi_transform({"trainable": optimizer, "frozen": keep}, label_params(params,
    predicate)); optax.set_to_zero() in place of keep would do the same up to the sign of
    a -0.0 weight. Gradients of frozen leaves are still computed, then discarded.

    Args:
      optimizer: an optax GradientTransformation, e.g. optax.adam(1e-3).
      params: the params it will train (only their structure and paths are used).
      predicate: predicate(path) -> bool selecting the leaves to freeze (see `path_mask`).

    Returns:
      An optax GradientTransformation for jl.fit, jl.train.make_train_step or a loop of
      your own; its init must get params of the same structure.

    Raises:
      TypeError, ValueError: as `path_mask`; TypeError if optimizer is not a transformation.
    """
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"frozen: optimizer must be an optax GradientTransformation "
                        f"(e.g. optax.adam(1e-3)), got {optimizer!r}.")
    labels = label_params(params, predicate)
    return optax.multi_transform({TRAINABLE: optimizer, FROZEN: _keep()}, labels)
