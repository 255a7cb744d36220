"""`echodfkd phantom --out OUT`: generate a procedural A4C echo dataset with exact ground truth."""

from __future__ import annotations

import argparse
import json
import time

from echodfkd.commands import _flags

NAME = "phantom"
HELP = "generate a procedural apical-4-chamber echo dataset with exact ground truth (EchoNet layout)"
DESCRIPTION = (
    "Write OUT/FileList.csv, OUT/Videos/*.avi, OUT/VolumeTracings.csv (dynamic style: one human-like ED and "
    "ES trace per clip) and OUT/GroundTruth/ (per-frame LV/RV masks, all true ED/ES frames, EF; "
    "corrupted.csv). Style 'dynamic' mimics EchoNet-Dynamic (EchoNet frame rates and lengths, tracings); "
    "'synthetic' mimics EchoNet-Synthetic (smoother texture, 192 frames at 32 fps, no tracings). The same "
    "seed gives the same dataset; rerunning into the same folder finishes an interrupted run. "
    "--layout camus writes a CAMUS 2023-release folder instead (OUT/database_nifti/patientXXXX/*.nii.gz and "
    "Info_{2CH,4CH}.cfg; --videos patients, --size the frame width, height 1.31x; 2CH is a stand-in: the A4C "
    "generator on another seed stream)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    _flags.add_out(parser, "output", required=False, note="created; an unfinished one is resumed")
    _flags.add_deprecated_positional(parser, "out", "--out", "OUT")
    parser.add_argument("--videos", type=_flags.positive_int, default=16, metavar="N",
                        help="number of clips (CAMUS layout: patients, each with a 2CH and a 4CH view)")
    parser.add_argument("--layout", choices=["echonet", "camus"], default="echonet",
                        help="EchoNet-Dynamic folder, or a CAMUS 2023-release folder (NIfTI)")
    parser.add_argument("--style", choices=["dynamic", "synthetic"], default="dynamic",
                        help="EchoNet-Dynamic-like clips with tracings, or EchoNet-Synthetic-like clips")
    parser.add_argument("--seed", type=_flags.nonnegative_int, default=0, help="random seed (same seed, same dataset)")
    parser.add_argument("--size", type=_flags.int_in(32, 1024), default=112, metavar="PX",
                        help="frame height and width (CAMUS layout: the width; the height is 1.31x, CAMUS's ratio)")
    parser.add_argument("--corrupt", type=_flags.unit_float, default=0.0, metavar="F",
                        help="fraction of clips deliberately corrupted (blank_frames, noisy_video, and for "
                             "the dynamic style ed_es_too_close, multi_annotator); listed in "
                             "GroundTruth/corrupted.csv")
    _flags.add_workers(parser, default=None, help="parallel processes (default: all usable cores)")
    parser.add_argument("--preview", metavar="PNG", help="also write a contact sheet of ED/ES frames with the "
                                                         "true LV contour")
    parser.add_argument("--frames", type=_flags.positive_int, default=None, metavar="T",
                        help="force every clip to T frames (default: EchoNet-like lengths; 192 for synthetic)")
    parser.add_argument("--fps", type=_flags.positive_float, default=None,
                        help="force the frame rate (default: EchoNet-Dynamic's distribution; 32 for synthetic)")
    _flags.add_json(parser, help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    """Generate the folder (holding its lock), optionally the preview, and print a one-line summary."""
    from echodfkd.io.lock import output_lock

    out = _flags.require(args, "out", "--out")
    _flags.check_writable_dir(out, keep=False)
    if args.preview:
        _flags.check_file_target(args.preview, "--preview")
    with output_lock(out):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import csv

    from echodfkd.data.check import phantom_corrupted_path, read_corrupted
    from echodfkd.data.phantom import generate_phantom, write_preview

    if args.layout == "camus":
        return _run_camus(args)
    start = time.perf_counter()
    root = generate_phantom(args.out, args.videos, style=args.style, seed=args.seed, corrupt=args.corrupt,
                            size=args.size, workers=args.workers, frames=args.frames, fps=args.fps)
    elapsed = time.perf_counter() - start
    with open(root / "FileList.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    frames = sum(int(r["NumberOfFrames"]) for r in rows)
    corrupted = len(read_corrupted(phantom_corrupted_path(root)))
    preview = write_preview(root, args.preview) if args.preview else None
    if args.json:
        print(json.dumps({"out": str(root), "layout": "echonet", "style": args.style, "clips": len(rows),
                          "frames": frames, "size": args.size, "corrupted": corrupted,
                          "seconds": round(elapsed, 2), "preview": str(preview) if preview else None}, indent=2))
        return 0
    print(f"{root}: {len(rows)} {args.style} clips, {frames} frames at {args.size}x{args.size}, "
          f"{corrupted} corrupted ({elapsed:.1f} s)")
    if preview:
        print(f"preview: {preview}")
    return 0


def _run_camus(args: argparse.Namespace) -> int:
    """`--layout camus`: write the CAMUS-format folder and print a one-line summary."""
    from echodfkd.data.phantom.camus_layout import camus_shape, generate_camus
    from echodfkd.errors import DatasetError

    unused = [flag for flag, used in (("--style synthetic", args.style != "dynamic"),
                                      ("--corrupt", args.corrupt != 0.0), ("--preview", bool(args.preview)),
                                      ("--workers", args.workers is not None)) if used]
    if unused:
        raise DatasetError(f"{', '.join(unused)}: not available with --layout camus")
    start = time.perf_counter()
    root = generate_camus(args.out, args.videos, seed=args.seed, width=args.size, frames=args.frames, fps=args.fps)
    h, w = camus_shape(args.size)
    if args.json:
        print(json.dumps({"out": str(root), "layout": "camus", "patients": args.videos, "height": h, "width": w,
                          "seconds": round(time.perf_counter() - start, 2)}, indent=2))
        return 0
    print(f"{root}: {args.videos} CAMUS patients (2CH stand-in + 4CH half-sequences, {h}x{w} px, NIfTI) "
          f"({time.perf_counter() - start:.1f} s)")
    return 0
