"""One process of tests/test_multihost.py's two-process run on 127.0.0.1.

    python tests/multihost_worker.py PROCESS_ID PORT OUT.json

Each process has 2 simulated CPU devices; `jl.distributed.initialize` joins them through
the coordinator at 127.0.0.1:PORT (process 0 runs it), and gloo carries the CPU
collectives. Each process fits on its own share of the data (`jl.distributed.local_data`)
over a 4-device mesh spanning both processes, then writes the params it holds, the
history and what it saw of the run to OUT.json.
"""

import json
import os
import sys

process_id, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                    "--xla_force_host_platform_device_count=2",
                                    "--xla_backend_optimization_level=0"])
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

# gloo is jax 0.10's default for CPU collectives in a multi-process run (a run without
# this line passes too); set here so that a change of default does not change the test
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxlayers as jl  # noqa: E402
from multihost_common import BATCH, CE, EPOCHS, TIMEOUT, data, model  # noqa: E402

index, count = jl.distributed.initialize(f"127.0.0.1:{port}", 2, process_id,
                                         initialization_timeout=TIMEOUT)
x, y = data()
mine = jl.distributed.local_data((x, y))
mesh = jax.make_mesh((jax.device_count(),), ("data",))
params, state = model().init(jax.random.key(0), (2 * BATCH,) + x.shape[1:])
ts, history = jl.fit(model(), (params, state), mine, loss=CE, optimizer=optax.adam(1e-2),
                     epochs=EPOCHS, batch_size=BATCH, key=jax.random.key(1), shuffle=False,
                     mesh=mesh, verbose=False)
scores = jl.evaluate(model(), ts.params, ts.state, mine, loss=CE, batch_size=BATCH, mesh=mesh)


def local(tree):  # replicated leaves: this process's copy
    return [np.asarray(a.addressable_data(0), np.float64).tolist() for a in jax.tree.leaves(tree)]


with open(out, "w") as f:
    json.dump({"index": index, "count": count, "devices": jax.device_count(),
               "local_devices": jax.local_device_count(), "rows": int(mine[0].shape[0]),
               "first_row": mine[0][0].tolist(), "step": int(ts.step),
               "loss": history["loss"], "scores": scores, "params": local(ts.params),
               "state": local(ts.state)},
              f)
jax.distributed.shutdown()
