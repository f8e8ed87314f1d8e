"""AlexNet (Krizhevsky, Sutskever & Hinton 2012): the two-tower paper net and torchvision's."""

from __future__ import annotations

from jaxlayers._checks import check_one_of, check_positive_int, check_rate
from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.lrn import CrossChannelNormalization
from jaxlayers.layers.pool import AdaptiveAvgPool2D, MaxPool2D
from jaxlayers.layers.shape import Flatten


def _paper_features() -> Layer:
    # The two GPUs' towers are groups=2 convolutions: conv2, conv4 and conv5 see only their
    # own tower's half of the channels; conv3 and the dense layers see both.
    return serial(
        conv1=Conv2D(96, 11, strides=4, activation="relu"),
        norm1=CrossChannelNormalization(size=5, alpha=1e-4, beta=0.75, k=2.0),
        pool1=MaxPool2D(3, strides=2),
        conv2=Conv2D(256, 5, padding=2, groups=2, activation="relu"),
        norm2=CrossChannelNormalization(size=5, alpha=1e-4, beta=0.75, k=2.0),
        pool2=MaxPool2D(3, strides=2),
        conv3=Conv2D(384, 3, padding=1, activation="relu"),
        conv4=Conv2D(384, 3, padding=1, groups=2, activation="relu"),
        conv5=Conv2D(256, 3, padding=1, groups=2, activation="relu"),
        pool5=MaxPool2D(3, strides=2))


def _torchvision_features() -> Layer:
    return serial(
        conv1=Conv2D(64, 11, strides=4, padding=2, activation="relu"),
        pool1=MaxPool2D(3, strides=2),
        conv2=Conv2D(192, 5, padding=2, activation="relu"),
        pool2=MaxPool2D(3, strides=2),
        conv3=Conv2D(384, 3, padding=1, activation="relu"),
        conv4=Conv2D(256, 3, padding=1, activation="relu"),
        conv5=Conv2D(256, 3, padding=1, activation="relu"),
        pool5=MaxPool2D(3, strides=2))


def alexnet(num_classes: int = 1000, *, variant: str = "paper", dropout: float = 0.5) -> Layer:
    """AlexNet: five convolutions, three max-pools, three dense layers (ReLU throughout).

    variant="paper" (seed 002; 60,965,224 params with 1000 classes), on 227×227×3:
      conv1 96@11×11/4 -> 55×55 (34,944), LRN, maxpool 3/2 -> 27;
      conv2 256@5×5 p2, 2 groups (307,456), LRN, maxpool -> 13;
      conv3 384@3×3 p1 (885,120); conv4 384@3×3 p1, 2 groups (663,936);
      conv5 256@3×3 p1, 2 groups (442,624); maxpool -> 6×6×256;
      fc6 9,216->4,096 (37,752,832), dropout; fc7 4,096 (16,781,312), dropout;
      fc8 num_classes (4,097,000).
    The paper's "224×224" input only gives its 55×55 maps at 227×227 (224 zero-padded by
    3 rows and columns), so feed 227×227; another size changes fc6's input size.
    LRN is `CrossChannelNormalization(size=5, alpha=1e-4, beta=0.75, k=2)` after the ReLU
    of conv1 and conv2, as in the paper §3.3; the two-GPU towers are `groups=2`.

    variant="torchvision" (61,100,840 params): one tower, no LRN, 64/192/384/256/256
    filters (conv1 padded by 2), then `AdaptiveAvgPool2D((6, 6))`, so any input of at
    least 63×63 gives fc6 its 9,216 inputs; dropout before fc6 and fc7.

    Shapes: x (N, H, W, 3) -> logits (N, num_classes).
    params {"features": {"conv1", ..., "conv5"}, "classifier": {"fc6", "fc7", "fc8"}}.

    Args:
      num_classes: output units.
      variant: "paper" or "torchvision".
      dropout: drop rate of the two dropout layers (0.5 in both).
    """
    check_positive_int("alexnet", "num_classes", num_classes)
    check_one_of("alexnet", "variant", variant, ("paper", "torchvision"))
    check_rate("alexnet", "dropout", dropout)
    if variant == "paper":
        classifier = serial(flatten=Flatten(),
                            fc6=Dense(4096, activation="relu"), drop6=Dropout(dropout),
                            fc7=Dense(4096, activation="relu"), drop7=Dropout(dropout),
                            fc8=Dense(num_classes))
        return serial(features=_paper_features(), classifier=classifier)
    classifier = serial(flatten=Flatten(),
                        drop6=Dropout(dropout), fc6=Dense(4096, activation="relu"),
                        drop7=Dropout(dropout), fc7=Dense(4096, activation="relu"),
                        fc8=Dense(num_classes))
    return serial(features=_torchvision_features(), avgpool=AdaptiveAvgPool2D((6, 6)),
                  classifier=classifier)
