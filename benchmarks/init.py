"""Init and first-train-step time: jaxlayers against Flax linen (issue 13, item 4).

Models (same parameter counts, asserted): ResNet-50 (torchvision's v1.5, 25,557,032
params) and VGG-16 (138,357,544) on (2, 64, 64, 3) and (2, 32, 32, 3) images (init
does not depend on the image size; the train step's run time does), and the transformer
of benchmarks/transformer.py (2 pre-LN blocks, d_model 128, 4 heads, FFN 512, on
(8, 128, 128)).

Measures, each in a fresh Python process (XLA's and jax's caches start empty; imports and
model construction are not timed), median over `--repeats` runs in shuffled order:
  init        `model.init(key, spec)` on a concrete key, as a user calls it (op by op in
              both libraries; Flax: `module.init(key, x)`)
  init-raw    jaxlayers' init forced op by op everywhere (`jaxlayers._init_cache.raw_init()`);
              the same as init since only a traced init is batched
  jit-init    `jax.jit(init)(key)`: trace + lower + compile + run, split into those parts
              (jaxlayers: the cached, batched init of a traced key)
  jit-raw     the same over jaxlayers' raw path (what `jax.jit(init)` compiled before)
  step        the first train step (trace + compile + one Adam step, softmax
              cross-entropy), after an init that is not timed
Each is recorded in wall seconds and in CPU seconds of the process (all threads;
`time.process_time`), which other work on a loaded machine disturbs less.

`python benchmarks/init.py [--repeats 3] [--only resnet50] [--measure init]`.
Needs flax (`pip install jaxlayers[bench]`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("resnet50", "vgg16", "transformer")
MEASURES = ("init", "init-raw", "jit-init", "jit-raw", "step")
INPUTS = {"resnet50": (2, 64, 64, 3), "vgg16": (2, 32, 32, 3), "transformer": (8, 128, 128)}
CLASSES = {"resnet50": 1000, "vgg16": 1000, "transformer": 10}


# --------------------------------------------------------------------------- jaxlayers

def jaxlayers_model(name):
    import jaxlayers as jl

    if name == "transformer":
        from benchmarks.transformer import library_model
        return library_model()
    return {"resnet50": jl.models.resnet50, "vgg16": jl.models.vgg16}[name]()


# ------------------------------------------------------------------------- Flax linen

def flax_model(name):
    """The same architectures in Flax linen (written compactly here; counts asserted)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    class Bottleneck(nn.Module):
        filters: int
        strides: int
        project: bool

        @nn.compact
        def __call__(self, x, train):
            norm = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
            y = nn.relu(nn.BatchNorm(**norm)(nn.Conv(self.filters, (1, 1), use_bias=False)(x)))
            y = nn.Conv(self.filters, (3, 3), self.strides, padding=1, use_bias=False)(y)
            y = nn.relu(nn.BatchNorm(**norm)(y))
            y = nn.BatchNorm(**norm)(nn.Conv(4 * self.filters, (1, 1), use_bias=False)(y))
            if self.project:
                x = nn.Conv(4 * self.filters, (1, 1), self.strides, use_bias=False)(x)
                x = nn.BatchNorm(**norm)(x)
            return nn.relu(x + y)

    class ResNet50(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            norm = dict(use_running_average=not train, momentum=0.9, epsilon=1e-5)
            x = nn.Conv(64, (7, 7), 2, padding=3, use_bias=False)(x)
            x = nn.relu(nn.BatchNorm(**norm)(x))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
            for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
                for b in range(blocks):
                    x = Bottleneck(filters, 2 if b == 0 and stage > 0 else 1, b == 0)(x, train)
            return nn.Dense(1000)(jnp.mean(x, axis=(1, 2)))

    def adaptive_avg_pool(x, size):  # torchvision's bins: [floor(i H / s), ceil((i + 1) H / s))
        def bins(n):
            m = jnp.zeros((size, n))
            for i in range(size):
                lo, hi = (i * n) // size, -((-(i + 1) * n) // size)
                m = m.at[i, lo:hi].set(1.0 / (hi - lo))
            return m
        return jnp.einsum("ih,jw,nhwc->nijc", bins(x.shape[1]), bins(x.shape[2]), x)

    class VGG16(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            for filters, convs in zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)):
                for _ in range(convs):
                    x = nn.relu(nn.Conv(filters, (3, 3), padding=1)(x))
                x = nn.max_pool(x, (2, 2), (2, 2))
            x = adaptive_avg_pool(x, 7).reshape(x.shape[0], -1)
            for units in (4096, 4096):
                x = nn.Dropout(0.5, deterministic=not train)(nn.relu(nn.Dense(units)(x)))
            return nn.Dense(1000)(x)

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            y = nn.LayerNorm(epsilon=1e-5)(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=128)(y, y)
            y = nn.Dense(512)(nn.LayerNorm(epsilon=1e-5)(x))
            return x + nn.Dense(128)(jax.nn.gelu(y, approximate=False))

    class Transformer(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            for _ in range(2):
                x = Block()(x)
            return nn.Dense(10)(jnp.mean(nn.LayerNorm(epsilon=1e-5)(x), axis=1))

    return {"resnet50": ResNet50, "vgg16": VGG16, "transformer": Transformer}[name]()


# ------------------------------------------------------------------------ one process

def _timed(fn):
    """{"seconds": wall, "cpu": CPU seconds of this process, all threads} of fn()."""
    import jax

    start, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def _jit_parts(fn, *args):
    """trace, lower, compile and run seconds of jax.jit(fn)(*args), the total, and its CPU
    seconds (all threads)."""
    import jax

    t0, cpu = time.perf_counter(), time.process_time()
    traced = jax.jit(fn).trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    t4 = time.perf_counter()
    return {"seconds": t4 - t0, "cpu": time.process_time() - cpu, "trace": t1 - t0,
            "lower": t2 - t1, "compile": t3 - t2,
            "run": t4 - t3, "threefry": lowered.as_text().count("call @threefry2x32")}


def _step_jaxlayers(model, x, y):
    import jax
    import optax

    from benchmarks.mlp import _library_step
    optimizer = optax.adam(1e-3)
    step, _ = _library_step(model, optimizer)
    params, state = model.init(jax.random.key(0), x)
    opt_state = optimizer.init(params)
    jax.block_until_ready(params)
    return _timed(lambda: step(params, state, opt_state, x, y, jax.random.key(1)))


def _step_flax(module, x, y):
    import jax
    import optax

    variables = module.init(jax.random.key(0), x)
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, rest, opt_state, x, y, key):
        def loss(p):
            logits, new = module.apply({"params": p, **rest}, x, train=True,
                                       mutable=list(rest), rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
        (value, new), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new, opt_state, value

    jax.block_until_ready(params)
    return _timed(lambda: step(params, rest, opt_state, x, y, jax.random.key(1)))


def child(library: str, name: str, measure: str) -> dict:
    """One measurement in this (fresh) process."""
    import jax
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal(INPUTS[name], dtype=np.float32)
    y = rng.integers(0, CLASSES[name], INPUTS[name][0]).astype(np.int32)
    key = jax.random.key(0)
    if library == "jaxlayers":
        import jaxlayers as jl
        from jaxlayers._init_cache import raw_init

        model = jaxlayers_model(name)

        def init(k):
            return model.init(k, x.shape)

        def init_raw(k):
            with raw_init():
                return model.init(k, x.shape)

        # counted after timing: eval_shape traces the init, which would warm its cache
        def count():
            return jl.count_params(jax.eval_shape(init, key)[0])

        if measure == "step":
            return {**_step_jaxlayers(model, x, y), "params": count()}
        table = {"init": lambda: _timed(lambda: init(key)),
                 "init-raw": lambda: _timed(lambda: init_raw(key)),
                 "jit-init": lambda: _jit_parts(init, key),
                 "jit-raw": lambda: _jit_parts(init_raw, key)}
        return {**table[measure](), "params": count()}
    module = flax_model(name)
    if measure == "step":
        out = _step_flax(module, x, y)
    elif measure == "init":
        out = _timed(lambda: module.init(key, x))
    else:
        out = _jit_parts(lambda k: module.init(k, x), key)
    variables = jax.eval_shape(lambda k: module.init(k, x), key)
    return {**out, "params": sum(int(np.prod(p.shape)) for p in
                                 jax.tree.leaves(variables["params"]))}


# ------------------------------------------------------------------------------ driver

def _load() -> str:
    return "%.1f" % os.getloadavg()[0]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", action="append", choices=MODELS)
    parser.add_argument("--measure", action="append", choices=MEASURES)
    parser.add_argument("--json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return []
    try:
        import flax  # noqa: F401
    except ImportError:
        sys.exit("benchmarks/init.py compares against Flax linen, which is not installed: "
                 "pip install 'jaxlayers[bench]' (or pip install flax).")
    models, measures = args.only or MODELS, args.measure or MEASURES
    runs = [(lib, m, k) for m in models for k in measures for lib in ("jaxlayers", "flax")
            if lib == "jaxlayers" or k in ("init", "jit-init", "step")]
    results = {run: [] for run in runs}
    order = random.Random(0)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    print(f"load average before: {_load()}", flush=True)
    for repeat in range(args.repeats):
        order.shuffle(runs)
        for run in runs:
            out = subprocess.run([sys.executable, __file__, "--child", *run], env=env,
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["load"] = _load()
            results[run].append(row)
            print(f"  {repeat} {run[0]:9s} {run[1]:11s} {run[2]:8s} {row['seconds']:7.2f} s "
                  f"(CPU {row['cpu']:6.2f} s, load {row['load']})", flush=True)
    print(f"load average after: {_load()}\n")
    table = []
    print(f"{'model':11s} {'measure':8s} {'jaxlayers s':>11s} {'flax s':>8s} {'jl/flax':>7s}"
          f" {'CPU: jl s':>9s} {'flax s':>7s} {'ratio':>5s}  parts (jaxlayers; median)")
    for m in models:
        counts = {results[r][0]["params"] for r in results if r[1] == m}
        assert len(counts) == 1, f"{m}: parameter counts differ: {counts}"
        count = counts.pop()
        for k in measures:
            jl_rows = results[("jaxlayers", m, k)]
            med = statistics.median(r["seconds"] for r in jl_rows)
            fx_rows = results.get(("flax", m, k))
            fx = statistics.median(r["seconds"] for r in fx_rows) if fx_rows else None
            cpu = statistics.median(r["cpu"] for r in jl_rows)
            fx_cpu = statistics.median(r["cpu"] for r in fx_rows) if fx_rows else None
            parts = "  ".join(f"{p} {statistics.median(r[p] for r in jl_rows):.2f}"
                              for p in ("trace", "lower", "compile", "run", "threefry")
                              if p in jl_rows[0])
            if fx_rows and "compile" in fx_rows[0]:
                parts += "  | flax: " + "  ".join(
                    f"{p} {statistics.median(r[p] for r in fx_rows):.2f}"
                    for p in ("compile", "threefry"))
            print(f"{m:11s} {k:8s} {med:11.2f} " + (f"{fx:8.2f} {med / fx:7.2f}" if fx
                                                    else f"{'':8s} {'':7s}")
                  + f" {cpu:9.2f} " + (f"{fx_cpu:7.2f} {cpu / fx_cpu:5.2f}" if fx
                                       else f"{'':7s} {'':5s}") + f"  {parts}")
            table.append({"model": m, "measure": k, "jaxlayers": med, "flax": fx,
                          "jaxlayers_cpu": cpu, "flax_cpu": fx_cpu,
                          "params": count, "runs": jl_rows,
                          "flax_runs": fx_rows})
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
