"""Recurrent workloads: LSTM and GRU, input 32, hidden 128, T = 64, batch 64, last h ->
Dense(10), softmax cross-entropy, Adam(1e-3).

Contenders per workload:
  jaxlayers     jl.serial(jl.LSTM(128) | jl.GRU(128, reset_after=True), jl.Dense(10)) +
                jl.train.make_train_step; the layer's defaults for the backend (on CPU
                implementation="inside", derivative="custom")
  jax           hand-written lax.scan, the fastest form measured (VARIANTS; `run.py
                --variants` re-measures), differentiated by JAX: "inside" (x_t @ W + h @ U
                in the step), "fused" ([x_t, h] @ [W; U]), "hoisted" (x @ W for all steps
                before the scan), GRU "split" (h @ U_zr and h @ U_h as two matmuls); or by
                a hand-written JVP rule, "custom" (the fastest on this CPU, the baseline):
                weight tangents for all steps at once, a tangent scan carrying (dh, dc)
  pytorch       eager nn.LSTM / nn.GRU (batch_first) + nn.Linear, torch.optim.Adam defaults
  torch.compile the same step under torch.compile (not --quick); dynamo leaves the RNN
                eager and compiles the head, the loss and Adam

The GRU is the reset-after form (r multiplies h @ U_h + b_hh, PyTorch's and cuDNN's), so
all three compute the same function class.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import (Contender, Workload, jax_stepper, num_threads, paired_rounds,
                               torch_stepper)
from benchmarks.mlp import _library_step

BATCH, STEPS, FEATURES, HIDDEN, CLASSES = 64, 64, 32, 128, 10
LEARNING_RATE = 1e-3


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, STEPS, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- jaxlayers

def _jaxlayers(cell, implementation=None, reset_after=True, derivative=None, unroll=None):
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        import jaxlayers as jl

        if cell == "lstm":
            rnn = jl.LSTM(HIDDEN, implementation=implementation, derivative=derivative,
                          unroll=unroll)
        else:
            rnn = jl.GRU(HIDDEN, reset_after=reset_after, implementation=implementation,
                         derivative=derivative, unroll=unroll)
        model = jl.serial(rnn, jl.Dense(CLASSES))
        optimizer = optax.adam(LEARNING_RATE)
        step, _ = _library_step(model, optimizer)
        params, state = model.init(jax.random.key(0), (BATCH, STEPS, FEATURES))
        x, y = (jnp.asarray(a) for a in _data())
        return jax_stepper(step, (params, state, optimizer.init(params)),
                           (x, y, jax.random.key(1)))

    return setup


# ------------------------------------------------------------------ hand-written JAX

def _handwritten(cell, form="inside", donate=True, unroll=1):
    """form: "inside" (x_t @ W + h @ U in the step), "fused" (LSTM only: one
    [x_t, h] @ [W; U] matmul), "hoisted" (x @ W for every step before the scan).
    GRU: "inside" computes h @ U for all three gates in one (H, 3H) matmul (possible
    with reset-after); "split" as two, h @ U_zr and h @ U_h (U sliced outside the scan).
    "custom" / "custom-split": `_custom_lstm` / `_custom_gru` (inside-the-step forward,
    hand-written JVP rule); unroll: their tangent scan's."""
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
            if form.startswith("custom"):
                rnn = _custom_lstm if cell == "lstm" else _custom_gru
                return rnn(W, U, b, xs, form == "custom-split", unroll) @ Wo + bo
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


def _custom_lstm(W, U, b, xs, split_prev, unroll=1):
    """Final h of an LSTM over xs (T, N, D), differentiated by a hand-written JVP rule:
    the primal scan stores the gate-derivative coefficients; the weight tangents
    x_t dW + h_{t-1} dU + db are computed for all steps at once; the tangent scan carries
    (dh, dc) only. Reverse mode is JAX's transpose of the rule (weight gradients as single
    matmuls over T*N rows). split_prev: h_{t-1} dU as h_0 dU and hs[:-1] dU instead of
    concatenating [h_0, hs[:-1]] first. unroll: the tangent scan's `lax.scan` unroll."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    H = U.shape[0]
    t, n, d = xs.shape
    h0 = jnp.zeros((n, H), xs.dtype)

    def scan(W, U, b, xs, residuals):
        def step(carry, x_t):
            h, c = carry
            i, f, g, o = jnp.split(x_t @ W + h @ U + b, 4, axis=-1)
            si, sf, tg, so = (jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g),
                              jax.nn.sigmoid(o))
            c_new = sf * c + si * tg
            tc = jnp.tanh(c_new)
            h = so * tc
            if not residuals:
                return (h, c_new), None
            k = jnp.concatenate([si * (1 - si) * tg, sf * (1 - sf) * c, si * (1 - tg * tg),
                                 so * (1 - so) * tc], axis=-1)
            return (h, c_new), (k, sf, so * (1 - tc * tc), h)
        return lax.scan(step, (h0, h0), xs)

    @jax.custom_jvp
    def last_h(W, U, b, xs):
        return scan(W, U, b, xs, False)[0][0]

    @last_h.defjvp
    def last_h_jvp(primals, tangents):
        W, U, b, xs = primals
        dW, dU, db, _ = tangents  # xs is data
        (h, _), (k, sf, kc, hs) = scan(W, U, b, xs, True)
        a = (xs.reshape(t * n, d) @ dW + db).reshape(t, n, -1)
        if split_prev:
            hu = (hs[:-1].reshape((t - 1) * n, H) @ dU).reshape(t - 1, n, -1)
            a = a + jnp.concatenate([(h0 @ dU)[None], hu], axis=0)
        else:
            h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
            a = a + (h_prev.reshape(t * n, H) @ dU).reshape(t, n, -1)

        def tangent(carry, inputs):
            dh, dc = carry
            a_t, k_t, sf_t, kc_t = inputs
            di, df, dg, do = jnp.split((a_t + dh @ U) * k_t, 4, axis=-1)
            dc = di + df + dg + sf_t * dc
            return (do + kc_t * dc, dc), None

        (dh, _), _ = lax.scan(tangent, (h0, h0), (a, k, sf, kc), unroll=unroll)
        return h, dh

    return last_h(W, U, b, xs)


def _custom_gru(W, U, b, xs, split_prev, unroll=1):
    """As `_custom_lstm`, for the reset-after GRU of `_handwritten` (b: (2, 3H), input row
    and recurrent row). Tangent of one step, with q = z * tanh'(.):
      dh' = (1-z) dh + [(h~ - h) z', q hu r'] . d(zr preact) + [q, q r] . [d(xW_h + b_h),
            d(h U_h + b'_h)]."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    H = U.shape[0]
    t, n, d = xs.shape
    h0 = jnp.zeros((n, H), xs.dtype)

    def scan(W, U, b, xs, residuals):
        U_zr, U_h = U[:, :2 * H], U[:, 2 * H:]

        def step(h, x_t):
            xw = x_t @ W + b[0]
            zr = jax.nn.sigmoid(xw[:, :2 * H] + h @ U_zr + b[1, :2 * H])
            z, r = zr[:, :H], zr[:, H:]
            hu = h @ U_h + b[1, 2 * H:]
            cand = jnp.tanh(xw[:, 2 * H:] + r * hu)
            h_new = (1 - z) * h + z * cand
            if not residuals:
                return h_new, None
            q = z * (1 - cand * cand)
            k = jnp.concatenate([(cand - h) * z * (1 - z), q * hu * r * (1 - r)], axis=-1)
            return h_new, (k, jnp.concatenate([q, q * r], axis=-1), 1 - z, h_new)
        return lax.scan(step, h0, xs)

    @jax.custom_jvp
    def last_h(W, U, b, xs):
        return scan(W, U, b, xs, False)[0]

    @last_h.defjvp
    def last_h_jvp(primals, tangents):
        W, U, b, xs = primals
        dW, dU, db, _ = tangents
        h, (k, qq, oz, hs) = scan(W, U, b, xs, True)
        U_zr, U_h = U[:, :2 * H], U[:, 2 * H:]
        x2 = xs.reshape(t * n, d)
        if split_prev:
            def h_prev_at(dV):
                hu = (hs[:-1].reshape((t - 1) * n, H) @ dV).reshape(t - 1, n, -1)
                return jnp.concatenate([(h0 @ dV)[None], hu], axis=0)
        else:
            h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0).reshape(t * n, H)

            def h_prev_at(dV):
                return (h_prev @ dV).reshape(t, n, -1)
        a_zr = (x2 @ dW[:, :2 * H] + db[0, :2 * H] + db[1, :2 * H]).reshape(t, n, -1)
        a_zr = a_zr + h_prev_at(dU[:, :2 * H])
        a_h = (x2 @ dW[:, 2 * H:] + db[0, 2 * H:]).reshape(t, n, -1)
        a_hu = h_prev_at(dU[:, 2 * H:]) + jnp.broadcast_to(db[1, 2 * H:], (t, n, H))

        def tangent(dh, inputs):
            a_zr_t, a_h_t, a_hu_t, k_t, qq_t, oz_t = inputs
            s_z, s_r = jnp.split((a_zr_t + dh @ U_zr) * k_t, 2, axis=-1)
            t_x, t_h = jnp.split(jnp.concatenate([a_h_t, a_hu_t + dh @ U_h], axis=-1) * qq_t,
                                 2, axis=-1)
            return oz_t * dh + s_z + s_r + t_x + t_h, None

        dh, _ = lax.scan(tangent, h0, (a_zr, a_h, a_hu, k, qq, oz), unroll=unroll)
        return h, dh

    return last_h(W, U, b, xs)


LSTM_VARIANTS = {"jax:inside": dict(form="inside"), "jax:fused": dict(form="fused"),
                 "jax:hoisted": dict(form="hoisted"), "jax:custom": dict(form="custom"),
                 "jax:custom-split": dict(form="custom-split"),
                 "jax:custom-unroll4": dict(form="custom", unroll=4),
                 "jax:custom-unroll8": dict(form="custom", unroll=8)}
GRU_VARIANTS = {"jax:inside": dict(form="inside"), "jax:split": dict(form="split"),
                "jax:split-jnp": dict(form="split-jnp"), "jax:hoisted": dict(form="hoisted"),
                "jax:custom": dict(form="custom"), "jax:custom-split": dict(form="custom-split"),
                "jax:custom-unroll4": dict(form="custom", unroll=4),
                "jax:custom-unroll8": dict(form="custom", unroll=8)}
# The fastest measured on this machine (README, "lstm" / "gru" sections).
LSTM_BASELINE = "jax:custom-unroll8"
GRU_BASELINE = "jax:custom"


# ------------------------------------------------------------------------- PyTorch

def _torch(cell, compiled=False):
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

        return torch_stepper(step, compiled)

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
        for derivative in ("autodiff", "custom"):
            yield Contender(f"jaxlayers:{impl}+{derivative}",
                            _jaxlayers(cell, impl, derivative=derivative), "jaxlayers",
                            f"implementation={impl!r}, derivative={derivative!r}",
                            variant=True)
    for unroll in (1, 8):
        yield Contender(f"jaxlayers:unroll={unroll}", _jaxlayers(cell, unroll=unroll),
                        "jaxlayers", f"unroll={unroll} (both scans; default None: tangent "
                        f"scan {8 if cell == 'lstm' else 1}, primal 1)", variant=True)
    if cell == "gru":
        for derivative in ("autodiff", "custom"):
            yield Contender(f"jaxlayers:reset_before+{derivative}",
                            _jaxlayers(cell, reset_after=False, derivative=derivative),
                            "jaxlayers", f"jl.GRU default (reset_after=False), "
                            f"derivative={derivative!r}", variant=True)
    yield Contender("pytorch", _torch(cell), "torch",
                    f"eager nn.{'LSTM' if cell == 'lstm' else 'GRU'}(batch_first=True)")
    yield Contender("torch.compile", _torch(cell, compiled=True), "torch",
                    "torch.compile of the whole step (the RNN itself stays eager: "
                    "dynamo's allow_rnn is off by default)", slow=True)


_TITLE = (f"input {FEATURES}, hidden {HIDDEN}, T={STEPS}, batch {BATCH}, last h -> Dense(10), "
          f"Adam({LEARNING_RATE:g}), softmax cross-entropy")
LSTM = Workload(name="lstm", title="LSTM " + _TITLE,
                contenders=tuple(_contenders("lstm", LSTM_VARIANTS, LSTM_BASELINE)),
                baseline="jax", reference="pytorch")
GRU = Workload(name="gru", title="GRU (reset_after) " + _TITLE,
               contenders=tuple(_contenders("gru", GRU_VARIANTS, GRU_BASELINE)),
               baseline="jax", reference="pytorch")
WORKLOAD = LSTM  # run.py names each one: "benchmarks.rnn:LSTM", "benchmarks.rnn:GRU"


# ------------------------------------------------------- levers (issue 13), any T

def lever_step(cell, steps, *, implementation=None, unroll=None, tangent_unroll=None,
               tangent_full_unroll=None):
    """A jaxlayers train step (the workload's model, T = steps) with the cell's private
    unroll choices overridden: tangent_unroll (the tangent scan's unroll when unroll is
    None) and tangent_full_unroll (unroll=None and T <= this: the tangent scan unrolled
    completely); unroll=True unrolls both scans completely. Returns step() as the
    workloads' setup() does."""
    import jax
    import jax.numpy as jnp
    import optax

    import jaxlayers as jl
    from jaxlayers.layers.cells import _gru_kind, _lstm_kind
    from jaxlayers.layers.recurrent import _layer

    kind = (_lstm_kind("LSTM", HIDDEN) if cell == "lstm"
            else _gru_kind("GRU", HIDDEN, reset_after=True))
    if tangent_unroll is not None:
        kind = kind._replace(tangent_unroll=tangent_unroll)
    if tangent_full_unroll is not None:
        kind = kind._replace(tangent_full_unroll=tangent_full_unroll)
    rnn = _layer(kind, return_sequences=False, return_state=False, go_backwards=False,
                 unroll=unroll, dropout=0.0, recurrent_dropout=0.0,
                 implementation=implementation, derivative=None, dtype=None)
    model = jl.serial(rnn, jl.Dense(CLASSES))
    optimizer = optax.adam(LEARNING_RATE)
    step, _ = _library_step(model, optimizer)
    params, state = model.init(jax.random.key(0), (BATCH, steps, FEATURES))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((BATCH, steps, FEATURES), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, CLASSES, BATCH).astype(np.int32))
    return jax_stepper(step, (params, state, optimizer.init(params)),
                       (x, y, jax.random.key(1)))


def levers(cell, steps, specs, rounds=30, block=5, log=print):
    """Interleaved rounds of `lever_step`s; specs {name: kwargs}, the first the reference.
    Logs the first-call seconds, the load average, each median and the paired per-round
    ratio to the first with a bootstrap 95% interval (add a copy of the first for A/A)."""
    import time

    runs = {}
    for name, kw in specs.items():
        runs[name] = lever_step(cell, steps, **kw)
        t0 = time.perf_counter()
        runs[name]()
        log(f"  {name}: first call {time.perf_counter() - t0:.2f} s")
        for _ in range(5):
            runs[name]()
    return paired_rounds(runs, next(iter(runs)), rounds=rounds, block=block, log=log)


if __name__ == "__main__":
    # python benchmarks/rnn.py lstm 32 [rounds]: the unroll levers of the issue-13 section
    import sys

    _cell, _steps = sys.argv[1], int(sys.argv[2])
    _rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    print(f"{_cell} T={_steps}")
    levers(_cell, _steps, {
        "before (tangent unroll 8)": dict(tangent_full_unroll=0),
        "A/A copy": dict(tangent_full_unroll=0),
        "default (tangent scan complete when T <= 32)": dict(),
        "both scans complete (unroll=True)": dict(unroll=True),
        "tangent unroll 4": dict(tangent_full_unroll=0, tangent_unroll=4),
        "tangent unroll 16": dict(tangent_full_unroll=0, tangent_unroll=16),
        "implementation='fused'": dict(implementation="fused"),
    }, rounds=_rounds)
