"""Shape layers: Flatten and Reshape (batch axis kept)."""

from __future__ import annotations

import math

from jaxlayers._checks import check_array, check_min_rank
from jaxlayers.core import Layer, layer_factory, stateless


@layer_factory
def Flatten() -> Layer:
    """Flatten all axes but the batch axis: (N, d1, ..., dk) -> (N, d1·...·dk).

    Seed 004: 7×7×512 -> 25,088. Shapes: x (N, ...) of rank >= 2. params {}, state {}.

    Raises:
      ValueError: input of rank < 2 (no axis to flatten besides the batch).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> flat = jl.Flatten()
      >>> params, state = flat.init(jax.random.key(0), (2, 7, 7, 512))
      >>> y, _ = flat.apply(params, state, jnp.ones((2, 7, 7, 512)))
      >>> y.shape  # seed 004: 7 x 7 x 512 = 25,088
      (2, 25088)
    """
    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_array("Flatten", x)
        check_min_rank("Flatten", x, 2, "(N, ...)")
        return x.reshape(x.shape[0], -1), state

    return stateless(apply, name="Flatten")


@layer_factory
def Reshape(target_shape) -> Layer:
    """Reshape each example to `target_shape` (without the batch axis; one -1 allowed).

    Shapes: x (N, ...) -> (N, *target_shape). params {}, state {}.

    Raises:
      ValueError: a bad `target_shape` (construction); a size that does not divide
        (trace time).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> reshape = jl.Reshape((3, 4))
      >>> params, state = reshape.init(jax.random.key(0), (2, 12))
      >>> y, _ = reshape.apply(params, state, jnp.arange(24.0).reshape(2, 12))
      >>> y.shape, float(y[1, 2, 3])
      ((2, 3, 4), 23.0)
    """
    target = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else None
    if (target is None or not all(isinstance(d, int) and (d > 0 or d == -1) for d in target)
            or sum(d == -1 for d in target) > 1):
        raise ValueError(f"Reshape: target_shape must be a tuple of positive ints with at "
                         f"most one -1, got {target_shape!r}.")

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_array("Reshape", x)
        check_min_rank("Reshape", x, 1, "(N, ...)")
        size, known = math.prod(x.shape[1:]), math.prod(d for d in target if d != -1)
        if (-1 in target and size % known) or (-1 not in target and size != known):
            raise ValueError(f"Reshape: cannot reshape an example of shape "
                             f"{tuple(x.shape[1:])} ({size} values) to {target}.")
        return x.reshape((x.shape[0],) + target), state

    return stateless(apply, name="Reshape")
