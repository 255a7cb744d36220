"""Distillation training speed, before and after, measured side by side in one run, plus loss curves.

Usage: python benchmarks/bench_train.py [--sizes 56,112] [--variants fp32,bf16+fused,bf16+fused+cl] [--steps 3]
       [--rounds 2] [--threads N] [--data DIR --targets DIR --curve-epochs 6] [--out DIR] [--accelerator cpu]

1. Step throughput: the real training step (DistillModule under a Lightning Trainer: augmentation,
   forward, soft-target BCE, backward, Adam) on in-memory uint8 windows, for each variant and frame size.
   The variants take turns (round-robin, `--rounds` times) so that other jobs on a shared machine slow
   them alike; each turn times `--steps` steps after one warm-up step. Printed: seconds per step (median),
   frames/s = batch * seq_len / step, and frames per CPU-second of this process (process_time: every
   thread; steadier than wall time when other jobs share the cores), with each variant's ratio to the
   first ("today": fp32 eager).
2. Loss curves (with --data/--targets, a labelled dataset such as the demo's): one fixed-seed `distill()`
   run per variant for --curve-epochs epochs (real pipeline: windows, augmentation, validation); prints
   each run's training frames/s and frames/CPU-s over its steps (the first, warm-up or compile, left out;
   validation between epochs not counted), the same over whole training epochs (window loading, the
   Lightning loop and logging included) with the CPU share spent outside the steps, and its best val loss,
   and writes the per-step
   train losses and per-epoch val losses of every variant overlaid in OUT/loss_curves.png.

Variants: fp32 (32-true, eager: before), bf16 (bf16-mixed autocast, fp32 loss), +fused (one autograd
function per ConvLSTM gate update, distill/fused.py), +cl (channels-last decoder and ConvLSTMs after the
first block, Student.use_channels_last), +cgates (the fused gate arithmetic torch.compile'd; its build
falls in the warm-up step, left out), +compile (torch.compile of the forward; its compile time is
printed apart and left out of the step times). distill's defaults on a CPU with native bf16: bf16+fused+cl.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}


def _parse_variant(name: str) -> dict[str, Any]:
    """'bf16+fused+cl+cgates+compile' -> precision, fused_gates, channels_last, compile_gates, compile."""
    parts = name.split("+")
    if parts[0] not in PRECISION or not set(parts[1:]) <= {"fused", "cl", "cgates", "compile"}:
        raise SystemExit(f"--variants: unknown variant {name!r} (fp32 or bf16, optionally +fused, +cl, +cgates, "
                         f"+compile)")
    if "cgates" in parts and "fused" not in parts:
        raise SystemExit(f"--variants: {name!r}: +cgates compiles the fused gate update, so it needs +fused")
    return {"precision": parts[0], "fused_gates": "fused" in parts, "channels_last": "cl" in parts,
            "compile_gates": "cgates" in parts, "compile": "compile" in parts}


class StepTimer:
    """A Lightning callback timing each training step in wall and CPU seconds (built lazily: pl import)."""

    def __new__(cls) -> Any:
        import lightning.pytorch as pl

        class _Timer(pl.Callback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self.cpu: list[float] = []
                self.losses: list[float] = []
                # whole training epochs, their validation left out: the steps plus loading and the loop
                self.epoch_wall: list[float] = []
                self.epoch_cpu: list[float] = []

            def on_train_epoch_start(self, trainer, module) -> None:
                self.e0, self.ec0, self.val_wall, self.val_cpu = time.perf_counter(), time.process_time(), 0.0, 0.0

            def on_validation_start(self, trainer, module) -> None:
                self.v0, self.vc0 = time.perf_counter(), time.process_time()

            def on_validation_end(self, trainer, module) -> None:
                if hasattr(self, "e0"):
                    self.val_wall += time.perf_counter() - self.v0
                    self.val_cpu += time.process_time() - self.vc0

            def on_train_epoch_end(self, trainer, module) -> None:
                self.epoch_wall.append(time.perf_counter() - self.e0 - self.val_wall)
                self.epoch_cpu.append(time.process_time() - self.ec0 - self.val_cpu)

            def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
                if module.device.type == "cuda":
                    torch.cuda.synchronize()
                self.t0, self.c0 = time.perf_counter(), time.process_time()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
                if module.device.type == "cuda":
                    torch.cuda.synchronize()
                self.times.append(time.perf_counter() - self.t0)
                self.cpu.append(time.process_time() - self.c0)
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                self.losses.append(float(loss.detach()))

        return _Timer()


def _trainer(accelerator: str, precision: str, callbacks: list[Any], max_steps: int) -> Any:
    import lightning.pytorch as pl

    return pl.Trainer(max_steps=max_steps, max_epochs=1, accelerator=accelerator, devices=1,
                      precision=PRECISION[precision], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                      num_sanity_val_steps=0)


def measure(size: int, variant: str, args: argparse.Namespace, module_cache: dict) -> dict[str, Any]:
    """One turn of a variant at one size: per-step wall and CPU seconds (after one warm-up step)."""
    from torch.utils.data import DataLoader, TensorDataset

    from echodfkd.distill.module import DistillModule

    spec = _parse_variant(variant)
    steps = args.steps + 1
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * steps
    frames = torch.randint(0, 256, (n, args.seq_len, 1, size, size), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, 256, (n, args.seq_len, 1, size, size), dtype=torch.uint8, generator=g)
    loader = DataLoader(TensorDataset(frames, targets), batch_size=args.batch_size)
    key = (size, variant)
    compile_s = None
    if key not in module_cache:  # a compiled module keeps its graphs from turn to turn
        torch.manual_seed(0)
        module_cache[key] = DistillModule(dict(blocks=args.blocks, layers=args.layers), augment=args.augment,
                                          compile=spec["compile"], fused_gates=spec["fused_gates"],
                                          channels_last=spec["channels_last"], compile_gates=spec["compile_gates"])
        if spec["compile"]:
            t0 = time.perf_counter()
            _trainer(args.accelerator, spec["precision"], [], 1).fit(module_cache[key], DataLoader(
                TensorDataset(frames[:args.batch_size], targets[:args.batch_size]), batch_size=args.batch_size))
            compile_s = time.perf_counter() - t0
    module = module_cache[key]
    timer = StepTimer()
    _trainer(args.accelerator, spec["precision"], [timer], steps).fit(module, loader)
    return {"size": size, "variant": variant, "times": timer.times[1:], "cpu": timer.cpu[1:],
            "compile_s": compile_s, "compiled": bool(getattr(module, "compiled", False))}


def throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Round-robin turns of every variant at every size; medians per (size, variant)."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    cache: dict = {}
    for r in range(args.rounds):
        for size in args.sizes:
            for variant in args.variants:
                m = measure(size, variant, args, cache)
                row = rows.setdefault((size, variant), {"size": size, "variant": variant, "times": [], "cpu": [],
                                                        "compile_s": None})
                row["times"] += m["times"]
                row["cpu"] += m["cpu"]
                row["compile_s"] = row["compile_s"] or m["compile_s"]
                row["compiled"] = m["compiled"]
                print(f"  round {r + 1}/{args.rounds} {size}^2 {variant:<18} "
                      f"{statistics.median(m['times']):.3f} s/step, {statistics.median(m['cpu']):.3f} cpu-s/step",
                      flush=True)
    frames = args.batch_size * args.seq_len
    out = []
    for row in rows.values():
        step, cpu = statistics.median(row["times"]), statistics.median(row["cpu"])
        out.append(dict(row, step_s=step, cpu_s=cpu, fps=frames / step, fps_cpu=frames / cpu))
    return out


def curves(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One fixed-seed distill() run per variant on --data/--targets; per-step train and per-epoch val losses."""
    import pandas as pd

    from echodfkd.distill.train import distill

    out = []
    root = Path(tempfile.mkdtemp(prefix="bench_train_runs."))
    for variant in args.variants:
        spec = _parse_variant(variant)
        timer = StepTimer()
        run = root / variant.replace("+", "_")
        t0, c0 = time.perf_counter(), time.process_time()
        distill(args.data, args.targets, run, blocks=args.blocks, layers=args.layers, epochs=args.curve_epochs,
                frame_size=args.curve_size, seq_len=args.seq_len, batch_size=args.batch_size, seed=0,
                patience=args.curve_epochs, precision=spec["precision"], compile=spec["compile"],
                fused_gates=spec["fused_gates"], channels_last=spec["channels_last"],
                compile_gates=spec["compile_gates"], augment=args.augment, callbacks=[timer])
        total_wall, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        val = []
        for path in sorted((run / "logs" / "csv").glob("version_*/metrics.csv")):
            table = pd.read_csv(path)
            val += table.dropna(subset=["val_loss"])["val_loss"].tolist()
        cfg = json.loads((run / "config.json").read_text())
        frames = (len(timer.times) - 1) * args.batch_size * args.seq_len  # the first step (warm-up, compile) left out
        # whole epochs (validation left out): every step plus window loading, the Lightning loop and logging
        epoch_frames = len(timer.times) * args.batch_size * args.seq_len
        out.append({"variant": variant, "losses": timer.losses, "val": val, "frames": frames,
                    "train_s": sum(timer.times[1:]), "train_cpu_s": sum(timer.cpu[1:]), "total_s": total_wall,
                    "epoch_frames": epoch_frames, "epoch_s": sum(timer.epoch_wall), "epoch_cpu_s": sum(timer.epoch_cpu),
                    "outside_steps_cpu": 1.0 - sum(timer.cpu) / max(sum(timer.epoch_cpu), 1e-9),
                    "total_cpu_s": total_cpu, "best_val_loss": cfg["training"]["best_val_loss"],
                    "precision": cfg["training"]["precision"]})
        print(f"  curve {variant:<18} {len(timer.losses)} steps, last train loss {timer.losses[-1]:.4f}, "
              f"val {' '.join(f'{v:.4f}' for v in val)}", flush=True)
    return out


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Per-step train loss (thin) and per-epoch val loss (markers) of every variant, overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        ax1.plot(range(1, len(row["losses"]) + 1), row["losses"], lw=1, label=row["variant"])
        ax2.plot(range(1, len(row["val"]) + 1), row["val"], marker="o", label=row["variant"])
    ax1.set(xlabel="training step", ylabel="train loss (BCE, augmented windows)", title="train loss per step")
    ax2.set(xlabel="epoch", ylabel="val loss (BCE)", title="val loss per epoch")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def main() -> None:
    """Print the side-by-side training throughput (and loss curves when a dataset is given)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="56,112")
    ap.add_argument("--variants", default="fp32,bf16+fused,bf16+fused+cl",
                    help="comma list; the first is the baseline of the ratios (fp32 = today: fp32 eager)")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=25)
    ap.add_argument("--augment", type=float, default=1.0, help="augmentation strength (distill's default 1)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per turn (after one warm-up step)")
    ap.add_argument("--rounds", type=int, default=2, help="round-robin turns of every variant")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--data", default=None, help="labelled dataset for the loss curves (e.g. the demo's synthetic)")
    ap.add_argument("--targets", default=None, help="its teacher targets")
    ap.add_argument("--curve-epochs", type=int, default=6)
    ap.add_argument("--curve-size", type=int, default=56)
    ap.add_argument("--out", default=None, help="folder for loss_curves.png and results.json (default: a temp dir)")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        _parse_variant(v)
    if args.accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
        raise SystemExit("--accelerator cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the CLI does for training
    import lightning.pytorch  # noqa: F401  (it sets its log level on import; quieten it afterwards)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("ECHODFKD_QUIET", "1")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_train."))
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"student ({args.blocks},{args.layers}), batch {args.batch_size} x {args.seq_len} frames, augment "
          f"{args.augment}, {args.accelerator}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load {load:.1f} at start", flush=True)
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "load_start": load}
    if not args.skip_throughput:
        rows = throughput(args)
        results["throughput"] = [{k: v for k, v in r.items() if k not in ("times", "cpu")} for r in rows]
        print(f"\n{'size':>6} {'variant':<18} {'s/step':>7} {'cpu-s/step':>10} {'frames/s':>9} {'frames/cpu-s':>12}"
              f" {'x fps':>6} {'x /cpu-s':>8}")
        for size in args.sizes:
            sized = [r for r in rows if r["size"] == size]
            base = sized[0]
            for r in sized:
                note = "" if r["compile_s"] is None else f"  (compile {r['compile_s']:.0f} s, left out)"
                if r["variant"].endswith("compile") and not r["compiled"]:
                    note += "  (compile failed: ran eager)"
                print(f"{size:>4}^2 {r['variant']:<18} {r['step_s']:>7.3f} {r['cpu_s']:>10.3f} {r['fps']:>9.1f} "
                      f"{r['fps_cpu']:>12.1f} {r['fps'] / base['fps']:>5.2f}x {r['fps_cpu'] / base['fps_cpu']:>7.2f}x"
                      f"{note}")
    if args.data and args.targets:
        print(f"\nloss curves: {args.curve_epochs} epochs at {args.curve_size}^2, seed 0, one run per variant",
              flush=True)
        runs = curves(args)
        results["curves"] = runs
        base = runs[0]
        print(f"\n{'variant':<18} {'steps':>5} {'frames/s':>9} {'frames/cpu-s':>12} {'x /cpu-s':>8} "
              f"{'epochs: frames/cpu-s':>20} {'x':>6} {'outside steps':>13} {'best val':>9}")
        for r in runs:
            per_cpu, base_cpu = r["frames"] / r["train_cpu_s"], base["frames"] / base["train_cpu_s"]
            ep_cpu, base_ep = r["epoch_frames"] / r["epoch_cpu_s"], base["epoch_frames"] / base["epoch_cpu_s"]
            print(f"{r['variant']:<18} {len(r['losses']):>5} {r['frames'] / r['train_s']:>9.1f} {per_cpu:>12.1f} "
                  f"{per_cpu / base_cpu:>7.2f}x {ep_cpu:>20.1f} {ep_cpu / base_ep:>5.2f}x "
                  f"{100 * r['outside_steps_cpu']:>12.1f}% {r['best_val_loss']:>9.4f}")
        print("(steps: the timed training steps, the first left out; epochs: whole training epochs with window "
              "loading, the loop and logging, validation left out; outside steps: their CPU share beyond the steps)")
        png = out / "loss_curves.png"
        plot(runs, png, f"student ({args.blocks},{args.layers}) at {args.curve_size}^2, batch {args.batch_size}, "
                        f"seed 0, {args.curve_epochs} epochs on {Path(args.data).name}")
        print(f"loss curves: {png}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results["load_end"] = load
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"load {load:.1f} at end; results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
