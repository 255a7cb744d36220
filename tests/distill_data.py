"""Tiny distillation datasets for tests: pulsating-ellipse clips in the EchoNet layout plus soft targets.

The targets stand in for a teacher's output (round(255 * sigmoid(logit)) of the true LV/RV masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echodfkd.io.atomic import save_json, save_npz
from echodfkd.io.video import write_video


def make_dataset(root: Path, splits: list[str], size: int = 64, frames: int | list[int] = 30, seed: int = 0,
                 rv: bool = False, teacher: str = "tiny-test-teacher") -> tuple[Path, Path]:
    """Write `root/data` (FileList.csv + Videos/) and `root/targets` (npz + meta.json); return both paths."""
    data, targets = root / "data", root / "targets"
    (data / "Videos").mkdir(parents=True, exist_ok=True)
    targets.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    counts = frames if isinstance(frames, list) else [frames] * len(splits)
    rows = []
    for i, (split, t_count) in enumerate(zip(splits, counts)):
        name = f"clip{i:02d}"
        period, phase = rng.uniform(12, 18), rng.uniform(0, 2 * np.pi)
        cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
        video, lv, rvm = [], [], []
        for t in range(t_count):
            s = 1 + 0.25 * np.sin(2 * np.pi * t / period + phase)
            a, b = size * 0.16 * s, size * 0.26 * s
            d_lv = ((xx - cx - size * 0.08) / a) ** 2 + ((yy - cy) / b) ** 2
            d_rv = ((xx - cx + size * 0.2) / (0.8 * a)) ** 2 + ((yy - cy) / b) ** 2
            img = np.full((size, size), 110.0)
            img[(d_lv < 1) | (d_rv < 1)] = 15
            img += rng.normal(0, 10, img.shape)
            video.append(np.clip(img, 0, 255).astype(np.uint8))
            lv.append(np.round(255 / (1 + np.exp((d_lv - 1) * 10))).astype(np.uint8))
            rvm.append(np.round(255 / (1 + np.exp((d_rv - 1) * 10))).astype(np.uint8))
        write_video(data / "Videos" / f"{name}.avi", np.stack(video), 50)
        arrays = {"masks": np.stack(lv)}
        if rv:
            arrays["rv"] = np.stack(rvm)
        save_npz(targets / f"{name}.npz", **arrays)
        rows.append(dict(FileName=name, EF=55.0, ESV=0.0, EDV=0.0, FrameHeight=size, FrameWidth=size, FPS=50,
                         NumberOfFrames=t_count, Split=split))
    pd.DataFrame(rows).to_csv(data / "FileList.csv", index=False)
    save_json(targets / "meta.json", {"teacher": teacher, "teacher_sha256": "0" * 64, "clips": len(rows)})
    return data, targets
