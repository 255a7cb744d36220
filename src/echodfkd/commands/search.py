"""`echodfkd search`: Optuna hyper-parameter search over the paper's training choices, with pruning."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from echodfkd.commands import _flags
from echodfkd.commands.distill import add_training_arguments, training_kwargs
from echodfkd.distill.config import defaults

_D = defaults("blocks", "layers")  # DistillConfig is their one home

NAME = "search"
HELP = "Optuna search (init, widths, loss, batch, window, lr schedule, skip/residual) stored in OUT/study.db"

#: The searched parameters, their choices and the distill flag each stands for. --help must stay light
#: (no torch), so this is echodfkd.distill.search.SEARCH_SPACE spelt out; a test keeps the two equal.
SEARCHED = {
    "init": ("--init", ["default", "xavier", "kaiming", "orthogonal"]),
    "filters": ("--filters", [8, 12, 16]),
    "loss": ("--dice-weight", ["bce", "bce+dice"]),
    "batch_size": ("--batch-size", [8, 16, 32]),
    "seq_len": ("--seq-len", [15, 25, 35]),
    "lr_schedule": ("--lr-schedule", ["none", "cosine", "step"]),
    "skip": ("--skip", [False, True]),
    "residual": ("--residual", [False, True]),
}


def _choices(values: list) -> str:
    return "/".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


DESCRIPTION = (
    "Run an Optuna study (TPE sampler, MedianPruner fed with the val BCE each epoch) over the paper's search "
    "space. Searched (so not settable here): "
    + "; ".join(f"{name} {_choices(values)}" for name, (_, values) in SEARCHED.items())
    + " (loss bce+dice = BCE + 1.0 x soft Dice). Every other distill setting is fixed by the flags below. The "
    "study is stored in OUT/study.db and resumes: rerunning continues until --trials trials are complete or "
    "pruned, and interrupted trials are retried from their last checkpoint. Several processes may share one "
    "study. Results: OUT/trials.csv, OUT/best.json (the best trial's value, searched params and every "
    "setting), OUT/trials/trial_NNNN/. Train the winner again with `echodfkd distill --config OUT/best.json "
    "--data ... --targets ... --out RUN` (flags given there win over the file).")


class _Searched(argparse.Action):
    """A distill flag whose value the search chooses: refused with the choices it searches."""

    def __init__(self, *args, name: str = "", values: list | None = None, **kwargs) -> None:
        self.name, self.values = name, values or []
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(f"{option_string} is searched ({self.name}: {_choices(self.values)}), so it cannot be "
                     f"fixed here; train one setting with `echodfkd distill`")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd search`."""
    _flags.add_out(p, "search", note="study.db, trials/, best.json")
    p.add_argument("--trials", type=_flags.positive_int, default=20,
                   help="complete + pruned trials the study should reach")
    p.add_argument("--study-name", default="echodfkd")
    p.add_argument("--blocks", type=_flags.positive_int, default=_D["blocks"], help="B of every trial's student")
    p.add_argument("--layers", type=_flags.positive_int, default=_D["layers"], help="l of every trial's student")
    p.add_argument("--startup-trials", type=_flags.nonnegative_int, default=5,
                   help="trials before the pruner may prune")
    p.add_argument("--warmup-epochs", type=_flags.nonnegative_int, default=3, help="epochs before a trial may be pruned")
    _flags.add_json(p, help="print the result (best.json) as JSON")
    add_training_arguments(p, architecture=False)
    group = p.add_argument_group("searched (chosen by each trial, refused as flags)")
    for name, (flag, values) in SEARCHED.items():
        bare = isinstance(values[0], bool)  # --skip/--residual take no value
        group.add_argument(flag, *([f"--no-{flag[2:]}"] if bare else []), dest=f"_searched_{name}",
                       action=_Searched, nargs=0 if bare else None, name=name, values=values,
                       default=argparse.SUPPRESS, metavar=None if bare else "V",
                           help=f"searched: {name} {_choices(values)}")


def run(args: argparse.Namespace) -> int:
    """Run the study and print the best trial."""
    from echodfkd.distill.search import search
    from echodfkd.errors import EchoDFKDError

    if not Path(args.data).is_dir():  # before Optuna opens (or creates) the study
        raise EchoDFKDError(f"{args.data}: dataset folder not found")
    if not Path(args.targets).is_dir():
        raise EchoDFKDError(f"{args.targets}: targets folder not found")
    _flags.check_size(getattr(args, "frame_size", None), args.blocks, "--frame-size")
    _flags.check_writable_dir(args.out)
    kw = training_kwargs(args, architecture=False)
    result = search(args.data, args.targets, args.out, trials=args.trials, study_name=args.study_name,
                    startup_trials=args.startup_trials, warmup_epochs=args.warmup_epochs,
                    blocks=args.blocks, layers=args.layers, **kw)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    best = result.get("best")
    if not best:
        print(f"{result['trials']} trial(s), none complete yet; rerun to continue ({args.out}/best.json)")
        return 0
    params = ", ".join(f"{k} {v}" for k, v in best["params"].items())
    print(f"{result['trials']} trials ({result['complete']} complete, {result['pruned']} pruned); best: trial "
          f"{best['number']}, val BCE {best['value']:.4f} ({params}) -> {args.out}/best.json")
    return 0
