"""LeNet-5 (LeCun et al. 1998), in the modern form of seed 003's table."""

from __future__ import annotations

from jaxlayers._checks import check_positive_int
from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.pool import AvgPool2D
from jaxlayers.layers.shape import Flatten


def lenet5(num_classes: int = 10, *, activation="tanh") -> Layer:
    """LeNet-5 on 32×32 grey images: two 5×5 conv + 2×2 average-pool stages, three dense layers.

    Layers (seed 003 «LeNet-5», on a 32×32×1 input; params with biases):
      features/conv1  Conv2D(6, 5×5), tanh       -> 28×28×6      156
      features/pool1  AvgPool2D(2)               -> 14×14×6        0
      features/conv2  Conv2D(16, 5×5), tanh      -> 10×10×16   2,416
      features/pool2  AvgPool2D(2)               -> 5×5×16         0
      classifier/flatten                          -> 400           0
      classifier/fc1  Dense(120), tanh                         48,120
      classifier/fc2  Dense(84), tanh                          10,164
      classifier/fc3  Dense(num_classes) (logits)                 850
      total 61,706 for 10 classes.

    This is the textbook variant: C3 fully connected to S2 (the 1998 paper's C3 has a
    sparse connection table and 1,516 params), parameter-free average pooling (the
    paper's S2/S4 have a learned scale and bias), and a plain dense output (the paper's
    has RBF units). MNIST's 28×28 digits are padded to 32×32 first (the paper's setup).

    Shapes: x (N, 32, 32, C) -> logits (N, num_classes) (no softmax; pair it with a
    from-logits loss). Any C works; C = 1 gives the counts above.
    params {"features": {"conv1", "conv2"}, "classifier": {"fc1", "fc2", "fc3"}}.

    Args:
      num_classes: output units.
      activation: hidden nonlinearity (tanh as in the paper; "relu" is a common variant).
    """
    check_positive_int("lenet5", "num_classes", num_classes)
    features = serial(conv1=Conv2D(6, 5, activation=activation), pool1=AvgPool2D(2),
                      conv2=Conv2D(16, 5, activation=activation), pool2=AvgPool2D(2))
    classifier = serial(flatten=Flatten(), fc1=Dense(120, activation=activation),
                        fc2=Dense(84, activation=activation), fc3=Dense(num_classes))
    return serial(features=features, classifier=classifier)
