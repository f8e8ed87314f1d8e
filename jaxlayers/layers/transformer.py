"""Transformer blocks (seed 004): FeedForward, encoder and decoder blocks and stacks."""

from __future__ import annotations

import dataclasses
import functools

from jaxlayers import activations
from jaxlayers._checks import (check_positive_float, check_positive_int, check_rate, describe,
                               shape_of)
from jaxlayers._combinators import repeat, serial
from jaxlayers._compose import compose
from jaxlayers.core import Layer, Masked, layer_factory, stateless
from jaxlayers.layers.attention import MultiHeadAttention
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.blocks import Identity
from jaxlayers.layers.dropout import Dropout, require_key
from jaxlayers.layers.norm import LayerNorm

__all__ = ["FeedForward", "TransformerEncoderBlock", "TransformerDecoderBlock",
           "TransformerEncoder", "TransformerDecoder"]


def _unmask(x):
    return (x.values, x.mask) if isinstance(x, Masked) else (x, None)


def _rewrap(values, mask):
    return values if mask is None else Masked(values, mask)


def _width(name: str, spec) -> int:
    shape = shape_of(name, spec[0] if isinstance(spec, tuple) else spec)
    if len(shape) != 3:
        raise ValueError(f"{name}: input must have rank 3 (N, T, d_model), got shape {shape}.")
    return shape[-1]


def _check_heads(name: str, d_model: int, num_heads: int) -> int:
    if d_model % num_heads:
        raise ValueError(f"{name}: d_model must be divisible by num_heads to split it into "
                         f"heads, got d_model={d_model} (the input's last axis) and "
                         f"num_heads={num_heads}.")
    return d_model // num_heads


@layer_factory
def FeedForward(hidden: int, *, activation="relu", dropout: float = 0.0,
                output_dim: int | None = None) -> Layer:
    """The transformer's position-wise FFN (seed 004): y = act(x W1 + b1) W2 + b2.

    Dense(hidden) -> activation -> Dropout(dropout) -> Dense(output_dim or the input's
    features), applied at every position.

    Shapes: x (..., E) -> y (..., output_dim or E).
    params {"hidden": {"kernel": (E, hidden), "bias"}, "output": {"kernel": (hidden, E_out),
    "bias"}}; state {}.

    Raises:
      ValueError: bad hidden/output_dim/dropout or an unknown activation (construction);
        Dense's shape errors (trace time).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> ffn = jl.FeedForward(16, activation="gelu")
      >>> params, state = ffn.init(jax.random.key(0), (2, 5, 8))
      >>> y, _ = ffn.apply(params, state, jnp.ones((2, 5, 8)))
      >>> y.shape
      (2, 5, 8)
    """
    name = "FeedForward"
    check_positive_int(name, "hidden", hidden)
    check_rate(name, "dropout", dropout)
    activations.get(activation, name)
    if output_dim is not None:
        check_positive_int(name, "output_dim", output_dim)

    @functools.lru_cache(maxsize=8)
    def build(width: int) -> Layer:
        return serial(hidden=Dense(hidden, activation=activation), dropout=_drop(dropout),
                      output=Dense(output_dim or width))

    def init(key, spec):
        width = shape_of(name, spec)[-1]
        return build(width).init(key, spec)

    def apply(params, state, x, *, key=None, training=False):
        if training and dropout > 0:
            require_key(name, key)
        inner = build(int(params["output"]["kernel"].shape[-1]))
        return inner.apply(params, state, x, key=key, training=training)

    return Layer(init, apply, name=name)


def _drop(rate: float) -> Layer:
    """Dropout(rate), or the identity at rate 0 (so that no key is needed without dropout)."""
    return Dropout(rate) if rate > 0 else Identity()


def _block_children(name, num_heads, ffn_dim, d_model, dropout, activation, epsilon, cross):
    head = _check_heads(name, d_model, num_heads)
    children = dict(self_attention=MultiHeadAttention(num_heads, head, dropout=dropout),
                    norm1=LayerNorm(epsilon=epsilon), drop1=_drop(dropout))
    if cross:
        children.update(cross_attention=MultiHeadAttention(num_heads, head, dropout=dropout),
                        norm2=LayerNorm(epsilon=epsilon), drop2=_drop(dropout))
    last = "3" if cross else "2"
    children.update({"ffn": FeedForward(ffn_dim, activation=activation, dropout=dropout),
                     f"norm{last}": LayerNorm(epsilon=epsilon),
                     f"drop{last}": _drop(dropout)})
    return children


def _sublayer(m, x, norm: str, drop: str, fn, norm_first: bool):
    """Add & Norm: LayerNorm(x + Drop(f(x))) (post-LN, the seed's), or x + Drop(f(LN(x)))."""
    if norm_first:
        return x + m[drop](fn(m[norm](x)))
    return m[norm](x + m[drop](fn(x)))


def _check_block_args(name, num_heads, ffn_dim, dropout, activation, epsilon):
    check_positive_int(name, "num_heads", num_heads)
    check_positive_int(name, "ffn_dim", ffn_dim)
    check_rate(name, "dropout", dropout)
    check_positive_float(name, "epsilon", epsilon)
    activations.get(activation, name)


@layer_factory
def TransformerEncoderBlock(num_heads: int, ffn_dim: int, *, dropout: float = 0.0,
                            activation="relu", norm_first: bool = False,
                            epsilon: float = 1e-5) -> Layer:
    """One encoder layer (Vaswani et al. 2017; seed 004): self-attention, then the FFN.

    Math (post-LN, norm_first=False, the seed's LayerNorm(x + Sublayer(x))):
      h = LN1(x + Drop(MHA(x, x, x))),   y = LN2(h + Drop(FFN(h)))
    (pre-LN, norm_first=True):
      h = x + Drop(MHA(LN1(x))),         y = h + Drop(FFN(LN2(h)))
    MHA has num_heads heads of size d_model / num_heads; FFN is
    `FeedForward(ffn_dim, activation, dropout)`; dropout also acts on the attention
    weights (as PyTorch's nn.TransformerEncoderLayer, whose defaults these are: LayerNorm
    eps 1e-5, post-LN). A `jl.Masked` input masks padded keys and keeps its mask; the
    keyword input `mask=` (bool, broadcastable to (N, H, T, T), True = attend) goes to
    the attention.

    Shapes: x (N, T, d_model) -> y of the same shape.
    params {"self_attention", "norm1", "drop1", "ffn", "norm2", "drop2"} (a `jl.compose`);
    state {}.

    Raises:
      ValueError: bad sizes, rate, epsilon or activation (construction); d_model not
        divisible by num_heads, and the attention's shape errors (trace time).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> block = jl.TransformerEncoderBlock(2, 16, norm_first=True)
      >>> params, state = block.init(jax.random.key(0), (2, 5, 8))
      >>> y, _ = block.apply(params, state, jnp.ones((2, 5, 8)))
      >>> y.shape
      (2, 5, 8)
    """
    name = "TransformerEncoderBlock"
    _check_block_args(name, num_heads, ffn_dim, dropout, activation, epsilon)

    def build(d_model: int) -> Layer:
        def encoder_block(m, x, *, mask=None):
            values, pad = _unmask(x)

            def attend(h):
                return _unmask(m.self_attention(_rewrap(h, pad), mask=mask))[0]

            h = _sublayer(m, values, "norm1", "drop1", attend, norm_first)
            return _rewrap(_sublayer(m, h, "norm2", "drop2", m.ffn, norm_first), pad)

        return compose(encoder_block, **_block_children(
            name, num_heads, ffn_dim, d_model, dropout, activation, epsilon, cross=False))

    return _by_width(name, build, lambda spec: _width(name, spec), dropout)


@layer_factory
def TransformerDecoderBlock(num_heads: int, ffn_dim: int, *, dropout: float = 0.0,
                            activation="relu", norm_first: bool = False,
                            epsilon: float = 1e-5) -> Layer:
    """One decoder layer: causal self-attention, cross-attention on the memory, the FFN.

    Math (post-LN; pre-LN as in `TransformerEncoderBlock`):
      h = LN1(t + Drop(MHA_causal(t, t, t)))
      g = LN2(h + Drop(MHA(h, memory, memory)))
      y = LN3(g + Drop(FFN(g)))
    As PyTorch's nn.TransformerDecoderLayer (with tgt_is_causal). Input (target, memory);
    either may be a `jl.Masked` (padded target keys are not attended, padded memory
    positions are not attended by the cross-attention); keyword inputs `mask=` (for the
    self-attention, combined with the causal mask) and `memory_mask=` (for the
    cross-attention), both True = attend.

    Shapes: target (N, T, d_model), memory (N, S, d_model) -> y (N, T, d_model).
    params {"self_attention", "norm1", "drop1", "cross_attention", "norm2", "drop2", "ffn",
    "norm3", "drop3"}; state {}.

    Raises:
      ValueError: as the encoder block; a memory whose feature size differs from
        d_model (the cross-attention's kernel), an input that is not (target, memory).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> block = jl.TransformerDecoderBlock(2, 16)
      >>> target, memory = jnp.ones((2, 4, 8)), jnp.ones((2, 6, 8))
      >>> params, state = block.init(jax.random.key(0), (target.shape, memory.shape))
      >>> y, _ = block.apply(params, state, (target, memory))
      >>> y.shape
      (2, 4, 8)
    """
    name = "TransformerDecoderBlock"
    _check_block_args(name, num_heads, ffn_dim, dropout, activation, epsilon)

    def build(d_model: int) -> Layer:
        children = _block_children(name, num_heads, ffn_dim, d_model, dropout, activation,
                                   epsilon, cross=True)
        children["self_attention"] = MultiHeadAttention(
            num_heads, d_model // num_heads, dropout=dropout, causal=True)

        def decoder_block(m, inputs, *, mask=None, memory_mask=None):
            if not (isinstance(inputs, tuple) and len(inputs) == 2):
                raise ValueError(f"{name}: input must be (target, memory), got "
                                 f"{describe(inputs)}.")
            target, memory = inputs
            values, pad = _unmask(target)

            def self_attend(h):
                return _unmask(m.self_attention(_rewrap(h, pad), mask=mask))[0]

            def cross_attend(h):
                return _unmask(m.cross_attention((h, memory), mask=memory_mask))[0]

            h = _sublayer(m, values, "norm1", "drop1", self_attend, norm_first)
            h = _sublayer(m, h, "norm2", "drop2", cross_attend, norm_first)
            return _rewrap(_sublayer(m, h, "norm3", "drop3", m.ffn, norm_first), pad)

        return compose(decoder_block, **children)

    return _by_width(name, build, lambda spec: _width(name, spec), dropout)


def _by_width(name: str, build, width_of, dropout: float) -> Layer:
    """A layer whose inner compose depends on the input width d_model, built once per width.

    init reads d_model from the spec with `width_of`, apply from the params (norm1's
    gamma is (d_model,)); keyword inputs (mask=, memory_mask=) pass on.
    """
    cached = functools.lru_cache(maxsize=8)(build)

    def init(key, spec):
        return cached(width_of(spec)).init(key, spec)

    def apply(params, state, x, *, key=None, training=False, **inputs):
        if training and dropout > 0:
            require_key(name, key)
        inner = cached(int(params["norm1"]["gamma"].shape[0]))
        return inner.apply(params, state, x, key=key, training=training, **inputs)

    return Layer(init, apply, name=name)


def _stack(name: str, block: Layer, num_layers: int, scan: bool, remat: bool) -> Layer:
    """num_layers copies, unrolled (a serial "0".."n-1") or under lax.scan (jl.repeat)."""
    if remat and not scan:
        # jax.checkpoint around unrolled blocks was measured (24 blocks, XLA:CPU): XLA
        # scheduled the recomputation early and kept 2.21 GB of temporaries against 2.02 GB
        # without it; under lax.scan the backward loop must recompute (0.14 GB).
        raise ValueError(f"{name}: remat=True needs scan=True (the blocks are recomputed "
                         f"in the backward lax.scan), got scan=False.")
    if scan:
        return repeat(block, num_layers, remat=remat)
    return serial(**{str(i): block for i in range(num_layers)})


def _carry_memory(block: Layer) -> Layer:
    """(target, memory) -> (block((target, memory)), memory): a shape-keeping step."""
    def apply(params, state, x, *, key=None, training=False):
        y, state = block.apply(params, state, x, key=key, training=training)
        return (y, x[1]), state

    return Layer(block.init, apply, name=block.name, children=(block,))


def _take_target() -> Layer:
    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        return x[0], state

    return stateless(apply, name="TakeTarget")


def _masked_norm(epsilon: float) -> Layer:
    """LayerNorm over the values of a jl.Masked too (a stack's final norm)."""
    norm = LayerNorm(epsilon=epsilon)

    def init(key, spec):
        return norm.init(key, _unmask(spec)[0])

    def apply(params, state, x, *, key=None, training=False):
        values, pad = _unmask(x)
        y, state = norm.apply(params, state, values)
        return _rewrap(y, pad), state

    return Layer(init, apply, name="LayerNorm")


@layer_factory
def TransformerEncoder(num_layers: int, num_heads: int, ffn_dim: int, *,
                       dropout: float = 0.0, activation="relu", norm_first: bool = False,
                       epsilon: float = 1e-5, final_norm: bool | None = None,
                       scan: bool = False, remat: bool = False) -> Layer:
    """num_layers `TransformerEncoderBlock`s in sequence, then (pre-LN) a final LayerNorm.

    scan=False unrolls the blocks (params {"blocks": {"0": ..., "1": ...}, "norm"?});
    scan=True stacks their params and runs one traced block under `lax.scan` (`jl.repeat`,
    params {"blocks": ...} with a leading axis num_layers): compile time stops growing with
    depth, at some run-time cost on CPU (DESIGN §5). remat=True (with scan=True) wraps
    the scanned block in `jax.checkpoint`: the backward pass recomputes each block's
    activations from its input instead of storing them, for about one more forward pass
    (a 24-block train step's XLA temporaries fell from 2.1 GB to 0.14 GB;
    benchmarks/README.md, "Mixed precision and memory").

    Raises:
      ValueError: remat=True with scan=False (unrolled, XLA:CPU kept more memory with
        the checkpoints than without), and the blocks' argument errors.
    final_norm: None means "with norm_first" (a pre-LN stack needs one: PyTorch's
    nn.TransformerEncoder(norm=LayerNorm)).

    Shapes: x (N, T, d_model) (or a jl.Masked) -> the same.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> encoder = jl.TransformerEncoder(2, 2, 16, norm_first=True)
      >>> params, state = encoder.init(jax.random.key(0), (2, 5, 8))
      >>> list(params)  # pre-LN stacks end with a final LayerNorm
      ['blocks', 'norm']
      >>> y, _ = encoder.apply(params, state, jnp.ones((2, 5, 8)))
      >>> y.shape
      (2, 5, 8)
    """
    block = TransformerEncoderBlock(num_heads, ffn_dim, dropout=dropout,
                                    activation=activation, norm_first=norm_first,
                                    epsilon=epsilon)
    check_positive_int("TransformerEncoder", "num_layers", num_layers)
    layers = {"blocks": _stack("TransformerEncoder", block, num_layers, scan, remat)}
    if (norm_first if final_norm is None else final_norm):
        layers["norm"] = _masked_norm(epsilon)
    return dataclasses.replace(serial(**layers), name="TransformerEncoder")


@layer_factory
def TransformerDecoder(num_layers: int, num_heads: int, ffn_dim: int, *,
                       dropout: float = 0.0, activation="relu", norm_first: bool = False,
                       epsilon: float = 1e-5, final_norm: bool | None = None,
                       scan: bool = False, remat: bool = False) -> Layer:
    """num_layers `TransformerDecoderBlock`s on (target, memory), then (pre-LN) a LayerNorm.

    As `TransformerEncoder`; every block reads the same memory. Input (target, memory)
    -> y (N, T, d_model).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> decoder = jl.TransformerDecoder(2, 2, 16)
      >>> target, memory = jnp.ones((2, 4, 8)), jnp.ones((2, 6, 8))
      >>> params, state = decoder.init(jax.random.key(0), (target.shape, memory.shape))
      >>> y, _ = decoder.apply(params, state, (target, memory))
      >>> y.shape
      (2, 4, 8)
    """
    block = TransformerDecoderBlock(num_heads, ffn_dim, dropout=dropout,
                                    activation=activation, norm_first=norm_first,
                                    epsilon=epsilon)
    check_positive_int("TransformerDecoder", "num_layers", num_layers)
    layers = {"blocks": _stack("TransformerDecoder", _carry_memory(block), num_layers, scan,
                               remat),
              "target": _take_target()}
    if (norm_first if final_norm is None else final_norm):
        layers["norm"] = _masked_norm(epsilon)
    return dataclasses.replace(serial(**layers), name="TransformerDecoder")
