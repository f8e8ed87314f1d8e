"""Autoencoders (seed 003 Q16: the transposed-conv decoder) and a variational autoencoder."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlayers import losses
from jaxlayers._checks import (check_float, check_one_of, check_positive_float,
                               check_positive_int, describe, is_int)
from jaxlayers._combinators import serial
from jaxlayers._compose import compose
from jaxlayers.core import Layer, layer_factory
from jaxlayers.layers.conv import Conv2D, Conv2DTranspose
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.shape import Flatten, Reshape

__all__ = ["dense_autoencoder", "conv_autoencoder", "vae", "vae_loss", "gaussian_kl",
           "reparameterize", "vae_generate"]


# --------------------------------------------------------------------------- checks

def check_sizes(name: str, what: str, values, *, allow_empty: bool = False) -> tuple:
    """`values` as a tuple of positive ints, else a ValueError naming the builder."""
    ok = isinstance(values, (tuple, list)) and (allow_empty or len(values) > 0)
    if not ok or not all(is_int(v) and v > 0 for v in values):
        kind = "a tuple" if allow_empty else "a non-empty tuple"
        raise ValueError(f"{name}: {what} must be {kind} of positive ints, got {values!r}.")
    return tuple(int(v) for v in values)


def check_image_shape(name: str, image_shape, levels: int) -> tuple[int, int, int]:
    """(H, W, C) of positive ints with H and W divisible by 2**levels (the strided stages)."""
    shape = check_sizes(name, "image_shape (H, W, C)", image_shape)
    if len(shape) != 3:
        raise ValueError(f"{name}: image_shape must be (H, W, C), got {image_shape!r}.")
    h, w, _ = shape
    if h % 2 ** levels or w % 2 ** levels:
        raise ValueError(f"{name}: image height and width must be divisible by "
                         f"2**{levels} = {2 ** levels} (one halving per entry of filters), "
                         f"got image_shape {shape}.")
    return shape


# --------------------------------------------------------------------------- autoencoders

@layer_factory
def dense_autoencoder(input_dim: int, *, hidden=(32,), latent_dim: int = 16,
                      activation="relu", output_activation="sigmoid") -> Layer:
    """An MLP autoencoder: x -> encoder -> code (latent_dim) -> decoder -> x̂.

    Math: code = W_L(... act(W_1 x + b_1) ...) + b_L (a linear code), then the mirror
    image x̂ = out(V_L(... act(V_1 code + c_1) ...) + c_L), trained to x̂ ≈ x (e.g.
    jl.fit with data (x, x) and jl.losses.mse). The default sigmoid output suits pixels
    in [0, 1].

    Shapes: x (N, input_dim) -> x̂ (N, input_dim).
    params {"encoder": (Dense per hidden size, Dense(latent_dim)), "decoder": (Dense per
    hidden size reversed, Dense(input_dim))}; state {}. `model.children["encoder"]` and
    `["decoder"]` are the two halves, applied alone to params["encoder"] / ["decoder"].

    Args:
      input_dim: features of x (64 for the flat 8×8 digits).
      hidden: the encoder's hidden widths (the decoder uses them reversed); () gives a
        linear autoencoder.
      latent_dim: the code's width.
      activation: of the hidden layers; output_activation: of x̂ (None: linear).

    Raises:
      ValueError: a non-positive size, an unknown activation (construction).
    """
    name = "dense_autoencoder"
    input_dim = check_positive_int(name, "input_dim", input_dim)
    latent_dim = check_positive_int(name, "latent_dim", latent_dim)
    hidden = check_sizes(name, "hidden", hidden, allow_empty=True)
    encoder = serial(*[Dense(h, activation=activation) for h in hidden], Dense(latent_dim))
    decoder = serial(*[Dense(h, activation=activation) for h in reversed(hidden)],
                     Dense(input_dim, activation=output_activation))
    return serial(encoder=encoder, decoder=decoder)


@layer_factory
def conv_autoencoder(image_shape, *, filters=(16, 32), latent_dim: int | None = 16,
                     activation="relu", output_activation="sigmoid") -> Layer:
    """A convolutional autoencoder: strided convs down, transposed convs back up.

    Math: encoder: per f in filters, Conv2D(f, 3, strides=2, "same") + act, halving H and
    W each time; then (unless latent_dim is None) Flatten and a linear Dense(latent_dim)
    code. decoder: Dense(h·w·f_last) + act and Reshape to (h, w, f_last), then per f in
    filters reversed (after the last) Conv2DTranspose(f, 3, strides=2, "same") + act, and
    Conv2DTranspose(C, 3, strides=2, "same") with output_activation, doubling H and W
    each time (seed 003 Q16: ConvTranspose 3×3 stride 2, 4×4 -> 8×8, with "same").
    latent_dim=None keeps the code spatial, (h, w, f_last): fully convolutional, but then
    the code is a bottleneck only if h·w·f_last < H·W·C.

    Shapes: x (N, H, W, C) -> x̂ (N, H, W, C); h = H / 2^len(filters), w likewise.
    params {"encoder": (Conv2D per filter, [Flatten, Dense(latent_dim)]), "decoder":
    ([Dense, Reshape], Conv2DTranspose per filter reversed, Conv2DTranspose(C))}; state
    {}. `model.children["encoder"]` / `["decoder"]` are the halves.

    Args:
      image_shape: (H, W, C), H and W divisible by 2^len(filters).
      filters: channels of the encoder's convs, first to last.
      latent_dim: width of a dense code, or None for a spatial one.
      activation: of the hidden layers; output_activation: of x̂ (None: linear).

    Raises:
      ValueError: a bad image_shape or filters (H, W not divisible by 2^len(filters)),
        a non-positive latent_dim, an unknown activation (construction).
    """
    name = "conv_autoencoder"
    filters = check_sizes(name, "filters", filters)
    height, width, channels = check_image_shape(name, image_shape, len(filters))
    if latent_dim is not None:
        latent_dim = check_positive_int(name, "latent_dim", latent_dim)
    h, w = height // 2 ** len(filters), width // 2 ** len(filters)
    down = [Conv2D(f, 3, strides=2, padding="same", activation=activation) for f in filters]
    up = [Conv2DTranspose(f, 3, strides=2, padding="same", activation=activation)
          for f in reversed(filters[:-1])]
    up.append(Conv2DTranspose(channels, 3, strides=2, padding="same",
                              activation=output_activation))
    if latent_dim is not None:
        down += [Flatten(), Dense(latent_dim)]
        up = [Dense(h * w * filters[-1], activation=activation),
              Reshape((h, w, filters[-1]))] + up
    return serial(encoder=serial(*down), decoder=serial(*up))


# --------------------------------------------------------------------------- VAE

def reparameterize(mu, logvar, key):
    """A draw z ~ N(mu, diag(exp(logvar))) written so gradients reach mu and logvar:

        z = mu + sigma ⊙ eps,  sigma = exp(logvar / 2),  eps ~ N(0, I) drawn from `key`.

    eps carries all the randomness, so dz/dmu = 1 and dz/dlogvar = sigma ⊙ eps / 2
    (Kingma & Welling 2014, §2.4). The same key gives the same z. Shapes: mu, logvar
    (..., d), equal -> z (..., d).
    """
    eps = jax.random.normal(key, jnp.shape(mu), jnp.result_type(mu))
    return mu + jnp.exp(0.5 * logvar) * eps


def _gaussian_sample() -> Layer:
    """(mu, logvar) -> z: `reparameterize` while training (needs a key), mu in inference."""
    name = "GaussianSample"

    def init(key, spec):
        del key
        if not (isinstance(spec, tuple) and len(spec) == 2 and spec[0].shape == spec[1].shape):
            raise ValueError(f"{name}: input must be a pair (mu, logvar) of equal shapes, "
                             f"got {spec}.")
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        mu, logvar = x
        check_float(name, mu)
        if not training:
            return mu, state
        if key is None:
            raise ValueError("vae: training=True draws z = mu + sigma * eps and needs a "
                             "PRNG key, got key=None; pass key=jax.random.key(seed) to "
                             "apply, or training=False for z = mu.")
        return reparameterize(mu, logvar, key), state

    return Layer(init, apply, name=name)


@layer_factory
def vae(input_dim: int, *, hidden=(64,), latent_dim: int = 8, activation="relu") -> Layer:
    """A variational autoencoder (Kingma & Welling 2014) with a Gaussian code and a
    Bernoulli decoder: x -> (logits, mu, logvar).

    Math: h = encoder(x); mu = h W_mu + b_mu; logvar = h W_logvar + b_logvar (log σ²);
    z = mu + exp(logvar / 2) ⊙ eps, eps ~ N(0, I) (`reparameterize`); logits = decoder(z),
    p(x | z) = Bernoulli(sigmoid(logits)) per feature. The loss is the negative ELBO,
    `vae_loss`: Σ_features BCE(logits, x) + KL(N(mu, σ²) ‖ N(0, I)).

    Randomness and mode: with training=True, eps comes from the key the apply receives
    (the "sample" child's key, derived from it as every compose child's is), so the same
    key gives the same z and a missing key is a ValueError. With training=False, z = mu:
    the posterior mean, so inference (reconstruction, jl.evaluate, jl.predict) is
    deterministic and needs no key, as in the PyTorch VAE example (`reparameterize` only
    `if self.training`; Keras's VAE example samples in both modes). An ELBO estimate on held-out data therefore uses training=True and a
    key (the model has no dropout or BatchNorm, so that changes nothing else).

    Shapes: x (N, input_dim), in [0, 1] -> (logits (N, input_dim), mu (N, latent_dim),
    logvar (N, latent_dim)); sigmoid(logits) is the reconstruction.
    params {"encoder": (Dense per hidden size), "mu": Dense, "logvar": Dense, "sample": {},
    "decoder": (Dense per hidden size reversed, Dense(input_dim))}; state {}. Decode
    codes of your own with `model.children["decoder"]` (`vae_generate` does).

    Args:
      input_dim: features of x (64 for the flat 8×8 digits).
      hidden: the encoder's hidden widths (the decoder uses them reversed).
      latent_dim: the code's dimension d.
      activation: of the hidden layers.

    Raises:
      ValueError: a non-positive size, an unknown activation (construction);
        training=True with key=None (trace time).
    """
    name = "vae"
    input_dim = check_positive_int(name, "input_dim", input_dim)
    latent_dim = check_positive_int(name, "latent_dim", latent_dim)
    hidden = check_sizes(name, "hidden", hidden)

    def vae_forward(m, x):
        h = m.encoder(x)
        mu, logvar = m.mu(h), m.logvar(h)
        return m.decoder(m.sample((mu, logvar))), mu, logvar

    return compose(
        vae_forward,
        encoder=serial(*[Dense(h, activation=activation) for h in hidden]),
        mu=Dense(latent_dim), logvar=Dense(latent_dim), sample=_gaussian_sample(),
        decoder=serial(*[Dense(h, activation=activation) for h in reversed(hidden)],
                       Dense(input_dim)))


def gaussian_kl(mu, logvar, *, reduction: str = "mean"):
    """KL(N(mu, diag(exp(logvar))) ‖ N(0, I)) per example, in closed form:

        KL = 1/2 Σ_j (exp(logvar_j) + mu_j² − 1 − logvar_j)   (sum over the last axis)

    Seed 004 names KL divergence the VAE's loss; `jl.losses.kl_divergence` is its
    discrete form (two probability vectors), this is the Gaussian one the VAE needs.

    Shapes: mu, logvar (N, d), equal -> a scalar ("mean"/"sum" over N) or (N,) ("none").

    Raises:
      ValueError: unknown reduction, shapes that differ.
    """
    check_one_of("gaussian_kl", "reduction", reduction, ("mean", "sum", "none"))
    if jnp.shape(mu) != jnp.shape(logvar) or jnp.ndim(mu) < 1:
        raise ValueError(f"gaussian_kl: mu and logvar must have the same shape (N, d), got "
                         f"{jnp.shape(mu)} and {jnp.shape(logvar)}.")
    dtype = jnp.promote_types(jnp.result_type(mu, logvar), jnp.float32)  # at least f32
    mu, logvar = jnp.asarray(mu, dtype), jnp.asarray(logvar, dtype)
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)
    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda v: v}[reduction](kl)


def vae_loss(outputs, targets, *, beta: float = 1.0):
    """The negative ELBO of `vae`'s outputs, averaged over the batch (nats per example):

        L = mean_n [ Σ_features BCE_logits(logits, x) + beta · KL(N(mu, σ²) ‖ N(0, I)) ]

    a `jl.fit` loss: `jl.fit(model, ..., (x, x), loss=jl.models.vae_loss, ...)`, or
    `functools.partial(vae_loss, beta=4.0)` for a beta-VAE (Higgins et al. 2017).
    The reconstruction term sums over features (a per-feature mean would weigh the KL
    input_dim times more); it is the exact Bernoulli log-likelihood for x in {0, 1}, and
    the usual cross-entropy surrogate for grey levels in [0, 1].

    Args:
      outputs: (logits (N, D), mu (N, d), logvar (N, d)), as `vae` returns them.
      targets: x (N, D) in [0, 1].
      beta: the KL weight, > 0.

    Raises:
      ValueError: outputs not a triple, shapes that differ, beta <= 0.
    """
    beta = check_positive_float("vae_loss", "beta", beta)
    if not (isinstance(outputs, tuple) and len(outputs) == 3):
        raise ValueError(f"vae_loss: outputs must be vae's (logits, mu, logvar), got "
                         f"{describe(outputs)}.")
    logits, mu, logvar = outputs
    reconstruction = losses.binary_crossentropy(logits, targets, from_logits=True,
                                                reduction="none")
    per_example = jnp.sum(reconstruction.reshape(reconstruction.shape[0], -1), axis=-1)
    return jnp.mean(per_example + beta * gaussian_kl(mu, logvar, reduction="none"))


def vae_generate(model: Layer, params, state, key, num_samples: int):
    """Images from the prior: z ~ N(0, I) from `key`, then sigmoid(decoder(z)).

    Shapes: -> (num_samples, input_dim) in (0, 1).
    """
    num_samples = check_positive_int("vae_generate", "num_samples", num_samples)
    latent_dim = params["mu"]["kernel"].shape[-1]
    z = jax.random.normal(key, (num_samples, latent_dim))
    logits, _ = model.children["decoder"].apply(params["decoder"], state["decoder"], z)
    return jax.nn.sigmoid(logits)
