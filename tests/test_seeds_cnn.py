"""The seeds' CNN worked examples (convolution, pooling, sizes, parameter counts).

Inputs and printed values are those catalogued in /work/shared/SEED_EXAMPLES.md (ids in the
test names, and as the catalogue spells them in docstrings and comments); where a seed
prints a wrong value the test says so in its name and asserts the right one. Convolution
is cross-correlation (no kernel flip), channels-last, HWIO.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl
from jaxlayers.layers import conv, pool

KEY = jax.random.key(0)


def _conv2d(x2d, kernel2d, *, padding="valid", activation=None, bias=None):
    """One-channel, one-filter Conv2D on a 2-D image with a given kernel; returns 2-D."""
    layer = conv.Conv2D(1, np.shape(kernel2d), padding=padding, activation=activation,
                        use_bias=bias is not None)
    params = {"kernel": jnp.asarray(kernel2d, jnp.float32)[:, :, None, None]}
    if bias is not None:
        params["bias"] = jnp.full((1,), bias, jnp.float32)
    x = jnp.asarray(x2d, jnp.float32)[None, :, :, None]
    return np.asarray(layer.apply(params, {}, x)[0][0, :, :, 0])


def _pool2d(layer, x2d):
    return np.asarray(layer.apply({}, {}, jnp.asarray(x2d, jnp.float32)[None, :, :, None])[0]
                      [0, :, :, 0])


def _n_params(layer, input_shape):
    return jl.count_params(jax.eval_shape(lambda k: layer.init(k, input_shape)[0], KEY))


X_002 = [[1, 3, -1, 0], [2, -2, 0, 5], [4, 1, -1, 3], [-3, 0, 1, 2]]


def test_002_e1_e3_convolution_then_relu():
    """002-e1 (valid cross-correlation) and 002-e3 (its ReLU)."""
    k = [[1, 0], [2, -1]]
    chex.assert_trees_all_equal(_conv2d(X_002, k),
                                np.asarray([[7, -1, -6], [9, 1, -5], [-2, 0, -1]]))
    chex.assert_trees_all_equal(_conv2d(X_002, k, activation="relu"),
                                np.asarray([[7, 0, 0], [9, 1, 0], [0, 0, 0]]))
    # a flipped kernel (true convolution) would give [[3, -5, 6], ...]: not what the seed does
    assert _conv2d(X_002, np.flip(k))[0, 0] == 3


def test_002_e4_max_pooling_of_the_input_not_the_relu_map():
    """002-e4: 2×2 max pooling of 002-e1's input X."""
    chex.assert_trees_all_equal(_pool2d(pool.MaxPool2D(2), X_002), np.asarray([[3, 5], [4, 3]]))


def test_003_q13_e1_conv1d_is_cross_correlation():
    """003-Q13-e1: [1, 2, 3, 4, 5] ⋆ [1, 0, -1] = [-2, -2, -2]."""
    layer = conv.Conv1D(1, 3, use_bias=False)
    y = layer.apply({"kernel": jnp.asarray([1.0, 0.0, -1.0])[:, None, None]}, {},
                    jnp.arange(1.0, 6.0)[None, :, None])[0]
    # np.convolve (flipped) gives [2, 2, 2]
    chex.assert_trees_all_equal(y.ravel(), np.asarray([-2, -2, -2]))


def test_003_q13_e2_horizontal_edge_detector_on_1_to_25():
    """003-Q13-e2: the 5×5 image of 1..25 gives 30 everywhere."""
    image = np.arange(1, 26).reshape(5, 5)
    chex.assert_trees_all_equal(_conv2d(image, [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
                                np.full((3, 3), 30))  # flipped: -30


def test_003_q13_e3_sobel_x_seed_error_printed_3x5_map_is_wrong():
    """003-Q13-e3: the seed prints a 3x5 map with rows "0 0 +4 0 0": no padding gives 1x4
    [0, 4, 4, 0], a step edge gives two +4 columns; "same" zero padding gives the 3x6 map
    below."""
    rows = np.tile([0, 0, 0, 1, 1, 1], (3, 1))
    sobel_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    chex.assert_trees_all_equal(_conv2d(rows, sobel_x), np.asarray([[0, 4, 4, 0]]))
    chex.assert_trees_all_equal(_conv2d(rows, sobel_x, padding="same"),
                                np.asarray([[0, 0, 3, 3, 0, -3], [0, 0, 4, 4, 0, -4],
                                            [0, 0, 3, 3, 0, -3]]))


def test_003_q13_e4_box_blur():
    """003-Q13-e4: 450 / 9 = 50."""
    window = np.arange(10, 100, 10).reshape(3, 3)
    chex.assert_trees_all_close(_conv2d(window, np.full((3, 3), 1 / 9)), np.asarray([[50]]),
                                rtol=1e-6)


X_003 = [[1, 3, 2, 4], [5, 6, 1, 2], [1, 2, 3, 4], [0, 1, 7, 8]]


def test_003_q13_e6_e7_e8_max_average_and_global_average_pooling():
    """003-Q13-e6 (max), 003-Q13-e7 (average), 003-Q13-e8 (global average)."""
    chex.assert_trees_all_equal(_pool2d(pool.MaxPool2D(2, 2), X_003),
                                np.asarray([[6, 4], [2, 8]]))
    chex.assert_trees_all_close(_pool2d(pool.AvgPool2D(2, 2), X_003),
                                np.asarray([[3.75, 2.25], [1.0, 5.5]]), rtol=1e-7)
    y = pool.GlobalAvgPool2D().apply({}, {}, jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1))[0]
    chex.assert_trees_all_close(y, np.asarray([[5.0]]), rtol=1e-7)


@pytest.mark.parametrize("size, k, s, p, out", [(32, 5, 1, 0, 28), (32, 5, 1, 2, 32),
                                                (224, 7, 2, 3, 112), (13, 3, 2, 0, 6),
                                                (5, 3, 1, 0, 3), (5, 3, 1, 1, 5)])
def test_003_q13_e9_e10_output_size_formula(size, k, s, p, out):
    """003-Q13-e9, 003-Q13-e10: H_out = floor((H_in - k + 2p) / s) + 1; e10's prose
    "(k-1) on each side" is a seed slip: 5x5 -> 3x3 shrinks by k - 1 = 2 in total, 1 per
    side."""
    layer = conv.Conv2D(4, k, strides=s, padding=p)
    assert jl.output_shape(layer, (1, size, size, 3)) == (1, out, out, 4)


def test_003_q13_e11_stride_halves_the_output():
    """003-Q13-e11: length 10, k = 3: 8 outputs at stride 1, 4 at stride 2."""
    assert jl.output_shape(conv.Conv1D(1, 3), (1, 10, 1)) == (1, 8, 1)
    assert jl.output_shape(conv.Conv1D(1, 3, strides=2), (1, 10, 1)) == (1, 4, 1)


def test_003_q13_e12_pooling_small_shift_invariance_and_the_true_shift_counterexample():
    """003-Q13-e12: the seed's "shifted" image swaps 9 and 1 inside one window, so pooling
    cannot tell; a real one-pixel right shift moves the 1 into the next window and changes
    the output."""
    mp = pool.MaxPool2D(2, 2)
    chex.assert_trees_all_equal(_pool2d(mp, [[9, 1, 0, 0], [1, 1, 0, 0]]), np.asarray([[9, 0]]))
    chex.assert_trees_all_equal(_pool2d(mp, [[1, 9, 0, 0], [1, 1, 0, 0]]), np.asarray([[9, 0]]))
    chex.assert_trees_all_equal(_pool2d(mp, [[0, 9, 1, 0], [0, 1, 1, 0]]), np.asarray([[9, 1]]))


def test_003_q13_conv_is_translation_equivariant():
    layer = conv.Conv2D(3, 3, padding="same")
    params = {"kernel": jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 2, 3)),
                                    jnp.float32), "bias": jnp.asarray([0.5, -1.0, 2.0])}
    x = np.zeros((1, 10, 10, 2), np.float32)
    x[0, 2:6, 2:6] = np.random.default_rng(1).normal(size=(4, 4, 2))  # away from the border
    run = jax.jit(lambda x: layer.apply(params, {}, x)[0])
    shift = (1, 2)
    chex.assert_trees_all_close(run(np.roll(x, shift, axis=(1, 2))),
                                np.roll(run(x), shift, axis=(1, 2)), rtol=1e-6, atol=1e-6)


def test_003_q14_e1_multichannel_conv_output_and_multiplications_per_pixel():
    """003-Q14-e1: 32×32×3 ⋆ 64 filters 3×3, pad 1 -> 32×32×64; 27 products per value."""
    layer = conv.Conv2D(64, 3, padding=1)
    assert jl.output_shape(layer, (1, 32, 32, 3)) == (1, 32, 32, 64)
    spec = jax.eval_shape(lambda k: layer.init(k, (1, 32, 32, 3))[0], KEY)
    assert np.prod(spec["kernel"].shape[:-1]) == 27  # 3x3x3 products per output value


@pytest.mark.parametrize("layer, input_shape, count", [
    (conv.Conv2D(64, 3), (1, 224, 224, 3), 1_792),  # 003-Q14-e2
    (conv.Conv2D(512, 3), (1, 14, 14, 256), 1_180_160),  # 003-Q14-e3
    (conv.Conv2D(32, 3), (1, 28, 28, 3), 896),  # 004-S2-e6
    (conv.SeparableConv2D(128, 3, use_bias=False), (1, 8, 8, 64), 576 + 8_192),  # 003-Q16-e4
    (conv.Conv2D(128, 3, use_bias=False), (1, 8, 8, 64), 73_728),  # 003-Q16-e4
    (conv.Conv2D(1, 3, dilation=2, use_bias=False), (1, 5, 5, 1), 9),  # 003-Q16-e3
])
def test_003_q14_q16_004_parameter_counts(layer, input_shape, count):
    assert _n_params(layer, input_shape) == count


def test_003_q14_e4_dense_vs_conv_ratio_seed_slip_5375_is_5376():
    """003-Q14-e4: 9,633,856 / 1,792 = 5,376.04; the seed prints 5,375."""
    dense = _n_params(jl.Dense(64), (1, 224 * 224 * 3))
    assert dense == 9_633_856
    assert round(dense / _n_params(conv.Conv2D(64, 3), (1, 224, 224, 3))) == 5_376


def test_003_q16_e3_dilated_3x3_sees_5x5():
    """003-Q16-e3: a 3×3 kernel at dilation 2 spans 5×5."""
    layer = conv.Conv2D(1, 3, dilation=2, use_bias=False)
    assert jl.output_shape(layer, (1, 5, 5, 1)) == (1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"kernel window \(5, 5\) must fit"):
        jl.output_shape(layer, (1, 4, 4, 1))


def test_003_q14_e5_receptive_field_of_stacked_3x3_convs_is_3_5_7():
    """003-Q14-e5: support of d(output at the centre)/d(input): 3, 5, 7 pixels wide;
    weights 27C² vs 49C²."""
    ones = {"kernel": jnp.ones((3, 3, 1, 1))}  # positive weights: no accidental cancellation
    widths = []
    for depth in (1, 2, 3):
        model = jl.serial(*[conv.Conv2D(1, 3, padding="same", use_bias=False)] * depth)

        def centre(x, model=model, depth=depth):
            return model.apply((ones,) * depth, ((),) * depth, x)[0][0, 4, 4, 0]

        g = np.asarray(jax.grad(centre)(jnp.zeros((1, 9, 9, 1))))[0, :, :, 0]
        rows, cols = np.nonzero(g)
        widths.append((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
    assert widths == [(3, 3), (5, 5), (7, 7)]
    c = 8
    three = sum(_n_params(conv.Conv2D(c, 3, use_bias=False), (1, 9, 9, c)) for _ in range(3))
    assert (three, _n_params(conv.Conv2D(c, 7, use_bias=False), (1, 9, 9, c))) == (
        27 * c * c, 49 * c * c)


def test_003_q16_e1_text_conv1d_two_windows():
    """003-Q16-e1: 4 words, Conv1D k = 3, valid: 2 windows."""
    assert jl.output_shape(conv.Conv1D(8, 3), (1, 4, 100)) == (1, 2, 8)


def test_003_q16_e2_transposed_conv_4x4_to_8x8_needs_same():
    """003-Q16-e2, underspecified in the seed: "same" reproduces both sizes; PyTorch-style
    padding gives 9 (p=0), 7 (p=1) and 8 (p=1 with output_padding=1)."""
    assert jl.output_shape(conv.Conv2D(4, 3, strides=2, padding="same"),
                           (1, 8, 8, 2)) == (1, 4, 4, 4)
    assert jl.output_shape(conv.Conv2DTranspose(2, 3, strides=2, padding="same"),
                           (1, 4, 4, 4)) == (1, 8, 8, 2)
    for padding, output_padding, size in [(0, 0, 9), (1, 0, 7), (1, 1, 8)]:
        layer = conv.Conv2DTranspose(2, 3, strides=2, padding=padding,
                                     output_padding=output_padding)
        assert jl.output_shape(layer, (1, 4, 4, 4)) == (1, size, size, 2)


def test_004_s2_e2_binary_image_first_output_is_4():
    image = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
    # 004-S2-e2: the seed prints the 4
    chex.assert_trees_all_equal(_conv2d(image, [[1, 0, 1], [0, 1, 0], [1, 0, 1]]),
                                np.asarray([[4, 3, 4], [2, 4, 3], [2, 3, 4]]))


def test_004_s2_e3_rgb_convolution_with_bias_gives_minus_25():
    """004-S2-e3: only output[0, 0] is reproducible (the image is cut off): the 2x2 top-left
    corner padded by 1 is exactly the printed zero-bordered 3x3 windows."""
    corner = np.stack([[[156, 155], [153, 154]], [[167, 166], [164, 165]],
                       [[163, 162], [160, 161]]], axis=-1)[None].astype(np.float32)  # RGB
    k1 = [[-1, -1, 1], [0, 1, -1], [0, 1, 1]]
    k2 = [[1, 0, 0], [1, -1, -1], [1, 0, -1]]
    k3 = [[0, 1, 1], [0, 1, 0], [1, -1, 1]]
    kernel = jnp.asarray(np.stack([k1, k2, k3], axis=-1), jnp.float32)  # (3, 3, C=3)
    per_channel = conv.Conv2D(3, 3, padding=1, groups=3, use_bias=False)  # one filter each
    y = per_channel.apply({"kernel": kernel[:, :, None, :]}, {}, corner)[0]
    chex.assert_trees_all_equal(y[0, 0, 0], np.asarray([308, -498, 164]))
    full = conv.Conv2D(1, 3, padding=1)
    y = full.apply({"kernel": kernel[:, :, :, None], "bias": jnp.ones((1,))}, {}, corner)[0]
    assert y[0, 0, 0, 0] == 308 - 498 + 164 + 1 == -25


def test_004_s2_e4_max_and_average_pooling():
    """004-S2-e4: max [[9, 2], [6, 3]], average [[4, 1], [4, 2]]."""
    x = [[1, 2, 2, 1], [4, 9, 1, 0], [1, 5, 2, 3], [4, 6, 1, 2]]
    chex.assert_trees_all_equal(_pool2d(pool.MaxPool2D(2), x), np.asarray([[9, 2], [6, 3]]))
    chex.assert_trees_all_equal(_pool2d(pool.AvgPool2D(2), x), np.asarray([[4, 1], [4, 2]]))


def test_004_s2_e5_global_average_pooling_and_flatten_sizes():
    """004-S2-e5: GAP 7×7×512 -> 512; flatten -> 25,088."""
    assert jl.output_shape(pool.GlobalAvgPool2D(), (1, 7, 7, 512)) == (1, 512)
    assert jl.output_shape(jl.Flatten(), (1, 7, 7, 512)) == (1, 25_088)


def test_003_q15_e2_lenet5_shapes_and_parameter_count():
    """003-Q15-e2: LeNet-5's shapes and 61,706 parameters."""
    lenet = jl.serial(conv.Conv2D(6, 5, activation="tanh"), pool.AvgPool2D(2),
                      conv.Conv2D(16, 5, activation="tanh"), pool.AvgPool2D(2), jl.Flatten(),
                      jl.Dense(120, activation="tanh"), jl.Dense(84, activation="tanh"),
                      jl.Dense(10))
    shape = (1, 32, 32, 1)
    params = jax.eval_shape(lambda k: lenet.init(k, shape)[0], KEY)
    assert [jl.count_params(p) for p in params if p] == [156, 2_416, 48_120, 10_164, 850]
    assert jl.count_params(params) == 61_706
    sizes, spec = [], shape
    for layer in lenet.children:
        spec = jl.output_shape(layer, spec)
        sizes.append(spec[1:])
    assert sizes == [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (400,), (120,),
                     (84,), (10,)]
