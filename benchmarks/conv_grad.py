"""Time one convolution's forward, input gradient and kernel gradient, formulation by formulation.

    python benchmarks/conv_grad.py                  # every shape, 15 rounds
    python benchmarks/conv_grad.py --only res64 --rounds 9
    python benchmarks/conv_grad.py --gap            # every op of lenet5/convstack vs torch
    python benchmarks/conv_grad.py --flags          # XLA:CPU flags, each in a subprocess
    python benchmarks/conv_grad.py --strided        # strided convs' input gradient
    python benchmarks/conv_grad.py --strided --step # ... as the convstack step's

Shapes: the convolutions of the lenet5 and convstack workloads (benchmarks/cnn.py) and
the 3x3 64->64 conv of resblock. Formulations (channels-last, float32):

  forward      xla      lax.conv_general_dilated
               im2col   the k·k tap slices side by side, one (N·O, k·k·C) @ (k·k·C, F)
  input grad   xla      jax.vjp of lax.conv_general_dilated in x
  kernel grad  xla      jax.vjp of lax.conv_general_dilated in w (JAX's rule)
               swap     that rule written out: one convolution with batch and feature
                        dimensions swapped (x as (C, spatial, N), g as the kernel)
               shifted  one GEMM per tap, X_m^T @ G (jaxlayers.layers._conv_cpu)
               im2col   patches^T @ G, one GEMM over the whole batch (_conv_cpu)
               im2col/2MB, /4MB, /16MB  the same in blocks of images whose patches fit
                        in that many bytes (lax.map, patches rebuilt under checkpoint);
                        4 MB is _conv_cpu.BUDGET, what Conv2D runs on the CPU
  Every kernel-grad formulation but swap is jax.vjp in w of _conv_cpu.conv(method): the
  custom_jvp's transpose, as the layer differentiates it.
  PyTorch      torch.nn.functional.conv2d, torch.nn.grad.conv2d_input / conv2d_weight
               (NCHW), for scale.

--gap: where the train step's time goes, op by op, JAX (jit; the library's kernel-gradient
rule) against PyTorch eager (NCHW) on the same shapes: each conv's forward, input gradient
and kernel gradient; tanh/relu forward and backward (torch's aten tanh_backward /
threshold_backward); 2×2 average pool forward and backward (jl.AvgPool2D's vjp, aten
avg_pool2d_backward); global average pool. Each op's pair is timed interleaved (rounds
of 5 calls, shuffled order); the table gives medians and minima and weights each op by
its count in the step.

--flags: each XLA_FLAGS setting in FLAGS in its own subprocess (flags are read once per
process), alternating with no-flag subprocesses: median and minimum of the lenet5 and
convstack library train steps (benchmarks/cnn.py models), ratios to the two neighbouring
baselines, and which library calls (YNNPACK / oneDNN fusions, Eigen convolution / dot)
the compiled gradient of a small conv + dense program contains under that setting.

--strided: the input gradient (jax.vjp in x) of strided convs, XLA's transpose of
lax.conv_general_dilated (a stride-1 conv over the output gradient with zeros inserted
between its entries, lhs dilation) against the transposes of space_to_depth (one
stride-1 conv of the output gradient, then depth-to-space) and phase_split (s^n stride-1
convs, each interleaved back into its phase), and XLA's forward for scale; timed by
benchmarks.common.paired_rounds (ratios paired per round, load average logged); STRIDED
lists the shapes. --strided --step: the convstack train step (benchmarks/cnn.py) with
each as the x-tangent of _conv_cpu.conv's custom JVP for strided convs, against the
library's. A measured, lost lever: Conv2D keeps XLA's (benchmarks/README.md).

Method as benchmarks/run.py: every function is compiled and warmed up, then timed in
rounds; each round runs every contender once (one untimed call, then one timed call) in
a shuffled (seeded) order; reported: the median over rounds, and the ratio to PyTorch.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import num_threads  # noqa: E402

# name -> (batch, (H, W, C), (kh, kw), filters, strides, padding pairs)
SHAPES = {
    "lenet-c1": (128, (32, 32, 1), (5, 5), 6, (1, 1), ((0, 0), (0, 0))),
    "lenet-c2": (128, (14, 14, 6), (5, 5), 16, (1, 1), ((0, 0), (0, 0))),
    "stack-3x32": (64, (32, 32, 3), (3, 3), 32, (1, 1), ((1, 1), (1, 1))),
    "stack-32x32": (64, (32, 32, 32), (3, 3), 32, (1, 1), ((1, 1), (1, 1))),
    "stack-32x64/2": (64, (32, 32, 32), (3, 3), 64, (2, 2), ((1, 1), (1, 1))),
    "stack-64x64": (64, (16, 16, 64), (3, 3), 64, (1, 1), ((1, 1), (1, 1))),
    "res64": (64, (32, 32, 64), (3, 3), 64, (1, 1), ((1, 1), (1, 1))),
}
BLOCK = 16
# --strided: the convstack's strided conv and ResNet-50-like ones (same layout as SHAPES)
STRIDED = {
    "stack-32x64/2": SHAPES["stack-32x64/2"],
    "r50-64x64/2 56x56": (8, (56, 56, 64), (3, 3), 64, (2, 2), ((1, 1), (1, 1))),
    "r50-256x512/2 1x1": (8, (28, 28, 256), (1, 1), 512, (2, 2), ((0, 0), (0, 0))),
}


def _contenders(shape):
    """{(part, formulation): zero-argument function that blocks on its result}."""
    import jax
    import jax.numpy as jnp
    import torch
    from jax import lax

    from jaxlayers.layers import _conv_cpu as cc

    batch, (h, w, c), kernel, f, strides, pads = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, h, w, c), dtype=np.float32))
    k = jnp.asarray(rng.standard_normal(kernel + (c, f), dtype=np.float32))
    ones = (1, 1)
    y = cc._xla(x, k, strides, pads, ones, 1)
    g = jnp.asarray(rng.standard_normal(y.shape, dtype=np.float32))
    out = y.shape[1:3]

    def kernel_grad(method, budget=cc.BUDGET):
        return lambda x, k, g: jax.vjp(
            lambda k: cc.conv(x, k, strides, pads, ones, 1, method, budget), k)[1](g)[0]

    def swap(x, g):
        # JAX's transpose rule: batch <-> feature; stride becomes the rhs dilation.
        dw = lax.conv_general_dilated(x, g, ones, pads, rhs_dilation=strides,
                                      dimension_numbers=("CHWN", "IHWO", "HWNC"))
        return dw[:kernel[0], :kernel[1]]

    def im2col_forward(x, k):
        patches = jnp.stack(list(cc._taps(x, kernel, strides, pads, ones, out)), -2)
        return patches.reshape(patches.shape[:3] + (-1,)) @ k.reshape(-1, f)

    fns = {
        ("forward", "xla"): (jax.jit(lambda x, k: cc._xla(x, k, strides, pads, ones, 1)),
                             (x, k)),
        ("forward", "im2col"): (jax.jit(im2col_forward), (x, k)),
        ("input grad", "xla"): (jax.jit(lambda x, k, g: jax.vjp(
            lambda x: cc._xla(x, k, strides, pads, ones, 1), x)[1](g)[0]), (x, k, g)),
        ("kernel grad", "xla"): (jax.jit(lambda x, k, g: jax.vjp(
            lambda k: cc._xla(x, k, strides, pads, ones, 1), k)[1](g)[0]), (x, k, g)),
        ("kernel grad", "swap"): (jax.jit(swap), (x, g)),
        ("kernel grad", "shifted"): (jax.jit(kernel_grad("shifted")), (x, k, g)),
        ("kernel grad", "im2col"): (jax.jit(kernel_grad("im2col", 1 << 40)), (x, k, g)),
    }
    for mb in (2, 4, 16):
        fns[("kernel grad", f"im2col/{mb}MB")] = (jax.jit(kernel_grad("im2col", mb << 20)),
                                                  (x, k, g))
    want = np.asarray(fns[("kernel grad", "xla")][0](x, k, g))
    for (part, name), (fn, args) in fns.items():  # every formulation computes the same
        if part == "kernel grad":
            got = np.asarray(fn(*args))
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max(),
                                       err_msg=name)

    out_fns = {}
    for key, (fn, args) in fns.items():
        out_fns[key] = (lambda fn=fn, args=args: jax.block_until_ready(fn(*args)))

    torch.set_num_threads(num_threads())
    tx, tk, tg = (torch.from_numpy(np.array(a).transpose(p).copy())
                  for a, p in ((x, (0, 3, 1, 2)), (k, (3, 2, 0, 1)), (g, (0, 3, 1, 2))))
    (plo, phi), (qlo, qhi) = pads
    if plo != phi or qlo != qhi:  # torch pads symmetrically: pad the input explicitly
        tx = torch.nn.functional.pad(tx, (qlo, qhi, plo, phi))
        plo = qlo = 0
    tp = (plo, qlo)

    def t(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    F = torch.nn.functional
    out_fns[("forward", "torch")] = t(lambda: F.conv2d(tx, tk, stride=strides, padding=tp))
    out_fns[("input grad", "torch")] = t(lambda: torch.nn.grad.conv2d_input(
        tx.shape, tk, tg, stride=strides, padding=tp))
    out_fns[("kernel grad", "torch")] = t(lambda: torch.nn.grad.conv2d_weight(
        tx, tk.shape, tg, stride=strides, padding=tp))
    got = torch.nn.grad.conv2d_weight(tx, tk.shape, tg, stride=strides, padding=tp)
    np.testing.assert_allclose(got.numpy().transpose(2, 3, 1, 0), want, rtol=2e-3,
                               atol=2e-3 * np.abs(want).max(), err_msg="torch")
    return out_fns


def _rule(name):
    from jaxlayers.layers import _conv_cpu as cc
    return cc.choose("cpu", 2, SHAPES[name][1][2], 1)


def measure(name, rounds, seed=0, log=print):
    fns = _contenders(SHAPES[name])
    for fn in fns.values():  # warm-up
        fn()
        fn()
    times = {key: [] for key in fns}
    order = list(fns)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for key in order:
            fns[key]()
            start = time.perf_counter()
            fns[key]()
            times[key].append(time.perf_counter() - start)
    medians = {key: statistics.median(v) for key, v in times.items()}
    load = os.getloadavg()[0]
    batch, (h, w, c), kernel, f, strides, _ = SHAPES[name]
    log(f"\n{name}: rule {_rule(name)}, batch {batch}, {h}x{w}x{c}, {kernel[0]}x{kernel[1]} {c}->{f}, "
        f"strides {strides}; load {load:.2f}; medians of {rounds}")
    for part in ("forward", "input grad", "kernel grad"):
        ref = medians[(part, "torch")]
        row = sorted((v, k[1]) for k, v in medians.items() if k[0] == part)
        log(f"  {part:12s} " + "  ".join(f"{n} {v * 1e3:.2f} ms ({v / ref:.2f}x)"
                                         for v, n in row))
    return medians, load


# (workload, label, count in the step, op, shape args); conv ops: (batch, (H, W, C),
# kernel, filters, stride, pad); elementwise/pool ops: (batch, H, W, C)
GAP = [
    ("lenet5", "conv1 1->6 5x5 fwd", 1, "conv fwd", (128, (32, 32, 1), 5, 6, 1, 0)),
    ("lenet5", "conv1 kernel grad", 1, "conv kgrad", (128, (32, 32, 1), 5, 6, 1, 0)),
    ("lenet5", "tanh 28x28x6 fwd", 1, "tanh fwd", (128, 28, 28, 6)),
    ("lenet5", "tanh 28x28x6 bwd", 1, "tanh bwd", (128, 28, 28, 6)),
    ("lenet5", "avgpool 28x28x6 fwd", 1, "pool fwd", (128, 28, 28, 6)),
    ("lenet5", "avgpool 28x28x6 bwd", 1, "pool bwd", (128, 28, 28, 6)),
    ("lenet5", "conv2 6->16 5x5 fwd", 1, "conv fwd", (128, (14, 14, 6), 5, 16, 1, 0)),
    ("lenet5", "conv2 input grad", 1, "conv igrad", (128, (14, 14, 6), 5, 16, 1, 0)),
    ("lenet5", "conv2 kernel grad", 1, "conv kgrad", (128, (14, 14, 6), 5, 16, 1, 0)),
    ("lenet5", "tanh 10x10x16 fwd", 1, "tanh fwd", (128, 10, 10, 16)),
    ("lenet5", "tanh 10x10x16 bwd", 1, "tanh bwd", (128, 10, 10, 16)),
    ("lenet5", "avgpool 10x10x16 fwd", 1, "pool fwd", (128, 10, 10, 16)),
    ("lenet5", "avgpool 10x10x16 bwd", 1, "pool bwd", (128, 10, 10, 16)),
    ("convstack", "conv 3->32 fwd", 1, "conv fwd", (64, (32, 32, 3), 3, 32, 1, 1)),
    ("convstack", "conv 3->32 kernel grad", 1, "conv kgrad", (64, (32, 32, 3), 3, 32, 1, 1)),
    ("convstack", "conv 32->32 fwd", 2, "conv fwd", (64, (32, 32, 32), 3, 32, 1, 1)),
    ("convstack", "conv 32->32 input grad", 2, "conv igrad", (64, (32, 32, 32), 3, 32, 1, 1)),
    ("convstack", "conv 32->32 kernel grad", 2, "conv kgrad", (64, (32, 32, 32), 3, 32, 1, 1)),
    ("convstack", "conv 32->64 /2 fwd", 1, "conv fwd", (64, (32, 32, 32), 3, 64, 2, 1)),
    ("convstack", "conv 32->64 /2 input grad", 1, "conv igrad", (64, (32, 32, 32), 3, 64, 2, 1)),
    ("convstack", "conv 32->64 /2 kernel grad", 1, "conv kgrad",
     (64, (32, 32, 32), 3, 64, 2, 1)),
    ("convstack", "conv 64->64 fwd", 2, "conv fwd", (64, (16, 16, 64), 3, 64, 1, 1)),
    ("convstack", "conv 64->64 input grad", 2, "conv igrad", (64, (16, 16, 64), 3, 64, 1, 1)),
    ("convstack", "conv 64->64 kernel grad", 2, "conv kgrad", (64, (16, 16, 64), 3, 64, 1, 1)),
    ("convstack", "relu 32x32x32 fwd", 3, "relu fwd", (64, 32, 32, 32)),
    ("convstack", "relu 32x32x32 bwd", 3, "relu bwd", (64, 32, 32, 32)),
    ("convstack", "relu 16x16x64 fwd", 3, "relu fwd", (64, 16, 16, 64)),
    ("convstack", "relu 16x16x64 bwd", 3, "relu bwd", (64, 16, 16, 64)),
    ("convstack", "global avg pool 16x16x64 fwd", 1, "gap fwd", (64, 16, 16, 64)),
]


def _gap_pair(op, shape):
    """(jax step, torch step) for one op of GAP: zero-argument, blocking."""
    import jax
    import jax.numpy as jnp
    import torch

    import jaxlayers as jl
    from jaxlayers.layers import _conv_cpu as cc

    rng = np.random.default_rng(0)
    F = torch.nn.functional
    aten = torch.ops.aten
    torch.set_num_threads(num_threads())

    def nchw(a):
        return torch.from_numpy(np.array(a).transpose(0, 3, 1, 2).copy())

    def jax_run(fn, *args):
        fn = jax.jit(fn)
        return lambda: jax.block_until_ready(fn(*args))

    def torch_run(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    if op.startswith("conv"):
        batch, (h, w, c), k, f, s, p = shape
        x = jnp.asarray(rng.standard_normal((batch, h, w, c), dtype=np.float32))
        kern = jnp.asarray(rng.standard_normal((k, k, c, f), dtype=np.float32))
        strides, pads = (s, s), ((p, p), (p, p))
        method = cc.choose("cpu", 2, c, 1)

        def fwd(x, kern):
            return cc.conv(x, kern, strides, pads, (1, 1), 1, method)

        g = jnp.asarray(rng.standard_normal(fwd(x, kern).shape, dtype=np.float32))
        tk = torch.from_numpy(np.asarray(kern).transpose(3, 2, 0, 1).copy())
        tx, tg = nchw(x), nchw(g)
        if op == "conv fwd":
            return (jax_run(fwd, x, kern),
                    torch_run(lambda: F.conv2d(tx, tk, stride=s, padding=p)))
        if op == "conv igrad":
            return (jax_run(lambda x, kern, g: jax.vjp(lambda x: fwd(x, kern), x)[1](g)[0],
                            x, kern, g),
                    torch_run(lambda: torch.nn.grad.conv2d_input(tx.shape, tk, tg, stride=s,
                                                                 padding=p)))
        return (jax_run(lambda x, kern, g: jax.vjp(lambda kern: fwd(x, kern), kern)[1](g)[0],
                        x, kern, g),
                torch_run(lambda: torch.nn.grad.conv2d_weight(tx, tk.shape, tg, stride=s,
                                                              padding=p)))
    x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    tx = nchw(x)
    pool = jl.AvgPool2D(2)

    def pooled(x):
        return pool.apply({}, {}, x)[0]

    if op in ("tanh fwd", "relu fwd"):
        jfn, tfn = (jnp.tanh, torch.tanh) if op == "tanh fwd" else (jax.nn.relu, F.relu)
        return jax_run(jfn, x), torch_run(lambda: tfn(tx))
    if op in ("tanh bwd", "relu bwd"):
        jfn = jnp.tanh if op == "tanh bwd" else jax.nn.relu
        ty = torch.tanh(tx) if op == "tanh bwd" else F.relu(tx)
        back = ((lambda: aten.tanh_backward(tx, ty)) if op == "tanh bwd" else
                (lambda: aten.threshold_backward(tx, ty, 0)))
        return jax_run(lambda x, g: jax.vjp(jfn, x)[1](g)[0], x, x), torch_run(back)
    if op == "pool fwd":
        return jax_run(pooled, x), torch_run(lambda: F.avg_pool2d(tx, 2))
    if op == "pool bwd":
        g = jnp.asarray(pooled(x))
        tg = nchw(g)
        return (jax_run(lambda x, g: jax.vjp(pooled, x)[1](g)[0], x, g),
                torch_run(lambda: aten.avg_pool2d_backward(tg, tx, [2, 2], [2, 2], [0, 0],
                                                           False, True, None)))
    if op == "gap fwd":
        return jax_run(lambda x: x.mean(axis=(1, 2)), x), torch_run(lambda: tx.mean((2, 3)))
    raise ValueError(f"unknown op {op!r}")


def _interleaved(steps, rounds, block):
    """{name: (median, minimum) seconds} over rounds of `block` calls each, the steps in a
    shuffled (seeded) order per round, one untimed call before each block. The minimum
    is the figure to compare under load: PyTorch's OpenMP threads stall when the 2 cores
    are shared (the median of a 0.2 ms torch.tanh reached 8 ms at load 5), XLA's pool
    much less."""
    times = {name: [] for name in steps}
    order = list(steps)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            steps[name]()
            for _ in range(block):
                start = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(v), min(v)) for name, v in times.items()}


def gap(workloads, rounds, block, log=print):
    """Time every op of GAP for `workloads`, JAX against torch; log a markdown table."""
    rows = []
    for workload, label, count, op, shape in GAP:
        if workload not in workloads:
            continue
        jax_step, torch_step = _gap_pair(op, shape)
        for step in (jax_step, torch_step):  # compile, warm up
            step()
            step()
        got = _interleaved({"jax": jax_step, "torch": torch_step}, rounds, block)
        rows.append((workload, label, count, *got["jax"], *got["torch"], os.getloadavg()[0]))
    log("| workload | op | × in step | JAX median ms | PyTorch median ms | JAX min ms | "
        "PyTorch min ms | JAX / PyTorch (min) | load |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for workload, label, count, jm, jn, tm, tn, load in rows:
        log(f"| {workload} | {label} | {count} | {1e3 * jm:.3f} | {1e3 * tm:.3f} | "
            f"{1e3 * jn:.3f} | {1e3 * tn:.3f} | {jn / tn:.2f} | {load:.1f} |")
    for workload in workloads:
        mine = [r for r in rows if r[0] == workload]
        jm, tm, jn, tn = (1e3 * sum(r[2] * r[i] for r in mine) for i in (3, 5, 4, 6))
        log(f"| {workload} | **sum × count** | | {jm:.2f} | {tm:.2f} | {jn:.2f} | {tn:.2f} | "
            f"{jn / tn:.2f} | |")
    return rows


# XLA:CPU flags of jaxlib 0.10.2 (names from the strings of jaxlib/libjax_common.so; an
# invalid value makes XLA print every flag with its default and help). By default
# jaxlib 0.10.2 runs convolutions and dots as YNNPACK fusions ("__ynn_fusion").
FLAGS = [
    # overwrite YNN's list with dots only: convolutions go back to Eigen
    "--xla_cpu_experimental_ynn_fusion_type=dot",
    # dots (not convolutions) as oneDNN fusions
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot",
    # elementwise ops into YNN fusions too
    "--xla_cpu_experimental_ynn_fusion_type=+eltwise",
    "--xla_cpu_use_onednn=true",  # alone: the program does not change
    "--xla_cpu_use_xnnpack=false",  # the program does not change (YNN stays)
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_fast_math=true",
]


def _fusion_kinds():
    """Counts of library-call kinds in the compiled gradient of a conv + dense program."""
    import collections
    import re

    import jax
    import jax.numpy as jnp
    from jax import lax

    def f(x, k, w):
        y = jax.nn.relu(lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                 dimension_numbers=cc._DIMS[n]))
        return jnp.tanh(y.reshape(-1, 512)[:64] @ w).sum()

    args = (jnp.ones((8, 16, 16, 32)), jnp.ones((3, 3, 32, 32)), jnp.ones((512, 64)))
    text = jax.jit(jax.grad(f, argnums=(1, 2))).lower(*args).compile().as_text()
    entry = text[text.index("ENTRY"):]
    kinds = collections.Counter(re.findall(r'"kind":"(__\w+)"', entry))
    kinds.update(re.findall(r"= \S+ (convolution|dot)\(", entry))
    return " ".join(f"{k.strip('_')}:{v}" for k, v in sorted(kinds.items()))


def _flag_child(steps_lenet, steps_stack):
    """Run in the subprocess: median and minimum ms of the lenet5 and convstack library
    steps, and the call kinds of a small program."""
    import statistics
    import time as _time

    from benchmarks import cnn

    out = []
    for build, batch, shape, n in ((cnn._lenet_model, cnn.LENET_BATCH, cnn.LENET_SHAPE,
                                    steps_lenet),
                                   (cnn._convstack_model, cnn.STACK_BATCH, cnn.STACK_SHAPE,
                                    steps_stack)):
        step = cnn._jaxlayers(build, batch, shape)()
        for _ in range(3):
            step()
        times = []
        for _ in range(n):
            t0 = _time.perf_counter()
            step()
            times.append(_time.perf_counter() - t0)
        out += [1e3 * statistics.median(times), 1e3 * min(times)]
    print("RESULT", *out)
    print("KINDS", _fusion_kinds())


def flags(repeats, log=print):
    """Each flag setting in a subprocess, the settings in turn with a no-flag subprocess
    between every two; ratios of medians and of minima to the mean of the two neighbouring
    baselines."""
    import subprocess

    def child(flag):
        env = dict(os.environ, XLA_FLAGS=flag)
        proc = subprocess.run([sys.executable, __file__, "--flag-child"], env=env,
                              capture_output=True, text=True, timeout=600)
        lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines()
                     if line.startswith(("RESULT", "KINDS")))
        if "RESULT" not in lines:
            return None, f"rc {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
        return tuple(float(v) for v in lines["RESULT"].split()), lines.get("KINDS", "")

    log("| XLA_FLAGS | calls in a conv+dense grad | lenet5 median / min ms | ratio median / min "
        "| convstack median / min ms | ratio median / min | load |\n"
        "|---|---|---:|---:|---:|---:|---:|")
    before, kinds = child("")
    log(f"| (none) | {kinds} | {before[0]:.2f} / {before[1]:.2f} | | {before[2]:.2f} / "
        f"{before[3]:.2f} | | {os.getloadavg()[0]:.1f} |")
    for _ in range(repeats):
        for flag in FLAGS:
            got, kinds = child(flag)
            after, _ = child("")
            load = os.getloadavg()[0]
            if got is None:
                log(f"| `{flag}` | failed, {kinds} | | | | | {load:.1f} |")
                before = after
                continue
            base = [(a + b) / 2 for a, b in zip(before, after)]
            r = [g / b for g, b in zip(got, base)]
            log(f"| `{flag}` | {kinds} | {got[0]:.2f} / {got[1]:.2f} | {r[0]:.3f} / {r[1]:.3f} "
                f"| {got[2]:.2f} / {got[3]:.2f} | {r[2]:.3f} / {r[3]:.3f} | {load:.1f} |")
            before = after


def space_to_depth(x, w, strides, pads):
    """conv(x, w) with strides s > 1 as a stride-1 VALID conv over phases (dilation 1,
    one group): the same values, written so that its transpose in x has no dilation.

    With m = s·q + p (tap m of a kernel of size k, phase p < P = min(s, k),
    q < K = ceil(k/s)), per spatial dimension

      y[o] = Σ_m x_pad[s·o + m] W[m] = Σ_q Σ_p X[o + q, p] W'[q, p],
      X[j, p] = x_pad[s·j + p]  (x_pad cut or zero-extended to s·(O + K - 1)),
      W'[q, p] = W[s·q + p]     (zero where s·q + p >= k),

    with the phases folded into the channels: X (N, *(O + K - 1), P^n·C), W' (*K, P^n·C, F),
    a stride-1 VALID conv. Its transpose in x (what reverse mode runs for the input
    gradient) is a stride-1 conv of the output gradient, then depth-to-space; XLA's own
    transpose of a strided conv is a stride-1 conv over the output gradient with s-1 zeros
    inserted between entries (lhs dilation), ~s^n times the useful multiplies. This one
    multiplies (K·s)^n/k^n times (16/9 for 3x3 stride 2; none wasted for 1x1).
    """
    import math

    import jax.numpy as jnp
    from jax import lax

    from jaxlayers.layers import _conv_cpu as cc

    n = x.ndim - 2
    kernel = w.shape[:n]
    out = [(h + lo + hi - k) // s + 1 for h, (lo, hi), k, s in
           zip(x.shape[1:-1], pads, kernel, strides)]
    ks = [-(-k // s) for k, s in zip(kernel, strides)]
    phases = [min(s, k) for k, s in zip(kernel, strides)]
    config = [(0, 0, 0)] + [(lo, s * (o + q - 1) - h - lo, 0) for h, (lo, _), s, o, q in
                            zip(x.shape[1:-1], pads, strides, out, ks)] + [(0, 0, 0)]
    x = lax.pad(x, jnp.zeros((), x.dtype), config)  # (N, *(s·(O+K-1)), C)
    nb, c, f = x.shape[0], x.shape[-1], w.shape[-1]
    x = x.reshape((nb,) + sum(((o + q - 1, s) for o, q, s in zip(out, ks, strides)), ())
                  + (c,))
    x = x[(slice(None),) + sum(((slice(None), slice(0, p)) for p in phases), ())]
    x = x.transpose((0,) + tuple(range(1, 2 * n, 2)) + tuple(range(2, 2 * n + 1, 2))
                    + (2 * n + 1,))
    x = x.reshape(x.shape[:n + 1] + (math.prod(phases) * c,))
    w = jnp.pad(w, [(0, q * s - k) for k, q, s in zip(kernel, ks, strides)] + [(0, 0)] * 2)
    w = w.reshape(sum(((q, s) for q, s in zip(ks, strides)), ()) + (c, f))
    w = w[sum(((slice(None), slice(0, p)) for p in phases), ())]
    w = w.transpose(tuple(range(0, 2 * n, 2)) + tuple(range(1, 2 * n, 2)) + (2 * n, 2 * n + 1))
    w = w.reshape(tuple(ks) + (math.prod(phases) * c, f))
    return lax.conv_general_dilated(x, w, (1,) * n, "VALID", dimension_numbers=cc._DIMS[n])


def phase_split(x, w, strides, pads):
    """conv(x, w) with strides s as s^n stride-1 VALID convs, one per phase p < s:
    y = Σ_p conv(x_pad[p::s], W[p::s]). No zero taps; its transpose in x is s^n stride-1
    convs of the output gradient, each interleaved back into its phase (interior pad)."""
    import itertools

    from jax import lax

    from jaxlayers.layers import _conv_cpu as cc

    n = x.ndim - 2
    kernel = w.shape[:n]
    out = [(h + lo + hi - k) // s + 1 for h, (lo, hi), k, s in
           zip(x.shape[1:-1], pads, kernel, strides)]
    x = lax.pad(x, np.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads]
                + [(0, 0, 0)])
    y = None
    for p in itertools.product(*(range(min(s, k)) for s, k in zip(strides, kernel))):
        wp = w[tuple(slice(a, None, s) for a, s in zip(p, strides))]
        limit = [a + s * (o + q - 2) + 1 for a, s, o, q in zip(p, strides, out, wp.shape)]
        xp = lax.slice(x, (0,) + p + (0,), (x.shape[0],) + tuple(limit) + (x.shape[-1],),
                       (1,) + tuple(strides) + (1,))
        term = lax.conv_general_dilated(xp, wp, (1,) * n, "VALID",
                                        dimension_numbers=cc._DIMS[n])
        y = term if y is None else y + term
    return y


def strided(rounds, block, log=print):
    """--strided: XLA's input gradient of each STRIDED conv against space-to-depth's."""
    import jax

    from benchmarks.common import paired_rounds
    from jaxlayers.layers import _conv_cpu as cc

    rng = np.random.default_rng(0)
    for name, (batch, (h, w, c), kernel, f, strides, pads) in STRIDED.items():
        x = rng.standard_normal((batch, h, w, c), np.float32)
        k = rng.standard_normal(kernel + (c, f), np.float32) / np.sqrt(c * np.prod(kernel))
        forms = {"xla": lambda x, k: cc._xla(x, k, strides, pads, (1, 1), 1),
                 "s2d": lambda x, k: space_to_depth(x, k, strides, pads),
                 "phases": lambda x, k: phase_split(x, k, strides, pads)}
        g = rng.standard_normal(forms["xla"](x, k).shape, np.float32)
        grads = {m: jax.jit(lambda x, k, g, fn=fn: jax.vjp(lambda x: fn(x, k), x)[1](g)[0])
                 for m, fn in forms.items()}
        want = np.asarray(grads["xla"](x, k, g))
        for m in grads:
            got = np.asarray(grads[m](x, k, g))
            assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max()), (name, m)
        log(f"{name} (batch {batch}, {h}x{w}x{c}, {kernel} -> {f}, strides {strides}): "
            f"input gradient, {num_threads()} threads")
        steps = {m: (lambda fn=fn: fn(x, k, g).block_until_ready()) for m, fn in grads.items()}
        forward = jax.jit(forms["xla"])  # the same useful multiplies as the input gradient
        steps["forward"] = lambda: forward(x, k).block_until_ready()
        paired_rounds(steps, "xla", rounds=rounds, block=block, log=log)


def _strided_conv(tangent):
    """_conv_cpu.conv with `tangent` (space_to_depth or phase_split) as the x-tangent of
    strided convs; `tangent.calls` counts the convs it was traced for."""
    import jax
    import jax.numpy as jnp
    from jax.custom_derivatives import SymbolicZero

    from jaxlayers.layers import _conv_cpu as cc

    original = cc.conv

    def conv(x, w, strides, pads, dilation, groups, method, budget=cc.BUDGET):
        strides, pads, dilation = tuple(strides), tuple(map(tuple, pads)), tuple(dilation)
        if method == "xla" or max(strides) == 1 or max(dilation) > 1 or groups > 1:
            return original(x, w, strides, pads, dilation, groups, method, budget)

        @jax.custom_jvp
        def run(x, w):
            return cc._xla(x, w, strides, pads, dilation, groups)

        def run_jvp(primals, tangents):
            (x, w), (dx, dw) = primals, tangents
            y = cc._xla(x, w, strides, pads, dilation, groups)
            dy = None
            if not isinstance(dx, SymbolicZero):
                tangent.calls += 1
                dy = tangent(dx, w, strides, pads)
            if not isinstance(dw, SymbolicZero):
                term = cc.kernel_tangent(x, dw, strides, pads, dilation, groups,
                                         y.shape[1:-1], method, budget)
                dy = term if dy is None else dy + term
            return y, jnp.zeros_like(y) if dy is None else dy

        run.defjvp(run_jvp, symbolic_zeros=True)
        return run(x, w)

    return conv


def strided_step(rounds, block, log=print):
    """--strided --step: the convstack train step, library against the s2d x-tangent."""
    from benchmarks import cnn
    from benchmarks.common import paired_rounds

    build, batch, shape = cnn._convstack_model, cnn.STACK_BATCH, cnn.STACK_SHAPE
    contenders = {"library": cnn._jaxlayers(build, batch, shape)()}
    for label, fn in (("s2d", space_to_depth), ("phases", phase_split)):
        def tangent(*args, fn=fn):
            return fn(*args)

        tangent.calls = 0
        contenders[label] = cnn.patched_step(build, batch, shape, _strided_conv(tangent))
        assert tangent.calls == 1, (label, tangent.calls)  # the one strided conv
    log(f"convstack train step, {num_threads()} threads")
    return paired_rounds(contenders, "library", rounds=rounds, block=block, log=log)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SHAPES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--gap", action="store_true")
    parser.add_argument("--workload", action="append", choices=("lenet5", "convstack"))
    parser.add_argument("--flags", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--strided", action="store_true")
    parser.add_argument("--step", action="store_true", help="with --strided: convstack step")
    parser.add_argument("--flag-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flag_child:
        _flag_child(20, 8)
    elif args.gap:
        gap(args.workload or ["lenet5", "convstack"], args.rounds, 5)
    elif args.flags:
        flags(args.repeats)
    elif args.strided and args.step:
        strided_step(args.rounds, 3)
    elif args.strided:
        strided(args.rounds, 5)
    else:
        for name in args.only or SHAPES:
            measure(name, args.rounds)


if __name__ == "__main__":
    main()
