"""Recurrent layers (SimpleRNN, LSTM, GRU) run with `lax.scan` over one-step cells."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlayers._checks import (check_float, check_last_axis, check_one_of,
                               check_positive_int, check_rank, check_rate, compute_dtype,
                               shape_of)
from jaxlayers.core import Layer, Masked, child_key, layer_factory
from jaxlayers.layers.dropout import drop, dropout_mask
from jaxlayers.initializers import glorot_uniform, orthogonal, zeros
from jaxlayers.layers import _cudnn
from jaxlayers.layers._recurrence import DERIVATIVES, run_cell
from jaxlayers.layers.cells import (IMPLEMENTATIONS, Cell, GRUCell, LSTMCell, SimpleRNNCell,
                                    _gru_kind, _initial_carry, _Kind, _lstm_kind,
                                    _simple_rnn_kind)

__all__ = ["SimpleRNN", "LSTM", "GRU", "sequence_mask", "reset_state",
           # the cells live in jaxlayers.layers.cells; importable from here too
           "Cell", "SimpleRNNCell", "LSTMCell", "GRUCell", "IMPLEMENTATIONS"]


def _default_implementation() -> str:
    return "inside" if jax.default_backend() == "cpu" else "hoisted"


def _default_derivative() -> str:
    return "custom" if jax.default_backend() == "cpu" else "autodiff"


# ---------------------------------------------------------------- inputs of apply

def sequence_mask(layer: str, x, mask=None, lengths=None):
    """Split a sequence input into (values (N, T, F), bool mask (N, T) or None, was_masked).

    The padding may come as a `jl.Masked` input, `mask=` (bool (N, T)) or `lengths=`
    (int (N,), valid steps first): one of them at most. Checks rank, dtype and shapes.
    `lengths` outside [0, T] raise a ValueError when they are concrete (outside jit);
    under jit they act as clipped to [0, T].
    """
    was_masked = isinstance(x, Masked)
    given = [n for n, v in (("a jl.Masked input", was_masked), ("mask=", mask is not None),
                            ("lengths=", lengths is not None)) if v]
    if len(given) > 1:
        raise ValueError(f"{layer}: give the padding one way only, got {' and '.join(given)}.")
    if was_masked:
        x, mask = x.values, x.mask
    check_float(layer, x)
    check_rank(layer, x, 3, "(N, T, features)")
    n, t = x.shape[:2]
    # Python lists are fine too; anything else is checked for shape and dtype below
    mask, lengths = (np.asarray(a) if isinstance(a, (list, tuple)) else a
                     for a in (mask, lengths))
    if mask is not None:
        if not hasattr(mask, "shape") or tuple(mask.shape) != (n, t):
            raise ValueError(f"{layer}: mask must have shape (N, T) = {(n, t)}, got "
                             f"{tuple(getattr(mask, 'shape', ()))} for input shape "
                             f"{tuple(x.shape)}.")
        if not (jnp.issubdtype(mask.dtype, jnp.bool_) or jnp.issubdtype(mask.dtype, jnp.integer)):
            raise TypeError(f"{layer}: mask must be bool (True = a real step), got "
                            f"{mask.dtype}.")
        mask = mask.astype(bool)
    if lengths is not None:
        if not hasattr(lengths, "shape") or tuple(lengths.shape) != (n,):
            raise ValueError(f"{layer}: lengths must have shape (N,) = ({n},), got "
                             f"{tuple(getattr(lengths, 'shape', ()))}.")
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(f"{layer}: lengths must be integers, got {lengths.dtype}.")
        if not isinstance(lengths, jax.core.Tracer):  # concrete: the values can be checked
            bad = np.asarray(lengths)
            bad = bad[(bad < 0) | (bad > t)]
            if bad.size:
                raise ValueError(f"{layer}: lengths must be in [0, T] = [0, {t}], got "
                                 f"{bad.tolist()}.")
        mask = jnp.arange(t)[None, :] < lengths[:, None]
    return x, mask, was_masked


def _initial_state(kind: _Kind, initial_state, n: int, dtype):
    if initial_state is None:
        return _initial_carry(kind, n, dtype)
    states = tuple(initial_state) if isinstance(initial_state, (tuple, list)) \
        else (initial_state,)
    want = "(h, c)" if kind.has_c else "h"
    count = 2 if kind.has_c else 1
    if len(states) != count:
        raise ValueError(f"{kind.name}: initial_state must be {want} ({count} array"
                         f"{'s' if count > 1 else ''} of shape (N, units)), got "
                         f"{len(states)} arrays.")
    for s in states:
        if not hasattr(s, "shape") or tuple(s.shape) != (n, kind.units):
            raise ValueError(f"{kind.name}: initial_state must have shape (N, units) = "
                             f"{(n, kind.units)}, got {tuple(getattr(s, 'shape', ()))}.")
    states = tuple(s.astype(dtype) for s in states)
    return states if kind.has_c else states[0]


def _dropout_masks(name, key, x, units, rate, recurrent_rate, dtype):
    """One mask per sequence, reused at every step (Keras; Gal & Ghahramani 2016)."""
    n, _, d = x.shape
    if rate > 0:
        x = drop(x, dropout_mask(name, child_key(key, 0), rate, (n, 1, d)), rate)
    rmask = None
    if recurrent_rate > 0:
        keep = dropout_mask(name, child_key(key, 1), recurrent_rate, (n, units))
        rmask = drop(jnp.ones((n, units), dtype), keep, recurrent_rate)
    return x, rmask


def _stored_carry(kind: _Kind, state, n: int, dtype):
    """A stateful layer's carry from `state`, checked against the batch size."""
    stored = state["carry"]
    if stored["h"].shape[0] != n:
        raise ValueError(f"{kind.name}: stateful=True keeps a carry for batch size "
                         f"{stored['h'].shape[0]} (from init), got an input of batch size "
                         f"{n}; re-init for the new batch size, or pass initial_state=.")
    carry = tuple(stored[k].astype(dtype) for k in ("h", "c") if k in stored)
    return carry if kind.has_c else carry[0]


def _new_state(kind: _Kind, state, carry):
    """The carry to keep: no gradient flows back into the previous call (truncated BPTT)."""
    parts = dict(zip(("h", "c"), carry if kind.has_c else (carry,)))
    return {"carry": {k: lax.stop_gradient(v).astype(state["carry"][k].dtype)
                      for k, v in parts.items()}}


def reset_state(state):
    """`state` with every stateful recurrent carry set to zeros (Keras's reset_states).

    Walks any params-like tree (serial tuples, compose dicts, Bidirectional's
    forward/backward) and zeros each subtree stored under the key "carry", where
    `stateful=True` layers keep theirs; everything else (BatchNorm statistics) is kept.
    Re-`init` does the same and also resets the rest.
    """
    if isinstance(state, dict):
        return {k: (jax.tree.map(jnp.zeros_like, v) if k == "carry" else reset_state(v))
                for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(reset_state(v) for v in state)
    return state


def _layer(kind: _Kind, *, return_sequences, return_state, go_backwards, unroll, dropout,
           recurrent_dropout, implementation, derivative, dtype, stateful=False,
           cudnn=None) -> Layer:
    """cudnn (LSTM with implementation="cudnn" only): {"activation",
    "recurrent_activation"}, the static configuration `_cudnn.uses_cudnn` reads; None:
    always the scan."""
    name = kind.name
    dropout = check_rate(name, "dropout", dropout)
    recurrent_dropout = check_rate(name, "recurrent_dropout", recurrent_dropout)
    if unroll is not None and not isinstance(unroll, bool):
        check_positive_int(name, "unroll", unroll)
    if implementation is not None:
        check_one_of(name, "implementation", implementation, IMPLEMENTATIONS)
    if derivative is not None:
        check_one_of(name, "derivative", derivative, DERIVATIVES)

    def init(key, input_spec):
        shape = shape_of(name, input_spec)
        if len(shape) != 3:
            raise ValueError(f"{name}: input must have rank 3 (N, T, features), "
                             f"got shape {shape}.")
        if not stateful:
            return kind.init(key, shape[-1]), {}
        zeros = jnp.zeros((shape[0], kind.units), jnp.float32)
        carry = {"h": zeros, "c": zeros} if kind.has_c else {"h": zeros}
        return kind.init(key, shape[-1]), {"carry": carry}

    def on_cudnn(padding, compute) -> bool:
        """implementation="cudnn" (`_cudnn.uses_cudnn`, decided at trace time): True where
        cuDNN can run, else a ValueError naming why; without it, the scan."""
        if cudnn is None:
            return False
        config = dict(activation=cudnn["activation"],
                      recurrent_activation=cudnn["recurrent_activation"],
                      go_backwards=go_backwards, recurrent_dropout=recurrent_dropout,
                      padding=padding, dtype=compute)
        backend = _cudnn.backend()
        if not _cudnn.uses_cudnn(backend, implementation="cudnn", **config):
            why = "; ".join(_cudnn.cudnn_misfits(**config) + ([] if backend == "cuda" else [
                f"the backend is {backend!r}, and jax.experimental.rnn.lstm runs on CUDA "
                f"GPUs only"]))
            raise ValueError(f"{name}: implementation='cudnn' cannot run here: {why}. "
                             f"Leave implementation=None for the scan.")
        return True

    def apply(params, state, x, *, key=None, training=False, initial_state=None, mask=None,
              lengths=None):
        padding = ("mask" if isinstance(x, Masked) or mask is not None else
                   "lengths" if lengths is not None else "none")
        x, mask, was_masked = sequence_mask(name, x, mask, lengths)
        check_last_axis(name, x, params["kernel"].shape[0])
        compute = compute_dtype(x, dtype)
        x = x.astype(compute)
        if stateful and initial_state is None:
            carry = _stored_carry(kind, state, x.shape[0], compute)
        else:
            carry = _initial_state(kind, initial_state, x.shape[0], compute)
        rmask = None
        if training and (dropout > 0 or recurrent_dropout > 0):
            x, rmask = _dropout_masks(name, key, x, kind.units, dropout, recurrent_dropout,
                                      compute)
        if on_cudnn(padding, compute):
            ys, carry = _cudnn.run_lstm(params, x, carry, None if lengths is None else
                                        jnp.asarray(lengths), kind.units)
        else:
            form = implementation or _default_implementation()
            p = kind.prepare(params, form, compute)
            ys, carry = run_cell(kind, p, x, mask, carry, form,
                                 derivative or _default_derivative(), rmask, go_backwards,
                                 unroll, return_sequences)
        if stateful:
            state = _new_state(kind, state, carry)
        h = carry[0] if kind.has_c else carry
        y = ys if return_sequences else h
        if return_sequences and was_masked:  # pass the padding on to the next layer
            y = Masked(y, jnp.flip(mask, axis=1) if go_backwards else mask)
        if return_state:
            return ((y,) + tuple(carry) if kind.has_c else (y, carry)), state
        return y, state

    return Layer(init, apply, name=kind.name)


_LAYER_DOC_COMMON = """
    Options (as Keras): return_sequences=False returns the last valid step's h (N, units),
    True all outputs (N, T, units); return_state=True returns (output, h) — (output, h, c)
    for LSTM; go_backwards=True reads the sequence backwards and returns the outputs in that
    order; unroll is passed to `lax.scan` (None: 1, except the tangent scan of
    derivative="custom", which LSTM unrolls completely when T <= 32, else 8 steps,
    measured 12-19% and 10-16% faster on CPU; True: every step);
    stateful=True (Keras) keeps the final carry in `state` ({"carry": {"h"[, "c"]}},
    zeros from init for the batch size init saw) and starts the next call from it, so
    consecutive chunks of long sequences make one sequence: truncated BPTT inside `serial`
    and `jl.fit` (shuffle=False), the kept carry cut off from the gradient by
    `lax.stop_gradient`. An `initial_state=` given to apply takes precedence;
    `jl.reset_state(state)` (or re-init) zeros the carry; padded steps leave it unchanged.
    dropout / recurrent_dropout drop inputs / the h fed to the recurrent matmul with one
    mask per sequence reused at every step (needs `key` when training; the carried state
    itself is not dropped); activation (default
    "tanh") and recurrent_activation (gates, default "sigmoid") are names or callables;
    kernel_init (glorot_uniform), recurrent_init (orthogonal), bias_init (zeros);
    use_bias=False leaves no "bias" key; dtype (compute, default the input's) and
    param_dtype (storage).

    apply(params, state, x, *, key=None, training=False, initial_state=None, mask=None,
          lengths=None):
      initial_state: h (N, units), or (h, c) for LSTM; zeros by default.
      mask: bool (N, T), True on real steps; lengths: int (N,), the first lengths[i] steps
      are real; a `jl.Masked` input does the same (give one of the three). A padded step
      leaves the state unchanged and outputs zeros (PyTorch's packed-sequence convention;
      Keras repeats the previous output); a sequence with no valid step outputs its
      initial state. With a `jl.Masked` input and return_sequences=True the output is a
      `jl.Masked` with the same mask (reversed with go_backwards), so layers stack.

    Advanced: implementation=None picks the step formulation for the backend ("inside"
    on CPU, "hoisted" on GPU/TPU, measured: DESIGN.md §5); "hoisted", "inside" and "fused"
    compute the same function (tested equal) at different speeds. derivative=None picks
    how it is differentiated: "autodiff" (JAX differentiates the `lax.scan`, accumulating
    the weight gradients step by step) or "custom" (a `jax.custom_jvp` rule that computes
    the weight terms for all steps at once, outside the recurrence: in reverse mode the
    weight gradients become single matmuls over all N*T rows, cuDNN's structure; forward
    mode and second derivatives still work). "custom" is the default on CPU, where it made
    the LSTM/GRU train steps of `benchmarks/` 12-20% faster; "autodiff" elsewhere (not
    measured on an accelerator yet). Both are tested equal in value, jvp, grad and
    jvp-of-grad.

    Raises:
      ValueError: bad units/rates/unroll/implementation/derivative or unknown activation
        (construction); input not of rank 3 or with the wrong feature count, mask not
        (N, T), lengths not (N,) or (outside jit) outside [0, T], initial_state of the
        wrong count or shape, training with dropout and key=None, stateful=True with an
        input whose batch size differs from init's (trace time).
      TypeError: a non-float input, a non-bool mask, non-integer lengths.
"""


def _with_common_doc(fn):
    fn.__doc__ = fn.__doc__ + _LAYER_DOC_COMMON
    return fn


@layer_factory
@_with_common_doc
def SimpleRNN(units: int, *, activation="tanh", use_bias: bool = True,
              return_sequences: bool = False, return_state: bool = False,
              go_backwards: bool = False, unroll: int | None = None, dropout: float = 0.0,
              recurrent_dropout: float = 0.0, kernel_init=glorot_uniform(),
              recurrent_init=orthogonal(), bias_init=zeros, stateful: bool = False,
              implementation=None, derivative=None, dtype=None,
              param_dtype=jnp.float32) -> Layer:
    """Elman RNN over time (seeds 003 Q17, 004 part 03).

    Math: h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias), h_0 = 0.

    Shapes: x (N, T, D) -> (N, units), or (N, T, units) with return_sequences.
    params {"kernel": (D, units), "recurrent_kernel": (units, units), "bias": (units,)}:
    units * (D + units + 1) numbers (seed 003: 256 * (100 + 256 + 1) = 91,392).
    state {} (stateful: the carry).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxlayers as jl
      >>> rnn = jl.SimpleRNN(1, return_sequences=True)
      >>> x = jnp.array([[[2.0], [3.0], [1.0]]])  # seed 003 Q17: W_xh 0.5, W_hh 0.8, b 0
      >>> params, state = rnn.init(jax.random.key(0), x.shape)
      >>> params = {"kernel": jnp.full((1, 1), 0.5), "recurrent_kernel": jnp.full((1, 1), 0.8),
      ...           "bias": jnp.zeros(1)}
      >>> h, _ = rnn.apply(params, state, x)
      >>> print(np.asarray(h).ravel().round(3))  # the seed prints 0.855 last: a slip
      [0.762 0.971 0.856]
    """
    kind = _simple_rnn_kind("SimpleRNN", units, activation=activation, use_bias=use_bias,
                            kernel_init=kernel_init, recurrent_init=recurrent_init,
                            bias_init=bias_init, param_dtype=param_dtype)
    return _layer(kind, return_sequences=return_sequences, return_state=return_state,
                  go_backwards=go_backwards, unroll=unroll, dropout=dropout,
                  recurrent_dropout=recurrent_dropout, implementation=implementation,
                  derivative=derivative, dtype=dtype, stateful=stateful)


@layer_factory
@_with_common_doc
def LSTM(units: int, *, activation="tanh", recurrent_activation="sigmoid",
         use_bias: bool = True, unit_forget_bias: bool = True,
         return_sequences: bool = False, return_state: bool = False,
         go_backwards: bool = False, unroll: int | None = None, dropout: float = 0.0,
         recurrent_dropout: float = 0.0, kernel_init=glorot_uniform(),
         recurrent_init=orthogonal(), bias_init=zeros, stateful: bool = False,
         implementation=None, derivative=None, dtype=None,
         param_dtype=jnp.float32) -> Layer:
    """Long short-term memory over time (Hochreiter & Schmidhuber 1997; seed 004 part 03).

    Math (σ = recurrent_activation, tanh = activation), with
      [i, f, c~, o] = split(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias, 4):
      c_t = σ(f) * c_{t-1} + σ(i) * tanh(c~),   h_t = σ(o) * tanh(c_t).
    The gate columns are in the order i, f, c, o (as Keras and PyTorch's i, f, g, o).

    Shapes: x (N, T, D) -> (N, units), or (N, T, units) with return_sequences.
    params {"kernel": (D, 4U), "recurrent_kernel": (U, 4U), "bias": (4U,)}:
    4U(D + U + 1) numbers, 4U(D + U) without bias. state {} (stateful: the carry).
    unit_forget_bias=True starts the forget-gate slice bias[U:2U] at 1 (Keras; Jozefowicz
    et al. 2015); it is stored in params, nothing is added in apply.

    cuDNN (GPU), opt-in: implementation="cudnn" runs `jax.experimental.rnn.lstm` (cuDNN's
    fused LSTM: params packed into its flat weight vector, W_ih = kernel^T, b_ih = bias,
    b_hh = 0; jaxlayers/layers/_cudnn.py). It needs a CUDA GPU and cuDNN's configuration:
    activation "tanh", recurrent_activation "sigmoid", no go_backwards, no
    recurrent_dropout, float32 compute, and no padding or `lengths=` (a mask= or jl.Masked
    input may have holes, which cuDNN cannot take); anything else is a ValueError at trace
    time naming the reason. It computes the same function as the scan (tested against
    cuDNN's reference `jax.experimental.rnn.lstm_ref` on the CPU; not yet run on a GPU).
    It is not the default on a GPU because cuDNN's kernel in JAX 0.10 is reverse mode only
    (no jax.jvp, no second derivatives) and has no batching rule (no jax.vmap over the
    layer), which every other path supports.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> lstm = jl.LSTM(8, return_sequences=True, return_state=True)
      >>> params, state = lstm.init(jax.random.key(0), (2, 5, 3))
      >>> jax.tree.map(jnp.shape, params)  # the gates i, f, c, o side by side
      {'bias': (32,), 'kernel': (3, 32), 'recurrent_kernel': (8, 32)}
      >>> (y, h, c), _ = lstm.apply(params, state, jnp.ones((2, 5, 3)))
      >>> y.shape, h.shape, c.shape
      ((2, 5, 8), (2, 8), (2, 8))
      >>> jl.summary(jl.LSTM(256), (1, 7, 100), print_fn=None).total_params  # 4H(H + D + 1)
      365568
    """
    kind = _lstm_kind("LSTM", units, activation=activation,
                      recurrent_activation=recurrent_activation, use_bias=use_bias,
                      unit_forget_bias=unit_forget_bias, kernel_init=kernel_init,
                      recurrent_init=recurrent_init, bias_init=bias_init,
                      param_dtype=param_dtype)
    if implementation is not None:  # the scan's formulations, or cuDNN's kernel
        check_one_of("LSTM", "implementation", implementation, IMPLEMENTATIONS + ("cudnn",))
    on_cudnn = implementation == "cudnn"
    if on_cudnn and derivative is not None:
        raise ValueError(f"LSTM: implementation='cudnn' differentiates with cuDNN's own "
                         f"backward pass; derivative must be None, got {derivative!r}.")
    cudnn = (dict(activation=activation, recurrent_activation=recurrent_activation)
             if on_cudnn else None)
    return _layer(kind, return_sequences=return_sequences, return_state=return_state,
                  go_backwards=go_backwards, unroll=unroll, dropout=dropout,
                  recurrent_dropout=recurrent_dropout,
                  implementation=None if on_cudnn else implementation,
                  derivative=derivative, dtype=dtype, stateful=stateful, cudnn=cudnn)


@layer_factory
@_with_common_doc
def GRU(units: int, *, activation="tanh", recurrent_activation="sigmoid",
        use_bias: bool = True, reset_after: bool = False,
        return_sequences: bool = False, return_state: bool = False,
        go_backwards: bool = False, unroll: int | None = None, dropout: float = 0.0,
        recurrent_dropout: float = 0.0, kernel_init=glorot_uniform(),
        recurrent_init=orthogonal(), bias_init=zeros, stateful: bool = False,
        implementation=None, derivative=None, dtype=None,
        param_dtype=jnp.float32) -> Layer:
    """Gated recurrent unit over time (Cho et al. 2014), with the seeds' update rule.

    Math (σ = recurrent_activation, tanh = activation; W = kernel, U = recurrent_kernel,
    columns in the order z, r, h):
      z = σ(x_t W_z + h_{t-1} U_z + b_z),  r = σ(x_t W_r + h_{t-1} U_r + b_r)
      reset_after=False (default, seed 004):  h~ = tanh(x_t W_h + (r * h_{t-1}) U_h + b_h)
      reset_after=True (cuDNN/PyTorch):        h~ = tanh(x_t W_h + b_h + r * (h_{t-1} U_h + b'_h))
      h_t = (1 - z) * h_{t-1} + z * h~          in both modes (seed 004's rule)

    Note: Keras and PyTorch write h_t = z * h_{t-1} + (1 - z) * h~, so their z is our
    1 - z: weights convert with the update gate's kernels and biases negated
    (`jl.interop.from_torch("GRU", ...)` does it). PyTorch's GRU is reset_after=True.

    Shapes: x (N, T, D) -> (N, units), or (N, T, units) with return_sequences.
    params {"kernel": (D, 3U), "recurrent_kernel": (U, 3U), "bias": (3U,)}:
    3U(D + U + 1) numbers (3U(D + U) without bias); with reset_after=True "bias" is
    (2, 3U): row 0 the input bias b, row 1 the recurrent bias b' (as Keras).
    state {} (stateful: the carry).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> gru = jl.GRU(6)
      >>> params, state = gru.init(jax.random.key(0), (2, 5, 3))
      >>> h, _ = gru.apply(params, state, jnp.ones((2, 5, 3)))
      >>> h.shape
      (2, 6)
      >>> jl.summary(jl.GRU(256), (1, 7, 100), print_fn=None).total_params  # 3H(H + D + 1)
      274176
    """
    kind = _gru_kind("GRU", units, activation=activation,
                     recurrent_activation=recurrent_activation, use_bias=use_bias,
                     reset_after=reset_after, kernel_init=kernel_init,
                     recurrent_init=recurrent_init, bias_init=bias_init,
                     param_dtype=param_dtype)
    return _layer(kind, return_sequences=return_sequences, return_state=return_state,
                  go_backwards=go_backwards, unroll=unroll, dropout=dropout,
                  recurrent_dropout=recurrent_dropout, implementation=implementation,
                  derivative=derivative, dtype=dtype, stateful=stateful)
