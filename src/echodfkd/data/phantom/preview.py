"""Contact sheets of phantom clips (ED and ES frames with the true LV contour) for a quick look."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from echodfkd.errors import DatasetError
from echodfkd.io.atomic import atomic_path
from echodfkd.io.video import read_video


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _names(root: Path, clips: int) -> list[str]:
    """The first clips of the FileList, clean ones first (corrupted clips say little about realism)."""
    path = root / "FileList.csv"
    if not path.exists():
        raise DatasetError(f"{path}: not found (is {root} a phantom folder?)")
    with open(path, newline="") as fh:
        names = [row["FileName"] for row in csv.DictReader(fh)]
    from echodfkd.data.check import phantom_corrupted_path, read_corrupted

    bad = set(read_corrupted(phantom_corrupted_path(root), missing_ok=True))
    return ([n for n in names if n not in bad] + [n for n in names if n in bad])[:clips]


def write_preview(root: str | os.PathLike, path: str | os.PathLike, clips: int = 4) -> Path:
    """Write a PNG: one row per clip, its first true ED and ES frames with the true LV (and RV) contour."""
    from skimage.measure import find_contours

    plt = _pyplot()
    root, path = Path(root), Path(path)
    names = _names(root, clips)
    fig, axes = plt.subplots(len(names), 2, figsize=(5.2, 2.7 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        gt_path = root / "GroundTruth" / f"{name}.npz"
        if not gt_path.exists():
            raise DatasetError(f"{gt_path}: ground truth not found")
        with np.load(gt_path) as gt:
            lv, rv, ed, es, ef = gt["lv"], gt["rv"], gt["ed"], gt["es"], float(gt["ef"])
        frames, fps = read_video(root / "Videos" / f"{name}.avi")
        for ax, phase, picks in ((row[0], "ED", ed), (row[1], "ES", es)):
            f = int(picks[0]) if len(picks) else 0
            ax.imshow(frames[f], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            for mask, colour in ((lv[f], "#ff3b30"), (rv[f], "#34c759")):
                for c in find_contours(mask.astype(np.float32), 0.5):
                    ax.plot(c[:, 1], c[:, 0], color=colour, linewidth=0.9)
            ax.set_title(f"{name}  {phase} frame {f}\nLV {int(lv[f].sum())} px, EF {ef:.0f}%, {fps:.0f} fps",
                         fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{root.name}: true LV (red) and RV (green)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def side_by_side(path: str | os.PathLike, images: list[np.ndarray], titles: list[str]) -> Path:
    """Write grey images next to each other with titles (e.g. a phantom frame beside a real one)."""
    plt = _pyplot()
    path = Path(path)
    fig, axes = plt.subplots(1, len(images), figsize=(2.8 * len(images), 3.0), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
