"""The documentation: the API reference pdoc builds from the docstrings, and docs/*.md.

The reference is built as README's "Documentation" section says
(`python -m pdoc -d google -t docs/pdoc jaxlayers -o docs/api`), here through pdoc's
Python API into a temporary folder. pdoc reports every problem it meets (an annotation
it cannot resolve, a docstring section it cannot parse, a broken link) as a Python
warning, so any warning fails the build, except the few listed in TOLERATED with the
reason each one is not yet fixed in the library.
"""

import inspect
import re
import warnings
from pathlib import Path

import pytest

import jaxlayers as jl

pdoc = pytest.importorskip("pdoc")
import pdoc.render  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# (regex on the warning's message, why it is tolerated). Each entry names a warning that
# is the library's to fix (the test must not edit jaxlayers/): remove the entry with it.
TOLERATED: list[tuple[str, str]] = []  # (warning regex, why it is not yet fixed)

# The public modules of the flat API: each gets a page of its own under jaxlayers/.
PUBLIC_MODULES = sorted(n for n in jl.__all__ if inspect.ismodule(getattr(jl, n)))
# what README's build command renders: the package, and the public modules that live
# deeper than jaxlayers.<name> (jl.crf is jaxlayers.layers.crf)
MODULES = ["jaxlayers"] + sorted(
    getattr(jl, n).__name__ for n in PUBLIC_MODULES
    if getattr(jl, n).__name__ != f"jaxlayers.{n}")


def build_reference(output_directory: Path) -> list[warnings.WarningMessage]:
    """Render the reference as README says; return every warning raised meanwhile."""
    pdoc.render.configure(docformat="google", template_directory=DOCS / "pdoc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, output_directory=output_directory)
    return caught


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    return out, build_reference(out)


def _untolerated(caught):
    return [w for w in caught
            if not any(re.search(pattern, str(w.message)) for pattern, _ in TOLERATED)]


def _anchors(page: Path) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8")))


def test_api_reference_builds_without_warnings(reference):
    _, caught = reference
    problems = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
                for w in _untolerated(caught)]
    assert not problems, "pdoc warned:\n" + "\n".join(problems)


def _page(out: Path, name: str) -> Path:
    """The page of the public module jl.<name> (jl.crf is jaxlayers/layers/crf.html)."""
    return out / (getattr(jl, name).__name__.replace(".", "/") + ".html")


def test_readme_builds_what_the_test_builds():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"python -m pdoc -d google -t docs/pdoc {' '.join(MODULES)} -o docs/api" in readme


def test_every_public_module_has_a_page(reference):
    out, _ = reference
    assert {"activations", "attention", "callbacks", "checkpoint", "distributed",
            "initializers", "interop", "losses", "metrics", "models", "precision",
            "regularizers", "testing", "train"} <= set(PUBLIC_MODULES)
    assert (out / "index.html").is_file() and (out / "jaxlayers.html").is_file()
    missing = [m for m in PUBLIC_MODULES if not _page(out, m).is_file()]
    assert not missing, f"no page for jl.{missing}"


def test_every_name_in_all_is_in_the_rendered_index(reference):
    out, _ = reference
    html = (out / "jaxlayers.html").read_text(encoding="utf-8")
    anchors = _anchors(out / "jaxlayers.html")
    missing = [name for name in jl.__all__
               if name not in anchors and f'href="jaxlayers/{name}.html"' not in html
               and not (name in PUBLIC_MODULES and _page(out, name).is_file())]
    assert not missing, f"jl.{missing} not on the reference's jaxlayers page"
    search = (out / "search.js").read_text(encoding="utf-8")
    assert all((getattr(jl, name).__name__ if name in PUBLIC_MODULES else f"jaxlayers.{name}")
               in search for name in jl.__all__)


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_name_of_a_public_module_is_on_its_page(reference, module):
    out, _ = reference
    anchors = _anchors(_page(out, module))
    names = getattr(jl, module).__all__
    assert not [n for n in names if n not in anchors], names


# ---------------------------------------------------------------------------------------
# docs/coming_from.md: every ```python <framework> block runs.

# A fenced block's tag -> the module it needs. jaxlayers and PyTorch blocks run here,
# in-process (the suite imports torch anyway); the others in a subprocess (Keras picks its
# backend at import, Flax and Equinox set JAX options of their own), skipped where the
# framework is not installed (only torch is in the test extra).
FRAMEWORKS = {"jaxlayers": "jaxlayers", "pytorch": "torch", "keras": "keras",
              "flax": "flax", "haiku": "haiku", "equinox": "equinox"}
_FENCE = re.compile(r"^```(\w*)[ \t]*(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def code_blocks(page: Path) -> list[tuple[str, str, int]]:
    """(language and tag, source, line) of every fenced block of `page`."""
    text = page.read_text(encoding="utf-8")
    return [(f"{m.group(1)} {m.group(2)}".strip(), m.group(3),
             text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)]


COMING_FROM = DOCS / "coming_from.md"
_BLOCKS = [(tag.split()[1], src, line) for tag, src, line in code_blocks(COMING_FROM)
           if tag.startswith("python ")]


def test_every_python_block_of_coming_from_is_tagged_with_a_framework():
    tags = [tag for tag, _, _ in code_blocks(COMING_FROM)]
    assert all(t.split()[0] == "python" and t.split()[1:] and t.split()[1] in FRAMEWORKS
               for t in tags), tags
    assert {t.split()[1] for t in tags} == set(FRAMEWORKS)   # the six frameworks appear


IN_PROCESS = ("jaxlayers", "pytorch")


@pytest.mark.parametrize("tag, source", [(tag, src) for tag, src, _ in _BLOCKS
                                         if tag in IN_PROCESS],
                         ids=[f"{tag}-line{line}" for tag, _, line in _BLOCKS
                              if tag in IN_PROCESS])
def test_coming_from_jaxlayers_and_pytorch_block_runs(tag, source):
    if tag == "pytorch":
        pytest.importorskip("torch")
    exec(compile(source, str(COMING_FROM), "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize("tag, source", [(tag, src) for tag, src, _ in _BLOCKS
                                         if tag not in IN_PROCESS],
                         ids=[f"{tag}-line{line}" for tag, _, line in _BLOCKS
                              if tag not in IN_PROCESS])
def test_coming_from_other_framework_block_runs(tag, source, tmp_path):
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec(FRAMEWORKS[tag]) is None:
        pytest.skip(f"{FRAMEWORKS[tag]} is not installed")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    script = tmp_path / "block.py"   # not f"{tag}.py": that would shadow the module
    script.write_text(source, encoding="utf-8")
    run = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


# ---------------------------------------------------------------------------------------
# docs/seed_index.md: every name, test, notebook section and demo it cites exists.

SEED_INDEX = DOCS / "seed_index.md"
_JL_NAME = re.compile(r"`(jl(?:\.[A-Za-z_]\w*)+)")
_TEST_REF = re.compile(r"`(test_\w+\.py)::(\w+)`")
_NOTEBOOK_REF = re.compile(r"`(\d\d_\w+\.ipynb)`((?:,? §\d+)*)")
_DEMO_REF = re.compile(r"demos? ((?:`[\w-]+`(?:, )?)+)")
# A seed's section: "## `003_6059daebcc9a18e5.txt` — ..."; its titles are quoted «so».
_SEED_SECTION = re.compile(r"^## `(\d{3}_\w+\.txt)`", re.MULTILINE)
_QUOTE = re.compile(r"«([^»]+)»")


def _index() -> str:
    return SEED_INDEX.read_text(encoding="utf-8")


def _defined_tests(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_jaxlayers_name_in_the_seed_index_exists():
    names = sorted(set(_JL_NAME.findall(_index())))
    assert len(names) > 100
    missing = []
    for name in names:
        obj = jl
        for part in name.split(".")[1:]:
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(name)
    assert not missing, missing


def test_every_test_the_seed_index_cites_exists():
    refs = sorted(set(_TEST_REF.findall(_index())))
    assert len(refs) > 100
    defined = {}
    missing = []
    for file, name in refs:
        path = ROOT / "tests" / file
        if file not in defined:
            defined[file] = _defined_tests(path) if path.is_file() else set()
        if name not in defined[file]:
            missing.append(f"tests/{file}::{name}")
    assert not missing, missing


def test_every_notebook_section_and_demo_the_seed_index_cites_exists():
    import json

    from jaxlayers.demos import NAMES

    headings = {}
    missing = []
    for notebook, sections in _NOTEBOOK_REF.findall(_index()):
        path = ROOT / "notebooks" / notebook
        if notebook not in headings:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"] if path.is_file() else []
            headings[notebook] = [line for cell in cells if cell["cell_type"] == "markdown"
                                  for line in "".join(cell["source"]).splitlines()
                                  if line.startswith("## ")]
        if not path.is_file():
            missing.append(notebook)
        for n in re.findall(r"§(\d+)", sections):
            if not any(h.startswith(f"## {n}. ") for h in headings[notebook]):
                missing.append(f"{notebook} §{n}")
    demos = [d for group in _DEMO_REF.findall(_index()) for d in re.findall(r"`([\w-]+)`", group)]
    assert demos and headings
    missing += [f"demo {d}" for d in demos if d not in NAMES]
    assert not missing, missing


def _seed_folder() -> Path | None:
    import os

    candidates = [os.environ.get("JAXLAYERS_SEEDS"), ROOT / "shared" / "seeds",
                  ROOT.parent / "shared" / "seeds"]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


def _sections_by_seed() -> dict[str, str]:
    """The index's text under each seed's "## `<seed file>`" heading."""
    text = _index()
    starts = [(m.start(), m.group(1)) for m in _SEED_SECTION.finditer(text)]
    ends = [s for s, _ in starts[1:]] + [len(text)]
    return {name: text[start:end] for (start, name), end in zip(starts, ends)}


# Markdown headings of the seeds, by file prefix and the deepest level indexed: seeds 000
# and 001 are indexed heading by heading, 003 by question (its 88 "###" subsections sit
# inside the questions' rows); 002 and 004 are slides without markdown headings.
HEADING_LEVELS = {"000": 3, "001": 3, "003": 2}


def test_the_seed_index_has_a_section_for_each_seed_file():
    assert sorted(_sections_by_seed()) == [
        "000_65998ee8080b8915.txt", "001_0f2c977a080b0a36.txt", "002_4d00493772d00f5f.txt",
        "003_6059daebcc9a18e5.txt", "004_e6c6ee98d31fb96c.txt"]
    folder = _seed_folder()
    if folder is not None:
        assert sorted(p.name for p in folder.glob("*.txt")) == sorted(_sections_by_seed())


def _normalise(text: str) -> str:
    return " ".join(text.split())


def test_every_seed_heading_has_a_row_and_every_quoted_title_is_in_its_seed():
    folder = _seed_folder()
    if folder is None:
        pytest.skip("the seeds (the project's shared folder) are not at hand")
    missing, invented = [], []
    for name, section in _sections_by_seed().items():
        seed = _normalise((folder / name).read_text(encoding="utf-8"))
        quotes = [_normalise(q) for q in _QUOTE.findall(section)]
        for q in quotes:
            if q not in seed and not all(part in seed for part in q.split(" / ")):
                invented.append(f"{name}: «{q}»")
        depth = HEADING_LEVELS.get(name[:3], 0)
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            level = len(line) - len(line.lstrip("#"))
            if 0 < level <= depth and line[level:level + 1] == " ":
                if _normalise(line[level:]) not in quotes:
                    missing.append(f"{name}: {line}")
    assert not missing, "seed headings without a row:\n" + "\n".join(missing)
    assert not invented, "quoted titles not in their seed:\n" + "\n".join(invented)
