"""Conformance cases for the convolution, pooling, resampling, LRN and spatial-dropout layers.

To be merged into tests/registry.py's CASES (`CASES += CNN_CASES`). Shapes are tiny and odd,
with stride 2 and two groups where they apply; each case lists the bad inputs its layer must
refuse at trace time: a missing batch axis, wrong channels, an int input, a jl.Masked, a
window larger than the padded input.
"""

from __future__ import annotations

import re

import jax.numpy as jnp

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


def _conv_case(factory, args, kwargs, shape, *, name="", groups=1, tiny=None, what="kernel"):
    layer = factory.__name__
    window = _window(layer, what, tiny) if tiny is not None else None
    return Case(factory, args, kwargs, shape, name=name,
                bad_inputs=_spatial(layer, shape, window=window,
                                    channels=shape[-1] if groups == 1 else None)
                + (() if groups == 1 else (
                    _channels(layer, shape[-1], shape[:-1] + (shape[-1] + groups,)),)))


_MASKED_SEQ = jl.Masked(S((2, 5, 3), jnp.float32), S((2, 5), jnp.bool_))

CNN_CASES = [
    # convolutions
    _conv_case(conv.Conv1D, (4, 3), dict(strides=2, padding="same"), (2, 7, 3)),
    _conv_case(conv.Conv1D, (4, 2), dict(groups=2, dilation=2, activation="tanh"), (2, 6, 2),
               name="groups-dilation", groups=2, tiny=(2, 1, 2)),
    _conv_case(conv.Conv2D, (4, (3, 2)), dict(strides=2, padding="same"), (2, 7, 6, 3)),
    _conv_case(conv.Conv2D, (4, 3), dict(groups=2, padding=((1, 0), (2, 1)), dilation=(1, 2),
                                         use_bias=False), (2, 5, 4, 2),
               name="groups-pairs", groups=2, tiny=(2, 1, 4, 2)),
    _conv_case(conv.Conv3D, (2, (2, 3, 2)), dict(strides=(1, 2, 1), padding=1),
               (1, 3, 5, 4, 2)),
    _conv_case(conv.DepthwiseConv2D, (3,), dict(depth_multiplier=2, strides=2, padding="same"),
               (2, 5, 6, 3)),
    _conv_case(conv.SeparableConv1D, (4, 3), dict(depth_multiplier=2, padding="same"),
               (2, 7, 3)),
    _conv_case(conv.SeparableConv2D, (4, 3), dict(strides=2), (2, 7, 6, 2),
               tiny=(2, 2, 6, 2)),
    _conv_case(conv.Conv1DTranspose, (3, 3), dict(strides=2, output_padding=1), (2, 4, 2)),
    _conv_case(conv.Conv2DTranspose, (3, (3, 2)), dict(strides=2, padding="same"),
               (2, 3, 4, 2)),
    _conv_case(conv.Conv2DTranspose, (2, 3), dict(strides=(2, 1), padding=1,
                                                  output_padding=(1, 0), dilation=(1, 2)),
               (2, 4, 3, 3), name="padded-dilated"),
    _conv_case(conv.Conv3DTranspose, (2, 2), dict(strides=2), (1, 2, 3, 2, 2)),
    # pooling
    Case(pool.MaxPool1D, (3,), dict(strides=2, padding=1), (2, 7, 3),
         bad_inputs=_spatial("MaxPool1D", (2, 7, 3))),
    Case(pool.MaxPool2D, (2,), {}, (2, 5, 7, 3),
         bad_inputs=_spatial("MaxPool2D", (2, 5, 7, 3),
                             window=_window("MaxPool2D", "pool", (2, 1, 7, 3)))),
    Case(pool.MaxPool3D, (2,), dict(padding="same"), (1, 3, 4, 5, 2),
         bad_inputs=_spatial("MaxPool3D", (1, 3, 4, 5, 2))),
    Case(pool.AvgPool1D, (2,), dict(padding="same"), (2, 7, 3),
         bad_inputs=_spatial("AvgPool1D", (2, 7, 3))),
    Case(pool.AvgPool2D, (3,), dict(strides=2, padding=1), (2, 7, 6, 3),
         bad_inputs=_spatial("AvgPool2D", (2, 7, 6, 3))),
    Case(pool.AvgPool3D, (2,), dict(strides=(1, 2, 2)), (1, 3, 5, 4, 2),
         bad_inputs=_spatial("AvgPool3D", (1, 3, 5, 4, 2),
                             window=_window("AvgPool3D", "pool", (1, 3, 1, 4, 2)))),
    Case(pool.GlobalMaxPool1D, (), {}, (2, 5, 3),
         bad_inputs=_spatial("GlobalMaxPool1D", (2, 5, 3), masked=False)),
    Case(pool.GlobalMaxPool1D, (), dict(keepdims=True), _MASKED_SEQ, name="masked",
         bad_inputs=(_rank("GlobalMaxPool1D", (2, 5, 3)),)),
    Case(pool.GlobalMaxPool2D, (), {}, (2, 3, 4, 3),
         bad_inputs=_spatial("GlobalMaxPool2D", (2, 3, 4, 3))),
    Case(pool.GlobalMaxPool3D, (), {}, (2, 2, 3, 2, 3),
         bad_inputs=_spatial("GlobalMaxPool3D", (2, 2, 3, 2, 3))),
    Case(pool.GlobalAvgPool1D, (), {}, (2, 5, 3),
         bad_inputs=_spatial("GlobalAvgPool1D", (2, 5, 3), masked=False)),
    Case(pool.GlobalAvgPool1D, (), {}, _MASKED_SEQ, name="masked", bad_inputs=(
        (jl.Masked(S((2, 5, 3), jnp.float32), S((2, 4), jnp.bool_)), ValueError,
         r"GlobalAvgPool1D: a jl\.Masked input must hold values \(N, T, C\) and a mask "
         r"\(N, T\), got values \(2, 5, 3\) and mask \(2, 4\)"),)),
    Case(pool.GlobalAvgPool2D, (), dict(keepdims=True), (2, 3, 4, 3),
         bad_inputs=_spatial("GlobalAvgPool2D", (2, 3, 4, 3))),
    Case(pool.GlobalAvgPool3D, (), {}, (2, 2, 3, 2, 3),
         bad_inputs=_spatial("GlobalAvgPool3D", (2, 2, 3, 2, 3))),
    Case(pool.AdaptiveAvgPool2D, ((3, 2),), {}, (2, 7, 5, 3),
         bad_inputs=_spatial("AdaptiveAvgPool2D", (2, 7, 5, 3))),
    # resampling and borders
    Case(resample.UpSampling1D, (2,), {}, (2, 3, 2),
         bad_inputs=_spatial("UpSampling1D", (2, 3, 2))),
    Case(resample.UpSampling2D, (2,), dict(interpolation="bilinear"), (2, 3, 2, 2),
         bad_inputs=_spatial("UpSampling2D", (2, 3, 2, 2))),
    Case(resample.UpSampling3D, ((1, 2, 2),), dict(interpolation="trilinear"),
         (1, 2, 3, 2, 2), bad_inputs=_spatial("UpSampling3D", (1, 2, 3, 2, 2))),
    Case(resample.Resize, (3, 5), dict(antialias=True), (2, 5, 4, 2),  # down H, up W
         bad_inputs=_spatial("Resize", (2, 5, 4, 2))),
    Case(resample.ZeroPadding1D, ((1, 2),), {}, (2, 3, 2),
         bad_inputs=_spatial("ZeroPadding1D", (2, 3, 2))),
    Case(resample.ZeroPadding2D, (((0, 1), 2),), {}, (2, 3, 2, 2),
         bad_inputs=_spatial("ZeroPadding2D", (2, 3, 2, 2))),
    Case(resample.ZeroPadding3D, (1,), {}, (1, 2, 2, 3, 2),
         bad_inputs=_spatial("ZeroPadding3D", (1, 2, 2, 3, 2))),
    Case(resample.Cropping1D, ((1, 2),), {}, (2, 6, 2), bad_inputs=_spatial(
        "Cropping1D", (2, 6, 2)) + (((2, 3, 2), ValueError,
                                     r"Cropping1D: cropping \(\(1, 2\),\) must leave at least "
                                     r"one position on each spatial axis, got input shape "
                                     r"\(2, 3, 2\)"),)),
    Case(resample.Cropping2D, (((1, 0), 1),), {}, (2, 4, 5, 2),
         bad_inputs=_spatial("Cropping2D", (2, 4, 5, 2))),
    Case(resample.Cropping3D, ((1, 0, (0, 1)),), {}, (1, 3, 2, 3, 2),
         bad_inputs=_spatial("Cropping3D", (1, 3, 2, 3, 2))),
    # normalization and dropout
    Case(lrn.CrossChannelNormalization, (3,), dict(alpha=0.5, k=1.5), (2, 3, 4, 5),
         bad_inputs=(((5,), ValueError, r"CrossChannelNormalization: input must have rank "
                                        r">= 2 \(N, \.\.\., C\), got shape \(5,\)"),
                     _float_only("CrossChannelNormalization", (2, 3, 4, 5)),
                     _masked("CrossChannelNormalization", (2, 3, 4, 5)))),
    Case(spatial_dropout.SpatialDropout1D, (0.5,), {}, (2, 5, 6), random=True,
         bad_inputs=_spatial("SpatialDropout1D", (2, 5, 6), masked=False)),
    Case(spatial_dropout.SpatialDropout1D, (0.5,), {},
         jl.Masked(S((2, 5, 6), jnp.float32), S((2, 5), jnp.bool_)), random=True,
         name="masked", bad_inputs=(_rank("SpatialDropout1D", (2, 5, 6)),)),
    Case(spatial_dropout.SpatialDropout2D, (0.5,), {}, (2, 3, 3, 6), random=True,
         bad_inputs=_spatial("SpatialDropout2D", (2, 3, 3, 6))),
    Case(spatial_dropout.SpatialDropout3D, (0.5,), {}, (2, 2, 2, 3, 6), random=True,
         bad_inputs=_spatial("SpatialDropout3D", (2, 2, 2, 3, 6))),
]
