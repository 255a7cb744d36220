"""Build tiny EchoNet-layout folders for tests: pulsing-ellipse videos, FileList.csv, VolumeTracings.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from echodfkd.io.video import write_video


def ellipse_trace(cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """A 21-row EchoNet trace of an ellipse: row 0 the long (vertical) axis, rows 1-20 horizontal chords."""
    rows = [(cx, cy - b, cx, cy + b)]
    for y in np.linspace(cy - 0.95 * b, cy + 0.95 * b, 20):
        half = a * np.sqrt(max(0.0, 1 - ((y - cy) / b) ** 2))
        rows.append((cx - half, y, cx + half, y))
    return np.asarray(rows, dtype=float)


def make_folder(root: Path, splits: dict[str, int], size: int = 32, frames: int = 12, seed: int = 0,
                broken: tuple[str, ...] = ()) -> Path:
    """Write clips named clip_<split>_<k>: a bright ring around a dark pulsing ellipse, with two traces each."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Videos").mkdir(exist_ok=True)
    filelist = ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"]
    tracings = ["FileName,X1,Y1,X2,Y2,Frame"]
    yy, xx = np.mgrid[0:size, 0:size]
    for split, count in splits.items():
        for k in range(count):
            name = f"clip_{split.lower()}_{k}"
            cx, cy = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
            phase = rng.uniform(0, 2 * np.pi)
            axes = []
            video = np.empty((frames, size, size), dtype=np.uint8)
            for t in range(frames):
                s = 1 + 0.25 * np.sin(2 * np.pi * t / 8 + phase)
                a, b = 0.16 * size * s, 0.3 * size * s
                axes.append((a, b))
                r = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
                img = np.where(r < 1, 15.0, np.where(r < 1.8, 170.0, 60.0))
                video[t] = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
            write_video(root / "Videos" / f"{name}.avi", video, 50.0)
            if name in broken:
                (root / "Videos" / f"{name}.avi").write_bytes(b"not a video")
            big = int(np.argmax([a * b for a, b in axes]))
            small = int(np.argmin([a * b for a, b in axes]))
            for f in (small, big):
                for row in ellipse_trace(cx, cy, *axes[f]):
                    tracings.append(f"{name}.avi," + ",".join(f"{v:.3f}" for v in row) + f",{f}")
            filelist.append(f"{name},55.0,30.0,60.0,{size},{size},50,{frames},{split}")
    (root / "FileList.csv").write_text("\n".join(filelist) + "\n")
    (root / "VolumeTracings.csv").write_text("\n".join(tracings) + "\n")
    return root
