"""`echodfkd convert`: many scanner exports -> one EchoNet-layout folder, resumable, one line per bad file.

OUT/FileList.csv (EF/ESV/EDV blank, Split as asked), OUT/Videos/<FileName>.avi (112x112, lossless FFV1
or EchoNet's MJPEG) and
OUT/conversion.csv (one row per source: its path, status, crop box, sector geometry, fps and its source,
frames). Names are `0X` + 16 hex digits of the file's SHA-256 (EchoNet's style) unless `keep_names`; no
DICOM tag other than the acquisition facts in conversion.csv is written anywhere. conversion.csv maps the
names back to the sources, so keep it with the originals when sharing the rest.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from echodfkd.data.convert import VIDEO_SUFFIXES, prepare_clip
from echodfkd.data.dicom import is_dicom
from echodfkd.data.folder import FILELIST, SPLITS, VIDEOS
from echodfkd.errors import DatasetError, EchoDFKDError
from echodfkd.io.atomic import save_text
from echodfkd.io.digest import file_sha256

TABLE = "conversion.csv"
PREVIEWS = "sectors"
COLUMNS = ("FileName", "Source", "Kind", "Status", "Reason", "Split", "SourceWidth", "SourceHeight",
           "Frames", "FPS", "FPSSource", "CropX", "CropY", "CropSide", "ApexX", "ApexY", "Radius",
           "AngleLeft", "AngleRight", "Fan", "SectorArea", "TransferSyntax", "Photometric")
FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames",
                    "Split")
FLUSH_SECONDS = 2.0
#: AVI codecs: lossless FFV1 (the default: `predict` on the converted folder sees exactly the frames a
#: direct `predict` would) or MJPEG (EchoNet-Dynamic's own, smaller, lossy).
CODECS = {"ffv1": "FFV1", "mjpeg": "MJPG"}  # rewrite the tables at most this often (and at the end)


@dataclass
class ConversionSummary:
    """What a run did: counts and the per-file problems."""

    out: Path
    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # done by an earlier run, or a copy of a converted file
    failed: dict[str, str] = field(default_factory=dict)  # source -> reason
    frames: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"out": str(self.out), "converted": len(self.converted), "skipped": len(self.skipped),
                "failed": self.failed, "frames": self.frames,
                "frames_per_s": round(self.frames / self.seconds, 1) if self.seconds else None}


def find_sources(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """DICOM and video files named, or found (recursively) in the folders named, in a stable order."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise DatasetError(f"{path}: not found")
        if path.is_file():
            found.append(path)
            continue
        for sub in sorted(p for p in path.rglob("*") if p.is_file()):
            if sub.name.startswith(".") or sub.name.upper() == "DICOMDIR":
                continue
            if sub.suffix.lower() in VIDEO_SUFFIXES or is_dicom(sub):
                found.append(sub)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise DatasetError(f"no DICOM or video files in {', '.join(str(i) for i in inputs)}")
    return unique


def hashed_name(path: Path) -> str:
    """'0X' + the first 16 hex digits of the file's SHA-256 (stable across moves and renames)."""
    return "0X" + file_sha256(path)[:16].upper()


def plain_name(path: Path) -> str:
    """The file's stem, with characters outside [A-Za-z0-9._-] replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", path.stem).strip("._") or "clip"


def _read_table(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an earlier run's conversion.csv, by source path."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as fh:
            return {row["Source"]: row for row in csv.DictReader(fh) if row.get("Source")}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return {}


def _write_tables(out: Path, rows: dict[str, dict[str, str]]) -> None:
    """conversion.csv (every source) and FileList.csv (the converted ones), atomically."""
    table = io.StringIO()
    writer = csv.DictWriter(table, COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    filelist = io.StringIO()
    fl = csv.writer(filelist, lineterminator="\n")
    fl.writerow(FILELIST_COLUMNS)
    for row in sorted(rows.values(), key=lambda r: (r.get("FileName", ""), r["Source"])):
        writer.writerow(row)
        if row.get("Status") == "ok":
            fl.writerow([row["FileName"], "", "", "", 112, 112, row["FPS"], row["Frames"],
                         row["Split"]])
    save_text(out / TABLE, table.getvalue())
    save_text(out / FILELIST, filelist.getvalue())


def _row(name: str, source: Path, split: str, clip) -> dict[str, str]:
    g = clip.geometry
    row = {"FileName": name, "Source": str(source), "Kind": clip.kind, "Status": "ok", "Reason": "",
           "Split": split, "SourceWidth": clip.source_shape[1], "SourceHeight": clip.source_shape[0],
           "Frames": len(clip.frames), "FPS": f"{clip.fps:.4g}", "FPSSource": clip.fps_source,
           "TransferSyntax": clip.facts.get("transfer_syntax", ""), "Photometric": clip.facts.get("photometric", "")}
    row.update({"CropX": g.crop_x, "CropY": g.crop_y, "CropSide": g.crop_side, "ApexX": f"{g.apex_x:.1f}",
                "ApexY": f"{g.apex_y:.1f}", "Radius": f"{g.radius:.1f}", "AngleLeft": f"{g.angle_left:.1f}",
                "AngleRight": f"{g.angle_right:.1f}", "Fan": int(g.fan), "SectorArea": g.area})
    return {k: str(v) for k, v in row.items()}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def convert_sources(sources: list[Path], out: str | os.PathLike, split: str = "TEST", keep_names: bool = False,
                    fps: float | None = None, previews: bool = False, codec: str = "ffv1",
                    echo: Callable[[str], None] = print,
                    warn: Callable[[str], None] = _stderr, stop_on_error: bool = False) -> ConversionSummary:
    """Convert every source into `out` (skipping ones an earlier run finished).

    A bad file gets one line through `warn` and the rest go on; with `stop_on_error` its error is raised
    instead, before any table is written.
    """
    from echodfkd.io.video import write_video

    if codec not in CODECS:
        raise DatasetError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
    split = split.upper()
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    out = Path(out)
    rows = _read_table(out / TABLE)
    taken = {r["FileName"]: s for s, r in rows.items() if r.get("Status") == "ok"}
    summary = ConversionSummary(out)
    last_flush = time.monotonic()
    for source in sources:
        key = str(source)
        old = rows.get(key)
        if old and old.get("Status") == "ok" and (out / VIDEOS / f"{old['FileName']}.avi").is_file():
            summary.skipped.append(old["FileName"])
            continue
        try:
            name = hashed_name(source)
            if keep_names:  # a name two sources share (IM0001 in every PACS folder) gets the hash's start
                plain = plain_name(source)
                name = plain if taken.get(plain, key) == key else f"{plain}_{name[2:8]}"
            first = taken.get(name, key)
            if first != key and (out / VIDEOS / f"{name}.avi").is_file():
                _same_contents(rows, taken, name, first, key, summary, echo)
                continue
            start = time.perf_counter()
            clip = prepare_clip(source, mode="on", fps=fps, keep_source=previews, keep_framed=True)
            if clip.fps <= 0:
                raise EchoDFKDError(f"{source}: no frame rate (no Frame Time, Cine Rate or Recommended Display "
                                    "Frame Rate tag, or none in the video header); pass --fps")
            write_video(out / VIDEOS / f"{name}.avi", clip.frames, clip.fps, codec=CODECS[codec])
            if previews:
                _write_preview(out / PREVIEWS / f"{name}.png", clip)
            summary.seconds += time.perf_counter() - start
            summary.frames += len(clip.frames)
        except EchoDFKDError as exc:
            if stop_on_error:
                raise
            summary.failed[key] = str(exc)
            rows[key] = {**{c: "" for c in COLUMNS}, "Source": key, "Status": "failed",
                         "Reason": str(exc), "Split": split}
            warn(f"skipped: {exc}")
            continue
        rows[key] = _row(name, source, split, clip)
        taken[name] = key
        summary.converted.append(name)
        echo(f"{name}: {clip.notes[-1]}; {len(clip.frames)} frames at {clip.fps:.4g} fps ({clip.fps_source})")
        if time.monotonic() - last_flush > FLUSH_SECONDS:
            _write_tables(out, rows)
            last_flush = time.monotonic()
    _write_tables(out, rows)
    return summary


def _same_contents(rows: dict[str, dict[str, str]], taken: dict[str, str], name: str, first: str, key: str,
                   summary: ConversionSummary, echo: Callable[[str], None]) -> None:
    """A source with the contents of one already converted: a moved file takes over its row, a copy is noted."""
    if not Path(first).exists():  # the input folder moved since: same clip, new path
        rows[key] = dict(rows.pop(first), Source=key)
        taken[name] = key
        echo(f"{name}: already converted (from {first}, now at {key})")
    else:
        rows[key] = {**{c: "" for c in COLUMNS}, "FileName": name, "Source": key, "Status": "duplicate",
                     "Reason": f"same contents as {first}", "Split": rows[first].get("Split", "")}
        echo(f"{name}: {key} has the same contents as {first}; converted once")
    summary.skipped.append(name)


def _write_preview(path: Path, clip) -> None:
    """A PNG of the clip's brightest-over-time source frame with the sector and crop (outside stays black)."""
    import cv2

    from echodfkd.data.sector import overlay

    path.parent.mkdir(parents=True, exist_ok=True)
    # Outside the sector is blanked first, so no burnt-in text (which may name the patient) is pictured.
    frame = clip.source.max(axis=0) * clip.sector.astype(np.uint8)
    picture = cv2.cvtColor(overlay(frame, clip.sector, clip.geometry), cv2.COLOR_RGB2BGR)
    from echodfkd.io.atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), picture):
            raise EchoDFKDError(f"{path}: could not write the preview PNG")
