"""Seq2seq with attention (seed 004): LSTM encoder, LSTM decoder, additive attention."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlayers._checks import check_int_at_least, check_positive_int
from jaxlayers._compose import compose
from jaxlayers.core import Layer, layer_factory
from jaxlayers.layers.attention import Attention
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.embedding import Embedding
from jaxlayers.layers.recurrent import LSTM

__all__ = ["seq2seq_attention", "greedy_decode"]


@layer_factory
def seq2seq_attention(src_vocab: int, tgt_vocab: int, *, embed_dim: int = 32,
                      units: int = 64, attention_units: int | None = None) -> Layer:
    """Encoder-decoder LSTMs with attention: (src_ids (N, S), tgt_ids (N, T)) -> logits.

    Math (seed 004's Seq2Seq with attention; the score is Bahdanau's additive one):
      h_1..h_S, (h, c) = LSTM_enc(E_src[src])          (padding id 0 is not attended)
      s_t = LSTM_dec(E_tgt[y_{t-1}]), started from the encoder's final (h, c)
      e_ts = v·tanh(W_s s_t + W_h h_s + b),  α_t = softmax(e_t),  c_t = Σ_s α_ts h_s
      logits_t = W_o tanh(W_c [c_t; s_t])
    The context is computed from the decoder's current state s_t (Luong et al. 2015's
    placement, without input feeding), so training with teacher forcing (tgt_ids = the
    target shifted right, a start id first) runs both LSTMs over whole sequences.

    Shapes: src (N, S), tgt (N, T) -> logits (N, T, tgt_vocab); with the keyword input
    return_attention=True, (logits, weights (N, T, S)).
    params {"src_embed", "encoder", "tgt_embed", "decoder", "attention", "combine", "head"}.
    """
    for what, value in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab),
                        ("embed_dim", embed_dim), ("units", units)):
        check_positive_int("seq2seq_attention", what, value)

    def seq2seq_forward(m, inputs, *, return_attention=False):
        src, tgt = inputs
        enc = m.src_embed(src)                          # Masked: id 0 is padding
        h_all, h, c = m.encoder(enc)
        s, _, _ = m.decoder(m.tgt_embed(tgt), initial_state=(h, c))
        context, weights = m.attention((s, h_all))
        out = m.head(m.combine(jnp.concatenate([context, s], axis=-1)))
        return (out, weights) if return_attention else out

    return compose(
        seq2seq_forward,
        src_embed=Embedding(src_vocab, embed_dim, mask_zero=True),
        encoder=LSTM(units, return_sequences=True, return_state=True),
        tgt_embed=Embedding(tgt_vocab, embed_dim),
        decoder=LSTM(units, return_sequences=True, return_state=True),
        attention=Attention("additive", units=attention_units or units, return_weights=True),
        combine=Dense(units, activation="tanh"),
        head=Dense(tgt_vocab))


@functools.lru_cache(maxsize=8)
def _forward(model: Layer):
    return jax.jit(lambda p, s, src, tgt: model.apply(p, s, (src, tgt))[0])


def greedy_decode(model: Layer, params, state, src_ids, steps: int, start_id: int):
    """Greedy decoding of an encoder-decoder `(src, tgt_in) -> logits` model.

    Step t feeds the start id and the t tokens chosen so far (padded with 0 to `steps`,
    so one compiled forward serves every step) and keeps the argmax at position t.
    The decoder re-reads its prefix at each step: fine for the short sequences of
    `seq2seq_attention` and `transformer`; `jl.generate` is the cached decoder-only path.

    Returns: int32 (N, steps), the decoded tokens (without the start id).
    """
    steps = check_int_at_least("greedy_decode", "steps", steps, 1)
    src = jnp.asarray(src_ids, jnp.int32)
    fwd = _forward(model)
    tgt = jnp.zeros((src.shape[0], steps), jnp.int32).at[:, 0].set(start_id)
    out = []
    for t in range(steps):
        logits = fwd(params, state, src, tgt)
        nxt = jnp.argmax(logits[:, t], axis=-1).astype(jnp.int32)
        out.append(nxt)
        if t + 1 < steps:
            tgt = tgt.at[:, t + 1].set(nxt)
    return jnp.stack(out, axis=1)

