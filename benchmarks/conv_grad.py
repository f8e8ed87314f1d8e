"""Time one convolution's forward, input gradient and kernel gradient, formulation by formulation.

    python benchmarks/conv_grad.py                  # every shape, 15 rounds
    python benchmarks/conv_grad.py --only res64 --rounds 9

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SHAPES))
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    for name in args.only or SHAPES:
        measure(name, args.rounds)


if __name__ == "__main__":
    main()
