"""EchoNet-Dynamic: FileList + VolumeTracings -> per-annotator traces, masks and ED/ES frames.

VolumeTracings.csv has one row per chord: `FileName,X1,Y1,X2,Y2,Frame`. A trace is 21 rows for one
(file, frame): row 0 is the long axis, rows 1-20 the short-axis chords. Groups of k x 21 rows are split
into k annotations (several annotators concatenated); other counts are reported as incomplete, never
concatenated into one polygon.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.draw import polygon as fill_polygon

from echodfkd.data.folder import (DatasetFolder, numeric_column, read_table, require_columns, strip_avi,
                                  strip_avi_column)
from echodfkd.errors import DatasetError
from echodfkd.io.video import VideoInfo

TRACINGS = "VolumeTracings.csv"
TRACE_ROWS = 21
TRACE_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")


def trace_polygon(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygon (x, y) of a 21-row trace: chord ends X1[1:] then reversed X2[1:] (row 0 dropped)."""
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] != 4 or len(coords) < 3:
        raise DatasetError(f"a trace must be an (n>=3, 4) array of X1,Y1,X2,Y2 rows, got {coords.shape}")
    x = np.concatenate([coords[1:, 0], coords[1:, 2][::-1]])
    y = np.concatenate([coords[1:, 1], coords[1:, 3][::-1]])
    return x, y


def trace_to_mask(coords: np.ndarray, shape: tuple[int, int] = (112, 112)) -> np.ndarray:
    """Rasterise a trace to a bool mask: vertices rounded to integers, filled with skimage (rows = y)."""
    x, y = trace_polygon(coords)
    rows, cols = fill_polygon(np.rint(y).astype(int), np.rint(x).astype(int), shape)
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def trace_area(coords: np.ndarray) -> float:
    """Area of the trace polygon in square pixels (shoelace formula on the unrounded vertices)."""
    return shoelace(*trace_polygon(coords))


def shoelace(x: np.ndarray, y: np.ndarray) -> float:
    """Area of a closed polygon given its vertex coordinates (absolute value of the signed area)."""
    twice = np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:]) + x[-1] * y[0] - y[-1] * x[0]
    return float(0.5 * abs(twice))


@dataclass
class ClipTracings:
    """The parsed traces of one clip: complete annotations per frame and the frames left incomplete."""

    frames: dict[int, list[np.ndarray]] = field(default_factory=dict)
    incomplete: dict[int, int] = field(default_factory=dict)  # frame -> row count (not a multiple of 21)


def parse_tracings(path: os.PathLike) -> dict[str, ClipTracings]:
    """Parse VolumeTracings.csv into per-clip traces; garbage values raise one DatasetError naming the row."""
    path = Path(path)
    table = read_table(path, TRACINGS)
    require_columns(table, TRACE_COLUMNS, path)
    coords = np.column_stack([numeric_column(table, c, path).to_numpy() for c in ("X1", "Y1", "X2", "Y2")])
    frame = numeric_column(table, "Frame", path, integer=True).to_numpy()
    negative = np.flatnonzero(frame < 0)
    if len(negative):
        raise DatasetError(f"{path} line {negative[0] + 2}: Frame is {int(frame[negative[0]])}, "
                           "frame indices start at 0")
    names = strip_avi_column(table["FileName"])
    empty = np.flatnonzero((names == "").to_numpy())
    if len(empty):
        raise DatasetError(f"{path} line {empty[0] + 2}: empty FileName")
    frame = frame.astype(np.int64)
    # Group rows by (clip, frame) in first-appearance order; the stable sort keeps the CSV row order.
    clips: dict[str, ClipTracings] = {}
    if len(table) == 0:
        return clips
    name_codes, clip_names = pd.factorize(names)
    stride = int(frame.max()) + 1
    codes, keys = pd.factorize(name_codes.astype(np.int64) * stride + frame)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group, rows in enumerate(np.split(order, bounds)):
        name, index = clip_names[keys[group] // stride], int(keys[group] % stride)
        clip = clips.setdefault(name, ClipTracings())
        if len(rows) % TRACE_ROWS:
            clip.incomplete[int(index)] = len(rows)
            continue
        block = coords[rows]
        clip.frames[int(index)] = [block[i:i + TRACE_ROWS] for i in range(0, len(rows), TRACE_ROWS)]
    return clips


class EchoNetDynamic(DatasetFolder):
    """EchoNet-Dynamic folder: FileList.csv, VolumeTracings.csv and Videos/ (sizes from the FileList)."""

    REQUIRED = ("FileName", "EF", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
    NUMERIC = {"EF": False, "ESV": False, "EDV": False, "FrameHeight": True, "FrameWidth": True,
               "FPS": False, "NumberOfFrames": True}
    POSITIVE = ("FPS", "FrameHeight", "FrameWidth")
    has_tracings = True

    def __init__(self, root: str | os.PathLike):
        super().__init__(root)
        self.tracings_path = self.root / TRACINGS
        self._tracings = parse_tracings(self.tracings_path)
        #: Clips of the FileList without any trace (FileList order); excluded from split listings.
        self.untraced: list[str] = [n for n in self.filelist["FileName"] if n not in self._tracings]
        #: Traced clips that the FileList does not list (ignored).
        self.unlisted: list[str] = sorted(set(self._tracings) - set(self._index))
        self._untraced_set = set(self.untraced)

    def names(self, split: str | None = None, include_untraced: bool | None = None) -> list[str]:
        """Clip names of a split; evaluation splits (split given) leave out the untraced clips."""
        names = super().names(split)
        if include_untraced is None:
            include_untraced = split is None
        return names if include_untraced else [n for n in names if n not in self._untraced_set]

    def info(self, name: str) -> VideoInfo:
        """Frame count, size and FPS as the FileList states them (no decoding)."""
        row = self._row(name)
        return VideoInfo(frames=int(row["NumberOfFrames"]), height=int(row["FrameHeight"]),
                         width=int(row["FrameWidth"]), fps=float(row["FPS"]))

    def fps(self, name: str) -> float:
        """Frame rate from the FileList."""
        return float(self._row(name)["FPS"])

    def _fps_for(self, name: str, header_fps: float) -> float:
        fps = self.fps(name)
        return fps if fps > 0 else header_fps

    # ------------------------------------------------------------------ traces
    def clip_tracings(self, name: str) -> ClipTracings:
        """All parsed traces of a clip, incomplete frames included (empty when untraced)."""
        return self._tracings.get(self._key(name), ClipTracings())

    def tracings(self, name: str) -> dict[int, list[np.ndarray]]:
        """Complete traces of a clip: frame -> one (21, 4) X1,Y1,X2,Y2 array per annotator."""
        return self.clip_tracings(name).frames

    def _trace(self, name: str, frame: int, annotator: int) -> np.ndarray:
        clip = self.clip_tracings(name)
        if frame not in clip.frames:
            if frame in clip.incomplete:
                raise DatasetError(f"{self.tracings_path}: {name} frame {frame} has an incomplete trace "
                                   f"({clip.incomplete[frame]} rows, not a multiple of {TRACE_ROWS})")
            raise DatasetError(f"{self.tracings_path}: {name} has no trace at frame {frame} "
                               f"(traced frames: {sorted(clip.frames) or 'none'})")
        annotations = clip.frames[frame]
        if not 0 <= annotator < len(annotations):
            raise DatasetError(f"{self.tracings_path}: {name} frame {frame} has {len(annotations)} "
                               f"annotator(s); annotator {annotator} does not exist")
        return annotations[annotator]

    def trace_mask(self, name: str, frame: int, annotator: int = 0,
                   shape: tuple[int, int] | None = None) -> np.ndarray:
        """Bool mask of one annotator's trace at a traced frame, (112, 112) for EchoNet clips.

        The default shape is the clip's FileList size (traces are in video pixel coordinates).
        """
        if shape is None:
            info = self.info(name)
            shape = (info.height, info.width)
        return trace_to_mask(self._trace(name, frame, annotator), shape)

    def trace_area(self, name: str, frame: int, annotator: int | None = None) -> float:
        """Polygon area of a traced frame: one annotator's, or the mean over annotators when None."""
        if annotator is not None:
            return trace_area(self._trace(name, frame, annotator))
        self._trace(name, frame, 0)
        return float(np.mean([trace_area(c) for c in self.tracings(name)[frame]]))

    def traced_frames(self, name: str) -> tuple[int, int]:
        """(ED, ES): the traced frames with the largest and smallest polygon area.

        Ties (equal areas) keep the CSV order, first frame as ED. A clip with fewer than two complete
        traced frames raises a DatasetError.
        """
        traced = self.tracings(name)
        frames = list(traced)
        if len(frames) < 2:
            raise DatasetError(f"{self.tracings_path}: {strip_avi(name)} has {len(frames)} complete traced "
                               "frame(s); ED and ES need two")
        areas = [np.mean([trace_area(c) for c in traced[f]]) for f in frames]
        ed = frames[int(np.argmax(areas))]
        es = frames[int(np.argmin(areas))]
        if ed == es:  # all areas equal: fall back to CSV order
            ed, es = frames[0], frames[1]
        return ed, es
