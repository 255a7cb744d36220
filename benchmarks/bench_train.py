"""Training throughput (frames/s) of the distillation step for a (B,l) student at several frame sizes.

Usage: python benchmarks/bench_train.py [--sizes 112,56] [--blocks 4 --layers 1] [--batch-size 8]
       [--seq-len 25] [--steps 3] [--threads N] [--accelerator cpu]

It runs the real training stack (DistillModule under a Lightning Trainer: forward, soft-target BCE,
backward, Adam) on in-memory uint8 windows, times each optimisation step after one warm-up step, and
prints frames/s = batch * seq_len / median step time, side by side for every size, plus frames per
CPU-second of this process (less sensitive to other jobs on a shared machine; the load is printed too).
Data loading is excluded (clips are cached in RAM during real training too).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import warnings

import torch


def measure(size: int, args: argparse.Namespace) -> dict:
    """Median seconds per training step and frames/s for one frame size."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from echodfkd.distill.module import DistillModule

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu: list[float] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            if module.device.type == "cuda":
                torch.cuda.synchronize()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            if module.device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t0)
            self.cpu.append(time.process_time() - self.c0)

    steps = args.steps + 1  # the first step is warm-up
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * steps
    frames = torch.randint(0, 256, (n, args.seq_len, 1, size, size), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, 256, (n, args.seq_len, 1, size, size), dtype=torch.uint8, generator=g)
    loader = DataLoader(TensorDataset(frames, targets), batch_size=args.batch_size)
    module = DistillModule(dict(blocks=args.blocks, layers=args.layers))
    timer = StepTimer()
    accelerator = args.accelerator
    precision = "bf16-mixed" if accelerator in ("cuda", "gpu") and torch.cuda.is_bf16_supported() else "32-true"
    trainer = pl.Trainer(max_epochs=1, accelerator=accelerator, devices=1, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer], num_sanity_val_steps=0)
    trainer.fit(module, loader)
    step = statistics.median(timer.times[1:])
    return {"size": size, "step_s": step, "cpu_s": statistics.median(timer.cpu[1:]),
            "frames_per_s": args.batch_size * args.seq_len / step, "precision": precision}


def main() -> None:
    """Print frames/s for each frame size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="112,56")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=25)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per size (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--accelerator", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import lightning.pytorch  # noqa: F401  (it sets its log level on import; quieten it afterwards)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    rows = [measure(int(s), args) for s in args.sizes.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"student ({args.blocks},{args.layers}), batch {args.batch_size} x {args.seq_len} frames, "
          f"{args.accelerator}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"{'size':>6} {'s/step':>8} {'cpu s/step':>10} {'frames/s':>9} {'frames/cpu-s':>12}  precision")
    for r in rows:
        per_cpu = args.batch_size * args.seq_len / r["cpu_s"]
        print(f"{r['size']:>4}^2 {r['step_s']:>8.2f} {r['cpu_s']:>10.2f} {r['frames_per_s']:>9.1f} "
              f"{per_cpu:>12.1f}  {r['precision']}")
    if len(rows) > 1:
        print(f"speed-up {rows[-1]['size']}^2 vs {rows[0]['size']}^2: "
              f"{rows[-1]['frames_per_s'] / rows[0]['frames_per_s']:.2f}x")


if __name__ == "__main__":
    main()
