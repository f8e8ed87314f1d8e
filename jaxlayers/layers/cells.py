"""One-step recurrent cells (SimpleRNN, LSTM, GRU) for a `lax.scan` of your own.

The layers in `jaxlayers.layers.recurrent` run these cells over time; the cells are the
single place where the gate equations live.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxlayers import activations
from jaxlayers._checks import check_last_axis, check_positive_int, check_rank
from jaxlayers.initializers import glorot_uniform, orthogonal, zeros

__all__ = ["Cell", "SimpleRNNCell", "LSTMCell", "GRUCell", "IMPLEMENTATIONS"]

# How a step gets its input contribution x_t @ kernel (equal results, different speed):
#   "hoisted": one big (N*T, D) @ kernel before the scan (the usual GPU advice);
#   "inside":  x_t @ kernel + h @ recurrent_kernel inside the step (two matmuls);
#   "fused":   [x_t, h] @ [kernel; recurrent_kernel] inside the step (one matmul).
# On XLA:CPU (2 cores, LSTM 32 -> 128, T=64, N=64, value_and_grad) inside and fused
# measured 26-28 ms a step, hoisted 41-45 ms (DESIGN.md §5), so the CPU default is "inside".
IMPLEMENTATIONS = ("hoisted", "inside", "fused")


class Cell(NamedTuple):
    """One recurrent step, for a `lax.scan` of your own.

    init(key, input_dim) -> params
        The same params dict as the matching layer (`LSTM(units)` and `LSTMCell(units)`
        share weights).
    step(params, carry, x_t) -> (carry, h_t)
        x_t (N, input_dim); carry h (N, units), or (h, c) for LSTMCell; h_t (N, units).
    initial_carry(batch, dtype=float32) -> carry of zeros.

    Usage, over a batch-major sequence x (N, T, D):

        cell = jl.LSTMCell(32)
        params = cell.init(key, x.shape[-1])
        step = lambda carry, x_t: cell.step(params, carry, x_t)
        carry, hs = lax.scan(step, cell.initial_carry(x.shape[0]), jnp.swapaxes(x, 0, 1))
        # hs (T, N, 32); carry = (h_T, c_T)

    The layers (`jl.LSTM`, ...) add masking, dropout, `go_backwards` and the choice of
    step formulation on top of the same cell.
    """

    init: Callable
    step: Callable
    initial_carry: Callable
    units: int


class _Kind(NamedTuple):
    """What a layer needs from a cell (private: the public `Cell` shows a subset)."""

    name: str
    units: int
    has_c: bool                 # LSTM carries (h, c)
    init: Callable              # (key, input_dim) -> params
    prepare: Callable           # (params, implementation, dtype) -> arrays used by a step
    project: Callable           # (prepared, x (M, D)) -> x @ kernel + input bias (M, G*H)
    core: Callable              # (prepared, carry, x_in, implementation, rmask) -> (carry, h)


def _add(y, b):
    # bias (G,) onto (M, G), written out: the suite forbids rank promotion
    return y if b is None else y + jnp.broadcast_to(b, y.shape)


def _cast(a, dtype):
    return None if a is None else a.astype(dtype)


def _common_options(name, units, activation, kernel_init, recurrent_init, bias_init):
    check_positive_int(name, "units", units)
    for arg, fn in (("kernel_init", kernel_init), ("recurrent_init", recurrent_init),
                    ("bias_init", bias_init)):
        if not callable(fn):
            raise ValueError(f"{name}: {arg} must be an initializer "
                             f"init(key, shape, dtype), got {fn!r}.")
    return activations.get(activation, name)


def _init_weights(key, input_dim, units, gates, use_bias, bias_shape, kernel_init,
                  recurrent_init, bias_init, param_dtype):
    k_kernel, k_rec, k_bias = jax.random.split(key, 3)
    params = {"kernel": kernel_init(k_kernel, (input_dim, gates * units), param_dtype),
              "recurrent_kernel": recurrent_init(k_rec, (units, gates * units), param_dtype)}
    if use_bias:
        params["bias"] = bias_init(k_bias, bias_shape, param_dtype)
    return params


def _prepare_plain(params, implementation, dtype):
    """SimpleRNN and LSTM: gates = x @ kernel + h @ recurrent_kernel + bias."""
    p = {"W": params["kernel"].astype(dtype), "U": params["recurrent_kernel"].astype(dtype),
         "b_in": _cast(params.get("bias"), dtype)}
    if implementation == "fused":  # concatenated once per call, outside the scan
        p["WU"] = jnp.concatenate([p["W"], p["U"]], axis=0)
    return p


def _project(p, x):
    return _add(x @ p["W"], p["b_in"])


def _plain_preactivation(p, h_in, x_in, implementation):
    if implementation == "fused":
        return _add(jnp.concatenate([x_in, h_in], axis=-1) @ p["WU"], p["b_in"])
    xw = x_in if implementation == "hoisted" else _project(p, x_in)
    return xw + h_in @ p["U"]


def _dropped(h, rmask):
    return h if rmask is None else h * rmask


def _simple_rnn_kind(name, units, *, activation="tanh", use_bias=True,
                     kernel_init=glorot_uniform(), recurrent_init=orthogonal(),
                     bias_init=zeros, param_dtype=jnp.float32) -> _Kind:
    act = _common_options(name, units, activation, kernel_init, recurrent_init, bias_init)

    def init(key, input_dim):
        return _init_weights(key, input_dim, units, 1, use_bias, (units,), kernel_init,
                             recurrent_init, bias_init, param_dtype)

    def core(p, h, x_in, implementation, rmask):
        h = act(_plain_preactivation(p, _dropped(h, rmask), x_in, implementation))
        return h, h

    return _Kind(name, units, False, init, _prepare_plain, _project, core)


def _lstm_kind(name, units, *, activation="tanh", recurrent_activation="sigmoid",
               use_bias=True, unit_forget_bias=True, kernel_init=glorot_uniform(),
               recurrent_init=orthogonal(), bias_init=zeros,
               param_dtype=jnp.float32) -> _Kind:
    act = _common_options(name, units, activation, kernel_init, recurrent_init, bias_init)
    ract = activations.get(recurrent_activation, name)

    def init(key, input_dim):
        params = _init_weights(key, input_dim, units, 4, use_bias, (4 * units,), kernel_init,
                               recurrent_init, bias_init, param_dtype)
        if use_bias and unit_forget_bias:  # stored in params, not added in apply (STYLE §3)
            params["bias"] = params["bias"].at[units:2 * units].set(1)
        return params

    def core(p, carry, x_in, implementation, rmask):
        h, c = carry
        z = _plain_preactivation(p, _dropped(h, rmask), x_in, implementation)
        i, f, g, o = jnp.split(z, 4, axis=-1)  # gate order i, f, c, o
        c = ract(f) * c + ract(i) * act(g)
        h = ract(o) * act(c)
        return (h, c), h

    return _Kind(name, units, True, init, _prepare_plain, _project, core)


def _gru_kind(name, units, *, activation="tanh", recurrent_activation="sigmoid",
              use_bias=True, reset_after=False, kernel_init=glorot_uniform(),
              recurrent_init=orthogonal(), bias_init=zeros,
              param_dtype=jnp.float32) -> _Kind:
    act = _common_options(name, units, activation, kernel_init, recurrent_init, bias_init)
    ract = activations.get(recurrent_activation, name)
    two = 2 * units

    def init(key, input_dim):
        bias_shape = (2, 3 * units) if reset_after else (3 * units,)
        return _init_weights(key, input_dim, units, 3, use_bias, bias_shape, kernel_init,
                             recurrent_init, bias_init, param_dtype)

    def prepare(params, implementation, dtype):
        W, U = params["kernel"].astype(dtype), params["recurrent_kernel"].astype(dtype)
        b = _cast(params.get("bias"), dtype)
        b_in, b_rec = (b[0], b[1]) if (b is not None and reset_after) else (b, None)
        p = {"W": W, "b_in": b_in, "U_zr": U[:, :two], "U_h": U[:, two:],
             "b_rec_zr": None if b_rec is None else b_rec[:two],
             "b_rec_h": None if b_rec is None else b_rec[two:]}
        if implementation == "fused":  # z and r fused; the candidate needs x and h apart
            p["WU_zr"] = jnp.concatenate([W[:, :two], U[:, :two]], axis=0)
            p["W_h"] = W[:, two:]
            p["b_zr"] = None if b_in is None else (
                b_in[:two] if b_rec is None else b_in[:two] + b_rec[:two])
            p["b_h"] = None if b_in is None else b_in[two:]
        return p

    def core(p, h, x_in, implementation, rmask):
        h_in = _dropped(h, rmask)
        if implementation == "fused":
            zr = _add(jnp.concatenate([x_in, h_in], axis=-1) @ p["WU_zr"], p["b_zr"])
            xh = _add(x_in @ p["W_h"], p["b_h"])
        else:
            xw = x_in if implementation == "hoisted" else _project(p, x_in)
            zr = _add(xw[:, :two] + h_in @ p["U_zr"], p["b_rec_zr"])
            xh = xw[:, two:]
        z, r = jnp.split(ract(zr), 2, axis=-1)
        if reset_after:  # r (h U_h + b_rec_h): cuDNN/PyTorch placement
            cand = act(xh + r * _add(h_in @ p["U_h"], p["b_rec_h"]))
        else:            # (r h) U_h: the seeds' and Cho et al.'s placement
            cand = act(xh + (r * h_in) @ p["U_h"])
        h = (1 - z) * h + z * cand  # seed 004: z weights the candidate
        return h, h

    return _Kind(name, units, False, init, prepare, _project, core)


def _initial_carry(kind: _Kind, batch: int, dtype=jnp.float32):
    h = jnp.zeros((batch, kind.units), dtype)
    return (h, h) if kind.has_c else h


def _cell(kind: _Kind) -> Cell:
    def step(params, carry, x_t):
        check_rank(kind.name, x_t, 2, "(N, input_dim) for one step")
        check_last_axis(kind.name, x_t, params["kernel"].shape[0])
        h = carry[0] if kind.has_c else carry
        p = kind.prepare(params, "inside", h.dtype)
        return kind.core(p, carry, x_t.astype(h.dtype), "inside", None)

    return Cell(kind.init, step, lambda batch, dtype=jnp.float32: _initial_carry(
        kind, batch, dtype), kind.units)


def SimpleRNNCell(units: int, **options) -> Cell:
    """One SimpleRNN step: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias).

    Options (keyword): activation="tanh", use_bias, kernel_init, recurrent_init, bias_init,
    param_dtype, as `SimpleRNN` (the sequence options belong to the layer). Params as
    `SimpleRNN`. See `Cell` for init/step/initial_carry and usage.
    """
    return _cell(_simple_rnn_kind("SimpleRNNCell", units, **options))


def LSTMCell(units: int, **options) -> Cell:
    """One LSTM step (equations and params as `LSTM`); carry (h, c). See `Cell`.

    Options (keyword): activation, recurrent_activation, use_bias, unit_forget_bias,
    kernel_init, recurrent_init, bias_init, param_dtype, as `LSTM`.
    """
    return _cell(_lstm_kind("LSTMCell", units, **options))


def GRUCell(units: int, **options) -> Cell:
    """One GRU step (equations and params as `GRU`, the seeds' update rule). See `Cell`.

    Options (keyword): activation, recurrent_activation, use_bias, reset_after,
    kernel_init, recurrent_init, bias_init, param_dtype, as `GRU`.
    """
    return _cell(_gru_kind("GRUCell", units, **options))
