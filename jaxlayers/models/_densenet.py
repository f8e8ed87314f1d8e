"""DenseNet (Huang et al. 2017): each layer sees the concatenation of all earlier ones."""

from __future__ import annotations

from jaxlayers._checks import check_positive_int
from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.layers.activation import Activation
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.merge import Concatenate
from jaxlayers.layers.pool import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from jaxlayers.layers.blocks import Branches, Identity
from jaxlayers.models._blocks import torch_batch_norm


def dense_layer(growth_rate: int, bn_size: int = 4) -> Layer:
    """One DenseNet-BC layer: y = concat(x, conv3×3(relu(bn(conv1×1(relu(bn(x))))))).

    The bottleneck 1×1 conv has bn_size·growth_rate filters, the 3×3 conv growth_rate
    (both without bias, pre-activation order BN -> ReLU -> conv).
    Shapes: x (N, H, W, C) -> (N, H, W, C + growth_rate).
    params {"input": {}, "new": {"norm1", "conv1", "norm2", "conv2"}}.
    """
    new = serial(norm1=torch_batch_norm(), relu1=Activation("relu"),
                 conv1=Conv2D(bn_size * growth_rate, 1, use_bias=False),
                 norm2=torch_batch_norm(), relu2=Activation("relu"),
                 conv2=Conv2D(growth_rate, 3, padding=1, use_bias=False))
    return Branches(Concatenate(), name="DenseLayer", input=Identity(), new=new)


def transition(filters: int) -> Layer:
    """Between dense blocks: BN -> ReLU -> 1×1 conv (filters, no bias) -> 2×2 average pool."""
    return serial(norm=torch_batch_norm(), relu=Activation("relu"),
                  conv=Conv2D(filters, 1, use_bias=False), pool=AvgPool2D(2))


def _densenet(name: str, growth_rate: int, block_config, init_features: int,
              num_classes: int, bn_size: int = 4) -> Layer:
    check_positive_int(name, "num_classes", num_classes)
    features = {"conv0": Conv2D(init_features, 7, strides=2, padding=3, use_bias=False),
                "norm0": torch_batch_norm(), "relu0": Activation("relu"),
                "pool0": MaxPool2D(3, strides=2, padding=1)}
    channels = init_features
    for b, n_layers in enumerate(block_config, start=1):
        features[f"denseblock{b}"] = serial(**{f"denselayer{i}": dense_layer(growth_rate, bn_size)
                                               for i in range(1, n_layers + 1)})
        channels += n_layers * growth_rate
        if b < len(block_config):
            channels //= 2  # compression 0.5 (DenseNet-BC)
            features[f"transition{b}"] = transition(channels)
    features["norm5"] = torch_batch_norm()
    return serial(features=serial(**features), relu=Activation("relu"),
                  avgpool=GlobalAvgPool2D(), classifier=Dense(num_classes))


def densenet121(num_classes: int = 1000) -> Layer:
    """DenseNet-121 (BC): growth 32, blocks [6, 12, 24, 16]; 7,978,856 params (1000 classes).

    Stem: conv 7×7/2 (64, no bias), BN, ReLU, max-pool 3×3/2 (padding 1); four dense
    blocks of `dense_layer`s (bottleneck 4·growth), each but the last followed by a
    `transition` halving the channels and the size; final BN, ReLU, global average pool,
    dense num_classes (logits). Channels 64 -> 256 -> 128 -> 512 -> 256 -> 1024 -> 512
    -> 1024; 224 -> 56 -> 28 -> 14 -> 7. As torchvision's densenet121 (its BatchNorm:
    epsilon 1e-5, momentum 0.1 = our 0.9; no dropout).

    Shapes: x (N, H, W, C) -> logits (N, num_classes); H, W >= 29 (three 2×2 pools after
    the stem must leave at least 1×1; torchvision's min_size).
    params {"features": {"conv0", "norm0", "denseblock1": {"denselayer1": {"input",
            "new"}, ...}, "transition1", ..., "norm5"}, "classifier"}.
    """
    return _densenet("densenet121", 32, (6, 12, 24, 16), 64, num_classes)


def densenet161(num_classes: int = 1000) -> Layer:
    """DenseNet-161: growth 48, blocks [6, 12, 36, 24], 96 stem filters; 28,681,000 params.

    Otherwise as `densenet121`.
    """
    return _densenet("densenet161", 48, (6, 12, 36, 24), 96, num_classes)


def densenet169(num_classes: int = 1000) -> Layer:
    """DenseNet-169: growth 32, blocks [6, 12, 32, 32]; 14,149,480 params. As `densenet121`."""
    return _densenet("densenet169", 32, (6, 12, 32, 32), 64, num_classes)


def densenet201(num_classes: int = 1000) -> Layer:
    """DenseNet-201: growth 32, blocks [6, 12, 48, 32]; 20,013,928 params. As `densenet121`."""
    return _densenet("densenet201", 32, (6, 12, 48, 32), 64, num_classes)
