"""The convolution's CPU kernel gradient (jaxlayers/layers/_conv_cpu.py) against lax.

Every formulation ("shifted", "im2col" in one block and in blocks) must equal
`lax.conv_general_dilated` differentiated by JAX: values, reverse mode (both operands),
forward mode and forward-over-reverse, in float64 on a grid of strides, dilations, groups,
paddings (valid / same / asymmetric explicit), non-square kernels and inputs and unequal
channels (2-D, and one 1-D: the code is rank-generic though only Conv2D uses it). One
jitted function per configuration computes all of them (compile time).
"""

import importlib
import pathlib
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxlayers as jl
from jaxlayers.layers import _conv_cpu as cc
from jaxlayers.layers._spatial import explicit_pads, same_pads

DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
# (input shape, kernel shape (*k, C/g, F), strides, padding, dilation, groups)
GRID = [
    ((3, 7, 9, 4), (3, 2, 4, 5), (1, 1), "valid", (1, 1), 1),
    ((2, 8, 6, 6), (2, 3, 3, 4), (2, 1), "same", (1, 2), 2),
    ((3, 5, 7, 3), (3, 3, 3, 2), (1, 2), ((2, 0), (1, 3)), (2, 1), 1),
    ((4, 9, 5, 2), (1, 4, 1, 6), (3, 2), "same", (1, 1), 2),
    ((2, 10, 3), (4, 3, 7), (2,), ((1, 2),), (2,), 1),
]
# method, im2col budget in bytes: one block, and blocks of 1-2 images (lax.map)
FORMS = [("shifted", cc.BUDGET), ("im2col", 1 << 40), ("im2col", 1)]


def _pads(x_shape, kernel, strides, padding, dilation):
    windows = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    return explicit_pads("test", x_shape, padding, windows, strides)


def _reference(x, w, strides, pads, dilation, groups):
    return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation,
                                    dimension_numbers=DIMS[x.ndim - 2],
                                    feature_group_count=groups)


def _derivatives(f, x, w, dx, dw, ct):
    """(y, reverse-mode (x̄, w̄), forward-mode dy, forward-over-reverse d(w̄))."""
    y, vjp = jax.vjp(f, x, w)
    _, dy = jax.jvp(f, (x, w), (dx, dw))

    def grad_w(x, w):
        return jax.vjp(f, x, w)[1](ct)[1]

    _, dgrad = jax.jvp(grad_w, (x, w), (dx, dw))
    return y, vjp(ct), dy, dgrad


@pytest.mark.parametrize("config", GRID, ids=[f"{len(c[0]) - 2}d-{i}"
                                              for i, c in enumerate(GRID)])
def test_every_formulation_equals_lax_in_value_grad_jvp_and_second_order(config):
    shape, kshape, strides, padding, dilation, groups = config
    n = len(shape) - 2
    pads = _pads(shape, kshape[:n], strides, padding, dilation)
    with jax.enable_x64():
        keys = jax.random.split(jax.random.key(len(shape) + kshape[-1]), 5)
        x, dx = (jax.random.normal(k, shape, jnp.float64) for k in keys[:2])
        w, dw = (jax.random.normal(k, kshape, jnp.float64) for k in keys[2:4])
        out = _reference(x, w, strides, pads, dilation, groups)
        ct = jax.random.normal(keys[4], out.shape, jnp.float64)

        @jax.jit
        def every(x, w, dx, dw, ct):
            want = _derivatives(lambda x, w: _reference(x, w, strides, pads, dilation, groups),
                                x, w, dx, dw, ct)
            got = [_derivatives(lambda x, w, m=m, b=b: cc.conv(x, w, strides, pads, dilation,
                                                               groups, m, b),
                                x, w, dx, dw, ct) for m, b in FORMS]
            return want, got

        want, got = every(x, w, dx, dw, ct)
        for (method, budget), result in zip(FORMS, got):
            for what, a, b in zip(("value", "reverse", "jvp", "jvp of grad"), result, want):
                jax.tree.map(lambda a, b: np.testing.assert_allclose(
                    a, b, rtol=1e-10, atol=1e-10, err_msg=f"{method}/{budget}: {what}"), a, b)


def test_im2col_really_runs_in_blocks_and_the_blocks_divide_the_batch():
    # 12 images, 100 bytes each: a 450-byte budget holds 4 (the largest divisor <= 4.5)
    assert cc.block_size(12, 100, 450) == 4
    assert cc.block_size(12, 100, 1200) == 12
    assert cc.block_size(7, 100, 650) == 1  # 7 is prime: one image at a time
    assert cc.block_size(6, 1000, 10) == 1  # one image over budget: still one image
    x = jnp.ones((6, 5, 5, 2))  # 3x3 kernel, valid: 9 positions x 9 taps x 2 channels

    def kernel_grad(ct, budget):
        return jax.linear_transpose(lambda dw: cc.kernel_tangent(
            x, dw, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, (3, 3), "im2col", budget),
            jnp.ones((3, 3, 2, 4)))(ct)[0]

    ct = jnp.ones((6, 3, 3, 4))
    assert "scan" in str(jax.make_jaxpr(kernel_grad, static_argnums=1)(ct, 3 * 162 * 4))
    assert "scan" not in str(jax.make_jaxpr(kernel_grad, static_argnums=1)(ct, 6 * 162 * 4))


def test_unknown_method_is_a_value_error_naming_the_choices():
    x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((2, 2, 1, 1))
    with pytest.raises(ValueError, match="method must be one of.*'im2col'.*got 'winograd'"):
        jax.jvp(lambda w: cc.conv(x, w, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, "winograd"),
                (w,), (w,))


@pytest.mark.parametrize("backend, n, channels, groups, want", [
    ("cpu", 2, 1, 1, "im2col"),     # LeNet's first conv
    ("cpu", 2, 3, 1, "xla"),        # RGB input: XLA's ties
    ("cpu", 2, 6, 1, "xla"),        # LeNet's second conv
    ("cpu", 2, 15, 1, "xla"),
    ("cpu", 2, 16, 1, "im2col"),
    ("cpu", 2, 64, 1, "im2col"),
    ("cpu", 2, 64, 8, "xla"),       # 8 channels per group
    ("cpu", 2, 64, 64, "im2col"),   # one channel per group
    ("cpu", 2, 64, 4, "im2col"),    # 16 per group
    ("cpu", 1, 64, 1, "xla"),       # 1-D and 3-D: not measured, XLA's
    ("cpu", 3, 64, 1, "xla"),
    ("gpu", 2, 64, 1, "xla"),
    ("tpu", 2, 1, 1, "xla"),
])
def test_the_rule_is_a_pure_function_of_backend_rank_and_channels_per_group(
        backend, n, channels, groups, want):
    assert cc.choose(backend, n, channels, groups) == want


@pytest.mark.parametrize("channels, kw", [
    (1, dict(strides=(2, 1), padding="same")),
    (16, dict(strides=1, padding=((1, 0), (2, 1)), dilation=(1, 2))),
    (32, dict(strides=2, padding="valid", groups=2)),
])
def test_conv2d_gradients_on_the_cpu_path_equal_lax(channels, kw):
    assert cc.choose(jax.default_backend(), 2, channels, kw.get("groups", 1)) == "im2col"
    layer = jl.Conv2D(6, (3, 2), **kw)
    shape = (4, 9, 7, channels)
    with jax.enable_x64():
        params, state = layer.init(jax.random.key(1), shape)
        params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        x = jax.random.normal(jax.random.key(2), shape, jnp.float64)
        strides = (kw["strides"],) * 2 if isinstance(kw["strides"], int) else kw["strides"]
        dilation = kw.get("dilation", (1, 1))
        pads = kw["padding"]
        if pads == "same":
            pads = [same_pads(s, d * (k - 1) + 1, st) for s, k, d, st in
                    zip(shape[1:3], (3, 2), dilation, strides)]
        elif pads == "valid":
            pads = ((0, 0), (0, 0))

        def loss(p, x):
            return jnp.sum(jnp.sin(layer.apply(p, state, x)[0]))

        def reference(p, x):
            y = _reference(x, p["kernel"], strides, pads, dilation, kw.get("groups", 1))
            return jnp.sum(jnp.sin(y + p["bias"].reshape(1, 1, 1, -1)))

        got = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
        want = jax.jit(jax.grad(reference, argnums=(0, 1)))(params, x)
        chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-10)


def _benchmark_module(name):
    """benchmarks.<name>, imported from the repository root (benchmarks/ is no package of
    the installed library): the measured, lost levers live there, tested here."""
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path.remove(str(root))


# (batch, H, W, C, F, pads): outputs 7x9 (odd: a cropped tile row and column) and 6x5,
# symmetric and asymmetric (one side unpadded) padding
WINOGRAD_GRID = [
    (2, 7, 9, 3, 5, ((1, 1), (1, 1))),
    (3, 5, 5, 2, 4, ((0, 3), (2, 0))),
]


def test_benchmark_winograd_equals_lax_forward_input_and_kernel_gradient():
    # benchmarks/winograd.py's F(2x2, 3x3) (a measured, lost lever: benchmarks/README.md)
    # must compute the conv it times: the forward, the input gradient as Winograd of dy
    # with the flipped kernel, the forward in lax.map blocks of one image, and the kernel
    # gradient as the transpose of that blocked form; float64 against lax.
    wg = _benchmark_module("winograd")

    def every(x, k, ct, pads):
        want = _reference(x, k, (1, 1), pads, (1, 1), 1)
        dx, dk = jax.vjp(lambda x, k: _reference(x, k, (1, 1), pads, (1, 1), 1), x, k)[1](ct)
        got = (wg.winograd(x, k, pads), wg.winograd(ct, wg.flipped(k), wg.input_grad_pads(pads)),
               wg.blocked(x, k, pads, 1),
               jax.linear_transpose(lambda dk: wg.blocked(x, dk, pads, 1, remat=True), k)(ct)[0])
        return got, (want, dx, want, dk)

    with jax.enable_x64():
        for i, (batch, h, w, c, f, pads) in enumerate(WINOGRAD_GRID):
            rng = np.random.default_rng(i)  # NumPy draws: no threefry to compile
            out = (batch, h + sum(pads[0]) - 2, w + sum(pads[1]) - 2, f)
            x, k, ct = (jnp.asarray(rng.standard_normal(s))
                        for s in ((batch, h, w, c), (3, 3, c, f), out))
            got, want = jax.jit(every, static_argnums=3)(x, k, ct, pads)
            for what, a, b in zip(("forward", "input grad", "blocked forward", "kernel grad"),
                                  got, want):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10,
                                           err_msg=f"{WINOGRAD_GRID[i]}: {what}")


# (input shape, kernel shape, strides, pads): odd sizes not divisible by the stride,
# kernels 1, 3, 5 (and 3x5, 5x1), strides 2, 3, (3, 2), (2, 1), asymmetric padding
STRIDED_GRID = [
    ((2, 9, 8, 3), (3, 3, 3, 5), (2, 2), ((1, 1), (1, 1))),
    ((3, 11, 7, 2), (5, 1, 2, 4), (3, 2), ((2, 0), (0, 3))),
    ((2, 7, 10, 4), (1, 1, 4, 3), (2, 2), ((0, 0), (0, 0))),
    ((2, 6, 9, 3), (3, 5, 3, 2), (2, 1), ((0, 2), (1, 1))),
    ((1, 10, 8, 2), (3, 3, 2, 3), (3, 3), ((1, 0), (0, 2))),
]


def test_benchmark_strided_input_gradients_equal_lax():
    # benchmarks/conv_grad.py --strided's space-to-depth and phase-split forms of a strided
    # conv (measured, lost levers: benchmarks/README.md) must be the conv they time, in
    # value and input gradient (their transposes), float64 against lax.
    cg = _benchmark_module("conv_grad")

    def every(x, w, ct, strides, pads):
        f = lambda x: _reference(x, w, strides, pads, (1, 1), 1)  # noqa: E731
        want = (f(x), jax.vjp(f, x)[1](ct)[0])
        got = [(g(x), jax.vjp(g, x)[1](ct)[0]) for g in (
            lambda x: cg.space_to_depth(x, w, strides, pads),
            lambda x: cg.phase_split(x, w, strides, pads))]
        return got, want

    with jax.enable_x64():
        for i, (x_shape, w_shape, strides, pads) in enumerate(STRIDED_GRID):
            rng = np.random.default_rng(i)  # NumPy draws: no threefry to compile
            x, w = (jnp.asarray(rng.standard_normal(s)) for s in (x_shape, w_shape))
            out = jax.eval_shape(lambda x: _reference(x, w, strides, pads, (1, 1), 1), x)
            ct = jnp.asarray(rng.standard_normal(out.shape))
            got, want = jax.jit(every, static_argnums=(3, 4))(x, w, ct, strides, pads)
            for form, pair in zip(("space_to_depth", "phase_split"), got):
                for what, a, b in zip(("value", "input grad"), pair, want):
                    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10,
                                               err_msg=f"{STRIDED_GRID[i]}: {form} {what}")


def test_benchmark_strided_step_conv_equals_lax_in_both_gradients_and_jvp():
    # the patched _conv_cpu.conv the --strided --step comparison trains with: values,
    # vjp in x and w, jvp (the x-tangent is the timed form), float64 against lax
    cg = _benchmark_module("conv_grad")
    x_shape, w_shape, strides, pads = STRIDED_GRID[1]

    def ref(x, w):
        return _reference(x, w, strides, pads, (1, 1), 1)
    with jax.enable_x64():
        rng = np.random.default_rng(7)
        x, w, dx, dw = (jnp.asarray(rng.standard_normal(s))
                        for s in (x_shape, w_shape, x_shape, w_shape))
        for fn in (cg.space_to_depth, cg.phase_split):
            fn.calls = 0
            patched = cg._strided_conv(fn)

            def f(x, w, patched=patched):
                return patched(x, w, strides, pads, (1, 1), 1, "im2col")

            y, vjp = jax.vjp(f, x, w)
            ct = jnp.asarray(rng.standard_normal(y.shape))
            y_ref, vjp_ref = jax.vjp(ref, x, w)
            got = (y, *vjp(ct), jax.jvp(f, (x, w), (dx, dw))[1])
            want = (y_ref, *vjp_ref(ct), jax.jvp(ref, (x, w), (dx, dw))[1])
            assert fn.calls >= 1  # the timed form really is the x-tangent
            for what, a, b in zip(("value", "x grad", "w grad", "jvp"), got, want):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=what)
