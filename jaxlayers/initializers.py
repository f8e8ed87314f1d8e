"""Parameter initializers: `init(key, shape, dtype) -> array`, Keras's defaults (on jax.nn).

Fans follow the kernel layouts of DESIGN.md §2: the last axis is fan-out, the one
before it fan-in, and any leading (spatial) axes multiply both (the receptive field).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import initializers as _init

__all__ = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
           "lecun_normal", "orthogonal", "zeros", "ones", "constant", "uniform", "normal"]


def glorot_uniform():
    """Xavier uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); Var = 2 / (fan_in + fan_out)."""
    return _init.glorot_uniform()


def glorot_normal():
    """Xavier normal: truncated N(0, 2 / (fan_in + fan_out)) (truncated at 2σ, as Keras)."""
    return _init.glorot_normal()


def he_uniform():
    """He/Kaiming uniform: U(-l, l), l = sqrt(6 / fan_in); Var = 2 / fan_in (for ReLU)."""
    return _init.he_uniform()


def he_normal():
    """He/Kaiming normal: truncated N(0, 2 / fan_in)."""
    return _init.he_normal()


def lecun_uniform():
    """LeCun uniform: U(-l, l), l = sqrt(3 / fan_in); Var = 1 / fan_in."""
    return _init.lecun_uniform()


def lecun_normal():
    """LeCun normal: truncated N(0, 1 / fan_in) (SELU's)."""
    return _init.lecun_normal()


def orthogonal(gain: float = 1.0):
    """A (semi-)orthogonal matrix times `gain` (Keras's default for recurrent kernels)."""
    return _init.orthogonal(scale=gain)


def uniform(minval: float = -0.05, maxval: float = 0.05):
    """U(minval, maxval), Keras's `RandomUniform` (jax's own `uniform(s)` is U(0, s))."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    return init


def normal(stddev: float = 0.05):
    """N(0, stddev²)."""
    return _init.normal(stddev)


def zeros(key, shape, dtype=jnp.float32):
    """All zeros (the default for biases)."""
    del key
    return jnp.zeros(shape, dtype)


def ones(key, shape, dtype=jnp.float32):
    """All ones (BatchNorm/LayerNorm gamma)."""
    del key
    return jnp.ones(shape, dtype)


def constant(value):
    """Every entry `value`."""
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)
    return init
