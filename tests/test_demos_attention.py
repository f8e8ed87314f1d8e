"""The attention demos (reverse, seq2seq) with short settings, asserting their claims."""

import datetime
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_reverse_transformer_reaches_99_percent_exact_match_and_attends_the_mirror(tmp_path):
    from jaxlayers.demos import reverse

    start = time.perf_counter()
    r = reverse.run(out=str(tmp_path), progress=False, verbose=False)
    print(f"reverse: {time.perf_counter() - start:.1f} s, held-out exact match "
          f"{r['exact_match']:.4f}, anti-diagonal per layer {r['anti_diagonal']}")
    assert r["exact_match"] >= 0.99  # 1.000 measured (seed 0)
    assert r["history"]["loss"][-1] < 0.01 * r["history"]["loss"][0]
    # step t reads source position L - 1 - t in the last decoder layer (1.00 measured)
    assert r["anti_diagonal"][-1] >= 0.9
    w = r["example"]["weights"]
    assert w.shape == (2, 4, reverse.LENGTH, reverse.LENGTH)  # (layers, heads, T, S)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert r["example"]["output"] == r["example"]["source"][::-1]
    assert r["paths"] == (str(tmp_path / "reverse.png"),
                          str(tmp_path / "reverse_attention.png"))
    for path in r["paths"]:
        _check_png(path)


def test_reverse_data_and_held_out_split():
    from jaxlayers.demos import reverse

    src, tgt_in, tgt = reverse.make_data(300, seed=4)
    np.testing.assert_array_equal(tgt, src[:, ::-1])
    np.testing.assert_array_equal(tgt_in[:, 0], reverse.START)
    np.testing.assert_array_equal(tgt_in[:, 1:], tgt[:, :-1])  # shifted right
    assert src.min() >= 1 and src.max() <= 9
    te_src, _, _ = reverse.held_out(src, 200, seed=5)
    seen = {tuple(row) for row in src}
    assert len(te_src) == 200 and not any(tuple(row) in seen for row in te_src)


def test_seq2seq_dates_reach_99_percent_exact_match(tmp_path):
    from jaxlayers.demos import seq2seq

    start = time.perf_counter()
    r = seq2seq.run(epochs=5, n_test=500, out=str(tmp_path), progress=False, verbose=False)
    print(f"seq2seq: {time.perf_counter() - start:.1f} s, held-out exact match "
          f"{r['exact_match']:.4f}")
    assert r["exact_match"] >= 0.99  # 1.000 measured (seed 0)
    assert all(p == t for _, p, t in r["examples"])
    ex = r["example"]
    assert ex["text"].startswith("the ") and ex["source"] == seq2seq.tokenize(ex["text"])
    assert ex["weights"].shape == (seq2seq.TGT_LEN, len(ex["source"]))
    np.testing.assert_allclose(ex["weights"].sum(-1), 1.0, atol=1e-5)  # no weight on padding
    assert r["paths"] == (str(tmp_path / "seq2seq.png"),
                          str(tmp_path / "seq2seq_attention.png"))
    for path in r["paths"]:
        _check_png(path)


# An independent reading of the source texts: strptime for the formats with figures, an
# ordinal table written out here for the others.
_ORDINALS = {w: i + 1 for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth "
    "twenty-first twenty-second twenty-third twenty-fourth twenty-fifth twenty-sixth "
    "twenty-seventh twenty-eighth twenty-ninth thirtieth thirty-first".split())}


def _parse(text):
    for fmt in ("%B %d, %Y", "%d %b %Y"):
        try:
            return datetime.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    words = text.replace(",", "").split()
    if words[0] == "the":                               # the third of march 1987
        ordinal, month, year = words[1], words[3], words[4]
    else:                                               # march the third, 1987
        month, ordinal, year = words[0], words[2], words[3]
    month_number = datetime.datetime.strptime(month, "%B").month
    return datetime.date(int(year), month_number, _ORDINALS[ordinal])


def test_seq2seq_dates_generator_writes_correct_iso_dates():
    from jaxlayers.demos import seq2seq

    pairs = seq2seq.make_dates(2000, seed=7)
    formats = set()
    for text, iso in pairs:
        date = _parse(text)                             # a valid date, or datetime raises
        assert date.isoformat() == iso, (text, iso)
        assert seq2seq.FIRST_YEAR <= date.year <= seq2seq.LAST_YEAR
        formats.add(next(i for i, f in enumerate(seq2seq.FORMATS)
                         if seq2seq.render(date.year, date.month, date.day, i) == text))
    assert formats == set(range(len(seq2seq.FORMATS)))
    years = {date.year for date in map(_parse, (t for t, _ in pairs))}
    assert len(years) > 150                             # spread over the two centuries
    # every format, on dates chosen here (leap days, month ends, one-digit days)
    for y, m, d in [(2000, 2, 29), (1900, 2, 28), (1987, 3, 3), (2099, 12, 31),
                    (1964, 9, 23), (2024, 11, 1)]:
        for fmt in range(len(seq2seq.FORMATS)):
            text = seq2seq.render(y, m, d, fmt)
            assert _parse(text) == datetime.date(y, m, d), text
    assert seq2seq.render(1987, 3, 3, 0) == "the third of march 1987"
    assert seq2seq.render(1987, 3, 3, 1) == "march 3, 1987"
    assert seq2seq.render(1987, 3, 3, 2) == "3 mar 1987"
    # days_in_month against the calendar, including the century leap rule
    for y in (1900, 1996, 2000, 2023):
        for m in range(1, 13):
            last = (datetime.date(y + m // 12, m % 12 + 1, 1) - datetime.timedelta(days=1))
            assert seq2seq.days_in_month(y, m) == last.day


def test_seq2seq_encoding_and_held_out_split():
    from jaxlayers.demos import seq2seq

    src, tgt_in, tgt, texts = seq2seq.make_data(500, seed=8)
    assert src.shape == (500, seq2seq.SRC_LEN) and tgt.shape == (500, seq2seq.TGT_LEN)
    for row, text, target in zip(src, texts, seq2seq.decode_target(tgt)):
        tokens = seq2seq.tokenize(text)
        assert seq2seq.source_labels(row) == tokens
        assert np.all(row[len(tokens):] == 0) and np.all(row[:len(tokens)] != 0)
        assert target == _parse(text).isoformat()
    assert seq2seq.tokenize("march 3, 1987") == ["march", "3", ",", "1", "9", "8", "7"]
    np.testing.assert_array_equal(tgt_in[:, 0], seq2seq.START)
    np.testing.assert_array_equal(tgt_in[:, 1:], tgt[:, :-1])  # shifted right
    te_src, _, _, te_texts = seq2seq.held_out(src, 300, 9, seq2seq.make_data)
    assert len(te_texts) == 300 and not set(te_texts.tolist()) & set(texts.tolist())
    seen = {row.tobytes() for row in src}
    assert not any(row.tobytes() in seen for row in te_src)


@pytest.mark.parametrize("name", ["reverse", "seq2seq"])
def test_cli_dispatches_the_attention_demos(monkeypatch, tmp_path, name):
    import importlib

    from jaxlayers.__main__ import main

    module = importlib.import_module(f"jaxlayers.demos.{name}")
    seen = {}
    monkeypatch.setattr(module, "run", lambda **kw: seen.update(kw) or {})
    assert main(["demo", name, "--epochs", "3", "--no-progress", "--out", str(tmp_path)]) == 0
    assert seen == {"out": str(tmp_path), "seed": 0, "epochs": 3, "progress": False}
