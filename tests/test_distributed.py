"""jl.distributed and jl.fit(mesh=...): data-parallel and sharded runs on 8 simulated CPU
devices equal the same run on one device; checkpoints move between meshes; bad meshes,
batches and rules are ValueErrors naming the values.

The 8-device checks run once, in a subprocess (tests/distributed_checks.py sets
XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts); this module
asserts on its JSON. The rest runs here, on the suite's one device.
"""

import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import jaxlayers as jl

ROOT = pathlib.Path(__file__).resolve().parents[1]
# float32 summation order: the partitioner all-reduces per-device partial sums
ATOL = 1e-5


def _run_checks():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "distributed_checks.py")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def checks(tmp_path_factory, worker_id):
    # One subprocess per run, not one per xdist worker: `-n auto` splits this module's
    # tests between the workers, and each ran the ~20 s subprocess. The first worker
    # writes the JSON into the run's shared temporary folder under a lock; the others
    # read it (pytest-xdist's recipe for a session fixture that executes only once).
    try:
        import filelock  # torch's dependency, so installed with '.[test]'
    except ImportError:
        filelock = None
    if worker_id == "master" or filelock is None:  # no xdist, or no lock: run it here
        return json.loads(_run_checks())
    shared = tmp_path_factory.getbasetemp().parent / "distributed_checks.json"
    with filelock.FileLock(f"{shared}.lock"):
        if not shared.is_file():
            shared.write_text(_run_checks())
        return json.loads(shared.read_text())


def _result(checks, name):
    result = checks[name]
    if "error" in result:
        pytest.fail(f"check {name!r} failed in the 8-device subprocess:\n{result['error']}")
    return result


# --------------------------------------------------------------------------- 8 devices

def test_the_subprocess_sees_eight_cpu_devices(checks):
    assert _result(checks, "devices") == {"count": 8, "platform": "cpu"}


def test_data_parallel_mlp_with_batchnorm_and_dropout_matches_one_device(checks):
    r = _result(checks, "mlp_batchnorm")
    assert r["step"] == [8, 8]
    # BatchNorm's running statistics equal the single device's: global-batch statistics
    # (each device's own 2 samples would give other means and variances)
    assert r["params_diff"] < ATOL and r["state_diff"] < ATOL and r["opt_diff"] < ATOL
    np.testing.assert_allclose(r["steps_mesh"], r["steps_single"], rtol=1e-5)
    np.testing.assert_allclose(r["loss_mesh"], r["loss_single"], rtol=1e-5)


def test_fit_on_a_mesh_splits_each_batch_and_replicates_the_rest(checks):
    r = _result(checks, "mlp_batchnorm")
    assert r["y_shard_shapes_in_steps"] == [[2]]  # 16 samples over 8 devices, in the step
    assert r["param_specs"] == ["P()"] and r["state_specs"] == ["P()"]
    assert r["devices"] == 8


def test_data_parallel_lenet_matches_one_device(checks):
    r = _result(checks, "lenet")
    assert r["step"] == [4, 4] and r["param_specs"] == ["P()"]
    assert r["params_diff"] < ATOL
    np.testing.assert_allclose(r["loss_mesh"], r["loss_single"], rtol=1e-5)


def test_2x4_mesh_with_sharded_dense_and_attention_kernels_gives_the_same_loss_curve(checks):
    r = _result(checks, "model_parallel")
    assert len(r["steps_mesh"]) == len(r["steps_single"]) == 4
    np.testing.assert_allclose(r["steps_mesh"], r["steps_single"], rtol=1e-5)
    np.testing.assert_allclose(r["loss_mesh"], r["loss_single"], rtol=1e-5)
    assert r["params_diff"] < ATOL and r["opt_diff"] < ATOL


def test_param_rules_shard_the_kernels_and_their_optimizer_state(checks):
    r = _result(checks, "model_parallel")
    want = {"0/kernel": "P(None, 'model')", "1/query/kernel": "P(None, 'model')",
            "1/key/kernel": "P(None, 'model')", "1/value/kernel": "P(None, 'model')",
            "1/output/kernel": "P('model',)", "3/kernel": "P('model', None)"}
    assert r["specs"] == {**{p: "P()" for p in r["specs"]}, **want}
    assert r["mu_specs"] == r["specs"]  # the momentum lives where its param lives
    # a device holds a quarter of each split dimension: (6, 16) -> (6, 4), 4 heads -> 1
    assert r["shard_shapes"]["0/kernel"] == [6, 4]
    assert r["shard_shapes"]["1/query/kernel"] == [16, 1, 4]
    assert r["shard_shapes"]["1/output/kernel"] == [1, 4, 16]
    assert r["shard_shapes"]["3/kernel"] == [4, 3]


def test_checkpoint_of_a_sharded_run_restores_onto_one_device(checks):
    r = _result(checks, "checkpoints")
    assert r["single_diff"] == 0.0 and r["single_devices"] == [1]
    assert r["step"] == [4, 4, 4]


def test_checkpoint_of_a_sharded_run_restores_onto_another_mesh_and_trains_on(checks):
    r = _result(checks, "checkpoints")
    assert r["moved_diff"] == 0.0 and r["moved_match_like"]
    assert r["moved_mesh"] == {"data": 4, "model": 2}
    assert r["moved_kernel_spec"] == "P(None, 'model')"
    # one more epoch from each restored copy: on one device and on the 4x2 mesh
    assert r["continued_step"] == [6, 6] and r["continued_diff"] < ATOL


def test_hand_written_loop_with_data_parallel_helpers_matches_one_device(checks):
    r = _result(checks, "hand_loop")
    assert r["params_diff"] < ATOL and r["state_diff"] < ATOL
    assert r["kernel_spec"] == "P(None, 'model')" and r["batch_spec"] == "P('data',)"
    # (2, 4) mesh: the batch is split in 2 along "data", replicated along "model"
    assert r["batch_shards"] == [[8, 6]] and r["batch_devices"] == 8
    assert r["caller_alive"]  # place() copies: the donating step left the caller's arrays


def test_evaluate_and_predict_on_a_mesh_equal_one_device(checks):
    r = _result(checks, "eval_predict")
    assert r["evaluate_keys"] == ["accuracy", "loss", "metric"]
    assert r["evaluate_diff"] < ATOL and r["evaluate_trained_diff"] < ATOL
    np.testing.assert_allclose(*r["evaluate_loss"], rtol=1e-6)
    # 16-row batches split 2 rows a device; the last 4 rows (52 = 3 * 16 + 4) replicated
    assert r["evaluate_y_shards"] == [[2], [4]]
    assert r["predict_shape"] == [52, 3] and r["predict_diff"] < ATOL
    # one batch of 5 rows and a stream of 16, 12 and 5 rows: padded to 8 and 16, cut back
    assert r["predict_small_diff"] < ATOL and r["predict_stream_diff"] < ATOL
    # params fit left sharded on a 2x4 mesh are used where they are
    assert r["trained_kernel_spec"] == "P(None, 'model')"
    assert r["predict_trained_diff"] < ATOL


def test_float16_fit_with_a_loss_scale_on_a_mesh_matches_one_device(checks):
    r = _result(checks, "loss_scale")
    # overflow (skip, halve), two finite steps (grow), and again: both branches ran
    assert r["scale_trace"] == [2.0 ** 18, 2.0 ** 18, 2.0 ** 19] * 2
    assert r["scales"][0] == r["scales"][1]
    # float16 matmuls summed in another order: within a float16 rounding (2**-11 at 1)
    assert r["params_diff"] < 2e-4 and r["opt_diff"] < 2e-4
    np.testing.assert_allclose(r["loss_mesh"], r["loss_single"], rtol=1e-4)
    # the Adam moments live with their sharded kernel; the scale is replicated
    assert r["kernel_spec"] == "P(None, 'model')" and r["scale_spec"] == "P()"
    assert r["mu_specs"] == ["P()", "P(None, 'model')"]


@pytest.mark.parametrize("case, what", [
    ("evaluate_batch_size", "evaluate: batch_size 12 does not split over the 8 devices of "
                            "mesh axis 'data'"),
    ("predict_batch_size", "predict: batch_size 12 does not split over the 8 devices of "
                           "mesh axis 'data'"),
    ("evaluate_data_axis", "evaluate: data_axis names mesh axis 'batch', but the mesh has "
                           "axes ('data',)"),
])
def test_evaluate_and_predict_on_a_mesh_refuse_what_fit_refuses(checks, case, what):
    r = _result(checks, "errors")[case]
    assert r["type"] == "ValueError" and r["message"].startswith(what), r


@pytest.mark.parametrize("case, what", [
    ("batch_size", "fit: batch_size 12 does not split over the 8 devices of mesh axis 'data'"),
    ("last_batch", "fit: the last batch (drop_remainder=False) of 12 does not split over "
                   "the 8 devices"),
    ("stream_batch", "fit: batch size 12 does not split over the 8 devices"),
    ("shard_batch", "data_parallel: batch size 12 does not split over the 8 devices"),
])
def test_batch_not_divisible_by_the_data_axis_is_a_value_error(checks, case, what):
    r = _result(checks, "errors")[case]
    assert r["type"] == "ValueError" and r["message"].startswith(what), r
    assert "use a multiple of 8" in r["message"]


@pytest.mark.parametrize("case, what", [
    ("data_axis", "fit: data_axis names mesh axis 'batch', but the mesh has axes ('data',)"),
    ("rule_axis", "fit: param rule '*/kernel' names mesh axis 'model', but the mesh has "
                  "axes ('data',)"),
])
def test_mesh_axis_that_does_not_exist_is_a_value_error(checks, case, what):
    r = _result(checks, "errors")[case]
    assert r["type"] == "ValueError" and r["message"].startswith(what), r


@pytest.mark.parametrize("case, what", [
    ("rule_nothing", "fit: param rule '*/kernal' shards nothing: it matches none of the "
                     "param paths; the paths are 0/bias, 0/kernel, 1/bias, 1/kernel"),
    ("rule_shadowed", "fit: param rule '0/kernel' shards nothing: every path it matches is "
                      "taken by an earlier rule"),
])
def test_param_rule_matching_nothing_is_a_value_error(checks, case, what):
    r = _result(checks, "errors")[case]
    assert r["type"] == "ValueError" and r["message"].startswith(what), r


@pytest.mark.parametrize("case, what", [
    ("rule_indivisible", "fit: param rule '*/kernel' splits dimension 1 of '1/kernel' "
                         "(shape (8, 3), size 3) over mesh axis 'data' of size 8"),
    ("rule_rank", "fit: param rule '0/bias' gives P(None, 'data') (2 dimensions) to "
                  "'0/bias' of shape (8,)"),
])
def test_param_dimension_the_axis_does_not_divide_is_a_value_error(checks, case, what):
    r = _result(checks, "errors")[case]
    assert r["type"] == "ValueError" and r["message"].startswith(what), r
    assert _result(checks, "errors")["caller_alive"]


# --------------------------------------------------------------------------- one device

def _mesh1(*names):
    return jax.make_mesh((1,) * len(names), names)


def _ce(predictions, targets):
    return jl.losses.sparse_categorical_crossentropy(predictions, targets, from_logits=True)


def test_fit_on_a_mesh_of_one_device_equals_fit_without_a_mesh():
    model = jl.serial(jl.Dense(8, use_bias=False), jl.BatchNorm(), jl.Dense(3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = rng.integers(0, 3, 32).astype(np.int32)
    params, state = model.init(jax.random.key(0), (8, 5))
    kw = dict(loss=_ce, optimizer=optax.adam(1e-2), epochs=2,
              batch_size=8, key=jax.random.key(1), verbose=False)
    ts, history = jl.fit(model, (params, state), (x, y), **kw)
    ts1, history1 = jl.fit(model, (params, state), (x, y), mesh=_mesh1("data"),
                           param_rules={"0/kernel": P(None, "data")}, **kw)
    chex.assert_trees_all_close((ts.params, ts.state), (ts1.params, ts1.state), atol=1e-6)
    assert history1["loss"] == pytest.approx(history["loss"], rel=1e-6)
    assert ts1.params[0]["kernel"].sharding.spec == P(None, "data")


def test_param_specs_take_the_first_matching_rule_and_replicate_the_rest():
    params, _ = jax.eval_shape(lambda: jl.models.lenet5().init(jax.random.key(0),
                                                               (1, 32, 32, 1)))
    dp = jl.distributed.data_parallel(_mesh1("data", "model"), param_rules={
        "classifier/fc3/*": P(), "classifier/*/kernel": ("data", "model"),
        "features/*/kernel": P(None, None, None, "model")})
    specs = dict(zip(jl.path_strings(params), jax.tree.leaves(
        dp.param_specs(params), is_leaf=lambda s: isinstance(s, P))))
    assert specs["classifier/fc1/kernel"] == P("data", "model")  # a tuple is a spec
    assert specs["classifier/fc3/kernel"] == P()                # the earlier rule won
    assert specs["features/conv2/kernel"] == P(None, None, None, "model")
    assert specs["features/conv2/bias"] == P()                  # no rule: replicated


def test_explicit_mesh_is_used_with_auto_axes_for_gspmd():
    dp = jl.distributed.data_parallel(jax.make_mesh((1,), ("data",)))
    assert dp.mesh.axis_types == (jax.sharding.AxisType.Auto,)
    assert dp.batch_sharding.spec == P("data") and dp.replicated.spec == P()
    assert jl.distributed.data_parallel().mesh.shape == {"data": jax.device_count()}


def test_bad_mesh_and_rules_fail_at_construction_naming_them():
    mesh = _mesh1("data")
    with pytest.raises(TypeError, match="data_parallel: mesh must be a jax.sharding.Mesh"):
        jl.distributed.data_parallel((8,))
    with pytest.raises(ValueError, match=r"data_parallel: axis names mesh axis 'batch', but "
                                         r"the mesh has axes \('data',\)"):
        jl.distributed.data_parallel(mesh, "batch")
    with pytest.raises(TypeError, match="data_parallel: the rule '\\*/kernel' must map to a "
                                        "PartitionSpec"):
        jl.distributed.data_parallel(mesh, param_rules={"*/kernel": "model"})
    with pytest.raises(TypeError, match="data_parallel: param_rules must be a dict"):
        jl.distributed.data_parallel(mesh, param_rules="*/kernel")


def test_fit_param_rules_without_a_mesh_is_a_value_error():
    model = jl.Dense(2)
    params, state = model.init(jax.random.key(0), (4, 3))
    with pytest.raises(ValueError, match="fit: param_rules need mesh="):
        jl.fit(model, (params, state), (np.ones((4, 3)), np.ones((4, 2))), loss=jl.losses.mse,
               optimizer=optax.sgd(0.1), epochs=1, batch_size=4, key=jax.random.key(0),
               param_rules={"kernel": P()}, verbose=False)


def test_local_data_gives_each_process_an_equal_contiguous_share():
    x, y = np.arange(22).reshape(11, 2), np.arange(11)
    parts = [jl.distributed.local_data((x, y), process_index=i, process_count=2)
             for i in range(2)]
    np.testing.assert_array_equal(parts[0][1], np.arange(5))
    np.testing.assert_array_equal(parts[1][1], np.arange(5, 10))  # the 11th is dropped
    np.testing.assert_array_equal(parts[1][0], x[5:10])
    whole = jl.distributed.local_data((x, y))  # one process: everything
    np.testing.assert_array_equal(whole[0], x)


def test_initialize_passes_its_arguments_to_jax_distributed(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    assert jl.distributed.initialize("10.0.0.1:1234", 2, 0, local_device_ids=[0]) == (0, 1)
    assert calls == [(("10.0.0.1:1234", 2, 0), {"local_device_ids": [0]})]
