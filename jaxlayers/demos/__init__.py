"""Runnable demos: `python -m jaxlayers demo NAME`, NAME in `NAMES` (the 'examples' extra).

Each module has `run(...) -> dict` (what the command prints, for tests and notebooks)
and imports matplotlib and scikit-learn inside it, so `import jaxlayers` never needs them.
"""

from jaxlayers._extras import missing_extra as missing_extra

NAMES = ("digits", "xor", "adding", "sentiment", "charrnn", "digits-cnn", "transfer",
         "reverse", "seq2seq")

