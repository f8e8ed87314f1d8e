"""Runnable demos: `python -m jaxlayers demo NAME`, NAME in `NAMES` (the 'examples' extra).

Each module has `run(...) -> dict` (what the command prints, for tests and notebooks)
and imports matplotlib and scikit-learn inside it, so `import jaxlayers` never needs them.
"""

NAMES = ("digits", "xor", "adding", "sentiment", "charrnn", "digits-cnn", "transfer",
         "reverse", "seq2seq")


def missing_extra(exc: ImportError) -> ImportError:
    """The ImportError to raise when an 'examples' dependency is absent."""
    return ImportError(f"the jaxlayers demos need the 'examples' extra ({exc.name} is "
                       f"missing): pip install 'jaxlayers[examples]'")
