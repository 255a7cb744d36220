"""`echodfkd label`: run a teacher over every frame and cache soft masks in targets/<FileName>.npz."""

from __future__ import annotations

import argparse
import json

from echodfkd.commands import _flags

NAME = "label"
HELP = "label every frame of a dataset with a teacher into targets/<FileName>.npz (resumable, sharded)"
DESCRIPTION = (
    "Writes targets/<FileName>.npz with key 'masks' (or 'rv' with --channel rv, added to the existing files) "
    "holding uint8 round(255*sigmoid(logit)) per frame, and targets/meta.json naming the teacher. Files are "
    "written atomically and existing ones are skipped, so rerunning resumes. --shard i/N (0-based; default "
    "from torchrun's RANK/WORLD_SIZE) gives this process every N-th clip, so N processes never overlap."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `echodfkd label`."""
    _flags.add_data(parser, help="EchoNet-layout dataset folder", type=_flags.dir_path)
    _flags.add_teacher(parser, required=True, help="teacher checkpoint (EchoNet .pt, ours, or a state dict)")
    _flags.add_teacher_arch(parser, old="--arch")
    _flags.add_out(parser, "targets")
    parser.add_argument("--split", default="TRAIN,VAL", help="TRAIN, VAL, TEST, a comma list, or all")
    parser.add_argument("--shard", default=None, help="i/N: label every N-th clip starting at i (0-based); when omitted, "
                        "torchrun's RANK/WORLD_SIZE, else all clips")
    parser.add_argument("--batch-size", type=_flags.positive_int, default=64,
                        help="frames per forward pass (across clips)")
    parser.add_argument("--channel", choices=["masks", "rv"], default="masks",
                        help="npz key to write; 'rv' adds a second teacher's output beside 'masks'")
    parser.add_argument("--overwrite", action="store_true",
                        help="relabel existing files and accept a meta.json from another teacher")
    _flags.add_device(parser, help="torch device: cpu, cuda, cuda:N, mps, auto (under torchrun: cuda:LOCAL_RANK)")
    _flags.add_skip_bad(parser)
    _flags.add_json(parser, help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Label, then print a summary; unreadable clips are skipped with a warning each (exit 1 unless --skip-bad)."""
    from echodfkd.distill.label import label_dataset
    from echodfkd.io.lock import output_lock

    out = _flags.check_writable_dir(args.out, keep=False)  # the lock creates it, and removes it if left empty
    with output_lock(out):
        summary = label_dataset(args.data, args.teacher, out, splits=args.split, shard=args.shard,
                                batch_size=args.batch_size, channel=args.channel, device=args.device,
                                overwrite=args.overwrite, arch=args.teacher_arch)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        i, n = summary.shard
        print(f"labelled {summary.labelled} clip(s), {summary.frames} frames in {summary.seconds:.1f} s "
              f"({summary.clips_per_s:.2f} clips/s, {summary.frames_per_s:.1f} frames/s); "
              f"{summary.skipped} already done" + (f"; shard {i}/{n} of {summary.clips} clips" if n > 1 else "")
              + f" -> {summary.out}")
    return _flags.partial_exit(summary.failed, args.skip_bad, NAME)
