"""Mixed precision and memory (issue 12): bfloat16 against float32 train steps, and the
memory of a 24-block encoder's train step with and without remat.

Workload `precision` (run.py --only precision): benchmarks/transformer.py's 2-block
pre-LN encoder (d_model 128, 4 heads, FFN 512, exact GELU) on x (32, 128, 128), mean over
time -> Dense(10), softmax cross-entropy, Adam(1e-3), float32 params and optimizer state.

Contenders:
  jaxlayers        jl.mixed_precision(model, jl.Policy(compute="bfloat16")) +
                   jl.train.make_train_step
  jaxlayers:f32    the same model in float32 (the transformer workload's jaxlayers)
  jax              hand-written bfloat16 (the baseline): params and x cast to bfloat16 in
                   the step, matmuls in bfloat16, LayerNorm statistics and softmax in
                   float32 (the library's numerics), float32 logits
  jax:f32          benchmarks/transformer.py's hand-written float32 step
  pytorch          torch.autocast("cpu", dtype=torch.bfloat16) around the forward
  pytorch:f32      benchmarks/transformer.py's eager PyTorch step

    python benchmarks/precision.py              # both: the timing table and bf16/f32 ratios,
                                                # then the memory table
    python benchmarks/precision.py --memory     # the memory table only (no timing)
    python benchmarks/precision.py --rounds 30 --block 5

The memory table compiles (does not run) the train step of a 24-block encoder of the same
width, unrolled, under `scan=True`, and under `scan=True, remat=True`, in float32 and
with the bfloat16 policy, and reads XLA's `compiled.memory_analysis()`: temporaries,
arguments (params, state, optimizer state, batch) and outputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import transformer as tf  # noqa: E402
from benchmarks.common import Contender, Workload, jax_stepper  # noqa: E402
from benchmarks.mlp import _library_step  # noqa: E402

MEMORY_BLOCKS = 24


def _policy(compute):
    import jaxlayers as jl

    return jl.Policy(params="float32", compute=compute, output="float32")


def library_model(compute="bfloat16", blocks=tf.BLOCKS, scan=False, remat=False):
    import jaxlayers as jl

    model = jl.serial(jl.TransformerEncoder(blocks, tf.HEADS, tf.FFN, activation="gelu",
                                            norm_first=True, epsilon=tf.EPSILON, scan=scan,
                                            remat=remat),
                      jl.GlobalAvgPool1D(), jl.Dense(tf.CLASSES))
    return model if compute == "float32" else jl.mixed_precision(model, _policy(compute))


def _jaxlayers(compute):
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        model = library_model(compute)
        optimizer = optax.adam(tf.LEARNING_RATE)
        step, _ = _library_step(model, optimizer)
        params, state = model.init(jax.random.key(0), (tf.BATCH, tf.STEPS, tf.D_MODEL))
        x, y = (jnp.asarray(a) for a in tf._data())
        return jax_stepper(step, (params, state, optimizer.init(params)),
                           (x, y, jax.random.key(1)))

    return setup


# ------------------------------------------------------------------ hand-written JAX

def forward_bf16(p, x):
    """transformer.forward in bfloat16 with the library's numerics: params and x cast to
    bfloat16, matmuls and GELU in bfloat16, LayerNorm statistics and the softmax in
    float32 (cast back to bfloat16 after), mean pooling in float32, float32 logits."""
    import jax
    import jax.numpy as jnp

    bf16, f32 = jnp.bfloat16, jnp.float32
    p = jax.tree.map(lambda a: a.astype(bf16), p)
    x = x.astype(bf16)
    n, t, e = x.shape
    h, d = tf.HEADS, tf.D_MODEL // tf.HEADS

    def layer_norm(z, q):
        zf = z.astype(f32)
        mu = jnp.mean(zf, -1, keepdims=True)
        var = jnp.mean(jnp.square(zf - mu), -1, keepdims=True)
        zhat = (zf - mu) * jax.lax.rsqrt(var + tf.EPSILON)
        return (zhat * q["g"].astype(f32) + q["b"].astype(f32)).astype(bf16)

    def attention(z, b):
        flat = z.reshape(n * t, e)
        q, k, v = (flat @ b[w]["w"] + b[w]["b"] for w in "qkv")
        q, k, v = (a.reshape(n, t, h, d).transpose(0, 2, 1, 3) for a in (q, k, v))
        scores = (q / jnp.asarray(np.sqrt(d), bf16)) @ k.transpose(0, 1, 3, 2)
        w = jax.nn.softmax(scores.astype(f32), axis=-1).astype(bf16)
        ctx = (w @ v).transpose(0, 2, 1, 3)
        return (ctx.reshape(n * t, e) @ b["o"]["w"] + b["o"]["b"]).reshape(n, t, e)

    def ffn(z, b):
        hid = jax.nn.gelu(z.reshape(n * t, e) @ b["ff1"]["w"] + b["ff1"]["b"],
                          approximate=False)
        return (hid @ b["ff2"]["w"] + b["ff2"]["b"]).reshape(n, t, e)

    for b in p["blocks"]:
        x = x + attention(layer_norm(x, b["ln1"]), b)
        x = x + ffn(layer_norm(x, b["ln2"]), b)
    pooled = jnp.mean(layer_norm(x, p["norm"]).astype(f32), axis=1).astype(bf16)
    return (pooled @ p["head"]["w"] + p["head"]["b"]).astype(f32)


def hand_params(params) -> dict:
    """The library model's params (`library_model`) as the hand-written dict of
    transformer.init_params: per block the fused (E, H*d) q/k/v/o kernels."""
    enc, _, head = params
    e = tf.D_MODEL

    def fused(p):  # (E, H, d) kernel, (H, d) bias -> (E, H*d), (H*d,)
        return {"w": p["kernel"].reshape(e, -1), "b": p["bias"].reshape(-1)}

    blocks = []
    for i in range(len(enc["blocks"])):
        b = enc["blocks"][str(i)]
        a = b["self_attention"]
        blocks.append({
            "q": fused(a["query"]), "k": fused(a["key"]), "v": fused(a["value"]),
            "o": {"w": a["output"]["kernel"].reshape(e, e), "b": a["output"]["bias"]},
            "ln1": {"g": b["norm1"]["gamma"], "b": b["norm1"]["beta"]},
            "ln2": {"g": b["norm2"]["gamma"], "b": b["norm2"]["beta"]},
            "ff1": {"w": b["ffn"]["hidden"]["kernel"], "b": b["ffn"]["hidden"]["bias"]},
            "ff2": {"w": b["ffn"]["output"]["kernel"], "b": b["ffn"]["output"]["bias"]}})
    return {"blocks": blocks, "norm": {"g": enc["norm"]["gamma"], "b": enc["norm"]["beta"]},
            "head": {"w": head["kernel"], "b": head["bias"]}}


def _handwritten_bf16(donate=True):
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        def objective(p, x, y):
            logits = forward_bf16(p, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        optimizer = optax.adam(tf.LEARNING_RATE)

        def train_step(p, o, x, y):
            value, grads = jax.value_and_grad(objective)(p, x, y)
            updates, o = optimizer.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value

        fn = jax.jit(train_step, donate_argnums=(0, 1) if donate else ())
        params = tf.init_params(jax.random.key(0))
        x, y = (jnp.asarray(a) for a in tf._data())
        return jax_stepper(fn, (params, optimizer.init(params)), (x, y))

    return setup


# ----------------------------------------------------------------------------- PyTorch

def setup_torch_bf16():
    """The transformer workload's PyTorch step under torch.autocast(bfloat16)."""
    import torch

    return tf.setup_torch(autocast=torch.bfloat16)


WORKLOAD = Workload(
    name="precision",
    title=(f"bfloat16 vs float32: the {tf.BLOCKS}-block pre-LN encoder of the transformer "
           f"workload (d_model {tf.D_MODEL}, {tf.HEADS} heads, FFN {tf.FFN}), x ({tf.BATCH}, "
           f"{tf.STEPS}, {tf.D_MODEL}), mean -> Dense(10), Adam; float32 params"),
    contenders=(
        Contender("jaxlayers", _jaxlayers("bfloat16"), "jaxlayers",
                  'jl.mixed_precision(model, jl.Policy(compute="bfloat16"))'),
        Contender("jaxlayers:f32", _jaxlayers("float32"), "jaxlayers", "the model in float32"),
        Contender("jax", _handwritten_bf16(), "jax",
                  "hand-written bfloat16 (float32 statistics), donated"),
        Contender("jax:f32", tf._handwritten(), "jax", "hand-written float32, donated"),
        Contender("pytorch", setup_torch_bf16, "torch",
                  "eager, torch.autocast('cpu', dtype=torch.bfloat16)"),
        Contender("pytorch:f32", tf.setup_torch, "torch", "eager float32"),
    ),
    baseline="jax",
    reference="pytorch",
    notes=("ratios bf16 / f32 are printed by benchmarks/precision.py",),
)

PAIRS = (("jaxlayers", "jaxlayers:f32"), ("jax", "jax:f32"), ("pytorch", "pytorch:f32"))


def precision_ratios(result: dict) -> dict:
    """bf16 / f32 for each implementation: the ratio of medians, and the median of the
    per-round ratios (the rounds interleave every contender, so load hits both alike)."""
    rows, rounds = result["rows"], result["block_medians_ms"]
    out = {}
    for bf16, f32 in PAIRS:
        if bf16 in rows and f32 in rows:
            paired = [a / b for a, b in zip(rounds[bf16], rounds[f32])]
            out[bf16] = {"medians": rows[bf16]["median_ms"] / rows[f32]["median_ms"],
                         "paired": statistics.median(paired),
                         "q25": float(np.percentile(paired, 25)),
                         "q75": float(np.percentile(paired, 75))}
    return out


# ------------------------------------------------------------------------------ memory

def step_memory(compute="float32", blocks=MEMORY_BLOCKS, scan=True, remat=False) -> dict:
    """XLA's memory analysis of the compiled train step (nothing is allocated or run)."""
    import time

    import jax
    import jax.numpy as jnp
    import optax

    model = library_model(compute, blocks, scan, remat)
    optimizer = optax.adam(tf.LEARNING_RATE)
    step, _ = _library_step(model, optimizer)
    x = jax.ShapeDtypeStruct((tf.BATCH, tf.STEPS, tf.D_MODEL), jnp.float32)
    params, state = jax.eval_shape(model.init, jax.random.key(0), x)
    opt_state = jax.eval_shape(optimizer.init, params)
    y = jax.ShapeDtypeStruct((tf.BATCH,), jnp.int32)
    t0 = time.perf_counter()
    compiled = step.lower(params, state, opt_state, x, y, jax.random.key(1)).compile()
    seconds = time.perf_counter() - t0
    m = compiled.memory_analysis()
    mib = {k: getattr(m, f"{k}_size_in_bytes") / 2 ** 20
           for k in ("temp", "argument", "output", "alias")}
    mib["peak"] = mib["temp"] + mib["argument"] + mib["output"] - mib["alias"]
    mib["xla_peak"] = getattr(m, "peak_memory_in_bytes", 0) / 2 ** 20
    return {"compute": compute, "blocks": blocks, "scan": scan, "remat": remat,
            "compile_s": seconds, **mib}


MEMORY_CONFIGS = (("float32", False, False), ("float32", True, False), ("float32", True, True),
                  ("bfloat16", True, False), ("bfloat16", True, True))


def memory_table(blocks=MEMORY_BLOCKS) -> list[dict]:
    rows = []
    print(f"\n{blocks}-block encoder train step (d_model {tf.D_MODEL}, x ({tf.BATCH}, "
          f"{tf.STEPS}, {tf.D_MODEL})), XLA memory_analysis, MiB:")
    print(f"{'compute':<9} {'stack':<12} {'temp':>8} {'args':>7} {'outputs':>8} "
          f"{'temp+args+out':>14} {'compile s':>10}")
    for compute, scan, remat in MEMORY_CONFIGS:
        r = step_memory(compute, blocks, scan, remat)
        rows.append(r)
        stack = "unrolled" if not scan else ("scan+remat" if remat else "scan")
        print(f"{compute:<9} {stack:<12} {r['temp']:8.1f} {r['argument']:7.1f} "
              f"{r['output']:8.1f} {r['peak']:14.1f} {r['compile_s']:10.1f}", flush=True)
    xla = sorted({round(r["xla_peak"], 1) for r in rows})
    print(f"temp+args+out is an upper bound of the peak (donated outputs may reuse argument "
          f"buffers). XLA:CPU's own peak_memory_in_bytes reads {xla} MiB: the arguments, "
          f"without the temporaries.")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", action="store_true", help="only the memory table")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=MEMORY_BLOCKS,
                        help="encoder depth of the memory table")
    args = parser.parse_args(argv)
    out = {}
    if not args.memory:
        from benchmarks import run

        info = run.machine_info()
        print(f"machine: {info['cpu']}, nproc {info['nproc']} (threads {info['threads']}); "
              f"jax {info['jax']}, torch {info['torch']}; load average "
              f"{os.getloadavg()[0]:.2f}")
        result = run.bench_workload(WORKLOAD, rounds=args.rounds, block=args.block,
                                    warmup=args.warmup, variants=False, skip_slow=True)
        print(f"\n{result['rounds']} rounds x {args.block} steps, interleaved; load average "
              f"{result['load_before'][0]:.2f} before, {result['load_after'][0]:.2f} after "
              f"(1-min)")
        print(run.format_table(result))
        print(run.verdict(result))
        ratios = precision_ratios(result)
        for name, r in ratios.items():
            print(f"  {name}: bf16 / f32 = {r['medians']:.3f} (ratio of medians), "
                  f"{r['paired']:.3f} paired per round (IQR {r['q25']:.3f}-{r['q75']:.3f})")
        out["timing"], out["ratios"] = result, ratios
    out["memory"] = memory_table(args.blocks)
    return out


if __name__ == "__main__":
    main()
