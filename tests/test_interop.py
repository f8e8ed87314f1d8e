"""jl.interop.from_torch: PyTorch state_dicts -> params, checked against the torch modules."""

import chex
import jax
import numpy as np
import pytest
import torch

from jaxlayers.interop import from_torch
from jaxlayers.layers import conv
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.norm import BatchNorm

RNG = np.random.default_rng(0)


def _sd(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _channels_last(a):
    return np.moveaxis(a, 1, -1)


def _channels_first(a):
    return np.moveaxis(np.asarray(a), -1, 1)


def _close(a, b, tol=1e-5):
    chex.assert_trees_all_close(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_dense_from_torch_linear():
    torch.manual_seed(0)
    module = torch.nn.Linear(5, 3)
    params = from_torch("Dense", _sd(module))
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    _close(Dense(3).apply(params, {}, x)[0], module(torch.tensor(x)).detach().numpy())
    assert set(from_torch("Dense", _sd(torch.nn.Linear(5, 3, bias=False)))) == {"kernel"}


# (torch module, jaxlayers layer, input NCHW-style shape)
CONVS = [
    (lambda: torch.nn.Conv1d(4, 6, 3, stride=2, padding=1, groups=2),
     lambda: conv.Conv1D(6, 3, strides=2, padding=1, groups=2), (2, 4, 7)),
    (lambda: torch.nn.Conv2d(3, 4, (3, 2), stride=(1, 2), dilation=(2, 1)),
     lambda: conv.Conv2D(4, (3, 2), strides=(1, 2), dilation=(2, 1)), (2, 3, 7, 6)),
    (lambda: torch.nn.Conv3d(2, 3, 2, padding=1, bias=False),
     lambda: conv.Conv3D(3, 2, padding=1, use_bias=False), (1, 2, 3, 4, 3)),
    (lambda: torch.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1),
     lambda: conv.Conv1DTranspose(6, 3, strides=2, padding=1, output_padding=1), (2, 4, 5)),
    (lambda: torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=2, groups=2),  # block-diagonal
     lambda: conv.Conv2DTranspose(6, (3, 2), strides=2), (2, 4, 4, 3)),
    (lambda: torch.nn.ConvTranspose3d(2, 3, 2, stride=(1, 2, 1)),
     lambda: conv.Conv3DTranspose(3, 2, strides=(1, 2, 1)), (1, 2, 3, 2, 3)),
]


@pytest.mark.parametrize("make_torch, make_ours, shape", CONVS,
                         ids=["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose",
                              "Conv2DTranspose-groups", "Conv3DTranspose"])
def test_conv_from_torch_matches_the_module(make_torch, make_ours, shape):
    torch.manual_seed(1)
    module = make_torch()
    kind = type(module).__name__.replace("d", "D").replace("ConvTranspose", "Conv") \
        + ("Transpose" if "Transpose" in type(module).__name__ else "")
    options = {"groups": module.groups} if "Transpose" in kind else {}
    params = from_torch(kind, _sd(module), **options)
    x = RNG.normal(size=shape).astype(np.float32)
    y, _ = make_ours().apply(params, {}, _channels_last(x))
    _close(_channels_first(y), module(torch.tensor(x)).detach().numpy())


def test_batchnorm_running_statistics_give_identical_inference():
    torch.manual_seed(2)
    module = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_()
        for _ in range(3):  # a few training steps move the running statistics
            module(torch.tensor(RNG.normal(1.0, 2.0, size=(4, 3, 5, 5)).astype(np.float32)))
    module.eval()
    params, state = from_torch("BatchNorm", _sd(module))
    x = RNG.normal(size=(2, 3, 4, 4)).astype(np.float32)
    layer = BatchNorm(momentum=0.9, epsilon=1e-5)
    y, new_state = layer.apply(params, state, _channels_last(x), training=False)
    _close(_channels_first(y), module(torch.tensor(x)).detach().numpy())
    _close(new_state["var"], module.running_var.numpy(), 0)  # copied as stored
    params, state = from_torch("BatchNorm", _sd(torch.nn.BatchNorm1d(3, affine=False)))
    _close(params["gamma"], np.ones(3), 0)


def test_shape_mismatch_errors_name_the_tensor():
    sd = _sd(torch.nn.LSTM(3, 4, batch_first=True))
    sd["weight_hh_l0"] = sd["weight_hh_l0"][:, :3]
    with pytest.raises(ValueError, match=r"from_torch\(LSTM\): tensor 'weight_hh_l0' must have "
                                         r"shape \(16, 4\), got \(16, 3\)"):
        from_torch("LSTM", sd)
    sd = _sd(torch.nn.Linear(5, 3))
    sd["bias"] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"from_torch\(Dense\): tensor 'bias' must have shape "
                                         r"\(3,\), got \(4,\)"):
        from_torch("Dense", sd)
    with pytest.raises(ValueError, match=r"from_torch\(Conv2D\): tensor 'weight' must have shape "
                                         r"\(\?, \?, \?, \?\), got \(4, 3, 3\)"):
        from_torch("Conv2D", _sd(torch.nn.Conv1d(3, 4, 3)))
    with pytest.raises(ValueError, match=r"from_torch\(GRU\): tensor 'weight_ih_l0' must have "
                                         r"3 \* hidden_size rows"):
        from_torch("GRU", {"weight_ih_l0": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"from_torch\(BatchNorm\): missing tensor "
                                         r"'running_var'"):
        from_torch("BatchNorm", {"running_mean": np.zeros(3)})
    with pytest.raises(ValueError, match=r"from_torch\(Embedding\): unexpected tensors "
                                         r"\['bias'\]"):
        from_torch("Embedding", {"weight": np.zeros((4, 2)), "bias": np.zeros(2)})


def test_option_and_kind_errors():
    with pytest.raises(ValueError, match="from_torch: layer_kind must be one of"):
        from_torch("Linear", {})
    with pytest.raises(ValueError, match=r"from_torch\(Dense\): unknown options \['groups'\]"):
        from_torch("Dense", {}, groups=2)
    gru = _sd(torch.nn.GRU(3, 4))
    with pytest.raises(ValueError, match=r"from_torch\(GRU\): PyTorch's GRU applies the reset "
                                         r"gate after the recurrent matmul"):
        from_torch("GRU", gru, reset_after=False)
    with pytest.raises(ValueError, match=r"from_torch\(LSTM\): LSTM with proj_size"):
        from_torch("LSTM", _sd(torch.nn.LSTM(3, 4, proj_size=2)))
    two = _sd(torch.nn.LSTM(3, 4, num_layers=2))
    second = from_torch("LSTM", two, layer=1)
    _close(second["kernel"], two["weight_ih_l1"].T, 0)
    with pytest.raises(ValueError, match=r"from_torch\(ConvTranspose|from_torch\(Conv2DTranspose\)"
                                         r": groups must be a positive int dividing"):
        from_torch("Conv2DTranspose", _sd(torch.nn.ConvTranspose2d(3, 4, 2)), groups=2)


def test_outputs_are_jax_arrays_keeping_their_dtype():
    params = from_torch("Dense", {"weight": np.zeros((2, 3), np.float64),
                                  "bias": np.zeros(2, np.float32)})
    assert all(isinstance(v, jax.Array) for v in params.values())
    chex.assert_type(params["bias"], np.float32)
