"""Blocks the model zoo is built of: Identity, Branches, Scale, SqueezeExcitation, StochasticDepth."""

from __future__ import annotations

import jax.numpy as jnp

from jaxlayers import activations
from jaxlayers._checks import check_array, check_rate, describe
from jaxlayers._combinators import serial
from jaxlayers.core import Layer, as_layer, child_key, layer_factory, output_spec, stateless
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dropout import drop, dropout_mask
from jaxlayers.layers.pool import GlobalAvgPool2D

__all__ = ["Identity", "Branches", "Scale", "SqueezeExcitation", "StochasticDepth"]


@layer_factory
def Identity() -> Layer:
    """y = x, any input (the skip branch of `Branches`). params {}, state {}.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> identity = jl.Identity()
      >>> params, state = identity.init(jax.random.key(0), (2, 3))
      >>> y, _ = identity.apply(params, state, jnp.arange(6.0).reshape(2, 3))
      >>> print(y)
      [[0. 1. 2.]
       [3. 4. 5.]]
    """
    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        return x, state

    return stateless(apply, name="Identity")


@layer_factory
def Branches(merge: Layer, /, *, activation=None, name: str | None = None,
             **branches: Layer) -> Layer:
    """Run every named branch on the same input, then merge: y = act(merge({b_i(x)})).

    `jl.fanout(*names)`, a keyword `jl.parallel` and a merge layer in one, with the
    params in a dict by branch name (`params["shortcut"]`), in the order the branches are
    given. Inception modules (merge `Concatenate()`), ResNet blocks (merge `Add()`,
    activation "relu") and DenseNet layers (`Identity()` and a new-features branch, merge
    `Concatenate()`). Branch i gets the key child_key(key, name_i), as in `serial`.

    Shapes: x -> merge of the branch outputs (a tuple, in branch order).
    params/state: dicts by branch name.

    Args:
      merge: a layer without params or state taking a tuple (`Add()`, `Concatenate()`).
      activation: applied after the merge (a name or callable; None: none).
      name: the type `jl.summary` shows ("BasicBlock"); default "Branches".
      branches: the branches, by name ("activation" and "name" cannot be branch names).

    Raises:
      ValueError: no branches (construction); a merge layer with params or state (init).
      TypeError: a branch or merge that is not a Layer.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> block = jl.Branches(jl.Add(), main=jl.Dense(4), shortcut=jl.Identity(),
      ...                     activation="relu")
      >>> params, state = block.init(jax.random.key(0), (2, 4))
      >>> list(params)
      ['main', 'shortcut']
      >>> y, _ = block.apply(params, state, jnp.ones((2, 4)))  # relu(Dense(x) + x)
      >>> y.shape
      (2, 4)
    """
    label = name or "Branches"
    if not branches:
        raise ValueError(f"{label}: needs at least one branch, given by keyword.")
    merge = as_layer(label, merge)
    items = [(n, as_layer(label, b)) for n, b in branches.items()]
    act = None if activation is None else activations.get(activation, label)

    def init(key, spec):
        params, state, outs = {}, {}, []
        for branch_name, branch in items:
            p, s = branch.init(child_key(key, branch_name), spec)
            params[branch_name], state[branch_name] = p, s
            outs.append(output_spec(branch, spec, p, s))
        merge_params = merge.init(None, tuple(outs))
        if any(merge_params):
            raise ValueError(f"{label}: the merge layer {merge.name} must have no params or "
                             f"state, got {merge_params!r}.")
        return params, state

    def apply(params, state, x, *, key=None, training=False):
        outs, new_state = [], {}
        for branch_name, branch in items:
            y, new_state[branch_name] = branch.apply(
                params[branch_name], state[branch_name], x, key=child_key(key, branch_name),
                training=training)
            outs.append(y)
        y, _ = merge.apply({}, {}, tuple(outs))
        return (y if act is None else act(y)), new_state

    return Layer(init, apply, name=label, children=dict(items))


@layer_factory
def Scale(gate: Layer, /, *, name: str | None = None) -> Layer:
    """Multiply x by a gate computed from x: y = x * gate(x), the gate broadcast to x.

    The gate's output has x's rank, with size 1 on the axes it does not vary over
    (squeeze-and-excitation: (N, 1, 1, C) against x (N, H, W, C)). The gate gets the key
    child_key(key, 0).

    Shapes: x -> y of the same shape. params/state: the gate's.

    Raises:
      ValueError: a gate output that does not broadcast to x at the same rank.
      TypeError: a gate that is not a Layer; a non-array input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> gate = jl.serial(jl.GlobalAvgPool2D(keepdims=True), jl.Activation("sigmoid"))
      >>> scale = jl.Scale(gate)
      >>> params, state = scale.init(jax.random.key(0), (2, 4, 5, 3))
      >>> y, _ = scale.apply(params, state, jnp.ones((2, 4, 5, 3)))
      >>> y.shape, round(float(y[0, 0, 0, 0]), 4)  # 1 * sigmoid(mean 1)
      ((2, 4, 5, 3), 0.7311)
    """
    label = name or "Scale"
    gate = as_layer(label, gate)

    def init(key, spec):
        return gate.init(child_key(key, 0), spec)

    def apply(params, state, x, *, key=None, training=False):
        check_array(label, x)
        g, state = gate.apply(params, state, x, key=child_key(key, 0), training=training)
        if getattr(g, "ndim", None) != x.ndim or any(
                a not in (1, b) for a, b in zip(g.shape, x.shape)):
            raise ValueError(f"{label}: the gate's output must broadcast to the input "
                             f"{tuple(x.shape)} at the same rank, got {describe(g)}.")
        return x * jnp.broadcast_to(g.astype(x.dtype), x.shape), state

    return Layer(init, apply, name=label, children=(gate,))


@layer_factory
def SqueezeExcitation(channels: int, squeeze: int, *, activation="relu") -> Layer:
    """Squeeze-and-excitation (Hu et al. 2018), as torchvision's `SqueezeExcitation`.

    Math: s = mean over H, W of x (N, 1, 1, C); g = sigmoid(fc2(act(fc1(s))));
          y = x * g, with fc1, fc2 1×1 convolutions (with bias) C -> squeeze -> C.

    Shapes: x (N, H, W, C) -> y of the same shape.
    params {"fc1": {"kernel": (1, 1, C, squeeze), "bias"}, "fc2": {... (1, 1, squeeze, C)}}
    (a `Scale` of a `serial(pool=..., fc1=..., fc2=...)` gate: the pool has none).

    Raises:
      ValueError: channels or squeeze not a positive int, an unknown activation
        (construction); an input with other than `channels` channels (trace time).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> se = jl.SqueezeExcitation(6, 2)
      >>> params, state = se.init(jax.random.key(0), (2, 4, 5, 6))
      >>> jax.tree.map(jnp.shape, params["fc1"])  # 1x1 convs: squeeze 6 -> 2, then 2 -> 6
      {'bias': (2,), 'kernel': (1, 1, 6, 2)}
      >>> y, _ = se.apply(params, state, jnp.ones((2, 4, 5, 6)))
      >>> y.shape
      (2, 4, 5, 6)
    """
    gate = serial(pool=GlobalAvgPool2D(keepdims=True),
                  fc1=Conv2D(squeeze, 1, activation=activation),
                  fc2=Conv2D(channels, 1, activation="sigmoid"))
    return Scale(gate, name="SqueezeExcitation")


@layer_factory
def StochasticDepth(rate: float) -> Layer:
    """Drop the whole residual branch of an example while training (drop-path, "row" mode).

    Math (training): y = where(m, x / (1 - rate), 0), m ~ Bernoulli(1 - rate) per example;
    inference: y = x. Put it last inside `jl.residual(...)`, as torchvision's
    `StochasticDepth(p, "row")` in EfficientNet's MBConv.

    Shapes: x (N, ...) -> same. params {}, state {}.

    Raises:
      ValueError: rate outside [0, 1) (construction); training=True with key=None.
      TypeError: a non-array input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> drop_path = jl.StochasticDepth(0.25)
      >>> x = jnp.ones((6, 3))
      >>> params, state = drop_path.init(jax.random.key(0), x.shape)
      >>> y, _ = drop_path.apply(params, state, x, key=jax.random.key(1), training=True)
      >>> print(y[:, 0] * 0.75)  # whole examples dropped, the others scaled by 1 / (1 - rate)
      [1. 1. 1. 1. 0. 1.]
      >>> bool((y == y[:, :1]).all())  # one draw per example
      True
    """
    rate = check_rate("StochasticDepth", "rate", rate)

    def apply(params, state, x, *, key=None, training=False):
        del params
        check_array("StochasticDepth", x)
        if not training:
            return x, state
        keep = dropout_mask("StochasticDepth", key, rate, (x.shape[0],) + (1,) * (x.ndim - 1))
        return (x if rate == 0.0 else drop(x, keep, rate)), state

    return stateless(apply, name="StochasticDepth")
