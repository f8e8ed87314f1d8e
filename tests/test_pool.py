"""Pooling against torch.nn.functional on the CPU (channels-last vs channels-first, converted).

Average pooling with padding divides by the number of real elements (PyTorch's
count_include_pad=False); "same" and asymmetric pads have no PyTorch spelling, so their
reference pads explicitly (-inf for max, zeros and a count of ones for the mean).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxlayers as jl
from jaxlayers.layers import pool

RNG = np.random.default_rng(1)
TOL = dict(rtol=1e-5, atol=1e-6)
MAX = {1: pool.MaxPool1D, 2: pool.MaxPool2D, 3: pool.MaxPool3D}
AVG = {1: pool.AvgPool1D, 2: pool.AvgPool2D, 3: pool.AvgPool3D}
MAX_T = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_T = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _to_torch(x):  # (N, *spatial, C) -> (N, C, *spatial)
    n = x.ndim - 2
    return torch.from_numpy(np.array(x, np.float32)).permute(0, n + 1, *range(1, n + 1))


def _from_torch(y):
    n = y.ndim - 2
    return y.permute(0, *range(2, n + 2), 1).detach().numpy()


def _tuple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _explicit_reference(x, pool_size, strides, pairs):
    """Max and mean over windows of an explicitly padded input, in PyTorch (2-D/3-D)."""
    n = x.ndim - 2
    flat = [v for pair in reversed(pairs) for v in pair]
    xt = _to_torch(x)
    mx = MAX_T[n](F.pad(xt, flat, value=-np.inf), pool_size, strides)
    total = AVG_T[n](F.pad(xt, flat), pool_size, strides, divisor_override=1)
    count = AVG_T[n](F.pad(torch.ones_like(xt), flat), pool_size, strides, divisor_override=1)
    return _from_torch(mx), _from_torch(total / count)


def _same_pairs(spatial, pool_size, strides):
    pairs = []
    for size, k, s in zip(spatial, pool_size, strides):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pairs.append((total // 2, total - total // 2))
    return pairs


# (n, pool_size, strides, padding, spatial)
POOL_CASES = [
    (1, 3, 2, 1, (8,)),
    (1, 2, None, "valid", (7,)),
    (2, 3, 2, 1, (7, 6)),
    (2, (3, 2), (1, 2), "valid", (7, 6)),
    (2, 2, None, "same", (5, 7)),
    (2, 3, 2, "same", (6, 5)),
    (2, (2, 3), 1, ((0, 1), (2, 1)), (4, 5)),
    (3, 2, None, "valid", (4, 5, 3)),
    (3, 3, 2, 1, (5, 4, 3)),
]


@pytest.mark.parametrize("n, pool_size, strides, padding, spatial", POOL_CASES)
def test_max_and_avg_pool_match_torch(n, pool_size, strides, padding, spatial):
    mx_layer = MAX[n](pool_size, strides, padding=padding)
    avg_layer = AVG[n](pool_size, strides, padding=padding)
    x = RNG.normal(size=(2,) + spatial + (3,)).astype(np.float32)
    mx, avg = jax.jit(lambda x: (mx_layer.apply({}, {}, x)[0], avg_layer.apply({}, {}, x)[0]))(x)
    k = _tuple(pool_size, n)
    s = k if strides is None else _tuple(strides, n)
    if padding == "valid" or isinstance(padding, int):
        p = 0 if padding == "valid" else padding
        ref_max = _from_torch(MAX_T[n](_to_torch(x), k, s, p))
        ref_avg = _from_torch(AVG_T[n](_to_torch(x), k, s, p, count_include_pad=False))
    else:
        pairs = _same_pairs(spatial, k, s) if padding == "same" else padding
        ref_max, ref_avg = _explicit_reference(x, k, s, pairs)
    if padding == "same":
        chex.assert_shape(mx, (2,) + tuple(-(-d // st) for d, st in zip(spatial, s)) + (3,))
    chex.assert_shape((mx, avg, ref_max, ref_avg), jl.output_shape(mx_layer, x.shape))
    chex.assert_trees_all_close(mx, ref_max, **TOL)
    chex.assert_trees_all_close(avg, ref_avg, **TOL)


def test_pool_gradients_match_torch_autograd():
    x = RNG.normal(size=(2, 7, 6, 3)).astype(np.float32)
    w = RNG.normal(size=(2, 4, 3, 3)).astype(np.float32)
    layers = (pool.MaxPool2D(3, 2, padding=1), pool.AvgPool2D(3, 2, padding=1))
    grads = jax.jit(lambda x: [jax.grad(lambda u: jnp.sum(l.apply({}, {}, u)[0] * w))(x)
                               for l in layers])(x)
    for g, fn in zip(grads, [lambda t: F.max_pool2d(t, 3, 2, 1),
                             lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False)]):
        xt = _to_torch(x).requires_grad_(True)
        (fn(xt) * _to_torch(w)).sum().backward()
        chex.assert_trees_all_close(g, _from_torch(xt.grad), **TOL)


def test_global_pools_match_numpy_with_keepdims():
    for n, shape in [(1, (2, 5, 3)), (2, (2, 3, 4, 3)), (3, (2, 2, 3, 2, 3))]:
        x = RNG.normal(size=shape).astype(np.float32)
        axes = tuple(range(1, n + 1))
        names = {1: "1D", 2: "2D", 3: "3D"}[n]
        gmax = getattr(pool, f"GlobalMaxPool{names}")
        gavg = getattr(pool, f"GlobalAvgPool{names}")
        chex.assert_trees_all_close(gmax().apply({}, {}, x)[0], x.max(axes), **TOL)
        chex.assert_trees_all_close(gavg().apply({}, {}, x)[0], x.mean(axes), **TOL)
        y = gavg(keepdims=True).apply({}, {}, x)[0]
        chex.assert_trees_all_close(y, x.mean(axes, keepdims=True), **TOL)
        assert jl.output_shape(gmax(keepdims=True), shape) == (2,) + (1,) * n + (3,)


@pytest.mark.parametrize("in_hw, out_hw", [((7, 6), (3, 4)), ((5, 5), (5, 5)),
                                           ((4, 6), (8, 3)), ((5, 7), 1)])
def test_adaptive_avg_pool_matches_torch(in_hw, out_hw):
    x = RNG.normal(size=(2,) + in_hw + (3,)).astype(np.float32)
    layer = pool.AdaptiveAvgPool2D(out_hw)
    chex.assert_trees_all_close(jax.jit(lambda x: layer.apply({}, {}, x)[0])(x),
                                _from_torch(F.adaptive_avg_pool2d(_to_torch(x), out_hw)), **TOL)


@pytest.mark.parametrize("factory, args, kwargs, match", [
    (pool.MaxPool2D, (2,), dict(padding="full"), r"MaxPool2D: padding must be 'valid', 'same'"),
    (pool.AvgPool1D, (0,), {}, r"AvgPool1D: pool_size must be a positive int"),
    (pool.AvgPool2D, (2, (1, 0)), {}, r"AvgPool2D: strides must be a positive int"),
    (pool.MaxPool3D, (2,), dict(padding=2),
     r"MaxPool3D: padding must be smaller than pool_size \(2, 2, 2\)"),
    (pool.AdaptiveAvgPool2D, ((3, 0),), {}, r"AdaptiveAvgPool2D: output_size must be"),
])
def test_bad_arguments_fail_at_construction(factory, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(*args, **kwargs)


def test_bad_inputs_fail_with_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"^MaxPool2D: input must have rank 4 \(N, H, W, C\), "
                                         r"got shape \(6, 6, 1\); add a batch axis\.$"):
        pool.MaxPool2D().apply({}, {}, jnp.zeros((6, 6, 1)))
    with pytest.raises(ValueError, match=r"AvgPool1D: the pool window \(5,\) must fit in the "
                                         r"padded input \(4,\)"):
        pool.AvgPool1D(5).apply({}, {}, jnp.zeros((1, 4, 2)))
    with pytest.raises(TypeError, match=r"GlobalAvgPool2D: input must have a floating dtype"):
        pool.GlobalAvgPool2D().apply({}, {}, jnp.zeros((1, 4, 4, 2), jnp.int32))
    with pytest.raises(TypeError, match=r"GlobalMaxPool2D: does not accept a jl.Masked"):
        pool.GlobalMaxPool2D().apply({}, {}, jl.Masked(jnp.zeros((1, 4, 4, 2)),
                                                       jnp.ones((1, 4), bool)))
    with pytest.raises(ValueError, match=r"GlobalAvgPool1D: a jl.Masked input must hold values "
                                         r"\(N, T, C\) and a mask \(N, T\), got values "
                                         r"\(2, 5, 3\) and mask \(2, 4\)"):
        pool.GlobalAvgPool1D().apply({}, {}, jl.Masked(jnp.zeros((2, 5, 3)),
                                                       jnp.ones((2, 4), bool)))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2D: input must have rank 4"):
        pool.AdaptiveAvgPool2D(2).apply({}, {}, jnp.zeros((1, 4, 4)))


class PoolWithAndWithoutJit(chex.TestCase):
    """chex.variants: masked and adaptive pooling, applied eagerly and under jit, against
    NumPy and PyTorch."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_global_pool_1d_honours_a_mask_and_ignores_masked_values(self):
        x = RNG.normal(size=(3, 4, 2)).astype(np.float32)
        x[0, 3] = 1e6  # a padded step with a huge value: it must not leak into either pool
        mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)

        def run(v, m):
            avg = pool.GlobalAvgPool1D().apply({}, {}, jl.Masked(v, m))[0]
            mx = pool.GlobalMaxPool1D(keepdims=True).apply({}, {}, jl.Masked(v, m))[0]
            grad = jax.grad(lambda u: pool.GlobalAvgPool1D().apply({}, {}, jl.Masked(u, m))[0]
                            .sum())(v)
            return avg, mx, grad

        avg, mx, g = self.variant(run)(x, mask)
        chex.assert_shape(avg, (3, 2))
        chex.assert_shape(mx, (3, 1, 2))
        chex.assert_shape(g, x.shape)
        chex.assert_trees_all_close(avg[0], x[0, :3].mean(0), **TOL)
        chex.assert_trees_all_close(avg[1], x[1, 0], **TOL)
        chex.assert_trees_all_close(mx[:2, 0], np.asarray([x[0, :3].max(0), x[1, 0]]), **TOL)
        # no valid step: 0, not nan
        chex.assert_trees_all_equal((avg[2], mx[2]), (np.zeros(2), np.zeros((1, 2))))
        chex.assert_tree_all_finite(g)
        chex.assert_trees_all_equal(np.asarray(g)[~mask], np.zeros((8, 2), np.float32))

    @chex.variants(with_jit=True, without_jit=True)
    def test_adaptive_avg_pool_matches_torch_on_uneven_windows(self):
        x = RNG.normal(size=(2, 7, 6, 3)).astype(np.float32)
        apply = self.variant(lambda x: pool.AdaptiveAvgPool2D((3, 4)).apply({}, {}, x)[0])
        y = apply(x)
        chex.assert_shape(y, (2, 3, 4, 3))
        chex.assert_trees_all_close(
            y, _from_torch(F.adaptive_avg_pool2d(_to_torch(x), (3, 4))), **TOL)
