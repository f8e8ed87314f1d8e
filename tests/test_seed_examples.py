"""The seeds' worked examples that no other test file asserts, one test per catalogue id.

Ids, inputs and printed values are those of SEED_EXAMPLES.md (the project's shared folder);
each test cites its id in its docstring, and tests/test_seed_coverage.py checks that every
catalogued id is cited somewhere under tests/. Every test compares the library with the
seed's printed number or with an independent NumPy computation, never with itself. Where a
seed prints a wrong value (a slip) the test says so and asserts the right one; where a seed
leaves inputs out (`underspecified`), the test states the completion it chose.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlayers as jl

KEY = jax.random.key(0)


def _rng(seed):
    return np.random.default_rng(seed)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _windows(x2d, k, stride=1):
    """(out_h, out_w, k, k) sliding windows of a 2-D NumPy array (no padding)."""
    return np.lib.stride_tricks.sliding_window_view(np.asarray(x2d, np.float64),
                                                    (k, k))[::stride, ::stride]


def _conv2d(x2d, kernels, **kwargs):
    """One-channel image through a bias-free Conv2D with the given (k, k, F) kernels."""
    kernels = np.asarray(kernels, np.float32)
    if kernels.ndim == 2:
        kernels = kernels[:, :, None]
    layer = jl.Conv2D(kernels.shape[-1], kernels.shape[:2], use_bias=False, **kwargs)
    x = jnp.asarray(x2d, jnp.float32)[None, :, :, None]
    return np.asarray(layer.apply({"kernel": jnp.asarray(kernels)[:, :, None, :]}, {}, x)[0][0])


def _params(model, input_shape):
    return jax.eval_shape(lambda k: model.init(k, input_shape)[0], KEY)


def _n_params(model, input_shape):
    return jl.count_params(_params(model, input_shape))


# --- seed 000: the symbolic layer notes ----------------------------------------------------

def test_000_e1_conv_output_is_the_seeds_sum_over_the_window():
    """000-e1: 4×4 X, 2×2 W, E_ij = Σ_{m,n=0..1} X_{i+m, j+n} W_{m+1, n+1} (1-based), so
    E_11 = x11·w11 + x12·w12 + x21·w21 + x22·w22; then y_ij = σ(E_ij)."""
    rng = _rng(0)
    x = rng.integers(-5, 6, size=(4, 4)).astype(np.float64)  # integers: exact in float32
    w = rng.integers(-3, 4, size=(2, 2)).astype(np.float64)

    def X(i, j):  # the seed's 1-based indices
        return x[i - 1, j - 1]

    def W(m, n):
        return w[m - 1, n - 1]

    want = np.array([[sum(X(i + m, j + n) * W(m + 1, n + 1) for m in (0, 1) for n in (0, 1))
                      for j in (1, 2, 3)] for i in (1, 2, 3)])
    assert want[0, 0] == X(1, 1) * W(1, 1) + X(1, 2) * W(1, 2) + X(2, 1) * W(2, 1) + \
        X(2, 2) * W(2, 2)
    got = _conv2d(x, w)[:, :, 0]
    chex.assert_trees_all_equal(got, want.astype(np.float32))  # 3×3, no kernel flip
    y = _conv2d(x, w, activation="sigmoid")[:, :, 0]
    chex.assert_trees_all_close(y, _sigmoid(want), rtol=1e-6, atol=1e-7)


def test_000_e2_max_pool_first_window():
    """000-e2: 2×2 max pooling of a 4×4 X; the first output is max(x11, x12, x21, x22)."""
    x = _rng(1).permutation(16).reshape(4, 4).astype(np.float32)  # distinct values
    y = jl.MaxPool2D(2).apply({}, {}, jnp.asarray(x)[None, :, :, None])[0]
    y = np.asarray(y)[0, :, :, 0]
    assert y[0, 0] == max(x[0, 0], x[0, 1], x[1, 0], x[1, 1])
    chex.assert_trees_all_equal(y, x.reshape(2, 2, 2, 2).max(axis=(1, 3)))


def test_000_e3_recurrent_layer_formula_is_a_simple_rnn_with_sigmoid():
    """000-e3: h_t = σ(W_h h_{t-1} + W_x x_t + b) over x = [x1, x2, x3, x4] (no numbers).

    The seed says "a recurrent layer such as LSTM", but the formula is a simple (Elman) RNN:
    jl.SimpleRNN with activation="sigmoid" (its default is tanh). Column vectors in the
    seed, so W_x = kernel^T and W_h = recurrent_kernel^T.
    """
    rng = _rng(2)
    d, units = 2, 3
    layer = jl.SimpleRNN(units, activation="sigmoid", return_sequences=True)
    params = {"kernel": rng.normal(size=(d, units)), "recurrent_kernel":
              rng.normal(size=(units, units)), "bias": rng.normal(size=units)}
    x = rng.normal(size=(4, d))  # x_1 .. x_4
    y = layer.apply(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params), {},
                    jnp.asarray(x, jnp.float32)[None])[0][0]
    w_x, w_h, b = params["kernel"].T, params["recurrent_kernel"].T, params["bias"][:, None]
    h, want = np.zeros((units, 1)), []
    for t in range(4):
        h = _sigmoid(w_h @ h + w_x @ x[t][:, None] + b)
        want.append(h[:, 0])
    chex.assert_trees_all_close(y, np.stack(want), rtol=1e-5, atol=1e-6)


# --- seed 002: the second, unexplained 3×3 map --------------------------------------------

X_002 = np.array([[1, 3, -1, 0], [2, -2, 0, 5], [4, 1, -1, 3], [-3, 0, 1, 2]], np.float64)
MAP_002_E2 = np.array([[2, 4, 9], [-5, 1, 7], [-2, 0, -1]], np.float64)


def _best_fit_residual(design, bias):
    a = np.hstack([design, np.ones((9, 1))]) if bias else design
    coef, *_ = np.linalg.lstsq(a, MAP_002_E2.ravel(), rcond=None)
    return float(np.sum((a @ coef - MAP_002_E2.ravel()) ** 2))


def test_002_e2_no_2x2_kernel_and_no_padding_maps_x_to_the_printed_map():
    """002-e2: the slides print [[2,4,9],[-5,1,7],[-2,0,-1]] four times with no kernel.

    It is not a 2×2 convolution of 002-e1's X: a conv is linear in its kernel, so the best
    kernel (and bias) is a least-squares fit, and its residual is far from 0 (> 70 for the
    slide's own setting, "valid" stride 1). The other zero paddings that also give a 3×3 map
    from a 4×4 X with a 2×2 kernel (2 pixels per axis, split any way, stride 2) do no
    better (residual > 10). The map's input and kernel exist only in the slide images.
    """
    basis = np.eye(4).reshape(4, 2, 2).transpose(1, 2, 0)  # one-hot 2×2 kernels as filters

    def design(**conv):  # column f: the layer's output for the f-th one-hot kernel
        return _conv2d(X_002, basis, **conv).reshape(9, 4).astype(np.float64)

    valid = design()
    chex.assert_trees_all_equal(valid, _windows(X_002, 2).reshape(9, 4))  # NumPy windows
    assert _best_fit_residual(valid, bias=False) > 80  # 82.78
    assert _best_fit_residual(valid, bias=True) > 70  # 71.84
    for rows, cols in itertools.product([(0, 2), (1, 1), (2, 0)], repeat=2):
        padded = design(padding=(rows, cols), strides=2)
        chex.assert_trees_all_equal(padded, _windows(np.pad(X_002, (rows, cols)), 2,
                                                     stride=2).reshape(9, 4))
        assert _best_fit_residual(padded, bias=True) > 10, (rows, cols)  # 13.2 at the least


# --- seed 003: gradients, MLPs ---------------------------------------------------------------

def test_003_q2_e2_mini_batches_of_100_from_10000_samples_are_100_steps_per_epoch():
    """003-Q2-e2: N = 10,000, batch 100 -> 100 iterations per epoch (counted by jl.fit)."""
    rng = _rng(3)
    x = rng.normal(size=(10_000, 1)).astype(np.float32)
    y = 2 * x
    model = jl.Dense(1)
    ts, history = jl.fit(model, model.init(KEY, (100, 1)), (x, y), loss=jl.losses.mse,
                         optimizer=optax.sgd(0.1), epochs=1, batch_size=100, key=KEY,
                         verbose=False)
    assert int(ts.step) == 100
    assert int(ts.epoch) == 1 and len(history["loss"]) == 1


def test_003_q3_e2_central_differences_need_two_forward_passes_per_parameter():
    """003-Q3-e2: 10^6 parameters -> 2·10^6 forward passes for central differences.

    jl.gradcheck traces fn (eval_shape, jit, vmap), so a Python counter counts traces, not
    evaluations; a jax.debug.callback taking the perturbed parameters runs once per
    evaluation, vmapped ones included. Per checked coordinate, F(θ + eps·e_i) and
    F(θ - eps·e_i): 2 runs; plus 1 for jax.grad's forward pass (backprop's whole cost: one
    forward and one backward pass, whatever the number of parameters).
    """
    counts = {"traces": 0, "runs": 0}

    def bump(theta):
        del theta
        counts["runs"] += 1

    def f(w):
        counts["traces"] += 1
        jax.debug.callback(bump, w)
        return jnp.sum(jnp.sin(w) ** 2)

    rate = []
    for n in (10, 100):
        counts.update(traces=0, runs=0)
        report = jl.gradcheck(f, np.linspace(-1.0, 1.0, n), max_coords=None)
        jax.effects_barrier()
        assert sum(c.checked for c in report.leaves) == n
        assert counts["runs"] == 2 * n + 1
        assert counts["traces"] < n  # traced a few times, whatever n is
        rate.append((counts["runs"] - 1) / n)
    assert rate == [2.0, 2.0]
    assert rate[0] * 10**6 == 2 * 10**6  # the seed's 10^6 parameters


def test_003_q3_e3_one_hidden_layer_backward_formulas_match_autodiff():
    """003-Q3-e3: 2 -> 3 (sigmoid) -> 1, L = ½(y - ŷ)²; the seed's seven backward formulas
    (no numbers printed: random x, y and weights) against jax.grad.

    Column vectors in the seed (z1 = W1 x + b1): W = kernel^T for a jaxlayers Dense.
    """
    net = jl.serial(jl.Dense(3, activation="sigmoid"), jl.Dense(1))
    params, state = net.init(KEY, (1, 2))
    rng = _rng(4)
    params = ({"kernel": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32),
               "bias": jnp.asarray(rng.normal(size=3), jnp.float32)},
              {"kernel": jnp.asarray(rng.normal(size=(3, 1)), jnp.float32),
               "bias": jnp.asarray(rng.normal(size=1), jnp.float32)})
    x, y = np.array([[0.5, -1.2]]), 0.7

    def loss(p):
        return 0.5 * jnp.sum((net.apply(p, state, jnp.asarray(x, jnp.float32))[0] - y) ** 2)

    auto = jax.grad(loss)(params)
    w1, b1 = np.asarray(params[0]["kernel"], np.float64).T, \
        np.asarray(params[0]["bias"], np.float64)[:, None]
    w2, b2 = np.asarray(params[1]["kernel"], np.float64).T, \
        np.asarray(params[1]["bias"], np.float64)[:, None]
    xc = x.T
    z1 = w1 @ xc + b1
    h = _sigmoid(z1)
    y_hat = w2 @ h + b2
    d_yhat = y_hat - y                                 # 1. ∂L/∂ŷ = ŷ - y
    d_w2 = d_yhat @ h.T                                # 2. ∂L/∂W2 = (ŷ - y) hᵀ
    d_b2 = d_yhat                                      # 3. ∂L/∂b2 = ŷ - y
    d_h = w2.T @ d_yhat                                # 4. ∂L/∂h = W2ᵀ (ŷ - y)
    d_z1 = d_h * _sigmoid(z1) * (1 - _sigmoid(z1))     # 5. ⊙ σ'(z1)
    d_w1 = d_z1 @ xc.T                                 # 6. ∂L/∂W1 = ∂L/∂z1 xᵀ
    d_b1 = d_z1                                        # 7. ∂L/∂b1 = ∂L/∂z1
    for got, want in [(auto[0]["kernel"], d_w1.T), (auto[0]["bias"], d_b1[:, 0]),
                      (auto[1]["kernel"], d_w2.T), (auto[1]["bias"], d_b2[:, 0])]:
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)


def test_003_q4_e1_a_1000x1000_matmul_is_10_to_the_9_multiplications():
    """003-Q4-e1: multiplying two 1000×1000 matrices takes n³ = 10^9 multiplications.

    Measured on a jaxlayers Dense(1000) over a batch of 1000 (x @ kernel, no bias) by XLA's
    cost analysis of the lowered computation (nothing is run), which counts each
    multiply-add as 2 flops.
    """
    n = 1000
    layer = jl.Dense(n, use_bias=False)
    spec = jax.ShapeDtypeStruct((n, n), jnp.float32)
    cost = jax.jit(lambda p, x: layer.apply(p, {}, x)[0]).lower({"kernel": spec},
                                                                 spec).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost["flops"] / 2 == n ** 3 == 10 ** 9


def test_003_q5_e1_writing_1000_takes_1000_4_and_10_digits():
    """003-Q5-e1: 1000 in unary, decimal and binary: 1000, 4 and 10 digits (1111101000₂)."""
    assert np.base_repr(1000, 2) == "1111101000"
    assert [len("1" * 1000), len(np.base_repr(1000, 10)), len(np.base_repr(1000, 2))] == \
        [1000, 4, 10]
    assert int(np.floor(np.log2(1000))) + 1 == 10  # binary digits of n: ⌊log₂ n⌋ + 1


def test_003_q6_e1_flatten_of_a_28x28_image_is_784_inputs_in_row_major_order():
    """003-Q6-e1: a flattened 28×28 MNIST image gives d = 784 input units; pixel (i, j) is
    input 28·i + j (row-major, NumPy's reshape)."""
    x = _rng(5).normal(size=(2, 28, 28)).astype(np.float32)
    flat = np.asarray(jl.Flatten().apply({}, {}, jnp.asarray(x))[0])
    assert flat.shape == (2, 784) == (2, 28 * 28)
    chex.assert_trees_all_equal(flat, x.reshape(2, 784))
    for i, j in [(0, 27), (1, 0), (27, 3)]:
        chex.assert_trees_all_equal(flat[:, 28 * i + j], x[:, i, j])
    assert jl.output_shape(jl.Flatten(), (1, 28, 28, 1)) == (1, 784)  # with a channel axis
    mlp = jl.serial(jl.Flatten(), jl.Dense(256))
    assert _params(mlp, (1, 28, 28))[1]["kernel"].shape == (784, 256)


def test_003_q6_e3_softmax_output_predicts_digit_3():
    """003-Q6-e3: the softmax output [0.01, 0.01, 0.02, 0.90, 0.01, ...] predicts digit 3.

    The seed elides the last 5 entries (they sum to 0.05): the test completes them with
    0.01 each, and then with random completions; the argmax is 3 for every one.
    """
    p = np.array([0.01, 0.01, 0.02, 0.90, 0.01] + [0.01] * 5)
    assert np.isclose(p.sum(), 1.0)
    softmax = jl.Activation("softmax")
    probs = np.asarray(softmax.apply({}, {}, jnp.log(jnp.asarray(p[None], jnp.float32)))[0])
    chex.assert_trees_all_close(probs[0], p, rtol=1e-5, atol=1e-7)  # softmax(log p) = p
    assert int(np.argmax(probs[0])) == 3
    assert float(jl.metrics.accuracy(probs, np.array([3]))) == 1.0
    tails = 0.05 * _rng(6).dirichlet(np.ones(5), size=100)  # any completion
    batch = np.hstack([np.tile(p[:5], (100, 1)), tails])
    assert float(jl.metrics.accuracy(batch, np.full(100, 3))) == 1.0


def test_003_q7_e1_two_to_the_100_is_far_fewer_than_the_atoms_in_the_universe():
    """003-Q7-e1: the seed's 2^100 neurons are "more than atoms in the Universe".

    Seed slip: 2^100 = 1,267,650,600,228,229,401,496,703,205,376 ≈ 1.27×10^30, far *fewer*
    than the ~10^80 atoms usually quoted. The number itself is right.
    """
    assert 2 ** 100 == 1_267_650_600_228_229_401_496_703_205_376
    assert f"{2 ** 100:.2e}" == "1.27e+30"
    assert 2 ** 100 < 10 ** 80  # the right comparison; the seed has it the other way round


def test_003_q8_e1_xor_hidden_layer_maps_the_points_as_in_the_figure():
    """003-Q8-e1: XOR is 0, 1, 1, 0; the hidden layer maps (0,0) -> (0,0), (0,1) and
    (1,0) -> (1,0), (1,1) -> (1,1), where one line separates the classes. The seed prints
    no weights; this choice reproduces its figure: h1 = step(x1 + x2 - 0.5),
    h2 = step(x1 + x2 - 1.5), ŷ = step(h1 - h2 - 0.5)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    hidden, output = jl.Dense(2, activation="step"), jl.Dense(1, activation="step")
    p_hidden = {"kernel": jnp.ones((2, 2)), "bias": jnp.array([-0.5, -1.5])}
    p_output = {"kernel": jnp.array([[1.0], [-1.0]]), "bias": jnp.array([-0.5])}
    h = np.asarray(hidden.apply(p_hidden, {}, jnp.asarray(x))[0])
    chex.assert_trees_all_equal(h, np.array([[0, 0], [1, 0], [1, 0], [1, 1]], np.float32))
    y, _ = jl.serial(hidden, output).apply((p_hidden, p_output), ({}, {}), jnp.asarray(x))
    chex.assert_trees_all_equal(np.asarray(y)[:, 0], np.logical_xor(x[:, 0], x[:, 1])
                                .astype(np.float32))


def test_003_q9_e3_gradient_of_x1_squared_plus_2_x2_squared():
    """003-Q9-e3: ∇(x₁² + 2x₂²) = (2x₁, 4x₂), by jax.grad at several points."""
    grad = jax.grad(lambda v: v[0] ** 2 + 2 * v[1] ** 2)
    for point in [(3.0, 4.0), (-1.5, 0.25), (0.0, -2.0)]:
        x1, x2 = point
        chex.assert_trees_all_close(grad(jnp.array(point)), np.array([2 * x1, 4 * x2]),
                                    rtol=1e-6)


def test_003_q13_e5_sobel_y_and_sharpen_kernels():
    """003-Q13-e5: Sobel Y [[-1,-2,-1],[0,0,0],[1,2,1]] and sharpen
    [[0,-1,0],[-1,5,-1],[0,-1,0]] (kernels only, no input printed). Sobel Y is Sobel X
    (003-Q13-e3) transposed: on a horizontal dark-to-bright step it gives +4 on the two rows
    by the edge (positive: no kernel flip); sharpen sums to 1, so it keeps a flat image,
    and its response to a single bright pixel is the kernel itself. Against NumPy
    sliding windows."""
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    sobel_y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    chex.assert_trees_all_equal(sobel_y, sobel_x.T)
    bank = np.stack([sobel_y, sharpen], -1)
    step = np.repeat([[0.0], [0.0], [0.0], [1.0], [1.0], [1.0]], 3, axis=1)  # 6×3
    got = _conv2d(step, bank)
    want = np.einsum("ijmn,mnf->ijf", _windows(step, 3), bank)
    chex.assert_trees_all_equal(got, want.astype(np.float32))
    chex.assert_trees_all_equal(got[:, 0, 0], np.array([0, 4, 4, 0], np.float32))
    flat = _conv2d(np.full((4, 4), 0.5), bank)
    chex.assert_trees_all_equal(flat, np.broadcast_to(np.float32([0.0, 0.5]), (2, 2, 2)))
    impulse = np.zeros((5, 5))
    impulse[2, 2] = 1.0
    response = _conv2d(impulse, sharpen, padding="same")[:, :, 0]
    chex.assert_trees_all_equal(response[1:4, 1:4], sharpen.astype(np.float32))
    assert np.count_nonzero(response) == 5  # nothing outside the kernel's footprint


def test_003_q15_e1_three_3x3_convs_save_45_percent_over_one_7x7():
    """003-Q15-e1: three 3×3 layers (27C² weights) against one 7×7 (49C²): 1 - 27/49 =
    44.9 %, printed as 45 %. Counted with jl.count_params (biases off, as the seed)."""
    for c in (1, 8, 64):
        three = sum(_n_params(jl.Conv2D(c, 3, use_bias=False), (1, 9, 9, c)) for _ in range(3))
        one = _n_params(jl.Conv2D(c, 7, use_bias=False), (1, 9, 9, c))
        saving = 1 - three / one
        chex.assert_trees_all_close(saving, 22 / 49, rtol=1e-12)  # 0.44898
        assert round(100 * saving) == 45


def test_003_q15_e3_vgg16_halves_224_to_7_and_flattens_25088():
    """003-Q15-e3: VGG16's five blocks (64, 128, 256, 512, 512 filters) each end in a 2×2
    max pool: 224 -> 112 -> 56 -> 28 -> 14 -> 7; flatten 7·7·512 = 25,088."""
    rows = jl.summary(jl.models.vgg16(), (1, 224, 224, 3), print_fn=None).rows
    pools = [r.output_shape for r in rows if r.type == "MaxPool2D"]
    assert pools == [(1, 112, 112, 64), (1, 56, 56, 128), (1, 28, 28, 256), (1, 14, 14, 512),
                     (1, 7, 7, 512)]
    assert [r.output_shape for r in rows if r.type == "Flatten"] == [(1, 7 * 7 * 512)]
    assert 7 * 7 * 512 == 25_088


# --- seed 004 ------------------------------------------------------------------------------

def test_004_s1_e1_feed_forward_example_completed():
    """004-S1-e1: Z = Σ x_i w_i + b1, y = σ(Z); w1..w8 = 0.2, 0.4, 0.7, 0.5, 0.3, 0.5, 0.6,
    0.9, b1 = 1. The inputs and the wiring are only in the slide's figure; the slide lists
    the weights in two columns (w1..w4 | w5..w8), read here as 4 inputs feeding 2 hidden
    neurons: neuron 1 through w1..w4, neuron 2 through w5..w8, both with b1. Completion
    chosen: x = [1, 1, 1, 1], so Z = (2.8, 3.3) and y = σ(Z) = (0.942676, 0.964429).
    (The slide says σ takes values in [0; 1]; it is the open interval (0, 1).)"""
    w = np.array([0.2, 0.4, 0.7, 0.5, 0.3, 0.5, 0.6, 0.9])
    x = np.ones(4)
    z = np.array([x @ w[:4] + 1.0, x @ w[4:] + 1.0])
    chex.assert_trees_all_close(z, np.array([2.8, 3.3]), rtol=1e-12)
    layer = jl.Dense(2, activation="sigmoid")
    params = {"kernel": jnp.asarray(w.reshape(2, 4).T, jnp.float32),  # column k: neuron k
              "bias": jnp.ones((2,), jnp.float32)}
    y = np.asarray(layer.apply(params, {}, jnp.asarray(x, jnp.float32)[None])[0])[0]
    chex.assert_trees_all_close(y, _sigmoid(z), rtol=1e-6)
    chex.assert_trees_all_close(y, np.array([0.942676, 0.964429]), atol=1e-6)
    assert np.all((0 < y) & (y < 1))


def test_004_s2_e1_4x4_input_and_3x3_filter_give_a_2x2_map():
    """004-S2-e1: a 4×4 input ⋆ a 3×3 filter ("valid", stride 1) is a 2×2 feature map."""
    assert jl.output_shape(jl.Conv2D(1, 3), (1, 4, 4, 1)) == (1, 2, 2, 1)
    rng = _rng(7)
    x = rng.integers(-4, 5, size=(4, 4))
    k = rng.integers(-2, 3, size=(3, 3))
    want = np.einsum("ijmn,mn->ij", _windows(x, 3), k)  # shape (2, 2)
    chex.assert_trees_all_equal(_conv2d(x, k)[:, :, 0], want.astype(np.float32))


def test_004_s2_e7_dense_25088_to_512_has_12845056_weights():
    """004-S2-e7: a dense layer from 25,088 (7×7×512 flattened) to 512 units has
    25,088·512 = 12,845,056 weights; with the slide's own (in + 1)·out, 12,845,568."""
    assert _n_params(jl.Dense(512, use_bias=False), (1, 25_088)) == 12_845_056
    assert _n_params(jl.Dense(512), (1, 25_088)) == 12_845_568 == (25_088 + 1) * 512
    assert _n_params(jl.serial(jl.Flatten(), jl.Dense(512, use_bias=False)),
                     (1, 7, 7, 512)) == 12_845_056


def test_004_s2_e8_timeline_counts_are_the_exact_counts_rounded_down():
    """004-S2-e8: LeNet-5 "60K", AlexNet "60M", VGG-16 "138M", ResNet-50 "25M". Exact:
    61,706; 60,965,224 (two-tower AlexNet); 138,357,544; 25,557,032: each printed value
    is at most 3 % below (ResNet-50's 25.6M truncated, not rounded to 26M)."""
    models = jl.models
    counts = [_n_params(models.lenet5(), (1, 32, 32, 1)),
              _n_params(models.alexnet(), (1, 227, 227, 3)),
              _n_params(models.vgg16(), (1, 224, 224, 3)),
              _n_params(models.resnet50(), (1, 224, 224, 3))]
    assert counts == [61_706, 60_965_224, 138_357_544, 25_557_032]
    printed = [60e3, 60e6, 138e6, 25e6]
    for n, p in zip(counts, printed):
        assert p <= n < 1.03 * p, (n, p)
    assert round(counts[-1] / 1e6) == 26


def _weighted_layers(model):
    """Kernels on the main path: convolutions and dense layers, not projection shortcuts."""
    paths = jl.path_strings(_params(model, (1, 64, 64, 3)))
    kernels = [p for p in paths if p.endswith("kernel")]
    return len([p for p in kernels if "shortcut" not in p]), len(kernels)


def test_004_s2_e9_resnet50_has_50_weighted_layers_not_152():
    """004-S2-e9: the ResNet-50 card says "152 шари" (152 layers); seed slip: ResNet-50 has
    50 weighted layers (1 stem conv, 3 convs in each of 3+4+6+3 bottlenecks, 1 dense; the
    4 1×1 projection shortcuts are not counted in the name), and 152 is ResNet-152's
    depth (3+8+36+3 bottlenecks)."""
    assert _weighted_layers(jl.models.resnet50()) == (1 + 3 * (3 + 4 + 6 + 3) + 1, 54)
    assert _weighted_layers(jl.models.resnet50())[0] == 50
    assert _weighted_layers(jl.models.resnet152())[0] == 1 + 3 * (3 + 8 + 36 + 3) + 1 == 152
