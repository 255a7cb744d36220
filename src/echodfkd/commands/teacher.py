"""`echodfkd teacher`: train a teacher on traced frames (`train`) or describe a checkpoint (`info`)."""

from __future__ import annotations

import argparse
import sys
import json

NAME = "teacher"
HELP = "train a teacher segmenter on the traced frames (EchoNet recipe) or describe a teacher checkpoint"
DESCRIPTION = (
    "'teacher train DATA --arch A --out teacher.pt' trains a torchvision segmenter with a 1-channel head on "
    "the two traced frames of every TRAIN clip (masks from VolumeTracings.csv), keeps the epoch with the best "
    "VAL Dice and saves it in EchoNet's checkpoint format. 'teacher info teacher.pt' loads a checkpoint "
    "(EchoNet's or ours, weights_only) and prints its architecture, size and weights hash. A second, RV "
    "teacher (for `label --channel rv` and a 2-channel student): 'teacher train PHANTOM --channel rv' learns "
    "from the phantom's exact RV masks (GroundTruth/*.npz key 'rv') on TRAIN, selected on VAL's; "
    "'--channel rv --masks DIR' learns from your own RV masks in the targets format."
)
ARCH_CHOICES = ["deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "fcn_resnet50"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands `train` and `info`."""
    sub = parser.add_subparsers(dest="teacher_command", metavar="{train,info}")
    sub.required = True
    fmt = parser.formatter_class  # the CLI's (no "(default: None)" noise)
    train = sub.add_parser("train", help="train a teacher on the traced frames of TRAIN", formatter_class=fmt)
    train.add_argument("data", help="EchoNet-layout folder with VolumeTracings.csv (e.g. a phantom)")
    train.add_argument("--arch", default="lraspp_mobilenet_v3_large", choices=ARCH_CHOICES,
                       help="segmenter (EchoNet's own teacher is deeplabv3_resnet50; the mobilenet ones train "
                       "in minutes on a CPU)")
    train.add_argument("--out", required=True, help="checkpoint to write (EchoNet format, .pt)")
    train.add_argument("--epochs", type=int, default=15)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=None, help="learning rate; when omitted 1e-3 for adam, 1e-2 for sgd")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                       help="adam, or sgd with momentum 0.9 / weight decay 1e-5 like EchoNet")
    train.add_argument("--size", type=int, default=None, help="resize frames to SIZE x SIZE; when omitted, frames are used as stored")
    train.add_argument("--augment", type=float, default=1.0, metavar="STRENGTH",
                       help="echo augmentations (zoom/rotation/shift on frames and masks; gain, gamma, contrast, "
                            "depth ramp, blur, noise, speckle, sector edge, erasing on frames); 0 = off, up to 2")
    train.add_argument("--no-augment", action="store_true", help=argparse.SUPPRESS)  # old spelling of --augment 0
    train.add_argument("--dense-truth", type=int, default=None, metavar="K",
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
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch crossing this budget")
    train.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    info = sub.add_parser("info", help="load a teacher checkpoint and print arch, parameters and weights hash",
                          formatter_class=fmt)
    info.add_argument("checkpoint", help="teacher checkpoint (.pt EchoNet/ours, plain state dict, .safetensors)")
    info.add_argument("--arch", default=None, choices=ARCH_CHOICES,
                      help="architecture; when omitted, the one recorded in the checkpoint, else deeplabv3_resnet50")
    info.add_argument("--size", type=int, default=112, help="frame size for the GMAC figure")
    info.add_argument("--json", action="store_true", help="print JSON")


def _train(args: argparse.Namespace) -> int:
    from echodfkd.models.teacher_train import train_teacher

    augment = args.augment
    if args.no_augment:
        print("echodfkd teacher train: --no-augment is deprecated; use --augment 0", file=sys.stderr)
        augment = 0.0
    result = train_teacher(args.data, args.arch, args.out, epochs=args.epochs, batch_size=args.batch_size,
                           lr=args.lr, size=args.size, device=args.device, optimizer=args.optimizer,
                           augment=augment, seed=args.seed, truth_every=args.dense_truth, channel=args.channel,
                           masks_dir=args.masks,
                           max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
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
    from echodfkd.models.teacher import load_teacher, weights_hash

    teacher = load_teacher(args.checkpoint, arch=args.arch)
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
