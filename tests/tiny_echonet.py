"""Tiny traced EchoNet-layout datasets for tests: `pulsing_folder` makes the clips and writes them with
`echonet_folders.make_folder` (the one folder writer), two traces per clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from echonet_folders import filelist_row, make_folder, trace_rows


def pulsing_folder(root: Path, splits: dict[str, int], size: int = 32, frames: int = 12, seed: int = 0,
                   broken: tuple[str, ...] = ()) -> Path:
    """`splits` clips per split, named clip_<split>_<k>: a bright ring around a dark pulsing ellipse, each
    traced at its smallest and largest frame; the clips named in `broken` are replaced by non-video bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    clips, rows, tracings = {}, [], []
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
            clips[name] = video
            rows.append(filelist_row(name, video, split, fps=50, EF=55.0, ESV=30.0, EDV=60.0))
            big = int(np.argmax([a * b for a, b in axes]))
            small = int(np.argmin([a * b for a, b in axes]))
            for f in (small, big):
                tracings += trace_rows(name, f, cx, cy, *axes[f])
    make_folder(root, clips, tracings=tracings, fps=50, rows=rows)
    for name in broken:
        (root / "Videos" / f"{name}.avi").write_bytes(b"not a video")
    return root
