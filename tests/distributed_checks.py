"""The 8-device checks of tests/test_distributed.py, run in one subprocess.

    python tests/distributed_checks.py [check ...]     # prints one JSON line

The script sets XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts,
which is why these run apart from the suite (which keeps one device); JAX's start-up and
the compilations are paid once for all of them. Each check returns plain
numbers and strings; the script prints {check name: result} as one JSON line, a failing
check's result being {"error": traceback}. The comparisons are made in the test module.
"""

import functools
import json
import os
import sys
import tempfile
import time
import traceback

# 8 simulated CPU devices. LLVM's optimisation level 0: compiling dominates these tiny
# runs, and the level changes how fast the code runs, not what XLA partitions.
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                    "--xla_force_host_platform_device_count=8",
                                    "--xla_backend_optimization_level=0"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxlayers as jl  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")  # as the suite (tests/conftest.py)

CE = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
SEEN = []  # the per-device shape of y inside each compiled step, recorded at compile time


def traced_ce(predictions, targets):
    """CE that records the targets' sharding in the compiled step (jax.debug)."""
    jax.debug.inspect_array_sharding(
        targets, callback=lambda s: SEEN.append(s.shard_shape(targets.shape)))
    return CE(predictions, targets)


def _data(n, shape, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    y = (x.reshape(n, -1)[:, :classes].argmax(1)).astype(np.int32)
    return x, y


def _host(leaf):
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf, np.float64)


def _max_diff(a, b):
    """The largest |a - b| over the leaves of two trees of one structure."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return max([float(np.max(np.abs(_host(u) - _host(v)), initial=0.0))
                for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))], default=0.0)


def _specs(tree):
    return sorted({str(a.sharding.spec) for a in jax.tree.leaves(tree)})


class Losses(jl.callbacks.Callback):
    """Every step's loss: the loss curve at step resolution."""

    def __init__(self):
        self.values = []

    def on_batch_end(self, step, logs, train_state):
        self.values.append(logs["loss"])


def _fit_pair(model, data, input_shape, mesh, optimizer, *, param_rules=None, epochs=2,
              batch_size=16, loss=CE, fit_kw=None):
    """The same run of fit on one device and on `mesh`, with every step's loss."""
    params, state = model.init(jax.random.key(0), input_shape)
    kw = dict(loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
              key=jax.random.key(1), verbose=False, **(fit_kw or {}))
    one, many = Losses(), Losses()
    ts1, h1 = jl.fit(model, (params, state), data, callbacks=[one], **kw)
    SEEN.clear()  # from here on, the mesh run's steps
    tsm, hm = jl.fit(model, (params, state), data, mesh=mesh, param_rules=param_rules,
                     callbacks=[many], **kw)
    return ts1, h1, one.values, tsm, hm, many.values


# SGD with momentum where the model has a leaf whose gradient is zero in exact arithmetic
# (attention's key bias: softmax ignores a shift of a row); Adam's g / sqrt(v) would turn
# its rounding noise into steps of ±lr, different on one device and on eight.
def _sgd():
    return optax.sgd(0.05, momentum=0.9)


def _mesh(shape, names):
    return jax.make_mesh(shape, names)


# --------------------------------------------------------------------------- checks

def check_devices():
    return {"count": jax.device_count(), "platform": jax.default_backend()}


def check_mlp_batchnorm():
    # Dense without bias before BatchNorm: the bias would get a zero gradient, which
    # Adam's g / sqrt(v) turns into ±lr steps driven by rounding noise.
    model = jl.serial(jl.Dense(16, use_bias=False), jl.BatchNorm(), jl.Activation("relu"),
                      jl.Dropout(0.25), jl.Dense(3))
    x, y = _data(64, (6,))
    ts1, h1, steps1, ts8, h8, steps8 = _fit_pair(model, (x, y), (16, 6),
                                                 _mesh((8,), ("data",)), optax.adam(1e-2),
                                                 loss=traced_ce)
    return {"params_diff": _max_diff(ts1.params, ts8.params),
            "state_diff": _max_diff(ts1.state, ts8.state),
            "opt_diff": _max_diff(ts1.opt_state, ts8.opt_state),
            "loss_single": h1["loss"], "loss_mesh": h8["loss"],
            "steps_single": steps1, "steps_mesh": steps8, "step": [ts1.step, ts8.step],
            "param_specs": _specs(ts8.params), "state_specs": _specs(ts8.state),
            "devices": len(jax.tree.leaves(ts8.params)[0].sharding.device_set),
            "y_shard_shapes_in_steps": sorted(set(map(tuple, SEEN)))}


def check_lenet():
    model = jl.models.lenet5()
    x, y = _data(32, (32, 32, 1), classes=10)
    ts1, h1, _, ts8, h8, _ = _fit_pair(model, (x, y), (8, 32, 32, 1),
                                       _mesh((8,), ("data",)), _sgd(), epochs=1, batch_size=8)
    return {"params_diff": _max_diff(ts1.params, ts8.params),
            "loss_single": h1["loss"], "loss_mesh": h8["loss"],
            "param_specs": _specs(ts8.params), "step": [ts1.step, ts8.step]}


def _attention_model():
    return jl.serial(jl.Dense(16, activation="relu"), jl.MultiHeadAttention(4, 4),
                     jl.GlobalAvgPool1D(), jl.Dense(3))


# First match wins: "1/output/kernel" (H, value_dim, E) splits its heads before
# "1/*/kernel" splits the heads of query/key/value (E, H, key_dim).
RULES = {"0/kernel": P(None, "model"), "1/output/kernel": P("model"),
         "1/*/kernel": P(None, "model"), "3/kernel": P("model", None)}


def check_model_parallel(store):
    model = _attention_model()
    x, y = _data(32, (5, 6))
    mesh = _mesh((2, 4), ("data", "model"))
    optimizer = _sgd()
    ts1, h1, steps1, ts24, h24, steps24 = _fit_pair(model, (x, y), (16, 5, 6), mesh,
                                                    optimizer, param_rules=RULES)
    store.update(ts1=ts1, ts24=ts24, data=(x, y), model=model, optimizer=optimizer)
    paths = jl.path_strings(ts24.params)
    leaves = jax.tree.leaves(ts24.params)
    mu = ts24.opt_state[0].trace  # the momentum, one copy of the params
    return {"params_diff": _max_diff(ts1.params, ts24.params),
            "opt_diff": _max_diff(ts1.opt_state, ts24.opt_state),
            "loss_single": h1["loss"], "loss_mesh": h24["loss"],
            "steps_single": steps1, "steps_mesh": steps24,
            "specs": {p: str(a.sharding.spec) for p, a in zip(paths, leaves)},
            "mu_specs": {p: str(a.sharding.spec)
                         for p, a in zip(jl.path_strings(mu), jax.tree.leaves(mu))},
            "shard_shapes": {p: list(a.addressable_shards[0].data.shape)
                             for p, a in zip(paths, leaves)}}


def check_checkpoints(store):
    ts1, ts24, data, model = store["ts1"], store["ts24"], store["data"], store["model"]
    # the model_parallel check's model, loss and optimizer: its single-device step is cached
    kw = dict(loss=CE, optimizer=store["optimizer"], epochs=1, batch_size=16, verbose=False)
    with tempfile.TemporaryDirectory() as folder:
        path = jl.save(os.path.join(folder, "ts.safetensors"), ts24)
        single = jl.restore(path, like=ts1)  # ts1 lives on one device
        other = jl.distributed.data_parallel(_mesh((4, 2), ("data", "model")),
                                             param_rules={"0/kernel": P(None, "model")})
        like = other.place(ts1, store["optimizer"])
        moved = jl.restore(path, like=like)
    # continue both restored runs one epoch: on one device and on the 4x2 mesh
    ts_a, _ = jl.fit(model, single, data, **kw)
    ts_b, _ = jl.fit(model, moved, data, mesh=other.mesh,
                     param_rules={"0/kernel": P(None, "model")}, **kw)
    return {"single_diff": _max_diff(single, ts24),
            "single_devices": sorted({len(a.sharding.device_set)
                                      for a in jax.tree.leaves(single.params)}),
            "moved_diff": _max_diff(moved, ts24),
            "moved_match_like": all(a.sharding == b.sharding for a, b in zip(
                jax.tree.leaves(moved.params), jax.tree.leaves(like.params))),
            "moved_kernel_spec": str(moved.params[0]["kernel"].sharding.spec),
            "moved_mesh": dict(moved.params[0]["kernel"].sharding.mesh.shape),
            "step": [int(single.step), int(moved.step), int(ts24.step)],
            "continued_diff": _max_diff(ts_a.params, ts_b.params),
            "continued_step": [ts_a.step, ts_b.step]}


def check_hand_loop():
    """data_parallel's helpers in a loop of one's own equal make_train_step on one device."""
    model = jl.serial(jl.Dense(16, use_bias=False), jl.BatchNorm(), jl.Activation("relu"),
                      jl.Dense(3))
    x, y = _data(64, (6,))
    params, state = model.init(jax.random.key(0), (16, 6))
    opt = optax.adam(1e-2)
    dp = jl.distributed.data_parallel(_mesh((2, 4), ("data", "model")),
                                      param_rules={"0/kernel": P(None, "model")})
    ts = dp.place(jl.TrainState.create(params, state, opt, jax.random.key(1)), opt)
    raw = jl.train.make_train_step(model, CE, opt, jit=False)
    step = dp.jit_train_step(raw, ts.params, ts.state, ts.opt_state, donate=True)
    one = jax.jit(raw)
    p1, s1, o1 = params, state, opt.init(params)
    p, s, o = ts.params, ts.state, ts.opt_state
    batch = dp.shard_batch((x[:16], y[:16]))
    for i in range(4):
        xb, yb = x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)]
        p1, s1, o1, _ = one(p1, s1, o1, xb, yb, None)
        p, s, o, _ = step(p, s, o, *dp.shard_batch((xb, yb)), None)
    return {"params_diff": _max_diff(p1, p), "state_diff": _max_diff(s1, s),
            "kernel_spec": str(p[0]["kernel"].sharding.spec),
            "batch_spec": str(batch[0].sharding.spec),
            "batch_shards": sorted({tuple(sh.data.shape) for sh in batch[0].addressable_shards}),
            "batch_devices": len(batch[0].sharding.device_set),
            "caller_alive": not any(a.is_deleted() for a in jax.tree.leaves(params))}


def check_eval_predict():
    """evaluate and predict on a mesh equal one device: host params replicated onto an
    8-way data mesh, and a sharded run's params kept where fit put them on a 2x4 mesh."""
    model = jl.serial(jl.Dense(16, use_bias=False), jl.BatchNorm(), jl.Activation("relu"),
                      jl.Dense(3))
    x, y = _data(52, (6,), seed=4)  # batches of 16: the last has 4 rows
    params, state = model.init(jax.random.key(0), (16, 6))
    rules = {"0/kernel": P(None, "model"), "3/kernel": P("model", None)}
    mesh8, mesh24 = _mesh((8,), ("data",)), _mesh((2, 4), ("data", "model"))
    ts24, _ = jl.fit(model, (params, state), (x, y), loss=CE, optimizer=_sgd(), epochs=1,
                     batch_size=16, key=jax.random.key(1), verbose=False, mesh=mesh24,
                     param_rules=rules)
    trained = jax.device_get((ts24.params, ts24.state))  # host copies, for one device
    stream = [x[:16], x[16:28], x[28:33]]  # 16, 12 and 5 rows: the last two padded

    def metric(predictions, targets):  # records the per-device rows in the compiled step
        jax.debug.inspect_array_sharding(
            targets, callback=lambda s: SEEN.append(s.shard_shape(targets.shape)))
        return jl.metrics.accuracy(predictions, targets)

    kw = dict(loss=CE, metrics=["loss", "accuracy", metric], batch_size=16)
    one = jl.evaluate(model, params, state, (x, y), **kw)
    SEEN.clear()
    eight = jl.evaluate(model, params, state, (x, y), mesh=mesh8, **kw)
    seen = sorted(set(map(tuple, SEEN)))
    one_t = jl.evaluate(model, *trained, (x, y), **kw)
    mesh_t = jl.evaluate(model, ts24.params, ts24.state, (x, y), mesh=mesh24, **kw)
    pred_one = jl.predict(model, params, state, x, batch_size=16)
    pred_eight = jl.predict(model, params, state, x, batch_size=16, mesh=mesh8)
    pred_small = jl.predict(model, params, state, x[:5], mesh=mesh8)  # 5 rows, one batch
    pred_t = jl.predict(model, ts24.params, ts24.state, x, batch_size=16, mesh=mesh24)
    pred_stream = jl.predict(model, params, state, stream, mesh=mesh8)
    return {"evaluate_diff": max(abs(one[k] - eight[k]) for k in one),
            "evaluate_keys": sorted(eight), "evaluate_loss": [one["loss"], eight["loss"]],
            "evaluate_trained_diff": max(abs(one_t[k] - mesh_t[k]) for k in one_t),
            "evaluate_y_shards": [list(t) for t in seen],
            "predict_diff": _max_diff(pred_one, pred_eight),
            "predict_shape": list(pred_eight.shape),
            "predict_small_diff": _max_diff(pred_one[:5], pred_small),
            "predict_trained_diff": _max_diff(
                jl.predict(model, *trained, x, batch_size=16), pred_t),
            "predict_stream_diff": _max_diff(pred_one[:33], pred_stream),
            "trained_kernel_spec": str(ts24.params[0]["kernel"].sharding.spec)}


def check_loss_scale():
    """A float16 fit with a dynamic loss scale on a 2x4 mesh (kernels sharded, and their
    Adam moments with them; the scale replicated) equals the same fit on one device."""
    model = jl.mixed_precision(jl.serial(jl.Dense(16, activation="tanh"), jl.Dense(3)),
                               jl.Policy(compute="float16"))
    x, y = _data(48, (6,), seed=5)
    loss_scale = jl.DynamicLossScale(2.0 ** 19, period=2)  # overflows first, then grows
    optimizer = optax.adam(1e-2)
    ts1, h1, _, ts24, h24, _ = _fit_pair(
        model, (x, y), (16, 6), _mesh((2, 4), ("data", "model")), optimizer,
        param_rules={"0/kernel": P(None, "model")}, epochs=2, loss=CE,
        fit_kw={"loss_scale": loss_scale})

    class Scales(jl.callbacks.Callback):  # the scale after every step (one device)
        trace = []

        def on_batch_end(self, step, logs, train_state):
            self.trace.append(float(train_state.opt_state[1].loss_scale))

    params, state = model.init(jax.random.key(0), (16, 6))
    jl.fit(model, (params, state), (x, y), loss=CE, optimizer=optimizer, epochs=2,
           batch_size=16, key=jax.random.key(1), verbose=False, loss_scale=loss_scale,
           callbacks=[Scales()])
    scales = [(float(t.opt_state[1].loss_scale), int(t.opt_state[1].counter))
              for t in (ts1, ts24)]
    mu = ts24.opt_state[0][0].mu
    return {"params_diff": _max_diff(ts1.params, ts24.params),
            "opt_diff": _max_diff(ts1.opt_state, ts24.opt_state), "scales": scales,
            "scale_trace": Scales.trace,
            "loss_single": h1["loss"], "loss_mesh": h24["loss"],
            "kernel_spec": str(ts24.params[0]["kernel"].sharding.spec),
            "mu_specs": sorted({str(a.sharding.spec) for a in jax.tree.leaves(mu)}),
            "scale_spec": str(ts24.opt_state[1].loss_scale.sharding.spec)}


def _error(fn):
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the type and message are the result
        return {"type": type(err).__name__, "message": str(err)}
    return {"type": None, "message": ""}


def check_errors():
    model = jl.serial(jl.Dense(8, activation="relu"), jl.Dense(3))
    params, state = model.init(jax.random.key(0), (16, 6))
    x, y = _data(48, (6,))
    mesh = _mesh((8,), ("data",))
    kw = dict(loss=CE, optimizer=optax.sgd(0.1), epochs=1, key=jax.random.key(1),
              verbose=False)

    def fit(data=(x, y), **extra):
        return jl.fit(model, (params, state), data, **{"batch_size": 16, **kw, **extra})

    stream = [(x[:16], y[:16]), (x[16:28], y[16:28])]  # 16 rows, then 12
    dp = jl.distributed.data_parallel(mesh)
    return {
        "batch_size": _error(lambda: fit(batch_size=12, mesh=mesh)),
        "last_batch": _error(lambda: fit((x[:44], y[:44]), drop_remainder=False, mesh=mesh)),
        "stream_batch": _error(lambda: jl.fit(model, (params, state), stream, mesh=mesh,
                                              **kw)),
        "shard_batch": _error(lambda: dp.shard_batch((x[:12], y[:12]))),
        "data_axis": _error(lambda: fit(mesh=mesh, data_axis="batch")),
        "rule_axis": _error(lambda: fit(mesh=mesh, param_rules={"*/kernel": P(None, "model")})),
        "rule_nothing": _error(lambda: fit(mesh=mesh, param_rules={"*/kernal": P("data")})),
        "rule_shadowed": _error(lambda: fit(mesh=mesh, param_rules={
            "*/kernel": P(), "0/kernel": P(None, "data")})),
        "rule_indivisible": _error(lambda: fit(mesh=mesh,
                                               param_rules={"*/kernel": P(None, "data")})),
        "rule_rank": _error(lambda: fit(mesh=mesh, param_rules={"0/bias": P(None, "data")})),
        "evaluate_batch_size": _error(lambda: jl.evaluate(model, params, state, (x, y),
                                                          loss=CE, batch_size=12, mesh=mesh)),
        "predict_batch_size": _error(lambda: jl.predict(model, params, state, x,
                                                        batch_size=12, mesh=mesh)),
        "evaluate_data_axis": _error(lambda: jl.evaluate(model, params, state, (x, y),
                                                         loss=CE, mesh=mesh, data_axis="batch")),
        "caller_alive": not any(a.is_deleted() for a in jax.tree.leaves(params)),
    }


def main():
    results, store = {}, {}
    checks = [("devices", check_devices), ("mlp_batchnorm", check_mlp_batchnorm),
              ("lenet", check_lenet), ("model_parallel", lambda: check_model_parallel(store)),
              ("checkpoints", lambda: check_checkpoints(store)),
              ("hand_loop", check_hand_loop), ("eval_predict", check_eval_predict),
              ("loss_scale", check_loss_scale),
              ("errors", check_errors)]
    only = set(sys.argv[1:])
    for name, check in checks:
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            results[name] = check()
        except Exception:  # noqa: BLE001 - reported to the test, which fails on it
            results[name] = {"error": traceback.format_exc()}
        results[name + "_seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
