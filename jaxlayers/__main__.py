"""The command line: `jaxlayers demo NAME [--epochs N] [--batch-size B] [--seed S] [--out DIR]`
(also `python -m jaxlayers ...`; digits adds `--checkpoint-dir DIR [--resume]`).

Each subcommand is added by an `_add_<name>(subparsers)` function that sets `run`, the
function called with the parsed arguments; a new subcommand (e.g. `bench`) is one more
such function listed in `_COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

from jaxlayers.demos import NAMES as DEMOS


def _run_demo(args) -> int:
    module = importlib.import_module(f"jaxlayers.demos.{args.name.replace('-', '_')}")
    params = inspect.signature(module.run).parameters
    anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepts = set(params) if not anything else _Everything()
    kwargs = {"out": args.out, "seed": args.seed}
    if args.epochs is not None:  # adding trains on fresh batches: its "epochs" are steps
        kwargs["steps" if args.name == "adding" else "epochs"] = args.epochs
    if "progress" in accepts:
        kwargs["progress"] = not args.no_progress
    for option, value in (("batch_size", args.batch_size),
                          ("checkpoint_dir", args.checkpoint_dir),
                          ("resume", args.resume or None)):
        if value is None:
            continue
        if option not in accepts:
            raise SystemExit(f"error: demo {args.name} has no --{option.replace('_', '-')}"
                             f" (demos with it: digits)")
        kwargs[option] = value
    module.run(**kwargs)
    return 0


class _Everything:
    def __contains__(self, name) -> bool:
        return True


def _add_demo(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="train a small model and save its plot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""demos (each saves its plots under --out):
  digits      an MLP on scikit-learn's bundled 8x8 digits (>= 95% test accuracy)
  xor         seed 003's 2-2-1 MLP trained until it solves XOR; prints the truth table
  digits-cnn  LeNet-5 on the digits resized to 32x32 (>= 97%); filters and feature maps
  transfer    LeNet-5 pre-trained on digits 0-4, adapted to 5-9 in the seed's three regimes
  adding      an LSTM on the adding problem (T = 100), MSE far below the 0.17 baseline
  sentiment   Embedding + Bidirectional LSTM on padded variable-length synthetic reviews
  charrnn     a character-level LSTM language model with truncated BPTT; samples text
  reverse     a small Transformer reverses digit sequences (100% exact match held out);
              its cross-attention heatmap
  seq2seq     LSTM encoder-decoder with additive attention: dates in words to ISO dates
              ("the third of march 1987" -> 1987-03-03); its attention heatmap
Needs the 'examples' extra: pip install 'jaxlayers[examples]'.""")
    p.add_argument("name", choices=DEMOS, help="which demo")
    p.add_argument("--epochs", type=_positive, default=None,
                   help="epochs (xor: full-batch steps per start; adding: training steps); "
                        "default: the demo's")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="samples per training step (default: the demo's)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="digits: save a checkpoint of the training state every epoch here")
    p.add_argument("--resume", action="store_true",
                   help="digits: continue from the newest checkpoint in --checkpoint-dir")
    p.add_argument("--out", default="outputs", help="folder for the PNG (default: outputs)")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="one line per epoch instead of a progress bar")
    p.set_defaults(run=_run_demo)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


_COMMANDS = (_add_demo,)


def main(argv=None) -> int:
    prog = "jaxlayers" if sys.argv[0].endswith("jaxlayers") else "python -m jaxlayers"
    parser = argparse.ArgumentParser(prog=prog,
                                     description="jaxlayers command line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ImportError as exc:  # an 'examples' dependency is missing
        parser.exit(1, f"error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
