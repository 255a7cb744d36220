"""Mask primitives every stage shares: binarisation of uint8 soft masks, overlap counts, Dice and IoU.

Convention (as everywhere in echodfkd): `mask = soft_uint8 >= threshold * 255`. An empty prediction
against an empty truth scores 1.0. Reductions: "mean" of per-item scores, "pooled" pixel pooling
(EchoNet's), "none" the per-item array.
"""

from __future__ import annotations

import numpy as np

from echodfkd.errors import EchoDFKDError

REDUCTIONS = ("mean", "pooled", "none")


class MaskError(EchoDFKDError):
    """Masks have mismatched shapes or an invalid threshold was asked for."""


def binarize(soft: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask ``soft >= threshold * 255`` of a uint8 soft mask (bool input is returned as is)."""
    soft = np.asarray(soft)
    if soft.dtype == bool:
        return soft.copy()
    if not (0.0 <= float(threshold) <= 1.0):
        raise MaskError(f"threshold must be in [0, 1] (fraction of 255), got {threshold}")
    return soft >= float(threshold) * 255.0


def overlap_counts(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-item intersection and union pixel counts; items are all leading axes before (H, W)."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(true, dtype=bool)
    if p.shape != t.shape:
        raise MaskError(f"mask shapes differ: prediction {p.shape} vs truth {t.shape}")
    if p.ndim < 2:
        raise MaskError(f"masks must be at least 2-D (H, W), got shape {p.shape}")
    p = p.reshape(-1, p.shape[-2] * p.shape[-1])
    t = t.reshape(-1, t.shape[-2] * t.shape[-1])
    inter = np.count_nonzero(p & t, axis=1)
    union = np.count_nonzero(p | t, axis=1)
    return inter.astype(np.int64), union.astype(np.int64)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den, with 0/0 (both masks empty) -> 1.0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)  # 0/0 (both empty) -> 1.0


def dice_from_counts(inter: np.ndarray, union: np.ndarray, reduction: str = "mean") -> float | np.ndarray:
    """Dice from per-item intersection/union counts: 2I/(U+I) per item, then reduced."""
    return _reduce(2 * np.asarray(inter), np.asarray(union) + np.asarray(inter), reduction)


def iou_from_counts(inter: np.ndarray, union: np.ndarray, reduction: str = "mean") -> float | np.ndarray:
    """IoU from per-item intersection/union counts: I/U per item, then reduced."""
    return _reduce(np.asarray(inter), np.asarray(union), reduction)


def _reduce(num: np.ndarray, den: np.ndarray, reduction: str) -> float | np.ndarray:
    if reduction == "none":
        return ratio(num, den)
    if reduction == "mean":
        return float(np.mean(ratio(num, den))) if np.size(num) else float("nan")
    if reduction == "pooled":
        return float(ratio(np.sum(num), np.sum(den)))
    raise MaskError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def dice(pred: np.ndarray, true: np.ndarray, reduction: str = "mean") -> float | np.ndarray:
    """Dice of boolean masks (H, W) or (N, H, W); empty vs empty = 1.0."""
    return dice_from_counts(*overlap_counts(pred, true), reduction=reduction)


def iou(pred: np.ndarray, true: np.ndarray, reduction: str = "mean") -> float | np.ndarray:
    """IoU (Jaccard) of boolean masks (H, W) or (N, H, W); empty vs empty = 1.0."""
    return iou_from_counts(*overlap_counts(pred, true), reduction=reduction)
