"""Suite-wide JAX settings: strict rank promotion (DESIGN.md §4), CPU, quiet logs, LLVM -O0."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# XLA:CPU's compile time dominates the suite, and most of it is LLVM optimising the
# generated code. The suite compiles with LLVM at -O0 (XLA's HLO passes, fusion and the
# YNNPACK/Eigen kernels for dots and convolutions are unchanged, and no fast-math is
# enabled, so results are IEEE as at -O3): a Conv2D/LSTM/GRU/attention slice of the
# conformance battery ran in 63 s instead of 87 s, while the training-heavy notebooks and
# demos took the same time. Set XLA_FLAGS with an xla_backend_optimization_level of your
# own to test at another level; subprocess tests (tests/distributed_checks.py,
# multihost_worker.py) set their own flags.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [
        os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0",
        "--xla_llvm_disable_expensive_passes=true"]))

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_collection_modifyitems(config, items):
    """Modules with `slow` tests (the zoo's training steps, demos, notebooks: 20-45 s
    each) run first, each module's tests still together and in file order (module-scoped
    fixtures are built once). With `-n auto --dist worksteal` the workers then finish on
    short tests instead of one worker running a notebook alone at the end."""
    slow = {item.module.__name__ for item in items
            if item.get_closest_marker("slow") and getattr(item, "module", None)}
    items.sort(key=lambda item: getattr(getattr(item, "module", None), "__name__", "")
               not in slow)
