"""Activation layers: a named nonlinearity, and PReLU with a learned slope."""

from __future__ import annotations

import jax.numpy as jnp

from jaxlayers import activations
from jaxlayers._checks import check_float, check_last_axis, check_min_rank, shape_of
from jaxlayers.core import Layer, Masked, layer_factory, stateless
from jaxlayers.initializers import constant


@layer_factory
def Activation(activation, **options) -> Layer:
    """Apply an activation elementwise (softmax: over `axis`, default the last).

    Names: sigmoid, tanh, relu, leaky_relu (alpha=0.01), elu (alpha=1.0), gelu (exact
    x·Φ(x)), gelu_tanh, swish/silu, softmax (temperature=1.0, axis=-1), step (Heaviside,
    1 where x ≥ 0; zero gradient), linear; or any callable.

    Shapes: x -> y of the same shape; a `jl.Masked` input keeps its mask. params {}, state {}.

    Raises:
      ValueError: unknown name or option (construction).
      TypeError: a non-float input (trace time).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxlayers as jl
      >>> softmax = jl.Activation("softmax")
      >>> z = jnp.array([[2.0, 1.0, 0.1]])
      >>> params, state = softmax.init(jax.random.key(0), z.shape)
      >>> y, _ = softmax.apply(params, state, z)
      >>> print(np.asarray(y).round(3))  # seed 003 Q9: exps 7.389, 2.718, 1.105 over 11.213
      [[0.659 0.242 0.099]]
    """
    fn = activations.get(activation, "Activation", **options)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        if isinstance(x, Masked):
            return Masked(apply({}, state, x.values)[0], x.mask), state
        check_float("Activation", x)
        return fn(x), state

    return stateless(apply, name="Activation")


@layer_factory
def PReLU(*, alpha_init=constant(0.25), shared: bool = False, param_dtype=jnp.float32) -> Layer:
    """Parametric ReLU: y = max(0, x) + alpha * min(0, x), alpha learned per channel.

    Shapes: x (N, ..., C) -> y of the same shape. params {"alpha": (C,)} (one slope per
    channel of the last axis, as Keras with shared spatial axes), or {"alpha": (1,)}
    with `shared=True` (PyTorch's default `num_parameters=1`). state {}.
    alpha starts at 0.25 (PyTorch's; Keras starts at 0).

    Raises:
      TypeError: a non-float input. ValueError: channel count differs from alpha's.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> prelu = jl.PReLU()
      >>> x = jnp.array([[-2.0, 3.0], [4.0, -1.0]])
      >>> params, state = prelu.init(jax.random.key(0), x.shape)
      >>> y, _ = prelu.apply(params, state, x)  # alpha starts at 0.25 per channel
      >>> print(y)
      [[-0.5   3.  ]
       [ 4.   -0.25]]
    """
    def init(key, input_spec):
        shape = shape_of("PReLU", input_spec)
        if len(shape) < 1:
            raise ValueError(f"PReLU: input must have rank >= 1, got shape {shape}.")
        return {"alpha": alpha_init(key, (1 if shared else shape[-1],), param_dtype)}, {}

    def apply(params, state, x, *, key=None, training=False):
        del key, training
        check_float("PReLU", x)
        check_min_rank("PReLU", x, 1)
        if not shared:
            check_last_axis("PReLU", x, params["alpha"].shape[0])
        alpha = jnp.broadcast_to(params["alpha"].astype(x.dtype), x.shape)
        return jnp.where(x >= 0, x, alpha * x), state

    return Layer(init, apply, name="PReLU")
