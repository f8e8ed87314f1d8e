"""ResNet (He et al. 2015): y = relu(F(x) + shortcut(x)), as torchvision's builders."""

from __future__ import annotations

from jaxlayers._checks import check_positive_int
from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.layers.activation import Activation
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.merge import Add
from jaxlayers.layers.pool import GlobalAvgPool2D, MaxPool2D
from jaxlayers.layers.blocks import Branches, Identity
from jaxlayers.models._blocks import torch_batch_norm


def _shortcut(in_channels: int, out_channels: int, strides: int) -> Layer:
    """Identity when the shape is kept, else a projection: 1×1 conv, stride s, + BatchNorm."""
    if strides == 1 and in_channels == out_channels:
        return Identity()
    return serial(conv=Conv2D(out_channels, 1, strides=strides, use_bias=False),
                  bn=torch_batch_norm())


def basic_block(in_channels: int, filters: int, strides: int = 1) -> Layer:
    """ResNet-18/34 block: y = relu(bn(conv3×3(relu(bn(conv3×3/s(x))))) + shortcut(x)).

    Shapes: x (N, H, W, in_channels) -> (N, H/s, W/s, filters).
    params {"main": {"conv1", "bn1", "conv2", "bn2"}, "shortcut": {} or {"conv", "bn"}}.
    """
    main = serial(conv1=Conv2D(filters, 3, strides=strides, padding=1, use_bias=False),
                  bn1=torch_batch_norm(), relu=Activation("relu"),
                  conv2=Conv2D(filters, 3, padding=1, use_bias=False), bn2=torch_batch_norm())
    return Branches(Add(), activation="relu", name="BasicBlock", main=main,
                    shortcut=_shortcut(in_channels, filters, strides))


def bottleneck(in_channels: int, filters: int, strides: int = 1) -> Layer:
    """ResNet-50/101/152 block: 1×1 (filters) -> 3×3/s (filters) -> 1×1 (4·filters), + shortcut.

    The stride sits on the 3×3 conv (torchvision's "ResNet v1.5"; the paper strides the
    first 1×1). Each conv is followed by BatchNorm, and ReLU except the last, which is
    added to the shortcut before the ReLU.
    Shapes: x (N, H, W, in_channels) -> (N, H/s, W/s, 4·filters).
    params {"main": {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3"}, "shortcut": ...}.
    """
    main = serial(conv1=Conv2D(filters, 1, use_bias=False), bn1=torch_batch_norm(),
                  relu1=Activation("relu"),
                  conv2=Conv2D(filters, 3, strides=strides, padding=1, use_bias=False),
                  bn2=torch_batch_norm(), relu2=Activation("relu"),
                  conv3=Conv2D(4 * filters, 1, use_bias=False), bn3=torch_batch_norm())
    return Branches(Add(), activation="relu", name="Bottleneck", main=main,
                    shortcut=_shortcut(in_channels, 4 * filters, strides))


def _resnet(name: str, block, expansion: int, depths, num_classes: int) -> Layer:
    check_positive_int(name, "num_classes", num_classes)
    model = {"stem": serial(conv=Conv2D(64, 7, strides=2, padding=3, use_bias=False),
                            bn=torch_batch_norm(), relu=Activation("relu"),
                            pool=MaxPool2D(3, strides=2, padding=1))}
    channels = 64
    for stage, (depth, filters) in enumerate(zip(depths, (64, 128, 256, 512)), start=1):
        blocks = {}
        for i in range(depth):
            strides = 2 if stage > 1 and i == 0 else 1
            blocks[str(i)] = block(channels, filters, strides)
            channels = filters * expansion
        model[f"layer{stage}"] = serial(**blocks)
    return serial(**model, avgpool=GlobalAvgPool2D(), fc=Dense(num_classes))


def resnet18(num_classes: int = 1000) -> Layer:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 params with 1000 classes.

    Stem: conv 7×7/2 (64, no bias) + BatchNorm + ReLU, max-pool 3×3/2 (padding 1);
    layer1-layer4 of basic blocks (64, 128, 256, 512 filters; the first block of layers
    2-4 strides by 2); global average pool; dense num_classes (logits).
    224 -> 112 -> 56 -> 56 -> 28 -> 14 -> 7 -> 1. A shortcut is the identity, or a 1×1
    conv with the block's stride + BatchNorm where the shape changes (the paper's option B).
    BatchNorm uses PyTorch's epsilon 1e-5 and momentum 0.1 (our momentum 0.9).

    Shapes: x (N, H, W, C) -> logits (N, num_classes); any H, W >= 1 runs (e.g. 32×32).
    params {"stem": {"conv", "bn"}, "layer1": {"0": {"main", "shortcut"}, "1"},
            ..., "layer4": {...}, "fc"}.
    """
    return _resnet("resnet18", basic_block, 1, (2, 2, 2, 2), num_classes)


def resnet34(num_classes: int = 1000) -> Layer:
    """ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 params. Otherwise as `resnet18`."""
    return _resnet("resnet34", basic_block, 1, (3, 4, 6, 3), num_classes)


def resnet50(num_classes: int = 1000) -> Layer:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; 25,557,032 params with 1000 classes.

    As `resnet18` with `bottleneck` blocks: each stage's blocks output 4× its filters
    (256, 512, 1024, 2048), so the first block of every stage, layer1 included, has a
    projection shortcut; the stride sits on the 3×3 conv (torchvision's v1.5).

    Shapes: x (N, H, W, C) -> logits (N, num_classes); any H, W >= 1 runs.
    """
    return _resnet("resnet50", bottleneck, 4, (3, 4, 6, 3), num_classes)


def resnet101(num_classes: int = 1000) -> Layer:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3]; 44,549,160 params. As `resnet50`."""
    return _resnet("resnet101", bottleneck, 4, (3, 4, 23, 3), num_classes)


def resnet152(num_classes: int = 1000) -> Layer:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3]; 60,192,808 params. As `resnet50`."""
    return _resnet("resnet152", bottleneck, 4, (3, 8, 36, 3), num_classes)
