"""Validate an EchoNet-layout dataset folder and list problem clips by reason (the paper's corrupted.csv).

Folder-level faults (no folder, no FileList, wrong columns, garbage numbers, no Videos/) raise a
DatasetError: the folder is unusable. Clip-level faults become rows (FileName, reason, detail), one per
(clip, reason), with reasons from `REASONS`.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

import numpy as np

from echodfkd.data import open_dataset
from echodfkd.data.echonet import (TRACE_ROWS, EchoNetDynamic, shoelace, trace_area, trace_polygon,
                                   trace_to_mask)
from echodfkd.data.check_journal import FindingsJournal
from echodfkd.data.folder import DatasetFolder, strip_avi
from echodfkd.data.video_checks import CheckConfig, VideoFindings, inspect_video
from echodfkd.errors import DatasetError
from echodfkd.io.atomic import save_text
from echodfkd.progress import progress

REASONS = (
    "missing_video", "unreadable", "too_short", "blank_frames", "noisy_video", "size_mismatch",
    "no_tracings", "malformed_tracings", "multi_annotator", "incomplete_trace", "ed_es_too_close",
    "ed_not_larger",
)


class Problem(NamedTuple):
    """One problem of one clip."""

    FileName: str
    reason: str
    detail: str


@dataclass
class CheckReport:
    """Result of `check_dataset`: clip counts and the problem rows (one per clip and reason)."""

    root: Path
    kind: str
    videos: int
    traced: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def problem_clips(self) -> list[str]:
        """Clips with at least one problem, in report order."""
        return list(dict.fromkeys(p.FileName for p in self.problems))

    @property
    def usable(self) -> int:
        """Number of clips without any problem."""
        return self.videos - len(self.problem_clips)

    def by_reason(self) -> dict[str, int]:
        """Problem count per reason, in `REASONS` order (reasons with no clip left out)."""
        counts = Counter(p.reason for p in self.problems)
        return {r: counts[r] for r in REASONS if counts[r]}

    def to_csv(self, path: str | os.PathLike, details: bool = False) -> Path:
        """Write `FileName,reason` rows (plus `detail` when asked), atomically."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["FileName", "reason"] + (["detail"] if details else []))
        for p in self.problems:
            writer.writerow([p.FileName, p.reason] + ([p.detail] if details else []))
        return save_text(path, buffer.getvalue())

    def to_json(self) -> dict:
        """Machine-readable summary: {"videos", "traced", "usable", "problems": [{FileName, reason, detail}]}."""
        return {"videos": self.videos, "traced": self.traced, "usable": self.usable,
                "problems": [p._asdict() for p in self.problems]}


def tracing_problems(ds: EchoNetDynamic, name: str, frames: int | None = None) -> list[tuple[str, str]]:
    """Trace problems of one clip; `frames` (the decoded count) overrides the FileList's NumberOfFrames."""
    clip = ds.clip_tracings(name)
    if not clip.frames and not clip.incomplete:
        return [("no_tracings", "no row in VolumeTracings.csv")]
    info = ds.info(name)
    length = frames if frames is not None else info.frames
    problems: list[tuple[str, str]] = []
    malformed: list[str] = []
    traced = sorted(set(clip.frames) | set(clip.incomplete))
    beyond = [f for f in traced if f >= length]
    if beyond:
        malformed.append(f"traced frame(s) {beyond} beyond the clip's {length} frames")
    if len(clip.frames) > 2:
        malformed.append(f"{len(clip.frames)} traced frames {list(clip.frames)}, expected 2")
    for frame, annotations in clip.frames.items():
        for k, coords in enumerate(annotations):
            if _degenerate(coords, (info.height, info.width)):
                malformed.append(f"frame {frame} annotator {k}: the trace is flat or outside the "
                                 f"{info.height}x{info.width} image")
    if malformed:
        problems.append(("malformed_tracings", "; ".join(malformed)))
    multi = [f"frame {f}: {len(a) * TRACE_ROWS} rows = {len(a)} annotators"
             for f, a in clip.frames.items() if len(a) > 1]
    if multi:
        problems.append(("multi_annotator", "; ".join(multi)))
    if clip.incomplete:
        problems.append(("incomplete_trace", "; ".join(
            f"frame {f}: {n} rows, not a multiple of {TRACE_ROWS}" for f, n in clip.incomplete.items())))
    complete = list(clip.frames)
    if len(complete) == 1:
        problems.append(("ed_not_larger", f"only one complete traced frame ({complete[0]}): no ES to compare"))
    elif len(complete) >= 2:
        ed, es = ds.traced_frames(name)
        if abs(ed - es) <= 1:
            problems.append(("ed_es_too_close", f"ED frame {ed} and ES frame {es} are {abs(ed - es)} apart"))
        ed_area, es_area = (float(np.mean([trace_area(c) for c in clip.frames[f]])) for f in (ed, es))
        if not ed_area > es_area * (1 + 1e-9):
            problems.append(("ed_not_larger", f"ED frame {ed} area {ed_area:.1f} px² is not larger than "
                                              f"ES frame {es} area {es_area:.1f} px²"))
    return problems


def _degenerate(coords, shape: tuple[int, int]) -> bool:
    """Whether a trace fills no pixel: wholly outside the image, or flat and confirmed by filling it."""
    x, y = trace_polygon(coords)
    x, y = np.rint(x), np.rint(y)
    if x.max() < 0 or y.max() < 0 or x.min() > shape[1] - 1 or y.min() > shape[0] - 1:
        return True
    if shoelace(x, y) > 0:
        return False  # a real polygon inside the image (filling every trace would cost ~2 ms each)
    return not trace_to_mask(coords, shape).any()


def _expected_shape(ds: DatasetFolder, name: str) -> tuple[int, int, int] | None:
    if not isinstance(ds, EchoNetDynamic):
        return None  # synthetic FileLists are known to be wrong: sizes come from the videos
    info = ds.info(name)
    return info.frames, info.height, info.width


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is handled once, by the parent (no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _inspect(job: tuple[str, str, tuple[int, int, int] | None], config: CheckConfig) -> VideoFindings:
    name, path, expected = job
    return inspect_video(name, path, expected, config)


def _decode_all(jobs: list, config: CheckConfig, workers: int,
                journal: FindingsJournal | None) -> dict[str, VideoFindings]:
    """Findings of every job by clip name, decoded in `workers` processes; each is journaled as it ends."""
    task = partial(_inspect, config=config)
    pool = None
    if workers == 1 or len(jobs) < 2:
        stream = map(task, jobs)
    else:
        chunk = max(1, min(32, len(jobs) // (workers * 8)))
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn"),
                                   initializer=_ignore_sigint)
        stream = pool.map(task, jobs, chunksize=chunk)
    found: dict[str, VideoFindings] = {}
    try:
        for job, item in zip(jobs, progress(stream, desc="check", total=len(jobs), unit="clip")):
            found[item.name] = item
            if journal is not None:
                journal.record(item, job[1])
    except BaseException:  # Ctrl-C: drop queued clips instead of waiting for them
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown()
    return found


def check_dataset(root: str | os.PathLike, workers: int | None = None, config: CheckConfig | None = None,
                  fps_override: float | None = None, journal: str | os.PathLike | None = None) -> CheckReport:
    """Check every clip of an EchoNet-layout folder (videos decoded once, in parallel) and its tracings.

    With `journal`, each clip's findings are appended to that file as they arrive, and clips already
    recorded there (same video size and time, same thresholds) are not decoded again: an interrupted
    check resumes. The caller removes the journal once the results are written.
    """
    config = config or CheckConfig()
    ds = open_dataset(root, fps_override=fps_override)
    if not ds.videos_dir.is_dir():
        raise DatasetError(f"{ds.root}: no Videos/ folder (expected Videos/<FileName>.avi)")
    names = ds.names()
    jobs = [(n, str(ds.video_path(n)), _expected_shape(ds, n)) for n in names]
    workers = default_workers() if workers is None else max(1, int(workers))
    book = FindingsJournal(journal, config) if journal is not None else None
    try:
        recorded = [] if book is None else [(j[0], book.lookup(j[0], j[1])) for j in jobs]
        known = {name: found for name, found in recorded if found is not None}
        if known:
            print(f"check: resuming, {len(known)} of {len(jobs)} clips already checked (journal {journal})",
                  file=sys.stderr, flush=True)
        known.update(_decode_all([j for j in jobs if j[0] not in known], config, workers, book))
    finally:
        if book is not None:
            book.close()
    findings = [known[n] for n in names]
    problems: list[Problem] = []
    for found in findings:
        rows = list(found.problems)
        if isinstance(ds, EchoNetDynamic):
            rows += tracing_problems(ds, found.name, found.shape[0] if found.shape else None)
        merged: dict[str, list[str]] = {}
        for reason, detail in rows:
            merged.setdefault(reason, []).append(detail)
        problems += [Problem(found.name, r, "; ".join(merged[r])) for r in REASONS if r in merged]
    traced = len(ds.names()) - len(ds.untraced) if isinstance(ds, EchoNetDynamic) else 0
    return CheckReport(root=ds.root, kind=type(ds).__name__, videos=len(names), traced=traced,
                       problems=problems)


def check_video(path: str | os.PathLike, config: CheckConfig | None = None) -> list[Problem]:
    """Check a single video file (no FileList): unreadable, too short, blank or noise-only frames."""
    path = Path(path)
    found = inspect_video(path.stem, path, None, config or CheckConfig())
    return [Problem(found.name, reason, detail) for reason, detail in found.problems]


def default_workers() -> int:
    """Worker processes for decoding: the usable CPUs, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def summarize(report: CheckReport) -> str:
    """Human-readable multi-line summary of a report (counts by reason, one example each)."""
    lines = [f"{report.root}: {report.kind}, {report.videos} videos, {report.traced} traced, "
             f"{report.usable} without problems, {len(report.problem_clips)} with problems"]
    examples = {}
    for p in report.problems:
        examples.setdefault(p.reason, p)
    for reason, count in report.by_reason().items():
        ex = examples[reason]
        lines.append(f"  {reason:<19} {count:>6}   e.g. {ex.FileName}: {ex.detail}")
    return "\n".join(lines)


__all__ = ["CheckConfig", "CheckReport", "Problem", "REASONS", "check_dataset", "check_video", "summarize",
           "tracing_problems"]


# ---------------------------------------------------------------------- the corrupted list (one reader)
def phantom_corrupted_path(root: str | os.PathLike) -> Path:
    """Where a phantom lists the clips it corrupted on purpose: ROOT/GroundTruth/corrupted.csv."""
    return Path(root) / "GroundTruth" / "corrupted.csv"


def read_corrupted_table(path: str | os.PathLike):
    """A corrupted.csv as a DataFrame of strings (`FileName` + a reason column: check's `reason`,
    the phantom's `kind`, the screen's `echoclip_<prompt>`); a missing or malformed file is one line."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: corrupted list not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise DatasetError(f"{path}: cannot parse corrupted list ({exc})") from None
    if "FileName" not in df.columns:
        raise DatasetError(f"{path}: corrupted list needs a FileName column, has {list(df.columns)}")
    return df


def read_corrupted(path: str | os.PathLike, missing_ok: bool = False) -> dict[str, str]:
    """Clips of a corrupted.csv -> their reasons (second column; several rows of a clip joined by ';').

    Names lose a `.avi` suffix. `missing_ok` reads an absent file as an empty list.
    """
    if missing_ok and not Path(path).is_file():
        return {}
    df = read_corrupted_table(path)
    why = df.columns[1] if len(df.columns) > 1 else None
    out: dict[str, str] = {}
    for name, reason in zip(df["FileName"], df[why] if why else [""] * len(df)):
        name = strip_avi(name)
        if name:
            out[name] = f"{out[name]};{reason}" if name in out and reason else (reason or out.get(name, ""))
    return out


def corrupted_reasons(listed: dict[str, str]) -> dict[str, set[str]]:
    """`read_corrupted`'s joined reasons split back into a set per clip."""
    return {name: {r for r in reasons.split(";") if r} for name, reasons in listed.items()}
