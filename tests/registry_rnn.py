"""Conformance cases for the recurrent layers, Bidirectional and Embedding.

To be merged into tests/registry.py's CASES (`CASES += RNN_CASES`). Shapes are tiny
(N=2, T=4, 3 features, 2-3 units); masked cases use a jl.Masked spec (random prefix masks);
each case lists the bad inputs its layer must refuse at trace time.
"""

from __future__ import annotations

import jax.numpy as jnp

import jaxlayers as jl
from jaxlayers.layers.embedding import Embedding
from jaxlayers.layers.recurrent import GRU, LSTM, SimpleRNN
from jaxlayers.layers.wrappers import Bidirectional
from registry import Case, S

SEQ = (2, 4, 3)
MASKED = jl.Masked(S(SEQ, jnp.float32), S(SEQ[:2], jnp.bool_))


def _sequence_errors(layer: str, features: int = 3) -> tuple:
    """What every sequence layer refuses: rank, features, dtype, a bad mask."""
    return (
        ((4, 3), ValueError, rf"{layer}: input must have rank 3 \(N, T, features\), "
                             rf"got shape \(4, 3\)"),
        ((2, 4, features + 1), ValueError,
         rf"{layer}: input must have {features} features on the last axis, "
         rf"got shape \(2, 4, {features + 1}\)"),
        (S(SEQ, jnp.int32), TypeError, rf"{layer}: input must have a floating dtype, got int32"),
        (jl.Masked(S(SEQ, jnp.float32), S((2, 3), jnp.bool_)), ValueError,
         rf"{layer}: mask must have shape \(N, T\) = \(2, 4\), got \(2, 3\)"),
        (jl.Masked(S(SEQ, jnp.float32), S(SEQ[:2], jnp.float32)), TypeError,
         rf"{layer}: mask must be bool"),
    )


_BI = _sequence_errors("Bidirectional")[:1] + (_sequence_errors("LSTM")[1],)

RNN_CASES = [
    Case(SimpleRNN, (3,), {}, SEQ, bad_inputs=_sequence_errors("SimpleRNN")),
    Case(LSTM, (3,), dict(return_sequences=True, return_state=True), SEQ, name="state",
         bad_inputs=_sequence_errors("LSTM")),
    Case(LSTM, (2,), dict(return_sequences=True, go_backwards=True, unroll=2, dropout=0.25,
                          recurrent_dropout=0.25, use_bias=False), MASKED, random=True,
         name="masked-backwards-dropout", bad_inputs=_sequence_errors("LSTM")[1:2]),
    Case(GRU, (3,), {}, SEQ, bad_inputs=_sequence_errors("GRU")),
    Case(GRU, (2,), dict(reset_after=True, return_sequences=True, return_state=True), MASKED,
         name="reset_after-masked", bad_inputs=_sequence_errors("GRU")[1:2]),
    Case(Bidirectional, (LSTM(2, return_sequences=True),), {}, MASKED, name="LSTM-concat",
         bad_inputs=_BI),
    Case(Bidirectional, (GRU(2, return_state=True, reset_after=True),),
         dict(merge_mode="sum"), MASKED, name="GRU-sum-state",
         bad_inputs=_sequence_errors("Bidirectional")[:1]),
    Case(Bidirectional, (SimpleRNN(2, activation="relu", return_sequences=True, dropout=0.3,
                                   recurrent_dropout=0.3),),
         dict(merge_mode=None), MASKED, random=True, name="SimpleRNN-pair-dropout",
         bad_inputs=_sequence_errors("Bidirectional")[:1]),
    Case(Embedding, (5, 3), {}, S((2, 4), jnp.int32), input_dtype=jnp.int32, bad_inputs=(
        (S((2, 4), jnp.float32), TypeError, r"Embedding: ids must have an integer dtype, "
                                            r"got float32"),
        (jl.Masked(S((2, 4), jnp.int32), S((2, 4), jnp.bool_)), TypeError,
         r"Embedding: does not accept a jl\.Masked input"),
    )),
    Case(Embedding, (6, 2), dict(mask_zero=True), S((2, 5), jnp.int32), input_dtype=jnp.int32,
         name="mask_zero", bad_inputs=((S((2, 5), jnp.float32), TypeError,
                                        r"Embedding: ids must have an integer dtype"),)),
]
