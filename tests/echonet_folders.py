"""Builders of tiny EchoNet-layout folders for tests (no phantom generator needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from echodfkd.io.video import write_video

FILELIST_COLUMNS = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"]


def beating_clip(frames: int = 40, size: int = 64, seed: int = 0, period: float = 20.0,
                 look: str = "ring") -> np.ndarray:
    """A beating LV clip (uint8 (T, H, W)) whose radius is largest at t = 0, period, 2·period, ... (ED).

    look "ring": echo-like, a dark sector with a bright textured wall ring around the cavity;
    look "cavity": a dark speckled ellipse on a bright speckled background (what the viewer tests'
    hand-set "darker than 70" student outlines).
    """
    rng = np.random.default_rng(seed)
    if look == "cavity":
        yy, xx = np.mgrid[:size, :size]
        out = np.empty((frames, size, size), np.uint8)
        for t in range(frames):
            r = size * (0.17 + 0.06 * np.cos(2 * np.pi * t / period))
            inside = ((xx - size * 0.5) / r) ** 2 + ((yy - size * 0.48) / (1.5 * r)) ** 2 < 1
            img = rng.normal(150, 25, (size, size))
            img[inside] = rng.normal(15, 6, int(inside.sum()))
            out[t] = np.clip(img, 0, 255)
        return out
    if look != "ring":
        raise ValueError(f"unknown look {look!r}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size * 0.5, size * 0.5
    sector = (yy > size * 0.05) & (np.abs(xx - cx) < (yy + 2) * 0.9)
    texture = cv2.GaussianBlur(rng.uniform(0.7, 1.3, (size, size)).astype(np.float32), (0, 0), 2.0)
    out = np.empty((frames, size, size), np.uint8)
    for t in range(frames):
        radius = size * (0.22 + 0.05 * np.cos(2 * np.pi * t / period))
        dist = np.hypot((yy - cy) / 1.3, xx - cx)
        ring = np.exp(-((dist - radius) / (size * 0.05)) ** 2)
        image = (25 + 170 * ring) * texture * sector
        out[t] = np.clip(cv2.GaussianBlur(image, (0, 0), 1.0), 0, 255).astype(np.uint8)
    return out


def trace_rows(name: str, frame: int, cx: float, cy: float, rx: float, ry: float) -> list[tuple]:
    """21 VolumeTracings rows of an elliptic LV: row 0 the long axis, rows 1-20 horizontal chords."""
    rows = [(f"{name}.avi", cx, cy - ry, cx, cy + ry, frame)]
    for y in np.linspace(cy - ry * 0.95, cy + ry * 0.95, 20):
        half = rx * np.sqrt(max(0.0, 1 - ((y - cy) / ry) ** 2))
        rows.append((f"{name}.avi", cx - half, y, cx + half, y, frame))
    return rows


def write_tracings(root: Path, rows: list[tuple]) -> Path:
    """Write VolumeTracings.csv from (FileName, X1, Y1, X2, Y2, Frame) rows."""
    path = Path(root) / "VolumeTracings.csv"
    pd.DataFrame(rows, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(path, index=False)
    return path


def filelist_row(name: str, frames: np.ndarray | None, split: str = "TRAIN", fps: float = 50,
                 **overrides) -> dict:
    """A FileList row describing `frames` (T, H, W); keyword overrides replace columns."""
    t, h, w = frames.shape if frames is not None else (40, 64, 64)
    row = {"FileName": name, "EF": 60.0, "ESV": 20.0, "EDV": 50.0, "FrameHeight": h, "FrameWidth": w,
           "FPS": fps, "NumberOfFrames": t, "Split": split}
    row.update(overrides)
    return row


def make_folder(root: Path, clips: dict[str, np.ndarray | None], splits: dict[str, str] | None = None,
                tracings: list[tuple] | None = None, fps: float = 50, rows: list[dict] | None = None) -> Path:
    """Write FileList.csv, Videos/<name>.avi (None = no video) and, when given, VolumeTracings.csv."""
    root = Path(root)
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    splits = splits or {}
    if rows is None:
        rows = [filelist_row(n, f, splits.get(n, "TRAIN"), fps) for n, f in clips.items()]
    for name, frames in clips.items():
        if frames is not None:
            write_video(root / "Videos" / f"{name}.avi", frames, fps)
    pd.DataFrame(rows).to_csv(root / "FileList.csv", index=False)
    if tracings is not None:
        write_tracings(root, tracings)
    return root


def standard_tracings(name: str, ed: int = 5, es: int = 15, size: int = 64) -> list[tuple]:
    """Two good traces: a large ellipse at `ed`, a smaller one at `es` (ES listed first, as echonet's CSV)."""
    c = size / 2
    return trace_rows(name, es, c, c, size * 0.12, size * 0.2) + trace_rows(name, ed, c, c, size * 0.18, size * 0.28)
