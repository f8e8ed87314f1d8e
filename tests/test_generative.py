"""Generative models and segmentation (issue 14): autoencoders, VAE, DCGAN, U-Net.

Each is trained briefly on bundled (scikit-learn's 8×8 digits) or generated data and
checked against a reference computed without jaxlayers: the mean-image baseline, NumPy
and PyTorch formulas, a per-pixel threshold.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl

KEY = jax.random.key(0)
# Model inits in the training tests draw from an "rbg" key (XLA's RngBitGenerator): on
# XLA:CPU a jitted init with JAX's default threefry keys (partitionable since JAX 0.5)
# compiled 5-8 s for these small models, against ~1.5 s with rbg.
INIT_KEY = jax.random.key(0, impl="rbg")
PNG = b"\x89PNG\r\n\x1a\n"


@functools.lru_cache(maxsize=1)
def _load_digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    return (data.data / 16.0).astype(np.float32)[order], data.target[order]


@pytest.fixture(scope="module")
def digits():
    """Flat 8×8 digits in [0, 1], shuffled: 1500 to train, 297 held out."""
    x, _ = _load_digits()
    return x[:1500], x[1500:]


def _digit_labels():
    _, y = _load_digits()
    return y[:1500], y[1500:]


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == PNG


def _init(model, shape):
    """model.init compiled as one program: eager init compiles each random draw's shape."""
    return jax.jit(model.init, static_argnums=1)(INIT_KEY, shape)


def _mse_after_fit(model, x_tr, x_te, epochs):
    params, state = _init(model, (50,) + x_tr.shape[1:])
    ts, history = jl.fit(model, (params, state), (x_tr, x_tr), loss=jl.losses.mse,
                         optimizer=optax.adam(3e-3), epochs=epochs, batch_size=50,
                         key=jax.random.key(1), verbose=False)
    reconstruction, _ = model.apply(ts.params, ts.state, x_te)
    return float(np.mean((np.asarray(reconstruction) - x_te) ** 2)), reconstruction, history


# --------------------------------------------------------------------------- shapes, errors

def test_builders_shapes_without_allocating():
    assert jl.output_shape(jl.models.dense_autoencoder(64), (3, 64)) == (3, 64)
    conv = jl.models.conv_autoencoder((8, 12, 2), filters=(4, 8), latent_dim=5)
    assert jl.output_shape(conv, (3, 8, 12, 2)) == (3, 8, 12, 2)
    params, _ = jax.eval_shape(lambda k: conv.init(k, (3, 8, 12, 2)), KEY)
    assert params["encoder"][3]["kernel"].shape == (2 * 3 * 8, 5)      # Flatten -> code
    assert params["decoder"][2]["kernel"].shape == (3, 3, 8, 4)        # (in, out), §2
    spatial = jl.models.conv_autoencoder((8, 8, 1), filters=(4, 8), latent_dim=None)
    assert jl.output_shape(spatial, (2, 8, 8, 1)) == (2, 8, 8, 1)
    model = jl.models.vae(64, hidden=(32, 16), latent_dim=3)
    assert jl.output_shape(model, (5, 64)) == ((5, 64), (5, 3), (5, 3))
    params, state = jax.eval_shape(lambda k: model.init(k, (5, 64)), KEY)
    assert sorted(params) == ["decoder", "encoder", "logvar", "mu", "sample"]
    assert params["logvar"]["kernel"].shape == (16, 3)
    assert params["decoder"][0]["kernel"].shape == (3, 16)
    assert jl.output_shape(jl.models.unet(2, filters=(4, 8, 16)), (2, 8, 12, 3)) == (2, 8, 12, 2)


@pytest.mark.parametrize("build, match", [
    (lambda: jl.models.dense_autoencoder(0), "dense_autoencoder: input_dim"),
    (lambda: jl.models.dense_autoencoder(64, hidden=(32, -1)), "dense_autoencoder: hidden"),
    (lambda: jl.models.conv_autoencoder((6, 6, 1), filters=(4, 8)),
     "conv_autoencoder: image height and width must be divisible by 2\\*\\*2"),
    (lambda: jl.models.conv_autoencoder((8, 8), filters=(4,)), "conv_autoencoder: image_shape"),
    (lambda: jl.models.conv_autoencoder((8, 8, 1), latent_dim=0), "conv_autoencoder: latent_dim"),
    (lambda: jl.models.vae(64, latent_dim=0), "vae: latent_dim"),
    (lambda: jl.models.vae(64, hidden=()), "vae: hidden"),
    (lambda: jl.models.dcgan((8, 8, 1), filters=()), "dcgan: filters"),
    (lambda: jl.models.dcgan((8, 8, 1), filters=(8, 8, 8, 8)), "dcgan: image height"),
    (lambda: jl.models.dcgan((8, 8, 1), latent_dim=1.5), "dcgan: latent_dim"),
    (lambda: jl.models.unet(1, filters=(8,)), "unet: filters must have at least 2"),
    (lambda: jl.models.unet(0), "unet: out_channels"),
    (lambda: jl.models.vae_loss((jnp.zeros((2, 4)),), jnp.zeros((2, 4))), "vae_loss: outputs"),
    (lambda: jl.models.gaussian_kl(jnp.zeros((2, 3)), jnp.zeros((2, 4))), "gaussian_kl: mu"),
])
def test_bad_hyperparameters_raise_naming_the_builder(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_unet_input_not_divisible_fails_at_trace_time():
    with pytest.raises(ValueError, match="unet: input must be .* divisible by 2\\*\\*2 = 4"):
        jl.output_shape(jl.models.unet(1, filters=(4, 8, 16)), (2, 10, 16, 1))


# --------------------------------------------------------------------------- autoencoders

def test_dense_autoencoder_beats_the_mean_image_on_held_out_digits(digits, tmp_path):
    x_tr, x_te = digits
    baseline = np.mean((x_te - x_tr.mean(axis=0)) ** 2)  # predict the training mean image
    mse, reconstruction, history = _mse_after_fit(
        jl.models.dense_autoencoder(64, hidden=(64,), latent_dim=16), x_tr, x_te, epochs=10)
    assert history["loss"][-1] < history["loss"][0]
    assert mse < 0.35 * baseline, (mse, baseline)  # 0.014-0.015 against 0.074 (init keys 0-2)
    path = jl.models.plot_reconstructions(x_te, reconstruction, str(tmp_path / "ae.png"))
    assert _is_png(path)


def test_conv_autoencoder_beats_the_mean_image_on_held_out_digits(digits):
    """Its decoder is seed 003 Q16's transposed convolution (3×3, stride 2, "same")."""
    x_tr, x_te = (x.reshape(-1, 8, 8, 1) for x in digits)
    baseline = np.mean((x_te - x_tr.mean(axis=0)) ** 2)
    mse, reconstruction, _ = _mse_after_fit(
        jl.models.conv_autoencoder((8, 8, 1), filters=(16, 32), latent_dim=16), x_tr, x_te,
        epochs=10)
    assert reconstruction.shape == x_te.shape
    assert mse < 0.45 * baseline, (mse, baseline)  # 0.018-0.021 against 0.074 (init keys 0-2)


# --------------------------------------------------------------------------- VAE

def _np_gaussian_kl(mu, logvar):
    return 0.5 * np.sum(np.exp(logvar) + mu ** 2 - 1.0 - logvar, axis=-1)


def test_gaussian_kl_matches_numpy_and_torch():
    import torch

    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(6, 4)), rng.normal(scale=0.7, size=(6, 4))
    expected = _np_gaussian_kl(mu, logvar)
    std = torch.distributions.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar)))
    prior = torch.distributions.Normal(torch.zeros(6, 4), torch.ones(6, 4))
    reference = torch.distributions.kl_divergence(std, prior).sum(-1).numpy()
    np.testing.assert_allclose(expected, reference, rtol=1e-10)
    np.testing.assert_allclose(jl.models.gaussian_kl(mu, logvar, reduction="none"), expected,
                               rtol=1e-5)
    np.testing.assert_allclose(jl.models.gaussian_kl(mu, logvar), expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(jl.models.gaussian_kl(mu, logvar, reduction="sum"),
                               expected.sum(), rtol=1e-5)
    assert float(jl.models.gaussian_kl(np.zeros((2, 3)), np.zeros((2, 3)))) == 0.0  # q = prior


def test_reparameterize_is_differentiable_in_mu_and_sigma_and_keyed():
    mu = jnp.array([[0.5, -1.0, 2.0]])
    logvar = jnp.array([[0.2, -0.8, 1.0]])
    w = jnp.array([[1.0, -2.0, 3.0]])
    key = jax.random.key(3)
    z = jl.models.reparameterize(mu, logvar, key)
    sigma = np.exp(0.5 * np.asarray(logvar))
    eps = (np.asarray(z) - np.asarray(mu)) / sigma
    g_mu, g_logvar = jax.grad(lambda m, lv: jnp.sum(w * jl.models.reparameterize(m, lv, key)),
                              argnums=(0, 1))(mu, logvar)
    np.testing.assert_allclose(g_mu, w, rtol=1e-6)                        # dz/dmu = 1
    np.testing.assert_allclose(g_logvar, w * 0.5 * sigma * eps, rtol=1e-5)  # σ ε / 2
    assert np.all(np.asarray(g_logvar) != 0)
    np.testing.assert_array_equal(z, jl.models.reparameterize(mu, logvar, key))
    assert not np.allclose(z, jl.models.reparameterize(mu, logvar, jax.random.key(4)))
    # the draws have mean mu and standard deviation sigma (20,000 draws: ~1% error)
    many = jl.models.reparameterize(jnp.broadcast_to(mu, (20_000, 3)),
                                    jnp.broadcast_to(logvar, (20_000, 3)), key)
    np.testing.assert_allclose(np.mean(many, 0), mu[0], atol=0.05)
    np.testing.assert_allclose(np.std(many, 0), sigma[0], rtol=0.03)


def test_vae_sampling_follows_the_key_and_inference_uses_the_mean():
    model = jl.models.vae(16, hidden=(8,), latent_dim=2)
    params, state = _init(model, (4, 16))
    x = jax.random.uniform(jax.random.key(1), (4, 16))
    a, _ = model.apply(params, state, x, key=jax.random.key(5), training=True)
    b, _ = model.apply(params, state, x, key=jax.random.key(5), training=True)
    c, _ = model.apply(params, state, x, key=jax.random.key(6), training=True)
    chex.assert_trees_all_equal(a, b)  # the same key: the same eps, bit for bit
    assert not np.allclose(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])  # mu does not depend on the key
    (logits, mu, _), _ = model.apply(params, state, x)  # inference: z = mu, no key needed
    decoded, _ = model.children["decoder"].apply(params["decoder"], state["decoder"], mu)
    np.testing.assert_allclose(logits, decoded, rtol=1e-6)
    with pytest.raises(ValueError, match="vae: training=True .* PRNG key"):
        model.apply(params, state, x, training=True)

    def reconstruction_only(p):  # no KL: the logvar head learns only through sigma * eps
        (logits, _, _), _ = model.apply(p, state, x, key=jax.random.key(5), training=True)
        return jl.losses.binary_crossentropy(logits, x, from_logits=True)

    grads = jax.grad(reconstruction_only)(params)
    assert float(jnp.abs(grads["logvar"]["kernel"]).sum()) > 0
    assert float(jnp.abs(grads["mu"]["kernel"]).sum()) > 0


def test_vae_elbo_improves_on_digits(digits, tmp_path):
    x_tr, x_te = digits
    model = jl.models.vae(64, hidden=(64,), latent_dim=8)
    params, state = _init(model, (50, 64))

    @jax.jit
    def outputs(p):  # a one-sample estimate with a fixed key: the same eps each time
        return model.apply(p, state, x_te, key=jax.random.key(5), training=True)[0]

    def np_negative_elbo(out):  # the loss in NumPy: Bernoulli NLL + closed-form KL
        logits, mu, logvar = (np.asarray(o, np.float64) for o in out)
        nll = np.sum(np.logaddexp(0.0, logits) - x_te * logits, axis=-1)
        return np.mean(nll + _np_gaussian_kl(mu, logvar))

    before = outputs(params)
    np.testing.assert_allclose(jl.models.vae_loss(before, x_te), np_negative_elbo(before),
                               rtol=1e-5)
    ts, history = jl.fit(model, (params, state), (x_tr, x_tr), loss=jl.models.vae_loss,
                         optimizer=optax.adam(3e-3), epochs=10, batch_size=50,
                         key=jax.random.key(1), verbose=False)
    after = outputs(ts.params)
    elbo_before, elbo_after = -np_negative_elbo(before), -np_negative_elbo(after)
    assert elbo_after > elbo_before + 10.0, (elbo_before, elbo_after)  # -47.2 -> -25.4 nats
    assert history["loss"][-1] < history["loss"][0]
    samples = jl.models.vae_generate(model, ts.params, ts.state, jax.random.key(2), 16)
    assert samples.shape == (16, 64)
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
    assert _is_png(jl.models.plot_samples(samples, str(tmp_path / "vae.png"), title="VAE"))


# --------------------------------------------------------------------------- DCGAN

GAN = jl.models.dcgan((8, 8, 1), latent_dim=16, filters=(32, 16))
OPT = optax.adam(1e-3, b1=0.5)  # one object for both tests: the compiled steps are shared


def _digit_images(digits):
    return np.concatenate(digits).reshape(-1, 8, 8, 1) * 2.0 - 1.0  # tanh's range


def test_dcgan_shapes():
    """The generator upsamples 2×2 -> 4×4 -> 8×8 with 4×4 stride-2 "same" transposed
    convs (003-Q16-e2: "same" doubles the size)."""
    assert jl.output_shape(GAN.generator, (5, 16)) == (5, 8, 8, 1)
    assert jl.output_shape(GAN.discriminator, (5, 8, 8, 1)) == (5, 1)
    params, state = jax.eval_shape(GAN.init, KEY)
    assert params["generator"][0]["kernel"].shape == (16, 2 * 2 * 32)
    assert params["generator"][4]["kernel"].shape == (4, 4, 32, 16)
    assert params["discriminator"][0]["kernel"].shape == (4, 4, 1, 16)
    assert set(state["generator"][2]) == {"mean", "var"}


def test_dcgan_steps_update_only_their_own_network(digits):
    ts = jl.models.dcgan_init(GAN, INIT_KEY, d_optimizer=OPT, g_optimizer=OPT)
    d_step, g_step = jl.models.dcgan_steps(GAN, d_optimizer=OPT, g_optimizer=OPT)
    real = jnp.asarray(_digit_images(digits)[:64])
    z = jax.random.normal(jax.random.key(1), (64, 16))

    @jax.jit
    def logits(params, state):  # D(real) and D(G(z)) in training mode, as the steps run them
        fake, _ = GAN.generator.apply(params["generator"], state["generator"], z,
                                      training=True)
        dp, ds = params["discriminator"], state["discriminator"]
        real_logits, ds = GAN.discriminator.apply(dp, ds, real, training=True)
        return real_logits, GAN.discriminator.apply(dp, ds, fake, training=True)[0]

    # the discriminator's loss, recomputed by hand on the same logits
    lr, lf = (np.asarray(v, np.float64) for v in logits(ts.params, ts.state))
    np_bce = np.mean(np.log1p(np.exp(-lr))) + np.mean(np.log1p(np.exp(lf)))

    after_d, logs = d_step(ts, real, z)
    np.testing.assert_allclose(logs["d_loss"], np_bce, rtol=1e-5)
    np.testing.assert_allclose(logs["d_real"], np.mean(1 / (1 + np.exp(-lr))), rtol=1e-5)
    for tree in ("params", "state", "opt_state"):  # the generator's, bit for bit
        chex.assert_trees_all_equal(getattr(ts, tree)["generator"],
                                    getattr(after_d, tree)["generator"])
    assert not np.array_equal(after_d.params["discriminator"][-1]["kernel"],
                              ts.params["discriminator"][-1]["kernel"])

    fake_logits = np.asarray(logits(after_d.params, after_d.state)[1], np.float64)
    after_g, logs = g_step(after_d, z)
    np.testing.assert_allclose(  # non-saturating: -log sigmoid(D(G(z)))
        logs["g_loss"], np.mean(np.log1p(np.exp(-fake_logits))), rtol=1e-5)
    for tree in ("params", "state", "opt_state"):
        chex.assert_trees_all_equal(getattr(after_d, tree)["discriminator"],
                                    getattr(after_g, tree)["discriminator"])
    assert not np.array_equal(after_g.params["generator"][0]["kernel"],
                              after_d.params["generator"][0]["kernel"])
    assert int(after_d.step) == 0 and int(after_g.step) == 1


def test_dcgan_samples_move_toward_the_digits(digits, tmp_path):
    from sklearn.linear_model import LogisticRegression

    images = _digit_images(digits)
    flat = images.reshape(len(images), -1)
    labels = np.concatenate(_digit_labels())
    classifier = LogisticRegression(max_iter=2000).fit(flat, labels)

    def sample(ts):
        return np.asarray(GAN.sample(ts.params, ts.state, jax.random.key(9), 300))

    def pixel_errors(g):  # RMS error of the per-pixel mean and standard deviation
        return np.array([np.sqrt(np.mean((g.mean(0) - images.mean(0)) ** 2)),
                         np.sqrt(np.mean((g.std(0) - images.std(0)) ** 2))])

    def confidence(g):
        return classifier.predict_proba(g.reshape(len(g), -1)).max(1).mean()

    ts = jl.models.dcgan_init(GAN, INIT_KEY, d_optimizer=OPT, g_optimizer=OPT)
    at_init = pixel_errors(sample(ts))
    ts, history = jl.models.train_dcgan(GAN, images, steps=300, batch_size=64, ts=ts,
                                        d_optimizer=OPT, g_optimizer=OPT)
    samples = sample(ts)
    # measured (0.65, 0.54) at init -> (0.10-0.17, 0.07-0.10) for init keys 0-2
    assert np.all(pixel_errors(samples) < 0.5 * at_init), (at_init, pixel_errors(samples))
    # beyond per-pixel statistics: images with the data's per-pixel mean and spread but
    # independent pixels are digits to the classifier with confidence 0.61; the samples
    # 0.76-0.78 (init keys 0-2), and they spread over the classes (no mode collapse)
    independent = np.clip(images.mean(0) + images.std(0) * np.random.default_rng(0)
                          .standard_normal((300,) + images.shape[1:]), -1, 1)
    assert confidence(samples) > confidence(independent) + 0.05
    assert len(np.unique(classifier.predict(samples.reshape(300, -1)))) >= 7  # 10 measured
    assert len(history["d_loss"]) == 300 and np.all(np.isfinite(history["g_loss"]))
    assert int(ts.step) == 300
    path = jl.models.plot_samples(samples[:32], str(tmp_path / "gan.png"), value_range=(-1, 1))
    assert _is_png(path)


def test_train_dcgan_rejects_images_outside_tanh_range():
    with pytest.raises(ValueError, match=r"train_dcgan: images must lie in \[-1, 1\]"):
        jl.models.train_dcgan(GAN, np.full((8, 8, 8, 1), 2.0), steps=1, batch_size=4, key=KEY)


# --------------------------------------------------------------------------- U-Net

def _shapes(n, seed, size=16, noise=0.5):
    """Random discs and squares (1-2 per image, value 1) on N(0, noise²) noise, and their
    union as the mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.uniform(2, size - 2, 2)
            r = rng.uniform(1.5, 4.0)
            if rng.random() < 0.5:
                masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                masks[i] |= (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
    x = masks + noise * rng.standard_normal((n, size, size))
    return x[..., None].astype(np.float32), masks[..., None].astype(np.float32)


def _iou(predicted, mask):
    predicted, mask = predicted.astype(bool), mask.astype(bool)
    return (predicted & mask).sum() / max((predicted | mask).sum(), 1)


def test_unet_keeps_the_size_and_concatenates_the_skips():
    model = jl.models.unet(1, filters=(4, 8, 16))
    assert jl.output_shape(model, (2, 16, 16, 3)) == (2, 16, 16, 1)
    params, _ = jax.eval_shape(lambda k: model.init(k, (2, 16, 16, 3)), KEY)
    for i, f in enumerate((4, 8)):
        # up_i maps f_{i+1} -> f_i; decode_i reads the up-sampled f_i and the skip's f_i
        assert params[f"up{i}"]["kernel"].shape == (2, 2, 2 * f, f)
        assert params[f"decode{i}"][0]["kernel"].shape == (3, 3, 2 * f, f)
    concat_calls = [c for c in model.calls(jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32))
                    if c[0] == "concat"]
    assert [tuple(s.shape for s in c[1]) for c in concat_calls] == [
        ((2, 8, 8, 8), (2, 8, 8, 8)), ((2, 16, 16, 4), (2, 16, 16, 4))]

    # With up0 silenced (zero kernel and bias), the input reaches the output only through
    # the full-resolution skip: down0's two 3×3 convs, decode0's two and the 1×1 head, so
    # output pixel (8, 8) sees exactly the input within 4 pixels of it. (A linear U-Net:
    # no ReLU switched off at that pixel can hide a path.)
    # (NumPy draws for the weights: eager random init compiles once per kernel shape.)
    linear = jl.models.unet(1, filters=(4, 8, 16), activation=None)
    rng = np.random.default_rng(0)
    params, state = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32),
                                 jax.eval_shape(lambda k: linear.init(k, (1, 16, 16, 3)), KEY))
    cut = {**params, "up0": jax.tree.map(np.zeros_like, params["up0"])}
    x = jax.random.normal(jax.random.key(1), (1, 16, 16, 3))
    grad = jax.jit(jax.grad(lambda x: linear.apply(cut, state, x)[0][0, 8, 8, 0]))(x)
    seen = np.abs(np.asarray(grad[0])).sum(-1) > 0
    assert seen[4:13, 4:13].all()
    assert not seen[:4].any() and not seen[13:].any()
    assert not seen[:, :4].any() and not seen[:, 13:].any()


def test_unet_segments_generated_shapes(tmp_path):
    x_tr, y_tr = _shapes(512, seed=0)
    x_te, y_te = _shapes(128, seed=1)
    model = jl.models.unet(1, filters=(8, 16))
    params, state = _init(model, (32, 16, 16, 1))
    loss = functools.partial(jl.losses.binary_crossentropy, from_logits=True)
    ts, _ = jl.fit(model, (params, state), (x_tr, y_tr), loss=loss, optimizer=optax.adam(3e-3),
                   epochs=15, batch_size=32, key=jax.random.key(1), verbose=False)
    logits, _ = jax.jit(model.apply)(ts.params, ts.state, x_te)
    assert logits.shape == y_te.shape
    iou = _iou(np.asarray(logits) > 0, y_te)
    threshold = _iou(x_te > 0.5, y_te)                # per pixel, halfway between levels
    assert _iou(np.zeros_like(y_te), y_te) == 0.0     # all background
    assert iou > 0.75 and iou > threshold + 0.2, (iou, threshold)  # 0.90 vs 0.48 (init keys 0-2)
    path = jl.models.plot_segmentation(x_te, y_te, jax.nn.sigmoid(logits),
                                       str(tmp_path / "unet.png"))
    assert _is_png(path)


def test_plots_reject_non_images(tmp_path):
    with pytest.raises(ValueError, match="plot_samples: samples must be grey images"):
        jl.models.plot_samples(np.zeros((4, 10)), str(tmp_path / "x.png"))
