"""Time jit-compiled train steps: jaxlayers vs hand-written JAX vs PyTorch (CPU).

    python benchmarks/run.py                      # every workload, full run
    python benchmarks/run.py --only mlp           # one workload
    python benchmarks/run.py --quick              # a few rounds, no slow contenders (< 60 s)
    python benchmarks/run.py --variants           # also the hand-written baseline variants
    python benchmarks/run.py --aa --hlo           # + an A/A noise check, + HLO comparison
    python benchmarks/run.py --repeats 80 --json out.json

Method (benchmarks/README.md): each contender is set up and its first step (trace +
compile + one step; imports and set-up not included) is timed on its own; then all
contenders are warmed up and timed in interleaved rounds. In a round every contender
runs one untimed step and then `--block` timed steps, each blocked until all its outputs
are ready; the order of the contenders is shuffled every round (seeded), so load from
other processes falls on all of them alike and none always runs right after PyTorch
(whose OpenMP threads spin for a while after a step). `--aa` adds a second copy of the
hand-written baseline: its ratio to the first is the noise floor of the run. Reported:
the median and the minimum over all timed steps, the 10th-90th percentile spread, ratios
of medians to the hand-written JAX baseline and to PyTorch, and the paired per-round
ratio jaxlayers / baseline (median and interquartile range).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Workload, num_threads  # noqa: E402

# name -> module exposing WORKLOAD; add lenet, resnet, lstm, gru here.
WORKLOADS = {
    "mlp": "benchmarks.mlp",
    "lenet5": "benchmarks.cnn:LENET",
    "resblock": "benchmarks.cnn:RESBLOCK",
    "convstack": "benchmarks.cnn:CONVSTACK",
    "lstm": "benchmarks.rnn:LSTM",
    "gru": "benchmarks.rnn:GRU",
    "transformer": "benchmarks.transformer",
    "precision": "benchmarks.precision",
}

TARGET = 1.02      # jaxlayers / hand-written JAX: the goal (DESIGN.md §5)
TOLERANCE = 1.05   # the most that measurement noise can excuse


def load_workload(name: str) -> Workload:
    module, _, attr = WORKLOADS[name].partition(":")  # "module" or "module:ATTRIBUTE"
    return getattr(importlib.import_module(module), attr or "WORKLOAD")


def machine_info() -> dict:
    import jax
    import jaxlib

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "nproc": os.cpu_count(), "threads": num_threads(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "backend": jax.default_backend()}
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def _percentile(values, q):
    values = sorted(values)
    i = (len(values) - 1) * q
    lo, hi = int(i), min(int(i) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (i - lo)


def _normalise_hlo(text: str):
    """The optimised HLO's instructions with names, parameter numbers and metadata erased."""
    import collections
    import re

    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    text = re.sub(r"%[\w.\-]+", "%v", text)
    text = re.sub(r"\b[\w]+\.\d+:", "p:", text)
    text = re.sub(r"(parameter|parameter_number=|index=)\(?\d+\)?", r"\1N", text)
    keep = [ln.strip() for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith(("HloModule", "ENTRY", "FileNames",
                                                          "FunctionNames", "FileLocations",
                                                          "StackFrames"))
            and not re.match(r"\s*\d+ ", ln)]
    # the output tuple lists the same leaves in each pytree's own order: compare as a set
    keep = [("ROOT tuple " + " ".join(sorted(re.findall(r"[a-z]\d+\[[\d,]*\]", ln))))
            if ln.startswith("ROOT") and " tuple(" in ln else ln for ln in keep]
    return collections.Counter(keep)


def compare_hlo(steps: dict, names: list[str], log=print) -> dict:
    """Compile the named JAX contenders once more and compare their optimised HLO.

    Prints, per contender, the instruction count, XLA's flop and byte estimates and the
    histogram of opcodes, then whether the programs are the same up to names, parameter
    order and source metadata. Returns {name: optimised HLO text}.
    """
    import collections
    import re

    texts, counts = {}, {}
    for name in names:
        lower = getattr(steps.get(name), "lower", None)
        if lower is None:
            continue
        compiled = lower().compile()
        texts[name] = compiled.as_text()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
        ops = collections.Counter(re.findall(r"= \S+ ([a-z][\w-]*)\(", texts[name]))
        counts[name] = _normalise_hlo(texts[name])
        log(f"  {name}: {sum(ops.values())} instructions, flops {cost.get('flops', 0):.4g}, "
            f"bytes accessed {cost.get('bytes accessed', 0):.4g}")
        log("    " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    if len(counts) == 2:
        a, b = counts.values()
        if a == b:
            log(f"  {' and '.join(counts)}: the same optimised HLO up to names, the order "
                f"of parameters and outputs, and metadata.")
        else:
            log(f"  {' and '.join(counts)}: the optimised HLO differs; "
                f"{sum((a - b).values())} instructions only in the first, "
                f"{sum((b - a).values())} only in the second:")
            for line in list((a - b).elements())[:15]:
                log(f"    - {line[:160]}")
            for line in list((b - a).elements())[:15]:
                log(f"    + {line[:160]}")
    return texts


def _timed_block(step, n: int) -> list[float]:
    step()  # untimed: lets the other runtime's spinning threads go idle, refills caches
    times = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return times


def bench_workload(workload: Workload, *, rounds: int, block: int, warmup: int,
                   variants: bool, skip_slow: bool, hlo: bool = False, aa: bool = False,
                   kinds=None, names=None, budget_s: float | None = None,
                   log=print) -> dict:
    """Set up, warm up and time every selected contender of `workload` in rounds.

    names: keep only these contenders (variants included), besides jaxlayers and the
    baseline."""
    keep = None if not names else set(names) | {"jaxlayers", workload.baseline}
    chosen = [c for c in workload.contenders
              if (variants or not c.variant or (keep and c.name in keep))
              and not (skip_slow and c.slow)
              and (kinds is None or c.kind in kinds) and (keep is None or c.name in keep)]
    base = [c for c in chosen if c.name == workload.baseline]
    if aa and base:
        chosen.append(dataclasses.replace(base[0], name=workload.baseline + " (A/A copy)",
                                          note="a second instance of the baseline"))
    steps, first_call, failed = {}, {}, {}
    for c in chosen:
        try:
            step = c.setup()  # imports, model, optimizer, data: not timed
            if hlo and c.name in ("jaxlayers", workload.baseline):
                steps[c.name] = step
            t0 = time.perf_counter()
            step()  # trace + compile + one step
            steps[c.name] = step
        except Exception as e:  # noqa: BLE001 - a missing optional backend skips a row
            steps.pop(c.name, None)
            failed[c.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            log(f"  {c.name}: skipped ({failed[c.name]})")
            continue
        first_call[c.name] = time.perf_counter() - t0
        log(f"  {c.name}: first step (trace + compile + run) {first_call[c.name]:.2f} s")

    if hlo:
        log("optimised HLO, jaxlayers against the baseline:")
        compare_hlo(steps, ["jaxlayers", workload.baseline], log=log)
    names = list(first_call)
    for name in names:
        for _ in range(warmup):
            steps[name]()

    per_step = {n: [] for n in names}
    per_round = {n: [] for n in names}
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    gc.collect()
    gc.disable()
    try:
        shuffler = random.Random(0)
        for r in range(rounds):
            if budget_s is not None and r > 0 and time.perf_counter() - t_start > budget_s:
                log(f"  time budget of {budget_s:g} s spent: stopped after {r} rounds")
                rounds = r
                break
            order = list(names)
            shuffler.shuffle(order)  # no contender always follows the same one
            for name in order:
                times = _timed_block(steps[name], block)
                per_step[name] += times
                per_round[name].append(statistics.median(times))
            gc.collect()
    finally:
        gc.enable()
    elapsed = time.perf_counter() - t_start
    load_after = os.getloadavg()

    rows = {}
    for name in names:
        t = per_step[name]
        rows[name] = {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t),
                      "p10_ms": 1e3 * _percentile(t, 0.1), "p90_ms": 1e3 * _percentile(t, 0.9),
                      "first_call_s": first_call[name], "steps": len(t)}
    for ref_key, ref in (("vs_baseline", workload.baseline), ("vs_reference", workload.reference),
                         ("vs_compiled", workload.compiled)):
        for name in names:
            rows[name][ref_key] = (rows[name]["median_ms"] / rows[ref]["median_ms"]
                                   if ref in rows else None)

    def paired_ratio(a, b):
        if a not in per_round or b not in per_round:
            return None
        ratios = [x / y for x, y in zip(per_round[a], per_round[b])]
        boot = random.Random(1)
        medians = sorted(statistics.median(boot.choices(ratios, k=len(ratios)))
                         for _ in range(1000))
        return {"median": statistics.median(ratios), "q25": _percentile(ratios, 0.25),
                "q75": _percentile(ratios, 0.75), "ci95": (_percentile(medians, 0.025),
                                                           _percentile(medians, 0.975))}

    paired = paired_ratio("jaxlayers", workload.baseline)
    paired_aa = paired_ratio(workload.baseline + " (A/A copy)", workload.baseline)
    return {"workload": workload.name, "title": workload.title, "rows": rows,
            "notes": {c.name: c.note for c in chosen}, "failed": failed,
            "baseline": workload.baseline, "reference": workload.reference,
            "compiled": workload.compiled if workload.compiled in rows else None,
            "paired_jaxlayers_vs_baseline": paired, "paired_aa": paired_aa,
            "rounds": rounds, "block": block, "load_before": load_before,
            "load_after": load_after, "timing_s": elapsed,
            "block_medians_ms": {n: [1e3 * t for t in v] for n, v in per_round.items()}}


def verdict(result: dict) -> str:
    paired = result["paired_jaxlayers_vs_baseline"]
    if paired is None:
        return "no verdict (jaxlayers or the baseline did not run)"
    r = paired["median"]
    lo, hi = paired["ci95"]
    if hi - lo > 2 * (TOLERANCE - 1):
        word = "inconclusive: the 95% interval is wider than +-5%; rerun when the machine is idle"
    elif r <= TARGET:
        word = f"meets the target (<= {TARGET:.2f})"
    elif r <= TOLERANCE:
        word = f"within the noise allowance (<= {TOLERANCE:.2f}), above the {TARGET:.2f} target"
    else:
        word = f"SLOWER than the {TOLERANCE:.2f} allowance"
    text = (f"jaxlayers / hand-written JAX, paired per round: {r:.3f} "
            f"(95% CI {lo:.3f}-{hi:.3f}, IQR {paired['q25']:.3f}-{paired['q75']:.3f}) "
            f"-> {word}")
    aa = result.get("paired_aa")
    if aa is not None:
        text += (f"\nnoise floor, baseline copy / baseline, paired per round: {aa['median']:.3f} "
                 f"(95% CI {aa['ci95'][0]:.3f}-{aa['ci95'][1]:.3f}, "
                 f"IQR {aa['q25']:.3f}-{aa['q75']:.3f})")
    return text


def format_table(result: dict) -> str:
    refs = [("vs_baseline", result["baseline"]), ("vs_reference", result["reference"])]
    if result.get("compiled"):  # the torch.compile column, when that contender ran
        refs.append(("vs_compiled", result["compiled"]))
    head = ("contender", "first call s", "median ms", "min ms", "p10-p90 ms",
            *(f"/ {name}" for _, name in refs))
    lines = [head]
    for name, r in result["rows"].items():
        lines.append((name, f"{r['first_call_s']:.2f}", f"{r['median_ms']:.3f}",
                      f"{r['min_ms']:.3f}", f"{r['p10_ms']:.3f}-{r['p90_ms']:.3f}",
                      *("-" if r.get(key) is None else f"{r[key]:.3f}" for key, _ in refs)))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = []
    for k, row in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))))
        if k == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(WORKLOADS), action="append",
                        help="run only this workload (repeatable)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved rounds (default 200, --quick 8)")
    parser.add_argument("--block", type=int, default=None,
                        help="timed steps per contender per round (default 10, --quick 5)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps per contender after compiling (default 50)")
    parser.add_argument("--quick", action="store_true",
                        help="few rounds, skip slow contenders (torch.compile)")
    parser.add_argument("--skip-slow", action="store_true", help="skip torch.compile")
    parser.add_argument("--variants", action="store_true",
                        help="also time every hand-written baseline variant")
    parser.add_argument("--kind", action="append", choices=("jaxlayers", "jax", "torch"),
                        help="time only contenders of this kind (repeatable)")
    parser.add_argument("--contender", action="append", metavar="NAME",
                        help="time only this contender (repeatable; variants allowed), "
                             "with jaxlayers and the baseline")
    parser.add_argument("--aa", action="store_true",
                        help="add a second copy of the baseline (an A/A noise check)")
    parser.add_argument("--hlo", action="store_true",
                        help="compare the optimised HLO of jaxlayers and the baseline")
    parser.add_argument("--budget", type=float, default=None,
                        help="stop timing after this many seconds, whatever the rounds "
                             "(default none, --quick 15)")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    rounds = args.repeats or (8 if args.quick else 200)
    block = args.block or (5 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 50)

    info = machine_info()
    print(f"machine: {info['cpu']}, nproc {info['nproc']} (threads used {info['threads']}); "
          f"python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']} "
          f"({info['backend']}), torch {info['torch']}")
    results = []
    for name in args.only or list(WORKLOADS):
        workload = load_workload(name)
        print(f"\n[{name}] {workload.title}")
        result = bench_workload(workload, rounds=rounds, block=block, warmup=warmup,
                                variants=args.variants, skip_slow=args.quick or args.skip_slow,
                                hlo=args.hlo, aa=args.aa, kinds=args.kind,
                                names=args.contender,
                                budget_s=args.budget or (15.0 if args.quick else None))
        result["machine"] = info
        print(f"\n{result['rounds']} rounds x {block} steps per contender, interleaved; "
              f"load average {result['load_before'][0]:.2f} before, "
              f"{result['load_after'][0]:.2f} after (1-min), "
              f"timing took {result['timing_s']:.1f} s")
        print(format_table(result))
        print(verdict(result))
        for cname, note in result["notes"].items():
            if cname in result["rows"] and note:
                print(f"  {cname}: {note}")
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
