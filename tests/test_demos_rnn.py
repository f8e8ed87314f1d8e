"""The recurrent demos (adding, sentiment, charrnn) with short settings, asserting their claims."""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_adding_batches_mark_exactly_two_steps():
    from jaxlayers.demos import adding

    x, y = adding.make_batch(jax.random.key(1), 64, 100)
    assert x.shape == (64, 100, 2) and y.shape == (64, 1)
    np.testing.assert_array_equal(np.sum(x[..., 1], axis=1), 2.0)
    np.testing.assert_allclose(y[:, 0], np.sum(x[..., 0] * x[..., 1], axis=1), rtol=1e-6)


def test_adding_lstm_beats_the_mean_baseline(tmp_path):
    from jaxlayers.demos import adding

    start = time.perf_counter()
    r = adding.run(steps=1000, out=str(tmp_path), progress=False, verbose=False)
    print(f"adding: {time.perf_counter() - start:.1f} s, test MSE {r['test_mse']:.4f}, "
          f"baseline {r['baseline_mse']:.4f}")
    assert 0.14 < r["baseline_mse"] < 0.19
    assert r["test_mse"] < 0.01  # (the full demo's claim; ~0.002 at 1000 steps, seed 0)
    _check_png(r["path"])


def test_sentiment_bilstm_beats_bag_of_words_and_ignores_padding(tmp_path):
    from jaxlayers.demos import sentiment

    start = time.perf_counter()
    r = sentiment.run(epochs=4, out=str(tmp_path), progress=False, verbose=False)
    print(f"sentiment: {time.perf_counter() - start:.1f} s, test accuracy "
          f"{r['test_accuracy']:.4f}, bag of words {r['bag_of_words_accuracy']:.4f}")
    assert r["test_accuracy"] > 0.9
    assert r["test_accuracy"] > r["bag_of_words_accuracy"] + 0.2
    assert r["bag_of_words_accuracy"] > r["majority_accuracy"] - 0.02
    assert r["padding_max_diff"] < 1e-5
    _check_png(r["path"])


def test_sentiment_data_has_the_promised_shape():
    from jaxlayers.demos import sentiment

    ids, labels, lengths = sentiment.make_data(200, seed=3)
    assert ids.shape == (200, sentiment.MAX_LEN) and ids.dtype == np.int32
    assert lengths.min() >= sentiment.MIN_LEN and lengths.max() <= sentiment.MAX_LEN
    for row, n in zip(ids, lengths):
        assert np.all(row[:n] != 0) and np.all(row[n:] == 0)
    assert set(np.unique(labels)) == {0, 1}


def test_charrnn_beats_unigram_uses_its_carried_state_and_samples(tmp_path):
    from jaxlayers.demos import charrnn

    start = time.perf_counter()
    r = charrnn.run(epochs=6, out=str(tmp_path), sample_length=50, progress=False,
                    verbose=False)
    print(f"charrnn: {time.perf_counter() - start:.1f} s, held-out {r['bpc']:.3f} bpc, "
          f"unigram {r['unigram_bpc']:.3f} bpc")
    assert r["bpc"] < r["unigram_bpc"] - 0.5
    _check_png(r["path"])

    net, params, chars = r["net"], r["params"], r["chars"]
    # the carried state matters: the chunk after a context is predicted better with the
    # context's final (h, c) than from zeros
    text = charrnn.load_text()
    ids = np.array([chars.index(c) for c in text[:4 * 100 + 1]], np.int32)
    x, y = ids[:-1].reshape(4, 100), ids[1:].reshape(4, 100)
    _, carried = charrnn.chunk_loss(net, params, x[:, :50], y[:, :50], None)
    with_state, _ = charrnn.chunk_loss(net, params, x[:, 50:], y[:, 50:], carried)
    from_zeros, _ = charrnn.chunk_loss(net, params, x[:, 50:], y[:, 50:], None)
    assert float(with_state) < float(from_zeros)

    # sampling: the right length, only known characters, temperature changes the draw
    for t in (0.5, 1.0):
        assert len(r["samples"][t]) == len("def ") + 50
        assert set(r["samples"][t]) <= set(chars)
    cold = charrnn.sample(net, params, [chars.index("d")], 30, 0.05, jax.random.key(0))
    hot = charrnn.sample(net, params, [chars.index("d")], 30, 5.0, jax.random.key(0))
    assert cold.shape == hot.shape == (30,)
    assert int(jnp.min(cold)) >= 0 and int(jnp.max(hot)) < len(chars)
    with pytest.raises(ValueError, match="temperature"):
        charrnn.sample(net, params, [0], 5, 0.0, jax.random.key(0))


def test_streams_cut_contiguous_chunks():
    from jaxlayers.demos import charrnn

    ids = np.arange(1001)
    xs, ys = charrnn.streams(ids, batch_size=4, chunk=10)
    assert xs.shape == ys.shape == (25, 4, 10)
    np.testing.assert_array_equal(ys, xs + 1)
    # chunk k + 1 of a stream continues chunk k
    np.testing.assert_array_equal(xs[1, 2, 0], xs[0, 2, -1] + 1)
    assert math.isclose(float(xs[0, 1, 0]), 250.0)


@pytest.mark.parametrize("name, key", [("adding", "steps"), ("sentiment", "epochs"),
                                       ("charrnn", "epochs")])
def test_cli_dispatches_the_rnn_demos(monkeypatch, tmp_path, name, key):
    import importlib

    from jaxlayers.__main__ import main

    module = importlib.import_module(f"jaxlayers.demos.{name}")
    seen = {}
    monkeypatch.setattr(module, "run", lambda **kw: seen.update(kw) or {})
    assert main(["demo", name, "--epochs", "3", "--no-progress", "--out", str(tmp_path)]) == 0
    assert seen == {"out": str(tmp_path), "seed": 0, key: 3, "progress": False}
