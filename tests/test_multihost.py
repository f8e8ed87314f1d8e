"""Two processes on 127.0.0.1 train as one: `jl.distributed.initialize` joins them
(jax.distributed's coordinator on a free local port, gloo for the CPU collectives), each
fits on its own `jl.distributed.local_data` share over a mesh of the 4 devices of both
(2 simulated CPU devices each), and the run equals one process fitting on the global
batches (the processes' shares side by side) on one device. A hang fails in TIMEOUT s."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import optax

import jaxlayers as jl
from multihost_common import BATCH, CE, EPOCHS, TIMEOUT, data, model

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))}
    env.pop("XLA_FLAGS", None)
    port, procs = _free_port(), []
    try:
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "multihost_worker.py"), str(i),
                 str(port), str(tmp_path / f"{i}.json")],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                cwd=ROOT))
        logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:  # a hang: stop both (only the processes started here)
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{log[-3000:]}"
    return [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)]


def test_two_processes_fit_on_their_local_shares_as_one_process_on_the_global_batch(
        tmp_path):
    runs = _run_two_processes(tmp_path)
    x, y = data()
    share = len(x) // 2
    for i, run in enumerate(runs):
        assert (run["index"], run["count"], run["devices"], run["local_devices"]) == (i, 2, 4, 2)
        assert run["rows"] == share and run["first_row"] == x[i * share].tolist()
    # the global batch of step s is process 0's rows s*B:(s+1)*B, then process 1's
    steps = share // BATCH
    order = np.concatenate([np.arange(s * BATCH, (s + 1) * BATCH) + p * share
                            for s in range(steps) for p in range(2)])
    params, state = model().init(jax.random.key(0), (2 * BATCH,) + x.shape[1:])
    ts, history = jl.fit(model(), (params, state), (x[order], y[order]), loss=CE,
                         optimizer=optax.adam(1e-2), epochs=EPOCHS, batch_size=2 * BATCH,
                         key=jax.random.key(1), shuffle=False, verbose=False)
    assert runs[0]["step"] == runs[1]["step"] == ts.step == EPOCHS * steps
    # both processes hold the same replicated params, equal to one device's
    assert runs[0]["params"] == runs[1]["params"] and runs[0]["state"] == runs[1]["state"]
    for got, want in zip(runs[0]["params"] + runs[0]["state"],
                         jax.tree.leaves(ts.params) + jax.tree.leaves(ts.state)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(runs[0]["loss"], history["loss"], rtol=1e-5)
    # evaluate(mesh=) over both shares (batches of 8 + 8, then 4 + 4) is the whole set's
    want = jl.evaluate(model(), ts.params, ts.state, (x, y), loss=CE)
    for run in runs:
        assert run["scores"].keys() == want.keys()
        np.testing.assert_allclose([run["scores"][k] for k in want], list(want.values()),
                                   rtol=1e-5)
