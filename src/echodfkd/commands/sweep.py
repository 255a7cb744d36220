"""`echodfkd sweep`: train the (B,l) grid of students for the scaling-law study (resumable)."""

from __future__ import annotations

import argparse

from echodfkd.commands.distill import add_training_arguments, training_kwargs

NAME = "sweep"
HELP = "train a (B,l) grid of students into SWEEP/b{B}_l{l}/ (finished runs are skipped)"
DESCRIPTION = (
    "Train one student per (B,l) of the grid with the same settings as `echodfkd distill`. Each run lives in "
    "SWEEP/b{B}_l{l}/; finished runs (model.safetensors + calibrated config.json) are skipped and unfinished "
    "ones resume from their last checkpoint, so a rerun continues the sweep. SWEEP/summary.csv lists the "
    "finished runs. --shard i/n lets n processes share the grid.")


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard {text!r}: use i/n, e.g. 0/2") from None
    return i, n


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd sweep`."""
    p.add_argument("--out", required=True, help="sweep folder")
    p.add_argument("--blocks", default="1-4", help="B values: a range (1-4) or a comma list")
    p.add_argument("--layers", default="1-4", help="l values: a range (1-4) or a comma list")
    p.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: train only every n-th grid point from i")
    add_training_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run the sweep and print its summary table."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from echodfkd.distill.search import sweep

    summary = sweep(args.data, args.targets, args.out, blocks=args.blocks, layers=args.layers, shard=args.shard,
                    **training_kwargs(args))
    if rank_zero_only.rank == 0:
        print(summary.to_string(index=False) if len(summary) else "no finished run yet")
        print(f"summary: {args.out}/summary.csv")
    return 0
