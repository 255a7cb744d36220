"""Threshold calibration on the validation split: the float->bool cut-offs a trained student uses by default.

Convention (as everywhere in echodfkd): `mask = soft_uint8 >= threshold * 255`. Candidate thresholds are
`(k - 0.5) / 255` for k = 1..255, so a threshold selects exactly the soft levels >= k (and 0.5 is the
teacher's own `logit > 0`, i.e. soft >= 128).

- `dice`: maximises the mean per-clip Dice (pixels pooled over the clip's frames) against the teacher's
  binarised masks (target >= 128).
- `afd`: maximises the aFD-consistency of the LV area curve: for every beat's ED/ES frame found on the
  teacher's area curve (`find_phase_frames`), the frame found on the student's curve near it
  (`find_phase_frame`) should be the same; the mean |difference| is minimised. A threshold that leaves the
  student's curve flat (e.g. an empty mask) counts half a clip length per beat, so degenerate cut-offs
  never win.
Ties go to the centre of the widest run of equally good thresholds. For a 2-channel (LV+RV) student the
phase threshold uses LV only and RV gets its own Dice threshold.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from echodfkd.errors import DatasetError
from echodfkd.io.video import resize_frames, resize_masks
from echodfkd.measures.phases import PHASES, find_phase_frame, find_phase_frames
from echodfkd.models.student import Student, check_frame_size
from echodfkd.progress import progress

LEVELS = np.arange(256)


def level_to_threshold(k: int) -> float:
    """The threshold in [0, 1] that keeps soft levels >= k."""
    return (int(k) - 0.5) / 255.0


@torch.inference_mode()
def student_soft(student: Student, frames: np.ndarray, infer_size: int | None = None,
                 device: str | torch.device = "cpu", chunk: int = 64) -> np.ndarray:
    """Soft masks uint8 (T, C, H, W) at the clip's own size for a whole clip, streamed in time chunks."""
    t, h, w = frames.shape
    x = frames if infer_size is None else resize_frames(frames, infer_size)
    for side in x.shape[1:]:
        check_frame_size(side, student.blocks, "inference size", DatasetError)
    state, outs = None, []
    for s in range(0, t, chunk):
        xb = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk])).to(device, torch.float32)[None, :, None]
        logits, state = student(xb, state=state, return_state=True)
        outs.append(torch.round(torch.sigmoid(logits[0].float()) * 255).to(torch.uint8).cpu().numpy())
    soft = np.concatenate(outs)
    if soft.shape[2:] != (h, w):
        soft = np.stack([resize_masks(soft[:, c], (h, w)) for c in range(soft.shape[1])], axis=1)
    return soft


def _plateau_centre(score: np.ndarray, better: str) -> int:
    """Index (level 1..255) of the best score; ties -> centre of the widest run of best values."""
    valid = score[1:]
    best = np.nanmax(valid) if better == "max" else np.nanmin(valid)
    hit = np.isclose(valid, best, rtol=0, atol=1e-12)
    edges = np.diff(np.concatenate(([False], hit, [False])).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    widest = int(np.argmax(ends - starts))
    return 1 + int((starts[widest] + ends[widest] - 1) // 2)


def dice_curve(soft: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Dice (pooled over the clip) at every level k = 0..255 of `soft >= k` vs `teacher >= 128`."""
    fg = teacher >= 128
    hist_fg = np.bincount(soft[fg], minlength=256)
    hist_all = np.bincount(soft.ravel(), minlength=256)
    tp = np.cumsum(hist_fg[::-1])[::-1].astype(np.float64)
    pred = np.cumsum(hist_all[::-1])[::-1].astype(np.float64)
    denom = pred + fg.sum()
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)


def area_curves(soft: np.ndarray) -> np.ndarray:
    """Mask area per frame at every level: (T, 256) with [t, k] = (soft[t] >= k).sum()."""
    t = soft.shape[0]
    flat = soft.reshape(t, -1).astype(np.int64) + 256 * np.arange(t)[:, None]
    hist = np.bincount(flat.ravel(), minlength=256 * t).reshape(t, 256)
    return np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]


def phase_errors(areas: np.ndarray, teacher_area: np.ndarray) -> tuple[np.ndarray, int]:
    """Summed |student frame - teacher frame| over every teacher beat, per level; and the beat count."""
    refs = {p: find_phase_frames(teacher_area, p) for p in PHASES}
    beats = sum(len(r) for r in refs.values())
    err = np.zeros(256)
    if beats == 0:
        return err, 0
    miss = areas.shape[0] / 2.0
    cache: dict[bytes, float] = {}
    for k in range(1, 256):
        curve = areas[:, k]
        key = curve.tobytes()
        if key not in cache:
            if np.ptp(curve) == 0:  # a flat curve (e.g. an empty mask) locates no beat: count misses
                total = miss * beats
            else:
                total = float(sum(abs(find_phase_frame(curve, f, phase) - f)
                                  for phase, frames in refs.items() for f in frames))
            cache[key] = total
        err[k] = cache[key]
    return err, beats


def calibrate(student: Student, clips: Iterable[tuple[np.ndarray, np.ndarray]], channels: tuple[str, ...],
              count: int | None = None, infer_size: int | None = None,
              device: str | torch.device = "cpu") -> dict[str, Any]:
    """Calibrate thresholds over (frames uint8 (T,H,W), targets uint8 (T,C,H,W)) validation clips."""
    student = student.to(device).eval()
    dice_sum = np.zeros((len(channels), 256))
    err_sum, beats, n = np.zeros(256), 0, 0
    sizes: set[tuple[int, int]] = set()  # the sizes the student ran at (predict must use the same)
    for frames, targets in progress(clips, desc="calibrating thresholds", total=count, unit="clip"):
        soft = student_soft(student, frames, infer_size, device)
        sizes.add((infer_size, infer_size) if infer_size else tuple(frames.shape[1:]))
        for c in range(len(channels)):
            dice_sum[c] += dice_curve(soft[:, c], targets[:, c])
        teacher_area = (targets[:, 0] >= 128).reshape(targets.shape[0], -1).sum(1).astype(np.float64)
        e, b = phase_errors(area_curves(soft[:, 0]), teacher_area)
        err_sum += e
        beats += b
        n += 1
    if n == 0:
        raise DatasetError("threshold calibration: the validation split has no clips")
    dice_mean = dice_sum / n
    k_dice = [_plateau_centre(dice_mean[c], "max") for c in range(len(channels))]
    result: dict[str, Any] = {"thresholds": {"dice": level_to_threshold(k_dice[0])}}
    report: dict[str, Any] = {"clips": n, "val_dice": float(dice_mean[0, k_dice[0]]),
                              "val_dice_at_0_5": float(dice_mean[0, 128]),
                              "sizes": sorted([int(h), int(w)] for h, w in sizes)}
    if beats:
        afd = err_sum / beats
        k_afd = _plateau_centre(afd, "min")
        result["thresholds"]["afd"] = level_to_threshold(k_afd)
        report.update(beats=beats, afd_consistency=float(afd[k_afd]), afd_consistency_at_0_5=float(afd[128]))
    else:
        # No beat on the teacher's curves (flat areas): nothing to calibrate on, keep the teacher's cut-off.
        result["thresholds"]["afd"] = 0.5
        report.update(beats=0, afd_note="no ED/ES block on the teacher's val area curves; afd threshold = 0.5")
    if len(channels) > 1:
        result["thresholds_rv"] = {"dice": level_to_threshold(k_dice[1])}
        report["val_dice_rv"] = float(dice_mean[1, k_dice[1]])
    result["calibration"] = report
    return result
