"""Transformer workload: a 2-block pre-LN encoder (d_model 128, 4 heads, FFN 512, exact
GELU, no dropout) on x (32, 128, 128), mean-pooled over time -> Dense(10), softmax
cross-entropy, Adam(1e-3).

Contenders:
  jaxlayers        jl.serial(jl.TransformerEncoder(2, 4, 512, activation="gelu",
                   norm_first=True, epsilon=1e-5), jl.GlobalAvgPool1D(), jl.Dense(10)) +
                   jl.train.make_train_step (the CPU default: the heads-first softmax form)
  jaxlayers:scan   the same with TransformerEncoder(scan=True) (`jl.repeat`, `lax.scan`)
  jax              hand-written, the heads-first form (DESIGN.md §5): q, k, v as one 2-D
                   matmul each, reshaped to (N, H, T, d); softmax(q kᵀ / √d) v; params a
                   plain dict; donated (the baseline)
  jax:einsum       the same attention written with jnp.einsum over (N, T, H, d) (variant)
  jax:dpa          jax.nn.dot_product_attention for the attention core (variant)
  pytorch          nn.TransformerEncoder(nn.TransformerEncoderLayer(128, 4, 512,
                   dropout=0, activation="gelu", batch_first=True, norm_first=True), 2,
                   norm=nn.LayerNorm(128)) + mean + nn.Linear, torch.optim.Adam defaults
  torch.compile    the same step under torch.compile (inductor; not --quick)

All compute the same function class; tests/test_benchmarks.py checks that the hand-written
forward equals the library's on the same weights.

`python benchmarks/transformer.py --compile` prints the compile-time table instead: the
first train step (trace + compile) of 2, 8 and 32 blocks, unrolled vs `scan=True`.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (Contender, Workload, jax_stepper, num_threads,  # noqa: E402
                               torch_stepper)
from benchmarks.mlp import _library_step  # noqa: E402

BATCH, STEPS, D_MODEL, HEADS, FFN, BLOCKS, CLASSES = 32, 128, 128, 4, 512, 2, 10
EPSILON, LEARNING_RATE = 1e-5, 1e-3


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, STEPS, D_MODEL), dtype=np.float32)
    y = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- jaxlayers

def library_model(blocks=BLOCKS, scan=False):
    import jaxlayers as jl

    return jl.serial(jl.TransformerEncoder(blocks, HEADS, FFN, activation="gelu",
                                           norm_first=True, epsilon=EPSILON, scan=scan),
                     jl.GlobalAvgPool1D(), jl.Dense(CLASSES))


def _jaxlayers(scan=False):
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        model = library_model(scan=scan)
        optimizer = optax.adam(LEARNING_RATE)
        step, _ = _library_step(model, optimizer)
        params, state = model.init(jax.random.key(0), (BATCH, STEPS, D_MODEL))
        x, y = (jnp.asarray(a) for a in _data())
        return jax_stepper(step, (params, state, optimizer.init(params)),
                           (x, y, jax.random.key(1)))

    return setup


# ------------------------------------------------------------------ hand-written JAX

def init_params(key, blocks=BLOCKS):
    """Plain-dict params of the hand-written model: per block the fused (E, H*d) kernels."""
    import jax
    import jax.numpy as jnp

    def dense(k, n_in, n_out):
        lim = np.sqrt(6.0 / (n_in + n_out))
        return {"w": jax.random.uniform(k, (n_in, n_out), minval=-lim, maxval=lim),
                "b": jnp.zeros((n_out,))}

    def norm():
        return {"g": jnp.ones((D_MODEL,)), "b": jnp.zeros((D_MODEL,))}

    params = {"blocks": [], "norm": norm()}
    for i in range(blocks):
        ks = jax.random.split(jax.random.fold_in(key, i), 6)
        params["blocks"].append({
            "q": dense(ks[0], D_MODEL, D_MODEL), "k": dense(ks[1], D_MODEL, D_MODEL),
            "v": dense(ks[2], D_MODEL, D_MODEL), "o": dense(ks[3], D_MODEL, D_MODEL),
            "ln1": norm(), "ln2": norm(),
            "ff1": dense(ks[4], D_MODEL, FFN), "ff2": dense(ks[5], FFN, D_MODEL)})
    params["head"] = dense(jax.random.fold_in(key, 99), D_MODEL, CLASSES)
    return params


def forward(p, x, form="heads-first"):
    """The hand-written pre-LN encoder -> mean -> Dense logits (N, CLASSES)."""
    import jax
    import jax.numpy as jnp

    n, t, e = x.shape
    h, d = HEADS, D_MODEL // HEADS

    def layer_norm(z, q):
        mu = jnp.mean(z, -1, keepdims=True)
        var = jnp.mean(jnp.square(z - mu), -1, keepdims=True)
        return (z - mu) * jax.lax.rsqrt(var + EPSILON) * q["g"] + q["b"]

    def attention(z, b):
        flat = z.reshape(n * t, e)
        q, k, v = (flat @ b[w]["w"] + b[w]["b"] for w in "qkv")
        if form == "heads-first":
            q, k, v = (a.reshape(n, t, h, d).transpose(0, 2, 1, 3) for a in (q, k, v))
            w = jax.nn.softmax((q @ k.transpose(0, 1, 3, 2)) / np.sqrt(d), axis=-1)
            ctx = (w @ v).transpose(0, 2, 1, 3)                     # (N, T, H, d)
        elif form == "einsum":
            q, k, v = (a.reshape(n, t, h, d) for a in (q, k, v))
            w = jax.nn.softmax(jnp.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(d), axis=-1)
            ctx = jnp.einsum("nhqk,nkhd->nqhd", w, v)
        else:  # "dpa"
            q, k, v = (a.reshape(n, t, h, d) for a in (q, k, v))
            ctx = jax.nn.dot_product_attention(q, k, v)
        return (ctx.reshape(n * t, e) @ b["o"]["w"] + b["o"]["b"]).reshape(n, t, e)

    def ffn(z, b):
        hid = jax.nn.gelu(z.reshape(n * t, e) @ b["ff1"]["w"] + b["ff1"]["b"],
                          approximate=False)
        return (hid @ b["ff2"]["w"] + b["ff2"]["b"]).reshape(n, t, e)

    for b in p["blocks"]:
        x = x + attention(layer_norm(x, b["ln1"]), b)
        x = x + ffn(layer_norm(x, b["ln2"]), b)
    pooled = jnp.mean(layer_norm(x, p["norm"]), axis=1)
    return pooled @ p["head"]["w"] + p["head"]["b"]


def _handwritten(form="heads-first", donate=True):
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        def objective(p, x, y):
            logits = forward(p, x, form)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        optimizer = optax.adam(LEARNING_RATE)

        def train_step(p, o, x, y):
            value, grads = jax.value_and_grad(objective)(p, x, y)
            updates, o = optimizer.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value

        fn = jax.jit(train_step, donate_argnums=(0, 1) if donate else ())
        params = init_params(jax.random.key(0))
        x, y = (jnp.asarray(a) for a in _data())
        return jax_stepper(fn, (params, optimizer.init(params)), (x, y))

    return setup


# ----------------------------------------------------------------------------- PyTorch

def setup_torch(autocast=None, compiled=False):
    """PyTorch's step; autocast (e.g. torch.bfloat16) runs the forward under
    torch.autocast("cpu", dtype=autocast), the loss in float32 (benchmarks/precision.py);
    compiled runs the whole step under torch.compile."""
    import contextlib

    import torch
    from torch import nn

    torch.set_num_threads(num_threads())
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FFN, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True,
                                       layer_norm_eps=EPSILON)
    encoder = nn.TransformerEncoder(layer, BLOCKS, norm=nn.LayerNorm(D_MODEL, eps=EPSILON),
                                    enable_nested_tensor=False)
    head = nn.Linear(D_MODEL, CLASSES)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=LEARNING_RATE)
    x, y = (torch.from_numpy(a) for a in _data())
    y = y.long()
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with (torch.autocast("cpu", dtype=autocast) if autocast is not None
              else contextlib.nullcontext()):
            logits = head(encoder(x).mean(dim=1))
        loss = loss_fn(logits.float(), y)
        loss.backward()
        optimizer.step()
        return loss

    return torch_stepper(step, compiled)


WORKLOAD = Workload(
    name="transformer",
    title=(f"{BLOCKS}-block pre-LN transformer encoder, d_model {D_MODEL}, {HEADS} heads, "
           f"FFN {FFN} (exact GELU), x ({BATCH}, {STEPS}, {D_MODEL}), mean -> Dense(10), "
           f"Adam"),
    contenders=(
        Contender("jaxlayers", _jaxlayers(), "jaxlayers",
                  "jl.TransformerEncoder(norm_first=True) + jl.train.make_train_step"),
        Contender("jaxlayers:scan", _jaxlayers(scan=True), "jaxlayers",
                  "TransformerEncoder(scan=True): blocks under lax.scan"),
        Contender("jax", _handwritten(), "jax",
                  "hand-written heads-first softmax attention, donated"),
        Contender("jax:einsum", _handwritten("einsum"), "jax",
                  "attention as jnp.einsum over (N, T, H, d)", variant=True),
        Contender("jax:dpa", _handwritten("dpa"), "jax",
                  "jax.nn.dot_product_attention core", variant=True),
        Contender("jax:no-donate", _handwritten(donate=False), "jax",
                  "heads-first, no donation", variant=True),
        Contender("pytorch", setup_torch, "torch",
                  "eager nn.TransformerEncoder(norm_first=True), torch.optim.Adam"),
        Contender("torch.compile", functools.partial(setup_torch, compiled=True), "torch",
                  "torch.compile of the whole step (inductor, C++)", slow=True),
    ),
    baseline="jax",
    reference="pytorch",
    notes=("no dropout; LayerNorm eps 1e-5 everywhere",),
)


# ----------------------------------------------------------------------- compile times

def compile_seconds(blocks: int, scan: bool) -> float:
    """Seconds to trace and compile the library's train step for `blocks` blocks."""
    import jax
    import jax.numpy as jnp
    import optax

    model = library_model(blocks, scan)
    optimizer = optax.adam(LEARNING_RATE)
    step, _ = _library_step(model, optimizer)
    params, state = jax.eval_shape(model.init, jax.random.key(0),
                                   jax.ShapeDtypeStruct((BATCH, STEPS, D_MODEL), jnp.float32))
    opt_state = jax.eval_shape(optimizer.init, params)
    x = jax.ShapeDtypeStruct((BATCH, STEPS, D_MODEL), jnp.float32)
    y = jax.ShapeDtypeStruct((BATCH,), jnp.int32)
    t0 = time.perf_counter()
    step.lower(params, state, opt_state, x, y, jax.random.key(1)).compile()
    return time.perf_counter() - t0


def compile_table(depths=(2, 8, 32)) -> list[dict]:
    rows = []
    for blocks in depths:
        row = {"blocks": blocks}
        for scan in (False, True):
            row["scan" if scan else "unrolled"] = compile_seconds(blocks, scan)
        rows.append(row)
        print(f"{blocks:>3} blocks: unrolled {row['unrolled']:6.2f} s, "
              f"scan=True {row['scan']:6.2f} s", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description="transformer compile-time table "
                                     "(train steps: python benchmarks/run.py --only transformer)")
    parser.add_argument("--compile", action="store_true", help="print the compile-time table")
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 8, 32])
    args = parser.parse_args(argv)
    if not args.compile:
        parser.error("nothing to do: pass --compile (train steps are timed by run.py)")
    return compile_table(tuple(args.depths))


if __name__ == "__main__":
    main()
