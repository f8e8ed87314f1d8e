"""The layer contract (an init/apply pair), the combinators, and shape inspection."""

from __future__ import annotations

import math
import zlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxlayers._checks import as_struct, check_positive_int, describe, is_shape, to_shape_spec
from jaxlayers.masked import Masked

__all__ = ["Layer", "Masked", "serial", "Sequential", "parallel", "fanout", "residual",
           "repeat", "Input", "output_shape", "summary", "count_params", "child_key"]


class _Pair(NamedTuple):
    init: Callable
    apply: Callable


class Layer(_Pair):
    """A layer: the pair `(init, apply)`, with a display name for `jl.summary`.

    init(key, input_shape) -> (params, state)
        `input_shape` is the full shape of one batch, batch axis first (or an array,
        a `jax.ShapeDtypeStruct`, or a tuple of those for a layer with several inputs).
    apply(params, state, x, *, key=None, training=False) -> (y, new_state)
        Pure: jit/vmap/grad/scan safe. `key` drives randomness while training.

    `init_fn, apply_fn = layer` unpacks it like a stax pair. `Layer(init, apply)` makes a
    layer from two functions of your own; it prints as "Layer" in `jl.summary` unless a
    `name` is given. `children` (a tuple, or a dict for keyword children) is set by the
    combinators so that `jl.summary` can show the layers inside. `input_dtype` is the
    dtype a plain shape tuple stands for (float32 unless set: `Embedding` sets int32, so
    `serial(Embedding(...), LSTM(...)).init(key, (N, T))` reads (N, T) as token ids).
    """

    # Class-level defaults: namedtuple machinery (`_make`, pytree unflattening) builds
    # instances without calling __new__'s keywords, and then these apply.
    name: str = "Layer"
    children: Any = None
    input_spec: Any = None
    input_dtype: Any = None

    def __new__(cls, init: Callable, apply: Callable, *, name: str | None = None,
                children: Any = None, input_spec: Any = None, input_dtype: Any = None):
        self = super().__new__(cls, init, apply)
        if input_dtype is not None:
            self.input_dtype = jnp.dtype(input_dtype)
        if name is not None:
            self.name = name
        if children is not None:
            self.children = children
        if input_spec is not None:
            self.input_spec = input_spec
        return self

    def __repr__(self) -> str:
        return f"<jaxlayers {self.name}>"


def _check_layer(where: str, layer: Any) -> None:
    if not (isinstance(layer, tuple) and len(layer) == 2 and all(map(callable, layer))):
        raise TypeError(f"{where}: every child must be a jl.Layer (an (init, apply) pair), "
                        f"got {layer!r}.")


def _as_layer(layer: Any) -> Layer:
    return layer if isinstance(layer, Layer) else Layer(*layer)


def child_key(key, name: int | str):
    """The key a combinator hands to the child at position `name` (or keyword `name`).

    fold_in(key, i) for a positional child, fold_in(key, crc32(name)) for a keyword child:
    appending a layer or inserting a named one leaves the other children's keys unchanged.
    """
    if key is None:
        return None
    data = name if isinstance(name, int) else zlib.crc32(name.encode()) & 0x7FFFFFFF
    return jax.random.fold_in(key, data)


def _items(children) -> list[tuple[Any, Layer]]:
    if isinstance(children, dict):
        return list(children.items())
    return list(enumerate(children))


def _container(children, values):
    if isinstance(children, dict):
        return dict(zip(children.keys(), values))
    return tuple(values)


def _resolve_spec(layer: Layer, input_shape: Any):
    if input_shape is None:
        if layer.input_spec is None:
            raise ValueError(f"{layer.name}: input_shape is required (the model does not "
                             f"start with jl.Input).")
        return layer.input_spec
    return as_struct(input_shape, layer.input_dtype or jnp.float32)


def _out_spec(layer: Layer, params, state, spec):
    """Abstract output of `layer` on `spec` (no FLOPs, no allocation)."""
    def run(p, s, x):
        return layer.apply(p, s, x, key=None, training=False)[0]
    return jax.eval_shape(run, params, state, spec)


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
    children = dict(named) if named else tuple(layers)
    if not children:
        raise ValueError(f"{where}: needs at least one layer.")
    for _, layer in _items(children):
        _check_layer(where, layer)
    if isinstance(children, dict):
        return {k: _as_layer(v) for k, v in children.items()}
    return tuple(_as_layer(v) for v in children)


def serial(*layers: Layer, **named_layers: Layer) -> Layer:
    """Compose layers in sequence: y = f_n(... f_2(f_1(x))).

    Children given by position keep their params and state in a tuple (`params[2]`);
    children given by keyword keep them in a dict (`serial(features=..., head=...)` gives
    `params["head"]`). Child i gets the key `fold_in(key, i)` (a keyword child the fold of
    a stable hash of its name), so the same key reproduces every child's randomness.

    Shapes: as the children chain them. params/state: a tuple (or dict) of the children's.
    """
    children = _collect("serial", layers, named_layers)
    items = _items(children)

    def init(key, input_shape=None):
        spec = _resolve_spec(layer, input_shape)
        params, state = [], []
        for name, child in items:
            p, s = child.init(child_key(key, name), to_shape_spec(spec))
            spec = _out_spec(child, p, s, spec)
            params.append(p)
            state.append(s)
        return _container(children, params), _container(children, state)

    def apply(params, state, x, *, key=None, training=False):
        _check_tree("serial", "params", params, children)
        _check_tree("serial", "state", state, children)
        new_state = []
        for name, child in items:
            x, s = child.apply(params[name], state[name], x,
                               key=child_key(key, name), training=training)
            new_state.append(s)
        return x, _container(children, new_state)

    first = items[0][1]
    layer = Layer(init, apply, name="Serial", children=children,
                  input_spec=first.input_spec, input_dtype=first.input_dtype)
    return layer


Sequential = serial


def parallel(*layers: Layer, **named_layers: Layer) -> Layer:
    """Apply layer i to input i: (x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n)).

    Shapes: a tuple of n inputs -> a tuple of n outputs (a dict of inputs when the
    children are given by keyword). params/state: tuple (or dict) of the children's.
    """
    children = _collect("parallel", layers, named_layers)
    items = _items(children)

    def _inputs(x):
        n = len(items)
        if isinstance(children, dict):
            if not isinstance(x, dict) or set(x) != set(children):
                raise ValueError(f"parallel: input must be a dict with keys "
                                 f"{sorted(children)}, got {x!r}.")
            return x
        if not isinstance(x, (tuple, list)) or len(x) != n:
            got = describe(x)
            raise ValueError(f"parallel: input must be a tuple of {n} inputs, got {got}.")
        return x

    def init(key, input_shape):
        specs = _inputs(as_struct(input_shape) if not isinstance(input_shape, dict)
                        else {k: as_struct(v) for k, v in input_shape.items()})
        pairs = [child.init(child_key(key, name), to_shape_spec(specs[name]))
                 for name, child in items]
        return (_container(children, [p for p, _ in pairs]),
                _container(children, [s for _, s in pairs]))

    def apply(params, state, x, *, key=None, training=False):
        _check_tree("parallel", "params", params, children)
        _check_tree("parallel", "state", state, children)
        xs = _inputs(x)
        outs = [child.apply(params[name], state[name], xs[name],
                            key=child_key(key, name), training=training)
                for name, child in items]
        return (_container(children, [y for y, _ in outs]),
                _container(children, [s for _, s in outs]))

    return Layer(init, apply, name="Parallel", children=children)


def fanout(n: int) -> Layer:
    """Copy the input n times: x -> (x, ..., x), to feed `parallel` branches.

    Shapes: x -> a tuple of n copies of x. params {}, state {}.
    """
    check_positive_int("fanout", "n", n)

    def init(key, input_shape):
        del key, input_shape
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        return (x,) * n, state

    return Layer(init, apply, name=f"FanOut({n})")


def residual(layer: Layer) -> Layer:
    """Skip connection: y = x + f(x) (ResNet's y = F(x) + x).

    Shapes: x (N, ...) -> y of the same shape; f must keep the shape (wrap a projection
    into f's other branch with `serial(fanout(2), parallel(f, proj), Add())` otherwise).
    params/state: those of f.

    Raises:
      ValueError: f changes the shape of its input.
    """
    _check_layer("residual", layer)
    inner = _as_layer(layer)

    def init(key, input_shape):
        return inner.init(child_key(key, 0), _resolve_spec(layer, input_shape))

    def apply(params, state, x, *, key=None, training=False):
        fx, state = inner.apply(params, state, x, key=child_key(key, 0), training=training)
        if getattr(fx, "shape", None) != getattr(x, "shape", None):
            raise ValueError(f"residual: the wrapped {inner.name} must keep the input shape "
                             f"{tuple(x.shape)}, got {tuple(fx.shape)}; add a projection.")
        return x + fx, state

    layer = Layer(init, apply, name=f"Residual({inner.name})", children=(inner,),
                  input_dtype=inner.input_dtype)
    return layer


def repeat(layer: Layer, n: int, *, remat: bool = False) -> Layer:
    """Apply n copies of `layer` in sequence, with stacked params, under `lax.scan`.

    Compile time does not grow with n (one traced step), at some run-time cost on CPU
    (DESIGN.md §5). Copy i is initialised with `fold_in(key, i)` and, while training,
    gets the key `fold_in(key, i)` too. `remat=True` wraps the step in `jax.checkpoint`.

    Shapes: x -> y of the same shape (the layer must keep its input shape).
    params/state: the layer's, each leaf with a leading axis of size n.
    """
    _check_layer("repeat", layer)
    check_positive_int("repeat", "n", n)
    inner = _as_layer(layer)

    def init(key, input_shape):
        spec = as_struct(input_shape)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
        params, state = jax.vmap(lambda k: inner.init(k, to_shape_spec(spec)))(keys)
        out = _out_spec(inner, jax.tree.map(lambda a: a[0], params),
                        jax.tree.map(lambda a: a[0], state), spec)
        if out.shape != spec.shape:
            raise ValueError(f"repeat: {inner.name} must keep its input shape "
                             f"{spec.shape}, got {out.shape}.")
        return params, state

    def apply(params, state, x, *, key=None, training=False):
        def step(h, inputs):
            p, s, i = inputs
            k = None if key is None else jax.random.fold_in(key, i)
            h, s = inner.apply(p, s, h, key=k, training=training)
            return h, s

        body = jax.checkpoint(step) if remat else step
        x, state = lax.scan(body, x, (params, state, jnp.arange(n)))
        return x, state

    return Layer(init, apply, name=f"Repeat({inner.name}, {n})", children=(inner,))


def Input(shape, *, dtype=jnp.float32, batch_size: int = 1) -> Layer:
    """Declare the input shape (without the batch axis), as Keras's `Input`.

    Identity at run time; checks that x.shape[1:] == shape. A `serial` model that starts
    with `Input` can be initialised and summarised without an input shape:
    `model.init(key)`, `jl.summary(model)` (batch size `batch_size`).

    Shapes: x (N, *shape) -> x. params {}, state {}.
    """
    if not is_shape(shape):
        raise ValueError(f"Input: shape must be a tuple of ints (without the batch axis), "
                         f"got {shape!r}.")
    shape = tuple(int(d) for d in shape)
    check_positive_int("Input", "batch_size", batch_size)
    spec = jax.ShapeDtypeStruct((batch_size,) + shape, jnp.dtype(dtype))

    def _check(got):
        if tuple(got[1:]) != shape:
            raise ValueError(f"Input: input must have shape (N, {', '.join(map(str, shape))})"
                             f", got {tuple(got)}.")

    def init(key, input_shape=None):
        del key
        if input_shape is not None:
            _check(as_struct(input_shape).shape)
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        _check(x.shape)
        # the kind, not the width: float64 (gradcheck) or bfloat16 compute may replace float32
        if jnp.issubdtype(x.dtype, jnp.floating) != jnp.issubdtype(spec.dtype, jnp.floating):
            raise TypeError(f"Input: input must have a dtype of the kind of {spec.dtype}, "
                            f"got {x.dtype}.")
        return x, state

    return Layer(init, apply, name="Input", input_spec=spec)


def _shapes(tree):
    return jax.tree.map(lambda s: tuple(s.shape), tree)


def output_shape(layer: Layer, input_shape: Any = None):
    """The output shape of `layer` on `input_shape`, found with `jax.eval_shape`.

    Allocates nothing and runs no FLOPs. Returns a shape tuple, or the same tuple/Masked
    structure of shapes for a layer with several outputs.
    """
    spec = _resolve_spec(_as_layer(layer), input_shape)
    params, state = jax.eval_shape(lambda k: layer.init(k, to_shape_spec(spec)),
                                   jax.random.key(0))
    return _shapes(_out_spec(_as_layer(layer), params, state, spec))


def _size(leaf) -> int:
    return int(math.prod(getattr(leaf, "shape", ())))


def count_params(params) -> int:
    """Total number of scalars in a params pytree (arrays or ShapeDtypeStructs)."""
    return sum(_size(leaf) for leaf in jax.tree.leaves(params))


def _summary_rows(layer, params, state, spec, path):
    if layer.name == "Serial" and layer.children is not None:
        rows = []
        for name, child in _items(layer.children):
            child_rows, spec = _summary_rows(child, params[name], state[name], spec,
                                             path + (str(name),))
            rows += child_rows
        return rows, spec
    out = _out_spec(layer, params, state, spec)
    return [("/".join(path) or "-", layer.name, _shapes(out), count_params(params),
             count_params(state))], out


def summary(layer: Layer, input_shape: Any = None, *, print_fn: Callable | None = print) -> str:
    """Print (and return) a Keras-like table: layer path, type, output shape, params.

    Nested `serial` models are expanded; other combinators show as one row holding their
    children's params. Shapes include the batch axis. Computed with `jax.eval_shape`, so
    even a 138M-parameter model is summarised without allocating it.
    """
    layer = _as_layer(layer)
    spec = _resolve_spec(layer, input_shape)
    params, state = jax.eval_shape(lambda k: layer.init(k, to_shape_spec(spec)),
                                   jax.random.key(0))
    rows, _ = _summary_rows(layer, params, state, spec, ())
    header = ("Layer (path)", "Type", "Output shape", "Param #")
    table = [header] + [(p, t, str(s), f"{n:,}") for p, t, s, n, _ in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    line = "-" * (sum(widths) + 6)

    def fmt(r):
        return "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                          r[2].ljust(widths[2]), r[3].rjust(widths[3])])

    total, extra = count_params(params), count_params(state)
    text = "\n".join([line, fmt(header), line, *map(fmt, table[1:]), line,
                      f"Total params: {total:,}",
                      f"Non-trainable state: {extra:,}", line])
    if print_fn is not None:
        print_fn(text)
    return text
