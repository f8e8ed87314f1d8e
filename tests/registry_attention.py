"""Conformance cases for attention, positional encodings and transformer blocks.

Merged into tests/registry.py's CASES (`CASES += ATTENTION_CASES`). d_model 6 with 2 heads
of 3 (or 4 features in the value/key paths), tiny sequences; each case has a NumPy
reference written from the formulas (per-head loops, no jaxlayers).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

import jaxlayers as jl
from registry import Case, S

SEQ = (2, 4, 6)
MASKED = jl.Masked(S(SEQ, jnp.float32), S(SEQ[:2], jnp.bool_))


# ---------------------------------------------------------------- NumPy references

def _f(a):
    return np.asarray(a, np.float64)


def _split(x):
    return (_f(x.values), np.asarray(x.mask, bool)) if isinstance(x, jl.Masked) else (_f(x), None)


def _proj(p, x):
    """(N, T, E) -> (N, T, H, d) with kernel (E, H, d) and bias (H, d)."""
    y = np.einsum("nte,ehd->nthd", x, _f(p["kernel"]))
    return y + _f(p["bias"]) if "bias" in p else y


def _mha(p, q_in, k_in, v_in, q_pad=None, k_pad=None, causal=False, rotary=False):
    q, k, v = _proj(p["query"], q_in), _proj(p["key"], k_in), _proj(p["value"], v_in)
    n, tq, h, d = q.shape
    tk = k.shape[1]
    if rotary:
        q, k = _rope(q), _rope(k)
    out = np.zeros((n, tq, h, v.shape[-1]))
    for b in range(n):
        for i in range(h):
            e = q[b, :, i] @ k[b, :, i].T / math.sqrt(d)
            allowed = np.ones((tq, tk), bool)
            if k_pad is not None:
                allowed &= k_pad[b][None, :]
            if q_pad is not None:
                allowed &= q_pad[b][:, None]
            if causal:
                allowed &= np.tril(np.ones((tq, tk), bool), k=tk - tq)
            w = np.where(allowed, np.exp(e - e.max(axis=1, keepdims=True)), 0.0)
            total = w.sum(axis=1, keepdims=True)
            w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
            out[b, :, i] = w @ v[b, :, i]
    y = np.einsum("nthd,hde->nte", out, _f(p["output"]["kernel"]))
    return y + _f(p["output"]["bias"]) if "bias" in p["output"] else y


def _rope(x):
    """Rotate-half RoPE on (N, T, H, d) by position t."""
    d = x.shape[-1]
    theta = 10000.0 ** (-np.arange(d // 2) * 2.0 / d)
    angle = np.arange(x.shape[1])[:, None] * theta[None, :]          # (T, d/2)
    c, s = np.cos(angle)[None, :, None, :], np.sin(angle)[None, :, None, :]
    lo, hi = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([lo * c - hi * s, hi * c + lo * s], axis=-1)


def _inputs(x):
    if isinstance(x, tuple):
        return (x[0], x[1], x[1]) if len(x) == 2 else x
    return x, x, x


def _ref_mha(causal=False, rotary=False):
    def ref(params, state, x, training):
        (q, q_pad), (k, k_pad), (v, v_pad) = (_split(a) for a in _inputs(x))
        y = _mha(params, q, k, v, q_pad, k_pad if k_pad is not None else v_pad, causal, rotary)
        return jl.Masked(y, q_pad) if q_pad is not None else y
    return ref


def _ln(p, x, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * _f(p["gamma"]) + _f(p["beta"])


def _act(name):
    if name == "gelu":
        return np.vectorize(lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2))))
    return lambda z: np.maximum(z, 0.0)


def _ffn(p, x, activation="relu"):
    h = _act(activation)(x @ _f(p["hidden"]["kernel"]) + _f(p["hidden"]["bias"]))
    return h @ _f(p["output"]["kernel"]) + _f(p["output"]["bias"])


def _sub(x, f, norm, norm_first, eps):
    return x + f(_ln(norm, x, eps)) if norm_first else _ln(norm, x + f(x), eps)


def _encoder(p, x, pad, norm_first, activation="relu", eps=1e-5):
    h = _sub(x, lambda z: _mha(p["self_attention"], z, z, z, pad, pad), p["norm1"],
             norm_first, eps)
    return _sub(h, lambda z: _ffn(p["ffn"], z, activation), p["norm2"], norm_first, eps)


def _decoder(p, t, mem, t_pad, m_pad, norm_first, eps=1e-5):
    h = _sub(t, lambda z: _mha(p["self_attention"], z, z, z, t_pad, t_pad, causal=True),
             p["norm1"], norm_first, eps)
    h = _sub(h, lambda z: _mha(p["cross_attention"], z, mem, mem, None, m_pad), p["norm2"],
             norm_first, eps)
    return _sub(h, lambda z: _ffn(p["ffn"], z), p["norm3"], norm_first, eps)


def _ref_encoder(norm_first, activation="relu"):
    def ref(params, state, x, training):
        values, pad = _split(x)
        y = _encoder(params, values, pad, norm_first, activation)
        return jl.Masked(y, pad) if pad is not None else y
    return ref


def _ref_decoder(norm_first):
    def ref(params, state, x, training):
        (t, t_pad), (m, m_pad) = _split(x[0]), _split(x[1])
        return _decoder(params, t, m, t_pad, m_pad, norm_first)
    return ref


def _ref_encoder_stack(n, norm_first, scan):
    def ref(params, state, x, training):
        h = _f(x)
        for i in range(n):
            p = (jax_index(params["blocks"], i) if scan else params["blocks"][str(i)])
            h = _encoder(p, h, None, norm_first)
        return _ln(params["norm"], h, 1e-5) if norm_first else h
    return ref


def jax_index(tree, i):
    """Slice i of stacked (scan) params, in NumPy."""
    if isinstance(tree, dict):
        return {k: jax_index(v, i) for k, v in tree.items()}
    return np.asarray(tree)[i]


def _ref_decoder_stack(n):
    def ref(params, state, x, training):
        h, m = _f(x[0]), _f(x[1])
        for i in range(n):
            h = _decoder(params["blocks"][str(i)], h, m, None, None, False)
        return h
    return ref


def _ref_attention(score):
    """Bahdanau/Luong attention by loops: e_ts = score(q_t, k_s), α = masked softmax, c = α v."""
    def one(p, q, k):
        if score == "dot":
            return q @ k
        if score == "scaled_dot":
            return q @ k / math.sqrt(q.shape[0])
        if score == "general":
            return q @ _f(p["kernel"]) @ k
        if score == "cosine":
            return q @ k / (np.linalg.norm(q) * np.linalg.norm(k))
        return _f(p["v"]) @ np.tanh(q @ _f(p["query_kernel"]) + k @ _f(p["key_kernel"])
                                    + _f(p["bias"]))

    def ref(params, state, x, training):
        parts = (x[0], x[1], x[1]) if len(x) == 2 else x
        (q, _), (k, k_pad), (v, v_pad) = (_split(a) for a in parts)
        pad = k_pad if k_pad is not None else v_pad
        single = q.ndim == 2
        q = q[:, None] if single else q
        out = np.zeros(q.shape[:2] + v.shape[-1:])
        for b in range(q.shape[0]):
            for t in range(q.shape[1]):
                e = np.array([one(params, q[b, t], k[b, s]) for s in range(k.shape[1])])
                ok = np.ones(k.shape[1], bool) if pad is None else pad[b]
                w = np.where(ok, np.exp(e - e[ok].max()), 0.0) if ok.any() else 0 * e
                w = w / w.sum() if ok.any() else w
                out[b, t] = w @ v[b]
        return out[:, 0] if single else out
    return ref


def _ref_sinusoidal(params, state, x, training):
    values, pad = _split(x)
    t, d = values.shape[1:]
    pe = np.zeros((t, d))
    for pos in range(t):
        for i in range(0, d, 2):
            pe[pos, i] = math.sin(pos / 10000 ** (i / d))
            if i + 1 < d:
                pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
    y = values + pe
    return jl.Masked(y, pad) if pad is not None else y


def _ref_position_embedding(params, state, x, training):
    return _f(x) + _f(params["embeddings"])[: x.shape[1]]


def _ref_ffn(activation):
    return lambda params, state, x, training: _ffn(params, _f(x), activation)


# ---------------------------------------------------------------- bad inputs

def _features(layer, what, n, shape):
    got = ", ".join(map(str, shape))
    return rf"{layer}: the {what} must have {n} features on the last axis \(as its " \
           rf"kernel\), got shape \({got}\)"


_MHA_ERRORS = (
    ((2, 4, 5), ValueError, _features("MultiHeadAttention", "query", 6, (2, 4, 5))),
    ((4, 6), ValueError, r"MultiHeadAttention: input must have rank 3"),
    (S(SEQ, jnp.int32), TypeError, r"MultiHeadAttention: input must have a floating dtype"),
)

_ATT_ERRORS = ((((2, 5), (2, 4, 3), (2, 3, 3)), ValueError,
                r"Attention: keys and values must have the same \(N, Tk\)"),
               ((2, 4, 3), ValueError, r"Attention: input must be \(query, values\)"))

ATTENTION_CASES = [
    Case(jl.Attention, ("additive",), dict(units=3), (S((2, 5), jnp.float32), jl.Masked(
        S((2, 4, 3), jnp.float32), S((2, 4), jnp.bool_))), name="bahdanau-masked",
         reference=_ref_attention("additive"), bad_inputs=_ATT_ERRORS),
    Case(jl.Attention, ("general",), {}, ((2, 3, 4), (2, 5, 6), (2, 5, 2)), name="luong-general",
         reference=_ref_attention("general"), bad_inputs=_ATT_ERRORS[1:]),
    Case(jl.Attention, ("cosine",), {}, ((2, 3, 4), (2, 5, 4)), name="cosine",
         reference=_ref_attention("cosine"), bad_inputs=_ATT_ERRORS[1:]),
    Case(jl.MultiHeadAttention, (2, 3), {}, SEQ, name="self", reference=_ref_mha(),
         bad_inputs=_MHA_ERRORS),
    Case(jl.MultiHeadAttention, (2, 4), dict(value_dim=2, output_dim=5, causal=True),
         (S((2, 3, 6), jnp.float32), jl.Masked(S((2, 5, 4), jnp.float32), S((2, 5), jnp.bool_)),
          S((2, 5, 4), jnp.float32)), name="qkv-masked-causal",
         reference=_ref_mha(causal=True), bad_inputs=(
             ((SEQ, (2, 5, 4), (2, 3, 4)), ValueError,
              r"MultiHeadAttention: key and value must have the same \(N, T\)"),
             ((SEQ, (2, 5, 3), (2, 5, 4)), ValueError,
              _features("MultiHeadAttention", "key", 4, (2, 5, 3))),
         )),
    Case(jl.MultiHeadAttention, (2, 4), dict(rotary=True), MASKED, name="rotary-masked",
         reference=_ref_mha(rotary=True), bad_inputs=_MHA_ERRORS[:1]),
    Case(jl.MultiHeadAttention, (2, 3), dict(dropout=0.2), SEQ, name="dropout", random=True,
         reference=_ref_mha(), bad_inputs=_MHA_ERRORS[:1]),
    Case(jl.SinusoidalPositionalEncoding, (8,), {}, MASKED, reference=_ref_sinusoidal,
         bad_inputs=(((2, 9, 6), ValueError, r"SinusoidalPositionalEncoding: the sequence "
                                             r"has 9 steps, more than max_len=8"),
                     (S(SEQ, jnp.int32), TypeError, r"SinusoidalPositionalEncoding: input "
                                                    r"must have a floating dtype"))),
    Case(jl.PositionEmbedding, (5,), {}, SEQ, reference=_ref_position_embedding,
         bad_inputs=(((2, 6, 6), ValueError, r"PositionEmbedding: the sequence has 6 steps"),
                     ((2, 4, 5), ValueError, r"PositionEmbedding: input must have 6 "
                                             r"features"))),
    Case(jl.FeedForward, (7,), dict(activation="gelu", dropout=0.2), SEQ, random=True,
         reference=_ref_ffn("gelu"),
         bad_inputs=(((2, 4, 5), ValueError, r"Dense: input must have 6 features"),)),
    Case(jl.TransformerEncoderBlock, (2, 7), {}, MASKED, name="post-ln-masked",
         reference=_ref_encoder(False), bad_inputs=(
             ((2, 4, 5), ValueError, _features("MultiHeadAttention", "query", 6, (2, 4, 5))),
         )),
    Case(jl.TransformerEncoderBlock, (2, 7), dict(norm_first=True, dropout=0.1,
                                                  activation="gelu"),
         SEQ, name="pre-ln-dropout", random=True, reference=_ref_encoder(True, "gelu"),
         bad_inputs=(((2, 4, 5), ValueError, r"LayerNorm: input must have 6 features"),)),
    Case(jl.TransformerDecoderBlock, (2, 7), {}, (SEQ, (2, 5, 6)), reference=_ref_decoder(False),
         bad_inputs=(((SEQ, (2, 5, 4)), ValueError,
                      _features("MultiHeadAttention", "key", 6, (2, 5, 4))),)),
    Case(jl.TransformerEncoder, (2, 2, 7), dict(norm_first=True, scan=True), SEQ,
         name="pre-ln-scan", reference=_ref_encoder_stack(2, True, True),
         bad_inputs=(((2, 4, 5), ValueError, r"LayerNorm: input must have 6 features"),)),
    Case(jl.TransformerDecoder, (2, 2, 7), {}, (SEQ, (2, 5, 6)), reference=_ref_decoder_stack(2),
         skip={check: "its block passes this check as TransformerDecoderBlock; 18 s of "
                      "compilation for two of them in a serial adds nothing"
               for check in ("jvp", "second_order")},
         bad_inputs=(((SEQ, (2, 5, 4)), ValueError, r"MultiHeadAttention: the key must have "
                                                    r"6 features"),)),
]
