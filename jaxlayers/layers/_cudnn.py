"""The LSTM through cuDNN (`jax.experimental.rnn.lstm`) on a CUDA GPU, when asked for.

`jl.LSTM` runs its own `lax.scan` (jaxlayers/layers/_recurrence.py) everywhere unless it
is built with implementation="cudnn": then, on a CUDA GPU and when the configuration
means what cuDNN's LSTM computes, it packs the params into cuDNN's flat weight vector and
calls `jax.experimental.rnn.lstm`, one fused kernel for the whole sequence and its
backward pass. It is opt-in, not automatic, because that kernel has no forward-mode
derivative and no batching rule in JAX 0.10, so jax.jvp, second derivatives and jax.vmap
over the layer would break where they work everywhere else (DESIGN.md: apply is
jit/vmap/grad safe). The choice is `uses_cudnn`, a pure function of the backend and the
configuration, so it is tested without a GPU; the packing
and the padding rules are tested on the CPU against `jax.experimental.rnn.lstm_ref`,
cuDNN's reference in JAX with the same weight layout and seq_lengths semantics.

cuDNN's LSTM (PyTorch's and cuDNN's notation), gates in the order i, f, g, o:
  [i, f, g, o] = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
  c_t = σ(f) c_{t-1} + σ(i) tanh(g),   h_t = σ(o) tanh(c_t)
Ours: [i, f, c~, o] = x_t kernel + h_{t-1} recurrent_kernel + bias, the same order (our
c~ is their g), so W_ih = kernel^T (4U, D), W_hh = recurrent_kernel^T (4U, U),
b_ih = bias and b_hh = 0 (cuDNN adds two bias vectors; one of them zero is our one).
The flat vector is (W_ih, W_hh, b_ih, b_hh), each flattened row-major: the layout of
`jax.experimental.rnn.unpack_lstm_weights` for one layer, one direction. (ROCm's MIOpen
orders the gates i, f, o, g, `swap_lstm_gates`: ROCm keeps the scan.)

Padding: cuDNN takes seq_lengths, valid steps first. With lengths L_n it outputs zeros
after step L_n and returns h, c of step L_n, as our scan does with `lengths=`. A row of
length 0 has no step for cuDNN; it runs with length 1 here, and its outputs and final
state are replaced by ours (zeros, the initial state).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlayers import activations

__all__ = ["uses_cudnn", "cudnn_misfits", "pack_weights", "run_lstm", "backend"]


def backend() -> str:
    """"cuda" on an NVIDIA GPU, "rocm" on an AMD one, else jax.default_backend()."""
    name = jax.default_backend()
    if name != "gpu":
        return name
    version = getattr(jax.devices()[0].client, "platform_version", "").lower()
    return "rocm" if "rocm" in version or "hip" in version else "cuda"


def cudnn_misfits(*, activation, recurrent_activation, go_backwards: bool,
                  recurrent_dropout: float, padding: str, dtype) -> list[str]:
    """Why this LSTM configuration is not cuDNN's LSTM: a list of reasons, empty if it is.

    padding: "none" (no padding), "lengths" (lengths=: valid steps first, as cuDNN's
    seq_lengths) or "mask" (mask= or a jl.Masked input: any pattern of valid steps, which
    cuDNN cannot take). dtype: the compute dtype (cuDNN's LSTM in JAX is float32 only).
    """
    reasons = []
    if activations.get(activation, "LSTM") is not activations.tanh:
        reasons.append(f"activation {activation!r} is not 'tanh'")
    if activations.get(recurrent_activation, "LSTM") is not activations.sigmoid:
        reasons.append(f"recurrent_activation {recurrent_activation!r} is not 'sigmoid'")
    if go_backwards:
        reasons.append("go_backwards=True")
    if recurrent_dropout > 0:
        reasons.append(f"recurrent_dropout={recurrent_dropout} (cuDNN drops no h)")
    if padding == "mask":
        reasons.append("a mask (cuDNN takes lengths=, valid steps first)")
    if jnp.dtype(dtype) != jnp.float32:
        reasons.append(f"compute dtype {jnp.dtype(dtype).name} (cuDNN's LSTM takes float32)")
    return reasons


def uses_cudnn(backend_name: str, *, implementation, **config) -> bool:
    """The rule: cuDNN only when implementation="cudnn" was asked for, on the "cuda"
    backend, with a configuration `cudnn_misfits(**config)` finds nothing against (the
    layer raises a ValueError naming the misfit otherwise); the scan in every other case,
    the GPU included (see the module docstring for why it is opt-in). A derivative= next
    to implementation="cudnn" is refused when the layer is built, so it is not read here."""
    return (implementation == "cudnn" and backend_name == "cuda"
            and not cudnn_misfits(**config))


def pack_weights(params, units: int, dtype=jnp.float32):
    """Our LSTM params -> cuDNN's flat weight vector (W_ih, W_hh, b_ih, b_hh).

    kernel (D, 4U) -> W_ih = kernel^T; recurrent_kernel (U, 4U) -> W_hh; bias (4U,) ->
    b_ih, zeros (no bias without one); b_hh = zeros. Differentiable: the gradient of the
    flat vector flows back to the params through the transposes.
    """
    kernel, recurrent = params["kernel"].astype(dtype), params["recurrent_kernel"].astype(dtype)
    zeros = jnp.zeros((4 * units,), dtype)
    bias = params["bias"].astype(dtype) if "bias" in params else zeros
    return jnp.concatenate([kernel.T.reshape(-1), recurrent.T.reshape(-1), bias, zeros])


def _cudnn_lstm(x, h0, c0, weights, seq_lengths, *, input_size, hidden_size):
    from jax.experimental import rnn
    return rnn.lstm(x, h0, c0, weights, seq_lengths, input_size=input_size,
                    hidden_size=hidden_size, num_layers=1, dropout=0.0, bidirectional=False)


def run_lstm(params, x, carry, lengths, units: int, lstm=None):
    """The LSTM over x (N, T, D) through cuDNN: (outputs (N, T, U), (h, c)).

    carry: (h0, c0), each (N, U). lengths: int (N,) valid steps first, or None (all T).
    Padded steps output zeros; a row of length 0 outputs zeros and keeps (h0, c0).
    lstm: the kernel, `jax.experimental.rnn.lstm`'s signature (a test passes one built
    on `lstm_ref`); None is cuDNN's.
    """
    n, t, d = x.shape
    h0, c0 = carry
    full = lengths is None
    lengths = jnp.full((n,), t, jnp.int32) if full else jnp.clip(lengths, 0, t).astype(jnp.int32)
    weights = pack_weights(params, units, x.dtype)
    ys, h, c = (lstm or _cudnn_lstm)(x, h0[None], c0[None], weights, jnp.maximum(lengths, 1),
                                     input_size=d, hidden_size=units)
    h, c = h[0], c[0]
    if not full:
        empty = (lengths == 0)[:, None]
        h, c = jnp.where(empty, h0, h), jnp.where(empty, c0, c)
        valid = jnp.arange(t)[None, :] < lengths[:, None]
        ys = jnp.where(valid[:, :, None], ys, jnp.zeros_like(ys))
    return ys, (h, c)
