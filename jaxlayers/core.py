"""The layer contract: `Layer` (an init/apply pair with a name), input specs, keys, shapes."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxlayers._checks import as_spec, describe
from jaxlayers._init_cache import cached_init, raw_init
from jaxlayers.masked import Masked

__all__ = ["Layer", "Masked", "layer_factory", "stateless", "as_layer", "child_key",
           "output_spec", "output_shape", "count_params"]


def _accepted_keywords(apply: Callable):
    """The keyword inputs `apply` takes besides key and training; None if it takes any."""
    try:
        parameters = list(inspect.signature(apply).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: we cannot tell
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    named = [p.name for p in parameters[3:] if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                           p.KEYWORD_ONLY)]
    return frozenset(named) - {"key", "training"}


def _spec_init(raw: Callable, name: str, input_dtype, declared) -> Callable:
    """`raw` behind the one spec conversion (raw gets structs) and the per-spec jit cache."""
    dtype = jnp.float32 if input_dtype is None else input_dtype
    cache = {}

    @functools.wraps(raw)
    def init(key, input_spec=None):
        if input_spec is None:
            if declared is None:
                raise ValueError(f"{name}: init needs an input spec (a shape tuple with the "
                                 f"batch axis, an array or a jax.ShapeDtypeStruct), got None; "
                                 f"or start the model with jl.Input(shape).")
            input_spec = declared
        spec = as_spec(input_spec, dtype)
        if raw is _no_params:
            return raw(key, spec)
        return cached_init(raw, cache, key, spec)

    init._jl_raw = raw
    init._jl_cache = cache
    return init


def _keyword_apply(raw: Callable, name: str) -> Callable:
    """`raw` behind the keyword-input check: an unknown keyword is a TypeError naming it."""
    accepted = _accepted_keywords(raw)
    if accepted is None:
        return raw

    @functools.wraps(raw)
    def apply(params, state, x, *, key=None, training=False, **inputs):
        unknown = sorted(set(inputs) - accepted)
        if unknown:
            takes = (f"its keyword inputs are {sorted(accepted)}" if accepted else
                     "it takes no keyword inputs")
            raise TypeError(f"{name}: unknown keyword input {unknown[0]!r} to apply; "
                            f"{takes} (besides key and training).")
        return raw(params, state, x, key=key, training=training, **inputs)

    apply._jl_raw = raw
    return apply


def _short(value: Any) -> str:
    """A value as `repr(layer)` shows a hyperparameter: layers and names, not addresses."""
    if isinstance(value, Layer):
        return repr(value)
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_short(v) for v in value)
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else (
            f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
    return repr(value)


@dataclasses.dataclass(frozen=True, eq=False, repr=False, init=False)
class Layer:
    """A layer: the pure pair `(init, apply)`, with a name and its children.

    init(key, input_spec) -> (params, state)
        `input_spec` describes one batch, batch axis first: a shape tuple, an array or a
        `jax.ShapeDtypeStruct`, a `jl.Masked` of those, or a tuple or dict of those for
        several inputs. It is converted once, here, so the init function given to the
        constructor always receives `jax.ShapeDtypeStruct`s (a plain shape stands for
        `input_dtype`, float32 unless set: Embedding sets int32). On a concrete key
        the init function runs op by op. On a traced key (`jax.jit(init)`, vmap,
        eval_shape) an init with 32 or more random ops becomes one jitted function,
        traced once and cached on the layer per (input spec, key type), with its
        independent random ops batched: the same bits, far fewer threefry loops to compile.
    apply(params, state, x, *, key=None, training=False, **inputs) -> (y, new_state)
        Pure: jit/vmap/grad/scan safe. `key` drives randomness while training; `inputs`
        are the layer's extra inputs (`mask=`, `initial_state=`, ...). A keyword the apply
        function given to the constructor does not take is a TypeError naming the layer.

    Fields: `init`, `apply`, `name` (the type shown by `jl.summary`), `children` (a tuple,
    or a dict for keyword children; None for a leaf), `hparams` (the constructor's
    arguments, for `repr`), `input_dtype`, `input_spec` (declared by `jl.Input`), and
    `calls` (spec -> the (child name, input spec, output spec) of each child call in
    order, set by `serial` and `compose` so that `jl.summary` can expand them).

    `init_fn, apply_fn = layer` unpacks it like a stax pair; `jl.Layer(init, apply)` makes
    a layer of two functions of your own. A Layer is a static Python value, compared by
    identity and not a pytree: close over it, or mark it static under `jax.jit`.
    """

    init: Callable
    apply: Callable
    name: str
    children: Any
    hparams: tuple
    input_dtype: Any
    input_spec: Any
    calls: Callable | None

    def __init__(self, init: Callable, apply: Callable, *, name: str | None = None,
                 children: Any = None, hparams: tuple = (), input_dtype: Any = None,
                 input_spec: Any = None, calls: Callable | None = None):
        if not (callable(init) and callable(apply)):
            raise TypeError(f"Layer: init and apply must be callables, got "
                            f"{describe(init)} and {describe(apply)}.")
        name = "Layer" if name is None else str(name)
        input_dtype = None if input_dtype is None else jnp.dtype(input_dtype)
        raw_init, raw_apply = (getattr(f, "_jl_raw", f) for f in (init, apply))
        fields = dict(init=_spec_init(raw_init, name, input_dtype, input_spec),
                      apply=_keyword_apply(raw_apply, name), name=name, children=children,
                      hparams=tuple(hparams), input_dtype=input_dtype,
                      input_spec=input_spec, calls=calls)
        for field, value in fields.items():
            object.__setattr__(self, field, value)

    def __iter__(self):
        yield self.init
        yield self.apply

    def __repr__(self) -> str:
        args = [v if k is None else f"{k}={v}" for k, v in
                ((k, _short(v)) for k, v in self.hparams)]
        return f"{self.name}({', '.join(args)})"


def _hparams(signature: inspect.Signature, args, kwargs) -> tuple:
    """The arguments a factory was called with, by name, in signature order (for repr)."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return ()
    out = []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out += [(None, v) for v in value]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out += list(value.items())
        else:
            out.append((name, value))
    return tuple(out)


def layer_factory(factory: Callable) -> Callable:
    """Decorate a public layer constructor: its Layer gets the constructor's arguments.

    `repr(jl.Dense(128, activation="relu"))` is then "Dense(features=128,
    activation='relu')": the arguments given, by name. A layer the factory left unnamed
    takes the factory's name.
    """
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **kwargs):
        layer = factory(*args, **kwargs)
        name = factory.__name__ if layer.name == "Layer" else layer.name
        return dataclasses.replace(layer, name=name,
                                   hparams=_hparams(signature, args, kwargs))

    return build


def _no_params(key, input_spec):
    del key, input_spec  # nothing to learn
    return {}, {}


def stateless(apply: Callable, *, name: str | None = None, **fields) -> Layer:
    """A layer with no params and no state: init returns ({}, {}) whatever the input."""
    return Layer(_no_params, apply, name=name, **fields)


def as_layer(where: str, layer: Any) -> Layer:
    """`layer` as a `Layer` (an (init, apply) pair is wrapped), else a TypeError naming `where`."""
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, tuple) and len(layer) == 2 and all(map(callable, layer)):
        return Layer(*layer)
    raise TypeError(f"{where}: expected a jl.Layer (an (init, apply) pair), got "
                    f"{describe(layer)}: {layer!r}.")


def child_key(key, name: int | str):
    """The key a combinator hands to the child at position `name` (or keyword `name`).

    fold_in(key, i) for a positional child, fold_in(key, crc32(name)) for a keyword child:
    appending a layer or inserting a named one leaves the other children's keys unchanged.
    """
    if key is None:
        return None
    data = name if isinstance(name, int) else zlib.crc32(name.encode()) & 0x7FFFFFFF
    return jax.random.fold_in(key, data)


def resolve_spec(layer: Layer, input_spec: Any = None):
    """The spec a model is inspected on: the one given, else the one `jl.Input` declared."""
    if input_spec is None and layer.input_spec is None:
        raise ValueError(f"{layer.name}: an input spec is required (the model does not "
                         f"start with jl.Input).")
    return as_spec(layer.input_spec if input_spec is None else input_spec,
                   layer.input_dtype or jnp.float32)


def output_spec(layer: Layer, input_spec: Any = None, params=None, state=None):
    """The abstract output of `layer` (structs): no FLOPs, nothing allocated.

    With `params`/`state` (arrays or structs) the layer's own; else an abstract init.
    """
    layer = as_layer("output_spec", layer)
    spec = resolve_spec(layer, input_spec)
    if params is None:
        with raw_init():  # shapes only: the batched jit would cost a second trace
            params, state = jax.eval_shape(lambda k: layer.init(k, spec), jax.random.key(0))

    def run(p, s, x):
        return layer.apply(p, s, x, key=None, training=False)[0]
    return jax.eval_shape(run, params, state, spec)


def shapes(tree):
    """Every struct of `tree` as its shape tuple (a Masked or tuple structure is kept)."""
    return jax.tree.map(lambda s: tuple(s.shape), tree)


def output_shape(layer: Layer, input_shape: Any = None):
    """The output shape of `layer` on `input_shape`, found with `jax.eval_shape`.

    Allocates nothing and runs no FLOPs. Returns a shape tuple, or the same tuple/Masked
    structure of shapes for a layer with several outputs.
    """
    return shapes(output_spec(layer, input_shape))


def count_params(params) -> int:
    """Total number of scalars in a params pytree (arrays or ShapeDtypeStructs)."""
    return sum(int(math.prod(getattr(leaf, "shape", ()))) for leaf in jax.tree.leaves(params))
