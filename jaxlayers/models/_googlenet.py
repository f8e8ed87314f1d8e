"""GoogLeNet / Inception v1 (Szegedy et al. 2014): the paper's net and torchvision's."""

from __future__ import annotations

from jaxlayers._checks import check_one_of, check_positive_int, check_rate
from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.lrn import CrossChannelNormalization
from jaxlayers.layers.merge import Concatenate
from jaxlayers.layers.pool import GlobalAvgPool2D, MaxPool2D
from jaxlayers.layers.blocks import Branches
from jaxlayers.models._blocks import conv_bn

# Inception modules of the paper's Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5,
# pool proj. The input channels follow from the previous module.
_INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def _paper_conv(filters, kernel_size, strides=1):
    # "All the convolutions, including those inside the Inception modules, use rectified
    # linear activation"; padding keeps the size (the paper's table).
    return Conv2D(filters, kernel_size, strides=strides, padding=kernel_size // 2,
                  activation="relu")


def _torchvision_conv(filters, kernel_size, strides=1):
    # torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU.
    return conv_bn(filters, kernel_size, strides=strides, padding=kernel_size // 2,
                   epsilon=1e-3)


def inception(c1x1: int, c3x3_reduce: int, c3x3: int, c5x5_reduce: int, c5x5: int,
              pool_proj: int, *, conv=_paper_conv, k5: int = 5) -> Layer:
    """An Inception module: four branches on one input, concatenated on the channels.

    branch1: 1×1 conv (c1x1); branch2: 1×1 (c3x3_reduce) -> 3×3 (c3x3);
    branch3: 1×1 (c5x5_reduce) -> k5×k5 (c5x5); branch4: 3×3/1 max-pool -> 1×1 (pool_proj).
    Shapes: x (N, H, W, C) -> (N, H, W, c1x1 + c3x3 + c5x5 + pool_proj).
    params {"branch1", "branch2": {"reduce", "conv"}, "branch3": {...}, "branch4": {"proj"}}.
    """
    return Branches(
        Concatenate(), name="Inception",
        branch1=conv(c1x1, 1),
        branch2=serial(reduce=conv(c3x3_reduce, 1), conv=conv(c3x3, 3)),
        branch3=serial(reduce=conv(c5x5_reduce, 1), conv=conv(c5x5, k5)),
        branch4=serial(pool=MaxPool2D(3, strides=1, padding="same"), proj=conv(pool_proj, 1)))


def _features(conv, k5: int, lrn: bool, last_pool: int) -> Layer:
    def pool(size=3):
        # "same" = torchvision's ceil_mode=True on the even sizes of a 224 input.
        return MaxPool2D(size, strides=2, padding="same")

    def norm():
        # BVLC GoogLeNet's LRN (Caffe's default k = 1).
        return CrossChannelNormalization(size=5, alpha=1e-4, beta=0.75, k=1.0)

    def modules(*names):
        return {f"inception{n}": inception(*_INCEPTION[n], conv=conv, k5=k5) for n in names}

    stem = {"conv1": conv(64, 7, 2), "pool1": pool()}
    stem.update({"norm1": norm()} if lrn else {})
    stem.update(conv2=conv(64, 1), conv3=conv(192, 3))
    stem.update({"norm2": norm()} if lrn else {})
    return serial(**stem, pool2=pool(), **modules("3a", "3b"), pool3=pool(),
                  **modules("4a", "4b", "4c", "4d", "4e"), pool4=pool(last_pool),
                  **modules("5a", "5b"))


def googlenet(num_classes: int = 1000, *, variant: str = "paper",
              dropout: float | None = None) -> Layer:
    """GoogLeNet (Inception v1) without the auxiliary classifiers.

    Stem: conv 7×7/2 (64), max-pool 3×3/2, 1×1 (64), 3×3 (192), max-pool 3×3/2; Inception
    modules 3a, 3b, max-pool, 4a-4e, max-pool, 5a, 5b (Table 1 of the paper); global
    average pool, dropout, dense num_classes (logits). 224 -> 112 -> 56 -> 28 -> 14 -> 7.

    variant="paper": convolutions with bias and ReLU, a 5×5 conv in the third branch,
    LRN after the first max-pool and after the 3×3 stem conv (BVLC GoogLeNet's
    size 5, alpha 1e-4, beta 0.75, k 1), 3×3/2 max-pool before 5a, dropout 0.4:
    6,998,552 params with 1000 classes (the params column of the paper's Table 1 is
    approximate and sums to about 6.8M).

    variant="torchvision": torchvision's `googlenet(aux_logits=False)`, 6,624,904 params:
    conv (no bias) + BatchNorm(eps=1e-3) + ReLU everywhere, no LRN, a 3×3 conv where the
    paper has 5×5 (pytorch/vision#906, kept for its pretrained weights), 2×2/2 max-pool
    before 5a, dropout 0.2.

    Max-pools use "same" padding: equal to torchvision's `ceil_mode=True` on the even
    sizes of a 224×224 input (odd sizes are padded on both sides instead of at the end).

    Shapes: x (N, H, W, 3) -> logits (N, num_classes); any H, W >= 1 runs.
    params {"features": {"conv1", "conv2", "conv3", "inception3a", ..., "inception5b"},
            "classifier": {"fc"}}.

    Args:
      num_classes: output units.
      variant: "paper" or "torchvision".
      dropout: drop rate before the dense layer (default 0.4 paper, 0.2 torchvision).
    """
    check_positive_int("googlenet", "num_classes", num_classes)
    check_one_of("googlenet", "variant", variant, ("paper", "torchvision"))
    if variant == "paper":
        features = _features(_paper_conv, k5=5, lrn=True, last_pool=3)
        rate = 0.4 if dropout is None else dropout
    else:
        features = _features(_torchvision_conv, k5=3, lrn=False, last_pool=2)
        rate = 0.2 if dropout is None else dropout
    check_rate("googlenet", "dropout", rate)
    classifier = serial(dropout=Dropout(rate), fc=Dense(num_classes))
    return serial(features=features, avgpool=GlobalAvgPool2D(), classifier=classifier)
