"""One-step recurrent cells (SimpleRNN, LSTM, GRU) for a `lax.scan` of your own.

The layers in `jaxlayers.layers.recurrent` run these cells over time; the cells are the
single place where the gate equations live.
"""


from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

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

    The layers (`jl.LSTM`, ...) add masking, dropout, `go_backwards`, the choice of
    step formulation and a custom derivative (derivative="custom": weight gradients as
    one matmul over all steps) on top of the same cell; a scan of your own over
    `cell.step` is differentiated by JAX.
    """

    init: Callable
    step: Callable
    initial_carry: Callable
    units: int


class _Kind(NamedTuple):
    """What a layer needs from a cell (private: the public `Cell` shows a subset).

    `step` is the one place where a cell's gate equations live. Besides the new carry and
    h it returns the coefficients of the step's linearization, used by the custom
    derivative (`jaxlayers.layers._recurrence`, derivative="custom"):
      res_scan  per-step arrays that `tangent` reads inside the tangent scan,
      res_w     per-step arrays that `weight_tangent` reads outside it.
    `core` is `step` without them (unused, they are dead code for XLA).
    `weight_tangent` returns the terms of the step's linearization that do not depend on
    the recurrence (tangents of the weights, biases and inputs), stacked over time, so
    that the transpose computes the weight gradients as one matmul over all steps.
    """

    name: str
    units: int
    has_c: bool                 # LSTM carries (h, c)
    init: Callable              # (key, input_dim) -> params
    prepare: Callable           # (params, implementation, dtype) -> arrays used by a step
    project: Callable           # (prepared, x (M, D)) -> x @ kernel + input bias (M, G*H)
    step: Callable              # (prepared, carry, x_in, implementation, rmask)
    #                             -> (carry, h, (res_scan, res_w))
    tangent: Callable           # (prepared, res_scan_t, a_t, dcarry, rmask) -> dcarry
    weight_tangent: Callable    # (prepared, dprepared, xs, dxs, h_prev, res_w,
    #                              implementation) -> a, a tuple of (T, N, k) arrays
    tangent_unroll: int = 1     # the tangent scan's unroll when the layer's is None
    tangent_full_unroll: int = 0  # unroll=None and T <= this: tangent scan unrolled fully

    def core(self, p, carry, x_in, implementation, rmask):
        """(prepared, carry, x_in, implementation, rmask) -> (carry, h)."""
        carry, h, _ = self.step(p, carry, x_in, implementation, rmask)
        return carry, h


def _add(y, b):
    # bias (G,) onto (M, G) as a (1, G) row (the suite forbids rank promotion). Not
    # jnp.broadcast_to(b, y.shape): XLA then hoists an (M, G) copy of the bias out of the
    # scan and, in the GRU, stopped fusing h @ U_h + b into both of its consumers (one
    # more kernel per step than the hand-written step; benchmarks/README.md)
    return y if b is None else y + b[None, :]


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


def _plain_weight_tangent(p, dp, xs, dxs, h_prev, res_w, implementation):
    """SimpleRNN, LSTM: a = d(x @ W + b) + h_prev @ dU, the whole preactivation's."""
    g = p["U"].shape[1]
    return (_terms(xs.shape[:-1] + (g,), xs.dtype,
                   *_input_terms(p, dp, xs, dxs, implementation, 0, g), _mm(h_prev, dp["U"])),)


def _dropped(h, rmask):
    return h if rmask is None else h * rmask


def _slope(fn, z):
    """(fn(z), fn'(z)) for an elementwise activation (its jvp with a tangent of ones)."""
    return jax.jvp(fn, (z,), (jnp.ones_like(z),))


def _is_zero(t) -> bool:
    return t is None or isinstance(t, SymbolicZero)


def _mm(a, w):
    """a (..., K) @ w (K, G) as one 2-D matmul (DESIGN.md §5); None when w or a is zero."""
    if _is_zero(a) or _is_zero(w):
        return None
    return (a.reshape(-1, a.shape[-1]) @ w).reshape(a.shape[:-1] + (w.shape[-1],))


def _terms(shape, dtype, *terms):
    """Sum of the terms that are not None: full (..., G) arrays, and bias vectors (G,),
    which are summed first and broadcast once (their cotangent is then one reduction over
    all N*T rows)."""
    full = bias = None
    for t in terms:
        if _is_zero(t):
            continue
        if t.shape == shape:
            full = t if full is None else full + t
        else:
            bias = t if bias is None else bias + t
    if bias is not None:
        bias = jnp.broadcast_to(bias, shape)
        full = bias if full is None else full + bias
    return jnp.zeros(shape, dtype) if full is None else full


def _input_terms(p, dp, xs, dxs, implementation, lo, hi):
    """The terms of the tangent of x @ W[:, lo:hi] + b_in[lo:hi] (for `_terms`).

    With implementation="hoisted" xs is already x @ W + b_in, so its tangent is dxs."""
    if implementation == "hoisted":
        return (None if _is_zero(dxs) else dxs[..., lo:hi],)
    W, dW, db = p["W"], dp["W"], dp.get("b_in")
    return (_mm(dxs, W[:, lo:hi]), None if _is_zero(dW) else _mm(xs, dW[:, lo:hi]),
            None if _is_zero(db) else db[lo:hi])


def _simple_rnn_kind(name, units, *, activation="tanh", use_bias=True,
                     kernel_init=glorot_uniform(), recurrent_init=orthogonal(),
                     bias_init=zeros, param_dtype=jnp.float32) -> _Kind:
    act = _common_options(name, units, activation, kernel_init, recurrent_init, bias_init)

    def init(key, input_dim):
        return _init_weights(key, input_dim, units, 1, use_bias, (units,), kernel_init,
                             recurrent_init, bias_init, param_dtype)

    def step(p, h, x_in, implementation, rmask):
        h, slope = _slope(act, _plain_preactivation(p, _dropped(h, rmask), x_in,
                                                    implementation))
        return h, h, ((slope,), ())

    def tangent(p, res, a, dh, rmask):
        (slope,), (a,) = res, a
        return slope * (a + _dropped(dh, rmask) @ p["U"])

    return _Kind(name, units, False, init, _prepare_plain, _project, step, tangent,
                 _plain_weight_tangent)


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

    def step(p, carry, x_in, implementation, rmask):
        h, c = carry
        z = _plain_preactivation(p, _dropped(h, rmask), x_in, implementation)
        i, f, g, o = jnp.split(z, 4, axis=-1)  # gate order i, f, c, o
        (si, dsi), (sf, dsf), (sg, dsg), (so, dso) = (
            _slope(ract, i), _slope(ract, f), _slope(act, g), _slope(ract, o))
        c_new = sf * c + si * sg
        sc, dsc = _slope(act, c_new)
        h = so * sc
        # dc' = dz_i*k_i + dz_f*k_f + dz_g*k_g + sf*dc,  dh' = dz_o*k_o + kc*dc'
        k = jnp.concatenate([dsi * sg, dsf * c, si * dsg, dso * sc], axis=-1)
        return (h, c_new), h, ((k, sf, so * dsc), ())

    def tangent(p, res, a, dcarry, rmask):
        (k, sf, kc), (a,), (dh, dc) = res, a, dcarry
        dz = a + _dropped(dh, rmask) @ p["U"]
        di, df, dg, do = jnp.split(dz * k, 4, axis=-1)
        dc = di + df + dg + sf * dc
        return do + kc * dc, dc

    # unrolling the tangent scan 8 steps made the LSTM train step 10-16% faster on XLA:CPU
    # (the GRU's 3-12% slower, so it stays at 1); with T <= 32 steps unrolling it
    # completely was 12-19% faster again (T = 64: no gain, twice the compile time; the
    # GRU's: none at T = 16). Unrolling the primal scan too added a few % more but made
    # second-order programs compile 3-4x longer. benchmarks/README.md, "Issue 13"
    return _Kind(name, units, True, init, _prepare_plain, _project, step, tangent,
                 _plain_weight_tangent, tangent_unroll=8, tangent_full_unroll=32)


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

    def step(p, h, x_in, implementation, rmask):
        h_in = _dropped(h, rmask)
        if implementation == "fused":
            zr = _add(jnp.concatenate([x_in, h_in], axis=-1) @ p["WU_zr"], p["b_zr"])
            xh = _add(x_in @ p["W_h"], p["b_h"])
        else:
            xw = x_in if implementation == "hoisted" else _project(p, x_in)
            zr = _add(xw[:, :two] + h_in @ p["U_zr"], p["b_rec_zr"])
            xh = xw[:, two:]
        zr, dzr = _slope(ract, zr)
        z, r = jnp.split(zr, 2, axis=-1)
        if reset_after:  # r (h U_h + b_rec_h): cuDNN/PyTorch placement
            hu = _add(h_in @ p["U_h"], p["b_rec_h"])
            cand, da = _slope(act, xh + r * hu)
        else:            # (r h) U_h: the seeds' and Cho et al.'s placement
            rh = r * h_in
            cand, da = _slope(act, xh + rh @ p["U_h"])
        h_new = (1 - z) * h + z * cand  # seed 004: z weights the candidate
        # linearization: dh' = (1 - z) dh + [k_z, k_r] . d(zr preactivation) + ...
        dz, dr = jnp.split(dzr, 2, axis=-1)
        q = z * da
        if reset_after:  # ... + [q, q r] . [d(x W_h + b_h), d(h U_h + b_rec_h)]
            res = (jnp.concatenate([(cand - h) * dz, q * hu * dr], axis=-1),
                   jnp.concatenate([q, q * r], axis=-1), 1 - z)
            return h_new, h_new, (res, ())
        # ... + q d(x W_h + b_h + (r h) U_h), with d(r h) = dr h + r dh
        res = (jnp.concatenate([(cand - h) * dz, dr * h_in], axis=-1), r, 1 - z, q)
        return h_new, h_new, (res, (rh,))

    def tangent(p, res, a, dh, rmask):
        dh_in = _dropped(dh, rmask)
        dzr = a[0] + dh_in @ p["U_zr"]
        k_z, k_r = jnp.split(dzr * res[0], 2, axis=-1)
        if reset_after:
            (_, qq, oz), (_, a_h, a_hu) = res, a
            t_x, t_h = jnp.split(jnp.concatenate([a_h, a_hu + dh_in @ p["U_h"]], axis=-1) * qq,
                                 2, axis=-1)
            return oz * dh + k_z + k_r + t_x + t_h
        (_, r, oz, q), (_, a_h) = res, a
        return oz * dh + k_z + q * (a_h + (k_r + r * dh_in) @ p["U_h"])

    def weight_tangent(p, dp, xs, dxs, h_prev, res_w, implementation):
        shape = xs.shape[:-1]
        a_zr = _terms(shape + (two,), xs.dtype,
                      *_input_terms(p, dp, xs, dxs, implementation, 0, two),
                      _mm(h_prev, dp["U_zr"]), dp["b_rec_zr"])
        x_h = _input_terms(p, dp, xs, dxs, implementation, two, 3 * units)
        if reset_after:
            return (a_zr, _terms(shape + (units,), xs.dtype, *x_h),
                    _terms(shape + (units,), xs.dtype, _mm(h_prev, dp["U_h"]), dp["b_rec_h"]))
        (rh,) = res_w
        return a_zr, _terms(shape + (units,), xs.dtype, *x_h, _mm(rh, dp["U_h"]))

    return _Kind(name, units, False, init, prepare, _project, step, tangent, weight_tangent)


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
