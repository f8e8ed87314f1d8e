"""MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks."""

from __future__ import annotations

import jax

from jaxlayers._checks import check_positive_float, check_positive_int, check_rate
from jaxlayers._combinators import residual, serial
from jaxlayers.core import Layer
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.pool import GlobalAvgPool2D
from jaxlayers.models._blocks import conv_bn, make_divisible

# (expansion t, output channels c, repeats n, first stride s): the paper's Table 2.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))


def inverted_residual(in_channels: int, out_channels: int, strides: int,
                      expansion: int) -> Layer:
    """MobileNetV2 block: 1×1 expand (ReLU6) -> 3×3 depthwise/s (ReLU6) -> 1×1 project (linear).

    Every conv is bias-free and followed by BatchNorm; the expand conv is left out when
    expansion = 1. With stride 1 and in_channels == out_channels the block is residual
    (y = x + F(x), `jl.residual`), otherwise y = F(x).
    Shapes: x (N, H, W, in_channels) -> (N, H/s, W/s, out_channels).
    params {"expand"?, "depthwise", "project"}, each {"conv", "bn"}.
    """
    hidden = int(round(in_channels * expansion))
    layers = {}
    if expansion != 1:
        layers["expand"] = conv_bn(hidden, 1, activation=jax.nn.relu6)
    layers["depthwise"] = conv_bn(hidden, 3, strides=strides, padding=1,
                                  activation=jax.nn.relu6, depthwise=True)
    layers["project"] = conv_bn(out_channels, 1, activation=None)
    block = serial(**layers)
    return residual(block) if strides == 1 and in_channels == out_channels else block


def mobilenet_v2(num_classes: int = 1000, *, width_mult: float = 1.0,
                 dropout: float = 0.2) -> Layer:
    """MobileNetV2, as torchvision's `mobilenet_v2`: 3,504,872 params with 1000 classes.

    Stem: conv 3×3/2 (32·width) + BN + ReLU6; 17 `inverted_residual` blocks (t, c, n, s:
    1,16,1,1 · 6,24,2,2 · 6,32,3,2 · 6,64,4,2 · 6,96,3,1 · 6,160,3,2 · 6,320,1,1);
    head conv 1×1 (1280·max(1, width)) + BN + ReLU6; global average pool; dropout;
    dense num_classes (logits). 224 -> 112 -> 56 -> 28 -> 14 -> 7. Channel counts
    are rounded to multiples of 8 (`make_divisible`). ReLU6 is `jax.nn.relu6`.
    BatchNorm uses PyTorch's epsilon 1e-5 and momentum 0.1 (our momentum 0.9).

    Shapes: x (N, H, W, C) -> logits (N, num_classes); any H, W >= 1 runs.
    params {"features": {"stem", "block1", ..., "block17", "head"}, "classifier": {"fc"}}.

    Args:
      num_classes: output units.
      width_mult: multiplies every channel count (1.0; 0.35-1.4 in the paper).
      dropout: drop rate before the dense layer.
    """
    check_positive_int("mobilenet_v2", "num_classes", num_classes)
    width_mult = check_positive_float("mobilenet_v2", "width_mult", width_mult)
    check_rate("mobilenet_v2", "dropout", dropout)
    channels = make_divisible(32 * width_mult)
    features = {"stem": conv_bn(channels, 3, strides=2, padding=1, activation=jax.nn.relu6)}
    for t, c, n, s in _SETTINGS:
        out = make_divisible(c * width_mult)
        for i in range(n):
            features[f"block{len(features)}"] = inverted_residual(
                channels, out, s if i == 0 else 1, t)
            channels = out
    last = make_divisible(1280 * max(1.0, width_mult))
    features["head"] = conv_bn(last, 1, activation=jax.nn.relu6)
    return serial(features=serial(**features), avgpool=GlobalAvgPool2D(),
                  classifier=serial(dropout=Dropout(dropout), fc=Dense(num_classes)))
