"""Recurrent workloads: LSTM and GRU, input 32, hidden 128, T = 64, batch 64, last h ->
Dense(10), softmax cross-entropy, Adam(1e-3).

Contenders per workload:
  jaxlayers     jl.serial(jl.LSTM(128) | jl.GRU(128, reset_after=True), jl.Dense(10)) +
                jl.train.make_train_step; the layer's default step formulation for the
                backend ("inside" on CPU)
  jax           hand-written lax.scan, the fastest step formulation measured (VARIANTS;
                `run.py --variants` re-measures): "inside" (x_t @ W + h @ U in the step),
                "fused" ([x_t, h] @ [W; U]), "hoisted" (x @ W for all steps before the scan);
                GRU "split" (h @ U_zr and h @ U_h as two matmuls, the fastest found)
  pytorch       eager nn.LSTM / nn.GRU (batch_first) + nn.Linear, torch.optim.Adam defaults

The GRU is the reset-after form (r multiplies h @ U_h + b_hh, PyTorch's and cuDNN's), so
all three compute the same function class.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Contender, Workload, jax_stepper, num_threads, torch_stepper
from benchmarks.mlp import _library_step

BATCH, STEPS, FEATURES, HIDDEN, CLASSES = 64, 64, 32, 128, 10
LEARNING_RATE = 1e-3


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, STEPS, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- jaxlayers

def _jaxlayers(cell, implementation=None, reset_after=True):
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        import jaxlayers as jl

        if cell == "lstm":
            rnn = jl.LSTM(HIDDEN, implementation=implementation)
        else:
            rnn = jl.GRU(HIDDEN, reset_after=reset_after, implementation=implementation)
        model = jl.serial(rnn, jl.Dense(CLASSES))
        optimizer = optax.adam(LEARNING_RATE)
        step, _ = _library_step(model, optimizer)
        params, state = model.init(jax.random.key(0), (BATCH, STEPS, FEATURES))
        x, y = (jnp.asarray(a) for a in _data())
        return jax_stepper(step, (params, state, optimizer.init(params)),
                           (x, y, jax.random.key(1)))

    return setup


# ------------------------------------------------------------------ hand-written JAX

def _handwritten(cell, form="inside", donate=True):
    """form: "inside" (x_t @ W + h @ U in the step), "fused" (LSTM only: one
    [x_t, h] @ [W; U] matmul), "hoisted" (x @ W for every step before the scan).
    GRU: "inside" computes h @ U for all three gates in one (H, 3H) matmul (possible
    with reset-after); "split" as two, h @ U_zr and h @ U_h (U sliced outside the scan)."""
    def setup():
        import jax
        import jax.numpy as jnp
        import optax
        from jax import lax

        g = 4 if cell == "lstm" else 3
        key = jax.random.key(0)
        lim = np.sqrt(6.0 / (FEATURES + g * HIDDEN))
        W = jax.random.uniform(jax.random.fold_in(key, 0), (FEATURES, g * HIDDEN),
                               minval=-lim, maxval=lim)
        U = jax.nn.initializers.orthogonal()(jax.random.fold_in(key, 1), (HIDDEN, g * HIDDEN))
        if cell == "lstm":
            b = jnp.zeros((g * HIDDEN,)).at[HIDDEN:2 * HIDDEN].set(1.0)
        else:
            b = jnp.zeros((2, g * HIDDEN))  # input row, recurrent row (reset-after)
        lim = np.sqrt(6.0 / (HIDDEN + CLASSES))
        Wo = jax.random.uniform(jax.random.fold_in(key, 2), (HIDDEN, CLASSES),
                                minval=-lim, maxval=lim)
        params = (W, U, b, Wo, jnp.zeros((CLASSES,)))
        H = HIDDEN

        def lstm_step(Wf, U, b, carry, x_in):
            h, c = carry
            if form == "fused":
                z = jnp.concatenate([x_in, h], axis=-1) @ Wf + b
            elif form == "hoisted":
                z = x_in + h @ U
            else:
                z = x_in @ Wf + h @ U + b
            i, f, gg, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c)

        def gru_step(W, U, b, h, x_in):
            # reset-after GRU: x-part and h-part computed whole, then gated
            xw = x_in if form == "hoisted" else x_in @ W + b[0]
            if form in ("split", "split-jnp"):  # h @ U_zr, h @ U_h: two matmuls
                U_zr, U_h = U
                zr = jax.nn.sigmoid(xw[:, :2 * H] + h @ U_zr + b[1, :2 * H])
                z, r = jnp.split(zr, 2, axis=-1) if form == "split-jnp" else (zr[:, :H],
                                                                              zr[:, H:])
                cand = jnp.tanh(xw[:, 2 * H:] + r * (h @ U_h + b[1, 2 * H:]))
                return (1 - z) * h + z * cand
            hu = h @ U + b[1]
            z = jax.nn.sigmoid(xw[:, :H] + hu[:, :H])
            r = jax.nn.sigmoid(xw[:, H:2 * H] + hu[:, H:2 * H])
            cand = jnp.tanh(xw[:, 2 * H:] + r * hu[:, 2 * H:])
            return (1 - z) * h + z * cand

        def forward(p, x):
            W, U, b, Wo, bo = p
            xs = jnp.swapaxes(x, 0, 1)  # (T, N, D)
            if form == "hoisted":
                bias = b if cell == "lstm" else b[0]
                xs = (xs.reshape(-1, FEATURES) @ W + bias).reshape(STEPS, BATCH, -1)
            h0 = jnp.zeros((BATCH, H))
            if cell == "lstm":
                Wf = jnp.concatenate([W, U], axis=0) if form == "fused" else W

                def step(carry, x_in):
                    return lstm_step(Wf, U, b, carry, x_in), None
                (h, _), _ = lax.scan(step, (h0, h0), xs)
            else:
                Us = (U[:, :2 * H], U[:, 2 * H:]) if form.startswith("split") else U

                def step(h, x_in):
                    return gru_step(W, Us, b, h, x_in), None
                h, _ = lax.scan(step, h0, xs)
            return h @ Wo + bo

        def objective(p, x, y):
            return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

        optimizer = optax.adam(LEARNING_RATE)

        def train_step(p, o, x, y):
            value, grads = jax.value_and_grad(objective)(p, x, y)
            updates, o = optimizer.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value

        fn = jax.jit(train_step, donate_argnums=(0, 1) if donate else ())
        x, y = (jnp.asarray(a) for a in _data())
        return jax_stepper(fn, (params, optimizer.init(params)), (x, y))

    return setup


LSTM_VARIANTS = {"jax:inside": dict(form="inside"), "jax:fused": dict(form="fused"),
                 "jax:hoisted": dict(form="hoisted")}
GRU_VARIANTS = {"jax:inside": dict(form="inside"), "jax:split": dict(form="split"),
                "jax:split-jnp": dict(form="split-jnp"), "jax:hoisted": dict(form="hoisted")}
# The fastest measured on this machine (README, "lstm" / "gru" sections).
LSTM_BASELINE = "jax:inside"
GRU_BASELINE = "jax:split"


# ------------------------------------------------------------------------- PyTorch

def _torch(cell):
    def setup():
        import torch
        import torch.nn.functional as F
        from torch import nn

        torch.set_num_threads(num_threads())
        torch.manual_seed(0)
        rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(FEATURES, HIDDEN, batch_first=True)
        head = nn.Linear(HIDDEN, CLASSES)
        optimizer = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()),
                                     lr=LEARNING_RATE)
        x, y = _data()
        x, y = torch.from_numpy(x), torch.from_numpy(y).long()

        def step():
            optimizer.zero_grad(set_to_none=True)
            _, hidden = rnn(x)
            h = hidden[0] if cell == "lstm" else hidden
            loss = F.cross_entropy(head(h[-1]), y)
            loss.backward()
            optimizer.step()
            return loss

        return torch_stepper(step)

    return setup


def _contenders(cell, variants, baseline):
    what = "jl.LSTM(128)" if cell == "lstm" else "jl.GRU(128, reset_after=True)"
    yield Contender("jaxlayers", _jaxlayers(cell), "jaxlayers",
                    f"jl.serial({what}, jl.Dense(10)) + jl.train.make_train_step")
    yield Contender("jax", _handwritten(cell, **variants[baseline]), "jax",
                    f"hand-written lax.scan, fastest variant ({baseline})")
    for name, kwargs in variants.items():
        yield Contender(name, _handwritten(cell, **kwargs), "jax", "baseline variant",
                        variant=True)
    for impl in ("inside", "fused", "hoisted"):
        yield Contender(f"jaxlayers:{impl}", _jaxlayers(cell, impl), "jaxlayers",
                        f"implementation={impl!r}", variant=True)
    if cell == "gru":
        yield Contender("jaxlayers:reset_before", _jaxlayers(cell, reset_after=False),
                        "jaxlayers", "jl.GRU default (reset_after=False)", variant=True)
    yield Contender("pytorch", _torch(cell), "torch",
                    f"eager nn.{'LSTM' if cell == 'lstm' else 'GRU'}(batch_first=True)")


_TITLE = (f"input {FEATURES}, hidden {HIDDEN}, T={STEPS}, batch {BATCH}, last h -> Dense(10), "
          f"Adam({LEARNING_RATE:g}), softmax cross-entropy")
LSTM = Workload(name="lstm", title="LSTM " + _TITLE,
                contenders=tuple(_contenders("lstm", LSTM_VARIANTS, LSTM_BASELINE)),
                baseline="jax", reference="pytorch")
GRU = Workload(name="gru", title="GRU (reset_after) " + _TITLE,
               contenders=tuple(_contenders("gru", GRU_VARIANTS, GRU_BASELINE)),
               baseline="jax", reference="pytorch")
WORKLOAD = LSTM  # run.py names each one: "benchmarks.rnn:LSTM", "benchmarks.rnn:GRU"
