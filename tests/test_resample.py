"""UpSampling/Resize/ZeroPadding/Cropping, CrossChannelNormalization and SpatialDropout.

References: torch.nn.functional.interpolate (align_corners=False: half-pixel centres, as
Keras and jax.image.resize) and local_response_norm on the CPU; NumPy for the borders.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxlayers as jl
from jaxlayers.layers import lrn, resample, spatial_dropout

RNG = np.random.default_rng(2)
TOL = dict(rtol=1e-5, atol=1e-5)


def _to_torch(x):
    n = x.ndim - 2
    return torch.from_numpy(np.array(x, np.float32)).permute(0, n + 1, *range(1, n + 1))


def _from_torch(y):
    n = y.ndim - 2
    return y.permute(0, *range(2, n + 2), 1).detach().numpy()


def _run(layer, x, variant=jax.jit):
    """layer.apply(x) under `variant`: jax.jit, or a chex variant (with or without jit)."""
    return variant(lambda x: layer.apply({}, {}, x)[0])(x)


@pytest.mark.parametrize("layer, shape, mode, scale", [
    (resample.UpSampling1D(3), (2, 4, 3), "nearest", (3,)),
    (resample.UpSampling1D(2, interpolation="linear"), (2, 5, 2), "linear", (2,)),
    (resample.UpSampling2D((2, 3)), (2, 3, 4, 2), "nearest", (2, 3)),
    (resample.UpSampling2D((3, 2), interpolation="bilinear"), (2, 5, 4, 2), "bilinear", (3, 2)),
    (resample.UpSampling3D((1, 2, 3)), (1, 2, 3, 2, 2), "nearest", (1, 2, 3)),
    (resample.UpSampling3D(2, interpolation="trilinear"), (1, 2, 3, 2, 2), "trilinear",
     (2, 2, 2)),
])
def test_upsampling_matches_torch_interpolate(layer, shape, mode, scale):
    x = RNG.normal(size=shape).astype(np.float32)
    kw = {} if mode == "nearest" else dict(align_corners=False)
    ref = F.interpolate(_to_torch(x), scale_factor=scale, mode=mode, **kw)
    y = _run(layer, x)
    chex.assert_shape(y, jl.output_shape(layer, shape))
    chex.assert_trees_all_close(y, _from_torch(ref), **TOL)


@pytest.mark.parametrize("size, method, antialias, torch_mode", [
    ((4, 5), "bilinear", False, "bilinear"),  # down
    ((13, 10), "bilinear", False, "bilinear"),  # up
    ((4, 11), "bilinear", True, "bilinear"),  # down in H (filtered), up in W
    ((5, 3), "nearest", False, "nearest-exact"),  # half-pixel nearest, as TF2/Keras
])
def test_resize_matches_torch_interpolate(size, method, antialias, torch_mode):
    x = RNG.normal(size=(2, 9, 7, 3)).astype(np.float32)
    kw = {} if torch_mode == "nearest-exact" else dict(align_corners=False, antialias=antialias)
    ref = F.interpolate(_to_torch(x), size=size, mode=torch_mode, **kw)
    y = _run(resample.Resize(*size, method=method, antialias=antialias), x)
    chex.assert_trees_all_close(y, _from_torch(ref), **TOL)


def test_zero_padding_and_cropping_take_keras_forms_and_invert_each_other():
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    for arg, pairs in [(1, ((1, 1), (1, 1))), ((2, 1), ((2, 2), (1, 1))),
                       (((0, 1), (2, 3)), ((0, 1), (2, 3)))]:
        padded = resample.ZeroPadding2D(arg).apply({}, {}, x)[0]
        chex.assert_trees_all_equal(padded, np.pad(x, ((0, 0),) + pairs + ((0, 0),)))
        back = resample.Cropping2D(arg).apply({}, {}, padded)[0]
        chex.assert_trees_all_equal(back, x)
    x1 = RNG.normal(size=(2, 6, 2)).astype(np.float32)
    chex.assert_trees_all_equal(resample.ZeroPadding1D((1, 2)).apply({}, {}, x1)[0],
                                np.pad(x1, ((0, 0), (1, 2), (0, 0))))
    chex.assert_trees_all_equal(resample.Cropping1D((1, 2)).apply({}, {}, x1)[0], x1[:, 1:4])
    x3 = RNG.normal(size=(1, 3, 4, 5, 2)).astype(np.float32)
    chex.assert_trees_all_equal(resample.Cropping3D((1, (0, 2), 2)).apply({}, {}, x3)[0],
                                x3[:, 1:2, 0:2, 2:3])
    assert jl.output_shape(resample.ZeroPadding3D(), x3.shape) == (1, 5, 6, 7, 2)


@pytest.mark.parametrize("shape, size, alpha, beta, k", [
    ((2, 3, 4, 7), 5, 1e-4, 0.75, 2.0),  # AlexNet's defaults
    ((2, 5, 6), 4, 0.5, 0.9, 1.5),  # an even window reaches one further down than up
])
def test_cross_channel_normalization_matches_torch_local_response_norm(shape, size, alpha,
                                                                       beta, k):
    x = (RNG.normal(size=shape) * 10).astype(np.float32)
    layer = lrn.CrossChannelNormalization(size, alpha=alpha, beta=beta, k=k)
    ref = F.local_response_norm(_to_torch(x), size, alpha=alpha, beta=beta, k=k)
    chex.assert_trees_all_close(_run(layer, x), _from_torch(ref), **TOL)


def test_spatial_dropout_drops_whole_channels_and_rescales():
    x = jnp.ones((4, 3, 5, 16))
    layer = spatial_dropout.SpatialDropout2D(0.5)
    drop = jax.jit(lambda x, k: layer.apply({}, {}, x, key=k, training=True)[0])
    y = np.asarray(drop(x, jax.random.key(1)))
    per_channel = y.reshape(4, 15, 16)
    # one decision per (example, channel)
    chex.assert_trees_all_equal(per_channel, np.broadcast_to(per_channel[:, :1], (4, 15, 16)))
    assert set(np.unique(y)) <= {0.0, 2.0} and 0 < (y == 0).mean() < 1
    assert not np.array_equal(y, drop(x, jax.random.key(2)))
    chex.assert_trees_all_equal(drop(x, jax.random.key(1)), y)  # same key, same mask
    assert layer.apply({}, {}, x)[0] is x  # inference: identity
    with pytest.raises(ValueError, match=r"SpatialDropout2D: training=True needs a PRNG key"):
        layer.apply({}, {}, x, training=True)
    with pytest.raises(ValueError, match=r"SpatialDropout1D: rate must be a float in \[0, 1\)"):
        spatial_dropout.SpatialDropout1D(1.0)


def test_spatial_dropout_1d_passes_a_mask_on():
    v, mask = jnp.ones((2, 6, 8)), jnp.array([[1] * 6, [1] * 3 + [0] * 3], bool)
    layer = spatial_dropout.SpatialDropout1D(0.25)
    out = jax.jit(lambda m: layer.apply({}, {}, m, key=jax.random.key(0), training=True)[0])(
        jl.Masked(v, mask))
    assert isinstance(out, jl.Masked)
    chex.assert_trees_all_equal(out.mask, mask)
    values = np.asarray(out.values)
    chex.assert_shape(values, (2, 6, 8))
    chex.assert_trees_all_equal(values, np.broadcast_to(values[:, :1], values.shape))


@pytest.mark.parametrize("factory, args, kwargs, exc, match", [
    (resample.UpSampling2D, (2,), dict(interpolation="linear"), ValueError,
     r"UpSampling2D: interpolation must be one of \['bilinear', 'nearest'\], got 'linear'"),
    (resample.UpSampling1D, (0,), {}, ValueError, r"UpSampling1D: size must be a positive int"),
    (resample.Resize, (4, 4), dict(method="area"), ValueError, r"Resize: method must be one of"),
    (resample.ZeroPadding2D, ((1, 2, 3),), {}, ValueError, r"ZeroPadding2D: padding must be"),
    (resample.Cropping1D, (-1,), {}, ValueError, r"Cropping1D: cropping must be an int >= 0"),
    (lrn.CrossChannelNormalization, (0,), {}, ValueError,
     r"CrossChannelNormalization: size must be a positive int"),
    (lrn.CrossChannelNormalization, (), dict(k=0.0), ValueError,
     r"CrossChannelNormalization: k must be a positive number"),
])
def test_bad_arguments_fail_at_construction(factory, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        factory(*args, **kwargs)


def test_bad_inputs_fail_with_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"Cropping2D: cropping \(\(2, 2\), \(0, 0\)\) must "
                                         r"leave at least one position on each spatial axis, "
                                         r"got input shape \(1, 4, 5, 3\)"):
        resample.Cropping2D(((2, 2), 0)).apply({}, {}, jnp.zeros((1, 4, 5, 3)))
    with pytest.raises(ValueError, match=r"Resize: input must have rank 4 .*add a batch axis"):
        resample.Resize(4, 4).apply({}, {}, jnp.zeros((5, 5, 3)))
    with pytest.raises(TypeError, match=r"UpSampling3D: input must have a floating dtype"):
        resample.UpSampling3D().apply({}, {}, jnp.zeros((1, 2, 2, 2, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"CrossChannelNormalization: input must have rank "
                                         r">= 2"):
        lrn.CrossChannelNormalization().apply({}, {}, jnp.zeros((5,)))
    with pytest.raises(ValueError, match=r"SpatialDropout2D: input must have rank 4"):
        spatial_dropout.SpatialDropout2D(0.1).apply({}, {}, jnp.zeros((2, 5, 3)))
    with pytest.raises(TypeError, match=r"SpatialDropout2D: does not accept a jl.Masked"):
        spatial_dropout.SpatialDropout2D(0.1).apply(
            {}, {}, jl.Masked(jnp.zeros((2, 5, 5, 3)), jnp.ones((2, 5), bool)))


class ResampleWithAndWithoutJit(chex.TestCase):
    """chex.variants: `_run` under jit and eagerly, on one case of each PyTorch reference
    (the parametrized tests above run under jit only)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_interpolation_and_local_response_norm_match_torch(self):
        rng = np.random.default_rng(3)  # the same draws for both variants
        x = rng.normal(size=(2, 5, 4, 2)).astype(np.float32)
        up = _run(resample.UpSampling2D((3, 2), interpolation="bilinear"), x, self.variant)
        ref = F.interpolate(_to_torch(x), scale_factor=(3, 2), mode="bilinear",
                            align_corners=False)
        chex.assert_shape(up, (2, 15, 8, 2))
        chex.assert_trees_all_close(up, _from_torch(ref), **TOL)
        resized = _run(resample.Resize(3, 7, antialias=True), x, self.variant)
        ref = F.interpolate(_to_torch(x), size=(3, 7), mode="bilinear", align_corners=False,
                            antialias=True)
        chex.assert_shape(resized, (2, 3, 7, 2))
        chex.assert_trees_all_close(resized, _from_torch(ref), **TOL)
        x = (rng.normal(size=(2, 3, 4, 7)) * 10).astype(np.float32)
        normed = _run(lrn.CrossChannelNormalization(5, alpha=1e-4, beta=0.75, k=2.0), x,
                      self.variant)
        ref = F.local_response_norm(_to_torch(x), 5, alpha=1e-4, beta=0.75, k=2.0)
        chex.assert_shape(normed, x.shape)
        chex.assert_trees_all_close(normed, _from_torch(ref), **TOL)
