"""Masks of the batched engines on real clips: every clip streamed at once vs each alone through fp32.

`python benchmarks/bench_streams_dice.py --model RUN [--precisions bf16,mixed] [--fixtures DIR]`

The real clips `bench` checks (`../shared/fixtures`: the 3 echonet_dev clips, the real 112 px A4C clip, the
582 px export framed by the sector conversion) stream together through one `MultiStream` of the compiled
engine at each precision (`run_streams`, what `predict FOLDER --streams N` runs: one batched step per frame,
each clip its own row), and alone through the single-stream fp32 predictor. It prints each precision's
per-clip Dice of binary masks (the run's Dice threshold) against fp32's, with and without the largest-region
step: what `predict --streams N` and `serve` give at that precision, against the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="student run")
    p.add_argument("--precisions", default="bf16,mixed")
    p.add_argument("--fixtures", default=str(FIXTURES))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    from echodfkd.measures.masks import dice
    from echodfkd.stream import Predictor
    from echodfkd.stream.bench import _check_sources
    from echodfkd.stream.folder_streams import run_streams

    if not (Path(args.fixtures) / "echonet_dev").is_dir():
        print(f"bench_streams_dice: no real clips in {args.fixtures}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    clips = _check_sources([str(Path(args.fixtures) / "echonet_dev"), args.fixtures])
    print(f"{args.model}: {len(clips)} real clips streamed together vs each alone through fp32")
    for largest in (False, True):
        ref = Predictor(args.model, largest_component=largest)
        cut = ref.thresholds["dice"] * 255
        want = [ref.predict_clip(frames, 50).masks >= cut for _, frames in clips]
        for precision in args.precisions.split(","):
            pred = Predictor(args.model, precision=precision, compile=True, largest_component=largest)
            got: list = [None] * len(clips)

            def one(i: int, stream: Predictor) -> Iterator[int]:
                got[i] = stream.predict_clip(clips[i][1], 50).masks >= cut
                yield 1

            for _ in run_streams(pred, range(len(clips)), one, len(clips)):  # as predict --streams N runs them
                pass
            d = [float(dice(g, w, reduction="mean")) for g, w in zip(got, want)]
            print(f"  {precision:6s} largest region {'on ' if largest else 'off'}: worst {min(d):.4f}, "
                  f"mean {np.mean(d):.4f}  (" + ", ".join(f"{n} {x:.4f}" for (n, _), x in zip(clips, d)) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
