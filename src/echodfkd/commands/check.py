"""`echodfkd check DATA [--csv FILE]`: validate a dataset folder (or one video) and list problem clips by reason."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from echodfkd.commands import _flags

NAME = "check"
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")
HELP = "validate an EchoNet-layout dataset folder and list problem clips (corrupted.csv)"
DESCRIPTION = (
    "Decode every clip once and check it (missing/unreadable/short videos, blank or noise-only frames, "
    "size disagreeing with the FileList) and its tracings (missing, malformed, several annotators, "
    "incomplete, ED/ES too close, ED not larger). Exit 0 when the folder is usable even if some clips have "
    "problems; exit 2 with one line when it is not (no FileList, wrong columns, garbage values, no Videos/, "
    "no usable clip). DIR may also be a single .avi file."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    _flags.add_data(parser, help="dataset folder (FileList.csv, Videos/, VolumeTracings.csv) or one video file")
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help="write the problem list as FileName,reason (corrupted.csv); while checking, "
                             "progress is kept in FILE.progress.jsonl so an interrupted check resumes")
    _flags.add_deprecated(parser, "--out", "--csv", "csv", metavar="CSV")
    parser.add_argument("--details", action="store_true", help="add a detail column to --csv")
    _flags.add_json(parser, help='print {"videos", "traced", "usable", "problems": [...]} as JSON on stdout')
    _flags.add_workers(parser, default=None, help="decoding processes (default: usable CPUs, at most 8)")
    parser.add_argument("--min-frames", type=_flags.positive_int, default=16, metavar="N",
                        help="clips shorter than this are too_short")
    parser.add_argument("--fps", type=_flags.positive_float, default=None, metavar="FPS",
                        help="true frame rate of a folder without tracings whose AVI headers are wrong "
                             "(32 for EchoNet-Synthetic)")


def check_csv_target(path: str | Path, flag: str = "--csv") -> Path:
    """Refuse an output file that is a folder or sits where no file can be written (before any work)."""
    return _flags.check_file_target(path, flag)


def run(args: argparse.Namespace) -> int:
    """Check the folder, print a summary (or JSON), write --out, exit 2 when unusable."""
    from echodfkd.data.check import check_dataset, check_video, summarize
    from echodfkd.data.check_journal import journal_path
    from echodfkd.data.video_checks import CheckConfig
    from echodfkd.errors import DatasetError, VideoError
    from echodfkd.io.lock import file_lock

    config = CheckConfig(min_frames=args.min_frames)
    target = Path(args.data)
    if not target.is_dir() and target.suffix.lower() in VIDEO_SUFFIXES:
        problems = check_video(target, config)
        unreadable = [p for p in problems if p.reason in ("unreadable", "missing_video")]
        if unreadable:
            raise VideoError(f"{target}: {unreadable[0].detail}")
        if args.json:
            print(json.dumps({"videos": 1, "problems": [p._asdict() for p in problems]}, indent=2))
        else:
            print(f"{target}: " + ("no problem found" if not problems else
                                   "; ".join(f"{p.reason}: {p.detail}" for p in problems)))
        return 0
    csv = check_csv_target(args.csv) if args.csv else None
    journal = journal_path(csv) if csv else None
    with file_lock(csv) if csv else contextlib.nullcontext():
        report = check_dataset(target, workers=args.workers, config=config, fps_override=args.fps, journal=journal)
        if csv:
            report.to_csv(csv, details=args.details)
            journal.unlink(missing_ok=True)  # the results are written: nothing left to resume
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(summarize(report))
        if csv:
            print(f"wrote {len(report.problems)} problem rows to {csv}")
    if report.videos and report.usable == 0:
        first = report.problems[0]
        counts = ", ".join(f"{r} {n}" for r, n in report.by_reason().items())
        raise DatasetError(f"{report.root}: no usable clip ({counts}); first: "
                           f"{report.root / 'Videos' / (first.FileName + '.avi')}: {first.reason}: {first.detail}")
    return 0
