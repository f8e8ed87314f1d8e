"""A small encoder-decoder Transformer (Vaswani et al. 2017; seed 004), built with jl.compose."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxlayers._checks import check_positive_int, check_rate
from jaxlayers._compose import compose
from jaxlayers.core import Layer, Masked, layer_factory
from jaxlayers.layers.attention import MultiHeadAttention
from jaxlayers.layers.blocks import Identity
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.embedding import Embedding
from jaxlayers.layers.norm import LayerNorm
from jaxlayers.layers.positional import SinusoidalPositionalEncoding
from jaxlayers.layers.transformer import TransformerDecoder, TransformerEncoder

__all__ = ["transformer"]


@layer_factory
def transformer(src_vocab: int, tgt_vocab: int, *, max_len: int, d_model: int = 64,
                num_heads: int = 4, num_layers: int = 2, ffn_dim: int = 128,
                dropout: float = 0.0, norm_first: bool = False) -> Layer:
    """Encoder-decoder Transformer: (src_ids (N, S), tgt_ids (N, T)) -> logits (N, T, V_tgt).

    Math: memory = Encoder(E_src[src]·√d + PE), y = Decoder(E_tgt[tgt]·√d + PE, memory)
    (the decoder's self-attention causal, its cross-attention over the memory),
    logits = y W + b. Id 0 is padding in both sequences (Embedding(mask_zero=True)):
    padded source positions are not attended; padded target positions attend nothing
    and their logits are to be ignored by the loss. Train with teacher forcing: tgt_ids
    is the target shifted right (a start id first); predict the target.

    Shapes: src (N, S), tgt (N, T), S, T <= max_len -> logits (N, T, tgt_vocab); with the
    keyword input return_attention=True, (logits, weights (N, num_layers, num_heads, T, S)):
    every decoder layer's cross-attention weights (target step x source position, zero on
    padded source positions), from a deterministic pass (no dropout on them; the logits
    are those of the call, dropout included).
    params {"src_embed", "tgt_embed", "encoder", "decoder", "head"} (+ the stateless
    "positions" and "dropout").

    Raises:
      ValueError: a non-positive size, d_model not divisible by num_heads (at init), a
        bad dropout (construction).
    """
    name = "transformer"
    for what, value in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab),
                        ("max_len", max_len), ("d_model", d_model),
                        ("num_heads", num_heads), ("num_layers", num_layers),
                        ("ffn_dim", ffn_dim)):
        check_positive_int(name, what, value)
    check_rate(name, "dropout", dropout)
    scale = float(d_model) ** 0.5

    def transformer_forward(m, inputs, *, return_attention=False):
        src, tgt = inputs

        def embed(table, ids):
            e = m[table](ids)                       # Masked(values, ids != 0)
            x = m.positions(Masked(e.values * scale, e.mask))
            return Masked(m.dropout(x.values), x.mask)

        memory = m.encoder(embed("src_embed", src))
        target = embed("tgt_embed", tgt)
        y = m.decoder((target, memory))
        logits = m.head(y.values if isinstance(y, Masked) else y)
        if return_attention:
            return logits, m.decoder((target, memory), return_attention=True)
        return logits

    return compose(
        transformer_forward,
        src_embed=Embedding(src_vocab, d_model, mask_zero=True),
        tgt_embed=Embedding(tgt_vocab, d_model, mask_zero=True),
        positions=SinusoidalPositionalEncoding(max_len),
        dropout=Dropout(dropout) if dropout > 0 else Identity(),
        encoder=TransformerEncoder(num_layers, num_heads, ffn_dim, dropout=dropout,
                                   norm_first=norm_first),
        decoder=_with_cross_weights(
            TransformerDecoder(num_layers, num_heads, ffn_dim, dropout=dropout,
                               norm_first=norm_first),
            num_layers, num_heads, norm_first),
        head=Dense(tgt_vocab))


def _with_cross_weights(decoder: Layer, num_layers: int, num_heads: int,
                        norm_first: bool) -> Layer:
    """`decoder` (same params, same output), plus the keyword input return_attention=True:
    then it returns the cross-attention weights of its blocks, (N, num_layers, H, T, S).

    The blocks do not expose their weights, so each block's cross-attention query is
    recomputed from its params (its self-attention sublayer, as TransformerDecoderBlock
    computes it, in inference mode) and read by a MultiHeadAttention(return_weights=True)
    on the block's "cross_attention" params; the next block's input is the block's own
    output. tests/test_seq2seq.py checks the weights against a hand-written reference.
    """
    epsilon = 1e-5  # TransformerDecoderBlock's default, which transformer() uses

    def weights(params, state, inputs):
        target, memory = inputs
        values, pad = target.values, target.mask
        d_model = values.shape[-1]
        norm = LayerNorm(epsilon=epsilon)
        self_attention = MultiHeadAttention(num_heads, d_model // num_heads, causal=True)
        cross_attention = MultiHeadAttention(num_heads, d_model // num_heads,
                                             return_weights=True)
        out = []
        for i in range(num_layers):
            p = params["blocks"][str(i)]
            block = decoder.children["blocks"].children[str(i)].children[0]

            def attend(h):
                return self_attention.apply(p["self_attention"], {}, Masked(h, pad))[0].values

            def ln(name, h):
                return norm.apply(p[name], {}, h)[0]

            if norm_first:
                query = ln("norm2", values + attend(ln("norm1", values)))
            else:
                query = ln("norm1", values + attend(values))
            (_, w), _ = cross_attention.apply(p["cross_attention"], {}, (query, memory))
            out.append(w)
            y, _ = block.apply(p, state["blocks"][str(i)], (Masked(values, pad), memory))
            values = y.values
        return jnp.stack(out, axis=1)

    def apply(params, state, x, *, key=None, training=False, return_attention=False,
              **inputs):
        if return_attention:
            return weights(params, state, x), state
        return decoder.apply(params, state, x, key=key, training=training, **inputs)

    return dataclasses.replace(decoder, apply=apply)

