"""ViT: torchvision's ViT-B/16 parameter count, and a tiny ViT that learns the digits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl

KEY = jax.random.key(0)


def test_vit_b16_has_torchvision_parameter_count_without_allocating():
    model = jl.models.vit_b16()
    params, _ = jax.eval_shape(lambda k: model.init(k, (1, 224, 224, 3)), KEY)
    # torchvision.models.vit_b_16(): conv_proj 590,592 + class token 768 + positions
    # 197·768 + 12 blocks of 7,087,872 + final LayerNorm 1,536 + head 769,000
    assert jl.count_params(params) == 86_567_656
    assert params["patches"]["kernel"].shape == (16, 16, 3, 768)
    assert params["positions"]["embeddings"].shape == (197, 768)
    assert params["class_token"]["token"].shape == (1, 1, 768)
    assert jl.output_shape(model, (2, 224, 224, 3)) == (2, 1000)
    with pytest.raises(ValueError, match="vit: image_size must be divisible by patch_size"):
        jl.models.vit(10, image_size=30, patch_size=16, d_model=8, depth=1, num_heads=2,
                      mlp_dim=8)


@pytest.mark.slow
def test_a_tiny_vit_learns_the_bundled_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    model = jl.models.vit(10, image_size=8, patch_size=2, d_model=32, depth=2, num_heads=4,
                          mlp_dim=64)
    params, state = model.init(KEY, (64, 8, 8, 1))
    loss = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
    ts, history = jl.fit(model, (params, state), (x[:1400], y[:1400]), loss=loss,
                         optimizer=optax.adam(3e-3), epochs=15, batch_size=64,
                         key=jax.random.key(1), verbose=False)
    params, state = ts.params, ts.state
    logits, _ = model.apply(params, state, x[1400:])
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y[1400:]))
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert accuracy >= 0.93, accuracy  # 0.962 measured with these keys
