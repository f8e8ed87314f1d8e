"""The demos behind `python -m jaxlayers demo digits|xor`: accuracy, truth table, PNGs, CLI."""

import subprocess
import sys
import time

import pytest

from jaxlayers.__main__ import main

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_digits_demo_reaches_95_percent_and_saves_its_curves(tmp_path):
    from jaxlayers.demos import digits

    start = time.perf_counter()
    result = digits.run(out=str(tmp_path), progress=False, verbose=False)
    print(f"digits demo: {time.perf_counter() - start:.1f} s wall, "
          f"test accuracy {result['test_accuracy']:.4f}")
    assert result["test_accuracy"] >= 0.95
    assert len(result["history"]["val_accuracy"]) == 20
    assert result["path"] == str(tmp_path / "digits.png")
    _check_png(result["path"])


def test_xor_demo_learns_the_truth_table(tmp_path):
    from jaxlayers.demos import xor

    start = time.perf_counter()
    result = xor.run(out=str(tmp_path), verbose=False)
    print(f"xor demo: {time.perf_counter() - start:.1f} s wall, {result['steps']} steps")
    assert result["predictions"] == [0, 1, 1, 0]
    assert [(a, b) for a, b, _ in result["table"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(abs(p - t) < 0.1 for (_, _, p), t in zip(result["table"], [0, 1, 1, 0]))
    _check_png(result["path"])


def test_cli_demo_xor_prints_the_table_and_saves_the_plot(tmp_path):
    out = tmp_path / "plots"
    proc = subprocess.run([sys.executable, "-m", "jaxlayers", "demo", "xor", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "x1 x2 -> p(y=1)" in lines
    rows = [line.split() for line in lines if line.split()[:1] in (["0"], ["1"])]
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("0", "0", "(0)"), ("0", "1", "(1)"), ("1", "0", "(1)"), ("1", "1", "(0)")]
    assert f"saved {out / 'xor.png'}" in proc.stdout
    _check_png(out / "xor.png")


def test_cli_rejects_unknown_demos_and_bad_epochs(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "mnist"])
    assert exc.value.code == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "xor", "--epochs", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_digits_demo_resumes_from_its_checkpoints_to_the_uninterrupted_result(tmp_path):
    """`demo digits --checkpoint-dir D` then `--resume` with more epochs ends where one
    uninterrupted run of that many epochs ends (the same test accuracy and loss curve)."""
    from jaxlayers.demos import digits

    full = digits.run(epochs=3, batch_size=64, out=str(tmp_path / "full"), progress=False,
                      verbose=False)
    ckpt = tmp_path / "ckpt"
    assert main(["demo", "digits", "--epochs", "2", "--batch-size", "64", "--checkpoint-dir",
                 str(ckpt), "--no-progress", "--out", str(tmp_path / "a")]) == 0
    assert len(list(ckpt.glob("ckpt-*.safetensors"))) == 2
    resumed = digits.run(epochs=3, batch_size=64, checkpoint_dir=str(ckpt), resume=True,
                         out=str(tmp_path / "b"), progress=False, verbose=False)
    assert len(resumed["history"]["loss"]) == 1  # only the third epoch ran
    assert resumed["history"]["loss"] == full["history"]["loss"][2:]
    assert resumed["test_accuracy"] == full["test_accuracy"]


def test_cli_options_a_demo_lacks_are_errors_and_the_console_script_runs(capsys):
    with pytest.raises(SystemExit, match="demo xor has no --checkpoint-dir"):
        main(["demo", "xor", "--checkpoint-dir", "somewhere"])
    import pathlib
    script = pathlib.Path(sys.executable).parent / "jaxlayers"
    if not script.exists():
        pytest.skip("the jaxlayers console script is not installed (pip install -e .)")
    proc = subprocess.run([str(script), "demo", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: jaxlayers demo" in proc.stdout and "--batch-size" in proc.stdout
