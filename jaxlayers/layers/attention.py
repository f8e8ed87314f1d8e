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

__all__ = ["MultiHeadAttention", "Attention", "IMPLEMENTATIONS"]

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

    Decoding with a KV cache: `apply(..., cache={"key": (N, H, L, key_dim), "value": (N, H,
    L, value_dim)}, offset=p)` writes this call's keys and values at positions p.. of the
    fixed-size cache, attends over the positions written so far (and causally, query t
    sitting at p + t), and returns (y, new_cache). The cache is an explicit input and
    output (not state), so one compiled step serves every position (`jl.generate`).

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

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxlayers as jl
      >>> mha = jl.MultiHeadAttention(2, key_dim=4, causal=True, return_weights=True)
      >>> x = jnp.ones((2, 5, 6))
      >>> params, state = mha.init(jax.random.key(0), x.shape)
      >>> (y, weights), _ = mha.apply(params, state, x)
      >>> y.shape, weights.shape
      ((2, 5, 6), (2, 2, 5, 5))
      >>> print(np.asarray(weights[0, 0, :3]).round(2))  # equal keys: uniform over s <= t
      [[1.   0.   0.   0.   0.  ]
       [0.5  0.5  0.   0.   0.  ]
       [0.33 0.33 0.33 0.   0.  ]]
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

    def apply(params, state, x, *, key=None, training=False, mask=None, cache=None,
              offset=None):
        (q_in, q_mask), (k_in, k_mask), (v_in, v_mask) = (
            _unmask(a) for a in _inputs(name, x))
        if cache is not None and any(m is not None for m in (q_mask, k_mask, v_mask)):
            raise TypeError(f"{name}: cache= decoding takes arrays, not jl.Masked inputs.")
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
        positions = None
        if cache is not None:
            k, v, positions, written = _write_cache(name, cache, k, v, offset)
            new_cache = {"key": k, "value": v}  # stored unrotated: rotary acts on read
            tk = k.shape[2]
            mask = written if mask is None else (jnp.broadcast_to(mask, written.shape)
                                                 & written)
        if rotary:
            q = scores.rotary(q, positions)
            k = scores.rotary(k, None if positions is None else jnp.arange(tk))
        full = _full_mask(name, n, h, tq, tk, q_mask, k_mask, mask,
                          causal and cache is None)
        if causal and cache is not None:  # query t sits at position offset + t
            allowed = jnp.arange(tk)[None, :] <= positions[:, None]
            full = full & jnp.broadcast_to(allowed, full.shape)
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
        out = (y, weights) if return_weights else y
        if cache is not None:
            return (out, new_cache), state
        return out, state

    return Layer(init, apply, name=name)


def _write_cache(name, cache, k, v, offset):
    """Write the new keys/values at `offset` into a fixed-size cache (N, H, L, d).

    Returns the full keys and values, the new queries' positions offset + t, and the
    mask of the cache slots written so far ((N?, 1, Tq, L): s < offset + Tq).
    """
    if not (isinstance(cache, dict) and set(cache) == {"key", "value"}):
        raise TypeError(f"{name}: cache must be a dict {{'key': (N, H, L, key_dim), "
                        f"'value': (N, H, L, value_dim)}}, got {describe(cache)}.")
    ck, cv = cache["key"], cache["value"]
    if ck.shape[:2] != k.shape[:2] or ck.shape[3] != k.shape[3] or cv.shape[:3] != ck.shape[:3]:
        raise ValueError(f"{name}: cache key/value must be (N, H, L, d) = (N={k.shape[0]}, "
                         f"H={k.shape[1]}, L, {k.shape[3]}), got key {tuple(ck.shape)} and "
                         f"value {tuple(cv.shape)}.")
    t, length = k.shape[2], ck.shape[2]
    if offset is None:
        raise ValueError(f"{name}: cache= needs offset= (the position of the first new "
                         f"token).")
    if not isinstance(offset, jax.core.Tracer) and int(offset) + t > length:
        raise ValueError(f"{name}: the cache holds {length} positions; writing {t} at "
                         f"offset {int(offset)} would overflow it.")
    start = (0, 0, offset, 0)
    ck = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), start)
    cv = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), start)
    positions = offset + jnp.arange(t)
    written = (jnp.arange(length)[None, :] < offset + t)[None, None]
    written = jnp.broadcast_to(written, (1, 1, t, length))
    return ck, cv, positions, written


def _fused(q, k, v, mask):
    """jax.nn.dot_product_attention on (N, T, H, d), with empty rows zeroed (our contract)."""
    q, k, v = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    ctx = jax.nn.dot_product_attention(q, k, v, mask=mask)
    if mask is not None:
        any_key = jnp.any(mask, axis=-1).transpose(0, 2, 1)[..., None]  # (N, Tq, H, 1)
        ctx = jnp.where(jnp.broadcast_to(any_key, ctx.shape), ctx, jnp.zeros_like(ctx))
    return ctx


_ATTENTION_SCORES = ("scaled_dot", "dot", "general", "additive", "cosine")


@layer_factory
def Attention(score: str = "scaled_dot", *, units: int | None = None,
              return_weights: bool = False, kernel_init=glorot_uniform(), bias_init=zeros,
              param_dtype=jnp.float32) -> Layer:
    """Single-head attention, Bahdanau / Luong style (seed 004): c_t = Σ_s α_ts h_s.

    Math: e_ts = score(s_t, h_s),  α_t = softmax(e_t, mask),  c_t = Σ_s α_ts v_s, with the
    score one of `jl.attention.SCORES`: "dot" (s·h), "scaled_dot" (s·h/√d), "general"
    (Luong: s W h, params {"kernel": (d_q, d_k)}), "additive" (Bahdanau: v·tanh(W_q s +
    W_k h + b), params {"query_kernel": (d_q, A), "key_kernel": (d_k, A), "bias": (A,),
    "v": (A,)}, A = units, default d_k) or "cosine". No projections of the values.

    Inputs: (query, values) (keys = values) or (query, keys, values). The query is
    (N, Tq, d_q), or one decoder state (N, d_q) giving a context (N, d_v). Padded
    values/keys come as `jl.Masked` (not attended); a query with nothing to attend gets
    a zero context.

    Shapes: -> context (N, Tq, d_v) or (N, d_v); with return_weights=True,
    (context, weights (N, Tq, Tk) or (N, Tk)). state {}.

    Raises:
      ValueError: an unknown score, units without a parametrised score (construction);
        inputs not a pair or triple, ranks or sizes that do not fit, keys and values of
        different lengths (trace time). TypeError: non-float inputs.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxlayers as jl
      >>> attention = jl.Attention("dot", return_weights=True)
      >>> q = jnp.array([[[2.0, 0.0]]])                            # (N, Tq, d) = (1, 1, 2)
      >>> v = jnp.array([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])    # (N, Tk, d) = (1, 3, 2)
      >>> params, state = attention.init(jax.random.key(0), (q.shape, v.shape))
      >>> (context, weights), _ = attention.apply(params, state, (q, v))
      >>> print(np.asarray(weights).round(3))  # softmax of the scores [2, 0, 0]
      [[[0.787 0.107 0.107]]]
      >>> context.shape
      (1, 1, 2)
    """
    name = "Attention"
    check_one_of(name, "score", score, _ATTENTION_SCORES)
    if units is not None:
        check_positive_int(name, "units", units)
        if score != "additive":
            raise ValueError(f"{name}: units is the additive score's size, got units={units} "
                             f"with score={score!r}.")

    def _split(x):
        if not isinstance(x, tuple) or len(x) not in (2, 3):
            raise ValueError(f"{name}: input must be (query, values) or (query, keys, "
                             f"values), got {describe(x)}.")
        return (x[0], x[1], x[1]) if len(x) == 2 else x

    def init(key, spec):
        q, k, _ = (_unmask(s)[0] for s in _split(spec))
        d_q, d_k = q.shape[-1], k.shape[-1]
        k1, k2, k3, k4 = jax.random.split(key, 4)
        if score == "general":
            return {"kernel": kernel_init(k1, (d_q, d_k), param_dtype)}, {}
        if score == "additive":
            a = units or d_k
            return {"query_kernel": kernel_init(k1, (d_q, a), param_dtype),
                    "key_kernel": kernel_init(k2, (d_k, a), param_dtype),
                    "bias": bias_init(k3, (a,), param_dtype),
                    "v": kernel_init(k4, (a, 1), param_dtype)[:, 0]}, {}
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        del key, training
        (q, _), (k, k_mask), (v, v_mask) = (_unmask(a) for a in _split(x))
        for what, a in (("query", q), ("keys", k), ("values", v)):
            check_float(name, a)
        check_rank(name, q, (2, 3), "(N, d) or (N, Tq, d) for the query")
        check_rank(name, k, 3, "(N, Tk, d) for the keys")
        check_rank(name, v, 3, "(N, Tk, d) for the values")
        if k.shape[:2] != v.shape[:2] or q.shape[0] != k.shape[0]:
            raise ValueError(f"{name}: keys and values must have the same (N, Tk) and the "
                             f"query the same N, got query {tuple(q.shape)}, keys "
                             f"{tuple(k.shape)}, values {tuple(v.shape)}.")
        single = q.ndim == 2
        q3 = q[:, None, :] if single else q
        fn = scores.SCORES[score]
        e = fn(q3, k, params["kernel"]) if score == "general" else (
            fn(q3, k, params) if score == "additive" else fn(q3, k))
        pad = k_mask if k_mask is not None else v_mask
        weights = scores.softmax(e, None if pad is None else pad.astype(bool)[:, None, :])
        ctx = weights @ v.astype(weights.dtype)
        if single:
            ctx, weights = ctx[:, 0], weights[:, 0]
        return ((ctx, weights) if return_weights else ctx), state

    return Layer(init, apply, name=name)
