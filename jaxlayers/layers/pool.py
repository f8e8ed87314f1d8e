"""Pooling: Max/AvgPool1D/2D/3D, GlobalMax/AvgPool1D/2D/3D, AdaptiveAvgPool2D."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlayers._checks import check_float
from jaxlayers.core import Layer, Masked, layer_factory, stateless
from jaxlayers.layers._spatial import (LAYOUTS, check_input, explicit_pads, ntuple,
                                       parse_padding, specialise)

_OUT = {1: "(N, L', C)", 2: "(N, H', W', C)", 3: "(N, D', H', W', C)"}


def _window_counts(size: int, window: int, stride: int, pad: tuple[int, int], out: int):
    """How many unpadded elements each output's window covers along one axis."""
    start = np.arange(out) * stride - pad[0]
    return np.minimum(start + window, size) - np.maximum(start, 0)


def _pool_nd(kind: str, n: int, name: str, pool_size=2, strides=None, *,
             padding="valid") -> Layer:
    pool_size = ntuple(name, "pool_size", pool_size, n)
    strides = pool_size if strides is None else ntuple(name, "strides", strides, n)
    padding = parse_padding(name, padding, n)
    if not isinstance(padding, str) and any(
            max(pair) >= k for pair, k in zip(padding, pool_size)):
        raise ValueError(f"{name}: padding must be smaller than pool_size {pool_size} on "
                         f"each side (a window would hold only padding), got {padding}.")
    window, step = (1,) + pool_size + (1,), (1,) + strides + (1,)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_input(name, x, n)
        pads = ((0, 0),) + explicit_pads(name, x.shape, padding, pool_size, strides,
                                         "pool") + ((0, 0),)
        if kind == "max":
            # a concrete (NumPy) -inf, max's identity, makes lax pick reduce_window_max, which
            # has a gradient (jnp.array(-inf) is not concrete under jit, and grad then fails)
            return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, window, step,
                                     pads), state
        # sums in at least float32 (bfloat16 sums of many terms lose digits)
        compute = jnp.promote_types(x.dtype, jnp.float32)
        total = lax.reduce_window(x.astype(compute), np.array(0, compute), lax.add, window,
                                  step, pads)
        if not any(lo or hi for lo, hi in pads):
            # "valid": the window size; a reduce_window over ones is constant-folded at
            # compile time and doubled LeNet's compile time (DESIGN.md §5)
            return (total / math.prod(pool_size)).astype(x.dtype), state
        counts = functools.reduce(np.multiply.outer, [
            _window_counts(size, k, s, pad, out) for size, k, s, pad, out in
            zip(x.shape[1:-1], pool_size, strides, pads[1:-1], total.shape[1:-1])])
        counts = jnp.asarray(counts[None, ..., None], compute)
        return (total / jnp.broadcast_to(counts, total.shape)).astype(x.dtype), state

    return stateless(apply, name=name)


_POOL_DOC = """{Kind} pooling over {n}-D windows: y = {op} of x over each pool_size window.

    Math: y[b, o, c] = {op}_{{m < pool_size}} x_pad[b, strides·o + m, c]{avg_math}
    Output size per axis: floor((in + pad_low + pad_high - pool_size) / strides) + 1; "same"
    gives ceil(in / strides) (odd padding at the end, as Keras and lax).

    Shapes: x {layout} -> y {out}. params {{}}, state {{}}.

    Args:
      pool_size: an int or a tuple of {n} ints (default 2).
      strides: an int or a tuple of {n} ints; default pool_size (Keras; non-overlapping).
      padding: "valid", "same", an int, {n} ints or {n} (low, high) pairs; each padding
        smaller than the window.

    Raises:
      ValueError: a non-positive pool_size/strides, an unknown padding name, padding not
        smaller than the window (construction); input of the wrong rank, a window larger
        than the padded input (trace time).
      TypeError: a non-float input.
{example}    {note}"""

_MAX_NOTE = """
    Padded positions count as -inf (never picked), as PyTorch's max_pool and Keras.
    """
_AVG_NOTE = """
    Padded positions are left out of the mean: the divisor is the number of real elements
    in the window (PyTorch's count_include_pad=False, Keras's "same"). With "valid" every
    window is full and the divisor is the window size.
    """

_POOL_EXAMPLES = {
    ('max', 1): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.MaxPool1D(2, padding="same")
      >>> x = jnp.array([1.0, 3, 2, 5, 4]).reshape(1, 5, 1)  # (N, L, C)
      >>> params, state = pool.init(jax.random.key(0), x.shape)
      >>> y, _ = pool.apply(params, state, x)
      >>> print(y.ravel())  # windows [1, 3], [2, 5], [4, pad]: ceil(5 / 2) outputs
      [3. 5. 4.]
""",
    ('max', 2): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.MaxPool2D(2)
      >>> x = jnp.array([[1.0, 3, 2, 4], [5, 6, 1, 2], [1, 2, 3, 4], [0, 1, 7, 8]])
      >>> params, state = pool.init(jax.random.key(0), (1, 4, 4, 1))
      >>> y, _ = pool.apply(params, state, x.reshape(1, 4, 4, 1))
      >>> print(y[0, :, :, 0])  # seed 003 Q13: 2x2 windows, stride 2
      [[6. 4.]
       [2. 8.]]
""",
    ('max', 3): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.MaxPool3D((2, 2, 3))
      >>> params, state = pool.init(jax.random.key(0), (2, 4, 5, 6, 3))
      >>> y, _ = pool.apply(params, state, jnp.arange(720.0).reshape(2, 4, 5, 6, 3))
      >>> y.shape  # floor(in / pool_size) per axis
      (2, 2, 2, 2, 3)
      >>> float(y[0, 0, 0, 0, 0])  # the window's last x[0, 1, 1, 2, 0] = 1·90 + 1·18 + 2·3
      114.0
""",
    ('avg', 1): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.AvgPool1D(3, strides=1)
      >>> x = jnp.array([1.0, 2, 3, 4, 8]).reshape(1, 5, 1)  # (N, L, C)
      >>> params, state = pool.init(jax.random.key(0), x.shape)
      >>> y, _ = pool.apply(params, state, x)
      >>> print(y.ravel())  # overlapping windows of 3
      [2. 3. 5.]
""",
    ('avg', 2): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.AvgPool2D(2)
      >>> x = jnp.array([[1.0, 3, 2, 4], [5, 6, 1, 2], [1, 2, 3, 4], [0, 1, 7, 8]])
      >>> params, state = pool.init(jax.random.key(0), (1, 4, 4, 1))
      >>> y, _ = pool.apply(params, state, x.reshape(1, 4, 4, 1))
      >>> print(y[0, :, :, 0])  # seed 003 Q13: 15/4, 9/4, 4/4, 22/4
      [[3.75 2.25]
       [1.   5.5 ]]
""",
    ('avg', 3): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.AvgPool3D(2, padding="same")
      >>> params, state = pool.init(jax.random.key(0), (1, 3, 5, 4, 2))
      >>> y, _ = pool.apply(params, state, jnp.ones((1, 3, 5, 4, 2)))
      >>> y.shape  # "same": ceil(in / 2) per axis
      (1, 2, 3, 2, 2)
      >>> float(y.min()), float(y.max())  # padded positions are not counted in the mean
      (1.0, 1.0)
""",
}


def _pool_doc(kind: str, n: int) -> str:
    avg = kind == "avg"
    return _POOL_DOC.format(
        Kind="Average" if avg else "Max", n=n, op="mean" if avg else "max",
        avg_math=",\n      the mean over the window's unpadded elements only." if avg else "",
        layout=LAYOUTS[n], out=_OUT[n], note=_AVG_NOTE if avg else _MAX_NOTE,
        example=_POOL_EXAMPLES[kind, n])


def _specialise_pool(kind, n, name):
    return specialise(functools.partial(_pool_nd, kind), n, name, _pool_doc(kind, n))


MaxPool1D = _specialise_pool("max", 1, "MaxPool1D")
MaxPool2D = _specialise_pool("max", 2, "MaxPool2D")
MaxPool3D = _specialise_pool("max", 3, "MaxPool3D")
AvgPool1D = _specialise_pool("avg", 1, "AvgPool1D")
AvgPool2D = _specialise_pool("avg", 2, "AvgPool2D")
AvgPool3D = _specialise_pool("avg", 3, "AvgPool3D")


def _masked_global(kind: str, name: str, x: Masked, keepdims: bool):
    """Pool (N, T, C) values over their valid steps only; an all-padding row gives 0."""
    check_float(name, x.values)
    if x.values.ndim != 3 or tuple(x.mask.shape) != x.values.shape[:2]:
        raise ValueError(f"{name}: a jl.Masked input must hold values (N, T, C) and a mask "
                         f"(N, T), got values {tuple(x.values.shape)} and mask "
                         f"{tuple(x.mask.shape)}.")
    v = x.values
    valid = jnp.broadcast_to(x.mask.astype(bool)[:, :, None], v.shape)
    count = jnp.sum(valid, axis=1, keepdims=True)
    if kind == "max":
        y = jnp.max(jnp.where(valid, v, jnp.array(-jnp.inf, v.dtype)), axis=1, keepdims=True)
    else:
        y = jnp.sum(jnp.where(valid, v, jnp.zeros_like(v)), axis=1, keepdims=True)
        y = y / jnp.maximum(count, 1).astype(v.dtype)
    y = jnp.where(count > 0, y, jnp.zeros_like(y))
    return y if keepdims else y[:, 0, :]


def _global_pool_nd(kind: str, n: int, name: str, *, keepdims: bool = False) -> Layer:
    axes = tuple(range(1, n + 1))

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        if n == 1 and isinstance(x, Masked):
            return _masked_global(kind, name, x, keepdims), state
        check_input(name, x, n)
        if kind == "max":
            return jnp.max(x, axis=axes, keepdims=keepdims), state
        # mean in at least float32 (as the norms), back to the input's dtype
        compute = jnp.promote_types(x.dtype, jnp.float32)
        return jnp.mean(x.astype(compute), axis=axes, keepdims=keepdims).astype(x.dtype), state

    return stateless(apply, name=name)


_GLOBAL_DOC = """Global {kind} pooling: the {op} over every spatial position, per channel.

    Math: y[b, c] = {op}_{{positions p}} x[b, p, c]  (seed 003: GAP of [[1,2,3],[4,5,6],[7,8,9]]
    is 45/9 = 5.0; seed 004: H×W×C -> C).

    Shapes: x {layout} -> y (N, C), or (N, {ones}C) with keepdims=True. params {{}}, state {{}}.
    {masked}
    Args:
      keepdims: keep the pooled axes with size 1 (default False, as Keras).

    Raises:
      ValueError: input of the wrong rank. TypeError: a non-float input{raises_masked}.
{example}    """

_MASKED_DOC = """A `jl.Masked` (values (N, T, C), mask (N, T)) is pooled over its valid steps
    only (the mask is consumed; a row with no valid step gives 0), as Keras's masked
    GlobalAveragePooling1D.
"""

_GLOBAL_EXAMPLES = {
    ('max', 1): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.GlobalMaxPool1D()
      >>> x = jl.Masked(jnp.array([1.0, 3, 2, 9]).reshape(1, 4, 1),  # values (N, T, C)
      ...               jnp.array([[True, True, True, False]]))  # mask (N, T)
      >>> params, state = pool.init(jax.random.key(0), jnp.ones((1, 4, 1)))
      >>> y, _ = pool.apply(params, state, x)  # the padded 9 is left out
      >>> print(y)
      [[3.]]
""",
    ('max', 2): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.GlobalMaxPool2D()
      >>> x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
      >>> params, state = pool.init(jax.random.key(0), x.shape)
      >>> y, _ = pool.apply(params, state, x)
      >>> print(y)
      [[9.]]
""",
    ('max', 3): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.GlobalMaxPool3D(keepdims=True)
      >>> params, state = pool.init(jax.random.key(0), (2, 2, 3, 4, 5))
      >>> y, _ = pool.apply(params, state, jnp.ones((2, 2, 3, 4, 5)))
      >>> y.shape
      (2, 1, 1, 1, 5)
""",
    ('avg', 1): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.GlobalAvgPool1D()
      >>> x = jl.Masked(jnp.array([1.0, 2, 3, 9]).reshape(1, 4, 1),  # values (N, T, C)
      ...               jnp.array([[True, True, True, False]]))  # mask (N, T)
      >>> params, state = pool.init(jax.random.key(0), jnp.ones((1, 4, 1)))
      >>> y, _ = pool.apply(params, state, x)  # the mean of the 3 valid steps
      >>> print(y)
      [[2.]]
""",
    ('avg', 2): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.GlobalAvgPool2D()
      >>> x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
      >>> params, state = pool.init(jax.random.key(0), x.shape)
      >>> y, _ = pool.apply(params, state, x)
      >>> print(y)  # seed 003 Q13: 45 / 9
      [[5.]]
""",
    ('avg', 3): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.GlobalAvgPool3D()
      >>> params, state = pool.init(jax.random.key(0), (2, 2, 3, 4, 5))
      >>> y, _ = pool.apply(params, state, jnp.ones((2, 2, 3, 4, 5)))
      >>> y.shape
      (2, 5)
""",
}


def _specialise_global(kind, n, name):
    doc = _GLOBAL_DOC.format(
        kind="max" if kind == "max" else "average", op="max" if kind == "max" else "mean",
        layout=LAYOUTS[n], ones="1, " * n, masked=_MASKED_DOC if n == 1 else "",
        raises_masked="" if n == 1 else ", or a jl.Masked", example=_GLOBAL_EXAMPLES[kind, n])
    return specialise(functools.partial(_global_pool_nd, kind), n, name, doc)


GlobalMaxPool1D = _specialise_global("max", 1, "GlobalMaxPool1D")
GlobalMaxPool2D = _specialise_global("max", 2, "GlobalMaxPool2D")
GlobalMaxPool3D = _specialise_global("max", 3, "GlobalMaxPool3D")
GlobalAvgPool1D = _specialise_global("avg", 1, "GlobalAvgPool1D")
GlobalAvgPool2D = _specialise_global("avg", 2, "GlobalAvgPool2D")
GlobalAvgPool3D = _specialise_global("avg", 3, "GlobalAvgPool3D")


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix: row i averages [floor(i·size/out), ceil((i+1)·size/out))."""
    a = np.zeros((out, size), np.float64)
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        a[i, start:end] = 1.0 / (end - start)
    return a


@layer_factory
def AdaptiveAvgPool2D(output_size) -> Layer:
    """Average pooling to a fixed output size, whatever the input size (PyTorch's).

    Math: y[b, i, j, c] = mean of x[b, h0:h1, w0:w1, c] with h0 = floor(i·H / out_h),
      h1 = ceil((i + 1)·H / out_h) (w likewise): windows may overlap and differ in size by
      one. Computed as two small averaging matmuls (one per axis), in at least float32.

    Shapes: x (N, H, W, C) -> y (N, out_h, out_w, C). params {}, state {}.

    Args:
      output_size: an int (square) or (out_h, out_w), positive. An output larger than the
        input repeats rows (as PyTorch).

    Raises:
      ValueError: a non-positive output_size (construction); input of the wrong rank
        (trace time). TypeError: a non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pool = jl.AdaptiveAvgPool2D(2)
      >>> x = jnp.arange(20.0).reshape(1, 5, 4, 1)  # x[0, i, j, 0] = 4i + j
      >>> params, state = pool.init(jax.random.key(0), x.shape)
      >>> y, _ = pool.apply(params, state, x)  # rows [0, 3), [2, 5); columns [0, 2), [2, 4)
      >>> print(y[0, :, :, 0])
      [[ 4.5  6.5]
       [12.5 14.5]]

    Keras has no adaptive pooling; PyTorch's `AdaptiveAvgPool2d(None)` (keep a size) is not
    supported.
    """
    name = "AdaptiveAvgPool2D"
    out_h, out_w = ntuple(name, "output_size", output_size, 2)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_input(name, x, 2)
        compute = jnp.promote_types(x.dtype, jnp.float32)
        a_h = jnp.asarray(_adaptive_matrix(x.shape[1], out_h), compute)
        a_w = jnp.asarray(_adaptive_matrix(x.shape[2], out_w), compute)
        hi = lax.Precision.HIGHEST  # an average, not a bfloat16 matmul on TPU
        y = jnp.einsum("ih,nhwc->niwc", a_h, x.astype(compute), precision=hi)
        y = jnp.einsum("jw,niwc->nijc", a_w, y, precision=hi)
        return y.astype(x.dtype), state

    return stateless(apply, name=name)

