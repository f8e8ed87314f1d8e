"""Vision Transformer (Dosovitskiy et al. 2021; seed 004's timeline), as torchvision's ViT."""

from __future__ import annotations

import jax.numpy as jnp

from jaxlayers._checks import check_float, check_positive_int, check_rank, check_rate, shape_of
from jaxlayers._compose import compose
from jaxlayers.core import Layer, layer_factory
from jaxlayers.initializers import normal, zeros
from jaxlayers.layers.blocks import Identity
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.positional import PositionEmbedding
from jaxlayers.layers.transformer import TransformerEncoder

__all__ = ["vit", "vit_b16"]


def _class_token(init=zeros) -> Layer:
    """Prepend a learned token: (N, T, d) -> (N, T + 1, d). params {"token": (1, 1, d)}."""
    name = "ClassToken"

    def init_fn(key, spec):
        return {"token": init(key, (1, 1, shape_of(name, spec)[-1]), jnp.float32)}, {}

    def apply(params, state, x, *, key=None, training=False):
        del key, training
        check_float(name, x)
        check_rank(name, x, 3, "(N, T, d)")
        token = jnp.broadcast_to(params["token"].astype(x.dtype), (x.shape[0], 1, x.shape[2]))
        return jnp.concatenate([token, x], axis=1), state

    return Layer(init_fn, apply, name=name)


@layer_factory
def vit(num_classes: int, *, image_size: int, patch_size: int, d_model: int, depth: int,
        num_heads: int, mlp_dim: int, dropout: float = 0.0, epsilon: float = 1e-6) -> Layer:
    """A Vision Transformer: patches -> class token + positions -> pre-LN encoder -> head.

    Math: the image is cut into (image_size / patch_size)² patches, each projected to
    d_model by one strided Conv2D (kernel = stride = patch_size, as torchvision's
    conv_proj); a learned class token is prepended, learned positions added, then `depth`
    pre-LN encoder blocks (num_heads heads, FFN mlp_dim with exact GELU, LayerNorm eps
    1e-6), a final LayerNorm, and Dense(num_classes) on the class token's output (logits).

    Shapes: images (N, image_size, image_size, C) -> logits (N, num_classes).
    params {"patches": {"kernel": (p, p, C, d), "bias"}, "class_token": {"token":
    (1, 1, d)}, "positions": {"embeddings": (T + 1, d)}, "dropout", "encoder": {"blocks",
    "norm"}, "head"}.

    Raises:
      ValueError: a non-positive size, image_size not divisible by patch_size, d_model not
        divisible by num_heads, a bad dropout (construction).
    """
    name = "vit"
    for what, value in (("num_classes", num_classes), ("image_size", image_size),
                        ("patch_size", patch_size), ("d_model", d_model), ("depth", depth),
                        ("num_heads", num_heads), ("mlp_dim", mlp_dim)):
        check_positive_int(name, what, value)
    check_rate(name, "dropout", dropout)
    if image_size % patch_size:
        raise ValueError(f"vit: image_size must be divisible by patch_size, got "
                         f"{image_size} and {patch_size}.")
    if d_model % num_heads:
        raise ValueError(f"vit: d_model must be divisible by num_heads, got {d_model} and "
                         f"{num_heads}.")
    tokens = (image_size // patch_size) ** 2 + 1

    def vit_forward(m, images):
        x = m.patches(images)                                  # (N, h, w, d)
        x = x.reshape(x.shape[0], -1, x.shape[-1])             # (N, h·w, d)
        x = m.dropout(m.positions(m.class_token(x)))
        x = m.encoder(x)
        return m.head(x[:, 0])                                 # the class token

    return compose(
        vit_forward,
        patches=Conv2D(d_model, patch_size, strides=patch_size),
        class_token=_class_token(),
        positions=PositionEmbedding(tokens, embeddings_init=normal(0.02)),
        dropout=Dropout(dropout) if dropout > 0 else Identity(),
        encoder=TransformerEncoder(depth, num_heads, mlp_dim, dropout=dropout,
                                   activation="gelu", norm_first=True, epsilon=epsilon),
        head=Dense(num_classes))


def vit_b16(num_classes: int = 1000, *, image_size: int = 224, dropout: float = 0.0) -> Layer:
    """ViT-B/16: 16×16 patches, d 768, 12 blocks of 12 heads, MLP 3072: 86,567,656 params
    on 224×224×3 with 1000 classes (torchvision's vit_b_16). As `vit`."""
    return vit(num_classes, image_size=image_size, patch_size=16, d_model=768, depth=12,
               num_heads=12, mlp_dim=3072, dropout=dropout)
