"""Overlap metrics (Dice, IoU) with explicit reductions, bootstrap intervals and dataset summaries.

Reductions, always named in outputs:
- ``"mean"``: mean of per-item scores (an item is one frame of one clip) — the paper's Table 1 when the
  items are the traced ED/ES frames;
- ``"pooled"``: EchoNet's pixel pooling, Dice = 2·ΣI / (ΣU + ΣI), IoU = ΣI / ΣU;
- ``"none"``: the per-item array.

An empty prediction against an empty truth scores 1.0 (perfect agreement on "no LV"), per item and pooled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from echodfkd.errors import DatasetError
from echodfkd.measures.masks import (MaskError, binarize, dice, dice_from_counts, iou, iou_from_counts,
                                     overlap_counts, ratio)


def resampled_sums(data: np.ndarray, n: int = 10000, seed: int = 0) -> np.ndarray:
    """Column sums of `n` bootstrap resamples of the rows of `data` (m, k) -> (n, k).

    Each resample draws m row indices with replacement (int32, in chunks of ~2 M draws) and sums the
    gathered rows column by column; every statistic built from sums (means, pooled ratios) follows.
    """
    data = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    rng = np.random.default_rng(seed)
    m = data.shape[0]
    if m >= 2 ** 31:
        raise MaskError("too many items to bootstrap")
    chunk = max(1, min(n, 2_000_000 // max(m, 1)))
    columns = [np.ascontiguousarray(data[:, j]) for j in range(data.shape[1])]
    out = []
    for start in range(0, n, chunk):
        idx = rng.integers(0, m, size=(min(chunk, n - start), m), dtype=np.int32)
        out.append(np.stack([np.take(col, idx).sum(axis=1) for col in columns], axis=1))
    return np.concatenate(out)


def _pooled(kind: str) -> Callable[[np.ndarray, int], np.ndarray]:
    def stat(sums: np.ndarray, m: int) -> np.ndarray:  # sums (B, 2) of (I, U)
        i, u = sums[:, 0], sums[:, 1]
        return ratio(2 * i, u + i) if kind == "dice" else ratio(i, u)
    return stat


STATS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "mean": lambda sums, m: sums[:, 0] / m,
    "pooled_dice": _pooled("dice"),
    "pooled_iou": _pooled("iou"),
}


def _resample(data: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], n: int, seed: int) -> np.ndarray:
    """Values of a general statistic `fn` over `n` resamples (B, m, ...) of the rows of `data`."""
    rng = np.random.default_rng(seed)
    m = data.shape[0]
    chunk = max(1, min(n, 4_000_000 // max(m * int(np.prod(data.shape[1:], dtype=np.int64)), 1)))
    values = []
    for start in range(0, n, chunk):
        idx = rng.integers(0, m, size=(min(chunk, n - start), m), dtype=np.int64)
        values.append(np.asarray(fn(data[idx]), dtype=np.float64))
    return np.concatenate(values)


def _interval(vals: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(data: np.ndarray, stat: str | Callable[[np.ndarray], np.ndarray] = "mean", n: int = 10000,
                 level: float = 0.90, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic, resampling items (rows of `data`) with replacement.

    `data` is 1-D per-item values for ``stat="mean"``, or (N, 2) per-item (intersection, union) counts
    for ``"pooled_dice"``/``"pooled_iou"``. A callable gets resamples of shape (B, N, ...) and returns (B,).
    level 0.90 gives EchoNet's 5th-95th percentile interval. No items -> (nan, nan).
    """
    data = np.asarray(data, dtype=np.float64)
    if data.shape[0] == 0:
        return float("nan"), float("nan")
    if isinstance(stat, str):
        return _interval(STATS[stat](resampled_sums(data, n, seed), data.shape[0]), level)
    return _interval(_resample(data, stat, n, seed), level)


def summarize_overlap(items: pd.DataFrame, n_boot: int = 10000, seed: int = 0, level: float = 0.90) -> dict:
    """Dice and IoU of overlap rows (columns FileName, I, U), per-video mean and pooled, with bootstrap CIs.

    "per_video_mean": mean over items within each video, then mean over videos (with one traced ED frame
    per video this is the paper's per-video Dice); "pooled": EchoNet's pixel pooling over all items.
    All intervals resample videos (frames of one video are not independent), one shared draw per summary.
    """
    if items.empty:
        return {"n_videos": 0, "n_frames": 0}
    inter = items["I"].to_numpy(np.int64)
    union = items["U"].to_numpy(np.int64)
    per = pd.DataFrame({"FileName": items["FileName"].to_numpy(), "I": inter, "U": union,
                        "dice": dice_from_counts(inter, union, "none"),
                        "iou": iou_from_counts(inter, union, "none")})
    video = per.groupby("FileName", sort=False).agg(dice=("dice", "mean"), iou=("iou", "mean"),
                                                    I=("I", "sum"), U=("U", "sum"))
    table = video[["dice", "iou", "I", "U"]].to_numpy(dtype=np.float64)

    def stats4(sums: np.ndarray, m: int) -> np.ndarray:  # column sums (B, 4) -> (B, 4) statistics
        i, u = sums[:, 2], sums[:, 3]
        return np.stack([sums[:, 0] / m, ratio(2 * i, u + i), sums[:, 1] / m, ratio(i, u)], axis=1)

    m = len(table)
    vals = stats4(resampled_sums(table, n_boot, seed), m)
    point = stats4(table.sum(axis=0)[None], m)[0]
    out: dict = {"n_videos": int(len(video)), "n_frames": int(len(items))}
    for k, (name, kind) in enumerate((("dice", "per_video_mean"), ("dice", "pooled"),
                                      ("iou", "per_video_mean"), ("iou", "pooled"))):
        out[f"{name}_{kind}"] = float(point[k])
        out[f"{name}_{kind}_ci90"] = list(_interval(vals[:, k], level))
    return out


def summarize_by_phase(items: pd.DataFrame, n_boot: int = 10000, seed: int = 0) -> dict:
    """summarize_overlap for the ED rows, the ES rows and all rows (column Phase), keyed ED/ES/overall."""
    out = {"overall": summarize_overlap(items, n_boot, seed)}
    for phase in ("ED", "ES"):
        sub = items[items["Phase"] == phase] if "Phase" in items else items.iloc[:0]
        out[phase] = summarize_overlap(sub, n_boot, seed)
    return out


def overlap_rows(name: str, pred: np.ndarray, true: np.ndarray, frames: np.ndarray,
                 phases: list[str] | None = None) -> pd.DataFrame:
    """Overlap rows (FileName, Frame, Phase, I, U) for boolean masks of matching (N, H, W) shape."""
    inter, union = overlap_counts(pred, true)
    rows = {"FileName": [name] * len(inter), "Frame": np.asarray(frames, dtype=np.int64),
            "I": inter, "U": union}
    if phases is not None:
        rows["Phase"] = phases
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ per clip, then datasets
def tracing_rows(ds, name: str, soft: np.ndarray, threshold: float, path: Path | None = None) -> pd.DataFrame:
    """Overlap rows of a clip's prediction against annotator 0's traces at its traced ED and ES frames."""
    ed, es = ds.traced_frames(name)
    if max(ed, es) >= soft.shape[0]:
        raise DatasetError(f"{path or name}: {soft.shape[0]} frames but the traced frame {max(ed, es)} is "
                           "beyond them")
    true = np.stack([ds.trace_mask(name, f, shape=soft.shape[1:]) for f in (ed, es)])
    return overlap_rows(name, binarize(soft[[ed, es]], threshold), true, [ed, es], ["ED", "ES"])


def frame_rows(name: str, soft: np.ndarray, truth: np.ndarray, threshold: float,
               path: Path | None = None) -> pd.DataFrame:
    """Overlap rows on every frame against boolean truth (T, H, W); the prediction is resized to it."""
    from echodfkd.evaluate.predictions import fit_masks

    if truth.shape[0] != soft.shape[0]:
        raise DatasetError(f"{path or name}: {soft.shape[0]} frames but the reference has {truth.shape[0]}")
    pred = binarize(fit_masks(soft, truth.shape[1:]), threshold)
    return overlap_rows(name, pred, truth, np.arange(truth.shape[0]))


def _iter_predictions(pred_dir: str | os.PathLike, names: Sequence[str]):
    from echodfkd.evaluate.predictions import load_masks

    for name in names:
        path = Path(pred_dir) / f"{name}.npz"
        if not path.is_file():
            raise DatasetError(f"{path}: no prediction for {name}")
        yield name, path, load_masks(path)


def score_vs_tracings(ds, pred_dir: str | os.PathLike, names: Sequence[str], threshold: float = 0.5,
                      n_boot: int = 10000, seed: int = 0) -> dict:
    """Dice/IoU against human tracings at the traced ED/ES frames (ED, ES, overall; mean and pooled)."""
    rows = [tracing_rows(ds, n, soft, threshold, p) for n, p, soft in _iter_predictions(pred_dir, names)]
    return summarize_by_phase(pd.concat(rows) if rows else pd.DataFrame(columns=["FileName", "I", "U"]),
                              n_boot, seed)


def score_vs_ground_truth(ds, pred_dir: str | os.PathLike, names: Sequence[str], threshold: float = 0.5,
                          n_boot: int = 10000, seed: int = 0) -> dict:
    """Dice/IoU against phantom ground truth (`GroundTruth/<name>.npz` key `lv`) on every frame."""
    rows = []
    for name, path, soft in _iter_predictions(pred_dir, names):
        gt = ds.ground_truth(name)
        if gt is None or "lv" not in gt:
            raise DatasetError(f"{ds.root}: no ground-truth LV masks for {name}")
        rows.append(frame_rows(name, soft, np.asarray(gt["lv"], dtype=bool), threshold, path))
    return summarize_overlap(pd.concat(rows) if rows else pd.DataFrame(), n_boot, seed)


def score_vs_teacher(pred_dir: str | os.PathLike, teacher_dir: str | os.PathLike, names: Sequence[str],
                     threshold: float = 0.5, n_boot: int = 10000, seed: int = 0) -> dict:
    """Student-teacher agreement on every frame (teacher targets binarised at 0.5, i.e. logit > 0)."""
    from echodfkd.evaluate.predictions import TEACHER_THRESHOLD

    rows = []
    teachers = dict((n, (p, s)) for n, p, s in _iter_predictions(teacher_dir, names))
    for name, path, soft in _iter_predictions(pred_dir, names):
        truth = binarize(teachers[name][1], TEACHER_THRESHOLD)
        rows.append(frame_rows(name, soft, truth, threshold, path))
    return summarize_overlap(pd.concat(rows) if rows else pd.DataFrame(), n_boot, seed)
