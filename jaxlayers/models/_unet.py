"""U-Net (Ronneberger et al. 2015; seed 004's segmentation, seed 003 Q16's transposed convs)."""

from __future__ import annotations

from jaxlayers._checks import check_positive_int
from jaxlayers._combinators import serial
from jaxlayers._compose import compose
from jaxlayers.core import Layer, layer_factory
from jaxlayers.layers.conv import Conv2D, Conv2DTranspose
from jaxlayers.layers.merge import Concatenate
from jaxlayers.layers.pool import MaxPool2D
from jaxlayers.models._autoencoder import check_sizes

__all__ = ["unet"]


def _double_conv(filters: int, activation) -> Layer:
    """Two Conv2D(filters, 3, "same") + activation: U-Net's block at one resolution."""
    return serial(Conv2D(filters, 3, padding="same", activation=activation),
                  Conv2D(filters, 3, padding="same", activation=activation))


@layer_factory
def unet(out_channels: int, *, filters=(16, 32, 64), activation="relu") -> Layer:
    """A U-Net: a contracting path, an expanding path, and skip concatenations between.

    Math, for filters (f_0, ..., f_L) (L = len(filters) - 1 poolings):
      down:   s_i = block_i(x), x = MaxPool2D(2)(s_i)                    for i = 0..L-1
      bottom: x = block_L(x)
      up:     x = block'_i(Concatenate([Conv2DTranspose(f_i, 2, strides=2)(x), s_i]))
                                                                       for i = L-1..0
      head:   logits = Conv2D(out_channels, 1)(x)
    block(f) = two Conv2D(f, 3, "same") + activation. The skips hand each decoder level
    the encoder's features at its own resolution (channels f_i from the transposed conv
    plus f_i from the skip), so fine detail lost by pooling comes back. "same" padding
    keeps the output the input's size (the paper's "valid" crops it).

    Output: logits (no sigmoid/softmax): a binary mask with out_channels=1 and
    jl.losses.binary_crossentropy(..., from_logits=True), classes with
    sparse_categorical_crossentropy(..., from_logits=True) on (N, H, W) labels.

    Shapes: x (N, H, W, C), H and W divisible by 2^L -> logits (N, H, W, out_channels).
    params {"down0".."down{L-1}", "bottom", "up{i}" (Conv2DTranspose, kernel (2, 2,
    f_{i+1}, f_i)), "decode{i}" (whose first kernel is (3, 3, 2·f_i, f_i): the skip's
    channels), "head", and the parameterless "pool", "concat"}; state {}.

    Args:
      out_channels: channels of the logits (1 for a binary mask).
      filters: channels per resolution, from the input's down to the bottom.
      activation: of every conv but the head.

    Raises:
      ValueError: a non-positive out_channels, filters with fewer than 2 entries, an
        unknown activation (construction); H or W not divisible by 2^L (trace time).
    """
    name = "unet"
    out_channels = check_positive_int(name, "out_channels", out_channels)
    filters = check_sizes(name, "filters", filters)
    if len(filters) < 2:
        raise ValueError(f"unet: filters must have at least 2 entries (one pooling), got "
                         f"{filters!r}.")
    levels = len(filters) - 1

    def unet_forward(m, x):
        if x.ndim != 4 or x.shape[1] % 2 ** levels or x.shape[2] % 2 ** levels:
            raise ValueError(f"unet: input must be (N, H, W, C) with H and W divisible by "
                             f"2**{levels} = {2 ** levels}, got shape {tuple(x.shape)}.")
        skips = []
        for i in range(levels):
            skips.append(m[f"down{i}"](x))
            x = m.pool(skips[-1])
        x = m.bottom(x)
        for i in reversed(range(levels)):
            x = m[f"decode{i}"](m.concat((m[f"up{i}"](x), skips[i])))
        return m.head(x)

    children = {f"down{i}": _double_conv(f, activation) for i, f in enumerate(filters[:-1])}
    children["pool"] = MaxPool2D(2)
    children["bottom"] = _double_conv(filters[-1], activation)
    for i in reversed(range(levels)):
        children[f"up{i}"] = Conv2DTranspose(filters[i], 2, strides=2)
        children[f"decode{i}"] = _double_conv(filters[i], activation)
    children["concat"] = Concatenate()
    children["head"] = Conv2D(out_channels, 1)
    return compose(unet_forward, **children)
