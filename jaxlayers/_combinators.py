"""Combinators: serial, parallel, fanout, residual, repeat, and the Input declaration."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from jax import lax

from jaxlayers._checks import check_positive_int, describe, is_shape
from jaxlayers.core import (Layer, as_layer, child_key, layer_factory, output_spec, shapes,
                            stateless)

__all__ = ["serial", "Sequential", "parallel", "fanout", "residual", "repeat", "Input"]


def _items(children) -> list[tuple[Any, Layer]]:
    if isinstance(children, dict):
        return list(children.items())
    return list(enumerate(children))


def _container(children, values):
    if isinstance(children, dict):
        return dict(zip(children.keys(), values))
    return tuple(values)


def _check_tree(where: str, what: str, tree, children) -> None:
    """A combinator's params/state must be the container its init returned."""
    if isinstance(children, dict):
        ok = isinstance(tree, dict) and set(tree) == set(children)
        want = f"a dict with keys {sorted(children)}"
    else:
        ok = isinstance(tree, (tuple, list)) and len(tree) == len(children)
        want = f"a tuple of {len(children)} entries, one per child"
    if not ok:
        got = (f"dict with keys {sorted(tree)}" if isinstance(tree, dict) else
               f"{type(tree).__name__} of length {len(tree)}"
               if isinstance(tree, (tuple, list)) else type(tree).__name__)
        raise ValueError(f"{where}: {what} must be {want} (as init returns it), got {got}.")


def _collect(where: str, layers: tuple, named: dict):
    if layers and named:
        raise ValueError(f"{where}: give the children all by position or all by keyword, "
                         f"not both.")
    if not (layers or named):
        raise ValueError(f"{where}: needs at least one layer.")
    if named:
        return {k: as_layer(where, v) for k, v in named.items()}
    return tuple(as_layer(where, v) for v in layers)


def route(where: str, children, inputs: Mapping[str, Any]) -> dict:
    """Keyword inputs named after children: {child name: {keyword: value}}.

    `serial(embed=..., lstm=...).apply(p, s, x, lstm={"initial_state": h})` routes
    initial_state to the child "lstm"; a positional child is named by its index as a
    string ("1"). A name that is no child, or a value that is not a dict, is a TypeError.
    """
    names = {str(name): name for name, _ in _items(children)}
    routed = {}
    for name, kwargs in inputs.items():
        if name not in names:
            raise TypeError(f"{where}: keyword input {name!r} names no child; the children "
                            f"are {sorted(names)} (pass child={{'keyword': value}}).")
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"{where}: keyword input {name!r} must be a dict of that child's "
                            f"keyword inputs, such as {{'initial_state': h}}, got "
                            f"{describe(kwargs)}.")
        routed[names[name]] = dict(kwargs)
    return routed


@layer_factory
def serial(*layers: Layer, **named_layers: Layer) -> Layer:
    """Compose layers in sequence: y = f_n(... f_2(f_1(x))).

    Children given by position keep their params and state in a tuple (`params[2]`);
    children given by keyword keep them in a dict (`serial(features=..., head=...)` gives
    `params["head"]`). Child i gets the key `fold_in(key, i)` (a keyword child the fold of
    a stable hash of its name), so the same key reproduces every child's randomness.

    Keyword inputs of apply are routed by child name:
    `model.apply(p, s, x, lstm={"initial_state": h})` calls the child "lstm" with
    `initial_state=h` (a positional child is named by its index, "1"). For wiring beyond a
    chain use `jl.compose`.

    Shapes: as the children chain them. params/state: a tuple (or dict) of the children's.

    Raises:
      TypeError: a child that is not a Layer; a keyword input naming no child.
      ValueError: no children, or children given both ways.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> model = jl.serial(jl.Dense(8, activation="relu"), jl.Dropout(0.25), jl.Dense(3))
      >>> params, state = model.init(jax.random.key(0), (2, 5))
      >>> jax.tree.map(jnp.shape, params)  # a tuple, one entry per child
      ({'bias': (8,), 'kernel': (5, 8)}, {}, {'bias': (3,), 'kernel': (8, 3)})
      >>> x = jnp.ones((2, 5))
      >>> y, state = model.apply(params, state, x, key=jax.random.key(1), training=True)
      >>> y.shape
      (2, 3)
      >>> jl.summary(jl.serial(jl.Dense(256), jl.Dense(128), jl.Dense(10)), (1, 784),
      ...            print_fn=None).total_params  # seed 003 Q6: 200,960 + 32,896 + 1,290
      235146
    """
    children = _collect("serial", layers, named_layers)
    items = _items(children)

    def calls(spec):
        out = []
        for name, child in items:
            y = output_spec(child, spec)
            out.append((name, spec, y))
            spec = y
        return out

    def init(key, spec):
        params, state = [], []
        for name, child in items:
            p, s = child.init(child_key(key, name), spec)
            spec = output_spec(child, spec, p, s)
            params.append(p)
            state.append(s)
        return _container(children, params), _container(children, state)

    def apply(params, state, x, *, key=None, training=False, **inputs):
        _check_tree("serial", "params", params, children)
        _check_tree("serial", "state", state, children)
        routed = route("serial", children, inputs)
        new_state = []
        for name, child in items:
            x, s = child.apply(params[name], state[name], x, key=child_key(key, name),
                               training=training, **routed.get(name, {}))
            new_state.append(s)
        return x, _container(children, new_state)

    first = items[0][1]
    return Layer(init, apply, name="Serial", children=children, calls=calls,
                 input_spec=first.input_spec, input_dtype=first.input_dtype)


Sequential = serial


@layer_factory
def parallel(*layers: Layer, **named_layers: Layer) -> Layer:
    """Apply layer i to input i: (x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n)).

    Shapes: a tuple of n inputs -> a tuple of n outputs; with children given by keyword,
    a dict of inputs with the same keys -> a dict of outputs (`jl.fanout("main", "skip")`
    makes one). params/state: tuple (or dict) of the children's. Keyword inputs are
    routed by child name, as in `serial`.

    Raises:
      ValueError: an input that is not a tuple of n (or a dict with the children's keys).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> both = jl.parallel(jl.Dense(3), jl.Flatten())
      >>> xs = (jnp.ones((2, 4)), jnp.ones((2, 2, 5)))
      >>> params, state = both.init(jax.random.key(0), (xs[0].shape, xs[1].shape))
      >>> (a, b), _ = both.apply(params, state, xs)
      >>> a.shape, b.shape
      ((2, 3), (2, 10))
    """
    children = _collect("parallel", layers, named_layers)
    items = _items(children)

    def _inputs(x):
        if isinstance(children, dict):
            if not isinstance(x, dict) or set(x) != set(children):
                raise ValueError(f"parallel: input must be a dict with keys "
                                 f"{sorted(children)}, got {describe(x)}.")
            return x
        if not isinstance(x, (tuple, list)) or len(x) != len(items):
            raise ValueError(f"parallel: input must be a tuple of {len(items)} inputs, got "
                             f"{describe(x)}.")
        return x

    def init(key, spec):
        specs = _inputs(spec)
        pairs = [child.init(child_key(key, name), specs[name]) for name, child in items]
        return (_container(children, [p for p, _ in pairs]),
                _container(children, [s for _, s in pairs]))

    def apply(params, state, x, *, key=None, training=False, **inputs):
        _check_tree("parallel", "params", params, children)
        _check_tree("parallel", "state", state, children)
        xs, routed = _inputs(x), route("parallel", children, inputs)
        outs = [child.apply(params[name], state[name], xs[name], key=child_key(key, name),
                            training=training, **routed.get(name, {}))
                for name, child in items]
        return (_container(children, [y for y, _ in outs]),
                _container(children, [s for _, s in outs]))

    return Layer(init, apply, name="Parallel", children=children)


@layer_factory
def fanout(*branches: int | str) -> Layer:
    """Copy the input: `fanout(n)` gives a tuple of n copies, `fanout("main", "skip")` a dict.

    The tuple feeds a positional `parallel`, the dict a keyword one
    (`serial(fanout("main", "skip"), parallel(main=f, skip=g), Add())`).

    Shapes: x -> (x, ..., x) or {name: x}. params {}, state {}.

    Raises:
      ValueError: not one positive int or one or more distinct names.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> model = jl.serial(jl.fanout("wide", "narrow"),
      ...                   jl.parallel(wide=jl.Dense(5), narrow=jl.Dense(2)),
      ...                   jl.Concatenate())
      >>> params, state = model.init(jax.random.key(0), (2, 4))
      >>> y, _ = model.apply(params, state, jnp.ones((2, 4)))
      >>> y.shape  # 5 + 2 features
      (2, 7)
    """
    if len(branches) == 1 and not isinstance(branches[0], str):
        n = check_positive_int("fanout", "n", branches[0])

        def copies(x):
            return (x,) * n
    elif branches and all(isinstance(b, str) for b in branches) and \
            len(set(branches)) == len(branches):
        def copies(x):
            return {name: x for name in branches}
    else:
        raise ValueError(f"fanout: give a positive int n or distinct branch names, got "
                         f"{branches!r}.")

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        return copies(x), state

    return stateless(apply, name="FanOut")


@layer_factory
def residual(layer: Layer) -> Layer:
    """Skip connection: y = x + f(x) (ResNet's y = F(x) + x).

    Shapes: x (N, ...) -> y of the same shape; f must keep the shape (use `jl.Branches`
    with a projection branch otherwise). params/state: those of f. Keyword inputs of
    apply go to f.

    Raises:
      ValueError: f changes the shape of its input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> block = jl.residual(jl.Dense(4))
      >>> params, state = block.init(jax.random.key(0), (2, 4))
      >>> params = jax.tree.map(jnp.zeros_like, params)  # f(x) = 0, so y = x
      >>> y, _ = block.apply(params, state, jnp.arange(8.0).reshape(2, 4))
      >>> print(y)
      [[0. 1. 2. 3.]
       [4. 5. 6. 7.]]
    """
    inner = as_layer("residual", layer)

    def init(key, spec):
        return inner.init(child_key(key, 0), spec)

    def apply(params, state, x, *, key=None, training=False, **inputs):
        fx, state = inner.apply(params, state, x, key=child_key(key, 0), training=training,
                                **inputs)
        if getattr(fx, "shape", None) != getattr(x, "shape", None):
            raise ValueError(f"residual: the wrapped {inner.name} must keep the input shape "
                             f"{tuple(x.shape)}, got {describe(fx)}; add a projection.")
        return x + fx, state

    return Layer(init, apply, name="Residual", children=(inner,),
                 input_dtype=inner.input_dtype)


@layer_factory
def repeat(layer: Layer, n: int, *, remat: bool = False) -> Layer:
    """Apply n copies of `layer` in sequence, with stacked params, under `lax.scan`.

    Compile time does not grow with n (one traced step), at some run-time cost on CPU
    (DESIGN.md §5). Copy i is initialised with `fold_in(key, i)` and, while training,
    gets the key `fold_in(key, i)` too. `remat=True` wraps the step in `jax.checkpoint`.
    Keyword inputs of apply go to every copy.

    Shapes: x -> y of the same shape (the layer must keep its input shape).
    params/state: the layer's, each leaf with a leading axis of size n.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> stack = jl.repeat(jl.Dense(4, activation="tanh"), 3)
      >>> params, state = stack.init(jax.random.key(0), (2, 4))
      >>> jax.tree.map(jnp.shape, params)  # 3 copies, stacked on a leading axis
      {'bias': (3, 4), 'kernel': (3, 4, 4)}
      >>> y, _ = stack.apply(params, state, jnp.ones((2, 4)))
      >>> y.shape
      (2, 4)
    """
    inner = as_layer("repeat", layer)
    check_positive_int("repeat", "n", n)

    def init(key, spec):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
        params, state = jax.vmap(lambda k: inner.init(k, spec))(keys)
        out = output_spec(inner, spec, jax.tree.map(lambda a: a[0], params),
                          jax.tree.map(lambda a: a[0], state))
        if jax.tree.structure(out) != jax.tree.structure(spec) or shapes(out) != shapes(spec):
            raise ValueError(f"repeat: {inner.name} must keep its input shape "
                             f"{shapes(spec)}, got {shapes(out)}.")
        return params, state

    def apply(params, state, x, *, key=None, training=False, **inputs):
        def step(h, xs):
            p, s, i = xs
            k = None if key is None else jax.random.fold_in(key, i)
            return inner.apply(p, s, h, key=k, training=training, **inputs)

        body = jax.checkpoint(step) if remat else step
        return lax.scan(body, x, (params, state, jnp.arange(n)))

    return Layer(init, apply, name="Repeat", children=(inner,))


@layer_factory
def Input(shape, *, dtype=jnp.float32, batch_size: int = 1) -> Layer:
    """Declare the input shape (without the batch axis), as Keras's `Input`.

    Identity at run time; checks that x.shape[1:] == shape. A `serial` model that starts
    with `Input` can be initialised and summarised without an input spec:
    `model.init(key)`, `jl.summary(model)` (batch size `batch_size`).

    Shapes: x (N, *shape) -> x. params {}, state {}.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> model = jl.serial(jl.Input((5,)), jl.Dense(3))
      >>> params, state = model.init(jax.random.key(0))  # no input spec needed
      >>> jl.output_shape(model)  # batch size 1 by default
      (1, 3)
      >>> y, _ = model.apply(params, state, jnp.ones((4, 5)))
      >>> y.shape
      (4, 3)
    """
    if not is_shape(shape):
        raise ValueError(f"Input: shape must be a tuple of ints (without the batch axis), "
                         f"got {shape!r}.")
    shape = tuple(int(d) for d in shape)
    check_positive_int("Input", "batch_size", batch_size)
    declared = jax.ShapeDtypeStruct((batch_size,) + shape, jnp.dtype(dtype))

    def _check(got):
        if tuple(got[1:]) != shape:
            raise ValueError(f"Input: input must have shape (N, {', '.join(map(str, shape))})"
                             f", got {tuple(got)}.")

    def init(key, spec):
        del key
        _check(spec.shape)
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        _check(x.shape)
        # the kind, not the width: float64 (gradcheck) or bfloat16 compute may replace float32
        if jnp.issubdtype(x.dtype, jnp.floating) != jnp.issubdtype(declared.dtype,
                                                                    jnp.floating):
            raise TypeError(f"Input: input must have a dtype of the kind of "
                            f"{declared.dtype}, got {x.dtype}.")
        return x, state

    return Layer(init, apply, name="Input", input_spec=declared,
                 input_dtype=declared.dtype)
