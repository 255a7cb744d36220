"""`echodfkd teacher`: train a teacher on traced frames (`train`) or describe a checkpoint (`info`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from echodfkd.commands import _flags
from echodfkd.teacher.archs import ARCH_NAMES

NAME = "teacher"
HELP = "train a teacher segmenter on the traced frames (EchoNet recipe) or describe a teacher checkpoint"
DESCRIPTION = (
    "'teacher train DATA --teacher-arch A --out DIR' trains a torchvision segmenter with a 1-channel head on "
    "the two traced frames of every TRAIN clip (masks from VolumeTracings.csv), keeps the epoch with the best "
    "VAL Dice and saves it as DIR/teacher.pt in EchoNet's checkpoint format. 'teacher info DIR/teacher.pt' loads a checkpoint "
    "(EchoNet's or ours, weights_only) and prints its architecture, size and weights hash. A second, RV "
    "teacher (for `label --channel rv` and a 2-channel student): 'teacher train PHANTOM --channel rv' learns "
    "from the phantom's exact RV masks (GroundTruth/*.npz key 'rv') on TRAIN, selected on VAL's; "
    "'--channel rv --masks DIR' learns from your own RV masks in the targets format."
)
CHECKPOINT_NAME = "teacher.pt"
ARCH_CHOICES = list(ARCH_NAMES)  # the one registry: echodfkd.teacher.archs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands `train` and `info`."""
    sub = parser.add_subparsers(dest="teacher_command", metavar="{train,info}")
    sub.required = True
    fmt = parser.formatter_class  # the CLI's (no "(default: None)" noise)
    train = sub.add_parser("train", help="train a teacher on the traced frames of TRAIN", formatter_class=fmt)
    _flags.add_data(train, help="EchoNet-layout folder with VolumeTracings.csv (e.g. a phantom)", type=_flags.dir_path)
    _flags.add_teacher_arch(train, default="lraspp_mobilenet_v3_large", old="--arch",
                            help="segmenter (EchoNet's own teacher is deeplabv3_resnet50; the mobilenet ones train "
                                 "in minutes on a CPU)")
    _flags.add_out(train, "checkpoint", note=f"writes DIR/{CHECKPOINT_NAME}, EchoNet's format")
    train.add_argument("--epochs", type=_flags.positive_int, default=15)
    train.add_argument("--batch-size", type=_flags.positive_int, default=16)
    train.add_argument("--lr", type=_flags.positive_float, default=None,
                       help="learning rate; when omitted 1e-3 for adam, 1e-2 for sgd")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                       help="adam, or sgd with momentum 0.9 / weight decay 1e-5 like EchoNet")
    train.add_argument("--size", type=_flags.teacher_size, default=None,
                       help="resize frames to SIZE x SIZE; when omitted, frames are used as stored")
    train.add_argument("--augment", type=_flags.float_in(0.0, 2.0), default=1.0, metavar="STRENGTH",
                       help="echo augmentations (zoom/rotation/shift on frames and masks; gain, gamma, contrast, "
                            "depth ramp, blur, noise, speckle, sector edge, erasing on frames); 0 = off, up to 2")
    _flags.add_deprecated(train, "--no-augment", "--augment 0", "augment", flag=True, const=0.0)
    train.add_argument("--dense-truth", type=_flags.positive_int, default=None, metavar="K",
                       help="phantom folders only: train on every K-th frame of each TRAIN clip with the exact LV "
                            "masks (GroundTruth/) instead of the two traced frames; VAL stays on the traced frames")
    train.add_argument("--channel", choices=["lv", "rv"], default="lv",
                       help="lv: the traced LV frames; rv: a phantom's exact RV masks (every --dense-truth K-th "
                            "frame of TRAIN, default 4, validated on VAL's), the teacher of `label --channel rv`")
    train.add_argument("--masks", default=None, metavar="DIR",
                       help="learn from your own masks instead: a targets-format folder (<FileName>.npz with 'rv' "
                            "for --channel rv, 'masks' for lv; uint8 soft or bool, one mask per video frame), "
                            "every --dense-truth K-th frame (default 4) of the TRAIN clips that have a file, "
                            "selected on VAL's")
    train.add_argument("--seed", type=_flags.nonnegative_int, default=0)
    _flags.add_max_time(train, help="stop after the epoch crossing this budget (seconds or DD:HH:MM:SS)")
    _flags.add_deprecated(train, "--max-minutes", "--max-time", "max_time", type=_flags.positive_float,
                          convert=lambda minutes: _flags.duration(str(60 * minutes)), metavar="M")
    _flags.add_device(train)
    _flags.add_json(train)
    info = sub.add_parser("info", help="load a teacher checkpoint and print arch, parameters and weights hash",
                          formatter_class=fmt)
    info.add_argument("checkpoint", type=_flags.file_path,
                      help="teacher checkpoint (.pt EchoNet/ours, plain state dict, .safetensors)")
    _flags.add_teacher_arch(info, old="--arch")
    info.add_argument("--size", type=_flags.teacher_size, default=112, help="frame size for the GMAC figure")
    _flags.add_json(info)


def checkpoint_path(out: str) -> Path:
    """Where `teacher train --out` writes: OUT/teacher.pt; an old-style `--out FILE.pt` is kept one release."""
    path = Path(out)
    if path.suffix in (".pt", ".pth") and not path.is_dir():
        print(f"echodfkd teacher train: warning: --out FILE{path.suffix} is deprecated; use --out DIR "
              f"(writes DIR/{CHECKPOINT_NAME})", file=sys.stderr)
        return _flags.check_file_target(path, "--out")
    return _flags.check_writable_dir(path) / CHECKPOINT_NAME


def _train(args: argparse.Namespace) -> int:
    from echodfkd.distill.config import parse_duration
    from echodfkd.teacher.train import train_teacher

    out = checkpoint_path(args.out)  # before any work: training must not end in an unwritable place
    result = train_teacher(args.data, args.teacher_arch, out, epochs=args.epochs, batch_size=args.batch_size,
                           lr=args.lr, size=args.size, device=args.device, optimizer=args.optimizer,
                           augment=args.augment, seed=args.seed, truth_every=args.dense_truth,
                           channel=args.channel, masks_dir=args.masks,
                           max_seconds=(None if args.max_time is None
                                        else parse_duration(args.max_time).total_seconds()))
    if args.json:
        print(json.dumps({"out": str(result.path), "arch": result.arch, "channel": args.channel,
                          "best_epoch": result.best_epoch,
                          "best_val_dice": result.best_val_dice, "validated_on": result.validated_on,
                          "train_frames": result.train_frames, "val_frames": result.val_frames,
                          "seconds": round(result.seconds, 2), "history": result.history,
                          "skipped": [list(s) for s in result.skipped]}, indent=2))
        return 0
    for name, reason in result.skipped:
        print(f"skipped {name}: {reason}")
    what = "masked" if args.masks else "RV ground-truth" if args.channel == "rv" else "traced"
    print(f"{result.arch}: best {result.validated_on} {args.channel.upper()} Dice {result.best_val_dice:.4f} at "
          f"epoch {result.best_epoch} ({result.train_frames} train / {result.val_frames} val {what} frames, "
          f"{result.seconds:.0f} s) -> {result.path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from echodfkd.models.flops import count_gmac_per_frame
    from echodfkd.teacher.model import load_teacher, weights_hash

    teacher = load_teacher(args.checkpoint, arch=args.teacher_arch)
    row = {"checkpoint": args.checkpoint, "arch": teacher.arch, "params": teacher.num_parameters(),
           "gmac_per_frame": round(count_gmac_per_frame(teacher, args.size), 6), "size": args.size,
           "weights_hash": weights_hash(teacher), **teacher.normalisation}
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(f"{row['checkpoint']}: {row['arch']}, {row['params']:,} parameters, "
              f"{row['gmac_per_frame']:.3f} GMAC per {args.size}x{args.size} frame")
        print(f"  weights sha256 {row['weights_hash']}")
        print(f"  input mean {[round(v, 4) for v in row['mean']]} std {[round(v, 4) for v in row['std']]}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to `train` or `info`."""
    return _train(args) if args.teacher_command == "train" else _info(args)
