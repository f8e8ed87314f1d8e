"""Attention layers: MultiHeadAttention (and single-head Attention, Bahdanau/Luong style)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxlayers import attention as scores
from jaxlayers._checks import (check_float, check_one_of, check_positive_int, check_rank,
                               check_rate, compute_dtype, describe)
from jaxlayers.core import Layer, Masked, layer_factory
from jaxlayers.initializers import glorot_uniform, zeros
from jaxlayers.layers.dropout import drop, dropout_mask

__all__ = ["MultiHeadAttention", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("softmax", "fused")
_MHA_SCORES = ("scaled_dot", "dot", "cosine")


def _default_implementation() -> str:
    # DESIGN.md §5: jax.nn.dot_product_attention (cuDNN flash attention on a GPU) was ~7%
    # slower on XLA:CPU than the heads-first softmax form.
    return "softmax" if jax.default_backend() == "cpu" else "fused"


def _inputs(name: str, x):
    """(query, key, value): x (self-attention), (query, value) or (query, key, value)."""
    if isinstance(x, tuple):
        if len(x) == 2:
            return x[0], x[1], x[1]
        if len(x) == 3:
            return x
        raise ValueError(f"{name}: input must be x, (query, value) or (query, key, value), "
                         f"got {describe(x)}.")
    return x, x, x


def _unmask(x):
    return (x.values, x.mask) if isinstance(x, Masked) else (x, None)


def _check_sequence(name: str, what: str, x, features: int) -> None:
    check_float(name, x)
    check_rank(name, x, 3, f"(N, T, features) for the {what}")
    if x.shape[-1] != features:
        raise ValueError(f"{name}: the {what} must have {features} features on the last "
                         f"axis (as its kernel), got shape {tuple(x.shape)}.")


def _spec_features(name: str, spec) -> tuple[int, int, int]:
    q, k, v = (_unmask(s)[0] for s in _inputs(name, spec))
    for what, s in (("query", q), ("key", k), ("value", v)):
        if len(s.shape) != 3:
            raise ValueError(f"{name}: the {what} must have rank 3 (N, T, features), got "
                             f"shape {tuple(s.shape)}.")
    return q.shape[-1], k.shape[-1], v.shape[-1]


def _project(x, p, compute):
    """(N, T, E) @ kernel (E, H, d) + bias (H, d) -> (N, H, T, d), as one 2-D matmul."""
    n, t, e = x.shape
    _, h, d = p["kernel"].shape
    y = x.reshape(n * t, e).astype(compute) @ p["kernel"].reshape(e, h * d).astype(compute)
    if "bias" in p:
        y = y + jnp.broadcast_to(p["bias"].reshape(1, h * d).astype(compute), y.shape)
    return y.reshape(n, t, h, d).transpose(0, 2, 1, 3)


def _full_mask(name, n, h, tq, tk, q_mask, k_mask, mask, causal):
    """AND of the padding masks, the user's mask= and the causal mask: (N, H, Tq, Tk) or None."""
    parts = []
    if k_mask is not None:
        parts.append(k_mask.astype(bool)[:, None, None, :])
    if q_mask is not None:
        parts.append(q_mask.astype(bool)[:, None, :, None])
    if mask is not None:
        if not hasattr(mask, "shape") or not jnp.issubdtype(mask.dtype, jnp.bool_):
            raise TypeError(f"{name}: mask must be a bool array (True = attend), got "
                            f"{describe(mask)} of dtype {getattr(mask, 'dtype', None)}.")
        try:
            jnp.broadcast_shapes(tuple(mask.shape), (n, h, tq, tk))
            if mask.ndim > 4:
                raise ValueError
        except ValueError:
            raise ValueError(f"{name}: mask must broadcast to (N, H, Tq, Tk) = "
                             f"{(n, h, tq, tk)}, got shape {tuple(mask.shape)}.") from None
        parts.append(mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape)))
    if causal:
        parts.append(jnp.tril(jnp.ones((tq, tk), bool), k=tk - tq)[None, None])
    if not parts:
        return None
    full = jnp.broadcast_to(parts[0], (n, h, tq, tk))
    for part in parts[1:]:
        full = full & jnp.broadcast_to(part, (n, h, tq, tk))
    return full


@layer_factory
def MultiHeadAttention(num_heads: int, key_dim: int, value_dim: int | None = None, *,
                       output_dim: int | None = None, dropout: float = 0.0,
                       use_bias: bool = True, causal: bool = False, score: str = "scaled_dot",
                       rotary: bool = False, return_weights: bool = False,
                       implementation: str | None = None, kernel_init=glorot_uniform(),
                       bias_init=zeros, dtype=None, param_dtype=jnp.float32) -> Layer:
    """Multi-head attention (Vaswani et al. 2017; seed 004): MH(Q, K, V) = Concat(head_i) W^O.

    Math, per head i (W = the params' kernels, b their biases):
      q = x_q W^Q_i + b^Q_i,  k = x_k W^K_i + b^K_i,  v = x_v W^V_i + b^V_i
      α = softmax(score(q, k), mask)        score "scaled_dot": q k^T / sqrt(key_dim)
      head_i = α v,   y = Σ_i head_i W^O_i + b^O
    With rotary=True, q and k are rotated by their positions first (`jl.attention.rotary`).

    Inputs: one (N, T, E) array (self-attention), (query, value) (key = value) or
    (query, key, value); any of them may be a `jl.Masked` (padding: a padded key is not
    attended, a padded query attends nothing and the output keeps the query's mask).
    Keyword input `mask=`: bool, broadcastable to (N, H, Tq, Tk), True = attend
    (PyTorch's masks are True = ignore: invert them). Padding, `mask=` and `causal=True`
    (query t attends keys s <= t + Tk - Tq) combine by AND. A query row with nothing to
    attend gets zero weights and a zero context (its output is the output bias), never NaN.

    Shapes: query (N, Tq, E_q), key (N, Tk, E_k), value (N, Tk, E_v) -> y (N, Tq, E_out),
    E_out = output_dim or E_q; with return_weights=True, (y, weights (N, H, Tq, Tk)).
    params (Keras's and Flax's layout; no "bias" keys without use_bias):
      {"query": {"kernel": (E_q, H, key_dim), "bias": (H, key_dim)}, "key": {...(E_k, H,
       key_dim)}, "value": {"kernel": (E_v, H, value_dim), "bias": (H, value_dim)},
       "output": {"kernel": (H, value_dim, E_out), "bias": (E_out,)}}.  state {}.

    Args:
      num_heads, key_dim: H heads of size key_dim (queries and keys); value_dim: the
        values' head size (default key_dim). PyTorch's embed_dim E with H heads is
        key_dim = E // H.
      dropout: on the attention weights while training (needs `key`).
      score: "scaled_dot" (default), "dot" or "cosine".
      implementation: None picks by backend: "fused" on GPU/TPU, `jax.nn.dot_product_attention`
        (cuDNN flash attention where it applies) whenever its semantics fit (scaled_dot,
        value_dim == key_dim, no weights returned, no dropout while training), else the hand-written
        heads-first "softmax" form, which DESIGN.md §5 measured faster on the CPU. Both
        are tested equal.
      kernel_init (glorot_uniform on the stored shapes), bias_init (zeros), dtype (compute,
        default the query's), param_dtype: as Dense.

    Raises:
      ValueError: bad sizes, rate, score or implementation, rotary with an odd key_dim
        (construction); inputs not of rank 3, features that differ from the kernels',
        key and value lengths or batch sizes that differ, a mask= that does not broadcast,
        training with dropout and key=None (trace time).
      TypeError: non-float inputs, a non-bool mask=.
    """
    name = "MultiHeadAttention"
    h = check_positive_int(name, "num_heads", num_heads)
    dk = check_positive_int(name, "key_dim", key_dim)
    dv = dk if value_dim is None else check_positive_int(name, "value_dim", value_dim)
    if output_dim is not None:
        check_positive_int(name, "output_dim", output_dim)
    rate = check_rate(name, "dropout", dropout)
    check_one_of(name, "score", score, _MHA_SCORES)
    if implementation is not None:
        check_one_of(name, "implementation", implementation, IMPLEMENTATIONS)
    if rotary and dk % 2:
        raise ValueError(f"{name}: rotary=True needs an even key_dim, got {dk}.")

    def _dense(key, shape_in, shape_out):
        k1, k2 = jax.random.split(key)
        # glorot's fans from the matrix the kernel acts as: (fan_in, prod(out)) -- the
        # kernel is stored (E, H, d) but is an (E, H·d) matrix (Keras's EinsumDense
        # computes fans from the stored shape instead; the scale differs by a constant)
        kernel = kernel_init(k1, (math.prod(shape_in), math.prod(shape_out)), param_dtype)
        p = {"kernel": kernel.reshape(shape_in + shape_out)}
        if use_bias:
            p["bias"] = bias_init(k2, shape_out, param_dtype)
        return p

    def init(key, spec):
        e_q, e_k, e_v = _spec_features(name, spec)
        e_out = output_dim or e_q
        kq, kk, kv, ko = jax.random.split(key, 4)
        params = {"query": _dense(kq, (e_q,), (h, dk)), "key": _dense(kk, (e_k,), (h, dk)),
                  "value": _dense(kv, (e_v,), (h, dv)),
                  "output": _dense(ko, (h, dv), (e_out,))}
        return params, {}

    def apply(params, state, x, *, key=None, training=False, mask=None):
        (q_in, q_mask), (k_in, k_mask), (v_in, v_mask) = (
            _unmask(a) for a in _inputs(name, x))
        _check_sequence(name, "query", q_in, params["query"]["kernel"].shape[0])
        _check_sequence(name, "key", k_in, params["key"]["kernel"].shape[0])
        _check_sequence(name, "value", v_in, params["value"]["kernel"].shape[0])
        if k_in.shape[:2] != v_in.shape[:2] or q_in.shape[0] != k_in.shape[0]:
            raise ValueError(f"{name}: key and value must have the same (N, T) and the query "
                             f"the same N, got query {tuple(q_in.shape)}, key "
                             f"{tuple(k_in.shape)}, value {tuple(v_in.shape)}.")
        if k_mask is None:
            k_mask = v_mask
        compute = compute_dtype(q_in, dtype)
        n, tq, tk = q_in.shape[0], q_in.shape[1], k_in.shape[1]
        q = _project(q_in, params["query"], compute)     # (N, H, Tq, dk)
        k = _project(k_in, params["key"], compute)       # (N, H, Tk, dk)
        v = _project(v_in, params["value"], compute)     # (N, H, Tk, dv)
        if rotary:
            q, k = scores.rotary(q), scores.rotary(k)
        full = _full_mask(name, n, h, tq, tk, q_mask, k_mask, mask, causal)
        dropping = training and rate > 0
        form = implementation or _default_implementation()
        # jax.nn.dot_product_attention needs values of the keys' head size
        if (form == "fused" and score == "scaled_dot" and not return_weights
                and not dropping and dk == dv):
            ctx = _fused(q, k, v, full)                  # (N, Tq, H, dv)
            weights = None
        else:
            weights = scores.softmax(scores.SCORES[score](q, k), full)
            if training and rate > 0:
                weights = drop(weights, dropout_mask(name, key, rate, weights.shape), rate)
            ctx = (weights @ v).transpose(0, 2, 1, 3)    # (N, Tq, H, dv)
        wo = params["output"]["kernel"]
        y = ctx.reshape(n * tq, h * dv) @ wo.reshape(h * dv, wo.shape[-1]).astype(compute)
        if use_bias:
            y = y + jnp.broadcast_to(params["output"]["bias"].astype(compute), y.shape)
        y = y.reshape(n, tq, wo.shape[-1])
        if q_mask is not None:
            y = Masked(y, q_mask)
        return ((y, weights) if return_weights else y), state

    return Layer(init, apply, name=name)


def _fused(q, k, v, mask):
    """jax.nn.dot_product_attention on (N, T, H, d), with empty rows zeroed (our contract)."""
    q, k, v = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    ctx = jax.nn.dot_product_attention(q, k, v, mask=mask)
    if mask is not None:
        any_key = jnp.any(mask, axis=-1).transpose(0, 2, 1)[..., None]  # (N, Tq, H, 1)
        ctx = jnp.where(jnp.broadcast_to(any_key, ctx.shape), ctx, jnp.zeros_like(ctx))
    return ctx
