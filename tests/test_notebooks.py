"""Execute every notebooks/*.ipynb top to bottom; a cell's failed assertion fails the test.

The notebooks assert the seeds' numbers as they go, so running them is a check of both the
library and the text. Each runs in a fresh `python3` kernel (ipykernel's, i.e. this
interpreter) with the notebook's folder as working directory; figures go to the inline
backend and are discarded with the executed copy.
"""

import os
import pathlib
import sys
import time

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell (XLA:CPU compiling on a busy 2-core machine)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # The kernel inherits this environment: CPU unless told otherwise, no GUI backend.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    # the kernel imports this checkout's jaxlayers, not whichever one is installed
    root = str(path.parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get(
        "PYTHONPATH")])))

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{err}", pytrace=False)
    seconds = time.perf_counter() - start
    print(f"{path.name}: executed in {seconds:.1f} s (python {sys.version.split()[0]})")

    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", ()) if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
