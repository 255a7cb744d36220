"""Score a student on CAMUS: stream each half-sequence (ED -> ES), Dice/IoU vs the LV label at ED and ES, EF.

- Framing: CAMUS frames are portrait; EchoNet framed its clips as a square around the sector, so each
  sequence is cut (or zero-padded) to the square around its non-zero pixels before the predictor resizes
  it to the model size; masks come back at the native size and are scored there.
- Truth: label 1 (LV cavity) of `patientXXXX_<view>_{ED,ES}_gt`; ED and ES are the cfg's frame numbers.
- Dice/IoU: per-video mean (mean over a view's ED and ES, then over views) and EchoNet's pixel pooling,
  at ED, ES and overall, and per view and per image quality, with bootstrap 90 % intervals.
- EF: single-plane area-length, V = 8A²/(3πL), L = the mask's max Feret diameter (isotropic pixels), from
  the predicted ED/ES masks, compared with the cfg's EF (a biplane clinical value in the real dataset);
  the same estimate from the true masks shows how much of the error is the single-plane method itself.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import pandas as pd

from echodfkd.data.camus import LV_LABEL, PHASES, VIEWS, Camus, CamusSequence
from echodfkd.errors import DatasetError, ModelError
from echodfkd.evaluate.analysis import ef_agreement, ef_area_length, long_axis
from echodfkd.evaluate.segmentation import overlap_rows, summarize_by_phase
from echodfkd.measures.masks import binarize, dice_from_counts
from echodfkd.progress import progress

QUALITIES = ("Good", "Medium", "Poor")
EF_METHOD = "single-plane area-length, V = 8A²/(3πL), L = max Feret diameter of the mask"
FRAMINGS = {
    "box": "the square around the non-zero pixels (zero-padded where it leaves the image)",
    "sector": "EchoNet's square around the fan found by echodfkd.data.sector (as `predict --convert`), "
              "else the box",
}


@dataclass
class ViewItem:
    """One patient's view to score: its files checked, its cfg read."""

    patient: str
    view: str
    quality: str
    ef_ref: float


def parse_views(text: str | Sequence[str]) -> tuple[str, ...]:
    """'4CH,2CH' -> ('4CH', '2CH'), in the given order, upper-cased; unknown names are refused."""
    names = [v.strip().upper() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    bad = [v for v in names if v not in VIEWS]
    if bad or not names:
        raise DatasetError(f"--views: unknown view {', '.join(bad) or '(none)'}; use 4CH, 2CH or 4CH,2CH")
    return tuple(dict.fromkeys(names))


def student_runs(path: str | os.PathLike) -> tuple[list[Path], bool]:
    """([run], False) for a student run directory, (runs, True) for a sweep folder of them; else ModelError."""
    from echodfkd.models.student import CONFIG_NAME, WEIGHTS_NAME

    root = Path(path)
    if not root.exists():
        raise ModelError(f"{root}: student run directory not found")
    if not root.is_dir():
        raise ModelError(f"{root}: is a file; --student takes a run directory ({CONFIG_NAME} + {WEIGHTS_NAME}) "
                         "or a sweep folder of them")
    if (root / CONFIG_NAME).is_file() or (root / WEIGHTS_NAME).is_file():
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (root / name).is_file():
                raise ModelError(f"{root / name}: missing (a student run directory holds {CONFIG_NAME} and "
                                 f"{WEIGHTS_NAME})")
        return [root], False
    runs = sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file()
                  and (p / WEIGHTS_NAME).is_file())
    if not runs:
        raise ModelError(f"{root}: not a student run ({CONFIG_NAME} + {WEIGHTS_NAME}) nor a sweep folder of "
                         "such runs")
    return runs, True


def check_folder(ds: Camus, views: Sequence[str]) -> list[ViewItem]:
    """Every (patient, view) to score, after checking its sequence, ED/ES `_gt` and cfg files exist.

    Raises one DatasetError line naming the first missing file and how many more are missing.
    """
    items, missing = [], {"sequence": [], "_gt": [], "cfg": []}
    for patient in ds.patients():
        folder = ds.patient_dir(patient)
        for view in views:
            if ds.find(patient, view, "half_sequence") is None:
                missing["sequence"].append(folder / f"{patient}_{view}_half_sequence.nii.gz")
                continue
            for phase in PHASES:
                if ds.find(patient, view, phase) is None:
                    missing["sequence"].append(folder / f"{patient}_{view}_{phase}.nii.gz")
                if ds.find(patient, view, phase, gt=True) is None:
                    missing["_gt"].append(folder / f"{patient}_{view}_{phase}_gt.nii.gz")
            cfg = folder / f"Info_{view}.cfg"
            if not cfg.is_file():
                missing["cfg"].append(cfg)
                continue
            info = ds.info(patient, view)
            ef = info.get("EF", info.get("LVef"))
            items.append(ViewItem(patient, view, str(info.get("ImageQuality", "unknown")),
                                  float(ef) if isinstance(ef, (int, float)) else math.nan))
    what = {"_gt": "ED/ES label (_gt) file", "cfg": "Info_<view>.cfg file", "sequence": "image file"}
    for kind in ("_gt", "cfg", "sequence"):
        if missing[kind]:
            more = len(missing[kind]) - 1
            tail = f" (and {more} more missing {what[kind]}s)" if more else ""
            raise DatasetError(f"{missing[kind][0]}: missing{tail}; CAMUS scoring needs every view's "
                               f"half-sequence, ED/ES images, ED/ES _gt labels and Info_<view>.cfg")
    if not items:
        raise DatasetError(f"{ds.root}: no patient has the view(s) {', '.join(views)}")
    return items


def square_box(frames: np.ndarray) -> tuple[int, int, int]:
    """(top, left, side) of the square centred on the non-zero pixels of a (T, H, W) clip."""
    ys, xs = np.nonzero(frames.max(axis=0))
    if ys.size == 0:
        side = max(frames.shape[1:])
        return (frames.shape[1] - side) // 2, (frames.shape[2] - side) // 2, side
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(max(bottom - top, right - left))
    return int((top + bottom - side) // 2), int((left + right - side) // 2), side


def crop_square(frames: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """Cut the (top, left, side) square out of (T, H, W) frames, zero-padding outside the image."""
    top, left, side = box
    t, h, w = frames.shape
    out = np.zeros((t, side, side), frames.dtype)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + side, h), min(left + side, w)
    out[:, y0 - top:y1 - top, x0 - left:x1 - left] = frames[:, y0:y1, x0:x1]
    return out


def uncrop_square(masks: np.ndarray, box: tuple[int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Put (T, side, side) masks back into (T, H, W) at `box` (zero elsewhere): the inverse of crop_square."""
    top, left, side = box
    h, w = shape
    out = np.zeros((len(masks), h, w), masks.dtype)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + side, h), min(left + side, w)
    out[:, y0:y1, x0:x1] = masks[:, y0 - top:y1 - top, x0 - left:x1 - left]
    return out


def predict_sequence(predictor: Any, seq: CamusSequence, framing: str = "box") -> tuple[np.ndarray, str]:
    """Stream the half-sequence through the predictor: uint8 soft LV masks (T, H, W) at the native size,
    and the framing used ('box', 'sector', or 'box' when no sector was found)."""
    fps = seq.info.get("FrameRate")
    fps = float(fps) if isinstance(fps, (int, float)) else 0.0
    if framing == "sector":
        from echodfkd.data.sector import find_sector, frame_clip, to_source
        from echodfkd.errors import VideoError

        try:
            mask, geometry = find_sector(seq.frames)
        except VideoError:
            pass  # too few or too still frames to find the fan: fall back to the box
        else:
            result = predictor.predict_clip(frame_clip(seq.frames, mask, geometry), fps)
            return to_source(result.masks, geometry), "sector"
    elif framing != "box":
        raise DatasetError(f"unknown framing {framing!r}: use {' or '.join(FRAMINGS)}")
    box = square_box(seq.frames)
    result = predictor.predict_clip(crop_square(seq.frames, box), fps)
    return uncrop_square(result.masks, box, seq.frames.shape[1:]), "box"


def isotropic(mask: np.ndarray, spacing: tuple[float, float] | None) -> np.ndarray:
    """Resample a bool mask to square pixels (nearest) so areas and lengths share one scale."""
    if spacing is None or not all(s > 0 for s in spacing) or math.isclose(spacing[0], spacing[1], rel_tol=1e-3):
        return mask
    sy, sx = spacing
    h, w = mask.shape
    size = (w, max(1, int(round(h * sy / sx)))) if sy > sx else (max(1, int(round(w * sx / sy))), h)
    return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def ef_from_masks(ed: np.ndarray, es: np.ndarray, spacing: tuple[float, float] | None = None) -> float:
    """EF (%) by the single-plane area-length method from bool ED and ES masks; NaN when undefined."""
    ed, es = isotropic(ed, spacing), isotropic(es, spacing)
    return float(ef_area_length(ed.sum(), long_axis(ed), es.sum(), long_axis(es)))


def score_view(pred: np.ndarray, truth: np.ndarray, name: str) -> pd.DataFrame:
    """Overlap rows (FileName, Frame, Phase, I, U) of bool (2, H, W) ED/ES predictions vs truth."""
    return overlap_rows(name, pred, truth, [0, 1], list(PHASES))


def score_item(ds: Camus, predictor: Any, item: ViewItem, threshold: float,
               framing: str = "box") -> tuple[pd.DataFrame, dict, dict]:
    """Predict one view and score it: (overlap rows, its per-view row, its ED/ES images and masks)."""
    seq = ds.sequence(item.patient, item.view)
    truth, images = [], []
    for phase in PHASES:
        image, labels = ds.image(item.patient, item.view, phase)
        if labels.shape != seq.frames.shape[1:]:
            raise DatasetError(f"{ds.patient_dir(item.patient)}: {item.patient}_{item.view}_{phase}_gt is "
                               f"{labels.shape}, the half-sequence frames are {seq.frames.shape[1:]}")
        truth.append(labels == LV_LABEL)
        images.append(image)
    soft, used = predict_sequence(predictor, seq, framing)
    pred = binarize(soft[[seq.ed, seq.es]], threshold)
    truth_arr = np.stack(truth)
    name = f"{item.patient}_{item.view}"
    part = score_view(pred, truth_arr, name)
    part["View"], part["Quality"] = item.view, item.quality
    dice = dice_from_counts(part["I"].to_numpy(), part["U"].to_numpy(), "none")
    row = {"FileName": name, "Patient": item.patient, "View": item.view, "Quality": item.quality,
           "Frames": len(seq.frames), "Framing": used, "ED": seq.ed, "ES": seq.es, "Dice_ED": float(dice[0]),
           "Dice_ES": float(dice[1]), "EF_ref": item.ef_ref,
           "EF_pred": ef_from_masks(pred[0], pred[1], seq.spacing),
           "EF_truth": ef_from_masks(truth_arr[0], truth_arr[1], seq.spacing)}
    return part, row, {"images": np.stack(images), "pred": pred, "truth": truth_arr}


def evaluate_camus(ds: Camus, predictor: Any, items: Sequence[ViewItem], threshold: float,
                   log: Callable[[str], None] | None = None, framing: str = "box") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predict and score every item: (overlap rows, one row per view). Masks are not kept (memory)."""
    rows, table = [], []
    for k, item in enumerate(progress(items, desc="camus", total=len(items), unit="view")):
        part, row, _ = score_item(ds, predictor, item, threshold, framing)
        rows.append(part)
        table.append(row)
        if log is not None and (k + 1) % 50 == 0:
            log(f"camus: {k + 1}/{len(items)} views scored")
    per_view = pd.DataFrame(table)
    per_view["Dice_mean"] = (per_view["Dice_ED"] + per_view["Dice_ES"]) / 2
    return pd.concat(rows, ignore_index=True), per_view


def _ef_block(per_view: pd.DataFrame) -> dict:
    out = {"method": EF_METHOD}
    for key, column in (("predicted", "EF_pred"), ("from_true_masks", "EF_truth")):
        agree = ef_agreement(per_view[column].to_numpy(float), per_view["EF_ref"].to_numpy(float))
        if agree["n"] < 3:
            agree["pearson_r"] = None  # a correlation needs at least three views
        err = (per_view[column] - per_view["EF_ref"]).to_numpy(float)
        err = err[np.isfinite(err)]
        agree["rmse"] = float(np.sqrt(np.mean(err ** 2))) if err.size else None
        agree["median_abs_error"] = float(np.median(np.abs(err))) if err.size else None  # robust to the
        # wild single-plane values of a nearly empty ED mask
        out[key] = agree
    return out


def summarize_camus(rows: pd.DataFrame, per_view: pd.DataFrame, n_boot: int = 10000, seed: int = 0) -> dict:
    """Dice/IoU at ED, ES and overall: all views, per view, per image quality; EF agreement likewise."""
    out: dict = {"all": summarize_by_phase(rows, n_boot, seed), "by_view": {}, "by_quality": {},
                 "ef": {"all": _ef_block(per_view), "by_view": {}}}
    for view in VIEWS:
        if (rows["View"] == view).any():
            out["by_view"][view] = summarize_by_phase(rows[rows["View"] == view], n_boot, seed)
            out["ef"]["by_view"][view] = _ef_block(per_view[per_view["View"] == view])
    qualities = list(QUALITIES) + sorted(set(rows["Quality"]) - set(QUALITIES))
    for quality in qualities:
        if (rows["Quality"] == quality).any():
            out["by_quality"][quality] = summarize_by_phase(rows[rows["Quality"] == quality], n_boot, seed)
    return out


def score_run(ds: Camus, items: Sequence[ViewItem], predictor: Any, views: Sequence[str], n_boot: int = 10000,
              log: Callable[[str], None] | None = None,
              framing: str = "box") -> tuple[dict, pd.DataFrame, pd.DataFrame, Callable]:
    """Evaluate one student on the checked items: (metrics, per-view table, overlap rows, example).

    `example(name)` predicts one view again (e.g. the best, median and worst for a figure) and returns its
    ED/ES images, predicted and true masks; keeping every view's masks would not fit in memory on CAMUS.
    """
    threshold = predictor.thresholds["dice"]
    rows, per_view = evaluate_camus(ds, predictor, items, threshold, log, framing)
    by_name = {f"{i.patient}_{i.view}": i for i in items}

    def example(name: str) -> dict:
        return score_item(ds, predictor, by_name[name], threshold, framing)[2]

    summary = summarize_camus(rows, per_view, n_boot)
    config, settings = predictor.config, predictor.settings()
    run = predictor.run_dir
    metrics = {
        "dataset": str(ds.root), "n_patients": len({i.patient for i in items}),
        "student": {"run": str(run) if run else None, "name": run.name if run else "student",
                    "blocks": config.get("blocks"), "layers": config.get("layers"),
                    "filters": config.get("filters"), "params": config.get("params")},
        "settings": {"views": list(views), "warmup": settings["warmup"],
                     "largest_component": settings["largest_component"], "threshold": threshold,
                     "threshold_source": settings["threshold_source"], "model_size": settings["model_size"],
                     "precision": settings["precision"], "framing": framing,
                     "framing_note": FRAMINGS[framing], "framing_fallbacks": int(
                         (per_view["Framing"] != framing).sum()), "bootstrap": n_boot,
                     "truth": "label 1 (LV) of <patient>_<view>_{ED,ES}_gt"},
        "segmentation": {k: summary[k] for k in ("all", "by_view", "by_quality")},
        "ef": summary["ef"],
    }
    return metrics, per_view, rows, example
