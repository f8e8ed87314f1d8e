"""CNN workloads: LeNet-5, a ResNet basic-block stack, a conv stack; Adam(1e-3), softmax CE.

lenet5    jl.models.lenet5 (tanh, 5×5 convs, 2×2 average pools, 120-84-10), batch 128 of
          32×32×1 images.
resblock  two ResNet basic blocks 64 -> 64 (3×3 conv, BatchNorm (training mode), relu,
          3×3 conv, BatchNorm, + identity skip, relu) on 32×32×64, batch 64, then global
          average pool -> Dense(10).
convstack a ResNet-ish 32/64-channel stack without normalisation (issue 13), batch 64 of
          32×32×3: 3×3 conv 3->32 + relu; a block 32 (3×3 conv + relu, 3×3 conv, + identity,
          relu); 3×3 conv 32->64 stride 2 + relu; a block 64 on 16×16; global average
          pool -> Dense(10). Every conv padding 1, with bias. Its convs are the shapes
          benchmarks/conv_grad.py times one by one.

Contenders per workload:
  jaxlayers     the library's model + jl.train.make_train_step (donating, as users call it)
  jax           hand-written lax.conv_general_dilated, the fastest layout measured on this
                machine (see VARIANTS; `run.py --variants` re-measures)
  pytorch       eager nn.Conv2d/... (channels-first), torch.optim.Adam defaults
  torch.compile the same step under torch.compile (inductor; slow to compile, not --quick)
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Contender, Workload, jax_stepper, num_threads, torch_stepper
from benchmarks.mlp import _library_step

LEARNING_RATE = 1e-3
CLASSES = 10

LENET_BATCH, LENET_SHAPE = 128, (32, 32, 1)
RES_BATCH, RES_SHAPE, RES_BLOCKS = 64, (32, 32, 64), 2
STACK_BATCH, STACK_SHAPE = 64, (32, 32, 3)
# the five convs: (in, out, stride); blocks at 1-2 and 4-5, identity skip around each pair
STACK_CONVS = ((3, 32, 1), (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 64, 1))
BN_EPS, BN_MOMENTUM = 1e-5, 0.9  # PyTorch's BatchNorm2d defaults (momentum 0.1 there)


def _data(batch, shape):
    """The one batch (NHWC float32 images, int32 labels) every step trains on."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape, dtype=np.float32)
    y = rng.integers(0, CLASSES, batch).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- jaxlayers

def _jaxlayers(build, batch, shape):
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        model = build()
        optimizer = optax.adam(LEARNING_RATE)
        step, _ = _library_step(model, optimizer)
        params, state = model.init(jax.random.key(0), (batch,) + shape)
        x, y = (jnp.asarray(a) for a in _data(batch, shape))
        return jax_stepper(step, (params, state, optimizer.init(params)),
                           (x, y, jax.random.key(1)))

    return setup


def patched_step(build, batch, shape, conv):
    """The library's train step (as `_jaxlayers`) traced and compiled, by its first call,
    while `jaxlayers.layers._conv_cpu.conv` is `conv`: how benchmarks/conv_grad.py and
    winograd.py put a candidate conv formulation into a whole train step. The original
    is restored afterwards; the compiled step keeps the candidate."""
    from jaxlayers.layers import _conv_cpu as cc

    original, cc.conv = cc.conv, conv
    try:
        step = _jaxlayers(build, batch, shape)()
        step()
    finally:
        cc.conv = original
    return step


def _lenet_model():
    import jaxlayers as jl
    return jl.models.lenet5(CLASSES)


def _resblock_model():
    import jaxlayers as jl
    from jaxlayers.models._resnet import basic_block

    c = RES_SHAPE[-1]
    blocks = {f"block{i}": basic_block(c, c) for i in range(RES_BLOCKS)}
    return jl.serial(**blocks, pool=jl.GlobalAvgPool2D(), fc=jl.Dense(CLASSES))


def _stack_block(c):
    import jaxlayers as jl
    main = jl.serial(conv1=jl.Conv2D(c, 3, padding=1, activation="relu"),
                     conv2=jl.Conv2D(c, 3, padding=1))
    return jl.Branches(jl.Add(), activation="relu", main=main, shortcut=jl.Identity())


def _convstack_model():
    import jaxlayers as jl
    return jl.serial(stem=jl.Conv2D(32, 3, padding=1, activation="relu"),
                     block32=_stack_block(32),
                     down=jl.Conv2D(64, 3, strides=2, padding=1, activation="relu"),
                     block64=_stack_block(64), pool=jl.GlobalAvgPool2D(),
                     fc=jl.Dense(CLASSES))


# ------------------------------------------------------------------ hand-written JAX

def _glorot(key, shape, fan_in, fan_out):
    import jax
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, minval=-limit, maxval=limit)


def _conv_helpers(layout):
    """(conv(x, w, padding), kernel shape from (kh, kw, cin, cout), channel axis)."""
    from jax import lax

    if layout == "nchw":
        dims = ("NCHW", "OIHW", "NCHW")

        def kshape(kh, kw, ci, co):
            return (co, ci, kh, kw)
        caxis = 1
    else:
        dims = ("NHWC", "HWIO", "NHWC")

        def kshape(kh, kw, ci, co):
            return (kh, kw, ci, co)
        caxis = 3

    def conv(x, w, padding):
        return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=dims)

    return conv, kshape, caxis


def _bcast(b, caxis):
    """A per-channel vector shaped to broadcast on the channel axis of a 4-D array."""
    return b.reshape((1, -1, 1, 1) if caxis == 1 else (1, 1, 1, -1))


def _adam_step(objective, has_aux, donate):
    """jit(step(params, [state,] opt_state, x, y)) with optax.adam."""
    import jax
    import optax

    optimizer = optax.adam(LEARNING_RATE)
    if has_aux:
        def step(p, s, o, x, y):
            (value, s), grads = jax.value_and_grad(objective, has_aux=True)(p, s, x, y)
            updates, o = optimizer.update(grads, o, p)
            return optax.apply_updates(p, updates), s, o, value
        donate_argnums = (0, 1, 2)
    else:
        def step(p, o, x, y):
            value, grads = jax.value_and_grad(objective)(p, x, y)
            updates, o = optimizer.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value
        donate_argnums = (0, 1)
    return optimizer, jax.jit(step, donate_argnums=donate_argnums if donate else ())


def _lenet_handwritten(layout="nhwc", pool="reduce_window", donate=True):
    """LeNet-5 in lax. layout: "nhwc" (NHWC/HWIO) or "nchw" (NCHW/OIHW).
    pool: "reduce_window" (lax.reduce_window add / 4) or "reshape" (reshape + mean)."""
    def setup():
        import jax
        import jax.numpy as jnp
        import optax
        from jax import lax

        conv, kshape, caxis = _conv_helpers(layout)
        key = jax.random.key(0)
        convs = []
        for i, (ci, co) in enumerate(((1, 6), (6, 16))):
            w = _glorot(jax.random.fold_in(key, i), kshape(5, 5, ci, co), 25 * ci, 25 * co)
            convs.append((w, jnp.zeros((co,), jnp.float32)))
        dense = []
        for i, (a, b) in enumerate(((400, 120), (120, 84), (84, CLASSES))):
            dense.append((_glorot(jax.random.fold_in(key, 10 + i), (a, b), a, b),
                          jnp.zeros((b,), jnp.float32)))
        params = (convs, dense)

        if layout == "nchw":
            window = (1, 1, 2, 2)
        else:
            window = (1, 2, 2, 1)

        def avg_pool(h):
            if pool == "reshape":
                n = h.shape[0]
                if caxis == 1:
                    c, hh, ww = h.shape[1:]
                    return h.reshape(n, c, hh // 2, 2, ww // 2, 2).mean(axis=(3, 5))
                hh, ww, c = h.shape[1:]
                return h.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
            return lax.reduce_window(h, 0.0, lax.add, window, window, "VALID") / 4.0

        def forward(p, x):
            convs_, dense_ = p
            h = x
            for w, b in convs_:
                h = avg_pool(jnp.tanh(conv(h, w, "VALID") + _bcast(b, caxis)))
            h = h.reshape(h.shape[0], -1)
            for i, (w, b) in enumerate(dense_):
                h = h @ w + b
                if i < len(dense_) - 1:
                    h = jnp.tanh(h)
            return h

        def objective(p, x, y):
            return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

        optimizer, fn = _adam_step(objective, False, donate)
        x, y = _data(LENET_BATCH, LENET_SHAPE)
        if layout == "nchw":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return jax_stepper(fn, (params, optimizer.init(params)), (jnp.asarray(x), jnp.asarray(y)))

    return setup


def _resblock_handwritten(layout="nhwc", bn="two_pass", donate=True):
    """Basic-block stack in lax. layout as LeNet's. bn: "two_pass" (mean, then mean of
    squared deviations, as jl.BatchNorm; normalised as (h - mean) * (gamma * inv) + beta),
    "one_pass" (var = E[x²] - E[x]²), "xhat" (two-pass, normalised as jl.BatchNorm:
    x_hat = (h - mean) * inv, then gamma * x_hat + beta)."""
    def setup():
        import jax
        import jax.numpy as jnp
        import optax
        from jax import lax

        conv, kshape, caxis = _conv_helpers(layout)
        c = RES_SHAPE[-1]
        key = jax.random.key(0)
        blocks, bstate = [], []
        for i in range(RES_BLOCKS):
            blk = []
            for j in range(2):
                w = _glorot(jax.random.fold_in(key, 2 * i + j), kshape(3, 3, c, c),
                            9 * c, 9 * c)
                blk.append((w, jnp.ones((c,), jnp.float32), jnp.zeros((c,), jnp.float32)))
            blocks.append(blk)
            bstate.append([(jnp.zeros((c,), jnp.float32), jnp.ones((c,), jnp.float32))
                           for _ in range(2)])
        fc = (_glorot(jax.random.fold_in(key, 99), (c, CLASSES), c, CLASSES),
              jnp.zeros((CLASSES,), jnp.float32))
        params, state = (blocks, fc), bstate
        axes = (0, 2, 3) if caxis == 1 else (0, 1, 2)

        def batch_norm(h, gamma, beta, s):
            mean = jnp.mean(h, axis=axes)
            if bn == "one_pass":
                var = jnp.mean(jnp.square(h), axis=axes) - jnp.square(mean)
            else:
                var = jnp.mean(jnp.square(h - _bcast(mean, caxis)), axis=axes)
            run_mean, run_var = s
            new_s = (BN_MOMENTUM * run_mean + (1 - BN_MOMENTUM) * lax.stop_gradient(mean),
                     BN_MOMENTUM * run_var + (1 - BN_MOMENTUM) * lax.stop_gradient(var))
            if bn == "xhat":  # as jl.BatchNorm: x_hat = (h - mean) * inv, gamma * x_hat + beta
                x_hat = (h - _bcast(mean, caxis)) * _bcast(lax.rsqrt(var + BN_EPS), caxis)
                return x_hat * _bcast(gamma, caxis) + _bcast(beta, caxis), new_s
            scale = gamma * lax.rsqrt(var + BN_EPS)
            return (h - _bcast(mean, caxis)) * _bcast(scale, caxis) + _bcast(beta, caxis), new_s

        def forward(p, s, x):
            blocks_, (wf, bf) = p
            h, new_state = x, []
            for blk, blk_s in zip(blocks_, s):
                (w1, g1, b1), (w2, g2, b2) = blk
                u, s1 = batch_norm(conv(h, w1, ((1, 1), (1, 1))), g1, b1, blk_s[0])
                u = jax.nn.relu(u)
                u, s2 = batch_norm(conv(u, w2, ((1, 1), (1, 1))), g2, b2, blk_s[1])
                h = jax.nn.relu(u + h)
                new_state.append([s1, s2])
            pooled = jnp.mean(h, axis=(2, 3) if caxis == 1 else (1, 2))
            return pooled @ wf + bf, new_state

        def objective(p, s, x, y):
            logits, s = forward(p, s, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), s

        optimizer, fn = _adam_step(objective, True, donate)
        x, y = _data(RES_BATCH, RES_SHAPE)
        if layout == "nchw":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return jax_stepper(fn, (params, state, optimizer.init(params)),
                           (jnp.asarray(x), jnp.asarray(y)))

    return setup


def stack_params_from_library(params):
    """The library's convstack params as the hand-written ones: ([(w, b)] * 6, (w, b))."""
    convs = [params["stem"]]
    for block in ("block32", "down", "block64"):
        p = params[block]
        convs += [p] if block == "down" else [p["main"]["conv1"], p["main"]["conv2"]]
    return [(c["kernel"], c["bias"]) for c in convs], (params["fc"]["kernel"],
                                                        params["fc"]["bias"])


def stack_forward(p, x):
    """The convstack in lax.conv_general_dilated (NHWC/HWIO): logits (N, 10)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    convs, (wf, bf) = p

    def conv(h, i):
        (w, b), stride = convs[i], STACK_CONVS[i][2]
        return lax.conv_general_dilated(h, w, (stride, stride), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

    relu = jax.nn.relu
    h = relu(conv(x, 0))
    h = relu(conv(relu(conv(h, 1)), 2) + h)
    h = relu(conv(h, 3))
    h = relu(conv(relu(conv(h, 4)), 5) + h)
    return jnp.mean(h, axis=(1, 2)) @ wf + bf


def _stack_handwritten(donate=True):
    """The convstack in lax (stack_forward), glorot-uniform kernels, zero biases."""
    def setup():
        import jax
        import jax.numpy as jnp
        import optax

        key = jax.random.key(0)
        convs = [(_glorot(jax.random.fold_in(key, i), (3, 3, ci, co), 9 * ci, 9 * co),
                  jnp.zeros((co,), jnp.float32)) for i, (ci, co, _) in enumerate(STACK_CONVS)]
        c = STACK_CONVS[-1][1]
        params = (convs, (_glorot(jax.random.fold_in(key, 99), (c, CLASSES), c, CLASSES),
                          jnp.zeros((CLASSES,), jnp.float32)))

        def objective(p, x, y):
            return optax.softmax_cross_entropy_with_integer_labels(stack_forward(p, x),
                                                                   y).mean()

        optimizer, fn = _adam_step(objective, False, donate)
        x, y = _data(STACK_BATCH, STACK_SHAPE)
        return jax_stepper(fn, (params, optimizer.init(params)), (jnp.asarray(x), jnp.asarray(y)))

    return setup


LENET_VARIANTS = {
    "jax:nhwc": dict(),
    "jax:nchw": dict(layout="nchw"),
    "jax:nhwc+reshape-pool": dict(pool="reshape"),
    "jax:nchw+reshape-pool": dict(layout="nchw", pool="reshape"),
    "jax:nhwc-no-donate": dict(donate=False),
}
RES_VARIANTS = {
    "jax:nhwc": dict(),
    "jax:nchw": dict(layout="nchw"),
    "jax:nhwc+one-pass-bn": dict(bn="one_pass"),
    "jax:nhwc+xhat-bn": dict(bn="xhat"),
    "jax:nhwc-no-donate": dict(donate=False),
}
# The fastest measured on this machine (README, "lenet5" / "resblock" sections).
STACK_VARIANTS = {"jax:nhwc": dict(), "jax:nhwc-no-donate": dict(donate=False)}
LENET_BASELINE = "jax:nhwc"
RES_BASELINE = "jax:nhwc"
STACK_BASELINE = "jax:nhwc"


# ------------------------------------------------------------------------- PyTorch

def _torch_lenet():
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
                         nn.Linear(84, CLASSES))


def _torch_resblock():
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU()

        def forward(self, x):
            u = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(u)) + x)

    c = RES_SHAPE[-1]
    return nn.Sequential(*[Block(c) for _ in range(RES_BLOCKS)], nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(c, CLASSES))


def _torch_convstack():
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv2(self.relu(self.conv1(x))) + x)

    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), Block(32),
                         nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), Block(64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES))


def _torch(build, batch, shape, channels_last=False, compiled=False):
    def setup():
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(num_threads())
        torch.manual_seed(0)
        model = build()
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        x, y = _data(batch, shape)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(y).long()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

        return torch_stepper(step, compiled)

    return setup


def _contenders(build, batch, shape, handwritten, variants, baseline, torch_build):
    yield Contender("jaxlayers", _jaxlayers(build, batch, shape), "jaxlayers",
                    "jaxlayers model + jl.train.make_train_step")
    yield Contender("jax", handwritten(**variants[baseline]), "jax",
                    f"hand-written lax, fastest variant ({baseline})")
    for name, kwargs in variants.items():
        yield Contender(name, handwritten(**kwargs), "jax", "baseline variant", variant=True)
    yield Contender("pytorch", _torch(torch_build, batch, shape), "torch",
                    "eager, NCHW, torch.optim.Adam defaults")
    yield Contender("pytorch:channels_last", _torch(torch_build, batch, shape, True), "torch",
                    "eager, channels_last memory format", variant=True)
    yield Contender("torch.compile", _torch(torch_build, batch, shape, compiled=True),
                    "torch", "torch.compile of the whole step (inductor, C++), NCHW",
                    slow=True)


LENET = Workload(
    name="lenet5",
    title=f"LeNet-5 (tanh, avg-pool), batch {LENET_BATCH} of 32x32x1, Adam({LEARNING_RATE:g}), "
          f"softmax cross-entropy",
    contenders=tuple(_contenders(_lenet_model, LENET_BATCH, LENET_SHAPE, _lenet_handwritten,
                                 LENET_VARIANTS, LENET_BASELINE, _torch_lenet)),
    baseline="jax",
    reference="pytorch",
)

RESBLOCK = Workload(
    name="resblock",
    title=f"{RES_BLOCKS} ResNet basic blocks 64->64 (BatchNorm training mode) + global avg "
          f"pool + Dense(10), batch {RES_BATCH} of 32x32x64, Adam({LEARNING_RATE:g})",
    contenders=tuple(_contenders(_resblock_model, RES_BATCH, RES_SHAPE, _resblock_handwritten,
                                 RES_VARIANTS, RES_BASELINE, _torch_resblock)),
    baseline="jax",
    reference="pytorch",
)

CONVSTACK = Workload(
    name="convstack",
    title=f"conv stack 3->32->32->32->64/2->64->64 (3x3, relu, 2 identity skips, no norm) "
          f"+ global avg pool + Dense(10), batch {STACK_BATCH} of 32x32x3, "
          f"Adam({LEARNING_RATE:g})",
    contenders=tuple(_contenders(_convstack_model, STACK_BATCH, STACK_SHAPE,
                                 _stack_handwritten, STACK_VARIANTS, STACK_BASELINE,
                                 _torch_convstack)),
    baseline="jax",
    reference="pytorch",
)

# run.py's registry names each one: "benchmarks.cnn:LENET", "benchmarks.cnn:RESBLOCK",
# "benchmarks.cnn:CONVSTACK"
WORKLOAD = LENET
