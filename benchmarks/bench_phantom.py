"""Phantom generation speed: videos/s and frames/s, serial and parallel, everything written to disk.

Usage: python benchmarks/bench_phantom.py [--videos 24] [--size 112] [--workers N] [--style dynamic]
Counts the whole job (simulation, rendering, masks, MJPEG and npz writing, tables), from an empty folder.
The serial run also reports frames per CPU-second: on a busy machine, wall-clock rates understate what
free cores would do, while CPU time stays close to it.
Also prints where one clip's time goes (simulation stages, in one process).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from echodfkd.data.phantom import generate_phantom


def run(videos: int, size: int, workers: int, style: str, seed: int) -> tuple[float, float, int]:
    """Wall seconds and this process's CPU seconds to generate a fresh folder, and the frames written."""
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        root = generate_phantom(Path(tmp) / "ph", videos, style=style, seed=seed, size=size, workers=workers)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        frames = sum(int(line.split(",")[7]) for line in (root / "FileList.csv").read_text().splitlines()[1:])
    return elapsed, cpu, frames


def stages(size: int, style: str, seed: int) -> dict[str, float]:
    """Seconds per stage for one clip, summed over a few clips, in this process."""
    from echodfkd.data.phantom import clip as C

    timings: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t
            return out
        return wrapper

    originals = {n: getattr(C, n) for n in ("build_heart", "fill_polygons", "draw_scene", "Scanner")}
    C.build_heart = timed("geometry", originals["build_heart"])
    C.fill_polygons = timed("masks", originals["fill_polygons"])
    C.draw_scene = timed("scene", originals["draw_scene"])
    scanner_cls = originals["Scanner"]

    class TimedScanner(scanner_cls):
        speckle = timed("speckle", scanner_cls.speckle)
        render = timed("render", scanner_cls.render)

    C.Scanner = timed("scanner setup", TimedScanner)
    try:
        n = 0
        start = time.perf_counter()
        for i in range(4):
            n += C.make_clip(seed, i, style, size).frames.shape[0]
        timings["total make_clip"] = time.perf_counter() - start
    finally:
        for name, fn in originals.items():
            setattr(C, name, fn)
    return {k: v / n * 1e6 for k, v in timings.items()}  # microseconds per frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--style", choices=["dynamic", "synthetic"], default="dynamic")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("ECHODFKD_QUIET", "1")
    print(f"phantom {args.style}, {args.videos} videos at {args.size}x{args.size}, "
          f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}")
    run(2, args.size, 1, args.style, args.seed + 1)  # warm-up: imports, caches
    for label, workers in (("serial", 1), (f"parallel ({args.workers} workers)", args.workers)):
        elapsed, cpu, frames = run(args.videos, args.size, workers, args.style, args.seed)
        line = (f"{label:>24}: {args.videos / elapsed:7.2f} videos/s  {frames / elapsed:8.0f} frames/s  "
                f"({frames} frames in {elapsed:.2f} s wall)")
        if workers == 1:  # on a shared machine, CPU time tells what one free core would do
            line += f"; {frames / cpu:.0f} frames per CPU-second"
        print(line)
    per_frame = stages(args.size, args.style, args.seed)
    print("one process, microseconds per frame: " +
          ", ".join(f"{k} {v:.0f}" for k, v in sorted(per_frame.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
