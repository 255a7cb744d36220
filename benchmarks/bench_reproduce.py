"""Measure the throughputs `echodfkd reproduce --dry-run` estimates from, and print them as JSON.

Usage: python benchmarks/bench_reproduce.py [--device cpu] [--threads 1] [--grid 1-4x1-4]
       [--train-sizes 56,112] [--no-echoclip]

Times, with random weights (speed depends on shapes, not values): one check worker decoding and checking
a 112 px phantom clip; the DeepLabv3-ResNet50 teacher at 112 px; each (B,l) student's training step
(forward + soft-target BCE + backward + Adam) and batched forward at each training size, and its
streaming prediction at 112 px through the Predictor; the EchoCLIP-sized ConvNeXt-Base image tower at
224 px; and the bytes per frame of soft-mask and embedding files. Each figure is the best of 3 timed
runs after a warm-up, so on a shared machine it is the least-disturbed run. The printed JSON is what
`echodfkd.reproduce.throughput.REFERENCE` holds for our build machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from echodfkd.reproduce.throughput import key, measure_student, measure_throughputs


def merge(old: dict, new: dict) -> dict:
    """Per entry, the faster of two runs' throughputs (sizes and counts come from the new run)."""
    out = dict(new)
    for name, value in old.items():
        if name.endswith("_fps"):
            if isinstance(value, dict):
                out[name] = {k: max(v, new.get(name, {}).get(k) or 0.0) for k, v in value.items()}
                out[name].update({k: v for k, v in new.get(name, {}).items() if k not in value})
            elif value is not None:
                out[name] = max(value, new.get(name) or 0.0)
        elif name == "gmac":
            out[name] = {**value, **new.get(name, {})}
    return out


def main() -> None:
    """Measure and print."""
    from echodfkd.reproduce.inputs import parse_grid

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = per-core figures)")
    ap.add_argument("--grid", default="1-4x1-4", help="student configurations, e.g. 1-4x1-4 or 4x1")
    ap.add_argument("--train-sizes", default="56,112", help="training frame sizes to time")
    ap.add_argument("--no-echoclip", action="store_true", help="skip the ConvNeXt-Base image tower")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure (the best is kept)")
    ap.add_argument("--merge", default=None, metavar="JSON",
                    help="an earlier run's output: keep the faster figure of the two for each entry (on a shared "
                         "machine the least-disturbed run is the closest to the machine's real speed)")
    args = ap.parse_args()
    grid = parse_grid(args.grid)
    sizes = [int(s) for s in args.train_sizes.split(",")]
    start = time.perf_counter()
    tp = measure_throughputs(args.device, grid=grid, train_size=sizes[0], stream_size=112,
                             teacher_archs=("deeplabv3_resnet50", "lraspp_mobilenet_v3_large"),
                             echoclip=not args.no_echoclip, threads=args.threads, source="bench_reproduce.py",
                             repeats=args.repeats, echo=lambda m: print(m, file=sys.stderr, flush=True))
    for size in sizes[1:]:
        for b, l in grid:
            print(f"timing student ({b},{l}) at {size} px", file=sys.stderr, flush=True)
            speeds = measure_student(b, l, args.device, size, 112, batch=2 if args.device == "cpu" else 32,
                                     repeats=args.repeats)
            tp.train_fps[key(b, l, size)] = speeds["train"]
            tp.forward_fps[key(b, l, size)] = speeds["forward"]
    out = tp.as_dict()
    if args.merge:
        out = merge(json.loads(Path(args.merge).read_text()), out)
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(out, indent=1, sort_keys=False))


if __name__ == "__main__":
    main()
