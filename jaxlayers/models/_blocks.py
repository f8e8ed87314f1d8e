"""Blocks shared by the model builders: conv + BatchNorm, branch-and-merge, SE, drop-path."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlayers import activations
from jaxlayers._checks import as_struct, check_array, check_rate, to_shape_spec
from jaxlayers.core import Layer, child_key, serial
from jaxlayers.layers.activation import Activation
from jaxlayers.layers.conv import Conv2D, DepthwiseConv2D
from jaxlayers.layers.norm import BatchNorm
from jaxlayers.layers.pool import GlobalAvgPool2D


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never below 90% of `value`.

    torchvision's `_make_divisible` (from the TensorFlow MobileNet code), used by
    MobileNetV2 and EfficientNet for width multipliers.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def torch_batch_norm(epsilon: float = 1e-5, torch_momentum: float = 0.1) -> Layer:
    """BatchNorm with PyTorch's hyperparameters: running = (1 - m) * running + m * batch.

    PyTorch's `momentum=0.1` is jaxlayers' `momentum=0.9` (the weight of the old value).
    """
    return BatchNorm(momentum=1.0 - torch_momentum, epsilon=epsilon)


def conv_bn(filters: int, kernel_size, *, strides=1, padding=0, groups: int = 1,
            activation="relu", epsilon: float = 1e-5, torch_momentum: float = 0.1,
            depthwise: bool = False) -> Layer:
    """conv (no bias) -> BatchNorm -> activation, as torchvision's `Conv2dNormActivation`.

    The convolution feeds a BatchNorm, whose beta replaces its bias. `depthwise=True`
    uses `DepthwiseConv2D` (one filter per channel; `filters` must then equal the input
    channels, which the BatchNorm checks). `activation=None` leaves out the activation.
    params {"conv": ..., "bn": {"gamma", "beta"}}; state {"bn": {"mean", "var"}}.
    """
    if depthwise:
        conv = DepthwiseConv2D(kernel_size, strides=strides, padding=padding, use_bias=False)
    else:
        conv = Conv2D(filters, kernel_size, strides=strides, padding=padding, groups=groups,
                      use_bias=False)
    layers = {"conv": conv, "bn": torch_batch_norm(epsilon, torch_momentum)}
    if activation is not None:
        layers["act"] = Activation(activation)
    return serial(**layers)


def identity() -> Layer:
    """y = x. params {}, state {}. (The skip branch of `branches`.)"""
    def init(key, input_shape):
        del key, input_shape
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        return x, state

    return Layer(init, apply, name="Identity")


def _abstract_output(layer: Layer, params, state, spec):
    def run(p, s, x):
        return layer.apply(p, s, x, key=None, training=False)[0]
    return jax.eval_shape(run, params, state, spec)


def branches(merge: Layer, activation=None, label: str = "Branches", /,
             **named: Layer) -> Layer:
    """Run every named branch on the same input, then merge: y = act(merge((b_1(x), ..., b_n(x)))).

    `fanout(n)`, a keyword `parallel` and a merge layer in one, with the params in a dict
    by branch name (`params["shortcut"]`), in the order the branches are given. Inception
    modules (merge `Concatenate()`), ResNet blocks (merge `Add()`, activation "relu") and
    DenseNet layers (`identity()` and a new-features branch, merge `Concatenate()`).

    Shapes: x -> merge of the branch outputs. params/state: dicts by branch name.

    Raises:
      ValueError: no branches, or a merge layer with params or state.
    """
    if not named:
        raise ValueError(f"{label}: needs at least one branch.")
    act = None if activation is None else activations.get(activation, label)
    items = list(named.items())

    def init(key, input_shape):
        spec = as_struct(input_shape)
        params, state, outs = {}, {}, []
        for name, branch in items:
            p, s = branch.init(child_key(key, name), to_shape_spec(spec))
            params[name], state[name] = p, s
            outs.append(_abstract_output(branch, p, s, spec))
        merge_params = merge.init(None, to_shape_spec(tuple(outs)))
        if jax.tree.leaves(merge_params):
            raise ValueError(f"{label}: the merge layer must have no params or state, got "
                             f"{merge_params!r}.")
        return params, state

    def apply(params, state, x, *, key=None, training=False):
        outs, new_state = [], {}
        for name, branch in items:
            y, new_state[name] = branch.apply(params[name], state[name], x,
                                              key=child_key(key, name), training=training)
            outs.append(y)
        y, _ = merge.apply({}, {}, tuple(outs))
        return (y if act is None else act(y)), new_state

    return Layer(init, apply, name=label, children=dict(named))


def scale_by(gate: Layer, label: str = "Scale") -> Layer:
    """Multiply x by a gate computed from x: y = x * gate(x), the gate broadcast to x.

    The gate's output has x's rank, with size 1 on the axes it does not vary over
    (squeeze-and-excitation: (N, 1, 1, C) against x (N, H, W, C)).
    Shapes: x -> y of the same shape. params/state: the gate's.
    """
    def init(key, input_shape):
        return gate.init(child_key(key, 0), input_shape)

    def apply(params, state, x, *, key=None, training=False):
        check_array(label, x)
        g, state = gate.apply(params, state, x, key=child_key(key, 0), training=training)
        if g.ndim != x.ndim or any(a not in (1, b) for a, b in zip(g.shape, x.shape)):
            raise ValueError(f"{label}: the gate's output must broadcast to the input "
                             f"{tuple(x.shape)} at the same rank, got {tuple(g.shape)}.")
        return x * jnp.broadcast_to(g.astype(x.dtype), x.shape), state

    return Layer(init, apply, name=label, children=(gate,))


def squeeze_excitation(channels: int, squeeze: int, activation="relu") -> Layer:
    """Squeeze-and-excitation (Hu et al. 2018), as torchvision's `SqueezeExcitation`.

    Math: s = mean over H, W of x (N, 1, 1, C); g = sigmoid(fc2(act(fc1(s))));
          y = x * g, with fc1, fc2 1×1 convolutions (with bias) C -> squeeze -> C.
    Shapes: x (N, H, W, C) -> y of the same shape.
    params {"fc1": {"kernel": (1, 1, C, squeeze), "bias"}, "fc2": {... (1, 1, squeeze, C)}}.
    """
    gate = serial(pool=GlobalAvgPool2D(keepdims=True),
                  fc1=Conv2D(squeeze, 1, activation=activation),
                  fc2=Conv2D(channels, 1, activation="sigmoid"))
    return scale_by(gate, "SqueezeExcitation")


def stochastic_depth(rate: float) -> Layer:
    """Drop the whole residual branch of an example while training (drop-path, "row" mode).

    Math (training): y = x * m / (1 - rate), m ~ Bernoulli(1 - rate) per example;
    inference: y = x. Put it last inside `jl.residual(...)`, as torchvision's
    `StochasticDepth(p, "row")` in EfficientNet's MBConv.

    Shapes: x (N, ...) -> same. params {}, state {}.
    Raises: ValueError: rate outside [0, 1); training=True with key=None and rate > 0.
    """
    rate = check_rate("StochasticDepth", "rate", rate)

    def init(key, input_shape):
        del key, input_shape
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        del params
        check_array("StochasticDepth", x)
        if not training or rate == 0.0:
            return x, state
        if key is None:
            raise ValueError("StochasticDepth: training=True needs a PRNG key, got key=None; "
                             "pass key=jax.random.key(seed) to apply.")
        keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
        keep = jnp.broadcast_to(keep, x.shape)
        return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x)), state

    return Layer(init, apply, name="StochasticDepth")
