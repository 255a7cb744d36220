"""`echodfkd info`: parameters and GMAC per frame of a student (B, l), the whole grid, or a teacher."""

from __future__ import annotations

import argparse
import json

from echodfkd.commands import _flags

NAME = "info"
HELP = "parameters and GMAC per frame of a student (B,l), the 1..4 x 1..4 grid, or a teacher architecture"
DESCRIPTION = (
    "Print a model's size and compute cost. GMAC per frame is measured with "
    "torch.utils.flop_counter.FlopCounterMode on one streaming step (student) or one forward pass "
    "(teacher) at SIZE x SIZE; MAC = FLOPs / 2 and only convolutions/matrix products are counted."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `echodfkd info`."""
    parser.add_argument("--blocks", "-B", type=_flags.positive_int, default=4, help="encoder blocks B (1..)")
    parser.add_argument("--layers", "-l", type=_flags.positive_int, default=1, help="ConvLSTM layers per block l (1..)")
    parser.add_argument("--filters", type=_flags.positive_int, default=12, help="width F of the first block")
    parser.add_argument("--skip", action="store_true", help="U-Net skip connections (not the reference)")
    parser.add_argument("--residual", action="store_true", help="residual connection around each block")
    parser.add_argument("--out-channels", type=_flags.positive_int, default=1, help="output channels (2 for LV+RV)")
    parser.add_argument("--size", type=_flags.frame_size, default=112, help="frame size for the GMAC count")
    parser.add_argument("--grid", action="store_true", help="every (B, l) with B, l in 1..4")
    _flags.add_teacher_arch(parser, help="describe this teacher architecture instead (deeplabv3_resnet50, "
                            "deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large, fcn_resnet50)")
    _flags.add_deprecated(parser, "--teacher", "--teacher-arch", "teacher_arch", metavar="ARCH")
    _flags.add_json(parser, help="print JSON instead of text")


def _student_row(blocks: int, layers: int, args: argparse.Namespace) -> dict:
    from echodfkd.models import Student
    from echodfkd.models.flops import count_gmac_per_frame

    _flags.check_size(args.size, blocks)
    import torch

    with torch.device("meta"):  # shapes only: counting needs no real weights or arithmetic
        model = Student(blocks=blocks, layers=layers, filters=args.filters, skip=args.skip,
                        residual=args.residual, out_channels=args.out_channels)
    return {"blocks": blocks, "layers": layers, "filters": args.filters, "skip": args.skip,
            "residual": args.residual, "out_channels": args.out_channels, "size": args.size,
            "params": model.num_parameters(), "gmac_per_frame": round(count_gmac_per_frame(model, args.size), 6)}


def _teacher_row(arch: str, size: int) -> dict:
    from echodfkd.errors import ModelError
    from echodfkd.models.flops import count_gmac_per_frame
    from echodfkd.teacher.model import Teacher, build_segmenter

    if size < _flags.TEACHER_MIN_SIZE:
        raise ModelError(f"--size {size} is too small for a teacher (use >= {_flags.TEACHER_MIN_SIZE})")
    import torch

    with torch.device("meta"):
        teacher = Teacher(build_segmenter(arch), arch=arch)
    return {"arch": arch, "size": size, "params": teacher.num_parameters(),
            "gmac_per_frame": round(count_gmac_per_frame(teacher, size), 6)}


def run(args: argparse.Namespace) -> int:
    """Compute and print the figures."""
    if args.teacher_arch:
        row = _teacher_row(args.teacher_arch, args.size)
        if args.json:
            print(json.dumps(row, indent=2))
        else:
            print(f"teacher {row['arch']}: {row['params']:,} parameters, "
                  f"{row['gmac_per_frame']:.3f} GMAC per {args.size}x{args.size} frame")
        return 0
    if args.grid:
        rows = [_student_row(b, lay, args) for b in range(1, 5) for lay in range(1, 5)]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'B':>2} {'l':>2} {'params':>11} {'GMAC/frame':>11}   (size {args.size}x{args.size})")
            for r in rows:
                print(f"{r['blocks']:>2} {r['layers']:>2} {r['params']:>11,} {r['gmac_per_frame']:>11.4f}")
        return 0
    row = _student_row(args.blocks, args.layers, args)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        extras = "".join(f", {k}" for k in ("skip", "residual") if row[k])
        print(f"student ({row['blocks']},{row['layers']}) filters={row['filters']}{extras}: "
              f"{row['params']:,} parameters, {row['gmac_per_frame']:.4f} GMAC per {args.size}x{args.size} frame")
    return 0
