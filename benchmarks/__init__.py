"""Benchmarks: jaxlayers against hand-written JAX and PyTorch (see benchmarks/README.md)."""
