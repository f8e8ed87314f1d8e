"""VGG (Simonyan & Zisserman 2014): stacks of 3×3 convolutions, as torchvision's builders."""

from __future__ import annotations

from jaxlayers._checks import check_positive_int, check_rate
from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.pool import AdaptiveAvgPool2D, MaxPool2D
from jaxlayers.layers.shape import Flatten

# Convolutions per block (filters 64, 128, 256, 512, 512), by depth (the paper's A, B, D, E).
_BLOCKS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_FILTERS = (64, 128, 256, 512, 512)


def _vgg(depth: int, num_classes: int, dropout: float) -> Layer:
    name = f"vgg{depth}"
    check_positive_int(name, "num_classes", num_classes)
    check_rate(name, "dropout", dropout)
    blocks = {}
    for b, (n, filters) in enumerate(zip(_BLOCKS[depth], _FILTERS), start=1):
        convs = {f"conv{i}": Conv2D(filters, 3, padding=1, activation="relu")
                 for i in range(1, n + 1)}
        blocks[f"block{b}"] = serial(**convs, pool=MaxPool2D(2))
    classifier = serial(flatten=Flatten(),
                        fc1=Dense(4096, activation="relu"), drop1=Dropout(dropout),
                        fc2=Dense(4096, activation="relu"), drop2=Dropout(dropout),
                        fc3=Dense(num_classes))
    return serial(features=serial(**blocks), avgpool=AdaptiveAvgPool2D((7, 7)),
                  classifier=classifier)


def vgg16(num_classes: int = 1000, *, dropout: float = 0.5) -> Layer:
    """VGG-16 (configuration D): 2, 2, 3, 3, 3 convolutions per block; 138,357,544 params.

    Five blocks of 3×3 convolutions (padding 1, ReLU; 64, 128, 256, 512, 512 filters),
    each ending in a 2×2 max-pool (224 -> 112 -> 56 -> 28 -> 14 -> 7), then
    `AdaptiveAvgPool2D((7, 7))` (torchvision's: the identity at 224×224, and it lets any
    input of at least 32×32 reach the 7×7×512 = 25,088 features), flatten, and dense
    4,096 (ReLU, dropout), 4,096 (ReLU, dropout), num_classes (logits).

    Params per block (seed 003's table, biases included): 38,720 / 221,440 / 1,475,328 /
    5,899,776 / 7,079,424; dense 102,764,544 + 16,781,312 + 4,097,000; total 138,357,544
    with 1000 classes, as torchvision's vgg16 (Keras's has no average pool, same count).
    Seed 003 prints 3,584 for block 1, counting its second conv as 3->64; it is 64->64.

    Shapes: x (N, H, W, 3) -> logits (N, num_classes), H, W >= 32.
    params {"features": {"block1": {"conv1", "conv2"}, ..., "block5": {...}},
            "classifier": {"fc1", "fc2", "fc3"}}.

    Args:
      num_classes: output units.
      dropout: drop rate after fc1 and fc2 (0.5).
    """
    return _vgg(16, num_classes, dropout)


def vgg11(num_classes: int = 1000, *, dropout: float = 0.5) -> Layer:
    """VGG-11 (configuration A): 1, 1, 2, 2, 2 convolutions per block; 132,863,336 params.

    Otherwise as `vgg16`.
    """
    return _vgg(11, num_classes, dropout)


def vgg13(num_classes: int = 1000, *, dropout: float = 0.5) -> Layer:
    """VGG-13 (configuration B): 2, 2, 2, 2, 2 convolutions per block; 133,047,848 params.

    Otherwise as `vgg16`.
    """
    return _vgg(13, num_classes, dropout)


def vgg19(num_classes: int = 1000, *, dropout: float = 0.5) -> Layer:
    """VGG-19 (configuration E): 2, 2, 4, 4, 4 convolutions per block; 143,667,240 params.

    Otherwise as `vgg16`.
    """
    return _vgg(19, num_classes, dropout)
