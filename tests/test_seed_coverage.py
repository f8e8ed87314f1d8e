"""Every worked example of the seed catalogue (SEED_EXAMPLES.md) is cited by a test.

SEED_IDS is the project's own table of the catalogue's ids. A test cites an id by writing
it as the catalogue spells it ("003-Q13-e7") in its name's docstring or a comment; the
check reads the text of tests/test_*.py (this file excepted) and fails naming every id
that no test cites. When the catalogue itself is at hand (the project's shared folder,
or $JAXLAYERS_SEED_EXAMPLES), the table is checked against the ids parsed from it, so a
catalogue that gains or loses an example fails here until the table follows.
"""

import os
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

SEED_IDS = (
    # seed 000 (RU layer notes)
    "000-e1", "000-e2", "000-e3", "000-e4",
    # seed 002 (RU slides "DEEP LEARNING Layers")
    "002-e1", "002-e2", "002-e3", "002-e4",
    # seed 003 (RU exam guide, Q1-17)
    "003-Q1-e1", "003-Q1-e2", "003-Q1-e3", "003-Q1-e4",
    "003-Q2-e1", "003-Q2-e2",
    "003-Q3-e1", "003-Q3-e2", "003-Q3-e3",
    "003-Q4-e1", "003-Q5-e1",
    "003-Q6-e1", "003-Q6-e2", "003-Q6-e3",
    "003-Q7-e1", "003-Q8-e1", "003-Q8-e2",
    "003-Q9-e1", "003-Q9-e2", "003-Q9-e3",
    "003-Q10-e1", "003-Q11-e1", "003-Q11-e2", "003-Q12-e1",
    "003-Q13-e1", "003-Q13-e2", "003-Q13-e3", "003-Q13-e4", "003-Q13-e5", "003-Q13-e6",
    "003-Q13-e7", "003-Q13-e8", "003-Q13-e9", "003-Q13-e10", "003-Q13-e11", "003-Q13-e12",
    "003-Q14-e1", "003-Q14-e2", "003-Q14-e3", "003-Q14-e4", "003-Q14-e5",
    "003-Q15-e1", "003-Q15-e2", "003-Q15-e3", "003-Q15-e4",
    "003-Q16-e1", "003-Q16-e2", "003-Q16-e3", "003-Q16-e4",
    "003-Q17-e1", "003-Q17-e2",
    # seed 004 (UA slide deck, parts 01-03)
    "004-S1-e1", "004-S1-e2",
    "004-S2-e1", "004-S2-e2", "004-S2-e3", "004-S2-e4", "004-S2-e5", "004-S2-e6",
    "004-S2-e7", "004-S2-e8", "004-S2-e9",
    "004-S3-e1",
)

# An id in the first column of a catalogue table row: "| 003-Q13-e7 | ...".
_ROW = re.compile(r"^\|\s*(\d{3}(?:-[A-Z]\d+)?-e\d+)\s*\|", re.MULTILINE)


def cites(text: str, example_id: str) -> bool:
    """True when `text` names `example_id` as a whole id (003-Q13-e1 is not in 003-Q13-e10)."""
    return re.search(rf"(?<![\w-]){re.escape(example_id)}(?![\w-])", text) is not None


def catalogue_ids(text: str) -> list[str]:
    """The ids of the catalogue's table rows, in order."""
    return _ROW.findall(text)


def _catalogue() -> Path | None:
    name = "SEED_EXAMPLES.md"
    candidates = [os.environ.get("JAXLAYERS_SEED_EXAMPLES"), ROOT / "shared" / name,
                  ROOT.parent / "shared" / name]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def _test_texts() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(TESTS.glob("test_*.py"))
            if p.name != Path(__file__).name}


def test_the_matcher_takes_whole_ids_only():
    assert cites("docstring: 003-Q13-e1 and more", "003-Q13-e1")
    assert cites("# 004-S2-e5\n", "004-S2-e5")
    assert not cites("003-Q13-e10", "003-Q13-e1")
    assert not cites("1003-Q13-e1", "003-Q13-e1")
    assert not cites("test_003_q13_e1", "003-Q13-e1")  # the name form is not a citation
    assert catalogue_ids("| id | where |\n|---|\n| 000-e1 | x |\n| 003-Q1-e2 | y |\n"
                         "text 002-e3 |\n| 004-S2-e9 | z |") == ["000-e1", "003-Q1-e2",
                                                                 "004-S2-e9"]


def test_the_table_has_71_distinct_ids():
    assert len(SEED_IDS) == len(set(SEED_IDS)) == 71
    assert all(catalogue_ids(f"| {i} |") == [i] for i in SEED_IDS)


def test_every_catalogued_example_is_cited_by_a_test():
    texts = _test_texts()
    assert "test_seed_examples.py" in texts
    missing = [i for i in SEED_IDS if not any(cites(t, i) for t in texts.values())]
    assert not missing, (f"{len(missing)} seed examples cited by no test under tests/: "
                         f"{', '.join(missing)}")


def test_the_table_matches_the_catalogue():
    path = _catalogue()
    if path is None:
        pytest.skip("SEED_EXAMPLES.md not found (set JAXLAYERS_SEED_EXAMPLES to its path)")
    ids = catalogue_ids(path.read_text(encoding="utf-8"))
    assert len(ids) == len(set(ids)), "an id appears twice in the catalogue"
    assert sorted(ids) == sorted(SEED_IDS), (
        f"catalogue only: {sorted(set(ids) - set(SEED_IDS))}; "
        f"table only: {sorted(set(SEED_IDS) - set(ids))}")
