"""`compose`: a model whose wiring is a plain Python function over named child layers."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import numpy as np

from jaxlayers._checks import describe, spec_of
from jaxlayers._paths import leaf_paths
from jaxlayers.core import Layer, as_layer, child_key, layer_factory, shapes

__all__ = ["compose"]

_RESERVED = frozenset({"training", "make_key"})


def _fmt(spec) -> str:
    return str(jax.tree.map(lambda s: f"{s.dtype}{tuple(s.shape)}", spec))


def _nth_key(key, name: str, i: int):
    """The key of call i of `name`: serial's key for that name first, then folds of it."""
    k = child_key(key, name)
    return k if i == 0 or k is None else jax.random.fold_in(k, i)


def _check_arrays(where: str, tree, what: str) -> None:
    for path, leaf in zip(leaf_paths(tree), jax.tree.leaves(tree)):
        if not isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)) and not hasattr(
                leaf, "__jax_array__") and not _is_numpy(leaf):
            at = f" at {path!r}" if path else ""
            raise TypeError(f"{where}: {what} must be arrays (or a tuple, dict or jl.Masked "
                            f"of them), got {type(leaf).__name__} {leaf!r}{at}.")


def _is_numpy(leaf) -> bool:
    return isinstance(leaf, (np.ndarray, np.generic))


class _Calls:
    """What a run of `forward` does to the children: params, threaded state, keys, specs.

    tracing=True (init): each child is initialised abstractly on its first call's input,
    later calls are checked against that, and every call's input spec is recorded.
    tracing=False (apply): each call gets its own key and updates the child's state.
    """

    def __init__(self, children, params, state, key, training: bool, tracing: bool):
        self.children, self.params, self.state = children, dict(params), dict(state)
        self.key, self.training, self.tracing = key, training, tracing
        self.counts: dict[str, int] = {}
        self.key_counts: dict[str, int] = {}
        self.first: dict[str, Any] = {}   # name -> the spec of its first call
        self.specs: list = []             # (name, input spec, output spec) per call

    def call(self, name: str, x, inputs: dict):
        child = self.children[name]
        for reserved in ("key", "training"):
            if reserved in inputs:
                raise TypeError(f"compose: m.{name}(...) takes no {reserved}=; each call's "
                                f"key comes from the child's name and `training` from apply.")
        _check_arrays(f"compose: child {name!r} ({child.name})", x, "its input")
        spec, i = spec_of(x), self.counts.get(name, 0)
        self.counts[name] = i + 1
        if self.tracing:
            self._trace_init(name, child, spec)
            key = None
        else:
            key = _nth_key(self.key, name, i)
        y, self.state[name] = child.apply(self.params[name], self.state[name], x, key=key,
                                          training=self.training, **inputs)
        self.specs.append((name, spec, spec_of(y)))
        return y

    def _trace_init(self, name, child, spec):
        if name not in self.first:
            self.first[name] = spec
            self.params[name], self.state[name] = child.init(self.key, spec)
            return
        again = jax.eval_shape(lambda k: child.init(k, spec), self.key)
        if shapes(again) != shapes((self.params[name], self.state[name])):
            raise ValueError(
                f"compose: child {name!r} ({child.name}) is called with input {_fmt(spec)}, "
                f"but its params were made for its first call's input "
                f"{_fmt(self.first[name])}: {shapes(self.params[name])} against "
                f"{shapes(again[0])}. A child called twice shares its params, so each call "
                f"needs an input they fit.")

    def make_key(self, name: str):
        if not isinstance(name, str):
            raise TypeError(f"compose: m.make_key takes a name (str), got {describe(name)}.")
        if self.key is None:
            raise ValueError(f"compose: m.make_key({name!r}) needs a PRNG key, but apply got "
                             f"key=None; pass key=jax.random.key(seed) to apply (draw keys "
                             f"only `if m.training` to run inference without one).")
        i = self.key_counts.get(name, 0)
        self.key_counts[name] = i + 1
        return _nth_key(self.key, "@" + name, i)  # "@": no child name can start so


class _Model:
    """The `m` that `forward` receives: `m.<child>(x, **inputs)`, `m.training`, `m.make_key`."""

    __slots__ = ("_calls",)

    def __init__(self, calls: _Calls):
        object.__setattr__(self, "_calls", calls)

    @property
    def training(self) -> bool:
        """apply's `training` (False while init traces forward)."""
        return self._calls.training

    def make_key(self, name: str):
        """A PRNG key for forward's own randomness: fold_in(key, crc32("@" + name)), then
        folds of it for later draws of the same name. Raises a ValueError without a key."""
        return self._calls.make_key(name)

    def __getitem__(self, name: str):
        calls = self._calls
        if name not in calls.children:
            raise AttributeError(f"compose: forward asked for the child {name!r}, which was "
                                 f"not given; the children are {sorted(calls.children)}.")
        return lambda x, **inputs: calls.call(name, x, inputs)

    def __getattr__(self, name: str):
        return self[name]

    def __setattr__(self, name, value):
        raise AttributeError(f"compose: m is read-only; forward cannot set m.{name}.")


def _forward_keywords(forward: Callable):
    try:
        parameters = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters[2:]
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


@layer_factory
def compose(forward: Callable, /, **children: Layer) -> Layer:
    """A model whose wiring is a plain Python function: forward(m, x, **inputs) -> y.

    Each child stays an explicit init/apply pair; `forward` calls them by name, as Haiku's
    and Flax's users write a model:

        def forward(m, ids, *, carry=None):
            y, h, c = m.lstm(m.embed(ids), initial_state=carry)
            return m.head(y), (h, c)

        model = jl.compose(forward, embed=jl.Embedding(V, 32),
                           lstm=jl.LSTM(128, return_sequences=True, return_state=True),
                           head=jl.Dense(V))
        params, state = model.init(key, jax.ShapeDtypeStruct((N, T), jnp.int32))
        (logits, carry), state = model.apply(params, state, ids, key=k, training=True,
                                             carry=carry)

    - `m.<child>(x, **inputs)` applies a child and returns its output (not its state);
      `m["name"]` does the same. `m.training` is apply's `training`; `m.make_key(name)`
      draws a key for forward's own randomness.
    - init runs `forward` under `jax.eval_shape` (with training=False and default
      keyword inputs) to find every child's input spec, then initialises each child on
      its first call's input. It is traceable: `jax.eval_shape(model.init, ...)`,
      `jl.output_shape` and `jl.summary` allocate nothing.
    - params and state are dicts keyed by child name. A child called twice shares its
      params (weight tying); its state threads through its calls, and the last call's
      new state is the one returned.
    - Keys: call i of child "name" gets fold_in(child_key(key, "name"), i) for i > 0 and
      child_key(key, "name") for the first call, the key `serial` gives a child of that
      name. A child is called without a key when apply has none.
    - Keyword inputs given to `model.apply` go to `forward`.

    Shapes: whatever forward computes. params/state: {child name: the child's}.

    Raises:
      TypeError: forward not callable, a child that is not a Layer (construction); a
        keyword input forward does not take, key=/training= passed to a child, forward
        returning something other than arrays (trace time).
      ValueError: no children, a reserved child name ("training", "make_key", "_...")
        (construction); a child never called while init traces forward, a child called
        again with an input its params do not fit (init); params/state without the
        children's keys (apply).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> def forward(m, x):
      ...     h = m.dense(x)
      ...     return m.dense(h) + x  # the same child twice: shared params
      >>> model = jl.compose(forward, dense=jl.Dense(4))
      >>> params, state = model.init(jax.random.key(0), (2, 4))
      >>> jax.tree.map(jnp.shape, params)
      {'dense': {'bias': (4,), 'kernel': (4, 4)}}
      >>> y, _ = model.apply(params, state, jnp.ones((2, 4)))
      >>> y.shape
      (2, 4)
    """
    if not callable(forward):
        raise TypeError(f"compose: forward must be a function forward(m, x, **inputs), got "
                        f"{describe(forward)}.")
    if not children:
        raise ValueError("compose: needs at least one child layer, given by keyword.")
    bad = sorted(n for n in children if n in _RESERVED or n.startswith("_"))
    if bad:
        raise ValueError(f"compose: child names {bad} are reserved (m.training, "
                         f"m.make_key and names starting with '_'); rename them.")
    children = {n: as_layer("compose", c) for n, c in children.items()}
    keywords = _forward_keywords(forward)
    fname = getattr(forward, "__name__", "forward")

    def trace(spec) -> _Calls:
        calls = _Calls(children, {}, {}, None, False, tracing=True)

        def run(key, x):
            calls.key = key
            y = forward(_Model(calls), x)
            _check_arrays(f"compose: {fname}", y, "its outputs")
            return y

        jax.eval_shape(run, jax.random.key(0), spec)
        missing = sorted(set(children) - set(calls.first))
        if missing:
            raise ValueError(f"compose: children {missing} are never called by {fname} "
                             f"while init traces it (with training=False and default "
                             f"keyword inputs), so their input specs are unknown.")
        return calls

    def init(key, spec):
        first = trace(spec).first
        params, state = {}, {}
        for name in first:  # in first-call order
            params[name], state[name] = children[name].init(child_key(key, name),
                                                            first[name])
        return params, state

    def _check_trees(params, state):
        for what, tree in (("params", params), ("state", state)):
            if not isinstance(tree, dict) or set(tree) != set(children):
                got = sorted(tree) if isinstance(tree, dict) else describe(tree)
                raise ValueError(f"compose: {what} must be a dict with the children's keys "
                                 f"{sorted(children)} (as init returns it), got {got}.")

    def apply(params, state, x, *, key=None, training=False, **inputs):
        _check_trees(params, state)
        if keywords is not None:
            unknown = sorted(set(inputs) - keywords)
            if unknown:
                raise TypeError(f"compose: unknown keyword input {unknown[0]!r}; {fname} "
                                f"takes {sorted(keywords) or 'none'}.")
        calls = _Calls(children, params, state, key, training, tracing=False)
        y = forward(_Model(calls), x, **inputs)
        _check_arrays(f"compose: {fname}", y, "its outputs")
        return y, {name: calls.state[name] for name in children}

    return Layer(init, apply, name="Compose", children=children,
                 calls=lambda spec: trace(spec).specs)
