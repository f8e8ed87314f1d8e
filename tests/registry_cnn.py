"""Conformance cases for the convolution, pooling, resampling, LRN and spatial-dropout layers.

To be merged into tests/registry.py's CASES (`CASES += CNN_CASES`). Shapes are tiny and odd,
with stride 2 and two groups where they apply; each case lists the bad inputs its layer must
refuse at trace time: a missing batch axis, wrong channels, an int input, a jl.Masked, a
window larger than the padded input. Every case has an independent reference: PyTorch's
functional ops on the CPU in float64 (layouts and kernels converted explicitly), or float64
NumPy from the docstrings' formulas where PyTorch differs (Resize's half-pixel "nearest",
bicubic a = -0.5, lanczos).
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import jaxlayers as jl
from jaxlayers.layers import conv, lrn, pool, resample, spatial_dropout
from registry import Case, S

_LAYOUT = {3: r"\(N, L, C\)", 4: r"\(N, H, W, C\)", 5: r"\(N, D, H, W, C\)"}


def _shape_re(shape) -> str:
    return re.escape(str(tuple(shape)))


def _rank(layer: str, shape) -> tuple:
    """The input without its batch axis: a ValueError that asks for one."""
    unbatched = tuple(shape[1:])
    return (unbatched, ValueError, rf"{layer}: input must have rank {len(shape)} "
                                   rf"{_LAYOUT[len(shape)]}, got shape {_shape_re(unbatched)}; "
                                   rf"add a batch axis\.")


def _channels(layer: str, expected: int, shape) -> tuple:
    return (shape, ValueError, rf"{layer}: input must have {expected} channels on the last "
                               rf"axis \(as the kernel\), got shape {_shape_re(shape)}\.")


def _window(layer: str, what: str, shape) -> tuple:
    return (shape, ValueError, rf"{layer}: the {what} window .* must fit in the padded input")


def _float_only(layer: str, shape) -> tuple:
    return (S(shape, jnp.int32), TypeError,
            rf"{layer}: input must have a floating dtype, got int32")


def _masked(layer: str, shape) -> tuple:
    spec = jl.Masked(S(shape, jnp.float32), S(shape[:2], jnp.bool_))
    return (spec, TypeError, rf"{layer}: does not accept a jl\.Masked input")


def _spatial(layer: str, shape, *, window: tuple | None = None, channels: int | None = None,
             masked: bool = True) -> tuple:
    """The bad inputs every channels-last spatial layer refuses (rank, dtype, Masked)."""
    bad = [_rank(layer, shape), _float_only(layer, shape)]
    if masked:
        bad.append(_masked(layer, shape))
    if channels is not None:
        bad.append(_channels(layer, channels, shape[:-1] + (channels + 1,)))
    if window is not None:
        bad.append(window)
    return tuple(bad)


# ---------------------------------------------------------------- independent references
# PyTorch (CPU, float64, NCHW) or float64 NumPy; never jaxlayers, lax or jax.image. Layouts
# are converted here: channels-last <-> channels-first, HWIO kernels -> PyTorch's weights.

def _t(a):
    return torch.from_numpy(np.asarray(a, np.float64))


def _to_first(x):
    """(N, *spatial, C) float64 tensor -> (N, C, *spatial)."""
    x = _t(x)
    return x.permute(0, x.ndim - 1, *range(1, x.ndim - 1))


def _to_last(y):
    """(N, C, *spatial) tensor -> (N, *spatial, C) float64 NumPy."""
    return y.permute(0, *range(2, y.ndim), 1).numpy()


def _tup(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _pad_pairs(padding, n):
    """An int, n ints or n (low, high) pairs as n pairs (the layers' explicit forms)."""
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in _tup(padding, n))


def _keras_same(size, window, stride):
    """Keras/TF "same": out = ceil(size / stride), the odd extra pad at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _resolve(padding, spatial, windows, strides):
    if padding == "valid":
        return tuple((0, 0) for _ in spatial)
    if padding == "same":
        return tuple(_keras_same(s, w, st) for s, w, st in zip(spatial, windows, strides))
    return _pad_pairs(padding, len(spatial))


def _f_pad(x, pairs, value=0.0):
    """F.pad of a channels-first tensor by per-spatial-axis (low, high) pairs."""
    flat = [p for pair in reversed(pairs) for p in pair]  # F.pad: the last axis first
    return F.pad(x, flat, value=value)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_ACT = {None: lambda y: y, "tanh": np.tanh}


def _hwio_to_oihw(kernel):
    """Ours (*spatial, in, out) -> PyTorch's Conv weight (out, in, *spatial)."""
    n = kernel.ndim - 2
    return _t(kernel).permute(n + 1, n, *range(n))


def _ref_conv(n, kernel_size, strides=1, padding="valid", dilation=1, groups=1,
              activation=None):
    """ConvND as F.convNd on the explicitly padded input (odd "same" pad at the end)."""
    k, s, d = _tup(kernel_size, n), _tup(strides, n), _tup(dilation, n)
    eff = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))

    def ref(params, state, x, training):
        xt = _to_first(x)
        xt = _f_pad(xt, _resolve(padding, x.shape[1:-1], eff, s))
        y = _CONV[n](xt, _hwio_to_oihw(params["kernel"]), stride=s, dilation=d, groups=groups)
        y = _to_last(y)
        if "bias" in params:
            y = y + np.asarray(params["bias"], np.float64)
        return _ACT[activation](y)
    return ref


def _ref_depthwise(n, kernel_size, depth_multiplier, strides=1, padding="valid",
                   dilation=1, pointwise=False):
    """Depthwise conv as F.convNd(groups=C) with weight (C·m, 1, *k); then a 1x1 conv."""
    k, s, d = _tup(kernel_size, n), _tup(strides, n), _tup(dilation, n)
    eff = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))

    def ref(params, state, x, training):
        c = x.shape[-1]
        depthwise = params["depthwise_kernel" if pointwise else "kernel"]
        xt = _f_pad(_to_first(x), _resolve(padding, x.shape[1:-1], eff, s))
        h = _CONV[n](xt, _hwio_to_oihw(depthwise), stride=s, dilation=d, groups=c)
        if pointwise:
            h = _CONV[n](h, _hwio_to_oihw(params["pointwise_kernel"]))
        y = _to_last(h)
        if "bias" in params:
            y = y + np.asarray(params["bias"], np.float64)
        return y
    return ref


def _ref_conv_transpose(n, kernel_size, strides=1, padding="valid", output_padding=0,
                        dilation=1):
    """F.conv_transposeNd with no padding (the full adjoint, size (in - 1)·s + k_eff), then
    PyTorch's crop: p_low from the start, p_high - output_padding from the end (zeros
    appended where that is negative). Keras's "same": output in·s, crop (k_eff - s) // 2
    from the start (the odd one at the end)."""
    k, s, d = _tup(kernel_size, n), _tup(strides, n), _tup(dilation, n)
    op = _tup(output_padding, n)
    eff = tuple(di * (ki - 1) + 1 for ki, di in zip(k, d))

    def ref(params, state, x, training):
        w = _t(params["kernel"]).permute(n, n + 1, *range(n))  # (in, out, *spatial)
        full = _CONV_T[n](_to_first(x), w, stride=s, dilation=d)
        sizes = full.shape[2:]
        if padding == "same":
            target = [size * st for size, st in zip(x.shape[1:-1], s)]
            lows = [max(e - st, 0) // 2 for e, st in zip(eff, s)]
        else:
            pairs = _resolve(padding, x.shape[1:-1], eff, s)
            lows = [lo for lo, _ in pairs]
            target = [f - lo - hi + o for f, (lo, hi), o in zip(sizes, pairs, op)]
        extra = [max(lo + t - f, 0) for lo, t, f in zip(lows, target, sizes)]
        full = _f_pad(full, [(0, e) for e in extra])
        y = full[(slice(None), slice(None)) + tuple(slice(lo, lo + t)
                                                    for lo, t in zip(lows, target))]
        y = _to_last(y)
        if "bias" in params:
            y = y + np.asarray(params["bias"], np.float64)
        return y
    return ref


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _ref_pool(kind, n, pool_size=2, strides=None, padding="valid"):
    """F.max_poolNd on a -inf padded input; F.avg_poolNd of the zero-padded input divided
    by that of the padded ones (the mean over real elements: count_include_pad=False)."""
    k = _tup(pool_size, n)
    s = k if strides is None else _tup(strides, n)

    def ref(params, state, x, training):
        pairs = _resolve(padding, x.shape[1:-1], k, s)
        xt = _to_first(x)
        if kind == "max":
            return _to_last(_MAX_POOL[n](_f_pad(xt, pairs, -np.inf), k, s))
        total = _AVG_POOL[n](_f_pad(xt, pairs), k, s)
        count = _AVG_POOL[n](_f_pad(torch.ones_like(xt), pairs), k, s)
        return _to_last(total / count)
    return ref


def _ref_global(kind, n, keepdims=False):
    def ref(params, state, x, training):
        axes = tuple(range(1, n + 1))
        if isinstance(x, jl.Masked):  # the valid steps only (every row has one)
            v, valid = np.asarray(x.values, np.float64), np.asarray(x.mask)[:, :, None]
            if kind == "max":
                y = np.where(valid, v, -np.inf).max(axis=1, keepdims=keepdims)
            else:
                y = (np.where(valid, v, 0.0).sum(axis=1, keepdims=keepdims)
                     / valid.sum(axis=1, keepdims=keepdims))
            return y
        x = np.asarray(x, np.float64)
        return (x.max if kind == "max" else x.mean)(axis=axes, keepdims=keepdims)
    return ref


def _ref_adaptive(output_size):
    def ref(params, state, x, training):
        return _to_last(F.adaptive_avg_pool2d(_to_first(x), output_size))
    return ref


def _ref_upsampling(n, size=2, interpolation="nearest"):
    """F.interpolate at the integer factor (nearest and n-linear, align_corners=False,
    agree with PyTorch for integer upscaling)."""
    factors = _tup(size, n)

    def ref(params, state, x, training):
        out = tuple(d * f for d, f in zip(x.shape[1:-1], factors))
        kw = {} if interpolation == "nearest" else dict(align_corners=False)
        return _to_last(F.interpolate(_to_first(x), size=out, mode=interpolation, **kw))
    return ref


def _triangle(t):
    return np.maximum(0.0, 1.0 - t)


def _keys_cubic(t, a=-0.5):
    """Keys' cubic convolution kernel with a = -0.5 (TF/Keras, the Resize docstring)."""
    return np.where(t < 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


def _lanczos(radius):
    def kernel(t):
        return np.where(t < radius, np.sinc(t) * np.sinc(t / radius), 0.0)
    return kernel


_RESIZE_KERNELS = {"bilinear": (_triangle, 1), "bicubic": (_keys_cubic, 2),
                   "lanczos3": (_lanczos(3), 3), "lanczos5": (_lanczos(5), 5)}


def _resize_matrix(size, out, method, antialias):
    """(out, size) float64 weights: output i samples input position (i + 0.5)·size/out -
    0.5 with the method's kernel, widened by size/out when antialiasing a downscale; the
    weights over the input positions are normalised to sum 1 (the kernel is cut at the
    borders: TF2's and jax.image's scale_and_translate)."""
    kernel, _ = _RESIZE_KERNELS[method]
    widen = max(size / out, 1.0) if antialias else 1.0
    centres = (np.arange(out) + 0.5) * size / out - 0.5
    w = kernel(np.abs(centres[:, None] - np.arange(size)[None, :]) / widen)
    return w / w.sum(axis=1, keepdims=True)


def _ref_resize(height, width, method="bilinear", antialias=False):
    """NumPy from the Resize docstring. "nearest": x[floor((i + 0.5)·in/out)] (TF2,
    PyTorch's nearest-exact). "bilinear" is also checked against F.interpolate
    (antialias as PyTorch's, the same PIL-style widened, normalised triangle)."""
    def ref(params, state, x, training):
        h, w = x.shape[1:3]
        x64 = np.asarray(x, np.float64)
        if method == "nearest":
            rows = np.floor((np.arange(height) + 0.5) * h / height).astype(int)
            cols = np.floor((np.arange(width) + 0.5) * w / width).astype(int)
            return x64[:, rows][:, :, cols]
        y = np.einsum("ih,jw,nhwc->nijc", _resize_matrix(h, height, method, antialias),
                      _resize_matrix(w, width, method, antialias), x64)
        if method == "bilinear":
            want = _to_last(F.interpolate(_to_first(x), size=(height, width), mode="bilinear",
                                          align_corners=False, antialias=antialias))
            np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10)
        return y
    return ref


def _border_pairs(value, n):
    """ZeroPadding/Cropping forms as n pairs; for 1-D also a bare (low, high) pair."""
    if n == 1 and isinstance(value, tuple) and len(value) == 2 and all(
            isinstance(v, int) for v in value):
        return (value,)
    return _pad_pairs(value, n)


def _ref_zero_padding(n, padding=1):
    pairs = _border_pairs(padding, n)

    def ref(params, state, x, training):
        return np.pad(np.asarray(x, np.float64), ((0, 0),) + pairs + ((0, 0),))
    return ref


def _ref_cropping(n, cropping):
    pairs = _border_pairs(cropping, n)

    def ref(params, state, x, training):
        index = tuple(slice(lo, d - hi) for (lo, hi), d in zip(pairs, x.shape[1:-1]))
        return np.asarray(x, np.float64)[(slice(None),) + index]
    return ref


def _ref_lrn(size=5, alpha=1e-4, beta=0.75, k=2.0):
    def ref(params, state, x, training):
        return _to_last(F.local_response_norm(_to_first(x), size, alpha=alpha, beta=beta,
                                              k=k))
    return ref


def _ref_spatial_dropout(params, state, x, training):
    """Inference: the identity (a Masked keeps its mask). Random cases are compared at
    training=False only."""
    assert not training, "spatial dropout's training output is random: no reference"
    if isinstance(x, jl.Masked):
        return jl.Masked(np.asarray(x.values, np.float64), x.mask)
    return np.asarray(x, np.float64)



def _conv_case(factory, args, kwargs, shape, *, name="", groups=1, tiny=None, what="kernel",
               reference=None):
    layer = factory.__name__
    window = _window(layer, what, tiny) if tiny is not None else None
    return Case(factory, args, kwargs, shape, name=name, reference=reference,
                bad_inputs=_spatial(layer, shape, window=window,
                                    channels=shape[-1] if groups == 1 else None)
                + (() if groups == 1 else (
                    _channels(layer, shape[-1], shape[:-1] + (shape[-1] + groups,)),)))


_MASKED_SEQ = jl.Masked(S((2, 5, 3), jnp.float32), S((2, 5), jnp.bool_))

CNN_CASES = [
    # convolutions
    _conv_case(conv.Conv1D, (4, 3), dict(strides=2, padding="same"), (2, 7, 3),
               reference=_ref_conv(1, 3, strides=2, padding="same")),
    _conv_case(conv.Conv1D, (4, 2), dict(groups=2, dilation=2, activation="tanh"), (2, 6, 2),
               name="groups-dilation", groups=2, tiny=(2, 1, 2),
               reference=_ref_conv(1, 2, dilation=2, groups=2, activation="tanh")),
    _conv_case(conv.Conv2D, (4, (3, 2)), dict(strides=2, padding="same"), (2, 7, 6, 3),
               reference=_ref_conv(2, (3, 2), strides=2, padding="same")),
    _conv_case(conv.Conv2D, (4, 3), dict(groups=2, padding=((1, 0), (2, 1)), dilation=(1, 2),
                                         use_bias=False), (2, 5, 4, 2),
               name="groups-pairs", groups=2, tiny=(2, 1, 4, 2),
               reference=_ref_conv(2, 3, padding=((1, 0), (2, 1)), dilation=(1, 2),
                                   groups=2)),
    # dilation 2 on both axes with two groups of two channels; a non-square kernel
    _conv_case(conv.Conv2D, (4, (2, 3)), dict(dilation=2, groups=2), (2, 5, 7, 4),
               name="dilated-groups", groups=2, tiny=(2, 2, 7, 4),
               reference=_ref_conv(2, (2, 3), dilation=2, groups=2)),
    _conv_case(conv.Conv3D, (2, (2, 3, 2)), dict(strides=(1, 2, 1), padding=1),
               (1, 3, 5, 4, 2), reference=_ref_conv(3, (2, 3, 2), strides=(1, 2, 1), padding=1)),
    _conv_case(conv.DepthwiseConv2D, (3,), dict(depth_multiplier=2, strides=2, padding="same"),
               (2, 5, 6, 3), reference=_ref_depthwise(2, 3, 2, strides=2, padding="same")),
    _conv_case(conv.SeparableConv1D, (4, 3), dict(depth_multiplier=2, padding="same"),
               (2, 7, 3), reference=_ref_depthwise(1, 3, 2, padding="same", pointwise=True)),
    _conv_case(conv.SeparableConv2D, (4, 3), dict(strides=2), (2, 7, 6, 2),
               tiny=(2, 2, 6, 2), reference=_ref_depthwise(2, 3, 1, strides=2, pointwise=True)),
    _conv_case(conv.Conv1DTranspose, (3, 3), dict(strides=2, output_padding=1), (2, 4, 2),
               reference=_ref_conv_transpose(1, 3, strides=2, output_padding=1)),
    _conv_case(conv.Conv2DTranspose, (3, (3, 2)), dict(strides=2, padding="same"),
               (2, 3, 4, 2), reference=_ref_conv_transpose(2, (3, 2), strides=2,
                                                           padding="same")),
    _conv_case(conv.Conv2DTranspose, (2, 3), dict(strides=(2, 1), padding=1,
                                                  output_padding=(1, 0), dilation=(1, 2)),
               (2, 4, 3, 3), name="padded-dilated",
               reference=_ref_conv_transpose(2, 3, strides=(2, 1), padding=1,
                                             output_padding=(1, 0), dilation=(1, 2))),
    # "valid" with output_padding: a transposed conv that drops output_padding is one row
    # and one column short (and a flipped-the-wrong-way kernel differs everywhere)
    _conv_case(conv.Conv2DTranspose, (3, (3, 2)), dict(strides=2, output_padding=1),
               (2, 3, 4, 2), name="valid-output-padding",
               reference=_ref_conv_transpose(2, (3, 2), strides=2, output_padding=1)),
    _conv_case(conv.Conv3DTranspose, (2, 2), dict(strides=2), (1, 2, 3, 2, 2),
               reference=_ref_conv_transpose(3, 2, strides=2)),
    # pooling
    Case(pool.MaxPool1D, (3,), dict(strides=2, padding=1), (2, 7, 3),
         reference=_ref_pool("max", 1, 3, 2, 1),
         bad_inputs=_spatial("MaxPool1D", (2, 7, 3))),
    Case(pool.MaxPool2D, (2,), {}, (2, 5, 7, 3), reference=_ref_pool("max", 2, 2),
         bad_inputs=_spatial("MaxPool2D", (2, 5, 7, 3),
                             window=_window("MaxPool2D", "pool", (2, 1, 7, 3)))),
    Case(pool.MaxPool3D, (2,), dict(padding="same"), (1, 3, 4, 5, 2),
         reference=_ref_pool("max", 3, 2, padding="same"),
         bad_inputs=_spatial("MaxPool3D", (1, 3, 4, 5, 2))),
    Case(pool.AvgPool1D, (2,), dict(padding="same"), (2, 7, 3),
         reference=_ref_pool("avg", 1, 2, padding="same"),
         bad_inputs=_spatial("AvgPool1D", (2, 7, 3))),
    Case(pool.AvgPool2D, (3,), dict(strides=2, padding=1), (2, 7, 6, 3),
         reference=_ref_pool("avg", 2, 3, 2, 1),
         bad_inputs=_spatial("AvgPool2D", (2, 7, 6, 3))),
    # "same" with strides != pool_size: odd total padding (0, 1) on both axes, so the last
    # row's and column's windows are partial and their divisors smaller
    Case(pool.AvgPool2D, ((3, 2),), dict(strides=(2, 1), padding="same"), (2, 6, 5, 3),
         name="same-strided", reference=_ref_pool("avg", 2, (3, 2), (2, 1), "same"),
         bad_inputs=_spatial("AvgPool2D", (2, 6, 5, 3))),
    Case(pool.AvgPool3D, (2,), dict(strides=(1, 2, 2)), (1, 3, 5, 4, 2),
         reference=_ref_pool("avg", 3, 2, (1, 2, 2)),
         bad_inputs=_spatial("AvgPool3D", (1, 3, 5, 4, 2),
                             window=_window("AvgPool3D", "pool", (1, 3, 1, 4, 2)))),
    Case(pool.GlobalMaxPool1D, (), {}, (2, 5, 3), reference=_ref_global("max", 1),
         bad_inputs=_spatial("GlobalMaxPool1D", (2, 5, 3), masked=False)),
    Case(pool.GlobalMaxPool1D, (), dict(keepdims=True), _MASKED_SEQ, name="masked",
         reference=_ref_global("max", 1, keepdims=True),
         bad_inputs=(_rank("GlobalMaxPool1D", (2, 5, 3)),)),
    Case(pool.GlobalMaxPool2D, (), {}, (2, 3, 4, 3), reference=_ref_global("max", 2),
         bad_inputs=_spatial("GlobalMaxPool2D", (2, 3, 4, 3))),
    Case(pool.GlobalMaxPool3D, (), {}, (2, 2, 3, 2, 3), reference=_ref_global("max", 3),
         bad_inputs=_spatial("GlobalMaxPool3D", (2, 2, 3, 2, 3))),
    Case(pool.GlobalAvgPool1D, (), {}, (2, 5, 3), reference=_ref_global("avg", 1),
         bad_inputs=_spatial("GlobalAvgPool1D", (2, 5, 3), masked=False)),
    Case(pool.GlobalAvgPool1D, (), {}, _MASKED_SEQ, name="masked",
         reference=_ref_global("avg", 1), bad_inputs=(
             (jl.Masked(S((2, 5, 3), jnp.float32), S((2, 4), jnp.bool_)), ValueError,
              r"GlobalAvgPool1D: a jl\.Masked input must hold values \(N, T, C\) and a mask "
              r"\(N, T\), got values \(2, 5, 3\) and mask \(2, 4\)"),)),
    Case(pool.GlobalAvgPool2D, (), dict(keepdims=True), (2, 3, 4, 3),
         reference=_ref_global("avg", 2, keepdims=True),
         bad_inputs=_spatial("GlobalAvgPool2D", (2, 3, 4, 3))),
    Case(pool.GlobalAvgPool3D, (), {}, (2, 2, 3, 2, 3), reference=_ref_global("avg", 3),
         bad_inputs=_spatial("GlobalAvgPool3D", (2, 2, 3, 2, 3))),
    Case(pool.AdaptiveAvgPool2D, ((3, 2),), {}, (2, 7, 5, 3), reference=_ref_adaptive((3, 2)),
         bad_inputs=_spatial("AdaptiveAvgPool2D", (2, 7, 5, 3))),
    # resampling and borders
    Case(resample.UpSampling1D, (2,), {}, (2, 3, 2), reference=_ref_upsampling(1, 2),
         bad_inputs=_spatial("UpSampling1D", (2, 3, 2))),
    Case(resample.UpSampling2D, (2,), dict(interpolation="bilinear"), (2, 3, 2, 2),
         reference=_ref_upsampling(2, 2, "bilinear"),
         bad_inputs=_spatial("UpSampling2D", (2, 3, 2, 2))),
    Case(resample.UpSampling3D, ((1, 2, 2),), dict(interpolation="trilinear"),
         (1, 2, 3, 2, 2), reference=_ref_upsampling(3, (1, 2, 2), "trilinear"),
         bad_inputs=_spatial("UpSampling3D", (1, 2, 3, 2, 2))),
    Case(resample.Resize, (3, 5), dict(antialias=True), (2, 5, 4, 2),  # down H, up W
         reference=_ref_resize(3, 5, antialias=True),
         bad_inputs=_spatial("Resize", (2, 5, 4, 2))),
    # one case per other method: up H and down W, down both (antialiased), up both, mixed
    Case(resample.Resize, (7, 3), dict(method="nearest"), (2, 5, 4, 2), name="nearest",
         reference=_ref_resize(7, 3, "nearest"), bad_inputs=_spatial("Resize", (2, 5, 4, 2))),
    Case(resample.Resize, (3, 4), dict(method="bicubic", antialias=True), (2, 7, 6, 2),
         name="bicubic-antialias", reference=_ref_resize(3, 4, "bicubic", antialias=True),
         bad_inputs=_spatial("Resize", (2, 7, 6, 2))),
    Case(resample.Resize, (5, 7), dict(method="lanczos3"), (2, 3, 4, 2), name="lanczos3",
         reference=_ref_resize(5, 7, "lanczos3"), bad_inputs=_spatial("Resize", (2, 3, 4, 2))),
    Case(resample.Resize, (4, 5), dict(method="lanczos5"), (2, 7, 3, 2), name="lanczos5",
         reference=_ref_resize(4, 5, "lanczos5"), bad_inputs=_spatial("Resize", (2, 7, 3, 2))),
    Case(resample.ZeroPadding1D, ((1, 2),), {}, (2, 3, 2),
         reference=_ref_zero_padding(1, (1, 2)),
         bad_inputs=_spatial("ZeroPadding1D", (2, 3, 2))),
    Case(resample.ZeroPadding2D, (((0, 1), 2),), {}, (2, 3, 2, 2),
         reference=_ref_zero_padding(2, ((0, 1), 2)),
         bad_inputs=_spatial("ZeroPadding2D", (2, 3, 2, 2))),
    Case(resample.ZeroPadding3D, (1,), {}, (1, 2, 2, 3, 2), reference=_ref_zero_padding(3, 1),
         bad_inputs=_spatial("ZeroPadding3D", (1, 2, 2, 3, 2))),
    Case(resample.Cropping1D, ((1, 2),), {}, (2, 6, 2), reference=_ref_cropping(1, (1, 2)),
         bad_inputs=_spatial("Cropping1D", (2, 6, 2)) + (
             ((2, 3, 2), ValueError, r"Cropping1D: cropping \(\(1, 2\),\) must leave at least "
                                     r"one position on each spatial axis, got input shape "
                                     r"\(2, 3, 2\)"),)),
    Case(resample.Cropping2D, (((1, 0), 1),), {}, (2, 4, 5, 2),
         reference=_ref_cropping(2, ((1, 0), 1)),
         bad_inputs=_spatial("Cropping2D", (2, 4, 5, 2))),
    Case(resample.Cropping3D, ((1, 0, (0, 1)),), {}, (1, 3, 2, 3, 2),
         reference=_ref_cropping(3, (1, 0, (0, 1))),
         bad_inputs=_spatial("Cropping3D", (1, 3, 2, 3, 2))),
    # normalization and dropout
    Case(lrn.CrossChannelNormalization, (3,), dict(alpha=0.5, k=1.5), (2, 3, 4, 5),
         reference=_ref_lrn(3, alpha=0.5, k=1.5),
         bad_inputs=(((5,), ValueError, r"CrossChannelNormalization: input must have rank "
                                        r">= 2 \(N, \.\.\., C\), got shape \(5,\)"),
                     _float_only("CrossChannelNormalization", (2, 3, 4, 5)),
                     _masked("CrossChannelNormalization", (2, 3, 4, 5)))),
    Case(spatial_dropout.SpatialDropout1D, (0.5,), {}, (2, 5, 6), random=True,
         reference=_ref_spatial_dropout,
         bad_inputs=_spatial("SpatialDropout1D", (2, 5, 6), masked=False)),
    Case(spatial_dropout.SpatialDropout1D, (0.5,), {},
         jl.Masked(S((2, 5, 6), jnp.float32), S((2, 5), jnp.bool_)), random=True,
         name="masked", reference=_ref_spatial_dropout,
         bad_inputs=(_rank("SpatialDropout1D", (2, 5, 6)),)),
    Case(spatial_dropout.SpatialDropout2D, (0.5,), {}, (2, 3, 3, 6), random=True,
         reference=_ref_spatial_dropout,
         bad_inputs=_spatial("SpatialDropout2D", (2, 3, 3, 6))),
    # rate 0.2, not 0.5: where rate and keep probability differ
    Case(spatial_dropout.SpatialDropout2D, (0.2,), {}, (2, 3, 5, 7), random=True,
         name="rate0.2", reference=_ref_spatial_dropout,
         bad_inputs=_spatial("SpatialDropout2D", (2, 3, 5, 7))),
    Case(spatial_dropout.SpatialDropout3D, (0.5,), {}, (2, 2, 2, 3, 6), random=True,
         reference=_ref_spatial_dropout,
         bad_inputs=_spatial("SpatialDropout3D", (2, 2, 2, 3, 6))),
]
