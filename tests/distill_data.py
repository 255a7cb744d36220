"""Tiny distillation datasets for tests.

- `make_dataset`: pulsating-ellipse clips in the EchoNet layout with hand-made soft targets (LV, optional RV)
  in the labeller's format; quick, and easy to damage for the bad-input tests.
- `labelled_phantom`: phantom clips from `echodfkd.data.phantom` labelled by a tiny teacher through
  `echodfkd.distill.label` (the real pipeline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

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
    record = {"arch": teacher, "weights_hash": "0" * 64}
    channels = {"masks": record, "rv": record} if rv else {"masks": record}
    save_json(targets / "meta.json", {"format": "echodfkd-teacher-targets", "version": 1, "channels": channels,
                                      "teacher": record})
    return data, targets


def tiny_teacher(seed: int = 0) -> Any:
    """A seeded two-conv Teacher with confident outputs (per-frame standardised logits x 8)."""
    from torch import nn

    from echodfkd.teacher.model import Teacher

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.a, self.b = nn.Conv2d(3, 4, 5, padding=2), nn.Conv2d(4, 1, 5, padding=2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            y = self.b(torch.tanh(self.a(x)))
            mean, std = y.mean(dim=(1, 2, 3), keepdim=True), y.std(dim=(1, 2, 3), keepdim=True)
            return {"out": 8 * (y - mean) / (std + 1e-6)}

    return Teacher(Tiny(), arch="tiny-test-teacher").eval()


def labelled_phantom(root: Path, splits: list[str], size: int = 64, frames: int = 30) -> tuple[Path, Path]:
    """A phantom dataset (our generator) with the given splits, labelled by `tiny_teacher` (real labelling path)."""
    from echodfkd.data.phantom import generate_phantom
    from echodfkd.distill.label import label_dataset

    data = generate_phantom(root / "data", len(splits), style="dynamic", seed=0, size=size, frames=frames,
                            workers=1)
    table = pd.read_csv(data / "FileList.csv")
    table["Split"] = splits
    table.to_csv(data / "FileList.csv", index=False)
    targets = root / "targets"
    label_dataset(data, tiny_teacher(), targets, splits=("TRAIN", "VAL"), batch_size=64)
    return data, targets
