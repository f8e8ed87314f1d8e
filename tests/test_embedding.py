"""Embedding: lookup, padding mask into recurrent layers, id checks, PyTorch parity."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxlayers as jl

from jaxlayers import Masked, output_shape, serial
from jaxlayers.interop import from_torch
from jaxlayers.layers.embedding import Embedding, check_ids
from jaxlayers.layers.recurrent import LSTM
from jaxlayers.layers.wrappers import Bidirectional

KEY = jax.random.key(0)
IDS = jnp.asarray([[3, 1, 4, 1, 0], [5, 9, 0, 0, 0]], jnp.int32)


def test_lookup_equals_one_hot_matmul_and_default_init_is_keras_uniform():
    layer = Embedding(10, 3)
    params, state = layer.init(KEY, jax.ShapeDtypeStruct(IDS.shape, jnp.int32))
    chex.assert_shape(params["embeddings"], (10, 3))
    assert state == {}
    table = np.asarray(params["embeddings"])
    assert np.all(np.abs(table) <= 0.05) and np.ptp(table) > 0.05  # U(-0.05, 0.05)
    y, _ = layer.apply(params, state, IDS)
    chex.assert_shape(y, (2, 5, 3))
    chex.assert_trees_all_close(y, np.eye(10, dtype=np.float32)[np.asarray(IDS)] @ table,
                                rtol=1e-6, atol=1e-7)


def test_gradient_accumulates_over_repeated_ids():
    layer = Embedding(10, 3)
    params, _ = layer.init(KEY, IDS.shape)
    g = jax.grad(lambda p: jnp.sum(layer.apply(p, {}, IDS)[0]))(params)["embeddings"]
    counts = np.bincount(np.asarray(IDS).ravel(), minlength=10)
    chex.assert_trees_all_equal(g, np.repeat(counts[:, None], 3, axis=1))


def test_matches_torch_embedding_after_conversion():
    torch.manual_seed(0)
    module = torch.nn.Embedding(10, 3)
    params = from_torch("Embedding", {k: v.numpy() for k, v in module.state_dict().items()})
    y, _ = Embedding(10, 3).apply(params, {}, IDS)
    chex.assert_trees_all_equal(y, module(torch.tensor(np.array(IDS)).long())
                                .detach().numpy())


def test_mask_zero_returns_masked_and_recurrent_layers_honour_it_like_lengths():
    emb, bi = Embedding(10, 3, mask_zero=True), Bidirectional(LSTM(4, return_sequences=True))
    model = serial(emb, bi, LSTM(4))  # the mask travels through both recurrent layers
    params, state = model.init(KEY, jax.ShapeDtypeStruct(IDS.shape, jnp.int32))
    out, _ = emb.apply(params[0], {}, IDS)
    assert isinstance(out, Masked)
    chex.assert_trees_all_equal(out.mask, np.asarray(IDS) != 0)
    assert output_shape(model, jax.ShapeDtypeStruct(IDS.shape, jnp.int32)) == (2, 4)
    y, _ = jax.jit(lambda p, ids: model.apply(p, state, ids))(params, IDS)
    lengths = jnp.asarray([4, 2])  # the zeros of IDS are exactly padding at the end
    h1, _ = bi.apply(params[1], state[1], out.values, lengths=lengths)
    assert not isinstance(h1, Masked)  # lengths= given directly: a plain array back
    y_ref, _ = LSTM(4).apply(params[2], {}, h1, lengths=lengths)
    chex.assert_trees_all_close(y, y_ref, rtol=1e-6, atol=1e-6)


def test_out_of_range_ids_give_nan_rows_and_checked_raises_outside_jit():
    layer = Embedding(10, 3)
    params, _ = layer.init(KEY, IDS.shape)
    bad = jnp.asarray([[1, 10, -1, 2]])
    y = np.asarray(jax.jit(lambda ids: layer.apply(params, {}, ids)[0])(bad))
    assert np.all(np.isnan(y[0, 1:3]))
    chex.assert_tree_all_finite(y[0, [0, 3]])
    strict = Embedding(10, 3, checked=True)
    with pytest.raises(ValueError, match=r"Embedding: ids must be in \[0, vocab_size\) = "
                                         r"\[0, 10\), got \[-1, 10\]"):
        strict.apply(params, {}, bad)
    jax.jit(lambda ids: strict.apply(params, {}, ids)[0])(bad)  # traced: cannot check
    with pytest.raises(ValueError, match="MyModel: ids must be in"):
        check_ids(np.array([12]), 10, "MyModel")
    check_ids(IDS, 10)


def test_errors_name_the_layer():
    layer = Embedding(10, 3)
    params, _ = layer.init(KEY, IDS.shape)
    with pytest.raises(TypeError, match="Embedding: ids must have an integer dtype, got float32"):
        layer.apply(params, {}, IDS.astype(jnp.float32))
    with pytest.raises(TypeError, match="Embedding: does not accept a jl.Masked input"):
        layer.apply(params, {}, Masked(IDS, IDS != 0))
    with pytest.raises(ValueError, match="Embedding: vocab_size must be a positive int"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match="Embedding: dim must be a positive int"):
        Embedding(10, 2.5)


def test_a_plain_shape_means_token_ids_for_a_model_that_starts_with_embedding():
    model = jl.serial(jl.Embedding(20, 4, mask_zero=True), jl.LSTM(3))
    params, state = model.init(jax.random.key(0), (2, 5))  # no ShapeDtypeStruct needed
    chex.assert_shape(params[1]["kernel"], (4, 12))
    assert jl.output_shape(model, (2, 5)) == (2, 3)
    assert jl.summary(model, (2, 5), print_fn=None).rows[0].type == "Embedding"
