"""`echodfkd search`: Optuna hyper-parameter search over the paper's training choices, with pruning."""

from __future__ import annotations

import argparse
import json

from echodfkd.commands.distill import add_training_arguments, training_kwargs

NAME = "search"
HELP = "Optuna search (init, widths, loss, batch, window, lr schedule, skip/residual) stored in OUT/study.db"
DESCRIPTION = (
    "Run an Optuna study (TPE sampler, MedianPruner fed with the val BCE each epoch) over the paper's search "
    "space: weight init, filters, loss (BCE or BCE+Dice), batch size, sequence length, lr schedule and "
    "skip/residual connections. The study is stored in OUT/study.db and resumes: rerunning continues until "
    "--trials trials are complete or pruned, and interrupted trials are retried from their last checkpoint. "
    "Several processes may share one study. Results: OUT/trials.csv, OUT/best.json, OUT/trials/trial_NNNN/.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd search`."""
    p.add_argument("--out", required=True, help="search folder (study.db, trials/, best.json)")
    p.add_argument("--trials", type=int, default=20, help="complete + pruned trials the study should reach")
    p.add_argument("--study-name", default="echodfkd")
    p.add_argument("--blocks", type=int, default=4, help="B of every trial's student")
    p.add_argument("--layers", type=int, default=1, help="l of every trial's student")
    p.add_argument("--startup-trials", type=int, default=5, help="trials before the pruner may prune")
    p.add_argument("--warmup-epochs", type=int, default=3, help="epochs before a trial may be pruned")
    add_training_arguments(p, architecture=False)


def run(args: argparse.Namespace) -> int:
    """Run the study and print the best trial."""
    from echodfkd.distill.search import search

    kw = training_kwargs(args, architecture=False)
    result = search(args.data, args.targets, args.out, trials=args.trials, study_name=args.study_name,
                    startup_trials=args.startup_trials, warmup_epochs=args.warmup_epochs,
                    blocks=args.blocks, layers=args.layers, **kw)
    print(json.dumps(result, indent=2))
    return 0
