"""jl.save / jl.restore / jl.CheckpointManager: bit-exact round trips, the file format read
by safetensors itself, corrupted and foreign files refused, and a writer killed 50 times."""

import json
import os
import pathlib
import subprocess
import sys
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl
from jaxlayers.checkpoint import CorruptCheckpointError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _model_tree():
    """params, state, opt_state of a small real model, a PRNG key, a bf16 array, scalars."""
    model = jl.serial(jl.Dense(5, activation="relu"), jl.BatchNorm(), jl.Dense(3))
    params, state = model.init(jax.random.key(0), (4, 7))
    opt_state = optax.adam(1e-3).init(params)
    return {"params": params, "state": state, "opt_state": opt_state,
            "key": jax.random.split(jax.random.key(42), 3),
            "half": jnp.linspace(-3, 3, 6, dtype=jnp.bfloat16).reshape(2, 3),
            "ids": np.arange(-4, 4, dtype=np.int8), "epoch": 7, "lr": 0.25}


def _assert_same(got, want):
    chex.assert_trees_all_equal_structs(got, want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        if hasattr(w, "dtype") and jax.dtypes.issubdtype(w.dtype, jax.dtypes.prng_key):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(jax.random.key_data(g), jax.random.key_data(w))
        else:
            assert type(g) is type(w) or (isinstance(g, jax.Array) and isinstance(w, jax.Array)), \
                (type(g), type(w))
            assert np.asarray(g).dtype == np.asarray(w).dtype
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_round_trip_is_bit_exact_for_every_kind_of_leaf(tmp_path):
    tree = _model_tree()
    path = jl.save(tmp_path / "m.safetensors", tree, step=12, metadata={"note": "hi"})
    _assert_same(jl.restore(path, like=tree), tree)
    meta = jl.checkpoint.read_metadata(path)
    assert meta["step"] == 12 and meta["metadata"] == {"note": "hi"}
    assert meta["jaxlayers_version"] == jl.__version__
    # like= from jax.eval_shape: no arrays needed to restore, jax arrays come back
    shapes = jax.eval_shape(lambda: tree["params"])
    restored = jl.restore(jl.save(tmp_path / "p.safetensors", tree["params"]), like=shapes)
    assert all(isinstance(a, jax.Array) for a in jax.tree.leaves(restored))
    _assert_same(restored, tree["params"])


def test_the_file_is_plain_safetensors_named_by_pytree_paths(tmp_path):
    from safetensors.numpy import load_file

    tree = _model_tree()
    path = jl.save(tmp_path / "m.safetensors", tree)
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # the format itself
    assert "jaxlayers" in header["__metadata__"]
    tensors = load_file(str(path))  # safetensors' own reader, no jaxlayers involved
    assert set(tensors) == set(jl.path_strings(tree))
    assert "params/0/kernel" in tensors
    np.testing.assert_array_equal(tensors["params/0/kernel"], tree["params"][0]["kernel"])
    # PRNG keys as key data, bfloat16 as its 16-bit pattern
    np.testing.assert_array_equal(tensors["key"], jax.random.key_data(tree["key"]))
    assert tensors["half"].dtype == np.uint16
    np.testing.assert_array_equal(tensors["half"], np.asarray(tree["half"]).view(np.uint16))
    # restore(like=None): nested dicts by path entry
    plain = jl.restore(path)
    np.testing.assert_array_equal(plain["params"]["2"]["bias"], tree["params"][2]["bias"])
    assert plain["epoch"] == 7


def test_no_pickle_in_the_checkpoint_code():
    import re

    source = (ROOT / "jaxlayers" / "checkpoint.py").read_text()
    assert not re.search(r"import pickle|pickle\.load|allow_pickle|np\.load\(", source)


def _header_span(raw):
    n = int.from_bytes(raw[:8], "little")
    return 8, 8 + n


@pytest.mark.parametrize("damage", ["flip_data", "flip_last", "flip_header", "truncate_half",
                                    "truncate_one", "truncate_header", "empty", "not_safetensors"])
def test_damaged_files_are_refused_and_nothing_is_restored(tmp_path, damage):
    tree = _model_tree()
    path = jl.save(tmp_path / "m.safetensors", tree)
    raw = bytearray(path.read_bytes())
    start, end = _header_span(raw)
    if damage == "flip_data":
        raw[end + 37] ^= 0x10
    elif damage == "flip_last":
        raw[-1] ^= 0x01
    elif damage == "flip_header":  # a digit of an offset or a shape in the JSON
        i = next(i for i in range(start + 10, end) if chr(raw[i]).isdigit())
        raw[i] = ord("7") if raw[i] != ord("7") else ord("3")
    elif damage == "truncate_half":
        raw = raw[:len(raw) // 2]
    elif damage == "truncate_one":
        raw = raw[:-1]
    elif damage == "truncate_header":
        raw = raw[:end - 5]
    elif damage == "empty":
        raw = bytearray()
    else:
        raw = bytearray(b"PK\x03\x04 a zip file, or anything else")
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match="m.safetensors"):
        jl.restore(path, like=tree)
    assert issubclass(CorruptCheckpointError, ValueError)


def _rewrite(path, description=None, drop=None):
    """Rewrite a checkpoint with safetensors directly: an edited description or fewer tensors."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    raw = path.read_bytes()
    start, end = _header_span(raw)
    meta = json.loads(raw[start:end])["__metadata__"]
    if description is not None:
        meta["jaxlayers"] = json.dumps(description)
    if drop is not None:
        tensors.pop(drop)
    save_file(tensors, str(path), metadata=meta)


def test_hand_edited_descriptions_and_missing_tensors_are_refused(tmp_path):
    tree = _model_tree()
    path = jl.save(tmp_path / "m.safetensors", tree, step=3)
    description = jl.checkpoint.read_metadata(path)
    edited = dict(description, step=4)  # a valid file whose JSON no longer matches
    _rewrite(path, description=edited)
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        jl.restore(path, like=tree)

    path = jl.save(tmp_path / "m.safetensors", tree, step=3)
    _rewrite(path, drop="params/0/bias")
    with pytest.raises(CorruptCheckpointError, match="params/0/bias"):
        jl.restore(path, like=tree)

    path = jl.save(tmp_path / "m.safetensors", tree, step=3)
    _rewrite(path, description={"hello": "world"})
    with pytest.raises(CorruptCheckpointError, match="not a jaxlayers checkpoint"):
        jl.restore(path)


def test_a_checkpoint_of_another_model_names_the_first_mismatch(tmp_path):
    small = jl.serial(jl.Dense(5), jl.Dense(3))
    params, _ = small.init(jax.random.key(0), (2, 4))
    path = jl.save(tmp_path / "m.safetensors", params)

    wider, _ = jl.serial(jl.Dense(6), jl.Dense(3)).init(jax.random.key(0), (2, 4))
    with pytest.raises(ValueError, match=r"'0/bias' is float32\(5,\) in the checkpoint, "
                                         r"float32\(6,\) in the target"):
        jl.restore(path, like=wider)
    deeper, _ = jl.serial(jl.Dense(5), jl.Dense(3), jl.Dense(2)).init(jax.random.key(0), (2, 4))
    with pytest.raises(ValueError, match=r"at leaf 4: checkpoint None, target '2/bias'"):
        jl.restore(path, like=deeper)
    other = {"dense": params[0], "head": params[1]}
    with pytest.raises(ValueError, match=r"checkpoint '0/bias', target 'dense/bias'"):
        jl.restore(path, like=other)
    as64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    with pytest.raises(ValueError, match=r"float32\(5,\) in the checkpoint, float64\(5,\)"):
        jl.restore(path, like=as64)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = jl.save(tmp_path / "m.safetensors", {"w": np.ones(3, np.float32)}, step=1)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        jl.save(path, {"w": np.zeros(3, np.float32)}, step=2)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    assert jl.checkpoint.read_metadata(path)["step"] == 1
    np.testing.assert_array_equal(jl.restore(path)["w"], np.ones(3, np.float32))


def test_bad_trees_and_metadata_are_named(tmp_path):
    with pytest.raises(TypeError, match="'b'.*not an array"):
        jl.save(tmp_path / "x.safetensors", {"a": np.ones(2), "b": "text"})
    with pytest.raises(TypeError, match="JSON"):
        jl.save(tmp_path / "x.safetensors", {"a": np.ones(2)}, metadata={"f": object()})
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        jl.restore(tmp_path / "missing.safetensors")


def test_manager_keeps_the_last_n_and_falls_back_past_a_damaged_newest(tmp_path):
    manager = jl.CheckpointManager(tmp_path / "ckpt", keep=3)
    trees = {s: {"w": np.full((2, 2), s, np.float32), "s": np.int32(s)} for s in range(6)}
    for s in (0, 2, 3, 5, 9):
        manager.save(s, trees.get(s, trees[5]))
    assert manager.steps() == [3, 5, 9] and manager.latest_step() == 9
    np.testing.assert_array_equal(manager.restore(like=trees[3], step=3)["w"], trees[3]["w"])
    # a leftover temporary file of a killed save is no checkpoint
    (tmp_path / "ckpt" / ".ckpt-00000010.safetensors.abc.tmp").write_bytes(b"partial")
    assert manager.latest_step() == 9
    # the newest damaged: a warning, then the one before
    path = manager.path(9)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.warns(UserWarning, match="skipping step 9"):
        got = manager.restore(like=trees[5])
    np.testing.assert_array_equal(got["w"], trees[5]["w"])
    # a structure mismatch is the caller's error: raised, not skipped
    with pytest.raises(ValueError, match="structure differs"):
        manager.restore(like={"other": np.ones(2)}, step=5)
    manager.save(11, trees[1])  # cleans temporaries, prunes to the last 3
    assert manager.steps() == [5, 9, 11]
    assert not list((tmp_path / "ckpt").glob("*.tmp"))
    with pytest.raises(ValueError, match="keep must be an int >= 1"):
        jl.CheckpointManager(tmp_path, keep=0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        jl.CheckpointManager(tmp_path / "empty").restore()


_WRITER = r"""
import os, random, signal, sys, time
import numpy as np
import jaxlayers as jl

directory, seed = sys.argv[1], int(sys.argv[2])
manager = jl.CheckpointManager(directory, keep=2)
delays = random.Random(seed)

def tree(step):
    rng = np.random.default_rng(step)
    return {"params": {"w": rng.standard_normal((128, 256)).astype(np.float32),
                       "b": np.full((256,), step, np.float32)}, "step": np.int64(step)}

for line in sys.stdin:  # one trial per line: the first step to write
    step = int(line)
    pid = os.fork()
    if pid == 0:  # the writer: saves until killed
        try:
            while True:
                manager.save(step, tree(step))
                step += 1
        finally:
            os._exit(1)
    time.sleep(delays.uniform(0.002, 0.08))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("killed", flush=True)
"""


def _expected(step):
    rng = np.random.default_rng(step)
    return {"params": {"w": rng.standard_normal((128, 256)).astype(np.float32),
                       "b": np.full((256,), step, np.float32)}, "step": np.int64(step)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_writer_killed_50_times_always_leaves_the_newest_checkpoint_restorable(tmp_path):
    """A process saving in a loop is SIGKILLed at random moments, 50 times; after each kill
    the newest checkpoint restores bit-exactly (no fallback warning allowed) and steps only
    move forward. One Python process forks the writers, so jax is imported once."""
    directory = tmp_path / "ckpt"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", _WRITER, str(directory), "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    manager = jl.CheckpointManager(directory, keep=2)
    latest, mid_write, restored = -1, 0, 0
    try:
        for trial in range(50):
            proc.stdin.write(f"{latest + 1}\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "killed", f"writer died at trial {trial}"
            mid_write += bool(list(directory.glob(".*.tmp"))) if directory.exists() else 0
            step = manager.latest_step()
            if step is None:
                continue  # killed before its first save completed
            assert step >= latest, (step, latest)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the newest must be intact: no fallback
                got = manager.restore(like=_expected(step))
            chex.assert_trees_all_equal(got, _expected(step))
            assert jl.checkpoint.read_metadata(manager.path(step))["step"] == step
            latest, restored = step, restored + 1
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert restored >= 40, restored
    assert mid_write >= 1, "no kill landed during a save: the test did not test atomicity"
    print(f"50 kills: {restored} restores, {mid_write} kills left a partial temporary, "
          f"last step {latest}")


def test_from_torch_reads_a_pytorch_safetensors_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file
    from safetensors.torch import save_file

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    save_file(conv.state_dict(), str(tmp_path / "conv.safetensors"))
    params = jl.interop.from_torch("Conv2D", load_file(str(tmp_path / "conv.safetensors")))
    layer = jl.Conv2D(4, 3)
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 3)).astype(np.float32)
    _, state = layer.init(jax.random.key(0), x.shape)
    y, _ = layer.apply(params, state, jnp.asarray(x))
    with torch.no_grad():
        want = conv(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    chex.assert_trees_all_close(y, want, rtol=1e-5, atol=1e-5)
