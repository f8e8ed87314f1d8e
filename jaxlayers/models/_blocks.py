"""Helpers shared by the model builders: torchvision's channel rounding, BatchNorm, conv + BN."""

from __future__ import annotations

from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.layers.activation import Activation
from jaxlayers.layers.conv import Conv2D, DepthwiseConv2D
from jaxlayers.layers.norm import BatchNorm


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never below 90% of `value`.

    torchvision's `_make_divisible` (from the TensorFlow MobileNet code), used by
    MobileNetV2 and EfficientNet for width multipliers.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def torch_batch_norm(epsilon: float = 1e-5, torch_momentum: float = 0.1) -> Layer:
    """BatchNorm with PyTorch's hyperparameters: running = (1 - m) * running + m * batch.

    PyTorch's `momentum=0.1` is jaxlayers' `momentum=0.9` (the weight of the old value).
    """
    return BatchNorm(momentum=1.0 - torch_momentum, epsilon=epsilon)


def conv_bn(filters: int, kernel_size, *, strides=1, padding=0, groups: int = 1,
            activation="relu", epsilon: float = 1e-5, torch_momentum: float = 0.1,
            depthwise: bool = False) -> Layer:
    """conv (no bias) -> BatchNorm -> activation, as torchvision's `Conv2dNormActivation`.

    The convolution feeds a BatchNorm, whose beta replaces its bias. `depthwise=True`
    uses `DepthwiseConv2D` (one filter per channel; `filters` must then equal the input
    channels, which the BatchNorm checks). `activation=None` leaves out the activation.
    params {"conv": ..., "bn": {"gamma", "beta"}}; state {"bn": {"mean", "var"}}.
    """
    if depthwise:
        conv = DepthwiseConv2D(kernel_size, strides=strides, padding=padding, use_bias=False)
    else:
        conv = Conv2D(filters, kernel_size, strides=strides, padding=padding, groups=groups,
                      use_bias=False)
    layers = {"conv": conv, "bn": torch_batch_norm(epsilon, torch_momentum)}
    if activation is not None:
        layers["act"] = Activation(activation)
    return serial(**layers)
