"""jaxlayers.losses against seed 003's worked numbers, PyTorch CPU functional losses and NumPy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxlayers as jl

L = jl.losses
REDUCTIONS = ("mean", "sum", "none")
RTOL, ATOL = 1e-5, 1e-6  # float32 results against float64 references

rng = np.random.default_rng(0)
N, C = 6, 4
X = rng.normal(size=(N, C)).astype(np.float32)          # regression predictions / logits
Y = rng.normal(size=(N, C)).astype(np.float32)          # regression targets
P_BIN = rng.uniform(0.05, 0.95, size=(N, C)).astype(np.float32)
T_BIN = rng.integers(0, 2, size=(N, C)).astype(np.float32)
LOGITS = (3 * rng.normal(size=(N, C))).astype(np.float32)
LABELS = rng.integers(0, C, size=(N,)).astype(np.int32)
ONE_HOT = np.eye(C, dtype=np.float32)[LABELS]
P_CAT = np.asarray(jax.nn.softmax(LOGITS, axis=-1))     # probabilities, rows sum to 1
T_SOFT = np.asarray(jax.nn.softmax(rng.normal(size=(N, C)).astype(np.float32), axis=-1))


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def close(got, want):
    chex.assert_trees_all_close(np.asarray(got), np.asarray(want, dtype=np.float64),
                                rtol=RTOL, atol=ATOL)


# --- seed 003 Q1 / Q9 worked examples -------------------------------------------------

def test_seed_mse_043():
    """003-Q1-e1: MSE of y = [5, 8, 3], ŷ = [4.5, 9, 3.2] is 1.29 / 3 = 0.43."""
    y, y_hat = np.array([5.0, 8.0, 3.0]), np.array([4.5, 9.0, 3.2])
    chex.assert_trees_all_close(L.mse(y_hat, y, reduction="none"), np.asarray([0.25, 1.00, 0.04]), rtol=1e-5)
    chex.assert_trees_all_close(L.mse(y_hat, y, reduction="sum"), 1.29, rtol=1e-6)
    chex.assert_trees_all_close(L.mse(y_hat, y), 0.43, rtol=1e-6)
    chex.assert_trees_all_close(L.mae(y_hat, y), 1.7 / 3, rtol=1e-6)  # 0.5667


@pytest.mark.parametrize("y, p, want", [(1.0, 0.99, 0.010050), (1.0, 0.01, 4.605170),
                                        (0.0, 0.01, 0.010050), (0.0, 0.99, 4.605170)])
def test_seed_bce(y, p, want):
    """003-Q1-e2: one-sample BCE ≈ 0.01 and ≈ 4.6 (natural log)."""
    got = L.binary_crossentropy(np.array([p]), np.array([y]))
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-7)
    logit = np.log(p / (1 - p))
    got = L.binary_crossentropy(np.array([logit]), np.array([y]), from_logits=True)
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-7)


def test_seed_cce_085_and_005():
    """003-Q1-e3 (ŷ₃ = 0.85: 0.16) and 003-Q1-e4 (ŷ₃ = 0.05: 3.0)."""
    y = np.eye(10)[3][None]
    p1 = np.array([[0.01, 0.01, 0.05, 0.85, 0.02, 0.01, 0.02, 0.01, 0.01, 0.01]])
    got = float(L.categorical_crossentropy(p1, y))
    chex.assert_trees_all_close(got, -np.log(0.85), rtol=1e-6)
    assert round(got, 2) == 0.16
    # seed prints [0.5, 0.1, 0.1, 0.05, ...] with the tail elided; invented tail sums to 0.25
    p2 = np.array([[0.5, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025]])
    chex.assert_trees_all_close(p2.sum(), 1.0, rtol=1e-7)
    got = float(L.categorical_crossentropy(p2, y))
    chex.assert_trees_all_close(got, 2.995732, atol=1e-5, rtol=1e-7)
    assert round(got, 1) == 3.0
    chex.assert_trees_all_close(L.sparse_categorical_crossentropy(p2, np.array([3])), got,
                                rtol=1e-6)


def test_seed_softmax_ce_gradient():
    """003-Q9-e2: ∂L/∂z = ŷ - y = [0.3, 0.5, -0.8]."""
    y_hat, y = np.array([0.3, 0.5, 0.2]), np.array([0.0, 0.0, 1.0])  # "class 2"
    z = jnp.log(jnp.asarray(y_hat, jnp.float32))[None]  # softmax(log ŷ) = ŷ
    want = np.asarray([[0.3, 0.5, -0.8]])
    g = jax.grad(lambda z: L.categorical_crossentropy(z, y[None], from_logits=True))(z)
    chex.assert_trees_all_close(g, want, atol=1e-6, rtol=1e-7)
    g = jax.grad(lambda z: L.sparse_categorical_crossentropy(
        z, np.array([2]), from_logits=True))(z)
    chex.assert_trees_all_close(g, want, atol=1e-6, rtol=1e-7)


# --- PyTorch parity, all reductions ---------------------------------------------------

def _torch_reduce(values, reduction):
    return {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_mae_huber_vs_torch(reduction):
    close(L.mse(X, Y, reduction=reduction), F.mse_loss(t64(X), t64(Y), reduction=reduction))
    close(L.mae(X, Y, reduction=reduction), F.l1_loss(t64(X), t64(Y), reduction=reduction))
    for delta in (1.0, 0.5):  # |X - Y| spans both branches for both deltas
        close(L.huber(X, Y, delta=delta, reduction=reduction),
              F.huber_loss(t64(X), t64(Y), reduction=reduction, delta=delta))


def test_huber_branches_by_hand():
    r = np.array([0.0, 0.5, 1.0, 1.5, -3.0])
    want = np.where(np.abs(r) <= 1.0, 0.5 * r ** 2, np.abs(r) - 0.5)
    close(L.huber(r, np.zeros(5), reduction="none"), want)
    want2 = np.where(np.abs(r) <= 2.0, 0.5 * r ** 2, 2.0 * np.abs(r) - 2.0)
    close(L.huber(r, np.zeros(5), delta=2.0, reduction="none"), want2)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_vs_torch(reduction):
    close(L.binary_crossentropy(P_BIN, T_BIN, reduction=reduction),
          F.binary_cross_entropy(t64(P_BIN), t64(T_BIN), reduction=reduction))
    close(L.binary_crossentropy(LOGITS, T_BIN, from_logits=True, reduction=reduction),
          F.binary_cross_entropy_with_logits(t64(LOGITS), t64(T_BIN), reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cce_vs_torch(reduction):
    for targets in (ONE_HOT, T_SOFT):
        want = F.cross_entropy(t64(LOGITS), t64(targets), reduction=reduction)
        close(L.categorical_crossentropy(LOGITS, targets, from_logits=True,
                                         reduction=reduction), want)
        close(L.categorical_crossentropy(P_CAT, targets, reduction=reduction), want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sparse_cce_vs_torch(reduction):
    labels = torch.from_numpy(LABELS.astype(np.int64))
    want = F.cross_entropy(t64(LOGITS), labels, reduction=reduction)
    close(L.sparse_categorical_crossentropy(LOGITS, LABELS, from_logits=True,
                                            reduction=reduction), want)
    close(L.sparse_categorical_crossentropy(P_CAT, LABELS, reduction=reduction),
          F.nll_loss(torch.log(t64(P_CAT)), labels, reduction=reduction))


def test_sparse_cce_sequence_axes_vs_torch():
    logits = rng.normal(size=(2, 3, C)).astype(np.float32)  # (N, T, C)
    labels = rng.integers(0, C, size=(2, 3)).astype(np.int32)
    want = F.cross_entropy(t64(logits).permute(0, 2, 1),  # torch wants classes on axis 1
                           torch.from_numpy(labels.astype(np.int64)), reduction="none")
    got = L.sparse_categorical_crossentropy(logits, labels, from_logits=True, reduction="none")
    assert got.shape == (2, 3)
    close(got, want)
    close(L.categorical_crossentropy(logits, np.eye(C)[labels], from_logits=True,
                                     reduction="none"), want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_kl_divergence_vs_torch(reduction):
    # torch.kl_div(input=log Q, target=P); "batchmean" is KL averaged over the N examples
    per_elem = F.kl_div(torch.log(t64(P_CAT)), t64(T_SOFT), reduction="none")
    want = {"mean": per_elem.sum() / N, "sum": per_elem.sum(), "none": per_elem.sum(-1)}
    close(L.kl_divergence(P_CAT, T_SOFT, reduction=reduction), want[reduction])
    if reduction == "mean":
        close(L.kl_divergence(P_CAT, T_SOFT),
              F.kl_div(torch.log(t64(P_CAT)), t64(T_SOFT), reduction="batchmean"))


def test_kl_divergence_zero_targets_and_self():
    p = np.array([[0.2, 0.3, 0.5]], np.float32)
    t = np.array([[0.0, 0.4, 0.6]], np.float32)
    close(L.kl_divergence(p, t), 0.4 * np.log(0.4 / 0.3) + 0.6 * np.log(0.6 / 0.5))
    close(L.kl_divergence(p, p), 0.0)
    g = jax.grad(lambda t: L.kl_divergence(p, t))(jnp.asarray(t))
    assert np.isfinite(np.asarray(g)).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_vs_numpy(reduction):
    y = np.where(T_BIN > 0, 1.0, -1.0).astype(np.float32)
    want = np.maximum(0.0, 1.0 - y.astype(np.float64) * X)
    close(L.hinge(X, y, reduction=reduction), _torch_reduce(t64(want), reduction))


# --- stability ------------------------------------------------------------------------

def test_bce_from_logits_stable_at_100():
    z = np.array([100.0, -100.0, 100.0, -100.0], np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    got = L.binary_crossentropy(z, y, from_logits=True, reduction="none")
    chex.assert_trees_all_close(got, np.asarray([0.0, 0.0, 100.0, 100.0]), atol=1e-6, rtol=1e-7)
    g = jax.grad(lambda z: L.binary_crossentropy(z, y, from_logits=True, reduction="sum"))(z)
    chex.assert_trees_all_close(g, np.asarray([0.0, 0.0, 1.0, -1.0]), atol=1e-6, rtol=1e-7)  # σ(z) − y


@pytest.mark.parametrize("label", [0, 1, 2])
def test_cce_from_logits_stable_at_100(label):
    z = np.array([[100.0, -100.0, 0.0]], np.float32)
    want = np.logaddexp.reduce(z[0].astype(np.float64)) - z[0, label]  # 0, 200, 100
    got_sparse = L.sparse_categorical_crossentropy(z, np.array([label]), from_logits=True)
    got_onehot = L.categorical_crossentropy(z, np.eye(3)[[label]], from_logits=True)
    for got in (got_sparse, got_onehot):
        chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)
    g = jax.grad(lambda z: L.categorical_crossentropy(z, np.eye(3)[[label]], from_logits=True))(z)
    assert np.isfinite(np.asarray(g)).all()


def test_probabilities_clipped_like_keras():
    eps = np.float32(L.EPSILON)
    got = L.binary_crossentropy(np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0, 1.0]),
                                reduction="none")
    want = np.asarray([-np.log(eps), -np.log1p(-np.float32(1 - eps)),
                     -np.log(np.float32(1 - eps))])
    chex.assert_trees_all_close(got, want, rtol=1e-4)
    got = L.categorical_crossentropy(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    chex.assert_trees_all_close(got, -np.log(eps), rtol=1e-4)
    got = L.sparse_categorical_crossentropy(np.array([[1.0, 0.0]]), np.array([1]))
    chex.assert_trees_all_close(got, -np.log(eps), rtol=1e-4)


# --- dtypes, jit, errors --------------------------------------------------------------

def test_bfloat16_inputs_computed_in_float32():
    got = L.mse(jnp.asarray(X, jnp.bfloat16), jnp.asarray(Y, jnp.bfloat16))
    assert got.dtype == jnp.float32
    want = np.mean((np.asarray(jnp.asarray(X, jnp.bfloat16), np.float64)
                    - np.asarray(jnp.asarray(Y, jnp.bfloat16), np.float64)) ** 2)
    chex.assert_trees_all_close(got, want, rtol=1e-5)
    got = L.categorical_crossentropy(jnp.asarray(LOGITS, jnp.bfloat16), ONE_HOT, from_logits=True)
    assert got.dtype == jnp.float32


def test_jit():
    f = jax.jit(lambda p, y: L.sparse_categorical_crossentropy(p, y, from_logits=True,
                                                               reduction="sum"))
    close(f(LOGITS, LABELS), F.cross_entropy(t64(LOGITS), torch.from_numpy(
        LABELS.astype(np.int64)), reduction="sum"))


ELEMENTWISE = [("mse", L.mse), ("mae", L.mae), ("huber", L.huber),
               ("binary_crossentropy", L.binary_crossentropy), ("hinge", L.hinge),
               ("categorical_crossentropy", L.categorical_crossentropy),
               ("kl_divergence", L.kl_divergence)]


@pytest.mark.parametrize("name, fn", ELEMENTWISE)
def test_shape_mismatch_is_an_error(name, fn):
    with pytest.raises(ValueError, match=rf"{name}: .*\(3, 1\).*\(3,\)"):
        fn(np.ones((3, 1)), np.ones(3))


@pytest.mark.parametrize("name, fn", ELEMENTWISE + [
    ("sparse_categorical_crossentropy", L.sparse_categorical_crossentropy)])
def test_bad_reduction_is_an_error(name, fn):
    targets = np.zeros(3, np.int32) if name.startswith("sparse") else np.ones((3, 2))
    with pytest.raises(ValueError, match=rf"{name}: reduction must be one of .*'avg'"):
        fn(np.ones((3, 2)), targets, reduction="avg")


def test_sparse_errors():
    name = "sparse_categorical_crossentropy"
    with pytest.raises(TypeError, match=rf"{name}: targets must have an integer dtype"):
        L.sparse_categorical_crossentropy(P_CAT, ONE_HOT)
    with pytest.raises(ValueError, match=rf"{name}: targets must have shape \(6,\).*\(6, 1\)"):
        L.sparse_categorical_crossentropy(P_CAT, LABELS[:, None])
    with pytest.raises(ValueError, match=rf"{name}: predictions must have rank >= 1"):
        L.sparse_categorical_crossentropy(np.float32(0.5), np.int32(0))


def test_huber_delta_error():
    with pytest.raises(ValueError, match="huber: delta must be > 0, got 0"):
        L.huber(X, Y, delta=0.0)
