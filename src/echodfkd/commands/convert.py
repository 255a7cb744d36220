"""`echodfkd convert INPUT... --out DIR`: DICOM cines and scanner videos -> an EchoNet-layout dataset folder."""

from __future__ import annotations

import argparse

from echodfkd.commands import _flags

NAME = "convert"
HELP = "turn DICOM cines and MP4/AVI/MOV exports of any size into an EchoNet-layout folder"
DESCRIPTION = (
    "Decodes each DICOM cine (JPEG Baseline, JPEG-LS, RLE or uncompressed; YBR converted to RGB to grey) or "
    "video, finds the imaging sector from the pixels that change over time, blanks everything outside it "
    "(text, ECG, markers, colour bars), crops the square EchoNet framed its clips with and resizes to "
    "112x112 (area interpolation). Writes DIR/Videos/<FileName>.avi (lossless FFV1 unless --codec mjpeg), DIR/FileList.csv (EF/ESV/EDV blank) and "
    "DIR/conversion.csv (source, crop box, sector geometry, fps and the tag it came from, frames). Names are "
    "hashed from the file's contents unless --keep-names; no patient-identifying DICOM field is copied. "
    "Folders are searched recursively. A rerun skips what is done; a bad file gets one line and the rest go on "
    "(exit 1 when any failed).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `echodfkd convert`."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM files, videos, or folders of them")
    _flags.add_out(parser, "dataset", note="EchoNet layout")
    parser.add_argument("--split", default="TEST", choices=("TRAIN", "VAL", "TEST"),
                        help="Split written in FileList.csv for every clip")
    parser.add_argument("--keep-names", action="store_true",
                        help="name clips after their files instead of a hash of their contents")
    parser.add_argument("--fps", type=_flags.positive_float, default=None, metavar="FPS",
                        help="frame rate for files that give none (DICOM tags or video header)")
    parser.add_argument("--codec", choices=("ffv1", "mjpeg"), default="ffv1",
                        help="AVI codec: lossless FFV1 (predict then sees exactly the frames a direct predict on "
                             "the source would) or MJPEG like EchoNet-Dynamic's files (smaller, lossy)")
    parser.add_argument("--previews", action="store_true",
                        help="also write DIR/sectors/<FileName>.png: the sector found and the crop box")
    _flags.add_skip_bad(parser)
    _flags.add_json(parser)


def run(args: argparse.Namespace) -> int:
    """Convert, print one line per clip and a summary."""
    import json
    from pathlib import Path

    from echodfkd.data.convert_folder import convert_sources, find_sources
    from echodfkd.errors import EchoDFKDError
    from echodfkd.io.lock import output_lock

    sources = find_sources(args.inputs)
    existed = Path(args.out).exists()
    out = _flags.check_writable_dir(args.out)
    echo = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    single = len(sources) == 1  # one file: its problem is the command's one-line error
    try:
        with output_lock(out):  # released before the clean-up below
            summary = convert_sources(sources, out, split=args.split, keep_names=args.keep_names, fps=args.fps,
                                      previews=args.previews, codec=args.codec, echo=echo,
                                      stop_on_error=single)
    except EchoDFKDError:
        if not existed and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind for a refused file
        raise
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        done = f"{len(summary.converted)} converted"
        if summary.skipped:
            done += f", {len(summary.skipped)} already done"
        rate = summary.to_dict()["frames_per_s"]
        print(f"{done}, {len(summary.failed)} failed, into {out}" + (f" ({rate} frames/s)" if rate else ""))
    return 1 if summary.failed and not args.skip_bad else 0  # each failed file was warned about as it failed
