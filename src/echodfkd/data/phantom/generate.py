"""Write a phantom dataset folder in the EchoNet layout, in parallel, resumably.

Layout: FileList.csv, VolumeTracings.csv (dynamic style), Videos/<name>.avi and GroundTruth/ with one
<name>.npz per clip (lv, rv masks, ed, es, ef, fps), a <name>.json record (the clip's table rows, written
last: its presence marks the clip as finished), phantom.json (the settings) and corrupted.csv.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from echodfkd.data.phantom.clip import MAX_FRAMES, STYLES, clip_name, make_clip, min_frames
from echodfkd.data.phantom.corrupt import KINDS, VIDEO_KINDS, plan_corruption
from echodfkd.data.phantom.tables import FPS_COUNTS, SPLIT_FRACTIONS
from echodfkd.errors import DatasetError
from echodfkd.io.atomic import load_json, save_json, save_npz, save_text
from echodfkd.io.video import write_video
from echodfkd.progress import progress

FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]
TRACING_COLUMNS = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
FORMAT_VERSION = 1


def assign_splits(n: int, seed: int) -> list[str]:
    """TRAIN/VAL/TEST per clip in EchoNet proportions (~75/13/12 %), each split non-empty when n >= 3."""
    n_val = int(round(n * SPLIT_FRACTIONS["VAL"]))
    n_test = int(round(n * SPLIT_FRACTIONS["TEST"]))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    labels = np.array(["TRAIN"] * (n - n_val - n_test) + ["VAL"] * n_val + ["TEST"] * n_test)
    order = np.random.default_rng([seed, 104729]).permutation(n)
    return [str(s) for s in labels[np.argsort(order)]]


def _record_path(root: Path, name: str) -> Path:
    return root / "GroundTruth" / f"{name}.json"


def _finished(root: Path, name: str) -> bool:
    return (_record_path(root, name).exists() and (root / "Videos" / f"{name}.avi").exists()
            and (root / "GroundTruth" / f"{name}.npz").exists())


def _make_and_write(job: tuple) -> str:
    """Worker: simulate one clip and write its video, ground truth and record (record last)."""
    root, seed, index, style, size, kind, frames, fps = job
    root = Path(root)
    clip = make_clip(seed, index, style, size, kind, frames, fps)
    write_video(root / "Videos" / f"{clip.name}.avi", clip.frames, clip.fps)
    save_npz(root / "GroundTruth" / f"{clip.name}.npz", lv=clip.lv, rv=clip.rv, ed=clip.ed, es=clip.es,
             ef=np.float64(clip.ef), fps=np.float64(clip.fps))
    save_json(_record_path(root, clip.name), {"FileName": clip.name, **clip.filelist, "kind": clip.kind,
                                              "tracings": clip.tracings})
    return clip.name


def _init_worker() -> None:
    import cv2
    cv2.setNumThreads(1)  # one process per core already; avoid oversubscription


def check_settings(path: Path, settings: dict, folder: Path, what: str = "phantom") -> None:
    """Refuse to mix clips made with other settings in `folder`; otherwise record the settings in `path`."""
    if path.exists():
        old = load_json(path, DatasetError, "; unreadable phantom settings: use a new output folder")
        if old != settings:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
            raise DatasetError(f"{folder}: already holds a {what} made with other settings "
                               f"({diff}); choose a new output folder")
        return
    save_json(path, settings)


def _validate(videos: int, style: str, corrupt: float, size: int, frames: int | None, fps: float | None) -> None:
    if style not in STYLES:
        raise DatasetError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    if videos < 1:
        raise DatasetError(f"--videos must be at least 1 (got {videos})")
    if not 0.0 <= corrupt <= 1.0:
        raise DatasetError(f"--corrupt is a fraction of clips in [0, 1] (got {corrupt})")
    if size < 32 or size > 1024:
        raise DatasetError(f"--size must be between 32 and 1024 pixels (got {size})")
    if frames is not None and not 16 <= frames <= 4 * MAX_FRAMES:
        raise DatasetError(f"--frames must be between 16 and {4 * MAX_FRAMES} (got {frames})")
    if fps is not None and not 5 <= fps <= 500:
        raise DatasetError(f"--fps must be between 5 and 500 (got {fps})")
    rate = fps if fps is not None else (32 if style == "synthetic" else min(FPS_COUNTS))
    if frames is not None and frames < min_frames(rate):
        raise DatasetError(f"--frames {frames} at {rate:g} fps cannot hold one heart beat "
                           f"(need at least {min_frames(rate)})")


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _run(jobs: list[tuple], workers: int) -> None:
    """Make the clips, in this process or a pool, with a progress bar."""
    bar = progress(range(len(jobs)), desc="phantom", total=len(jobs), unit="video")
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            _make_and_write(job)
            next(bar, None)
        return
    # Never fork this process: OpenCV's (or torch's) worker threads would deadlock the children. A fork
    # server starts clean and preloads the generator once, so workers still start fast.
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
    else:
        ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(_make_and_write, job) for job in jobs]
        try:
            for fut in as_completed(futures):
                fut.result()
                next(bar, None)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _csv_text(columns: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def _write_tables(root: Path, names: list[str], splits: list[str], style: str) -> None:
    """Assemble FileList.csv, VolumeTracings.csv and GroundTruth/corrupted.csv from the clip records."""
    records = [load_json(_record_path(root, n), DatasetError) for n in names]
    filelist = [[r["FileName"]] + [r[c] for c in FILELIST_COLUMNS[1:-1]] + [s] for r, s in zip(records, splits)]
    save_text(root / "FileList.csv", _csv_text(FILELIST_COLUMNS, filelist))
    if style == "dynamic":
        rows = [[f"{r['FileName']}.avi"] + [round(v, 6) for v in t[:4]] + [int(t[4])]
                for r in records for t in r["tracings"]]
        save_text(root / "VolumeTracings.csv", _csv_text(TRACING_COLUMNS, rows))
    bad = [[r["FileName"], r["kind"]] for r in records if r["kind"]]
    save_text(root / "GroundTruth" / "corrupted.csv", _csv_text(["FileName", "kind"], bad))


def generate_phantom(out: str | os.PathLike, videos: int, style: str = "dynamic", seed: int = 0,
                     corrupt: float = 0.0, size: int = 112, workers: int | None = None,
                     frames: int | None = None, fps: float | None = None) -> Path:
    """Generate (or finish generating) a phantom dataset folder and return its path.

    Clips already finished in `out` are kept, so an interrupted run resumes; the same settings and seed
    always give the same tables and masks, whatever the number of workers. Workers are started cleanly
    (not forked), so a script calling this with workers > 1 needs the `if __name__ == "__main__":` guard.
    """
    _validate(videos, style, corrupt, size, frames, fps)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: exists and is not a folder")
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    (root / "GroundTruth").mkdir(parents=True, exist_ok=True)
    settings = {"format": FORMAT_VERSION, "style": style, "videos": videos, "seed": seed, "corrupt": corrupt,
                "size": size, "frames": frames, "fps": fps}
    check_settings(root / "GroundTruth" / "phantom.json", settings, root)

    kinds = KINDS if style == "dynamic" else VIDEO_KINDS  # no tracings to corrupt in the synthetic style
    plan = plan_corruption(np.random.default_rng([seed, STYLES[style], 7919]), videos, corrupt, kinds)
    names = [clip_name(style, i) for i in range(videos)]
    jobs = [(str(root), seed, i, style, size, plan[i], frames, fps)
            for i in range(videos) if not _finished(root, names[i])]
    if jobs:
        _run(jobs, _default_workers() if workers is None else int(workers))
    _write_tables(root, names, assign_splits(videos, seed), style)
    return root
