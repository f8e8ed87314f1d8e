"""A small encoder-decoder Transformer (Vaswani et al. 2017; seed 004), built with jl.compose."""

from __future__ import annotations

from jaxlayers._checks import check_positive_int, check_rate
from jaxlayers._compose import compose
from jaxlayers.core import Layer, Masked, layer_factory
from jaxlayers.layers.blocks import Identity
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.embedding import Embedding
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

    Shapes: src (N, S), tgt (N, T), S, T <= max_len -> logits (N, T, tgt_vocab).
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

    def transformer_forward(m, inputs):
        src, tgt = inputs

        def embed(table, ids):
            e = m[table](ids)                       # Masked(values, ids != 0)
            x = m.positions(Masked(e.values * scale, e.mask))
            return Masked(m.dropout(x.values), x.mask)

        memory = m.encoder(embed("src_embed", src))
        y = m.decoder((embed("tgt_embed", tgt), memory))
        return m.head(y.values if isinstance(y, Masked) else y)

    return compose(
        transformer_forward,
        src_embed=Embedding(src_vocab, d_model, mask_zero=True),
        tgt_embed=Embedding(tgt_vocab, d_model, mask_zero=True),
        positions=SinusoidalPositionalEncoding(max_len),
        dropout=Dropout(dropout) if dropout > 0 else Identity(),
        encoder=TransformerEncoder(num_layers, num_heads, ffn_dim, dropout=dropout,
                                   norm_first=norm_first),
        decoder=TransformerDecoder(num_layers, num_heads, ffn_dim, dropout=dropout,
                                   norm_first=norm_first),
        head=Dense(tgt_vocab))

