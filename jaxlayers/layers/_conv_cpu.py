"""The convolution's kernel gradient as matrix products, for XLA:CPU.

XLA:CPU lowers the kernel gradient of `lax.conv_general_dilated` (JAX's transpose rule:
a convolution with batch and feature dimensions swapped, whose "kernel" is the whole
output gradient) to a convolution that misses the fast Eigen path: for a 3x3 64->64 conv
on 32x32x64, batch 64, it takes ~3x PyTorch's (benchmarks/README.md, "Convolution
gradients on CPU"). The same sum is a handful of matrix products:

  dW[m, c, f] = Σ_{b, o} x_pad[b, s·o + d·m, c] · g[b, o, f]          (m: a kernel tap)
              = (X_m^T G)[c, f],  X_m = x_pad[:, d·m :: s][:out] as (N·O, C), G (N·O, F)

"shifted"  one GEMM per tap: k^n products (N·O, C)^T @ (N·O, F).
"im2col"   the k^n tap slices side by side, patches (N·O, k^n·C), and one product
           patches^T @ G (k^n·C, F), in blocks of images whose patches fit in BUDGET
           bytes (a `lax.map`; the patches are rebuilt in the backward pass under
           `jax.checkpoint`, so they never exist for the whole batch). The blocks are what
           make it fast: one GEMM over the whole batch's 150 MB of patches (3x3 64->64,
           32x32, batch 64) is slower than XLA's, 4 MB blocks are 2-2.6x faster.

`conv` is a `jax.custom_jvp` whose primal is `lax.conv_general_dilated` and whose tangent
is   conv(dx, W)  +  Σ_m X_m @ dW[m]   (or patches @ dW.reshape(k^n·C, F)):
the kernel term is written with the linear operations whose JAX transpose is the product
above, so reverse mode (linearize + transpose) computes dW as those GEMMs, the input
gradient stays XLA's, and forward mode and second derivatives keep working (a
`custom_vjp` would lose them). Channels-last (N, *spatial, C) inputs, (*k, C/groups, F)
kernels, explicit (low, high) padding; groups split C and F into independent blocks.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

METHODS = ("xla", "shifted", "im2col")
BUDGET = 4 << 20  # bytes of im2col patches per block (benchmarks/README.md)
_DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def choose(backend: str, n: int, in_channels: int, groups: int) -> str:
    """The kernel-gradient formulation of a conv: a pure function of its description.

    XLA's own off the CPU and for 1-D/3-D convs (not measured). For a 2-D conv on the CPU
    (benchmarks/README.md, "Convolution gradients on CPU"): "im2col" when a group has one
    input channel (LeNet's first conv: XLA's kernel gradient ~2x slower) or at least 16
    (32 and 64 channels: 1.5-2.6x faster), XLA's for 2-15 (3 and 6 channels measured:
    XLA's ties or wins, the patches are too narrow for the GEMM to pay).
    """
    if backend != "cpu" or n != 2:
        return "xla"
    per_group = in_channels // groups
    return "im2col" if per_group == 1 or per_group >= 16 else "xla"


def _xla(x, w, strides, pads, dilation, groups):
    n = x.ndim - 2
    return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation,
                                    dimension_numbers=_DIMS[n], feature_group_count=groups)


def _taps(x, kernel, strides, pads, dilation, out):
    """The k^n slices X_m = x_pad[:, d·m :: s][:out] (N, *out, C), taps in kernel order."""
    x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
    for m in itertools.product(*(range(k) for k in kernel)):
        start = (0,) + tuple(d * i for d, i in zip(dilation, m)) + (0,)
        limit = ((x.shape[0],) + tuple(a + s * (o - 1) + 1 for a, s, o in
                                       zip(start[1:], strides, out)) + (x.shape[-1],))
        yield lax.slice(x, start, limit, (1,) + tuple(strides) + (1,))


def _grouped(a, groups):
    """(..., C) -> (..., groups, C/groups)."""
    return a.reshape(a.shape[:-1] + (groups, a.shape[-1] // groups))


def block_size(batch: int, image_bytes: int, budget: int = BUDGET) -> int:
    """Images per im2col block: the largest divisor of `batch` whose patches (image_bytes
    each) fit in `budget` bytes; 1 if one image's do not."""
    return max(b for b in range(1, batch + 1) if batch % b == 0 and b * image_bytes <= budget
               or b == 1)


def kernel_tangent(x, dw, strides, pads, dilation, groups, out, method, budget=BUDGET):
    """Σ_m X_m @ dW[m] (shape (N, *out, F)): the conv of x with dw, linear in dw.

    Written per `method` so that its transpose in dw is that method's kernel gradient.
    """
    n = x.ndim - 2
    kernel, (cg, f) = dw.shape[:n], dw.shape[n:]
    taps = len(list(itertools.product(*(range(k) for k in kernel))))
    dwg = dw.reshape((taps, cg, groups, f // groups))  # (T, C/g, g, F/g)
    if method == "shifted":
        y = None
        for t, xm in enumerate(_taps(x, kernel, strides, pads, dilation, out)):
            term = jnp.einsum("...gc,cgf->...gf", _grouped(xm, groups), dwg[t])
            y = term if y is None else y + term
    elif method == "im2col":
        def block(xb, dw):
            patches = jnp.stack([_grouped(xm, groups) for xm in
                                 _taps(xb, kernel, strides, pads, dilation, out)], -2)
            return jnp.einsum("...gtc,tcgf->...gf", patches, dw)  # (..., g, T, C/g)

        size = block_size(x.shape[0], math.prod(out) * len(dwg) * cg * groups
                          * x.dtype.itemsize, budget)
        if size == x.shape[0]:
            y = block(x, dwg)
        else:  # blocks of images, patches rebuilt in the backward pass (memory bounded)
            xs = x.reshape((x.shape[0] // size, size) + x.shape[1:])
            y = lax.map(lambda xb: jax.checkpoint(block)(xb, dwg), xs)
            y = y.reshape((x.shape[0],) + y.shape[2:])
    else:
        raise ValueError(f"conv: method must be one of {METHODS[1:]}, got {method!r}.")
    return y.reshape(y.shape[:-2] + (f,))


def conv(x, w, strides, pads, dilation, groups, method, budget=BUDGET):
    """`lax.conv_general_dilated` (channels-last) whose kernel gradient uses `method`."""
    strides, pads, dilation = tuple(strides), tuple(map(tuple, pads)), tuple(dilation)
    if method == "xla":
        return _xla(x, w, strides, pads, dilation, groups)

    @jax.custom_jvp
    def run(x, w):
        return _xla(x, w, strides, pads, dilation, groups)

    def run_jvp(primals, tangents):
        x, w = primals
        dx, dw = tangents
        y = _xla(x, w, strides, pads, dilation, groups)
        dy = None
        if not isinstance(dx, SymbolicZero):
            dy = _xla(dx, w, strides, pads, dilation, groups)
        if not isinstance(dw, SymbolicZero):
            term = kernel_tangent(x, dw, strides, pads, dilation, groups, y.shape[1:-1],
                                  method, budget)
            dy = term if dy is None else dy + term
        return y, jnp.zeros_like(y) if dy is None else dy

    run.defjvp(run_jvp, symbolic_zeros=True)
    return run(x, w)
