"""Per-frame post-processing of student outputs: soft masks, largest component, overlays."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from echodfkd.measures.masks import binarize


def logits_to_soft(logits: np.ndarray) -> np.ndarray:
    """uint8 soft mask round(255 * sigmoid(logit)), the teacher-target convention."""
    x = np.clip(np.asarray(logits, dtype=np.float32), -30.0, 30.0)
    return np.rint(255.0 / (1.0 + np.exp(-x))).astype(np.uint8)


def keep_largest_component(soft: np.ndarray, threshold: float) -> np.ndarray:
    """Zero a soft mask (H, W) outside the largest 8-connected region of `soft >= threshold * 255`.

    Use the lowest threshold any consumer will apply, so every binarisation at or above it sees one region.
    """
    region = binarize(soft, threshold)
    count, labels = cv2.connectedComponents(region.view(np.uint8), connectivity=8)  # ~3x scipy's label
    if count <= 2:  # background and at most one region
        return soft
    sizes = np.bincount(labels.ravel(), minlength=count)
    sizes[0] = 0
    keep = np.flatnonzero(sizes == sizes.max())
    if len(keep) > 1:  # a tie: the region met first in raster order (as scipy.ndimage.label numbers them)
        first = np.full(count, labels.size)
        np.minimum.at(first, labels.ravel(), np.arange(labels.size))
        keep = keep[np.argsort(first[keep], kind="stable")]
    return np.where(labels == int(keep[0]), soft, 0).astype(np.uint8)


def overlay_frames(frames: np.ndarray, masks: np.ndarray, color: tuple[int, int, int] = (255, 64, 64),
                   alpha: float = 0.35) -> np.ndarray:
    """RGB frames (T, H, W, 3): grayscale video tinted under the binary masks, with a bright outline."""
    rgb = np.repeat(frames[..., None], 3, axis=-1).astype(np.float32)
    tint = np.asarray(color, dtype=np.float32)
    m = masks.astype(bool)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * tint
    edge = m & ~ndimage.binary_erosion(m, structure=np.ones((1, 3, 3), dtype=bool), border_value=0)
    rgb[edge] = tint
    return np.clip(rgb, 0, 255).astype(np.uint8)
