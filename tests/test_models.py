"""Model zoo: parameter counts against the references, summaries, and one training step each.

Counts use `jax.eval_shape` (nothing allocated); the references are torchvision's
`num_params` (the seeds' for LeNet-5, VGG-16 and the two-tower AlexNet). The training
steps are marked slow: XLA:CPU compile time dominates them (timings in the comments).
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl
from jaxlayers import models
from jaxlayers.layers.conv import Conv2D
from jaxlayers.layers.pool import GlobalAvgPool2D
from jaxlayers.models._efficientnet import mbconv
from jaxlayers.models._resnet import basic_block

KEY = jax.random.key(0)
IMAGENET = (1, 224, 224, 3)


def _abstract(model, shape):
    return jax.eval_shape(lambda k: model.init(k, shape), KEY)


def _count(model, shape=IMAGENET):
    return jl.count_params(_abstract(model, shape)[0])


@functools.lru_cache(maxsize=None)
def _built(builder, shape, **kwargs):
    """`_abstract(builder(**kwargs), shape)`, traced once per worker: tracing a zoo model's
    init takes seconds (DenseNet-121's ~2 s), and several tests read the same model's
    abstract params (the counts, the layouts, the BatchNorm checks). Always pass `shape`:
    the cache's key is the call as written."""
    return _abstract(builder(**kwargs), shape)


def _paths(tree):
    return ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


# name, builder, kwargs, input shape, reference count (1000 classes; LeNet-5: 10),
# in-features of the last Dense layer.
MAIN = [
    ("lenet5", models.lenet5, {}, (1, 32, 32, 1), 61_706, 84),
    ("alexnet", models.alexnet, {}, (1, 227, 227, 3), 60_965_224, 4096),
    ("alexnet_torchvision", models.alexnet, {"variant": "torchvision"}, IMAGENET,
     61_100_840, 4096),
    ("vgg16", models.vgg16, {}, IMAGENET, 138_357_544, 4096),
    ("googlenet_torchvision", models.googlenet, {"variant": "torchvision"}, IMAGENET,
     6_624_904, 1024),
    ("resnet18", models.resnet18, {}, IMAGENET, 11_689_512, 512),
    ("resnet50", models.resnet50, {}, IMAGENET, 25_557_032, 2048),
    ("densenet121", models.densenet121, {}, IMAGENET, 7_978_856, 1024),
    ("mobilenet_v2", models.mobilenet_v2, {}, IMAGENET, 3_504_872, 1280),
    ("efficientnet_b0", models.efficientnet_b0, {}, IMAGENET, 5_288_548, 1280),
]
# torchvision's other depths and widths of the same families (num_params of its weights).
MORE = [
    ("vgg11", 132_863_336), ("vgg13", 133_047_848), ("vgg19", 143_667_240),
    ("resnet34", 21_797_672), ("resnet101", 44_549_160), ("resnet152", 60_192_808),
    ("densenet161", 28_681_000), ("densenet169", 14_149_480), ("densenet201", 20_013_928),
    ("efficientnet_b1", 7_794_184), ("efficientnet_b2", 9_109_994),
    ("efficientnet_b3", 12_233_232), ("efficientnet_b4", 19_341_616),
    ("efficientnet_b5", 30_389_784), ("efficientnet_b6", 43_040_704),
    ("efficientnet_b7", 66_347_960),
]


def _googlenet_paper_count(num_classes=1000):
    """Per-layer formula for the paper's GoogLeNet (biases, 5×5 branch, no BatchNorm)."""
    def conv(c_in, c_out, k):
        return k * k * c_in * c_out + c_out

    modules = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64),
               (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
               (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
               (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128),
               (832, 384, 192, 384, 48, 128, 128)]
    total = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    for c, c1, r3, c3, r5, c5, pp in modules:
        total += (conv(c, c1, 1) + conv(c, r3, 1) + conv(r3, c3, 3) + conv(c, r5, 1)
                  + conv(r5, c5, 5) + conv(c, pp, 1))
    return total + 1024 * num_classes + num_classes


def _summary_rows(model, shape):
    """(path, type, output shape as text, params) per row of jl.summary, and its total."""
    summary = jl.summary(model, shape, print_fn=None)
    rows = [(r.path, r.type, str(r.output_shape), r.params) for r in summary.rows]
    return rows, summary.total_params


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name,builder,kwargs,shape,expected,_", MAIN,
                         ids=[m[0] for m in MAIN])
def test_parameter_count_matches_reference(name, builder, kwargs, shape, expected, _):
    # 004-S2-e8: LeNet-5, AlexNet (two-tower), VGG-16 and ResNet-50 among them
    assert jl.count_params(_built(builder, shape, **kwargs)[0]) == expected


def test_googlenet_paper_count_matches_per_layer_formula():
    # 6,998,552: the paper's modules with biases and the 5×5 branch (its Table 1 column
    # of approximate counts sums to about 6.8M; seed 004 quotes "7M").
    assert (jl.count_params(_built(models.googlenet, IMAGENET, variant="paper")[0])
            == _googlenet_paper_count()
            == 6_998_552)


@pytest.mark.slow
@pytest.mark.parametrize("name,expected", MORE, ids=[m[0] for m in MORE])
def test_more_depths_match_torchvision(name, expected):
    assert _count(getattr(models, name)()) == expected


@pytest.mark.parametrize("name,builder,kwargs,shape,expected,features", MAIN,
                         ids=[m[0] for m in MAIN])
def test_num_classes_changes_only_the_head(name, builder, kwargs, shape, expected, features):
    default = 10 if builder is models.lenet5 else 1000
    # one weight column and one bias per class in the last Dense layer
    assert (_count(builder(num_classes=3, **kwargs), shape)
            == expected - (default - 3) * (features + 1))


@pytest.mark.parametrize("name,builder,kwargs,shape,expected,_", MAIN,
                         ids=[m[0] for m in MAIN])
def test_summary_rows_add_up_to_the_total(name, builder, kwargs, shape, expected, _):
    rows, total = _summary_rows(builder(**kwargs), shape)
    assert total == expected
    assert sum(count for *_, count in rows) == total
    assert rows[-1][2] == f"({shape[0]}, {1000 if builder is not models.lenet5 else 10})"


def test_batchnorm_fed_convolutions_have_no_bias_and_running_stats_are_state():
    # which leaves exist does not depend on the input size: the 224×224 traces of the
    # count tests are reused
    cases = [
        (_built(models.resnet18, IMAGENET), {"fc/bias"}),
        (_built(models.resnet50, IMAGENET), {"fc/bias"}),
        (_built(models.densenet121, IMAGENET), {"classifier/bias"}),
        (_built(models.mobilenet_v2, IMAGENET), {"classifier/fc/bias"}),
        (_built(models.googlenet, IMAGENET, variant="torchvision"), {"classifier/fc/bias"}),
    ]
    for (params, state), biases in cases:
        assert {p for p in _paths(params) if p.endswith("bias")} == biases
        assert not any(p.endswith(("mean", "var")) for p in _paths(params))
        assert {p.rsplit("/", 1)[1] for p in _paths(state)} == {"mean", "var"}
    # EfficientNet: only the squeeze-excitation 1×1 convs (as torchvision's) and the head
    params, _ = _built(models.efficientnet_b0, IMAGENET)
    biases = {p for p in _paths(params) if p.endswith("bias")}
    assert "classifier/fc/bias" in biases
    assert all(re.search(r"/se/fc[12]/bias$", p) for p in biases - {"classifier/fc/bias"})
    assert len(biases) == 1 + 2 * 16  # 16 MBConv blocks


# ---------------------------------------------------------------- LeNet-5 (seed 003)


def test_lenet5_layers_shapes_and_counts_as_seed_003():
    rows, total = _summary_rows(models.lenet5(), (1, 32, 32, 1))
    assert [(path, out, count) for path, _, out, count in rows] == [
        ("features/conv1", "(1, 28, 28, 6)", 156),
        ("features/pool1", "(1, 14, 14, 6)", 0),
        ("features/conv2", "(1, 10, 10, 16)", 2_416),
        ("features/pool2", "(1, 5, 5, 16)", 0),
        ("classifier/flatten", "(1, 400)", 0),
        ("classifier/fc1", "(1, 120)", 48_120),
        ("classifier/fc2", "(1, 84)", 10_164),
        ("classifier/fc3", "(1, 10)", 850),
    ]
    assert total == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706


# ---------------------------------------------------------------- AlexNet (seed 002)


def test_alexnet_paper_layers_two_towers_and_lrn():
    model = models.alexnet()
    params, _ = _built(models.alexnet, (1, 227, 227, 3))
    f, c = params["features"], params["classifier"]
    counts = {k: jl.count_params(v) for k, v in {**f, **c}.items() if jl.count_params(v)}
    assert counts == {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                      "conv5": 442_624, "fc6": 37_752_832, "fc7": 16_781_312,
                      "fc8": 4_097_000}
    # groups=2: conv2, conv4, conv5 see half of their input channels
    assert f["conv2"]["kernel"].shape == (5, 5, 48, 256)
    assert f["conv4"]["kernel"].shape == (3, 3, 192, 384)
    assert f["conv3"]["kernel"].shape == (3, 3, 256, 384)
    rows, _ = _summary_rows(model, (1, 227, 227, 3))
    shapes = {path: out for path, _, out, _ in rows}
    assert shapes["features/norm1"] == "(1, 55, 55, 96)"
    assert shapes["features/pool2"] == "(1, 13, 13, 256)"
    assert shapes["features/pool5"] == "(1, 6, 6, 256)"


def test_alexnet_torchvision_adapts_any_input_to_6x6():
    model = models.alexnet(variant="torchvision")
    assert _count(model, (1, 63, 63, 3)) == _count(model, (1, 256, 256, 3)) == 61_100_840


# ---------------------------------------------------------------- VGG-16 (seed 003)


def test_vgg16_block_counts():
    # 003-Q15-e4: the per-block counts and the 138,357,544 total
    params, _ = _built(models.vgg16, IMAGENET)
    blocks = [jl.count_params(params["features"][f"block{i}"]) for i in range(1, 6)]
    assert blocks == [38_720, 221_440, 1_475_328, 5_899_776, 7_079_424]
    dense = [jl.count_params(params["classifier"][k]) for k in ("fc1", "fc2", "fc3")]
    assert dense == [102_764_544, 16_781_312, 4_097_000]
    assert sum(blocks) + sum(dense) == 138_357_544
    assert jl.output_shape(models.vgg16(), IMAGENET) == (1, 1000)


def test_vgg16_seed_003_block1_slip_is_recorded():
    # 003-Q15-e4: seed 003 prints block 1 as "2×(3×3×3×64+64) = 2×1,792 = 3,584": both
    # convs counted as 3 -> 64. The second conv sees the first's 64 channels:
    # 1,792 + 36,928 = 38,720.
    first = _count(Conv2D(64, 3, padding=1), (1, 224, 224, 3))
    second = _count(Conv2D(64, 3, padding=1), (1, 224, 224, 64))
    assert (first, second) == (1_792, 36_928)
    assert 2 * first == 3_584 != first + second == 38_720
    # and the seed's printed column sums to 138,322,408, not the 138,357,544 total
    printed = [3_584, 221_440, 1_475_328, 5_899_776, 7_079_424,
               102_764_544, 16_781_312, 4_097_000]
    assert sum(printed) == 138_322_408 == 138_357_544 - (38_720 - 3_584)


# ---------------------------------------------------------------- GoogLeNet, ResNet


def test_googlenet_variants_differ_in_the_third_branch():
    def kernel(variant):
        params, _ = _built(models.googlenet, IMAGENET, variant=variant)
        branch = params["features"]["inception3a"]["branch3"]["conv"]
        return (branch["conv"] if variant == "torchvision" else branch)["kernel"].shape

    assert kernel("paper") == (5, 5, 16, 32)
    assert kernel("torchvision") == (3, 3, 16, 32)  # pytorch/vision#906
    rows, _ = _summary_rows(models.googlenet(), IMAGENET)
    shapes = {path: out for path, _, out, _ in rows}
    assert shapes["features/inception3b"] == "(1, 28, 28, 480)"
    assert shapes["features/inception4e"] == "(1, 14, 14, 832)"
    assert shapes["features/inception5b"] == "(1, 7, 7, 1024)"


def test_resnet_shortcuts_are_identity_or_strided_projection():
    params, _ = _built(models.resnet18, IMAGENET)
    assert params["layer1"]["0"]["shortcut"] == {}
    assert params["layer2"]["0"]["shortcut"]["conv"]["kernel"].shape == (1, 1, 64, 128)
    assert params["layer2"]["1"]["shortcut"] == {}
    params, _ = _built(models.resnet50, IMAGENET)
    # bottleneck: layer1's first block already changes 64 -> 256 channels
    assert params["layer1"]["0"]["shortcut"]["conv"]["kernel"].shape == (1, 1, 64, 256)
    assert params["layer4"]["0"]["main"]["conv3"]["kernel"].shape == (1, 1, 512, 2048)
    rows, _ = _summary_rows(models.resnet50(), IMAGENET)
    shapes = {path: out for path, _, out, _ in rows}
    assert shapes["stem/pool"] == "(1, 56, 56, 64)"
    assert shapes["layer4/2"] == "(1, 7, 7, 2048)"


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="alexnet: variant"):
        models.alexnet(variant="caffe")
    with pytest.raises(ValueError, match="googlenet: variant"):
        models.googlenet(variant="v3")
    with pytest.raises(ValueError, match="resnet18: num_classes"):
        models.resnet18(num_classes=0)
    with pytest.raises(ValueError, match="vgg16: dropout"):
        models.vgg16(dropout=1.5)


# ---------------------------------------------------------------- blocks


def test_branches_merges_named_branches_in_order():
    layer = jl.Branches(jl.Concatenate(), activation="relu", name="Test", skip=jl.Identity(),
                        dense=jl.Dense(2))
    params, state = layer.init(KEY, (3, 4))
    assert set(params) == {"skip", "dense"} and params["skip"] == {}
    x = jax.random.normal(jax.random.key(1), (3, 4))
    y, _ = layer.apply(params, state, x)
    dense = x @ params["dense"]["kernel"] + params["dense"]["bias"][None, :]
    np.testing.assert_allclose(y, jax.nn.relu(jnp.concatenate([x, dense], -1)), rtol=1e-6)
    with pytest.raises(ValueError, match="Test: needs at least one branch"):
        jl.Branches(jl.Add(), name="Test")


def test_squeeze_excitation_gate_scales_each_channel():
    gate = jl.serial(pool=GlobalAvgPool2D(keepdims=True),
                     fc=Conv2D(3, 1, activation="sigmoid"))
    layer = jl.Scale(gate, name="SE")
    x = jax.random.normal(jax.random.key(1), (2, 4, 5, 3))
    params, state = layer.init(KEY, x.shape)
    y, _ = layer.apply(params, state, x)
    s = x.mean(axis=(1, 2)) @ params["fc"]["kernel"][0, 0] + params["fc"]["bias"][None, :]
    expected = x * jax.nn.sigmoid(s)[:, None, None, :]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_stochastic_depth_drops_whole_examples_while_training():
    layer = jl.StochasticDepth(0.5)
    x = jnp.ones((64, 2, 2, 3))
    y, _ = layer.apply({}, {}, x, key=jax.random.key(3), training=True)
    per_example = np.asarray(y).reshape(64, -1)
    assert set(np.unique(per_example)) <= {0.0, 2.0}
    assert (per_example == per_example[:, :1]).all()  # one decision per example
    assert 0 < (per_example[:, 0] == 0).sum() < 64
    assert layer.apply({}, {}, x)[0] is x
    with pytest.raises(ValueError, match="StochasticDepth: training=True needs a PRNG key"):
        layer.apply({}, {}, x, training=True)
    with pytest.raises(ValueError, match="StochasticDepth: rate"):
        jl.StochasticDepth(1.0)


def test_blocks_pass_the_conformance_battery():
    # jit/vmap/keys/float64 gradients/bfloat16 (jl.testing) on the SE gate and drop-path
    jl.testing.check_layer(jl.SqueezeExcitation(4, 2, activation="swish"), (2, 3, 3, 4), KEY)
    jl.testing.check_layer(jl.StochasticDepth(0.5), (4, 2, 2, 3), KEY, random=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["basic_block", "mbconv"])
def test_model_blocks_pass_the_conformance_battery(name):
    # 13 s and 16 s alone (twice that beside other jobs): `branches` with a projection
    # shortcut, and expand/depthwise/SE/project with drop-path, BatchNorm throughout
    layer, shape = {
        "basic_block": (basic_block(3, 4, 2), (2, 5, 5, 3)),
        "mbconv": (mbconv(4, 4, kernel_size=3, strides=1, expansion=2, drop_path=0.3),
                   (2, 4, 4, 4)),
    }[name]
    jl.testing.check_layer(layer, shape, KEY, random=name == "mbconv")


# ---------------------------------------------------------------- one training step each

# XLA:CPU compile time dominates these tests. Measured savings (CPU seconds, 2 cores
# shared with other jobs; see the report in the pull request):
# - keys with impl="unsafe_rbg" (XLA's RngBitGenerator): MobileNetV2's jitted init
#   compiled in 21 s with threefry keys and 5 s with these; init runs eagerly, so the
#   per-shape kernels are shared between the models of one session;
# - the train step compiled at XLA backend optimization level 0 without the expensive
#   LLVM passes: 25-35% less compile time (ResNet-50 9.6 -> 7.7 s, EfficientNet-B0
#   18.2 -> 13.6 s), at a run-time cost that does not matter for one step. (Init would
#   suffer: RNG for VGG-16's 138M params ran 164 s unoptimized.)
# - the two deepest BatchNorm nets, DenseNet-121 (58 BatchNorm'd layers behind growing
#   concatenations: 32 s for the step, 5 s forward) and torchvision's GoogLeNet (17 s,
#   4 s), run one training-mode forward pass instead; ResNet-50, MobileNetV2 and
#   EfficientNet-B0 cover BatchNorm, depthwise, SE and drop-path gradients.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# smallest inputs each architecture allows (batch 2), 10 classes; True: a full SGD step
TRAIN = [
    ("lenet5", models.lenet5, {}, (2, 32, 32, 1), True),
    ("alexnet", models.alexnet, {}, (2, 67, 67, 3), True),  # pool5 -> 1×1×256
    ("alexnet_torchvision", models.alexnet, {"variant": "torchvision"}, (2, 63, 63, 3),
     True),
    ("vgg16", models.vgg16, {}, (2, 32, 32, 3), True),
    ("googlenet", models.googlenet, {}, (2, 32, 32, 3), True),
    ("googlenet_torchvision", models.googlenet, {"variant": "torchvision"}, (2, 32, 32, 3),
     False),
    ("resnet18", models.resnet18, {}, (2, 32, 32, 3), True),
    ("resnet50", models.resnet50, {}, (2, 32, 32, 3), True),
    ("densenet121", models.densenet121, {}, (2, 32, 32, 3), False),  # >= 29×29
    ("mobilenet_v2", models.mobilenet_v2, {}, (2, 32, 32, 3), True),
    ("efficientnet_b0", models.efficientnet_b0, {}, (2, 32, 32, 3), True),
]


def _changed(before, after):
    return any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                                            before, after)))


@pytest.mark.slow
@pytest.mark.parametrize("name,builder,kwargs,shape,full_step", TRAIN,
                         ids=[t[0] for t in TRAIN])
def test_one_sgd_training_step(name, builder, kwargs, shape, full_step):
    model = builder(num_classes=10, **kwargs)
    key = jax.random.key(0, impl="unsafe_rbg")
    params, state = model.init(key, shape)
    x = jax.random.normal(jax.random.key(1), shape)
    labels = jnp.arange(shape[0]) % 10
    opt = optax.sgd(0.01)

    def loss_fn(params, state, x, labels, key):
        logits, new_state = model.apply(params, state, x, key=key, training=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, new_state

    def step(params, state, opt_state, x, labels, key):
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, state, x, labels, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, loss

    # x and labels are arguments, not constants that XLA would fold while compiling
    if full_step:
        args = (params, state, opt.init(params), x, labels, jax.random.fold_in(key, 1))
        compiled = jax.jit(step).lower(*args).compile(compiler_options=FAST_COMPILE)
        new_params, new_state, loss = compiled(*args)
        assert _changed(params, new_params)
    else:
        args = (params, state, x, labels, jax.random.fold_in(key, 1))
        compiled = jax.jit(loss_fn).lower(*args).compile(compiler_options=FAST_COMPILE)
        loss, new_state = compiled(*args)
    assert math.isfinite(float(loss))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    if jax.tree.leaves(state):  # BatchNorm running statistics moved
        assert _changed(state, new_state)
