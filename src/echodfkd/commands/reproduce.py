"""`echodfkd reproduce`: the paper's chain over your EchoNet-Dynamic and EchoNet-Synthetic downloads."""

from __future__ import annotations

import argparse
import json
import sys

from echodfkd.commands import _flags
from echodfkd.distill.config import defaults

_D = defaults()  # distill settings: DistillConfig is their one home
NAME = "reproduce"
HELP = "reproduce the paper on your EchoNet downloads: check, label, distil, predict, evaluate, report"
DESCRIPTION = (
    "Chains the real steps with the paper's defaults: check both folders (OUT/check/*.csv) -> the teacher "
    "labels the training folder's TRAIN/VAL clips -> distil the (B,l) grid (or one config) -> predict the "
    "EchoNet-Dynamic TEST split with each student and label it with the teacher -> evaluate (Table 1, Table 2 "
    "on the full test set and the clean subset, DeepLabv3 find_peaks baseline, sampling rate, error "
    "concentration, scaling laws) -> EchoCLIP when given -> OUT/report.md + OUT/metrics.json. Every step is "
    "resumable and skipped when done (OUT/steps.json); rerun the same command after an interruption. "
    "--dry-run prints the plan (clips, frames, compute, estimated time and disk per step) and writes nothing. "
    "See docs/real-data.md."
)


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `echodfkd reproduce`."""
    p.add_argument("--dynamic", required=True, metavar="DIR", default=argparse.SUPPRESS, type=_flags.dir_path,
                   help="EchoNet-Dynamic folder (FileList.csv, VolumeTracings.csv, Videos/)")
    p.add_argument("--synthetic", required=True, metavar="DIR", default=argparse.SUPPRESS, type=_flags.dir_path,
                   help="the student's training folder: EchoNet-Synthetic (FileList.csv, Videos/)")
    _flags.add_teacher(p, required=True, help="teacher checkpoint, e.g. EchoNet's deeplabv3_resnet50_random.pt")
    _flags.add_teacher_arch(p)
    _flags.add_echoclip(p, help="also evaluate with EchoCLIP: hf-hub:mkaichristensen/echo-clip, local-dir:DIR or a "
                        "checkpoint file")
    p.add_argument("--echoclip-offline", action="store_true", help="never download EchoCLIP (cache or local only)")
    p.add_argument("--echoclip-models", choices=("all", "main"), default="all",
                   help="students EchoCLIP judges: all (Fig. 3's scores by model size) or only the main one")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--grid", default="1-4x1-4", metavar="BxL",
                      help="(B,l) students to distil: ranges or lists, e.g. 1-4x1-4 (the paper's scaling grid) or 4x1")
    grid.add_argument("--blocks", type=_flags.positive_int, default=None, metavar="B",
                      help="distil one configuration: B blocks ...")
    p.add_argument("--layers", type=_flags.positive_int, default=None, metavar="L",
                   help="... and L layers per block (with --blocks)")
    p.add_argument("--epochs", type=_flags.positive_int, default=_D["epochs"],
                   help=f"maximum epochs per student (early stopping, patience {_D['patience']})")
    p.add_argument("--frame-size", type=_flags.frame_size, default=56,
                   help="training frame size (the reference trained at 56)")
    p.add_argument("--infer-size", type=_flags.frame_size, default=None,
                   help="inference and calibration size; None: the EchoNet-Dynamic clips' own size (112)")
    p.add_argument("--seq-len", type=_flags.positive_int, default=_D["seq_len"], help="frames per training window")
    p.add_argument("--batch-size", type=_flags.positive_int, default=_D["batch_size"], help="training windows per batch")
    p.add_argument("--patience", type=_flags.positive_int, default=_D["patience"], help="early-stopping patience (epochs)")
    p.add_argument("--devices", type=_devices, default=1, help="devices per node for distillation (or 'auto')")
    p.add_argument("--num-nodes", type=_flags.positive_int, default=1,
                   help="nodes for distillation (start the command on every node with torchrun or srun)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy for distillation (ddp for several devices)")
    p.add_argument("--shard", default=None, metavar="i/N",
                   help="label only every N-th clip from i (0-based), then stop; run without it afterwards")
    p.add_argument("--synthetic-fps", type=_flags.positive_float, default=32.0,
                   help="true frame rate of the training clips (EchoNet-Synthetic's AVI headers say 30)")
    _flags.add_device(p, help="device for labelling, prediction and EchoCLIP: cpu, cuda, cuda:N, mps, auto (cpu "
                      "as everywhere; a note says so when a GPU is present)")
    p.add_argument("--label-batch", type=_flags.positive_int, default=64, help="frames per teacher forward pass")
    p.add_argument("--bootstrap", type=_flags.positive_int, default=10000, help="bootstrap resamples of every interval")
    p.add_argument("--compat", choices=("paper", "reference"), default="paper",
                   help="aFD block-distance rule (reference = the original code; see docs/afd.md)")
    p.add_argument("--overlays", type=_flags.nonnegative_int, default=3, metavar="K",
                   help="clips (best/median/worst aFD) drawn as overlay GIFs in each evaluation report")
    _flags.add_workers(p, default=None, help="check worker processes (default: the CPUs, at most 8)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    p.add_argument("--measure", action="store_true",
                   help="with --dry-run: time the work on this machine (its --device) instead of using our "
                        "reference figures")
    _flags.add_json(p, help="print the plan (--dry-run) or the run's metrics as JSON")
    _flags.add_out(p, "output", note="resumable")


def settings_from_args(args: argparse.Namespace):
    """Settings from parsed options (one-line errors for inconsistent ones)."""
    from echodfkd.errors import EchoDFKDError
    from echodfkd.reproduce import Settings, parse_grid, parse_shard

    if (args.blocks is None) != (args.layers is None):
        raise EchoDFKDError("--blocks and --layers go together (or use --grid)")
    grid = [(args.blocks, args.layers)] if args.blocks is not None else parse_grid(args.grid)
    if any(b < 1 or l < 1 for b, l in grid):
        raise EchoDFKDError("--blocks and --layers must be at least 1")
    for blocks in sorted({b for b, _ in grid}, reverse=True):  # the deepest student has the strictest rule
        _flags.check_size(args.frame_size, blocks, "--frame-size")
        _flags.check_size(args.infer_size, blocks, "--infer-size")
    return Settings(dynamic=args.dynamic, synthetic=args.synthetic, teacher=args.teacher, out=args.out,
                    teacher_arch=args.teacher_arch, echoclip=args.echoclip, echoclip_offline=args.echoclip_offline,
                    echoclip_models=args.echoclip_models,
                    grid=grid, epochs=args.epochs, frame_size=args.frame_size, infer_size=args.infer_size,
                    seq_len=args.seq_len, batch_size=args.batch_size, patience=args.patience,
                    devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
                    shard=parse_shard(args.shard), synthetic_fps=args.synthetic_fps, device=args.device,
                    label_batch=args.label_batch, bootstrap=args.bootstrap, compat=args.compat,
                    overlays=max(0, args.overlays), workers=args.workers)


def run(args: argparse.Namespace) -> int:
    """Dry run: print the plan. Otherwise run the chain and print where the report is."""
    from echodfkd.errors import EchoDFKDError
    from echodfkd.io.lock import output_lock
    from echodfkd.reproduce import plan, reproduce

    st = settings_from_args(args)
    if args.measure and not args.dry_run:
        raise EchoDFKDError("--measure goes with --dry-run")
    _flags.check_out_target(args.out)  # a dry run writes nothing, but the place must be one it could write
    _note_gpu(args.device)
    if args.dry_run:
        from echodfkd.reproduce import inspect_inputs
        from echodfkd.reproduce.inputs import check_echoclip, resolve_device

        inputs = inspect_inputs(st)
        check_echoclip(st, dry_run=True, notes=inputs.notes)
        throughput = None
        if args.measure:
            from echodfkd.reproduce.throughput import measure_throughputs

            throughput = measure_throughputs(
                resolve_device(st.device), grid=st.grid, train_size=st.frame_size, stream_size=inputs.infer_size,
                teacher_archs=(inputs.teacher.arch,), echoclip=bool(st.echoclip),
                echo=lambda m: print(m, file=sys.stderr, flush=True))
        p = plan(st, inputs, throughput)
        print(json.dumps(p.as_dict(), indent=2) if args.json else p.format())
        return 0
    _flags.check_writable_dir(st.out, keep=False)
    with output_lock(st.out), _flags.stdout_for_json(args):
        metrics = reproduce(st)
    if args.json:
        print(json.dumps(metrics, indent=2, default=str))
        return 0
    if "main_student" in metrics:
        print(f"report: {st.out / 'report.md'}  metrics: {st.out / 'metrics.json'}")
    return 0


def _note_gpu(device: str) -> None:
    """One note when the default cpu device leaves a GPU idle (the chain then takes days, not hours)."""
    if device != "cpu":
        return
    import torch

    if torch.cuda.is_available():
        print("echodfkd reproduce: note: a CUDA GPU is present but --device is cpu (the default everywhere); "
              "pass --device auto or cuda to label, predict and run EchoCLIP on it", file=sys.stderr)
