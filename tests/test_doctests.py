"""Every docstring example in jaxlayers runs, and every public layer has one (issue 14).

The examples are collected with `doctest.DocTestFinder` over every jaxlayers module and
run one docstring per test, so `pytest -n auto` spreads them over the workers; the
direct check is `python -m pytest --doctest-modules jaxlayers` (the same examples, with
the option flags of pyproject.toml's `doctest_optionflags`). Examples import what they
use (`import jax, jaxlayers as jl`), so they run from a plain `python -m doctest` too.
"""

import doctest
import importlib
import pkgutil

import pytest

import jaxlayers as jl
from test_conformance import _public_layers

# as pyproject.toml's doctest_optionflags, which `--doctest-modules` reads
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules():
    names = ["jaxlayers"] + sorted(m.name for m in pkgutil.walk_packages(jl.__path__,
                                                                          "jaxlayers."))
    return [importlib.import_module(name) for name in names]


def _doctests():
    """Every docstring with examples, once (a name re-exported elsewhere is found once)."""
    finder = doctest.DocTestFinder()
    found = {}
    for module in _modules():
        for test in finder.find(module):
            if test.examples:
                found.setdefault(test.name, test)
    return sorted(found.values(), key=lambda t: t.name)


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test):
    out = []
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=out.append)
    assert result.failed == 0, "".join(out)


def test_every_public_layer_has_a_runnable_example_that_shows_its_output():
    by_doc = {test.docstring: test for test in DOCTESTS}
    missing = [name for name in _public_layers() if getattr(jl, name).__doc__ not in by_doc]
    assert not missing, (f"public layers whose docstring has no >>> example that "
                         f"tests/test_doctests.py collects: {missing}")
    # an example that only builds the layer checks nothing: each must show an output
    silent = [name for name in _public_layers()
              if not any(e.want.strip() for e in by_doc[getattr(jl, name).__doc__].examples)]
    assert not silent, f"public layers whose example shows no output: {silent}"
