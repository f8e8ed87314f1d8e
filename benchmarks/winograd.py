"""Winograd F(2×2, 3×3) against XLA's convolution and the im2col kernel gradient, on the CPU.

    python benchmarks/winograd.py parts              # forward / input grad / kernel grad
    python benchmarks/winograd.py parts --only res64 --rounds 9
    python benchmarks/winograd.py steps              # convstack and resblock train steps
    python benchmarks/winograd.py accuracy           # float32 error against float64 lax

Issue 13, item 1: the last candidate for the convolution's backward on XLA:CPU. For a 3×3,
stride 1, dilation 1 convolution (channels-last, groups 1) the output is cut into 2×2
tiles; each tile needs a 4×4 input tile d (stride 2, overlapping by 2), and

  y_tile = Aᵀ [ Σ_c (G g_cf Gᵀ) ⊙ (Bᵀ d_c B) ] A        (Lavin & Gray 2015)

  Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
  G  = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]
  Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]

The sum over c is 16 GEMMs, one per position of the 4×4 transformed tile:
V (16, tiles, C) @ U (16, C, F) -> M (16, tiles, F): 16·C·F multiply-adds per 4 outputs
against the direct 9·C·F per output (2.25× fewer). Odd output sizes pad the input at the
high end to a whole number of tiles and crop. The transforms are separable: Bᵀ along H
on four stride-2 slices, then along W (elementwise, fused by XLA); likewise Aᵀ.

Formulations timed (float32; every one first checked equal to XLA's):

  forward      xla        lax.conv_general_dilated
               wino       Winograd over the whole batch (one (16, N·tiles, C) GEMM batch)
               wino/Nimg  the same in a lax.map over blocks of N images (V stays in cache)
  input grad   xla        jax.vjp of lax.conv_general_dilated in x
               wino/Nimg  Winograd forward of dy with the kernel flipped and its in/out
                          channels swapped, padding k-1-p (a 3×3 stride-1 conv again)
  kernel grad  xla        jax.vjp in w of lax.conv_general_dilated
               im2col     _conv_cpu.conv(..., "im2col"): what Conv2D runs on the CPU
               wino/NMB   the transpose in w of the blocked Winograd forward (lax.map over
                          image blocks whose V fits in N MB, V rebuilt under checkpoint):
                          dU[t] = Σ_tiles V[t]ᵀ (A ȳ Aᵀ)[t], dW = Gᵀ dU G

`steps` times one Adam train step of benchmarks/cnn.py's convstack and resblock models
(the library's Conv2D, as run.py's "jaxlayers" contender) against the same model whose
3×3 stride-1 convs run Winograd forward and input gradient (a custom_vjp; the kernel
gradient im2col or Winograd), interleaved by benchmarks.common.paired_rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import paired_rounds  # noqa: E402

# name -> (batch, (H, W, C), filters); every conv 3x3, stride 1, padding 1
SHAPES = {
    "res64": (64, (32, 32, 64), 64),       # resblock's convs
    "stack-32x32": (64, (32, 32, 32), 32),  # convstack's block 32
    "stack-64x64": (64, (16, 16, 64), 64),  # convstack's block 64
    "stack-3x32": (64, (32, 32, 3), 32),    # convstack's stem (thin)
}
PADS = ((1, 1), (1, 1))
ONES = (1, 1)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def _input_transform(x, axis, tiles):
    """Bᵀ d along `axis`: the four stride-2 slices d_i = x[i :: 2][:tiles] combined."""
    from jax import lax
    d = [lax.slice_in_dim(x, i, i + 2 * tiles - 1, 2, axis) for i in range(4)]
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _output_transform(m):
    """Aᵀ m along one tile axis: four transformed positions -> two outputs."""
    return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


def winograd(x, w, pads):
    """3×3 stride-1 cross-correlation of x (N, H, W, C) with w (3, 3, C, F), explicit pads."""
    import jax.numpy as jnp

    n, h, wd, c = x.shape
    f = w.shape[-1]
    (pl, ph), (ql, qh) = pads
    oh, ow = h + pl + ph - 2, wd + ql + qh - 2
    th, tw = -(-oh // 2), -(-ow // 2)
    xp = jnp.pad(x, ((0, 0), (pl, ph + 2 * th - oh), (ql, qh + 2 * tw - ow), (0, 0)))
    v = [cell for row in _input_transform(xp, 1, th) for cell in _input_transform(row, 2, tw)]
    v = jnp.stack(v).reshape(16, n * th * tw, c)
    g = jnp.asarray(G, w.dtype)
    u = jnp.einsum("im,jn,mncf->ijcf", g, g, w).reshape(16, c, f)
    m = jnp.einsum("tpc,tcf->tpf", v, u).reshape(4, 4, n, th, tw, f)
    y = [_output_transform([m[i, j] for j in range(4)]) for i in range(4)]
    y = _output_transform([jnp.stack(y[i], 3) for i in range(4)])  # (n, th, tw, 2, f) each
    return jnp.stack(y, 2).reshape(n, 2 * th, 2 * tw, f)[:, :oh, :ow]


def images_per_block(x, budget):
    """Images per block: the largest divisor of the batch whose V (16 tiles' worth of
    4×4 transformed values, ~4× the padded image) fits in `budget` bytes."""
    from jaxlayers.layers import _conv_cpu as cc
    n, h, w, c = x.shape
    return cc.block_size(n, 4 * (h + 2) * (w + 2) * c * x.dtype.itemsize, budget)


def blocked(x, w, pads, size, remat=False):
    """`winograd` in a lax.map over blocks of `size` images (V rebuilt under checkpoint
    in the transpose when `remat`)."""
    import jax
    from jax import lax

    n = x.shape[0]
    xs = x.reshape((n // size, size) + x.shape[1:])
    body = (jax.checkpoint(lambda xb, w: winograd(xb, w, pads)) if remat else
            (lambda xb, w: winograd(xb, w, pads)))
    y = lax.map(lambda xb: body(xb, w), xs)
    return y.reshape((n,) + y.shape[2:])


def flipped(w):
    """The input gradient's kernel: spatially flipped, in/out channels swapped."""
    return w[::-1, ::-1].swapaxes(2, 3)


def input_grad_pads(pads):
    return tuple((2 - lo, 2 - hi) for lo, hi in pads)


def _contenders(name):
    import jax
    import jax.numpy as jnp

    from jaxlayers.layers import _conv_cpu as cc

    batch, (h, w, c), f = SHAPES[name]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, h, w, c), dtype=np.float32))
    k = jnp.asarray(rng.standard_normal((3, 3, c, f), dtype=np.float32) / np.sqrt(9 * c))
    g = jnp.asarray(rng.standard_normal((batch, h, w, f), dtype=np.float32))

    def xla(x, k):
        return cc._xla(x, k, ONES, PADS, ONES, 1)

    parts = {"forward": {}, "input grad": {}, "kernel grad": {}}
    parts["forward"]["xla"] = (jax.jit(xla), (x, k))
    parts["forward"]["wino"] = (jax.jit(lambda x, k: winograd(x, k, PADS)), (x, k))
    parts["input grad"]["xla"] = (
        jax.jit(lambda x, k, g: jax.vjp(lambda x: xla(x, k), x)[1](g)[0]), (x, k, g))
    parts["kernel grad"]["xla"] = (
        jax.jit(lambda x, k, g: jax.vjp(lambda k: xla(x, k), k)[1](g)[0]), (x, k, g))
    parts["kernel grad"]["im2col"] = (jax.jit(lambda x, k, g: jax.vjp(
        lambda k: cc.conv(x, k, ONES, PADS, ONES, 1, "im2col"), k)[1](g)[0]), (x, k, g))
    for size in sorted({1, 2, 4, images_per_block(x, 2 << 20)}):
        parts["forward"][f"wino/{size}img"] = (
            jax.jit(lambda x, k, s=size: blocked(x, k, PADS, s)), (x, k))
        parts["input grad"][f"wino/{size}img"] = (
            jax.jit(lambda x, k, g, s=size: blocked(g, flipped(k), input_grad_pads(PADS), s)),
            (x, k, g))
    for mb in (1, 2, 4):
        size = images_per_block(x, mb << 20)
        parts["kernel grad"][f"wino/{mb}MB"] = (
            jax.jit(lambda x, k, g, s=size: jax.linear_transpose(
                lambda dk: blocked(x, dk, PADS, s, remat=True), k)(g)[0]), (x, k, g))
    for part, fns in parts.items():  # every formulation computes the same
        want = np.asarray(fns["xla"][0](*fns["xla"][1]))
        for formulation, (fn, args) in fns.items():
            np.testing.assert_allclose(np.asarray(fn(*args)), want, rtol=1e-3,
                                       atol=1e-4 * np.abs(want).max(),
                                       err_msg=f"{name} {part} {formulation}")
    return {part: {n: (lambda fn=fn, args=args: jax.block_until_ready(fn(*args)))
                   for n, (fn, args) in fns.items()} for part, fns in parts.items()}


def parts(names, rounds, block, log=print):
    """{shape: {part: paired_rounds rows}}, the reference im2col for the kernel grad."""
    out = {}
    for name in names:
        batch, (h, w, c), f = SHAPES[name]
        contenders = _contenders(name)
        out[name] = {}
        for part, steps in contenders.items():
            log(f"\n{name} (batch {batch}, {h}x{w}, 3x3 {c}->{f}) {part}, "
                f"load {os.getloadavg()[0]:.2f}")
            ref = "im2col" if part == "kernel grad" else "xla"
            out[name][part] = paired_rounds(steps, ref, rounds=rounds, block=block, log=log)
    return out


def accuracy(log=print):
    """Max |error| / max |y| of float32 forms against float64 lax, on every shape."""
    import jax
    import jax.numpy as jnp

    from jaxlayers.layers import _conv_cpu as cc

    for name, (batch, (h, w, c), f) in SHAPES.items():
        rng = np.random.default_rng(1)
        x = rng.standard_normal((8, h, w, c))
        k = rng.standard_normal((3, 3, c, f)) / np.sqrt(9 * c)
        with jax.enable_x64():
            want = np.asarray(cc._xla(jnp.asarray(x), jnp.asarray(k), ONES, PADS, ONES, 1))
        x32, k32 = jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)
        scale = np.abs(want).max()
        errs = {"xla": cc._xla(x32, k32, ONES, PADS, ONES, 1), "wino": winograd(x32, k32, PADS)}
        log(f"{name}: float32 max |err| / max |y|: " + ", ".join(
            f"{n} {np.abs(np.asarray(v, np.float64) - want).max() / scale:.2e}"
            for n, v in errs.items()))


def _winograd_conv(budget=2 << 20, kernel_method="im2col"):
    """A custom_vjp conv for 3x3/stride 1/dilation 1/groups 1: Winograd forward and input
    gradient, the kernel gradient by `kernel_method`; other convs unchanged."""
    import jax

    from jaxlayers.layers import _conv_cpu as cc

    original = cc.conv

    def conv(x, w, strides, pads, dilation, groups, method, budget_=cc.BUDGET):
        if (w.shape[:2] != (3, 3) or tuple(strides) != ONES or tuple(dilation) != ONES
                or groups != 1 or x.ndim != 4):
            return original(x, w, strides, pads, dilation, groups, method, budget_)
        pads = tuple(map(tuple, pads))

        @jax.custom_vjp
        def run(x, w):
            return blocked(x, w, pads, images_per_block(x, budget))

        def fwd(x, w):
            return run(x, w), (x, w)

        def bwd(res, ct):
            x, w = res
            dx = blocked(ct, flipped(w), input_grad_pads(pads), images_per_block(ct, budget))
            if kernel_method == "winograd":
                size = images_per_block(x, budget)
                dw = jax.linear_transpose(lambda dk: blocked(x, dk, pads, size, remat=True),
                                          w)(ct)[0]
            else:
                dw = jax.vjp(lambda w: original(x, w, strides, pads, dilation, groups,
                                                kernel_method), w)[1](ct)[0]
            return dx, dw

        run.defvjp(fwd, bwd)
        return run(x, w)

    return conv


def steps(names, rounds, block, log=print):
    """Train steps of benchmarks/cnn.py's models: the library against Winograd convs."""
    from benchmarks import cnn

    models = {"convstack": (cnn._convstack_model, cnn.STACK_BATCH, cnn.STACK_SHAPE),
              "resblock": (cnn._resblock_model, cnn.RES_BATCH, cnn.RES_SHAPE)}
    out = {}
    for name in names:
        build, batch, shape = models[name]
        contenders = {"library": cnn._jaxlayers(build, batch, shape)()}
        for label, method in (("wino+im2col", "im2col"), ("wino+wino", "winograd")):
            contenders[label] = cnn.patched_step(build, batch, shape,
                                                 _winograd_conv(kernel_method=method))
        log(f"\n{name} train step, load {os.getloadavg()[0]:.2f}")
        out[name] = paired_rounds(contenders, "library", rounds=rounds, block=block, log=log)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("parts", "steps", "accuracy"))
    parser.add_argument("--only", action="append")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=3)
    args = parser.parse_args(argv)
    if args.what == "parts":
        parts(args.only or list(SHAPES), args.rounds, args.block)
    elif args.what == "steps":
        steps(args.only or ["convstack", "resblock"], args.rounds, args.block)
    else:
        accuracy()


if __name__ == "__main__":
    main()
