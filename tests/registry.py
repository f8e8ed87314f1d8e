"""The conformance registry: every public layer and combinator, small arguments, inputs and
the bad inputs each must refuse (DESIGN.md §4, STYLE.md §7). tests/test_conformance.py runs
every Case through every check of `jl.testing`; a new layer is not done until it is here.
"""

from __future__ import annotations

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

def _f64(a):
    return np.asarray(a, np.float64)


def _ref_dense(activation):
    """y = act(x @ kernel + bias) in float64 NumPy."""
    def ref(params, state, x, training):
        y = _f64(x) @ _f64(params["kernel"])
        if "bias" in params:
            y = y + _f64(params["bias"])
        return y if activation is None else activation(y)
    return ref


def _forward(m, x, *, scale=1.0):
    """A compose model with a reused child: out(drop(norm(dense(x))) * scale) + dense(x)."""
    h = m.norm(m.dense(x))
    return m.out(m.drop(h) * scale) + m.dense(x)


_ACTIVATIONS = [
    Case(jl.Activation, (name,), {}, (2, 5), name=name,
         bad_inputs=(_float_only("Activation", (2, 5)),))
    for name in jl.activations.NAMES
]

CASES = _ACTIVATIONS + [
    Case(jl.Activation, ("softmax",), dict(temperature=2.0, axis=1), (2, 3, 4),
         name="softmax-axis1", bad_inputs=(_float_only("Activation", (2, 3, 4)),)),
    Case(jl.Add, (), {}, ((2, 3), (2, 3)), bad_inputs=(
        (((2, 3), (2, 4)), ValueError,
         r"Add: all inputs must have the same shape, got \[\(2, 3\), \(2, 4\)\]"),
        _tuple_of("Add", 2, ((2, 3),)),
        _tuple_of("Add", 2, (2, 3)),
    )),
    Case(jl.BatchNorm, (), {}, (4, 3), name="2d", bad_inputs=(
        ((4,), ValueError, r"BatchNorm: input must have rank >= 2 \(N, \.\.\., C\), "
                           r"got shape \(4,\)"),
        _features("BatchNorm", 3, (4, 5)),
        _float_only("BatchNorm", (4, 3)),
        _masked("BatchNorm", (4, 3), 1),
    )),
    Case(jl.BatchNorm, (), dict(momentum=0.9, epsilon=1e-5), (2, 3, 3, 4), name="4d",
         bad_inputs=(_features("BatchNorm", 4, (2, 3, 3, 5)),)),
    Case(jl.Concatenate, (), {}, ((2, 3), (2, 4)), bad_inputs=(
        (((2, 3), (3, 4)), ValueError, r"Concatenate: inputs must agree on every axis but "
                                       r"-1, got shapes \[\(2, 3\), \(3, 4\)\]"),
        (((2, 3), (2, 4, 1)), ValueError, r"Concatenate: axis -1 must be a non-batch axis "
                                          r"of inputs of one rank"),
        _tuple_of("Concatenate", 2, (2, 3)),
    )),
    Case(jl.Concatenate, (), dict(axis=1), ((2, 3, 4), (2, 2, 4), (2, 1, 4)), name="axis1",
         bad_inputs=((((2, 3, 4), (2, 3, 5)), ValueError,
                      r"Concatenate: inputs must agree on every axis but 1"),)),
    Case(jl.Dense, (5,), {}, (2, 3), name="2d", reference=_ref_dense(None), bad_inputs=(
        _features("Dense", 3, (2, 4)),
        _float_only("Dense", (2, 3)),
        ((), ValueError, r"Dense: input must have rank >= 1, got shape \(\)"),
    )),
    Case(jl.Dense, (4,), dict(activation="tanh", use_bias=False), (2, 3, 5), name="3d",
         bad_inputs=(_features("Dense", 5, (2, 3, 4)),)),
    Case(jl.Dense, (3,), {}, jl.Masked(S((2, 4, 5), jnp.float32), S((2, 4), jnp.bool_)),
         name="masked", bad_inputs=(_features("Dense", 5, (2, 4, 6)),)),
    Case(jl.Dropout, (0.5,), {}, (2, 8), random=True,
         bad_inputs=(_float_only("Dropout", (2, 8)),)),
    Case(jl.Flatten, (), {}, (2, 3, 4), bad_inputs=(
        ((2,), ValueError, r"Flatten: input must have rank >= 2 \(N, \.\.\.\), "
                           r"got shape \(2,\)"),
        _masked("Flatten", (2, 3, 4), 3),
    )),
    Case(jl.Flatten, (), {}, (2, 3, 2), input_dtype=jnp.int32, name="int32", bad_inputs=(
        ((2,), ValueError, r"Flatten: input must have rank >= 2"),
    )),
    Case(jl.Input, ((3,),), {}, (2, 3), bad_inputs=(
        ((2, 4), ValueError, r"Input: input must have shape \(N, 3,?\), got \(2, 4\)"),
    )),
    Case(jl.LayerNorm, (), {}, (2, 3, 5), bad_inputs=(
        _features("LayerNorm", 5, (2, 3, 4)),
        _float_only("LayerNorm", (2, 3, 5)),
        ((), ValueError, r"LayerNorm: input must have rank >= 1 \(\.\.\., F\), "
                         r"got shape \(\)"),
    )),
    Case(jl.Multiply, (), {}, ((2, 3), (2, 3), (2, 3)), bad_inputs=(
        (((2, 3), (2, 3), (3, 3)), ValueError, r"Multiply: all inputs must have the same "
                                               r"shape, got \[\(2, 3\), \(2, 3\), \(3, 3\)\]"),
        _tuple_of("Multiply", 2, (2, 3)),
    )),
    Case(jl.PReLU, (), {}, (2, 3, 4), bad_inputs=(
        _features("PReLU", 4, (2, 3, 5)),
        _float_only("PReLU", (2, 3, 4)),
    )),
    Case(jl.PReLU, (), dict(shared=True), (2, 5), name="shared",
         bad_inputs=(_float_only("PReLU", (2, 5)),)),
    Case(jl.Reshape, ((4, -1),), {}, (2, 3, 4), bad_inputs=(
        ((2, 5), ValueError, r"Reshape: cannot reshape an example of shape \(5,\) "
                             r"\(5 values\) to \(4, -1\)"),
    )),
    # combinators
    Case(jl.serial, (jl.Dense(4), jl.Activation("tanh"), jl.Dense(3)), {}, (2, 5),
         bad_inputs=(_features("Dense", 5, (2, 6)),)),
    Case(jl.serial, (), dict(features=jl.Dense(4, activation="relu"), head=jl.Dense(2)),
         (2, 3), name="named", bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.serial, (jl.Input((3,)), jl.Dense(4), jl.BatchNorm(), jl.Activation("relu"),
                     jl.Dropout(0.3)), {}, (4, 3), random=True, name="bn-dropout",
         bad_inputs=(((4, 5), ValueError, r"Input: input must have shape"),)),
    Case(jl.serial, (jl.fanout(2), jl.parallel(jl.Dense(3), jl.Dense(3, activation="elu")),
                     jl.Add()), {}, (2, 4), name="fanout-parallel-add",
         bad_inputs=(_features("Dense", 4, (2, 5)),)),
    Case(jl.parallel, (jl.Dense(2), jl.LayerNorm()), {}, ((2, 3), (2, 4)), bad_inputs=(
        ((2, 3), ValueError, r"parallel: input must be a tuple of 2 inputs"),
        (((2, 3),), ValueError, r"parallel: input must be a tuple of 2 inputs, got tuple "
                                r"of length 1"),
    )),
    Case(jl.fanout, (3,), {}, (2, 3),
         skip={"bad_inputs": "fanout copies any input; there is nothing to refuse"}),
    Case(jl.residual, (jl.Dense(3, activation="tanh"),), {}, (2, 3),
         bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.repeat, (jl.Dense(3, activation="sigmoid"), 3), {}, (2, 3),
         bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.repeat, (jl.serial(jl.BatchNorm(), jl.Dropout(0.25)), 2), {}, (4, 3),
         random=True, name="bn-dropout", bad_inputs=(_features("BatchNorm", 3, (4, 2)),)),
    Case(jl.compose, (_forward,), dict(dense=jl.Dense(4), norm=jl.LayerNorm(),
                                       drop=jl.Dropout(0.3), out=jl.Dense(4)),
         (3, 4), random=True, bad_inputs=(_features("Dense", 4, (3, 5)),)),
    # blocks of the model zoo
    Case(jl.Identity, (), {}, (2, 3),
         skip={"bad_inputs": "Identity passes any input on; there is nothing to refuse"}),
    Case(jl.Branches, (jl.Add(),), dict(activation="relu", main=jl.Dense(3), skip=jl.Identity()),
         (2, 3), bad_inputs=(_features("Dense", 3, (2, 4)),)),
    Case(jl.Branches, (jl.Concatenate(),), dict(a=jl.Dense(2), b=jl.Dropout(0.2)), (4, 3),
         random=True, name="concat-dropout", bad_inputs=(_features("Dense", 3, (4, 5)),)),
    Case(jl.Scale, (jl.Dense(1, activation="sigmoid"),), {}, (2, 4),
         bad_inputs=(_features("Dense", 4, (2, 5)),
                     ((2, 3), ValueError, r"Dense: input must have 4 features"))),
    Case(jl.SqueezeExcitation, (4, 2), dict(activation="swish"), (2, 3, 3, 4), bad_inputs=(
        ((2, 3, 3, 5), ValueError, r"Conv2D: input must have 4 channels on the last axis"),)),
    Case(jl.StochasticDepth, (0.3,), {}, (8, 2, 2, 3), random=True,
         bad_inputs=(_masked("StochasticDepth", (8, 2, 3), 2),)),
]

# Families registered in their own files, which import Case and S from this module (so
# these imports come last).
from registry_cnn import CNN_CASES  # noqa: E402
from registry_rnn import RNN_CASES  # noqa: E402

CASES += CNN_CASES + RNN_CASES

from registry_attention import ATTENTION_CASES  # noqa: E402

CASES += ATTENTION_CASES
