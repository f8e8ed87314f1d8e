"""Convolutions: Conv1D/2D/3D, DepthwiseConv2D, SeparableConv1D/2D, Conv1D/2D/3DTranspose."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxlayers import activations
from jaxlayers._checks import check_positive_int, compute_dtype, shape_of
from jaxlayers.core import Layer, layer_factory
from jaxlayers.initializers import glorot_uniform, zeros
from jaxlayers.layers import _conv_cpu
from jaxlayers.layers._spatial import (LAYOUTS, check_input, check_shape, explicit_pads,
                                       ntuple, parse_padding, same_pads, specialise)

# Channels-last input/output, kernel spatial + (in, out) (HWIO, as the seeds' K[m, n, c, f]).
_DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
_KERNEL = {1: "(k", 2: "(kh, kw", 3: "(kd, kh, kw"}
_OUT = {1: "(N, L', filters)", 2: "(N, H', W', filters)", 3: "(N, D', H', W', filters)"}


def _effective(kernel_size, dilation):
    """Dilated window size per axis: d * (k - 1) + 1 (3x3 at dilation 2 sees 5x5)."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))


def _geometry(name: str, n: int, kernel_size, strides, padding, dilation):
    """The arguments every conv shares, checked: n-tuples, and padding as parse_padding's."""
    return (ntuple(name, "kernel_size", kernel_size, n), ntuple(name, "strides", strides, n),
            parse_padding(name, padding, n), ntuple(name, "dilation", dilation, n))


def _input_channels(layer: str, input_spec, n: int, groups: int) -> int:
    shape = shape_of(layer, input_spec)
    check_shape(layer, shape, n)
    if shape[-1] % groups:
        raise ValueError(f"{layer}: input channels must be divisible by groups={groups}, "
                         f"got {shape[-1]} channels (input shape {shape}).")
    return shape[-1]


def _check_channels(layer: str, x, expected: int) -> None:
    if x.shape[-1] != expected:
        raise ValueError(f"{layer}: input must have {expected} channels on the last axis "
                         f"(as the kernel), got shape {tuple(x.shape)}.")


def _conv(layer, n, x, kernel, strides, padding, dilation, groups, dtype, method="xla"):
    """Channels-last cross-correlation of x with an HWIO kernel, padding resolved here.

    method: how the kernel gradient is computed (`_conv_cpu.METHODS`); "xla" is
    `lax.conv_general_dilated` differentiated by JAX."""
    pads = explicit_pads(layer, x.shape, padding, _effective(kernel.shape[:n], dilation),
                         strides)
    compute = compute_dtype(x, dtype)
    return _conv_cpu.conv(x.astype(compute), kernel.astype(compute), strides, pads, dilation,
                          groups, method)


def _finish(params, y, use_bias, act):
    if use_bias:
        y = y + jnp.broadcast_to(params["bias"].astype(y.dtype), y.shape)
    return act(y)


def _conv_nd(n: int, name: str, filters: int, kernel_size, *, strides=1, padding="valid",
             dilation=1, groups: int = 1, use_bias: bool = True, activation=None,
             kernel_init=glorot_uniform(), bias_init=zeros, dtype=None,
             param_dtype=jnp.float32) -> Layer:
    check_positive_int(name, "filters", filters)
    kernel_size, strides, padding, dilation = _geometry(name, n, kernel_size, strides,
                                                         padding, dilation)
    groups = check_positive_int(name, "groups", groups)
    if filters % groups:
        raise ValueError(f"{name}: filters must be divisible by groups={groups}, "
                         f"got filters={filters}.")
    act = activations.get(activation, name)

    def init(key, input_spec):
        c = _input_channels(name, input_spec, n, groups)
        k_kernel, k_bias = jax.random.split(key)
        params = {"kernel": kernel_init(k_kernel, kernel_size + (c // groups, filters),
                                        param_dtype)}
        if use_bias:
            params["bias"] = bias_init(k_bias, (filters,), param_dtype)
        return params, {}

    def apply(params, state, x, *, key=None, training=False):
        del key, training  # deterministic
        check_input(name, x, n)
        _check_channels(name, x, params["kernel"].shape[-2] * groups)
        method = _conv_cpu.choose(jax.default_backend(), n, x.shape[-1], groups)
        y = _conv(name, n, x, params["kernel"], strides, padding, dilation, groups, dtype,
                  method)
        return _finish(params, y, use_bias, act), state

    return Layer(init, apply, name=name)


_CONV_DOC = """{n}-D convolution: y = activation(x ⋆ kernel + bias), cross-correlation (no flip).

    Math (the seeds' Y[i, j, f] = Σ_{{m, n, c}} X[i + m, j + n, c] · K[m, n, c, f] + b[f],
    with strides s, dilation d, and groups g splitting channels into g independent blocks):
      y[b, o, f] = bias[f] + Σ_{{m, c}} x_pad[b, s·o + d·m, g_f·C/g + c] · kernel[m, c, f]
    where g_f = f // (filters/g) is the group of filter f (o, m: spatial index tuples).
    Output size per axis: floor((in + pad_low + pad_high - d·(k - 1) - 1) / s) + 1;
    "same" gives ceil(in / s) (odd total padding: the extra at the end, as lax and Keras).

    Shapes: x {layout} -> y {out}.
    params {{"kernel": {kernel}, C // groups, filters), "bias": (filters,)}}; no "bias" if
    not use_bias. state {{}}.

    Args:
      filters: output channels (divisible by `groups`).
      kernel_size: an int or a tuple of {n} ints.
      strides, dilation: an int or a tuple of {n} positive ints (default 1).
      padding: "valid" (none), "same", an int, a tuple of {n} ints (symmetric per axis, as
        PyTorch's `padding=`), or {n} (low, high) pairs.
      groups: split input and output channels into `groups` blocks (PyTorch's `groups`,
        Keras's `groups`); groups = C with filters = C·m is `DepthwiseConv`.
      use_bias, activation, kernel_init (glorot_uniform), bias_init (zeros): as Dense.
      dtype: compute dtype (default: the input's); param_dtype: storage dtype.

    Raises:
      ValueError: a non-positive filters/kernel_size/strides/dilation/groups, filters not
        divisible by groups, an unknown padding name or activation (construction); input of
        the wrong rank, channels not matching the kernel or not divisible by groups, or a
        kernel larger than the padded input (trace time).
      TypeError: a non-float input.
{example}
    PyTorch stores the kernel (out, in // groups, *spatial): ours is its
    `permute({perm})`. Keras's layout is ours (HWIO).
{cpu}    """

_CPU_RULE = """
    Gradient on the CPU: XLA:CPU's kernel gradient (a convolution whose window is the
    whole output gradient) runs at a third of PyTorch's speed, so when
    `jax.default_backend() == "cpu"` and a group has 1 or >= 16 input channels, the
    kernel gradient is computed as im2col GEMMs, dW = patches^T @ dy, in blocks of images
    whose patches fit in 4 MB (`jaxlayers/layers/_conv_cpu.py`; 1.5-2.6x faster on 32
    and 64 channels, 2x on one, measured in benchmarks/README.md; 2-15 channels keep
    XLA's, which ties there). The forward and the input gradient stay XLA's; it is a
    `jax.custom_jvp`, so jvp and second derivatives work; values equal XLA's to rounding.
"""

_CONV_EXAMPLES = {
    1: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> conv = jl.Conv1D(1, 3, use_bias=False)
      >>> x = jnp.array([1.0, 2, 3, 4, 5]).reshape(1, 5, 1)  # (N, L, C)
      >>> params, state = conv.init(jax.random.key(0), x.shape)
      >>> params = {"kernel": jnp.array([1.0, 0, -1]).reshape(3, 1, 1)}  # seed 003 Q13's w
      >>> y, _ = conv.apply(params, state, x)
      >>> print(y.ravel())  # cross-correlation, "valid": 1 - 3, 2 - 4, 3 - 5
      [-2. -2. -2.]
      >>> jl.output_shape(jl.Conv1D(8, 3), (1, 4, 100))  # seed 003 Q16: 4 words, 2 windows
      (1, 2, 8)
""",
    2: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> conv = jl.Conv2D(1, 2)
      >>> x = jnp.array([[1.0, 3, -1, 0], [2, -2, 0, 5], [4, 1, -1, 3], [-3, 0, 1, 2]])
      >>> params, state = conv.init(jax.random.key(0), (1, 4, 4, 1))
      >>> params["kernel"] = jnp.array([[1.0, 0], [2, -1]]).reshape(2, 2, 1, 1)  # HWIO
      >>> y, _ = conv.apply(params, state, x.reshape(1, 4, 4, 1))
      >>> print(y[0, :, :, 0])  # seed 002: no kernel flip, "valid": 4x4 -> 3x3
      [[ 7. -1. -6.]
       [ 9.  1. -5.]
       [-2.  0. -1.]]
      >>> conv = jl.Conv2D(64, 3)  # seed 003 Q14: 3 x 3 x 3 x 64 + 64 parameters
      >>> jl.summary(conv, (1, 32, 32, 3), print_fn=None).total_params
      1792
""",
    3: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> conv = jl.Conv3D(4, (3, 2, 2), strides=(1, 2, 2))
      >>> params, state = conv.init(jax.random.key(0), (2, 5, 8, 7, 3))
      >>> params["kernel"].shape  # (kd, kh, kw, C, filters)
      (3, 2, 2, 3, 4)
      >>> y, _ = conv.apply(params, state, jnp.ones((2, 5, 8, 7, 3)))
      >>> y.shape  # floor((in - k) / s) + 1 per axis
      (2, 3, 4, 3, 4)
""",
}

Conv1D = specialise(_conv_nd, 1, "Conv1D", _CONV_DOC.format(
    n=1, layout=LAYOUTS[1], out=_OUT[1], kernel=_KERNEL[1], perm="2, 1, 0",
    example=_CONV_EXAMPLES[1], cpu=""))
Conv2D = specialise(_conv_nd, 2, "Conv2D", _CONV_DOC.format(
    n=2, layout=LAYOUTS[2], out=_OUT[2], kernel=_KERNEL[2], perm="2, 3, 1, 0",
    example=_CONV_EXAMPLES[2], cpu=_CPU_RULE))
Conv3D = specialise(_conv_nd, 3, "Conv3D", _CONV_DOC.format(
    n=3, layout=LAYOUTS[3], out=_OUT[3], kernel=_KERNEL[3], perm="2, 3, 4, 1, 0",
    example=_CONV_EXAMPLES[3], cpu=""))


def _depthwise_params(key, name, n, input_spec, kernel_size, m, kernel_init, param_dtype):
    c = _input_channels(name, input_spec, n, 1)
    return c, kernel_init(key, kernel_size + (1, c * m), param_dtype)


@layer_factory
def DepthwiseConv2D(kernel_size, *, depth_multiplier: int = 1, strides=1, padding="valid",
                    dilation=1, use_bias: bool = True, activation=None,
                    kernel_init=glorot_uniform(), bias_init=zeros, dtype=None,
                    param_dtype=jnp.float32) -> Layer:
    """Depthwise 2-D convolution: each input channel convolved with its own m filters.

    Math: y[b, i, j, c·m + k] = bias[c·m + k] + Σ_{p, q} x_pad[b, s·i + d·p, s·j + d·q, c]
      · kernel[p, q, 0, c·m + k]  (a Conv2D with groups = C and filters = C·m).

    Shapes: x (N, H, W, C) -> y (N, H', W', C·depth_multiplier).
    params {"kernel": (kh, kw, 1, C·m), "bias": (C·m,)}; state {}. Output channel c·m + k
    is filter k of input channel c, as Keras's DepthwiseConv2D and PyTorch's
    Conv2d(C, C·m, groups=C), whose weight (C·m, 1, kh, kw) is ours permuted (3, 2, 0, 1).

    Args: as Conv2D, with depth_multiplier m (filters per input channel) in place of
      filters and groups. Keras calls kernel_init `depthwise_initializer`; its fans come
      from the stored (kh, kw, 1, C·m) kernel (fan_in kh·kw, fan_out kh·kw·C·m), Keras's
      from (kh, kw, C, m): the same glorot scale when m = 1.

    Raises: as Conv2D.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> depthwise = jl.DepthwiseConv2D(3, depth_multiplier=2)
      >>> params, state = depthwise.init(jax.random.key(0), (2, 5, 6, 3))
      >>> jax.tree.map(jnp.shape, params)
      {'bias': (6,), 'kernel': (3, 3, 1, 6)}
      >>> y, _ = depthwise.apply(params, state, jnp.ones((2, 5, 6, 3)))
      >>> y.shape  # "valid": 5 - 2, 6 - 2; 3 channels x 2 filters each
      (2, 3, 4, 6)
    """
    name, n = "DepthwiseConv2D", 2
    m = check_positive_int(name, "depth_multiplier", depth_multiplier)
    kernel_size, strides, padding, dilation = _geometry(name, n, kernel_size, strides,
                                                         padding, dilation)
    act = activations.get(activation, name)

    def init(key, input_spec):
        k_kernel, k_bias = jax.random.split(key)
        c, kernel = _depthwise_params(k_kernel, name, n, input_spec, kernel_size, m,
                                      kernel_init, param_dtype)
        params = {"kernel": kernel}
        if use_bias:
            params["bias"] = bias_init(k_bias, (c * m,), param_dtype)
        return params, {}

    def apply(params, state, x, *, key=None, training=False):
        del key, training
        check_input(name, x, n)
        c = params["kernel"].shape[-1] // m
        _check_channels(name, x, c)
        y = _conv(name, n, x, params["kernel"], strides, padding, dilation, c, dtype)
        return _finish(params, y, use_bias, act), state

    return Layer(init, apply, name=name)


def _separable_nd(n: int, name: str, filters: int, kernel_size, *, depth_multiplier: int = 1,
                  strides=1, padding="valid", dilation=1, use_bias: bool = True,
                  activation=None, depthwise_init=glorot_uniform(),
                  pointwise_init=glorot_uniform(), bias_init=zeros, dtype=None,
                  param_dtype=jnp.float32) -> Layer:
    check_positive_int(name, "filters", filters)
    m = check_positive_int(name, "depth_multiplier", depth_multiplier)
    kernel_size, strides, padding, dilation = _geometry(name, n, kernel_size, strides,
                                                         padding, dilation)
    act = activations.get(activation, name)

    def init(key, input_spec):
        k_depth, k_point, k_bias = jax.random.split(key, 3)
        c, depthwise = _depthwise_params(k_depth, name, n, input_spec, kernel_size, m,
                                         depthwise_init, param_dtype)
        params = {"depthwise_kernel": depthwise,
                  "pointwise_kernel": pointwise_init(k_point, (1,) * n + (c * m, filters),
                                                     param_dtype)}
        if use_bias:
            params["bias"] = bias_init(k_bias, (filters,), param_dtype)
        return params, {}

    def apply(params, state, x, *, key=None, training=False):
        del key, training
        check_input(name, x, n)
        c = params["depthwise_kernel"].shape[-1] // m
        _check_channels(name, x, c)
        h = _conv(name, n, x, params["depthwise_kernel"], strides, padding, dilation, c, dtype)
        y = _conv(name, n, h, params["pointwise_kernel"], (1,) * n, "valid", (1,) * n, 1,
                  dtype)
        return _finish(params, y, use_bias, act), state

    return Layer(init, apply, name=name)


_SEPARABLE_DOC = """Depthwise-separable {n}-D convolution: a depthwise conv, then a 1x1 conv.

    Math: h = DepthwiseConv(x; depthwise_kernel)  (each channel c with its own m filters,
      output channel c·m + k), y = activation(h ⋆ pointwise_kernel + bias).
    Parameters (no bias): k^{n}·C·m + C·m·filters instead of k^{n}·C·filters; seed 003 Q16:
      3x3, 64 -> 128 is 576 + 8,192 = 8,768 instead of 73,728.

    Shapes: x {layout} -> y {out}.
    params {{"depthwise_kernel": {kernel}, 1, C·m), "pointwise_kernel": ({ones}C·m, filters),
    "bias": (filters,)}}; state {{}}. The bias is added once, after the pointwise conv
    (as Keras's SeparableConv{n}D).

    Args: as Conv{n}D (strides, padding and dilation apply to the depthwise step), with
      depth_multiplier m; depthwise_init and pointwise_init (glorot_uniform) initialise the
      two kernels.

    Raises: as Conv{n}D.
{example}    """

_SEPARABLE_EXAMPLES = {
    1: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> sep = jl.SeparableConv1D(4, 3, depth_multiplier=2)
      >>> params, state = sep.init(jax.random.key(0), (2, 7, 3))
      >>> jax.tree.map(jnp.shape, params)
      {'bias': (4,), 'depthwise_kernel': (3, 1, 6), 'pointwise_kernel': (1, 6, 4)}
      >>> y, _ = sep.apply(params, state, jnp.ones((2, 7, 3)))
      >>> y.shape
      (2, 5, 4)
""",
    2: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> sep = jl.SeparableConv2D(128, 3, use_bias=False)
      >>> params, state = sep.init(jax.random.key(0), (1, 5, 6, 64))
      >>> jax.tree.map(jnp.shape, params)  # seed 003 Q16: 576 + 8,192 = 8,768 weights
      {'depthwise_kernel': (3, 3, 1, 64), 'pointwise_kernel': (1, 1, 64, 128)}
      >>> y, _ = sep.apply(params, state, jnp.ones((1, 5, 6, 64)))
      >>> y.shape
      (1, 3, 4, 128)
""",
}

SeparableConv1D = specialise(_separable_nd, 1, "SeparableConv1D", _SEPARABLE_DOC.format(
    n=1, layout=LAYOUTS[1], out=_OUT[1], kernel=_KERNEL[1], ones="1, ",
    example=_SEPARABLE_EXAMPLES[1]))
SeparableConv2D = specialise(_separable_nd, 2, "SeparableConv2D", _SEPARABLE_DOC.format(
    n=2, layout=LAYOUTS[2], out=_OUT[2], kernel=_KERNEL[2], ones="1, 1, ",
    example=_SEPARABLE_EXAMPLES[2]))


def _transpose_pads(in_sizes, windows, strides, padding, output_padding):
    """Padding of the equivalent stride-1 conv over the stride-dilated input.

    The adjoint of a conv that padded (lo, hi) crops lo and hi from the full output
    (in - 1)·s + k_eff; the direct form pads the dilated input by k_eff - 1 minus the crop
    (a negative pad crops). "same" is the adjoint of a "same" conv on an input of in·s.
    """
    pads = []
    for i, (size, k, s) in enumerate(zip(in_sizes, windows, strides)):
        full = (size - 1) * s + k
        if padding == "same":
            lo, _ = same_pads(size * s, k, s)
            hi = full - size * s - lo  # negative when k < s: zeros appended at the end
        elif padding == "valid":
            lo, hi = 0, -output_padding[i]
        else:
            lo, hi = padding[i][0], padding[i][1] - output_padding[i]
        pads.append((k - 1 - lo, k - 1 - hi))
    return tuple(pads)


def _conv_transpose_nd(n: int, name: str, filters: int, kernel_size, *, strides=1,
                       padding="valid", output_padding=0, dilation=1, use_bias: bool = True,
                       activation=None, kernel_init=glorot_uniform(), bias_init=zeros,
                       dtype=None, param_dtype=jnp.float32) -> Layer:
    check_positive_int(name, "filters", filters)
    kernel_size, strides, padding, dilation = _geometry(name, n, kernel_size, strides,
                                                         padding, dilation)
    output_padding = ntuple(name, "output_padding", output_padding, n, minimum=0)
    if padding == "same" and any(output_padding):
        raise ValueError(f"{name}: output_padding must be 0 with padding='same' (the output "
                         f"is input·strides), got {output_padding}.")
    if any(p >= max(s, d) for p, s, d in zip(output_padding, strides, dilation)):
        raise ValueError(f"{name}: output_padding must be smaller than strides or dilation "
                         f"on each axis, got output_padding={output_padding} with "
                         f"strides={strides}, dilation={dilation}.")
    act = activations.get(activation, name)
    windows = _effective(kernel_size, dilation)

    def init(key, input_spec):
        c = _input_channels(name, input_spec, n, 1)
        k_kernel, k_bias = jax.random.split(key)
        params = {"kernel": kernel_init(k_kernel, kernel_size + (c, filters), param_dtype)}
        if use_bias:
            params["bias"] = bias_init(k_bias, (filters,), param_dtype)
        return params, {}

    def apply(params, state, x, *, key=None, training=False):
        del key, training
        check_input(name, x, n)
        _check_channels(name, x, params["kernel"].shape[-2])
        pads = _transpose_pads(x.shape[1:-1], windows, strides, padding, output_padding)
        out = tuple(((size - 1) * s + 1) + lo + hi - k + 1
                    for size, s, (lo, hi), k in zip(x.shape[1:-1], strides, pads, windows))
        if min(out) < 1:
            raise ValueError(f"{name}: output size must be positive, got {out} from input "
                             f"shape {tuple(x.shape)} with padding {padding!r}.")
        compute = compute_dtype(x, dtype)
        kernel = jnp.flip(params["kernel"].astype(compute), axis=tuple(range(n)))
        y = lax.conv_general_dilated(x.astype(compute), kernel, (1,) * n, pads,
                                     lhs_dilation=strides, rhs_dilation=dilation,
                                     dimension_numbers=_DIMS[n])
        return _finish(params, y, use_bias, act), state

    return Layer(init, apply, name=name)


_TRANSPOSE_DOC = """Transposed {n}-D convolution: the adjoint (gradient) of Conv{n}D.

    Math: with the same strides s, padding p and dilation d, y = conv^T(x) is the input
    gradient of a conv: each input pixel scatters x[b, i, c] · kernel[m, c, f] into
    y[b, s·i + d·m - p_low, f]; computed as a stride-1 conv of the stride-dilated input
    with the spatially flipped kernel (`lax.conv_general_dilated(lhs_dilation=strides)`).
    Output size per axis: (in - 1)·s + d·(k - 1) + 1 - p_low - p_high + output_padding;
    "same" gives in·s, "valid" (in - 1)·s + d·(k - 1) + 1.

    Shapes: x {layout} -> y {out}.
    params {{"kernel": {kernel}, C, filters), "bias": (filters,)}}; state {{}}.

    Args:
      filters: output channels.  kernel_size, strides, dilation: as Conv{n}D.
      padding: "valid", "same", an int or {n} ints (PyTorch's `padding`: crop p from both
        ends), or {n} (low, high) pairs.
      output_padding: an int or {n} ints >= 0, added at the high end (each smaller than the
        stride or the dilation, as PyTorch); must be 0 with "same".
      use_bias, activation, kernel_init, bias_init, dtype, param_dtype: as Conv{n}D.

    Raises:
      ValueError: bad arguments as Conv{n}D, output_padding not smaller than strides or
        dilation (construction); wrong rank or channels, an empty output (trace time).
      TypeError: a non-float input.
{example}
    Conventions: matches PyTorch's conv_transpose{n}d (not Flax's unflipped ConvTranspose).
    The kernel is stored spatial + (in, out), in = this layer's input channels: PyTorch's
    weight (in, out, *spatial) permuted ({perm}); Keras stores spatial + (out, in).
    "same" follows Keras (the adjoint of a "same" conv, odd crop at the end); PyTorch's
    padding=(k - 1) // 2 with output_padding=1 crops the odd row at the start instead.
    """

_TRANSPOSE_EXAMPLES = {
    1: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> up = jl.Conv1DTranspose(4, 3, strides=2)
      >>> params, state = up.init(jax.random.key(0), (2, 5, 3))
      >>> params["kernel"].shape  # (k, C, filters)
      (3, 3, 4)
      >>> y, _ = up.apply(params, state, jnp.ones((2, 5, 3)))
      >>> y.shape  # "valid": (5 - 1) * 2 + 3
      (2, 11, 4)
""",
    2: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> up = jl.Conv2DTranspose(2, 3, strides=2, padding="same")
      >>> params, state = up.init(jax.random.key(0), (1, 4, 4, 3))
      >>> y, _ = up.apply(params, state, jnp.ones((1, 4, 4, 3)))
      >>> y.shape  # seed 003 Q16: 3x3 at stride 2 takes 4x4 back to 8x8
      (1, 8, 8, 2)
""",
    3: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> up = jl.Conv3DTranspose(3, 2, strides=2)
      >>> params, state = up.init(jax.random.key(0), (1, 2, 3, 4, 2))
      >>> y, _ = up.apply(params, state, jnp.ones((1, 2, 3, 4, 2)))
      >>> y.shape  # kernel 2 at stride 2 doubles every axis
      (1, 4, 6, 8, 3)
""",
}

Conv1DTranspose = specialise(_conv_transpose_nd, 1, "Conv1DTranspose", _TRANSPOSE_DOC.format(
    n=1, layout=LAYOUTS[1], out=_OUT[1], kernel=_KERNEL[1], perm="2, 0, 1",
    example=_TRANSPOSE_EXAMPLES[1]))
Conv2DTranspose = specialise(_conv_transpose_nd, 2, "Conv2DTranspose", _TRANSPOSE_DOC.format(
    n=2, layout=LAYOUTS[2], out=_OUT[2], kernel=_KERNEL[2], perm="2, 3, 0, 1",
    example=_TRANSPOSE_EXAMPLES[2]))
Conv3DTranspose = specialise(_conv_transpose_nd, 3, "Conv3DTranspose", _TRANSPOSE_DOC.format(
    n=3, layout=LAYOUTS[3], out=_OUT[3], kernel=_KERNEL[3], perm="2, 3, 4, 0, 1",
    example=_TRANSPOSE_EXAMPLES[3]))
