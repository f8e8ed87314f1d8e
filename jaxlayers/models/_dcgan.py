"""DCGAN (Radford et al. 2016; seed 003 Q16's "GAN (generator)"): two networks, two steps."""


from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlayers import losses
from jaxlayers._checks import check_positive_int
from jaxlayers._combinators import serial
from jaxlayers.core import Layer
from jaxlayers.initializers import normal
from jaxlayers.layers.activation import Activation
from jaxlayers.layers.conv import Conv2D, Conv2DTranspose
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.shape import Flatten, Reshape
from jaxlayers.models._autoencoder import check_image_shape, check_sizes
from jaxlayers.models._blocks import torch_batch_norm
from jaxlayers.train import TrainState, check_optimizer, typed_key

__all__ = ["DCGAN", "dcgan", "dcgan_init", "dcgan_steps", "train_dcgan",
           "discriminator_loss", "generator_loss"]

_NETS = ("generator", "discriminator")


class DCGAN(NamedTuple):
    """The pair `dcgan` builds: generator z (N, latent_dim) -> images (N, H, W, C) in
    [-1, 1], discriminator images -> logits (N, 1) (real > 0)."""

    generator: Layer
    discriminator: Layer
    latent_dim: int
    image_shape: tuple

    def init(self, key):
        """params, state: {"generator": ..., "discriminator": ...}, each net's own init."""
        k_g, k_d = jax.random.split(key)
        g = self.generator.init(k_g, (1, self.latent_dim))
        d = self.discriminator.init(k_d, (1,) + self.image_shape)
        return {"generator": g[0], "discriminator": d[0]}, {"generator": g[1],
                                                            "discriminator": d[1]}

    def sample(self, params, state, key, num_samples: int):
        """num_samples images from z ~ N(0, I) drawn from `key`, the generator in inference
        mode (BatchNorm on its running statistics): (num_samples, H, W, C) in [-1, 1]."""
        num_samples = check_positive_int("DCGAN.sample", "num_samples", num_samples)
        z = jax.random.normal(key, (num_samples, self.latent_dim))
        images, _ = self.generator.apply(params["generator"], state["generator"], z)
        return images


def dcgan(image_shape, *, latent_dim: int = 16, filters=(64, 32)) -> DCGAN:
    """A DCGAN: a generator of transposed convs and a discriminator of strided convs.

    Math (Radford et al. 2016, as the PyTorch DCGAN example), for filters (f_1, ..., f_L):
      generator:     z -> Dense(h·w·f_1, no bias) -> Reshape (h, w, f_1) -> BN -> ReLU,
                     then per f in f_2..f_L: Conv2DTranspose(f, 4, strides=2, "same", no
                     bias) -> BN -> ReLU, and Conv2DTranspose(C, 4, strides=2, "same") ->
                     tanh; each transposed conv doubles H and W (h = H / 2^L).
      discriminator: per f in f_L..f_1: Conv2D(f, 4, strides=2, "same") -> BN (not on the
                     first) -> LeakyReLU(0.2), halving H and W; then Flatten -> Dense(1):
                     a logit, real > 0. No pooling anywhere, as the paper.
    Kernels start N(0, 0.02); BatchNorm takes PyTorch's eps 1e-5 and momentum 0.1
    (jaxlayers' momentum 0.9), as the example. Images are in [-1, 1] (tanh): scale data
    in [0, 1] by 2x - 1.

    Training (`dcgan_steps`, `train_dcgan`) alternates a discriminator step on
    discriminator_loss and a generator step on the non-saturating generator_loss.

    Shapes: generator z (N, latent_dim) -> (N, H, W, C); discriminator (N, H, W, C) ->
    (N, 1). params (from `DCGAN.init`) {"generator": (Dense, Reshape, BN, ReLU, then
    (Conv2DTranspose, BN, ReLU) per f_2..f_L, Conv2DTranspose(C)), "discriminator":
    (Conv2D, LeakyReLU, then (Conv2D, BN, LeakyReLU) per further f, Flatten, Dense)};
    state: the BatchNorms' running mean/var.

    Args:
      image_shape: (H, W, C), H and W divisible by 2^len(filters).
      latent_dim: the dimension of z.
      filters: the generator's channels from its smallest map up (the discriminator uses
        them reversed): (64, 32) makes 2×2×64 -> 4×4×32 -> 8×8×C for 8×8 images.

    Raises:
      ValueError: a bad image_shape, latent_dim or filters (construction).
    """
    name = "dcgan"
    latent_dim = check_positive_int(name, "latent_dim", latent_dim)
    filters = check_sizes(name, "filters", filters)
    height, width, channels = check_image_shape(name, image_shape, len(filters))
    h, w = height // 2 ** len(filters), width // 2 ** len(filters)
    init = normal(0.02)
    gen = [Dense(h * w * filters[0], use_bias=False, kernel_init=init),
           Reshape((h, w, filters[0])), torch_batch_norm(), Activation("relu")]
    for f in filters[1:]:
        gen += [Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False,
                                kernel_init=init), torch_batch_norm(), Activation("relu")]
    gen.append(Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh",
                               kernel_init=init))
    disc = []
    for i, f in enumerate(reversed(filters)):
        disc.append(Conv2D(f, 4, strides=2, padding="same", use_bias=i == 0, kernel_init=init))
        disc += ([] if i == 0 else [torch_batch_norm()]) + [Activation("leaky_relu", alpha=0.2)]
    disc += [Flatten(), Dense(1, kernel_init=init)]
    return DCGAN(serial(*gen), serial(*disc), latent_dim, (height, width, channels))


def discriminator_loss(real_logits, fake_logits):
    """BCE(D(x), 1) + BCE(D(G(z)), 0), each a mean over its batch (the PyTorch example's
    errD_real + errD_fake): mean softplus(-real_logits) + mean softplus(fake_logits)."""
    return (losses.binary_crossentropy(real_logits, jnp.ones_like(real_logits),
                                       from_logits=True)
            + losses.binary_crossentropy(fake_logits, jnp.zeros_like(fake_logits),
                                         from_logits=True))


def generator_loss(fake_logits):
    """The non-saturating generator loss BCE(D(G(z)), 1) = mean softplus(-fake_logits)
    (Goodfellow et al. 2014, §3): it maximises log D(G(z)) instead of minimising
    log(1 - D(G(z))), whose gradient vanishes while D rejects the fakes confidently."""
    return losses.binary_crossentropy(fake_logits, jnp.ones_like(fake_logits),
                                      from_logits=True)


def dcgan_init(gan: DCGAN, key, *, d_optimizer, g_optimizer) -> TrainState:
    """The first TrainState of a run: params/state/opt_state as dicts {"generator",
    "discriminator"}, each optimizer initialised on its own net's params; `key` is the
    run's key (noise, batches and layer keys derive from it and the step)."""
    for opt in (d_optimizer, g_optimizer):
        check_optimizer("dcgan_init", opt)
    key = typed_key("dcgan_init", key)
    # one compiled program: eager init would compile a random draw per kernel shape
    params, state = jax.jit(gan.init)(jax.random.fold_in(key, 0))
    opt_state = {"generator": g_optimizer.init(params["generator"]),
                 "discriminator": d_optimizer.init(params["discriminator"])}
    return TrainState(params, state, opt_state, key, 0, 0)


def _layer_keys(ts: TrainState):
    k = jax.random.fold_in(ts.key, ts.step)
    return jax.random.fold_in(k, 2), jax.random.fold_in(k, 3)  # generator, discriminator


def _build_steps(gan: DCGAN, d_optimizer, g_optimizer):
    G, D = gan.generator, gan.discriminator

    def d_step(ts: TrainState, real, z):
        (gp, dp), (gs, ds) = ([t[n] for n in _NETS] for t in (ts.params, ts.state))
        k_g, k_d = _layer_keys(ts)
        # the generator runs in training mode (batch statistics) but this step keeps
        # neither its gradient nor its BatchNorm update: only the discriminator learns here
        fake, _ = G.apply(gp, gs, z, key=k_g, training=True)
        fake = jax.lax.stop_gradient(fake)

        def objective(dp):
            real_logits, ds1 = D.apply(dp, ds, real, key=jax.random.fold_in(k_d, 0),
                                       training=True)
            fake_logits, ds2 = D.apply(dp, ds1, fake, key=jax.random.fold_in(k_d, 1),
                                       training=True)
            return discriminator_loss(real_logits, fake_logits), (ds2, real_logits,
                                                                   fake_logits)

        (loss, (ds, real_logits, fake_logits)), grads = jax.value_and_grad(
            objective, has_aux=True)(dp)
        updates, d_opt = d_optimizer.update(grads, ts.opt_state["discriminator"], dp)
        ts = ts.replace(params={**ts.params, "discriminator": optax.apply_updates(dp, updates)},
                        state={**ts.state, "discriminator": ds},
                        opt_state={**ts.opt_state, "discriminator": d_opt})
        return ts, {"d_loss": loss, "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
                    "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}

    def g_step(ts: TrainState, z):
        (gp, dp), (gs, ds) = ([t[n] for n in _NETS] for t in (ts.params, ts.state))
        k_g, k_d = _layer_keys(ts)

        def objective(gp):
            fake, gs1 = G.apply(gp, gs, z, key=k_g, training=True)
            # the discriminator's BatchNorm update from this pass is dropped (its running
            # statistics follow its own step); its params are constants here
            fake_logits, _ = D.apply(dp, ds, fake, key=k_d, training=True)
            return generator_loss(fake_logits), gs1

        (loss, gs), grads = jax.value_and_grad(objective, has_aux=True)(gp)
        updates, g_opt = g_optimizer.update(grads, ts.opt_state["generator"], gp)
        ts = ts.replace(params={**ts.params, "generator": optax.apply_updates(gp, updates)},
                        state={**ts.state, "generator": gs},
                        opt_state={**ts.opt_state, "generator": g_opt},
                        step=ts.step + 1)
        return ts, {"g_loss": loss}

    return jax.jit(d_step), jax.jit(g_step)


def dcgan_steps(gan: DCGAN, *, d_optimizer, g_optimizer):
    """The two jit-compiled steps of one DCGAN iteration, pure functions of a TrainState:

        d_step(ts, real, z) -> (ts, {"d_loss", "d_real", "d_fake"})
        g_step(ts, z)       -> (ts, {"g_loss"})

    d_step: fakes G(z) from the generator (training mode, no gradient), then one
      d_optimizer update of the discriminator on discriminator_loss(D(real), D(fakes));
      d_real / d_fake are the mean probabilities D gave each batch. Only
      params/state/opt_state["discriminator"] change.
    g_step: one g_optimizer update of the generator on generator_loss(D(G(z))), gradients
      through the (fixed) discriminator; only ["generator"] changes, and `step` grows by 1.
    Losses are those before the update. Both nets run with training=True (BatchNorm on
    batch statistics; the discriminator sees real and fake batches separately, as the
    PyTorch example). Layer keys are fold_in(fold_in(ts.key, ts.step), 2 / 3).
    Compiled once per (gan, optimizers) and cached on the generator.

    Shapes: real (B, H, W, C) in [-1, 1]; z (B', latent_dim).
    """
    for opt in (d_optimizer, g_optimizer):
        check_optimizer("dcgan_steps", opt)
    cache = gan.generator.__dict__.setdefault("_jaxlayers_compiled", {})
    key = ("dcgan_steps", gan.discriminator, d_optimizer, g_optimizer)
    try:
        hash(key)
    except TypeError:  # an unhashable optimizer: build afresh
        return _build_steps(gan, d_optimizer, g_optimizer)
    if key not in cache:
        cache[key] = _build_steps(gan, d_optimizer, g_optimizer)
    return cache[key]


def train_dcgan(gan: DCGAN, images, *, steps: int, batch_size: int = 64, key=None,
                ts: TrainState | None = None, d_optimizer=None, g_optimizer=None):
    """Train a DCGAN for `steps` iterations of (d_step, g_step); returns (ts, history).

    Each iteration s (s = ts.step) takes a batch of `batch_size` images without
    replacement (NumPy's PCG64 seeded by the run key and s) and draws fresh noise for
    each step, z ~ N(0, I) from fold_in(fold_in(key, s), 0) for d_step and ..., 1) for
    g_step. Give `ts` (a TrainState from this function or `dcgan_init`) to continue a run:
    two calls of 100 steps equal one of 200.

    Args:
      gan: from `dcgan`.
      images: (N, H, W, C) in [-1, 1] (the generator's tanh range), N >= batch_size.
      steps, batch_size: iterations and images per batch.
      key: the run's PRNG key (needed without `ts`).
      d_optimizer, g_optimizer: optax transformations; default Adam(2e-4, b1=0.5), the
        paper's. Pass the same objects again to reuse the compiled steps.

    Returns:
      ts: a TrainState (params/state/opt_state dicts {"generator", "discriminator"}).
      history: {"d_loss", "g_loss", "d_real", "d_fake"}, a list of floats per iteration.

    Raises:
      ValueError: images of the wrong shape or outside [-1, 1], bad steps or batch_size.
      TypeError: no key and no ts.
    """
    name = "train_dcgan"
    steps = check_positive_int(name, "steps", steps)
    batch_size = check_positive_int(name, "batch_size", batch_size)
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != gan.image_shape or len(images) < batch_size:
        raise ValueError(f"{name}: images must be (N, *{gan.image_shape}) with N >= "
                         f"batch_size={batch_size}, got shape {images.shape}.")
    if images.min() < -1.0 or images.max() > 1.0:
        raise ValueError(f"{name}: images must lie in [-1, 1] (the generator's tanh range), "
                         f"got values in [{images.min():g}, {images.max():g}]; scale [0, 1] "
                         f"data by 2 * x - 1.")
    default = optax.adam(2e-4, b1=0.5)
    d_optimizer, g_optimizer = d_optimizer or default, g_optimizer or default
    if ts is None:
        ts = dcgan_init(gan, key, d_optimizer=d_optimizer, g_optimizer=g_optimizer)
    d_step, g_step = dcgan_steps(gan, d_optimizer=d_optimizer, g_optimizer=g_optimizer)
    seed = [int(w) for w in np.ravel(jax.random.key_data(ts.key))]
    logs, first = [], int(ts.step)
    for s in range(first, first + steps):  # s on the host: no sync on ts.step per step
        idx = np.random.default_rng(seed + [s]).choice(len(images), batch_size, replace=False)
        k = jax.random.fold_in(ts.key, s)
        z_d = jax.random.normal(jax.random.fold_in(k, 0), (batch_size, gan.latent_dim))
        z_g = jax.random.normal(jax.random.fold_in(k, 1), (batch_size, gan.latent_dim))
        ts, d_logs = d_step(ts, images[idx], z_d)
        ts, g_logs = g_step(ts, z_g)
        logs.append({**d_logs, **g_logs})
    logs = jax.device_get(logs)  # one transfer at the end, not a sync per step
    history = {k: [float(log[k]) for log in logs] for k in ("d_loss", "g_loss", "d_real",
                                                            "d_fake")}
    return ts, history
