"""Convolutions against torch.nn.functional on the CPU (layouts converted explicitly).

Ours is channels-last with kernels spatial + (in, out); PyTorch is channels-first with conv
weights (out, in // groups, *spatial) and transposed-conv weights (in, out, *spatial).
Each configuration is jitted once; shapes are tiny and odd on purpose.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxlayers as jl
from jaxlayers.layers import conv

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)
TOL = dict(rtol=1e-5, atol=1e-5)
CONV_T = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
CONV = {1: conv.Conv1D, 2: conv.Conv2D, 3: conv.Conv3D}
CONV_TRANSPOSE = {1: conv.Conv1DTranspose, 2: conv.Conv2DTranspose, 3: conv.Conv3DTranspose}


def _x_to_torch(x):  # (N, *spatial, C) -> (N, C, *spatial)
    n = x.ndim - 2
    return torch.from_numpy(np.array(x, np.float32)).permute(0, n + 1, *range(1, n + 1))


def _y_from_torch(y):  # (N, C, *spatial) -> (N, *spatial, C)
    n = y.ndim - 2
    return y.permute(0, *range(2, n + 2), 1).detach().numpy()


def _kernel_to_torch(k):  # (*spatial, in // g, out) -> (out, in // g, *spatial)
    n = k.ndim - 2
    return torch.from_numpy(np.array(k, np.float32)).permute(n + 1, n, *range(n))


def _transposed_kernel_to_torch(k):  # (*spatial, in, out) -> (in, out, *spatial)
    n = k.ndim - 2
    return torch.from_numpy(np.array(k, np.float32)).permute(n, n + 1, *range(n))


def _tuple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _torch_pairs(x_shape, padding, kernel, strides, dilation):
    """Our padding as explicit (low, high) pairs, "same" by the TF/lax rule (extra at the end)."""
    n = len(x_shape) - 2
    if padding == "valid":
        return [(0, 0)] * n
    if padding == "same":
        pairs = []
        for size, k, s, d in zip(x_shape[1:-1], _tuple(kernel, n), _tuple(strides, n),
                                 _tuple(dilation, n)):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    if isinstance(padding, int):
        return [(padding, padding)] * n
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _torch_pad(xt, pairs):
    flat = [v for pair in reversed(pairs) for v in pair]  # F.pad wants the last axis first
    return F.pad(xt, flat)


def _params(layer, shape):
    """Random normal params of the shapes `init` gives, found without running init.

    jax.eval_shape traces init only: running it would compile the PRNG and initializer
    ops, which costs seconds on XLA:CPU, far more than the convolutions under test.
    """
    spec = jax.eval_shape(lambda k: layer.init(k, shape)[0], KEY)
    return jax.tree.map(lambda s: RNG.normal(size=s.shape).astype(np.float32), spec)


def _apply_jit(layer):
    return jax.jit(lambda p, x: layer.apply(p, {}, x)[0])


# (n, C_in, filters, kernel, strides, padding, dilation, groups, spatial)
CONV_CASES = [
    (1, 3, 4, 3, 2, "valid", 1, 1, (9,)),
    (1, 4, 6, 2, 1, "same", 2, 2, (7,)),
    (1, 2, 3, 4, 3, ((1, 2),), 1, 1, (11,)),
    (2, 3, 5, (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2), 1, (7, 6)),
    (2, 4, 6, 3, 1, "same", 1, 2, (5, 5)),
    (2, 4, 4, 3, 2, "same", 1, 4, (6, 7)),
    (2, 3, 2, 5, 1, 2, 1, 1, (5, 5)),
    (2, 2, 3, (2, 3), 3, (1, 0), 2, 1, (8, 9)),
    (2, 3, 4, 1, 2, "valid", 1, 1, (7, 7)),
    (3, 2, 3, (2, 3, 2), (1, 2, 1), "same", 1, 1, (4, 5, 3)),
    (3, 4, 2, 3, 2, 1, (1, 1, 2), 2, (5, 4, 6)),
]


@pytest.mark.parametrize("n, cin, filters, kernel, strides, padding, dilation, groups, spatial",
                         CONV_CASES)
def test_conv_matches_torch(n, cin, filters, kernel, strides, padding, dilation, groups,
                            spatial):
    layer = CONV[n](filters, kernel, strides=strides, padding=padding, dilation=dilation,
                    groups=groups)
    x = RNG.normal(size=(2,) + spatial + (cin,)).astype(np.float32)
    params = _params(layer, x.shape)
    chex.assert_shape(params["kernel"], _tuple(kernel, n) + (cin // groups, filters))
    y = _apply_jit(layer)(params, x)
    pairs = _torch_pairs(x.shape, padding, kernel, strides, dilation)
    ref = CONV_T[n](_torch_pad(_x_to_torch(x), pairs), _kernel_to_torch(params["kernel"]),
                    torch.from_numpy(np.array(params["bias"])), stride=strides,
                    dilation=dilation, groups=groups)
    chex.assert_shape(y, jl.output_shape(layer, x.shape))
    chex.assert_trees_all_close(y, _y_from_torch(ref), **TOL)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv_same_stride_one_matches_torch_padding_same_and_no_bias_key():
    layer = conv.Conv2D(3, (3, 4), padding="same", dilation=(2, 1), use_bias=False,
                        activation="relu")
    x = RNG.normal(size=(1, 6, 5, 2)).astype(np.float32)
    params = _params(layer, x.shape)
    assert set(params) == {"kernel"}
    ref = F.conv2d(_x_to_torch(x), _kernel_to_torch(params["kernel"]), padding="same",
                   dilation=(2, 1))
    chex.assert_trees_all_close(layer.apply(params, {}, x)[0], _y_from_torch(torch.relu(ref)),
                                **TOL)


def test_depthwise_and_separable_match_torch_grouped_convs():
    x = RNG.normal(size=(2, 7, 6, 3)).astype(np.float32)
    xt = _x_to_torch(x)
    dw = conv.DepthwiseConv2D((3, 2), depth_multiplier=2, strides=2, padding=1,
                              )
    p = _params(dw, x.shape)
    chex.assert_shape(p["kernel"], (3, 2, 1, 6))
    ref = F.conv2d(xt, _kernel_to_torch(p["kernel"]), torch.from_numpy(np.array(p["bias"])),
                   stride=2, padding=1, groups=3)
    chex.assert_trees_all_close(dw.apply(p, {}, x)[0], _y_from_torch(ref), **TOL)

    sep = conv.SeparableConv2D(4, 3, depth_multiplier=2, padding="same", dilation=2,
                               bias_init=jl.initializers.normal(1.0))
    p = _params(sep, x.shape)
    assert jax.tree.map(jnp.shape, p) == {"depthwise_kernel": (3, 3, 1, 6),
                                          "pointwise_kernel": (1, 1, 6, 4), "bias": (4,)}
    h = F.conv2d(xt, _kernel_to_torch(p["depthwise_kernel"]), padding="same", dilation=2,
                 groups=3)
    ref = F.conv2d(h, _kernel_to_torch(p["pointwise_kernel"]),
                   torch.from_numpy(np.array(p["bias"])))
    chex.assert_trees_all_close(sep.apply(p, {}, x)[0], _y_from_torch(ref), **TOL)

    x1 = RNG.normal(size=(2, 9, 2)).astype(np.float32)
    sep1 = conv.SeparableConv1D(3, 3, strides=2, use_bias=False)
    p = _params(sep1, x1.shape)
    assert jax.tree.map(jnp.shape, p) == {"depthwise_kernel": (3, 1, 2),
                                          "pointwise_kernel": (1, 2, 3)}
    h = F.conv1d(_x_to_torch(x1), _kernel_to_torch(p["depthwise_kernel"]), stride=2, groups=2)
    ref = F.conv1d(h, _kernel_to_torch(p["pointwise_kernel"]))
    chex.assert_trees_all_close(sep1.apply(p, {}, x1)[0], _y_from_torch(ref), **TOL)


# (n, C_in, filters, kernel, strides, padding, output_padding, dilation, spatial)
TRANSPOSE_CASES = [
    (1, 3, 2, 3, 2, 0, 1, 1, (5,)),
    (1, 2, 3, 4, 3, 2, 0, 2, (4,)),
    (2, 3, 5, (3, 4), (2, 3), (1, 2), (1, 0), (2, 1), (4, 3)),
    (2, 2, 2, 2, 2, "valid", 0, 1, (3, 4)),
    (2, 2, 3, 3, 1, 1, 0, 1, (5, 5)),
    (3, 2, 3, 3, 2, 1, 1, 1, (3, 2, 3)),
]


@pytest.mark.parametrize("n, cin, filters, kernel, strides, padding, output_padding, "
                         "dilation, spatial", TRANSPOSE_CASES)
def test_conv_transpose_matches_torch(n, cin, filters, kernel, strides, padding,
                                      output_padding, dilation, spatial):
    layer = CONV_TRANSPOSE[n](filters, kernel, strides=strides, padding=padding,
                              output_padding=output_padding, dilation=dilation,
                              bias_init=jl.initializers.normal(1.0))
    x = RNG.normal(size=(2,) + spatial + (cin,)).astype(np.float32)
    params = _params(layer, x.shape)
    chex.assert_shape(params["kernel"], _tuple(kernel, n) + (cin, filters))
    y = _apply_jit(layer)(params, x)
    ref = CONV_TRANSPOSE_T[n](_x_to_torch(x), _transposed_kernel_to_torch(params["kernel"]),
                              torch.from_numpy(np.array(params["bias"])), stride=strides,
                              padding=0 if padding == "valid" else padding,
                              output_padding=output_padding, dilation=dilation)
    chex.assert_shape(y, jl.output_shape(layer, x.shape))
    chex.assert_trees_all_close(y, _y_from_torch(ref), **TOL)


def test_conv_transpose_explicit_pairs_crop_the_full_output():
    x = RNG.normal(size=(1, 3, 4, 2)).astype(np.float32)
    layer = conv.Conv2DTranspose(3, 3, strides=2, padding=((0, 2), (1, 0)), use_bias=False)
    params = _params(layer, x.shape)
    full = F.conv_transpose2d(_x_to_torch(x), _transposed_kernel_to_torch(params["kernel"]),
                              stride=2)  # (1, 3, 7, 9)
    chex.assert_trees_all_close(layer.apply(params, {}, x)[0],
                                _y_from_torch(full[:, :, 0:5, 1:9]), **TOL)


@pytest.mark.parametrize("kernel, strides, dilation", [(3, 2, 1), (4, 2, 1), (1, 2, 1),
                                                      (2, 3, 2)])
def test_conv_transpose_same_is_the_adjoint_of_a_same_conv(kernel, strides, dilation):
    """"same" (Keras): y = J^T x for the conv J with "same" padding on an input of in·s."""
    x = RNG.normal(size=(1, 3, 4, 2)).astype(np.float32)
    layer = conv.Conv2DTranspose(3, kernel, strides=strides, padding="same",
                                 dilation=dilation, use_bias=False)
    params = _params(layer, x.shape)
    y = layer.apply(params, {}, x)[0]
    chex.assert_shape(y, (1, 3 * strides, 4 * strides, 3))
    forward = conv.Conv2D(2, kernel, strides=strides, padding="same", dilation=dilation,
                          use_bias=False)
    fwd_params = {"kernel": jnp.swapaxes(params["kernel"], -1, -2)}  # (k, k, out=3, in=2)
    z, vjp = jax.vjp(lambda u: forward.apply(fwd_params, {}, u)[0], jnp.zeros(y.shape))
    chex.assert_shape(z, x.shape)
    chex.assert_trees_all_close(y, vjp(jnp.asarray(x))[0], **TOL)


def _torch_grads(fn, x, kernel, weights):
    xt = torch.from_numpy(x).requires_grad_(True)
    kt = torch.from_numpy(kernel).requires_grad_(True)
    (fn(xt, kt) * torch.from_numpy(weights)).sum().backward()
    return xt.grad.numpy(), kt.grad.numpy()


def test_conv_and_conv_transpose_gradients_match_torch_autograd():
    x = RNG.normal(size=(2, 7, 6, 4)).astype(np.float32)
    layer = conv.Conv2D(4, 3, strides=2, padding=1, dilation=(1, 2), groups=2, use_bias=False)
    params = _params(layer, x.shape)
    w = RNG.normal(size=jl.output_shape(layer, x.shape)).astype(np.float32)
    gx, gk = jax.jit(jax.grad(lambda x, k: jnp.sum(layer.apply({"kernel": k}, {}, x)[0] * w),
                              argnums=(0, 1)))(x, params["kernel"])
    tx, tk = _torch_grads(
        lambda xt, kt: F.conv2d(xt.permute(0, 3, 1, 2), kt.permute(3, 2, 0, 1), stride=2,
                                padding=1, dilation=(1, 2), groups=2).permute(0, 2, 3, 1),
        x, np.asarray(params["kernel"]), w)
    chex.assert_trees_all_close(gx, tx, **TOL)
    chex.assert_trees_all_close(gk, tk, rtol=1e-5, atol=1e-4)  # sums of ~100 products

    x = RNG.normal(size=(2, 4, 3, 3)).astype(np.float32)
    layer = conv.Conv2DTranspose(2, (3, 2), strides=(2, 3), padding=1, output_padding=(1, 2),
                                 use_bias=False)
    params = _params(layer, x.shape)
    w = RNG.normal(size=jl.output_shape(layer, x.shape)).astype(np.float32)
    gx, gk = jax.jit(jax.grad(lambda x, k: jnp.sum(layer.apply({"kernel": k}, {}, x)[0] * w),
                              argnums=(0, 1)))(x, params["kernel"])
    tx, tk = _torch_grads(
        lambda xt, kt: F.conv_transpose2d(xt.permute(0, 3, 1, 2), kt.permute(2, 3, 0, 1),
                                          stride=(2, 3), padding=1,
                                          output_padding=(1, 2)).permute(0, 2, 3, 1),
        x, np.asarray(params["kernel"]), w)
    chex.assert_trees_all_close(gx, tx, **TOL)
    chex.assert_trees_all_close(gk, tk, rtol=1e-5, atol=1e-4)


def test_bfloat16_compute_with_float32_params():
    layer = conv.Conv2D(3, 3, padding="same", dtype=jnp.bfloat16)
    x = RNG.normal(size=(1, 5, 5, 2)).astype(np.float32)
    spec = jax.eval_shape(lambda k: layer.init(k, x.shape)[0], KEY)
    assert spec["kernel"].dtype == spec["bias"].dtype == jnp.float32
    params = _params(layer, x.shape)
    y = layer.apply(params, {}, x)[0]
    assert y.dtype == jnp.bfloat16
    y32 = conv.Conv2D(3, 3, padding="same").apply(params, {}, x)[0]
    chex.assert_trees_all_close(np.asarray(y, np.float32), y32, rtol=0.05, atol=0.1)


# Bad arguments fail at construction.
@pytest.mark.parametrize("factory, args, kwargs, match", [
    (conv.Conv2D, (4, 3), dict(padding="full"), r"Conv2D: padding must be 'valid', 'same'"),
    (conv.Conv2D, (4, 3), dict(strides=0), r"Conv2D: strides must be a positive int"),
    (conv.Conv2D, (4, 3), dict(dilation=(1, -1)), r"Conv2D: dilation must be a positive int"),
    (conv.Conv2D, (4, (3, 3, 3)), {}, r"Conv2D: kernel_size must be .* tuple of 2"),
    (conv.Conv2D, (0, 3), {}, r"Conv2D: filters must be a positive int, got 0"),
    (conv.Conv2D, (5, 3), dict(groups=2), r"Conv2D: filters must be divisible by groups=2, "
                                          r"got filters=5"),
    (conv.Conv1D, (4, 3), dict(padding=-1), r"Conv1D: padding must be"),
    (conv.Conv3D, (4, 3), dict(activation="relu6"), r"Conv3D: activation must be one of"),
    (conv.DepthwiseConv2D, (3,), dict(depth_multiplier=0), r"DepthwiseConv2D: depth_multiplier"),
    (conv.SeparableConv1D, (4, 3), dict(padding="SAME"), r"SeparableConv1D: padding must be"),
    (conv.Conv2DTranspose, (4, 3), dict(strides=2, output_padding=2),
     r"Conv2DTranspose: output_padding must be smaller than strides or dilation"),
    (conv.Conv1DTranspose, (4, 3), dict(strides=2, padding="same", output_padding=1),
     r"Conv1DTranspose: output_padding must be 0 with padding='same'"),
])
def test_bad_arguments_fail_at_construction(factory, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(*args, **kwargs)


# Bad shapes and dtypes fail at trace time (init or apply), naming the layer and the values.
def test_bad_inputs_fail_with_the_layer_and_the_shapes():
    layer = conv.Conv2D(4, 3)
    params = _params(layer, (2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"^Conv2D: input must have rank 4 \(N, H, W, C\), got "
                                         r"shape \(28, 28, 1\); add a batch axis\.$"):
        layer.init(KEY, (28, 28, 1))
    with pytest.raises(ValueError, match=r"Conv2D: input must have rank 4 .* add a batch axis"):
        layer.apply(params, {}, jnp.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"Conv2D: input must have 3 channels on the last "
                                         r"axis .*got shape \(2, 8, 8, 5\)"):
        layer.apply(params, {}, jnp.zeros((2, 8, 8, 5)))
    with pytest.raises(ValueError, match=r"Conv2D: the kernel window \(3, 3\) must fit in the "
                                         r"padded input \(2, 5\)"):
        layer.apply(params, {}, jnp.zeros((2, 2, 5, 3)))
    with pytest.raises(TypeError, match=r"Conv2D: input must have a floating dtype, got int32"):
        layer.apply(params, {}, jnp.zeros((2, 8, 8, 3), jnp.int32))
    with pytest.raises(TypeError, match=r"Conv2D: does not accept a jl.Masked"):
        layer.apply(params, {}, jl.Masked(jnp.zeros((2, 8, 8, 3)), jnp.ones((2, 8), bool)))
    with pytest.raises(ValueError, match=r"Conv1D: input channels must be divisible by "
                                         r"groups=2, got 3 channels"):
        conv.Conv1D(4, 3, groups=2).init(KEY, (2, 9, 3))
    with pytest.raises(ValueError, match=r"Conv3D: the kernel window \(5, 5, 5\) must fit"):
        c3 = conv.Conv3D(2, 3, dilation=2)
        c3.apply(_params(c3, (1, 4, 6, 6, 1)), {}, jnp.zeros((1, 4, 6, 6, 1)))
    with pytest.raises(ValueError, match=r"DepthwiseConv2D: input must have 3 channels"):
        dw = conv.DepthwiseConv2D(3)
        dw.apply(_params(dw, (1, 5, 5, 3)), {}, jnp.zeros((1, 5, 5, 2)))
    with pytest.raises(ValueError, match=r"Conv1DTranspose: output size must be positive"):
        t = conv.Conv1DTranspose(2, 1, padding=1)
        t.apply(_params(t, (1, 1, 2)), {}, jnp.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match=r"Conv2DTranspose: input must have rank 4"):
        conv.Conv2DTranspose(2, 3).init(KEY, (5, 5, 2))
