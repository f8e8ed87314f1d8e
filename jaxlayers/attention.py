"""Attention scores and the masked softmax (seed 004, "Seq2Seq та механізм уваги").

    e = score(q, k)  (..., Tq, Tk);   α = softmax(e, mask);   c = α @ v

Every score is a pure function of queries q (..., Tq, d) and keys k (..., Tk, d) (the
leading axes broadcast-free: they must be equal); `general` and `additive` also take
their params. `softmax` takes a boolean mask (True = attend) and never returns NaN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["dot", "scaled_dot", "general", "additive", "cosine", "softmax", "SCORES",
           "rotary"]


def _check_qk(where: str, q, k, same_dim: bool = True) -> None:
    if q.ndim < 2 or k.ndim != q.ndim or q.shape[:-2] != k.shape[:-2] or (
            same_dim and q.shape[-1] != k.shape[-1]):
        raise ValueError(f"{where}: queries (..., Tq, d) and keys (..., Tk, d) must share "
                         f"their leading axes{' and d' if same_dim else ''}, got "
                         f"{tuple(q.shape)} and {tuple(k.shape)}.")


def _stat(x):
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def dot(q, k):
    """Luong's dot score: e[t, s] = q_t · k_s.  (..., Tq, d), (..., Tk, d) -> (..., Tq, Tk)."""
    _check_qk("attention.dot", q, k)
    return q @ jnp.swapaxes(k, -1, -2)


def scaled_dot(q, k):
    """Scaled dot product (Vaswani et al. 2017): e[t, s] = q_t · k_s / sqrt(d).

    Dividing by sqrt(d) keeps the scores' variance ~1 for unit-variance q, k, so the
    softmax does not saturate as d grows.
    """
    _check_qk("attention.scaled_dot", q, k)
    return (q / jnp.asarray(math.sqrt(q.shape[-1]), q.dtype)) @ jnp.swapaxes(k, -1, -2)


def general(q, k, kernel):
    """Luong's general score: e[t, s] = q_t W k_s, W = kernel (d_q, d_k).

    Shapes: q (..., Tq, d_q), k (..., Tk, d_k), kernel (d_q, d_k) -> (..., Tq, Tk).
    """
    _check_qk("attention.general", q, k, same_dim=False)
    if kernel.shape != (q.shape[-1], k.shape[-1]):
        raise ValueError(f"attention.general: kernel must have shape (d_q, d_k) = "
                         f"{(q.shape[-1], k.shape[-1])}, got {tuple(kernel.shape)}.")
    return (q @ kernel.astype(q.dtype)) @ jnp.swapaxes(k, -1, -2)


def additive(q, k, params):
    """Bahdanau's additive score: e[t, s] = v · tanh(W_q q_t + W_k k_s + b).

    params {"query_kernel": (d_q, A), "key_kernel": (d_k, A), "bias": (A,),
    "v": (A,)}; A the attention size. Shapes: (..., Tq, d_q), (..., Tk, d_k) -> (..., Tq, Tk).
    Memory is (..., Tq, Tk, A): fine for the seq2seq sizes it is used at.
    """
    _check_qk("attention.additive", q, k, same_dim=False)
    wq = q @ params["query_kernel"].astype(q.dtype)           # (..., Tq, A)
    wk = k @ params["key_kernel"].astype(q.dtype)             # (..., Tk, A)
    a = wq.shape[-1]
    lead = wq.shape[:-2]
    tq, tk = wq.shape[-2], wk.shape[-2]
    full = lead + (tq, tk, a)
    h = jnp.tanh(jnp.broadcast_to(wq[..., :, None, :], full)
                 + jnp.broadcast_to(wk[..., None, :, :], full)
                 + jnp.broadcast_to(params["bias"].astype(q.dtype), full))
    return h @ params["v"].astype(q.dtype)


def cosine(q, k, *, epsilon: float = 1e-8):
    """Cosine score: e[t, s] = q_t · k_s / (|q_t| |k_s|), in [-1, 1].

    The norms are floored at `epsilon` (a zero vector scores 0, not NaN).
    """
    _check_qk("attention.cosine", q, k)
    qn = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), epsilon)
    kn = k / jnp.maximum(jnp.linalg.norm(k, axis=-1, keepdims=True), epsilon)
    return qn @ jnp.swapaxes(kn, -1, -2)


SCORES = {"dot": dot, "scaled_dot": scaled_dot, "general": general, "additive": additive,
          "cosine": cosine}


def softmax(scores, mask=None, axis: int = -1):
    """Softmax of `scores` over `axis` (the keys), restricted to where `mask` is True.

    Math: α_s = mask_s · exp(e_s - m) / Σ_s' mask_s' · exp(e_s' - m), m = max of the
    unmasked e (subtracted for stability; softmax does not change with it).

    A row with nothing to attend (mask all False) gets zero weights, so its context
    α @ v is zero, and never NaN, in values or gradients (jax.nn.softmax with -inf
    scores would give NaN there, and a large negative fill uniform weights instead).
    Computed in at least float32, returned in the scores' dtype.

    Shapes: scores (..., Tq, Tk); mask bool, broadcastable to scores (True = attend).

    Raises:
      TypeError: a mask that is not bool. ValueError: one that does not broadcast.
    """
    s = _stat(scores)
    if mask is None:
        return jax.nn.softmax(s, axis=axis).astype(scores.dtype)
    if not jnp.issubdtype(mask.dtype, jnp.bool_):
        raise TypeError(f"attention.softmax: mask must be bool (True = attend), got "
                        f"{mask.dtype}.")
    try:
        mask = jnp.broadcast_to(mask, s.shape)
    except ValueError:
        raise ValueError(f"attention.softmax: mask of shape {tuple(mask.shape)} does not "
                         f"broadcast to the scores' {tuple(s.shape)}.") from None
    m = jnp.max(jnp.where(mask, s, -jnp.inf), axis=axis, keepdims=True)
    m = lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    e = jnp.where(mask, jnp.exp(jnp.where(mask, s - jnp.broadcast_to(m, s.shape), 0.0)), 0.0)
    total = jnp.sum(e, axis=axis, keepdims=True)
    total = jnp.broadcast_to(jnp.where(total > 0, total, 1.0), e.shape)
    return (e / total).astype(scores.dtype)


def rotary(x, positions=None, *, base: float = 10000.0):
    """Rotary position embedding (RoPE, Su et al. 2021), "rotate-half" layout.

    Math: with d even and θ_i = base^(-2i/d), i < d/2, the pair (x_i, x_{i+d/2}) at
    position p is rotated by the angle p·θ_i:
      y_i = x_i cos(pθ_i) - x_{i+d/2} sin(pθ_i),  y_{i+d/2} = x_{i+d/2} cos(pθ_i) + x_i sin(pθ_i),
    so q_p · k_s depends on p - s only. This is the GPT-NeoX / LLaMA layout (halves);
    the paper pairs neighbours (2i, 2i+1): the same up to a fixed permutation of d.

    Shapes: x (..., T, d) -> same; positions (T,) ints (default arange(T)).

    Raises:
      ValueError: an odd d.
    """
    t, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"attention.rotary: the head size d must be even, got {d} "
                         f"(shape {tuple(x.shape)}).")
    pos = jnp.arange(t) if positions is None else positions
    theta = base ** (-jnp.arange(0, d // 2, dtype=jnp.float32) * 2.0 / d)
    angle = pos.astype(jnp.float32)[:, None] * theta[None, :]          # (T, d/2)
    cos = jnp.concatenate([jnp.cos(angle)] * 2, axis=-1).astype(x.dtype)  # (T, d)
    sin = jnp.concatenate([jnp.sin(angle)] * 2, axis=-1).astype(x.dtype)
    half = jnp.concatenate([-x[..., d // 2:], x[..., :d // 2]], axis=-1)
    return x * jnp.broadcast_to(cos, x.shape) + half * jnp.broadcast_to(sin, x.shape)
