"""The package version, in one place (jaxlayers.__version__, checkpoints record it)."""

__version__ = "0.1.0"
