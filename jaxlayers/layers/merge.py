"""Merge layers: combine a tuple (or dict) of inputs into one (Concatenate, Add, Multiply)."""

from __future__ import annotations

import functools
import operator

import jax.numpy as jnp

from jaxlayers._checks import check_array, describe
from jaxlayers.core import Layer, layer_factory, stateless


def _inputs(layer, xs, min_count=2):
    """The inputs as a tuple: a tuple or list as given, a dict's values in its order
    (`jl.fanout("main", "skip")` and a keyword `jl.parallel` make one)."""
    if isinstance(xs, dict):
        xs = tuple(xs.values())
    if not isinstance(xs, (tuple, list)) or len(xs) < min_count:
        got = describe(xs) if isinstance(xs, (tuple, list)) else f"a single {describe(xs)}"
        raise ValueError(f"{layer}: input must be a tuple of at least {min_count} arrays, "
                         f"got {got}.")
    for x in xs:
        check_array(layer, x)
    return tuple(xs)


def _elementwise(layer: str, op) -> Layer:
    def apply(params, state, xs, *, key=None, training=False):
        del params, key, training
        xs = _inputs(layer, xs)
        shapes = [tuple(x.shape) for x in xs]
        if len(set(shapes)) != 1:
            raise ValueError(f"{layer}: all inputs must have the same shape, got {shapes}.")
        return functools.reduce(op, xs), state

    return stateless(apply, name=layer)


@layer_factory
def Add() -> Layer:
    """Elementwise sum: (x_1, ..., x_n) -> x_1 + ... + x_n (equal shapes, no broadcast).

    Shapes: a tuple (or dict) of n >= 2 arrays of one shape -> that shape. params {},
    state {}.
    Raises: ValueError on fewer than 2 inputs or differing shapes.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> add = jl.Add()
      >>> xs = (jnp.array([[1.0, 2.0]]), jnp.array([[10.0, 20.0]]), jnp.array([[100.0, 200]]))
      >>> params, state = add.init(jax.random.key(0), tuple(x.shape for x in xs))
      >>> y, _ = add.apply(params, state, xs)
      >>> print(y)
      [[111. 222.]]
    """
    return _elementwise("Add", operator.add)


@layer_factory
def Multiply() -> Layer:
    """Elementwise product: (x_1, ..., x_n) -> x_1 * ... * x_n (equal shapes, no broadcast).

    Shapes: a tuple (or dict) of n >= 2 arrays of one shape -> that shape. params {},
    state {}.
    Raises: ValueError on fewer than 2 inputs or differing shapes.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> mul = jl.Multiply()
      >>> xs = (jnp.array([[1.0, 2.0]]), jnp.array([[3.0, -4.0]]))
      >>> params, state = mul.init(jax.random.key(0), (xs[0].shape, xs[1].shape))
      >>> y, _ = mul.apply(params, state, xs)
      >>> print(y)
      [[ 3. -8.]]
    """
    return _elementwise("Multiply", operator.mul)


@layer_factory
def Concatenate(axis: int = -1) -> Layer:
    """Join a tuple (or dict, in its order) of arrays along `axis` (default the last, the channel/feature axis).

    Shapes: (N, ..., C_1), ..., (N, ..., C_n) -> (N, ..., C_1 + ... + C_n); every other
    axis must agree. params {}, state {}.
    Raises: ValueError on fewer than 2 inputs, differing ranks or other axes, or
      `axis` = 0 (the batch axis).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> cat = jl.Concatenate()
      >>> xs = (jnp.ones((2, 3, 4)), jnp.zeros((2, 3, 5)))
      >>> params, state = cat.init(jax.random.key(0), (xs[0].shape, xs[1].shape))
      >>> y, _ = cat.apply(params, state, xs)
      >>> y.shape, float(y.sum())  # 2 * 3 * 4 ones
      ((2, 3, 9), 24.0)
    """
    if not isinstance(axis, int):
        raise ValueError(f"Concatenate: axis must be an int, got {axis!r}.")

    def apply(params, state, xs, *, key=None, training=False):
        del params, key, training
        xs = _inputs("Concatenate", xs)
        ndim = xs[0].ndim
        ax = axis % ndim if -ndim <= axis < ndim else None
        shapes = [tuple(x.shape) for x in xs]
        if ax is None or ax == 0 or any(x.ndim != ndim for x in xs):
            raise ValueError(f"Concatenate: axis {axis} must be a non-batch axis of inputs "
                             f"of one rank, got shapes {shapes}.")
        rest = {s[:ax] + s[ax + 1:] for s in shapes}
        if len(rest) != 1:
            raise ValueError(f"Concatenate: inputs must agree on every axis but {axis}, "
                             f"got shapes {shapes}.")
        return jnp.concatenate(xs, axis=ax), state

    return stateless(apply, name="Concatenate")
