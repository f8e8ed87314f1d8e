"""The layer contract: `Layer` (an init/apply pair with a name), input specs, keys, shapes."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import math
import threading
import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as _jcore
from jax.extend.core import primitives as _prng

from jaxlayers._checks import as_spec, describe
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


# ------------------------------------------------------- init under a trace (jit, vmap)
# XLA:CPU spends ~0.1-0.3 s of CPU compiling each threefry call (a 5-trip while loop), and
# a ResNet-50 init makes ~300 of them (fold_in/split per child, bits per kernel): 8-13 s
# of compile under `jax.jit(init)`. An init called on a traced key (a user's jit, vmap,
# eval_shape) therefore traces the raw init once per (layer, input spec, key type),
# re-evaluates its jaxpr with the independent random ops of each dependency level batched
# into one call (vmap over stacked keys: the same bits as one call per key), and keeps
# that as a jitted function. On a concrete key init runs op by op as before: compiling
# one program per model measured no faster than the small per-shape kernels (shared by
# every model in the process) and made the test suite slower (benchmarks/README.md).
# Bit-identity with the raw init is pinned by tests/test_init_speed.py.

_JIT_MIN_RANDOM_OPS = 32
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
_KEY_OPS = (_prng.random_fold_in_p, _prng.random_split_p)
_local = threading.local()  # .raw: inits run their raw functions (nested, or asked for)


@contextlib.contextmanager
def raw_init():
    """Within it, every `Layer.init` runs its own init function eagerly, as before the cache:
    one small kernel per op (the reference of tests/test_init_speed.py and benchmarks/init.py)."""
    before = getattr(_local, "raw", False)
    _local.raw = True
    try:
        yield
    finally:
        _local.raw = before


def _flatten_jaxpr(jaxpr, consts, in_refs, nodes):
    """Append `jaxpr`'s equations to `nodes` as (eqn, in cells, out cells), calls inlined."""
    env = {}

    def read(v):
        return [v.val, True] if isinstance(v, _jcore.Literal) else env[v]

    env.update((v, [c, True]) for v, c in zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, in_refs))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if eqn.primitive.name in _CALLS and not eqn.effects:
            sub = eqn.params["jaxpr"]
            outs = _flatten_jaxpr(sub.jaxpr, sub.consts, ins, nodes)
        else:
            outs = [[None, False] for _ in eqn.outvars]
            nodes.append((eqn, ins, outs))
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _bind(eqn, args):
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*args, **params)
    return out if eqn.primitive.multiple_results else [out]


def _batchable(eqn) -> bool:
    """A random op on one threefry key (scalar operands): batching it over stacked keys
    keeps its bits."""
    if eqn.primitive not in (*_KEY_OPS, _prng.random_bits_p):
        return False
    impl = getattr(eqn.invars[0].aval.dtype, "_impl", None)
    return (impl is not None and impl.name == "threefry2x32"
            and all(v.aval.shape == () for v in eqn.invars))


def _group_of(eqn):
    """Which batched call an op joins: same primitive, params and operand types; bits by
    size class (threefry's counters are the flat index, so bits(k, n) is the first n of
    bits(k, m) for n <= m when partitionable; else the exact flat size)."""
    if eqn.primitive is _prng.random_bits_p:
        size = math.prod(eqn.params["shape"])
        size = (size - 1).bit_length() if jax.config.jax_threefry_partitionable else size
        return (eqn.primitive, eqn.params["bit_width"], size)
    return (eqn.primitive, tuple(sorted(eqn.params.items())),
            tuple((v.aval.shape, v.aval.dtype) for v in eqn.invars))


def _run_batched(group):
    """One call for a group of ready random ops; each op's outputs get their slice."""
    eqn = group[0][0]
    if eqn.primitive is _prng.random_bits_p:
        sizes = [math.prod(e.params["shape"]) for e, _, _ in group]
        keys = jnp.stack([ins[0][0] for _, ins, _ in group])
        bits = _prng.random_bits_p.bind(keys, bit_width=eqn.params["bit_width"],
                                        shape=(max(sizes),))
        results = [bits[i, :n].reshape(e.params["shape"])
                   for i, (n, (e, _, _)) in enumerate(zip(sizes, group))]
    else:
        args = [jnp.stack([jnp.asarray(ins[i][0], v.aval.dtype) for _, ins, _ in group])
                for i, v in enumerate(eqn.invars)]
        out, = _bind(eqn, args)
        results = list(out)
    for (_, _, (cell,)), value in zip(group, results):
        cell[:] = value, True


def _eval_batched(closed, *args):
    """Evaluate `closed` (a ClosedJaxpr) on `args` with its independent random ops batched.

    Ordinary equations run in order as soon as their inputs are ready; ready random ops
    wait, and when nothing else can run they run grouped (key derivations first, so that
    the bits of every kernel end up in as few calls as possible).
    """
    nodes = []
    outs = _flatten_jaxpr(closed.jaxpr, closed.consts, [[a, True] for a in args], nodes)
    while nodes:
        ready = []
        for eqn, ins, cells in nodes:
            if not all(done for _, done in ins):
                continue
            if _batchable(eqn):
                ready.append((eqn, ins, cells))
            else:
                for cell, value in zip(cells, _bind(eqn, [v for v, _ in ins])):
                    cell[:] = value, True
        groups = collections.defaultdict(list)
        for node in [n for n in ready if n[0].primitive in _KEY_OPS] or ready:
            groups[_group_of(node[0])].append(node)
        for group in groups.values():
            _run_batched(group)
        nodes = [n for n in nodes if not all(done for _, done in n[2])]
    return [value for value, _ in outs]


def _trace_init(raw: Callable, key, spec):
    """The ClosedJaxpr of the array leaves of raw(key, spec), and the rest of its output."""
    static = {}

    def arrays_only(k):
        with raw_init():
            leaves, static["tree"] = jax.tree.flatten(raw(k, spec))
        static["leaves"] = [None if isinstance(x, jax.Array) else x for x in leaves]
        return [x for x in leaves if isinstance(x, jax.Array)]

    return jax.make_jaxpr(arrays_only)(key), static


def _plan(raw: Callable, key, spec):
    """A cache entry: (jitted batched init, static output parts), or None to run raw.

    Raw (op by op, as before) when the init has fewer than `_JIT_MIN_RANDOM_OPS` random
    ops (its few kernels are compiled once per shape and shared by every model in the
    process, cheaper than compiling one program per model), has effects, or needs
    concrete values (`np.asarray(key)`).
    """
    try:
        closed, static = _trace_init(raw, key, spec)
    except jax.errors.JAXTypeError:
        return None
    nodes = []
    _flatten_jaxpr(closed.jaxpr, closed.consts, [[None, True]], nodes)
    if closed.effects or sum(_batchable(eqn) for eqn, _, _ in nodes) < _JIT_MIN_RANDOM_OPS:
        return None
    return jax.jit(functools.partial(_eval_batched, closed)), static


def _cached_init(raw: Callable, cache: dict, key, spec):
    """raw(key, spec); on a traced key, through the jitted batched init cached for the spec."""
    if (key is None or raw is _no_params or getattr(_local, "raw", False)
            or not isinstance(key, jax.core.Tracer)):
        return raw(key, spec)
    leaves, treedef = jax.tree.flatten(spec)
    entry_key = (treedef, tuple((s.shape, s.dtype) for s in leaves),
                 tuple(np.shape(key)), getattr(key, "dtype", None),
                 jax.config.jax_threefry_partitionable, jax.config.jax_enable_x64)
    if entry_key not in cache:
        cache[entry_key] = _plan(raw, key, spec)
    if cache[entry_key] is None:
        return raw(key, spec)
    jitted, static = cache[entry_key]
    arrays = iter(jitted(key))
    leaves = [next(arrays) if x is None else (np.array(x) if isinstance(x, np.ndarray)
                                              else x) for x in static["leaves"]]
    return jax.tree.unflatten(static["tree"], leaves)


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
        return _cached_init(raw, cache, key, as_spec(input_spec, dtype))

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
