"""EfficientNet B0-B7 (Tan & Le 2019): MBConv blocks with squeeze-and-excitation and swish."""

from __future__ import annotations

import math

from jaxlayers._checks import check_positive_int, check_rate
from jaxlayers._combinators import residual, serial
from jaxlayers.core import Layer
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.pool import GlobalAvgPool2D
from jaxlayers.layers.blocks import SqueezeExcitation, StochasticDepth
from jaxlayers.models._blocks import conv_bn, make_divisible

# (expansion, kernel, first stride, in channels, out channels, repeats): B0, the paper's Table 1.
_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
           (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
           (6, 3, 1, 192, 320, 1))


def mbconv(in_channels: int, out_channels: int, *, kernel_size: int, strides: int,
           expansion: int, drop_path: float = 0.0, epsilon: float = 1e-5,
           torch_momentum: float = 0.1) -> Layer:
    """MBConv: 1×1 expand -> k×k depthwise/s -> squeeze-excitation -> 1×1 project, + skip.

    Math: h = swish(bn(conv1×1(x)))             (left out when expansion = 1)
          h = swish(bn(depthwise_k×k/s(h)))
          h = h * sigmoid(fc2(swish(fc1(mean_HW(h)))))   (squeeze to max(1, in // 4))
          y = bn(conv1×1(h)) [+ x, with stochastic depth, when s = 1 and in == out]
    Shapes: x (N, H, W, in_channels) -> (N, H/s, W/s, out_channels).
    params {"expand"?, "depthwise", "se": {"fc1", "fc2"}, "project"}.
    """
    hidden = make_divisible(in_channels * expansion)
    bn = {"epsilon": epsilon, "torch_momentum": torch_momentum}
    layers = {}
    if hidden != in_channels:
        layers["expand"] = conv_bn(hidden, 1, activation="swish", **bn)
    layers["depthwise"] = conv_bn(hidden, kernel_size, strides=strides,
                                  padding=(kernel_size - 1) // 2, activation="swish",
                                  depthwise=True, **bn)
    layers["se"] = SqueezeExcitation(hidden, max(1, in_channels // 4), activation="swish")
    layers["project"] = conv_bn(out_channels, 1, activation=None, **bn)
    if strides == 1 and in_channels == out_channels:
        return residual(serial(**layers, drop_path=StochasticDepth(drop_path)))
    return serial(**layers)


def _efficientnet(name: str, width: float, depth: float, dropout: float, num_classes: int,
                  stochastic_depth_rate: float, epsilon: float = 1e-5,
                  torch_momentum: float = 0.1) -> Layer:
    check_positive_int(name, "num_classes", num_classes)
    check_rate(name, "dropout", dropout)
    check_rate(name, "stochastic_depth_rate", stochastic_depth_rate)
    bn = {"epsilon": epsilon, "torch_momentum": torch_momentum}
    stages = [(t, k, s, make_divisible(c_in * width), make_divisible(c_out * width),
               int(math.ceil(n * depth))) for t, k, s, c_in, c_out, n in _STAGES]
    total = sum(stage[-1] for stage in stages)
    features = {"stem": conv_bn(stages[0][3], 3, strides=2, padding=1, activation="swish",
                                **bn)}
    block_id = 0
    for number, (t, k, s, c_in, c_out, n) in enumerate(stages, start=1):
        blocks = {}
        for i in range(n):
            # drop-path rate grows linearly with depth: rate · block_id / total blocks
            blocks[str(i)] = mbconv(c_in if i == 0 else c_out, c_out, kernel_size=k,
                                    strides=s if i == 0 else 1, expansion=t,
                                    drop_path=stochastic_depth_rate * block_id / total, **bn)
            block_id += 1
        features[f"stage{number}"] = serial(**blocks)
    features["head"] = conv_bn(4 * stages[-1][4], 1, activation="swish", **bn)
    return serial(features=serial(**features), avgpool=GlobalAvgPool2D(),
                  classifier=serial(dropout=Dropout(dropout), fc=Dense(num_classes)))


def efficientnet_b0(num_classes: int = 1000, *, dropout: float = 0.2,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B0, as torchvision's `efficientnet_b0`: 5,288,548 params (1000 classes).

    Stem: conv 3×3/2 (32) + BN + swish; seven stages of `mbconv` blocks (expansion,
    kernel, stride, channels, repeats: 1,3,1,16,1 · 6,3,2,24,2 · 6,5,2,40,2 · 6,3,2,80,3 ·
    6,5,1,112,3 · 6,5,2,192,4 · 6,3,1,320,1); head conv 1×1 (1280) + BN + swish; global
    average pool; dropout; dense num_classes (logits). 224 -> 112 -> 56 -> 28 -> 14 -> 7.
    Swish is x·sigmoid(x) (SiLU). Residual branches are dropped per example while
    training with rate stochastic_depth_rate · i / 16 for block i (torchvision's
    `StochasticDepth(p, "row")`). BatchNorm: PyTorch's epsilon 1e-5 and momentum 0.1 (our
    0.9), as torchvision's B0-B4 (the TensorFlow original uses epsilon 1e-3).

    Shapes: x (N, H, W, C) -> logits (N, num_classes); any H, W >= 1 runs.
    params {"features": {"stem", "stage1": {"0": {"depthwise", "se", "project"}}, ...,
            "stage7", "head"}, "classifier": {"fc"}}.

    Args:
      num_classes: output units.
      dropout: drop rate before the dense layer.
      stochastic_depth_rate: drop-path rate of the last block (0 turns it off).
    """
    return _efficientnet("efficientnet_b0", 1.0, 1.0, dropout, num_classes,
                         stochastic_depth_rate)


def efficientnet_b1(num_classes: int = 1000, *, dropout: float = 0.2,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B1: width 1.0, depth 1.1 (240×240 inputs); 7,794,184 params. As B0."""
    return _efficientnet("efficientnet_b1", 1.0, 1.1, dropout, num_classes,
                         stochastic_depth_rate)


def efficientnet_b2(num_classes: int = 1000, *, dropout: float = 0.3,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B2: width 1.1, depth 1.2 (260×260 inputs); 9,109,994 params. As B0."""
    return _efficientnet("efficientnet_b2", 1.1, 1.2, dropout, num_classes,
                         stochastic_depth_rate)


def efficientnet_b3(num_classes: int = 1000, *, dropout: float = 0.3,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B3: width 1.2, depth 1.4 (300×300 inputs); 12,233,232 params. As B0."""
    return _efficientnet("efficientnet_b3", 1.2, 1.4, dropout, num_classes,
                         stochastic_depth_rate)


def efficientnet_b4(num_classes: int = 1000, *, dropout: float = 0.4,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B4: width 1.4, depth 1.8 (380×380 inputs); 19,341,616 params. As B0."""
    return _efficientnet("efficientnet_b4", 1.4, 1.8, dropout, num_classes,
                         stochastic_depth_rate)


def efficientnet_b5(num_classes: int = 1000, *, dropout: float = 0.4,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B5: width 1.6, depth 2.2 (456×456); 30,389,784 params.

    As B0, with torchvision's BatchNorm for B5-B7: epsilon 1e-3, PyTorch momentum 0.01
    (our 0.99).
    """
    return _efficientnet("efficientnet_b5", 1.6, 2.2, dropout, num_classes,
                         stochastic_depth_rate, epsilon=1e-3, torch_momentum=0.01)


def efficientnet_b6(num_classes: int = 1000, *, dropout: float = 0.5,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B6: width 1.8, depth 2.6 (528×528); 43,040,704 params. As B5."""
    return _efficientnet("efficientnet_b6", 1.8, 2.6, dropout, num_classes,
                         stochastic_depth_rate, epsilon=1e-3, torch_momentum=0.01)


def efficientnet_b7(num_classes: int = 1000, *, dropout: float = 0.5,
                    stochastic_depth_rate: float = 0.2) -> Layer:
    """EfficientNet-B7: width 2.0, depth 3.1 (600×600); 66,347,960 params. As B5."""
    return _efficientnet("efficientnet_b7", 2.0, 3.1, dropout, num_classes,
                         stochastic_depth_rate, epsilon=1e-3, torch_momentum=0.01)
