"""Labelling throughput vs the teacher's bare forward pass, on the same frames.

Usage: python benchmarks/bench_label.py [--data DIR] [--clips 8] [--frames 64] [--batch-size 64]
       [--archs deeplabv3_resnet50,lraspp_mobilenet_v3_large] [--repeats 2] [--threads N] [--device cpu]

For each teacher architecture (randomly initialised: speed does not depend on the weights) it times
1. bare forward: the clips' frames already decoded in RAM, `teacher(batch)` under inference_mode, batch
   after batch, nothing else;
2. `label_dataset` on the same clips into a fresh folder: decoding, batching across clips, sigmoid and
   uint8 rounding, compressed atomic npz writes, meta.json.
It prints frames/s of both and their ratio (goal: labelling >= 0.90 x bare forward), per wall-clock
second and per CPU second of the process (all threads): on a shared, oversubscribed machine the CPU-time
figures are the stable ones. Runs alternate bare/label `--repeats` times and keep each one's best; the
load average is printed with the figures. Without --data a small phantom is generated in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def bare_forward_fps(teacher, frames: np.ndarray, batch_size: int) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second) of the teacher alone on frames already in memory."""
    x = torch.from_numpy(frames)
    with torch.inference_mode():
        teacher(x[:batch_size], chunk=batch_size)   # warm-up (oneDNN primitive creation)
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(x), batch_size):
            out = teacher(x[i:i + batch_size], chunk=batch_size)
        if out.device.type == "cuda":
            torch.cuda.synchronize()
        return len(x) / (time.perf_counter() - start), len(x) / (time.process_time() - cpu)


def label_fps(teacher, data: Path, names: list[str], batch_size: int, device: str) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second) of a full `label_dataset` run into a fresh folder."""
    from echodfkd.distill.label import label_dataset

    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        summary = label_dataset(data, teacher, out, names=names, splits="all", batch_size=batch_size,
                                device=device)
        # Both include meta.json, hashing the weights, decoding and every write (threads included).
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        assert summary.labelled == len(names) and not summary.failed, summary.as_dict()
        return summary.frames / seconds, summary.frames / cpu_seconds


def main() -> None:
    """Parse options, run the comparison, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="EchoNet-layout folder (default: a new phantom)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64, help="frames per phantom clip")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--archs", default="deeplabv3_resnet50,lraspp_mobilenet_v3_large")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("ECHODFKD_QUIET", "1")
    if args.threads:
        torch.set_num_threads(args.threads)

    from echodfkd.data import open_dataset
    from echodfkd.teacher.model import Teacher, build_segmenter

    tmp = tempfile.TemporaryDirectory()
    data = args.data
    if data is None:
        from echodfkd.data.phantom.generate import generate_phantom

        data = generate_phantom(Path(tmp.name) / "phantom", args.clips, frames=args.frames, seed=0)
    ds = open_dataset(data)
    names = ds.names()[:args.clips]
    frames = np.concatenate([ds.video(n)[0] for n in names])
    print(f"{len(names)} clips, {len(frames)} frames of {frames.shape[1]}x{frames.shape[2]}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, device {args.device}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'teacher':<30} {'bare fps':>9} {'label fps':>10} {'ratio':>6}   "
          f"{'bare f/cpu-s':>12} {'label f/cpu-s':>13} {'ratio':>6}")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        teacher = Teacher(build_segmenter(arch), arch=arch).to(args.device).eval()
        bare, label = (0.0, 0.0), (0.0, 0.0)
        for _ in range(max(1, args.repeats)):
            bare = tuple(map(max, bare, bare_forward_fps(teacher, frames, args.batch_size)))
            label = tuple(map(max, label, label_fps(teacher, Path(data), names, args.batch_size, args.device)))
        print(f"{arch:<30} {bare[0]:>9.1f} {label[0]:>10.1f} {label[0] / bare[0]:>6.2f}   "
              f"{bare[1]:>12.1f} {label[1]:>13.1f} {label[1] / bare[1]:>6.2f}", flush=True)
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
