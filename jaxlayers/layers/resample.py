"""Resampling and borders: UpSampling1D/2D/3D, Resize, ZeroPadding1D/2D/3D, Cropping1D/2D/3D."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlayers._checks import check_one_of, check_positive_int
from jaxlayers.core import Layer, layer_factory, stateless
from jaxlayers.layers._spatial import LAYOUTS, check_input, ntuple, pairs, specialise

# PyTorch's F.interpolate mode names per dimension (Keras's UpSampling2D has "bilinear").
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}
_OUT = {1: "(N, L', C)", 2: "(N, H', W', C)", 3: "(N, D', H', W', C)"}


def _upsampling_nd(n: int, name: str, size=2, *, interpolation: str = "nearest") -> Layer:
    size = ntuple(name, "size", size, n)
    check_one_of(name, "interpolation", interpolation, ("nearest", _LINEAR[n]))

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_input(name, x, n)
        if interpolation == "nearest":
            for axis, s in enumerate(size, start=1):  # exact copies, no gather
                x = jnp.repeat(x, s, axis=axis)
            return x, state
        shape = (x.shape[0],) + tuple(d * s for d, s in zip(x.shape[1:-1], size)) + (
            x.shape[-1],)
        return jax.image.resize(x, shape, "linear", antialias=False), state

    return stateless(apply, name=name)


_UPSAMPLING_DOC = """Upsample each spatial axis by an integer factor: y has size·in positions.

    Math ("nearest"): y[b, i, c] = x[b, floor(i / size), c]  (every value repeated size
      times). ("{linear}"): {n}-linear interpolation at half-pixel centres: output i samples
      input position (i + 0.5) / size - 0.5, clamped at the borders (align_corners=False,
      as Keras, PyTorch's F.interpolate and jax.image.resize).

    Shapes: x {layout} -> y {out} = size · in per spatial axis. params {{}}, state {{}}.

    Args:
      size: an int or a tuple of {n} positive ints (default 2).
      interpolation: "nearest" (default) or "{linear}" (PyTorch's mode name).

    Raises:
      ValueError: a non-positive size or an unknown interpolation (construction); input of
        the wrong rank (trace time). TypeError: a non-float input.
{example}    """

_UPSAMPLING_EXAMPLES = {
    1: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> up = jl.UpSampling1D(2)
      >>> params, state = up.init(jax.random.key(0), (1, 3, 1))
      >>> y, _ = up.apply(params, state, jnp.array([1.0, 2, 3]).reshape(1, 3, 1))
      >>> print(y.ravel())
      [1. 1. 2. 2. 3. 3.]
""",
    2: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> up = jl.UpSampling2D((2, 3))
      >>> params, state = up.init(jax.random.key(0), (1, 2, 2, 1))
      >>> y, _ = up.apply(params, state, jnp.array([[1.0, 2], [3, 4]]).reshape(1, 2, 2, 1))
      >>> print(y[0, :, :, 0])
      [[1. 1. 1. 2. 2. 2.]
       [1. 1. 1. 2. 2. 2.]
       [3. 3. 3. 4. 4. 4.]
       [3. 3. 3. 4. 4. 4.]]
""",
    3: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> up = jl.UpSampling3D(2, interpolation="trilinear")
      >>> params, state = up.init(jax.random.key(0), (1, 2, 3, 1, 2))
      >>> y, _ = up.apply(params, state, jnp.ones((1, 2, 3, 1, 2)))
      >>> y.shape
      (1, 4, 6, 2, 2)
""",
}

UpSampling1D = specialise(_upsampling_nd, 1, "UpSampling1D", _UPSAMPLING_DOC.format(
    n=1, linear=_LINEAR[1], layout=LAYOUTS[1], out=_OUT[1],
    example=_UPSAMPLING_EXAMPLES[1]))
UpSampling2D = specialise(_upsampling_nd, 2, "UpSampling2D", _UPSAMPLING_DOC.format(
    n=2, linear=_LINEAR[2], layout=LAYOUTS[2], out=_OUT[2],
    example=_UPSAMPLING_EXAMPLES[2]))
UpSampling3D = specialise(_upsampling_nd, 3, "UpSampling3D", _UPSAMPLING_DOC.format(
    n=3, linear=_LINEAR[3], layout=LAYOUTS[3], out=_OUT[3],
    example=_UPSAMPLING_EXAMPLES[3]))

_METHODS = ("bicubic", "bilinear", "lanczos3", "lanczos5", "nearest")


@layer_factory
def Resize(height: int, width: int, *, method: str = "bilinear",
           antialias: bool = False) -> Layer:
    """Resize images to (height, width) with `jax.image.resize` (Keras's Resizing).

    Math: output pixel i samples input position (i + 0.5)·in/out - 0.5 (half-pixel
      centres, align_corners=False) with the `method`'s kernel; with antialias=True a
      downscale widens the kernel by in/out (a low-pass filter before sampling).

    Shapes: x (N, H, W, C) -> y (N, height, width, C). params {}, state {}.

    Args:
      height, width: output size, positive ints.
      method: "bilinear" (default), "nearest", "bicubic", "lanczos3" or "lanczos5".
      antialias: filter when downscaling (default False, as Keras and PyTorch;
        `jax.image.resize` defaults to True).

    Raises:
      ValueError: a non-positive size or an unknown method (construction); input of the
        wrong rank (trace time). TypeError: a non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> resize = jl.Resize(3, 5)
      >>> params, state = resize.init(jax.random.key(0), (2, 6, 4, 3))
      >>> y, _ = resize.apply(params, state, jnp.ones((2, 6, 4, 3)))
      >>> y.shape, float(y.min()), float(y.max())  # interpolation keeps a constant image
      ((2, 3, 5, 3), 1.0, 1.0)

    Where the libraries differ: "nearest" takes the pixel nearest to the half-pixel
    position, floor((i + 0.5)·in/out), as TF2/Keras and PyTorch's "nearest-exact"
    (PyTorch's "nearest" is floor(i·in/out)); "bicubic" is Keys' kernel with a = -0.5
    (TF/Keras), PyTorch uses a = -0.75. Integer upscaling with "nearest" agrees everywhere.
    """
    name = "Resize"
    height = check_positive_int(name, "height", height)
    width = check_positive_int(name, "width", width)
    check_one_of(name, "method", method, _METHODS)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_input(name, x, 2)
        shape = (x.shape[0], height, width, x.shape[-1])
        return jax.image.resize(x, shape, method, antialias=antialias), state

    return stateless(apply, name=name)


def _zero_padding_nd(n: int, name: str, padding=1) -> Layer:
    pads = ((0, 0),) + pairs(name, "padding", padding, n) + ((0, 0),)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_input(name, x, n)
        return jnp.pad(x, pads), state

    return stateless(apply, name=name)


def _cropping_nd(n: int, name: str, cropping) -> Layer:
    crops = pairs(name, "cropping", cropping, n)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_input(name, x, n)
        if any(lo + hi >= d for (lo, hi), d in zip(crops, x.shape[1:-1])):
            raise ValueError(f"{name}: cropping {crops} must leave at least one position on "
                             f"each spatial axis, got input shape {tuple(x.shape)}.")
        index = tuple(slice(lo, d - hi) for (lo, hi), d in zip(crops, x.shape[1:-1]))
        return x[(slice(None),) + index], state

    return stateless(apply, name=name)


_BORDER_DOC = """{summary}

    Math: y = x{math} on each spatial axis.

    Shapes: x {layout} -> y {out}, {shape_rule}. params {{}}, state {{}}.

    Args:
      {arg}: an int (every side), a tuple of {n} ints (symmetric per axis), or {n}
        (low, high) pairs{pair_1d} (Keras's forms){default}.

    Raises:
      ValueError: a negative or malformed {arg} (construction); input of the wrong rank{crop_err}
        (trace time). TypeError: a non-float input.
{example}    """

_BORDER_EXAMPLES = {
    ('pad', 1): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pad = jl.ZeroPadding1D((1, 2))
      >>> params, state = pad.init(jax.random.key(0), (1, 3, 1))
      >>> y, _ = pad.apply(params, state, jnp.array([1.0, 2, 3]).reshape(1, 3, 1))
      >>> print(y.ravel())
      [0. 1. 2. 3. 0. 0.]
""",
    ('pad', 2): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pad = jl.ZeroPadding2D(((1, 0), (2, 1)))
      >>> params, state = pad.init(jax.random.key(0), (2, 4, 5, 3))
      >>> y, _ = pad.apply(params, state, jnp.ones((2, 4, 5, 3)))
      >>> y.shape, float(y.sum())  # 4 + 1 + 0 rows, 5 + 2 + 1 columns; the ones kept
      ((2, 5, 8, 3), 120.0)
""",
    ('pad', 3): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pad = jl.ZeroPadding3D(1)
      >>> params, state = pad.init(jax.random.key(0), (1, 2, 3, 4, 2))
      >>> y, _ = pad.apply(params, state, jnp.ones((1, 2, 3, 4, 2)))
      >>> y.shape
      (1, 4, 5, 6, 2)
""",
    ('crop', 1): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> crop = jl.Cropping1D((1, 2))
      >>> params, state = crop.init(jax.random.key(0), (1, 6, 1))
      >>> y, _ = crop.apply(params, state, jnp.arange(6.0).reshape(1, 6, 1))
      >>> print(y.ravel())
      [1. 2. 3.]
""",
    ('crop', 2): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> crop = jl.Cropping2D(((1, 2), (0, 1)))
      >>> params, state = crop.init(jax.random.key(0), (2, 6, 5, 3))
      >>> y, _ = crop.apply(params, state, jnp.ones((2, 6, 5, 3)))
      >>> y.shape  # 6 - 1 - 2 rows, 5 - 0 - 1 columns
      (2, 3, 4, 3)
""",
    ('crop', 3): """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> crop = jl.Cropping3D(1)
      >>> params, state = crop.init(jax.random.key(0), (1, 4, 5, 6, 2))
      >>> y, _ = crop.apply(params, state, jnp.ones((1, 4, 5, 6, 2)))
      >>> y.shape
      (1, 2, 3, 4, 2)
""",
}


def _border_doc(kind: str, n: int) -> str:
    pad = kind == "pad"
    return _BORDER_DOC.format(
        summary=("Pad the spatial axes with zeros (Keras's ZeroPadding{n}D)." if pad else
                 "Crop the spatial axes (Keras's Cropping{n}D).").format(n=n),
        math=" with `low` zeros before and `high` zeros after" if pad else
        "[low : size - high]", layout=LAYOUTS[n], out=_OUT[n],
        shape_rule="size + low + high" if pad else "size - low - high",
        arg="padding" if pad else "cropping", n=n,
        pair_1d="; for 1-D also a bare (low, high) pair" if n == 1 else "",
        default=" (default 1)" if pad else "",
        crop_err="" if pad else ", cropping that leaves no position",
        example=_BORDER_EXAMPLES[kind, n])


ZeroPadding1D = specialise(_zero_padding_nd, 1, "ZeroPadding1D", _border_doc("pad", 1))
ZeroPadding2D = specialise(_zero_padding_nd, 2, "ZeroPadding2D", _border_doc("pad", 2))
ZeroPadding3D = specialise(_zero_padding_nd, 3, "ZeroPadding3D", _border_doc("pad", 3))
Cropping1D = specialise(_cropping_nd, 1, "Cropping1D", _border_doc("crop", 1))
Cropping2D = specialise(_cropping_nd, 2, "Cropping2D", _border_doc("crop", 2))
Cropping3D = specialise(_cropping_nd, 3, "Cropping3D", _border_doc("crop", 3))
