"""Reading prediction and teacher-target folders: `<FileName>.npz` soft masks and `meta.json`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from echodfkd.errors import DatasetError
from echodfkd.io.records import read_folder_meta
from echodfkd.io.video import resize_masks

#: The teacher's own rule, logit > 0, on round(255·sigmoid) targets.
TEACHER_THRESHOLD = 0.5


def load_masks(path: Path, key: str = "masks") -> np.ndarray:
    """The uint8 (T, H, W) soft masks of a prediction/target npz, or a DatasetError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                raise DatasetError(f"{path}: no '{key}' array (has {', '.join(data.files) or 'nothing'})")
            masks = data[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: unreadable npz ({exc})") from None
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise DatasetError(f"{path}: '{key}' must be (T, H, W) with T > 0, got {masks.shape}")
    if masks.dtype == bool:
        masks = masks.astype(np.uint8) * 255
    elif masks.dtype != np.uint8:
        raise DatasetError(f"{path}: '{key}' must be uint8 soft masks (0-255), got {masks.dtype}")
    return masks


def read_meta(pred_dir: Path) -> dict:
    """PRED/meta.json as a dict ({} when absent)."""
    record = read_folder_meta(pred_dir)  # thresholds checked: numbers in [0, 1] (fractions of 255)
    return record.to_dict() if record is not None else {}


def fit_masks(soft: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Soft masks resized to (H, W) when their size differs (e.g. predictions at another resolution)."""
    return soft if soft.shape[1:] == tuple(shape) else resize_masks(soft, tuple(shape))
