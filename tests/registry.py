"""The conformance registry: every public layer and combinator, small arguments, inputs and
the bad inputs each must refuse (DESIGN.md §4, STYLE.md §7). tests/test_conformance.py runs
every Case through every check of `jl.testing`; a new layer is not done until it is here.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxlayers as jl

S = jax.ShapeDtypeStruct


class Case(NamedTuple):
    factory: Callable[..., jl.Layer]  # the public constructor under test
    args: tuple                       # constructor arguments: small, not degenerate
    kwargs: dict                      # (odd sizes, several inputs, keyword children)
    input_shape: Any                  # batch axis first; a tuple of shapes for merge layers
    input_dtype: Any = jnp.float32    # int32 for token ids
    random: bool = False              # training output must change with the key
    bad_inputs: tuple = ()            # (input spec, exception type, message regex)
    name: str = ""                    # test id suffix: "Dense-3d"
    skip: Mapping[str, str] = MappingProxyType({})  # check name -> why it does not apply
    # An independent reference: reference(params, state, x, training) -> the output, in
    # NumPy (float64) or PyTorch, never by calling jaxlayers. test_reference compares
    # apply with it at training=False, and at training=True unless the case is random.
    reference: Callable | None = None

    @property
    def id(self) -> str:
        return self.factory.__name__ + (f"-{self.name}" if self.name else "")

    def build(self) -> jl.Layer:
        return self.factory(*self.args, **self.kwargs)


def _int(shape):
    return S(shape, jnp.int32)


def _float_only(layer: str, shape) -> tuple:
    return (_int(shape), TypeError, rf"{layer}: input must have a floating dtype, got int32")


def _masked(layer: str, values, steps) -> tuple:
    spec = jl.Masked(S(values, jnp.float32), S(values[:1] + (steps,), jnp.bool_))
    return (spec, TypeError, rf"{layer}: does not accept a jl\.Masked input")


def _features(layer: str, expected: int, shape) -> tuple:
    got = ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "")
    return (shape, ValueError,
            rf"{layer}: input must have {expected} features on the last axis, "
            rf"got shape \({got}\)")


def _tuple_of(layer: str, n: int, shape) -> tuple:
    return (shape, ValueError, rf"{layer}: input must be a tuple of at least {n} arrays")


# ---------------------------------------------------------------- NumPy references
# Each reference is written from the layer's documented formula in float64 NumPy; none
# calls jaxlayers or jax. Children of combinators are composed from these same pieces.

def _f64(a):
    return np.asarray(a, np.float64)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_softmax(x, temperature=1.0, axis=-1):
    z = _f64(x) / temperature
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


_NP_ACTIVATIONS = {
    "sigmoid": _np_sigmoid,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi)
                                                    * (x + 0.044715 * x ** 3))),
    "swish": lambda x: x * _np_sigmoid(x),
    "silu": lambda x: x * _np_sigmoid(x),
    "softmax": _np_softmax,
    "step": lambda x: np.where(x >= 0, 1.0, 0.0),
    "linear": lambda x: x,
}


def _act(name):
    return None if name is None else _NP_ACTIVATIONS[name]


def _np_dense(params, x, activation=None):
    y = _f64(x) @ _f64(params["kernel"])
    if "bias" in params:
        y = y + _f64(params["bias"])
    return y if activation is None else _act(activation)(y)


def _ref_dense(activation):
    """y = act(x @ kernel + bias) in float64 NumPy (a jl.Masked input keeps its mask)."""
    def ref(params, state, x, training):
        if isinstance(x, jl.Masked):
            return jl.Masked(_np_dense(params, x.values, activation), np.asarray(x.mask))
        return _np_dense(params, x, activation)
    return ref


def _ref_activation(name, **options):
    def ref(params, state, x, training):
        return _NP_ACTIVATIONS[name](_f64(x), **options)
    return ref


def _np_batchnorm(params, state, x, training, epsilon=1e-3):
    """Batch statistics (biased variance) over all axes but the last while training,
    the running state otherwise; y = gamma * (x - mean) / sqrt(var + eps) + beta."""
    x = _f64(x)
    if training:
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axis=axes)
        var = ((x - mean) ** 2).mean(axis=axes)
    else:
        mean, var = _f64(state["mean"]), _f64(state["var"])
    return _f64(params["gamma"]) * (x - mean) / np.sqrt(var + epsilon) + _f64(params["beta"])


def _ref_batchnorm(epsilon=1e-3):
    def ref(params, state, x, training):
        return _np_batchnorm(params, state, x, training, epsilon)
    return ref


def _np_layernorm(params, x, epsilon=1e-3):
    x = _f64(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return _f64(params["gamma"]) * (x - mean) / np.sqrt(var + epsilon) + _f64(params["beta"])


def _ref_layernorm(epsilon=1e-3):
    def ref(params, state, x, training):
        return _np_layernorm(params, x, epsilon)
    return ref


def _np_prelu(params, x):
    x = _f64(x)
    return np.where(x >= 0, x, _f64(params["alpha"]) * x)


def _ref_prelu(params, state, x, training):
    return _np_prelu(params, x)


def _ref_identity(params, state, x, training):
    """Identity, Input, and the random layers (Dropout, StochasticDepth) at inference."""
    return _f64(x)


def _ref_dropout_rate0(params, state, x, training):
    return _f64(x)  # rate 0: the identity in both modes


def _ref_add(params, state, xs, training):
    return sum(_f64(x) for x in xs)


def _ref_multiply(params, state, xs, training):
    out = np.ones_like(_f64(xs[0]))
    for x in xs:
        out = out * _f64(x)
    return out


def _ref_concatenate(axis):
    def ref(params, state, xs, training):
        return np.concatenate([_f64(x) for x in xs], axis=axis)
    return ref


def _ref_flatten(params, state, x, training):
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1)


def _ref_reshape(target):
    def ref(params, state, x, training):
        return _f64(x).reshape((x.shape[0],) + target)
    return ref


def _ref_serial_mlp(params, state, x, training):
    """serial(Dense(4), Activation("tanh"), Dense(3))."""
    return _np_dense(params[2], np.tanh(_np_dense(params[0], x)))


def _ref_serial_named(params, state, x, training):
    """serial(features=Dense(4, relu), head=Dense(2))."""
    return _np_dense(params["head"], _np_dense(params["features"], x, "relu"))


def _ref_serial_bn_dropout(params, state, x, training):
    """serial(Input, Dense(4), BatchNorm(), relu, Dropout(0.3)); dropout is the identity
    at inference (the only mode a random case is compared in)."""
    h = _np_dense(params[1], x)
    h = _np_batchnorm(params[2], state[2], h, training)
    return np.maximum(h, 0.0)


def _ref_serial_fanout_parallel_add(params, state, x, training):
    """serial(fanout(2), parallel(Dense(3), Dense(3, elu)), Add())."""
    branches = params[1]
    return _np_dense(branches[0], x) + _np_dense(branches[1], x, "elu")


def _ref_serial_named_bn_dropout(params, state, x, training):
    """serial(dense=Dense(3), norm=BatchNorm(momentum=0.9), drop=Dropout(0.3))."""
    h = _np_dense(params["dense"], x)
    return _np_batchnorm(params["norm"], state["norm"], h, training)


def _ref_parallel(params, state, xs, training):
    """parallel(Dense(2), LayerNorm()) on a tuple of two inputs."""
    return (_np_dense(params[0], xs[0]), _np_layernorm(params[1], xs[1]))


def _ref_fanout3(params, state, x, training):
    return (_f64(x),) * 3


def _ref_residual(params, state, x, training):
    """x + tanh(Dense(3)(x))."""
    return _f64(x) + _np_dense(params, x, "tanh")


def _ref_repeat_dense(params, state, x, training):
    """3 copies of Dense(3, sigmoid), params stacked on a leading axis."""
    h = _f64(x)
    for i in range(params["kernel"].shape[0]):
        h = _np_dense({k: v[i] for k, v in params.items()}, h, "sigmoid")
    return h


def _ref_repeat_bn_dropout(params, state, x, training):
    """2 copies of serial(BatchNorm(), Dropout(0.25)), at inference."""
    h = _f64(x)
    bn_params, bn_state = params[0], state[0]
    for i in range(bn_params["gamma"].shape[0]):
        h = _np_batchnorm({k: v[i] for k, v in bn_params.items()},
                          {k: v[i] for k, v in bn_state.items()}, h, training)
    return h


def _ref_mixed_dense_bn(params, state, x, training):
    """BatchNorm(Dense(3)(x)) from the stored (bfloat16) params, in float64: the policy's
    float32 compute is the float32 model on the rounded params."""
    return _np_batchnorm(params[1], state[1], _np_dense(params[0], x), training)


def _ref_compose(params, state, x, training):
    """_forward: out(drop(norm(dense(x)))) + dense(x), dense shared; drop is the identity
    at inference."""
    d = _np_dense(params["dense"], x)
    return _np_dense(params["out"], _np_layernorm(params["norm"], d)) + d


def _ref_branches_add_relu(params, state, x, training):
    """relu(Dense(3)(x) + x)."""
    return np.maximum(_np_dense(params["main"], x) + _f64(x), 0.0)


def _ref_branches_concat_dropout(params, state, x, training):
    """concat(Dense(2)(x), Dropout(0.2)(x)) at inference."""
    return np.concatenate([_np_dense(params["a"], x), _f64(x)], axis=-1)


def _ref_scale(params, state, x, training):
    """x * sigmoid(Dense(1)(x)), the (N, 1) gate broadcast over the features."""
    return _f64(x) * _np_dense(params, x, "sigmoid")


def _ref_squeeze_excitation(params, state, x, training):
    """s = mean over H, W; g = sigmoid(fc2(swish(fc1(s)))) with 1x1 convolutions
    (HWIO kernels, so kernel[0, 0] is the (in, out) matrix); y = x * g."""
    x = _f64(x)
    s = x.mean(axis=(1, 2), keepdims=True)
    fc1, fc2 = params["fc1"], params["fc2"]
    h = s @ _f64(fc1["kernel"][0, 0]) + _f64(fc1["bias"])
    h = h * _np_sigmoid(h)
    g = _np_sigmoid(h @ _f64(fc2["kernel"][0, 0]) + _f64(fc2["bias"]))
    return x * g


def _forward(m, x, *, scale=1.0):
    """A compose model with a reused child: out(drop(norm(dense(x))) * scale) + dense(x)."""
    h = m.norm(m.dense(x))
    return m.out(m.drop(h) * scale) + m.dense(x)


_ACTIVATIONS = [
    Case(jl.Activation, (name,), {}, (2, 5), name=name, reference=_ref_activation(name),
         bad_inputs=(_float_only("Activation", (2, 5)),))
    for name in jl.activations.NAMES
]

_POLICY_SKIPS = {
    **{check: "the policy computes in its own dtype, not float64: finite differences of a "
              "float32 computation measure rounding" for check in
       ("jvp", "second_order", "gradients")},
    "bfloat16": "the policy fixes the output dtype (float32) whatever the input's",
}

CASES = _ACTIVATIONS + [
    Case(jl.Activation, ("softmax",), dict(temperature=2.0, axis=1), (2, 3, 4),
         name="softmax-axis1", reference=_ref_activation("softmax", temperature=2.0, axis=1),
         bad_inputs=(_float_only("Activation", (2, 3, 4)),)),
    Case(jl.Activation, ("softmax",), dict(temperature=0.5), (2, 5), name="softmax-t0.5",
         reference=_ref_activation("softmax", temperature=0.5),
         bad_inputs=(_float_only("Activation", (2, 5)),)),
    Case(jl.Add, (), {}, ((2, 3), (2, 3)), reference=_ref_add, bad_inputs=(
        (((2, 3), (2, 4)), ValueError,
         r"Add: all inputs must have the same shape, got \[\(2, 3\), \(2, 4\)\]"),
        _tuple_of("Add", 2, ((2, 3),)),
        _tuple_of("Add", 2, (2, 3)),
    )),
    Case(jl.BatchNorm, (), {}, (4, 3), name="2d", reference=_ref_batchnorm(), bad_inputs=(
        ((4,), ValueError, r"BatchNorm: input must have rank >= 2 \(N, \.\.\., C\), "
                           r"got shape \(4,\)"),
        _features("BatchNorm", 3, (4, 5)),
        _float_only("BatchNorm", (4, 3)),
        _masked("BatchNorm", (4, 3), 1),
    )),
    Case(jl.BatchNorm, (), dict(momentum=0.9, epsilon=1e-5), (2, 3, 3, 4), name="4d",
         reference=_ref_batchnorm(1e-5), bad_inputs=(_features("BatchNorm", 4, (2, 3, 3, 5)),)),
    Case(jl.BatchNorm, (), dict(momentum=0.9), (3, 4, 2), name="3d-momentum0.9",
         reference=_ref_batchnorm(), bad_inputs=(_features("BatchNorm", 2, (3, 4, 3)),
                                                 _float_only("BatchNorm", (3, 4, 2)))),
    Case(jl.Concatenate, (), {}, ((2, 3), (2, 4)), reference=_ref_concatenate(-1),
         bad_inputs=(
        (((2, 3), (3, 4)), ValueError, r"Concatenate: inputs must agree on every axis but "
                                       r"-1, got shapes \[\(2, 3\), \(3, 4\)\]"),
        (((2, 3), (2, 4, 1)), ValueError, r"Concatenate: axis -1 must be a non-batch axis "
                                          r"of inputs of one rank"),
        _tuple_of("Concatenate", 2, (2, 3)),
    )),
    Case(jl.Concatenate, (), dict(axis=1), ((2, 3, 4), (2, 2, 4), (2, 1, 4)), name="axis1",
         reference=_ref_concatenate(1),
         bad_inputs=((((2, 3, 4), (2, 3, 5)), ValueError,
                      r"Concatenate: inputs must agree on every axis but 1"),)),
    Case(jl.Dense, (5,), {}, (2, 3), name="2d", reference=_ref_dense(None), bad_inputs=(
        _features("Dense", 3, (2, 4)),
        _float_only("Dense", (2, 3)),
        ((), ValueError, r"Dense: input must have rank >= 1, got shape \(\)"),
    )),
    Case(jl.Dense, (4,), dict(activation="tanh", use_bias=False), (2, 3, 5), name="3d",
         reference=_ref_dense("tanh"),
         bad_inputs=(_features("Dense", 5, (2, 3, 4)),)),
    # init's zero bias would hide a dropped or misplaced bias from the reference
    Case(jl.Dense, (3,), dict(activation="leaky_relu", bias_init=jl.initializers.normal(0.5)),
         (2, 4), name="bias", reference=_ref_dense("leaky_relu"),
         bad_inputs=(_features("Dense", 4, (2, 3)), _float_only("Dense", (2, 4)))),
    Case(jl.Dense, (3,), {}, jl.Masked(S((2, 4, 5), jnp.float32), S((2, 4), jnp.bool_)),
         name="masked", reference=_ref_dense(None),
         bad_inputs=(_features("Dense", 5, (2, 4, 6)),)),
    Case(jl.Dropout, (0.5,), {}, (2, 8), random=True, reference=_ref_identity,
         bad_inputs=(_float_only("Dropout", (2, 8)),)),
    Case(jl.Dropout, (0.2,), {}, (4, 8), random=True, name="rate0.2", reference=_ref_identity,
         bad_inputs=(_float_only("Dropout", (4, 8)),)),
    Case(jl.Dropout, (0.0,), {}, (2, 5), name="rate0", reference=_ref_dropout_rate0,
         bad_inputs=(_float_only("Dropout", (2, 5)),),
         skip={"keys": "rate 0 ignores the key's value yet still needs one while training "
                       "(key=None raises), so it is neither random nor deterministic"}),
    Case(jl.Flatten, (), {}, (2, 3, 4), reference=_ref_flatten, bad_inputs=(
        ((2,), ValueError, r"Flatten: input must have rank >= 2 \(N, \.\.\.\), "
                           r"got shape \(2,\)"),
        _masked("Flatten", (2, 3, 4), 3),
    )),
    Case(jl.Flatten, (), {}, (2, 3, 2), input_dtype=jnp.int32, name="int32",
         reference=_ref_flatten, bad_inputs=(
        ((2,), ValueError, r"Flatten: input must have rank >= 2"),
    )),
    Case(jl.Input, ((3,),), {}, (2, 3), reference=_ref_identity, bad_inputs=(
        ((2, 4), ValueError, r"Input: input must have shape \(N, 3,?\), got \(2, 4\)"),
    )),
    Case(jl.LayerNorm, (), {}, (2, 3, 5), reference=_ref_layernorm(), bad_inputs=(
        _features("LayerNorm", 5, (2, 3, 4)),
        _float_only("LayerNorm", (2, 3, 5)),
        ((), ValueError, r"LayerNorm: input must have rank >= 1 \(\.\.\., F\), "
                         r"got shape \(\)"),
    )),
    Case(jl.LayerNorm, (), dict(epsilon=1e-5), (2, 5), name="eps1e-5",
         reference=_ref_layernorm(1e-5), bad_inputs=(_features("LayerNorm", 5, (2, 4)),
                                                     _float_only("LayerNorm", (2, 5)))),
    Case(jl.Multiply, (), {}, ((2, 3), (2, 3), (2, 3)), reference=_ref_multiply, bad_inputs=(
        (((2, 3), (2, 3), (3, 3)), ValueError, r"Multiply: all inputs must have the same "
                                               r"shape, got \[\(2, 3\), \(2, 3\), \(3, 3\)\]"),
        _tuple_of("Multiply", 2, (2, 3)),
    )),
    Case(jl.PReLU, (), {}, (2, 3, 4), reference=_ref_prelu, bad_inputs=(
        _features("PReLU", 4, (2, 3, 5)),
        _float_only("PReLU", (2, 3, 4)),
    )),
    Case(jl.PReLU, (), dict(shared=True), (2, 5), name="shared", reference=_ref_prelu,
         bad_inputs=(_float_only("PReLU", (2, 5)),)),
    Case(jl.Reshape, ((4, -1),), {}, (2, 3, 4), reference=_ref_reshape((4, -1)), bad_inputs=(
        ((2, 5), ValueError, r"Reshape: cannot reshape an example of shape \(5,\) "
                             r"\(5 values\) to \(4, -1\)"),
    )),
    # combinators
    Case(jl.serial, (jl.Dense(4), jl.Activation("tanh"), jl.Dense(3)), {}, (2, 5),
         reference=_ref_serial_mlp,
         bad_inputs=(_features("Dense", 5, (2, 6)),)),
    Case(jl.serial, (), dict(features=jl.Dense(4, activation="relu"), head=jl.Dense(2)),
         (2, 3), name="named", reference=_ref_serial_named,
         bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.serial, (jl.Input((3,)), jl.Dense(4), jl.BatchNorm(), jl.Activation("relu"),
                     jl.Dropout(0.3)), {}, (4, 3), random=True, name="bn-dropout",
         reference=_ref_serial_bn_dropout,
         bad_inputs=(((4, 5), ValueError, r"Input: input must have shape"),)),
    Case(jl.serial, (), dict(dense=jl.Dense(3), norm=jl.BatchNorm(momentum=0.9),
                             drop=jl.Dropout(0.3)), (4, 3), random=True,
         name="named-bn-dropout", reference=_ref_serial_named_bn_dropout,
         bad_inputs=(_features("Dense", 3, (4, 2)), _float_only("Dense", (4, 3)))),
    Case(jl.serial, (jl.fanout(2), jl.parallel(jl.Dense(3), jl.Dense(3, activation="elu")),
                     jl.Add()), {}, (2, 4), name="fanout-parallel-add",
         reference=_ref_serial_fanout_parallel_add,
         bad_inputs=(_features("Dense", 4, (2, 5)),)),
    Case(jl.parallel, (jl.Dense(2), jl.LayerNorm()), {}, ((2, 3), (2, 4)),
         reference=_ref_parallel, bad_inputs=(
        ((2, 3), ValueError, r"parallel: input must be a tuple of 2 inputs"),
        (((2, 3),), ValueError, r"parallel: input must be a tuple of 2 inputs, got tuple "
                                r"of length 1"),
    )),
    Case(jl.fanout, (3,), {}, (2, 3), reference=_ref_fanout3,
         skip={"bad_inputs": "fanout copies any input; there is nothing to refuse"}),
    Case(jl.residual, (jl.Dense(3, activation="tanh"),), {}, (2, 3), reference=_ref_residual,
         bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.repeat, (jl.Dense(3, activation="sigmoid"), 3), {}, (2, 3),
         reference=_ref_repeat_dense,
         bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.repeat, (jl.serial(jl.BatchNorm(), jl.Dropout(0.25)), 2), {}, (4, 3),
         random=True, name="bn-dropout", reference=_ref_repeat_bn_dropout,
         bad_inputs=(_features("BatchNorm", 3, (4, 2)),)),
    # float64 finite differences do not apply to a policy that computes in float32 by
    # design, and its output dtype is the policy's, not the input's; tests/test_precision.py
    # runs the other checks on a bfloat16-compute policy, and checks its gradients, dtypes
    # and bfloat16 numbers (against a bfloat16 emulation: no float32 tolerance holds).
    Case(jl.mixed_precision, (jl.serial(jl.Dense(3), jl.BatchNorm()),
                              jl.Policy(params="bfloat16", compute="float32")), {}, (4, 5),
         name="bf16-params", reference=_ref_mixed_dense_bn, skip=_POLICY_SKIPS,
         bad_inputs=(_features("Dense", 5, (4, 6)), _float_only("Dense", (4, 5)))),
    Case(jl.compose, (_forward,), dict(dense=jl.Dense(4), norm=jl.LayerNorm(),
                                       drop=jl.Dropout(0.3), out=jl.Dense(4)),
         (3, 4), random=True, reference=_ref_compose,
         bad_inputs=(_features("Dense", 4, (3, 5)),)),
    # blocks of the model zoo
    Case(jl.Identity, (), {}, (2, 3), reference=_ref_identity,
         skip={"bad_inputs": "Identity passes any input on; there is nothing to refuse"}),
    Case(jl.Branches, (jl.Add(),), dict(activation="relu", main=jl.Dense(3), skip=jl.Identity()),
         (2, 3), reference=_ref_branches_add_relu,
         bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.Branches, (jl.Concatenate(),), dict(a=jl.Dense(2), b=jl.Dropout(0.2)), (4, 3),
         random=True, name="concat-dropout", reference=_ref_branches_concat_dropout,
         bad_inputs=(_features("Dense", 3, (4, 5)),)),
    Case(jl.Scale, (jl.Dense(1, activation="sigmoid"),), {}, (2, 4), reference=_ref_scale,
         bad_inputs=(_features("Dense", 4, (2, 5)),
                     ((2, 3), ValueError, r"Dense: input must have 4 features"))),
    Case(jl.SqueezeExcitation, (4, 2), dict(activation="swish"), (2, 3, 3, 4),
         reference=_ref_squeeze_excitation, bad_inputs=(
        ((2, 3, 3, 5), ValueError, r"Conv2D: input must have 4 channels on the last axis"),)),
    Case(jl.StochasticDepth, (0.3,), {}, (8, 2, 2, 3), random=True, reference=_ref_identity,
         bad_inputs=(_masked("StochasticDepth", (8, 2, 3), 2),)),
    Case(jl.StochasticDepth, (0.2,), {}, (6, 3), random=True, name="rate0.2",
         reference=_ref_identity, bad_inputs=(_masked("StochasticDepth", (6, 3), 1),)),
]

# Families registered in their own files, which import Case and S from this module (so
# these imports come last).
from registry_cnn import CNN_CASES  # noqa: E402
from registry_rnn import RNN_CASES  # noqa: E402

CASES += CNN_CASES + RNN_CASES

from registry_attention import ATTENTION_CASES  # noqa: E402

CASES += ATTENTION_CASES

from registry_crf import CRF_CASES  # noqa: E402

CASES += CRF_CASES
