"""Convert PyTorch weights (a state_dict as NumPy arrays) to jaxlayers params.

    sd = {k: v.detach().numpy() for k, v in torch_lstm.state_dict().items()}
    params = jl.interop.from_torch("LSTM", sd)          # for jl.LSTM(hidden_size)

Nothing here imports torch: pass NumPy arrays (`tensor.detach().cpu().numpy()`).
"""

from __future__ import annotations

import re
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["from_torch", "KINDS"]

_CONV = {f"Conv{n}D": n for n in (1, 2, 3)}
_CONV_T = {f"Conv{n}DTranspose": n for n in (1, 2, 3)}
_RNN_GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
_ATTENTION = ("MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer")
KINDS = ("Dense", *_CONV, *_CONV_T, "BatchNorm", "Embedding", *_RNN_GATES, "Bidirectional",
         *_ATTENTION)


def _fail(kind, msg):
    raise ValueError(f"from_torch({kind}): {msg}")


def _get(kind, arrays, name, shape=None, required=True):
    """arrays[name] as float NumPy, checked against `shape` (None entries match anything)."""
    if name not in arrays:
        if required:
            _fail(kind, f"missing tensor {name!r}; got {sorted(arrays)}.")
        return None
    a = np.asarray(arrays[name])
    if shape is not None and (a.ndim != len(shape) or any(
            s is not None and s != d for s, d in zip(shape, a.shape))):
        want = ", ".join("?" if s is None else str(s) for s in shape)
        want = f"({want},)" if len(shape) == 1 else f"({want})"
        _fail(kind, f"tensor {name!r} must have shape {want}, got {a.shape}.")
    return a


def _no_extra(kind, arrays, known):
    extra = sorted(set(arrays) - set(known) - {"num_batches_tracked"})
    if extra:
        _fail(kind, f"unexpected tensors {extra}; expected {sorted(known)}.")


def _dense(arrays):
    w = _get("Dense", arrays, "weight", (None, None))
    b = _get("Dense", arrays, "bias", (w.shape[0],), required=False)
    _no_extra("Dense", arrays, ("weight", "bias"))
    params = {"kernel": w.T}  # torch (out, in) -> (in, out)
    if b is not None:
        params["bias"] = b
    return params


def _conv(kind, n, arrays):
    w = _get(kind, arrays, "weight", (None,) * (n + 2))
    b = _get(kind, arrays, "bias", (w.shape[0],), required=False)
    _no_extra(kind, arrays, ("weight", "bias"))
    # torch (out, in // groups, *k) -> (*k, in // groups, out)
    params = {"kernel": np.transpose(w, tuple(range(2, n + 2)) + (1, 0))}
    if b is not None:
        params["bias"] = b
    return params


def _conv_transpose(kind, n, arrays, groups=1):
    w = _get(kind, arrays, "weight", (None,) * (n + 2))
    c_in, c_out_g = w.shape[:2]
    if not isinstance(groups, int) or groups < 1 or c_in % groups:
        _fail(kind, f"groups must be a positive int dividing the {c_in} input channels of "
                    f"'weight' {w.shape}, got {groups!r}.")
    b = _get(kind, arrays, "bias", (c_out_g * groups,), required=False)
    _no_extra(kind, arrays, ("weight", "bias"))
    # torch (in, out // groups, *k) -> (*k, in, out); groups become a block-diagonal kernel
    k = np.transpose(w, tuple(range(2, n + 2)) + (0, 1))
    full = np.zeros(k.shape[:n] + (c_in, c_out_g * groups), w.dtype)
    per = c_in // groups
    for g in range(groups):
        full[..., g * per:(g + 1) * per, g * c_out_g:(g + 1) * c_out_g] = \
            k[..., g * per:(g + 1) * per, :]
    params = {"kernel": full}
    if b is not None:
        params["bias"] = b
    return params


def _batch_norm(arrays):
    mean = _get("BatchNorm", arrays, "running_mean", (None,))
    c = mean.shape[0]
    var = _get("BatchNorm", arrays, "running_var", (c,))
    gamma = _get("BatchNorm", arrays, "weight", (c,), required=False)
    beta = _get("BatchNorm", arrays, "bias", (c,), required=False)
    _no_extra("BatchNorm", arrays, ("weight", "bias", "running_mean", "running_var"))
    params = {"gamma": np.ones(c, mean.dtype) if gamma is None else gamma,   # affine=False
              "beta": np.zeros(c, mean.dtype) if beta is None else beta}
    return params, {"mean": mean, "var": var}


def _embedding(arrays):
    w = _get("Embedding", arrays, "weight", (None, None))
    _no_extra("Embedding", arrays, ("weight",))
    return {"embeddings": w}


def _rnn(kind, arrays, suffix, reset_after=True):
    g = _RNN_GATES[kind]
    if f"weight_hr{suffix}" in arrays:
        _fail(kind, f"LSTM with proj_size (tensor 'weight_hr{suffix}') has no jaxlayers "
                    f"equivalent.")
    w_ih = _get(kind, arrays, f"weight_ih{suffix}", (None, None))
    if w_ih.shape[0] % g:
        _fail(kind, f"tensor 'weight_ih{suffix}' must have {g} * hidden_size rows, got "
                    f"shape {w_ih.shape}.")
    h = w_ih.shape[0] // g
    w_hh = _get(kind, arrays, f"weight_hh{suffix}", (g * h, h))
    b_ih = _get(kind, arrays, f"bias_ih{suffix}", (g * h,), required=False)
    b_hh = _get(kind, arrays, f"bias_hh{suffix}", (g * h,), required=False)
    kernel, rec = w_ih.T.copy(), w_hh.T.copy()  # (in, G*H), (H, G*H)
    if kind != "GRU":  # LSTM: torch gates i, f, g, o are our i, f, c, o
        params = {"kernel": kernel, "recurrent_kernel": rec}
        if b_ih is not None or b_hh is not None:
            params["bias"] = sum(b for b in (b_ih, b_hh) if b is not None)
        return params
    if not reset_after:
        _fail(kind, "PyTorch's GRU applies the reset gate after the recurrent matmul: "
                    "convert with reset_after=True and use jl.GRU(..., reset_after=True).")
    # torch r, z, n -> our z, r, h; our z is torch's 1 - z = σ(-pre_z): negate its weights
    order = np.concatenate([np.arange(h, 2 * h), np.arange(0, h), np.arange(2 * h, 3 * h)])
    sign = np.concatenate([-np.ones(h), np.ones(2 * h)]).astype(w_ih.dtype)
    params = {"kernel": kernel[:, order] * sign, "recurrent_kernel": rec[:, order] * sign}
    if b_ih is not None or b_hh is not None:
        zero = np.zeros(g * h, w_ih.dtype)
        rows = [zero if b is None else b for b in (b_ih, b_hh)]
        params["bias"] = np.stack([r[order] * sign for r in rows])  # (2, 3H)
    return params


def _sub(arrays, prefix):
    """The tensors under `prefix.` with the prefix removed (a submodule's state_dict)."""
    return {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + ".")}


def _mha(kind, arrays, num_heads):
    """nn.MultiheadAttention -> MultiHeadAttention params (E, H, E // H) kernels."""
    if not isinstance(num_heads, int) or num_heads <= 0:
        _fail(kind, f"num_heads= (a positive int) is required, got {num_heads!r}.")
    if "in_proj_weight" in arrays:
        w = _get(kind, arrays, "in_proj_weight", (None, None))
        e = w.shape[1]
        wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
    else:  # kdim/vdim != embed_dim: separate projections
        wq = _get(kind, arrays, "q_proj_weight", (None, None))
        wk = _get(kind, arrays, "k_proj_weight", (wq.shape[0], None))
        wv = _get(kind, arrays, "v_proj_weight", (wq.shape[0], None))
        e = wq.shape[0]
    if e % num_heads:
        _fail(kind, f"embed_dim {e} is not divisible by num_heads={num_heads}.")
    d = e // num_heads
    b = _get(kind, arrays, "in_proj_bias", (3 * e,), required=False)
    wo = _get(kind, arrays, "out_proj.weight", (e, e))
    bo = _get(kind, arrays, "out_proj.bias", (e,), required=False)
    known = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
             "in_proj_bias", "out_proj.weight", "out_proj.bias")
    _no_extra(kind, arrays, known)
    params = {}
    for i, (name, w_i) in enumerate((("query", wq), ("key", wk), ("value", wv))):
        # torch: y = x @ W.T + b with W (E, E_in), rows head-major -> (E_in, H, d)
        params[name] = {"kernel": w_i.T.reshape(w_i.shape[1], num_heads, d)}
        if b is not None:
            params[name]["bias"] = b[i * e:(i + 1) * e].reshape(num_heads, d)
    params["output"] = {"kernel": wo.T.reshape(num_heads, d, e)}
    if bo is not None:
        params["output"]["bias"] = bo
    return params


def _layer_norm(kind, arrays):
    w = _get(kind, arrays, "weight", (None,))
    b = _get(kind, arrays, "bias", w.shape)
    _no_extra(kind, arrays, ("weight", "bias"))
    return {"gamma": w, "beta": b}


def _transformer_layer(kind, arrays, num_heads):
    """nn.TransformerEncoderLayer / DecoderLayer -> the block's compose params."""
    decoder = kind == "TransformerDecoderLayer"
    attention = {"self_attention": "self_attn"}
    norms = {"norm1": "norm1", "norm2": "norm2"}
    if decoder:
        attention["cross_attention"] = "multihead_attn"
        norms["norm3"] = "norm3"
    prefixes = set(attention.values()) | set(norms.values()) | {"linear1", "linear2"}
    extra = sorted(k for k in arrays if k.split(".")[0] not in prefixes)
    if extra:
        _fail(kind, f"unexpected tensors {extra}.")
    params = {ours: _mha(f"{kind}.{theirs}", _sub(arrays, theirs), num_heads)
              for ours, theirs in attention.items()}
    params.update({ours: _layer_norm(f"{kind}.{theirs}", _sub(arrays, theirs))
                   for ours, theirs in norms.items()})
    params["ffn"] = {"hidden": _dense(_sub(arrays, "linear1")), "dropout": {},
                     "output": _dense(_sub(arrays, "linear2"))}
    for drop in (("drop1", "drop2", "drop3") if decoder else ("drop1", "drop2")):
        params[drop] = {}
    return params


def from_torch(layer_kind: str, arrays: dict[str, Any], **options):
    """Convert a PyTorch module's `state_dict` (NumPy arrays) to jaxlayers params.

    Returns params, or (params, state) for "BatchNorm". Arrays keep their dtype.

    layer_kind and what it converts (torch -> jaxlayers):
      "Dense" (nn.Linear): weight (out, in) -> kernel (in, out); bias.
      "Conv1D"/"Conv2D"/"Conv3D": weight (out, in // groups, *k) -> kernel
        (*k, in // groups, out) (HWIO); bias. Padding, strides, dilation and groups are
        constructor arguments of the jaxlayers layer, not weights.
      "Conv1DTranspose"/...: weight (in, out // groups, *k) -> kernel (*k, in, out), both
        the adjoint of a convolution (no flip needed). options: groups=1 (a grouped torch
        kernel becomes the equivalent block-diagonal full kernel).
      "BatchNorm" (nn.BatchNorm1d/2d/3d): weight, bias -> params gamma, beta (ones/zeros
        for affine=False); running_mean, running_var -> state mean, var, copied as they are
        (num_batches_tracked ignored). PyTorch's running_var averages UNBIASED batch
        variances and jaxlayers' the biased ones; the two differ by m/(m-1) per update
        (m values per channel in a batch) and cannot be converted exactly without m, so the
        stored value is kept: inference is then identical (both normalise with the stored
        var). Build the layer with PyTorch's numbers: jl.BatchNorm(momentum=1 - torch
        momentum (0.9), epsilon=torch eps (1e-5)).
      "Embedding": weight (vocab, dim) -> embeddings.
      "SimpleRNN" (nn.RNN), "LSTM", "GRU": weight_ih_l{k} (G*H, D) -> kernel (D, G*H),
        weight_hh_l{k} -> recurrent_kernel (H, G*H), bias_ih + bias_hh -> bias (summed; the
        same function). LSTM gates i, f, g, o = ours i, f, c, o. GRU: torch r, z, n -> our
        z, r, h, and the update gate's kernels and biases are negated, as our update rule
        is the seeds' h = (1 - z) h_prev + z h~ (PyTorch's z is our 1 - z); PyTorch's
        reset gate acts after the recurrent matmul, so the result is for
        jl.GRU(..., reset_after=True) with bias (2, 3H) = (bias_ih, bias_hh).
        options: layer=0 (which of a multi-layer module's layers, `_l{layer}`);
        reverse=False (the `_reverse` direction); reset_after=True (GRU; False raises).
        nn.RNN(nonlinearity="relu") needs jl.SimpleRNN(activation="relu").
      "Bidirectional": options kind="LSTM" (or "GRU", "SimpleRNN") and layer=0: returns
        {"forward": ..., "backward": ...} from the plain and the `_reverse` tensors, for
        jl.Bidirectional(jl.LSTM(H, ...)).
      "MultiheadAttention": options num_heads (required). in_proj_weight (3E, E) (or
        q/k/v_proj_weight) -> query/key/value kernels (E_in, H, E/H), in_proj_bias ->
        biases (H, E/H), out_proj -> output kernel (H, E/H, E) and bias; for
        jl.MultiHeadAttention(num_heads, E // num_heads). PyTorch's boolean masks are
        True = ignore, ours True = attend: pass mask=~attn_mask, and a key_padding_mask
        as jl.Masked(x, ~key_padding_mask) or mask=~kpm[:, None, None, :].
      "TransformerEncoderLayer" / "TransformerDecoderLayer": options num_heads (required).
        self_attn (and multihead_attn -> cross_attention), norm1..3, linear1/linear2 ->
        ffn hidden/output: the params of jl.TransformerEncoderBlock / DecoderBlock
        (num_heads, dim_feedforward, norm_first=..., activation=..., epsilon=1e-5).
        Build those with nn's batch_first=True data layout in mind: ours is (N, T, E).

    Raises:
      ValueError: an unknown kind or option, a missing or unexpected tensor, or a tensor
        whose shape does not fit (the message names it).
    """
    if layer_kind not in KINDS:
        raise ValueError(f"from_torch: layer_kind must be one of {list(KINDS)}, "
                         f"got {layer_kind!r}.")
    allowed = {"Conv1DTranspose": {"groups"}, "Conv2DTranspose": {"groups"},
               "Conv3DTranspose": {"groups"}, "SimpleRNN": {"layer", "reverse"},
               "LSTM": {"layer", "reverse"}, "GRU": {"layer", "reverse", "reset_after"},
               "Bidirectional": {"kind", "layer", "reset_after"},
               **{kind: {"num_heads"} for kind in _ATTENTION}}.get(layer_kind, set())
    bad = sorted(set(options) - allowed)
    if bad:
        raise ValueError(f"from_torch({layer_kind}): unknown options {bad}; allowed "
                         f"{sorted(allowed) or 'none'}.")
    arrays = {k: np.asarray(v) for k, v in dict(arrays).items()}
    if layer_kind == "Dense":
        out = _dense(arrays)
    elif layer_kind in _CONV:
        out = _conv(layer_kind, _CONV[layer_kind], arrays)
    elif layer_kind in _CONV_T:
        out = _conv_transpose(layer_kind, _CONV_T[layer_kind], arrays, **options)
    elif layer_kind == "BatchNorm":
        params, state = _batch_norm(arrays)
        return _to_jax(params), _to_jax(state)
    elif layer_kind == "Embedding":
        out = _embedding(arrays)
    elif layer_kind == "MultiheadAttention":
        out = _mha(layer_kind, arrays, options.get("num_heads"))
    elif layer_kind in _ATTENTION:
        out = _transformer_layer(layer_kind, arrays, options.get("num_heads"))
    elif layer_kind in _RNN_GATES:
        layer, reverse = options.get("layer", 0), options.get("reverse", False)
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        extra = {"reset_after": options["reset_after"]} if "reset_after" in options else {}
        out = _rnn(layer_kind, arrays, suffix, **extra)
        _rnn_leftovers(layer_kind, arrays)
    else:
        kind = options.get("kind", "LSTM")
        if kind not in _RNN_GATES:
            raise ValueError(f"from_torch(Bidirectional): kind must be one of "
                             f"{list(_RNN_GATES)}, got {kind!r}.")
        suffix = f"_l{options.get('layer', 0)}"
        extra = {"reset_after": options["reset_after"]} if "reset_after" in options else {}
        out = {"forward": _rnn(kind, arrays, suffix, **extra),
               "backward": _rnn(kind, arrays, suffix + "_reverse", **extra)}
        _rnn_leftovers(f"Bidirectional {kind}", arrays)
    return _to_jax(out)


def _rnn_leftovers(kind, arrays):
    """Tensors of other layers/directions are fine; anything else is a mistake."""
    pattern = re.compile(r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?$")
    extra = sorted(k for k in arrays if not pattern.match(k))
    if extra:
        _fail(kind, f"unexpected tensors {extra}; expected weight_ih_l0, weight_hh_l0, "
                    f"bias_ih_l0, bias_hh_l0 (and _reverse / other layers).")


def _to_jax(tree):
    if isinstance(tree, dict):
        return {k: _to_jax(v) for k, v in tree.items()}
    return jnp.asarray(tree)
