"""`echodfkd sweep`: train the (B,l) grid of students for the scaling-law study (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from echodfkd.commands import _flags
from echodfkd.commands.distill import add_training_arguments, training_kwargs
from echodfkd.launch import shard_arg
from echodfkd.errors import EchoDFKDError

NAME = "sweep"
HELP = "train a (B,l) grid of students into SWEEP/b{B}_l{l}/ (finished runs are skipped)"
DESCRIPTION = (
    "Train one student per (B,l) of the grid with the same settings as `echodfkd distill`. Each run lives in "
    "SWEEP/b{B}_l{l}/; finished runs (model.safetensors + calibrated config.json) are skipped and unfinished "
    "ones resume from their last checkpoint, so a rerun continues the sweep. SWEEP/summary.csv lists the "
    "finished runs. --shard i/n lets n processes share the grid. `echodfkd report SWEEP` needs each run "
    "evaluated (RUN/evaluation/metrics.json): --evaluate does it after each run's training (predict "
    "--eval-split into RUN/predictions, evaluate into RUN/evaluation, against the teacher too when --targets "
    "holds that split); without it, run `echodfkd predict` and `echodfkd evaluate --out RUN/evaluation` per "
    "run. A rerun with --evaluate also evaluates runs trained before and skips those already evaluated.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd sweep`."""
    _flags.add_out(p, "sweep")
    p.add_argument("--blocks", default="1-4", help="B values: a range (1-4) or a comma list")
    p.add_argument("--layers", default="1-4", help="l values: a range (1-4) or a comma list")
    p.add_argument("--shard", type=shard_arg, default=(0, 1), help="i/n: train only every n-th grid point from i")
    add_training_arguments(p)
    g = p.add_argument_group("evaluation (what `echodfkd report SWEEP` needs)")
    g.add_argument("--evaluate", action="store_true",
                   help="after each run: predict --eval-split into RUN/predictions and evaluate it into "
                        "RUN/evaluation, so `echodfkd report SWEEP` works at once")
    g.add_argument("--eval-split", default="TEST", help="split predicted and evaluated by --evaluate")
    g.add_argument("--bootstrap", type=_flags.positive_int, default=10000, metavar="N",
                   help="bootstrap resamples of --evaluate's intervals")
    _flags.add_json(p, help="print the finished runs (summary.csv) as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the sweep (evaluating each run with --evaluate) and print its summary table."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from echodfkd.distill.sweep import parse_range, sweep

    for blocks in parse_range(args.blocks, "--blocks"):  # every grid point must stream at the sizes, before any trains
        _flags.check_size(getattr(args, "frame_size", None), blocks, "--frame-size")
        _flags.check_size(getattr(args, "infer_size", None), blocks, "--infer-size")
    _flags.check_writable_dir(args.out, keep=False)
    after = None
    if args.evaluate:
        from echodfkd.data import open_dataset

        if not open_dataset(args.data).names(args.eval_split):  # before any training
            raise EchoDFKDError(f"{args.data}: no clip in split {args.eval_split} for --evaluate")
        if rank_zero_only.rank == 0:  # DDP: one process evaluates
            device = "cuda" if _cuda(args.accelerator) else "cpu"
            after = lambda run: evaluate_run(run, args.data, args.targets, args.eval_split, device,  # noqa: E731
                                             args.bootstrap)
    with _flags.stdout_for_json(args):
        summary = sweep(args.data, args.targets, args.out, blocks=args.blocks, layers=args.layers,
                        shard=args.shard, after=after, **training_kwargs(args))
    if rank_zero_only.rank == 0 and args.json:
        import json

        print(json.dumps({"summary": f"{args.out}/summary.csv", "runs": summary.to_dict(orient="records")},
                         indent=2, default=str))
    elif rank_zero_only.rank == 0:
        print(summary.to_string(index=False) if len(summary) else "no finished run yet")
        print(f"summary: {args.out}/summary.csv")
        if args.evaluate:
            print(f"next: echodfkd report {args.out} --out REPORT")
    return 0


def _cuda(accelerator: str) -> bool:
    import torch

    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def evaluate_run(run: Path, data: str, targets: str | None, split: str = "TEST", device: str = "cpu",
                 n_boot: int = 10000) -> dict | None:
    """Predict `split` with the run's student into RUN/predictions and evaluate it into RUN/evaluation,
    as `reproduce` does; skipped (None) when RUN/evaluation is newer than the weights."""
    from echodfkd.data import open_dataset
    from echodfkd.report.evaluation import evaluate_predictions
    from echodfkd.models.student import WEIGHTS_NAME
    from echodfkd.stream import Predictor
    from echodfkd.stream.batch import find_clips, predict_to_folder

    run = Path(run)
    done = run / "evaluation" / "metrics.json"
    if done.is_file() and done.stat().st_mtime_ns >= (run / WEIGHTS_NAME).stat().st_mtime_ns:
        return None
    alerts: list[str] = []
    meta = predict_to_folder(Predictor(run, device=device), find_clips(data, split=split), run / "predictions",
                             echo=lambda msg: (alerts.append if msg.startswith("ALERT") else print)(msg))
    names = open_dataset(data).names(split)
    teacher = targets if targets and all((Path(targets) / f"{n}.npz").is_file() for n in names) else None
    metrics = evaluate_predictions(data, run / "predictions", split=split, teacher_dir=teacher,
                                   out=run / "evaluation", n_boot=n_boot, allow_missing=bool(meta.get("failed")))
    note = f", {len(alerts)} flagged by the unusual-input alert" if alerts else ""
    print(f"{run.name}: evaluated {metrics['n_clips']} {split} clips into {run / 'evaluation'}{note}")
    return metrics
