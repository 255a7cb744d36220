"""Run the EchoCLIP evaluation over a dataset folder and one or more predictions folders.

Two passes: the first lists every (clip, variant) embedding job and computes the uncached ones under
one progress bar; the second reads the embeddings back and scores each clip and each model. A
predictions folder holds `<FileName>.npz` (key `masks`, uint8 soft); a folder holding no .npz but
subfolders that do is a *sweep*: each subfolder is one model and its size comes from its meta.json
(`params`) or config.json, for the scores-by-model-size table (paper Fig. 3, right axis).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from echodfkd.errors import DatasetError, EchoDFKDError
from echodfkd.evaluate.echoclip import scores as sc
from echodfkd.evaluate.echoclip.embed import EmbedJob, FrameEmbedder, file_digest
from echodfkd.io.records import StudentConfig, read_folder_meta
from echodfkd.io.video import resize_masks
from echodfkd.measures.masks import binarize
from echodfkd.measures.phases import PHASES

PARAM_KEYS = ("params", "num_params", "n_params", "parameters")


@dataclass
class Predictions:
    """One model's predictions folder."""

    name: str
    root: Path
    group: str | None = None  # sweep folder it came from
    params: int | None = None
    meta: dict = field(default_factory=dict)

    def path(self, clip: str) -> Path:
        """The .npz of a clip."""
        return self.root / f"{clip}.npz"

    def soft(self, clip: str) -> np.ndarray:
        """The uint8 soft masks (T,H,W) of a clip."""
        p = self.path(clip)
        try:
            with np.load(p, allow_pickle=False) as z:
                if "masks" not in z.files:
                    raise DatasetError(f"{p}: no 'masks' array (has {', '.join(z.files) or 'nothing'})")
                m = z["masks"]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(f"{p}: unreadable predictions ({exc})") from None
        if m.ndim != 3:
            raise DatasetError(f"{p}: masks must be (T,H,W), got shape {m.shape}")
        return m

    @property
    def area_threshold(self) -> float | None:
        """The threshold calibrated for aFD areas, when the folder's meta.json has one."""
        t = self.meta.get("threshold_afd")
        return float(t) if isinstance(t, (int, float)) else None


def model_params(folder: Path, meta: dict) -> int | None:
    """Parameter count from meta.json (params, or model.params) or a student config.json beside it."""
    config = StudentConfig.read_or_none(folder / StudentConfig.FILE)
    for src in (meta, meta.get("model") if isinstance(meta.get("model"), dict) else {},
                config.to_dict() if config is not None else {}):
        for k in PARAM_KEYS:
            if isinstance(src.get(k), (int, float)):
                return int(src[k])
    return None


def _load(folder: Path, name: str, group: str | None) -> Predictions:
    record = read_folder_meta(folder)
    meta = record.to_dict() if record is not None else {}
    return Predictions(name=name, root=folder, group=group, params=model_params(folder, meta), meta=meta)


def discover_predictions(paths: Sequence[str | os.PathLike]) -> list[Predictions]:
    """Predictions folders (a sweep folder expands to its model subfolders), with unique names."""
    found: list[Predictions] = []
    for raw in paths:
        folder = Path(raw)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: predictions folder not found")
        if any(folder.glob("*.npz")):
            found.append(_load(folder, folder.name, None))
            continue
        subs = sorted(d for d in folder.iterdir() if d.is_dir() and any(d.glob("*.npz")))
        if not subs:
            raise DatasetError(f"{folder}: no <FileName>.npz predictions (nor model subfolders holding them)")
        found.extend(_load(d, f"{folder.name}/{d.name}", folder.name) for d in subs)
    names = [p.name for p in found]
    for p in found:  # same basename from different parents: use the longer path
        if names.count(p.name) > 1:
            p.name = str(p.root)
    return found


def human_frames(ds: Any, clip: str) -> dict[str, list[int]]:
    """Human ED/ES frames: EchoNet's traced frames, a phantom's true frames, or {} when none."""
    if getattr(ds, "has_tracings", False):
        try:
            ed, es = ds.traced_frames(clip)
            return {"ED": [int(ed)], "ES": [int(es)]}
        except EchoDFKDError:
            return {}
    gt = ds.ground_truth(clip) if getattr(ds, "has_ground_truth", False) else None
    if gt and "ed" in gt and "es" in gt:
        return {"ED": [int(f) for f in np.ravel(gt["ed"])], "ES": [int(f) for f in np.ravel(gt["es"])]}
    return {}


@dataclass
class Settings:
    """Knobs of the EchoCLIP evaluation (defaults reproduce the paper's method)."""

    threshold: float = 0.5
    dilation: int = sc.DILATION_PX
    prompts: dict = field(default_factory=lambda: dict(sc.DEFAULT_PROMPTS))
    phase_sign: float = 1.0
    split: str | None = "TEST"
    max_clips: int | None = None
    figure_clips: int = 3


class _Clips:
    """Decoded video and binarised masks of the most recent clip (jobs of one clip share them)."""

    def __init__(self, ds: Any, settings: Settings):
        self.ds, self.settings = ds, settings
        self._video: tuple[str, np.ndarray, float] | None = None

    def video(self, clip: str) -> tuple[np.ndarray, float]:
        if self._video is None or self._video[0] != clip:
            frames, fps = self.ds.video(clip)
            self._video = (clip, frames, fps)
        return self._video[1], self._video[2]

    def masks(self, pred: Predictions, clip: str, threshold: float) -> np.ndarray:
        frames, _ = self.video(clip)
        m = binarize(pred.soft(clip), threshold)
        if m.shape[0] != frames.shape[0]:
            raise DatasetError(f"{pred.path(clip)}: {m.shape[0]} mask frames but the video has {frames.shape[0]}")
        if m.shape[1:] != frames.shape[1:]:
            m = resize_masks(m, frames.shape[1:])
        return m.astype(bool)


def raw_job(ds: Any, clip: str, frames: Any = None) -> EmbedJob:
    """The unmasked frames of a clip (cache key: the video's digest), shared by evaluation and screening."""
    path = ds.video_path(clip)
    if not path.is_file():
        raise DatasetError(f"{path}: video not found")
    make = frames if frames is not None else (lambda: ds.video(clip)[0])
    return EmbedJob(clip, "raw", f"video={file_digest(path)}", ds.info(clip).frames, make)


def _jobs(ds: Any, clip: str, preds: list[Predictions], st: Settings, clips: _Clips) -> dict:
    video_sha = file_digest(ds.video_path(clip))
    n = ds.info(clip).frames
    jobs: dict = {"raw": raw_job(ds, clip, lambda: clips.video(clip)[0])}
    for p in preds:
        if not p.path(clip).is_file():
            continue
        base = f"video={video_sha}|masks={file_digest(p.path(clip))}|thr={st.threshold}"
        jobs[(p.name, "wall")] = EmbedJob(
            clip, "wall", base, n, lambda p=p: sc.wall_input(clips.video(clip)[0], clips.masks(p, clip, st.threshold)))
        jobs[(p.name, "lv")] = EmbedJob(
            clip, f"lv-dilate{st.dilation}", base, n,
            lambda p=p: sc.lv_input(clips.video(clip)[0], clips.masks(p, clip, st.threshold), st.dilation))
    return jobs


def _mean(values: list) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def score_clip(clip: str, emb: dict, text: np.ndarray, keys: list[str], human: dict,
               areas: dict[str, np.ndarray], st: Settings) -> tuple[dict, np.ndarray]:
    """Scores of one clip from its embeddings; returns (record, integrated prompt curve)."""
    col = {k: i for i, k in enumerate(keys)}
    raw = sc.similarities(emb["raw"], text)
    curve = sc.phase_curve(raw[:, col["closed"]], raw[:, col["open"]], st.phase_sign)
    found = sc.echoclip_frames(curve, human)
    rec: dict = {
        "frames": int(raw.shape[0]),
        "raw": {k: float(raw[:, col[k]].mean()) for k in ("wall", "lv", "nothing")},
        "human": human,
        "echoclip": {ph: [i["frame"] for i in found[ph]] for ph in PHASES},
        "echoclip_vs_human": sc.echoclip_vs_human(found),
        "models": {},
    }
    for name, area in areas.items():
        sw = sc.similarities(emb[(name, "wall")], text)
        sl = sc.similarities(emb[(name, "lv")], text)
        q = sc.mask_quality(sw[:, col["wall"]], sl[:, col["lv"]], sl[:, col["nothing"]])
        cmp = sc.model_vs_echoclip(area, found)
        q.update({
            "frames": {ph: cmp[ph]["frames"] for ph in PHASES},
            "afd_vs_echoclip": {ph: cmp[ph]["error"] for ph in PHASES},
            "corr_area_curve": sc.correlation(area, curve),
        })
        rec["models"][name] = q
    return rec, curve


def summarize(clips: dict, preds: list[Predictions], thresholds: dict) -> dict:
    """Dataset-level means: EchoCLIP vs humans, per-model scores and aFD vs EchoCLIP, sweeps."""
    recs = list(clips.values())
    out: dict = {
        "clips": len(recs),
        "raw": {k: _mean([r["raw"][k] for r in recs]) for k in ("wall", "lv", "nothing")},
        "echoclip_vs_human": {ph: _mean([r["echoclip_vs_human"][ph] for r in recs]) for ph in PHASES},
        "clips_with_human": sum(any(r["human"].get(ph) for ph in PHASES) for r in recs),
        "models": {},
    }
    for p in preds:
        rows = [r["models"][p.name] for r in recs if p.name in r["models"]]
        m: dict = {k: _mean([r[k] for r in rows]) for k in
                   ("wall", "lv", "nothing", "lv_minus_nothing", "combined")}
        m["afd_vs_echoclip"] = {ph: _mean([r["afd_vs_echoclip"][ph] for r in rows]) for ph in PHASES}
        corr = [r["corr_area_curve"] for r in rows if r["corr_area_curve"] is not None]
        m.update({"corr_area_curve_median": float(np.median(corr)) if corr else None, "clips": len(rows),
                  "missing": len(recs) - len(rows), "params": p.params, "group": p.group,
                  "area_threshold": thresholds[p.name], "folder": str(p.root)})
        out["models"][p.name] = m
    groups = sorted({p.group for p in preds if p.group})
    out["sweeps"] = {g: sorted(({"model": n, **{k: m[k] for k in ("params", "combined", "wall", "lv", "nothing")},
                                 "afd_vs_echoclip": m["afd_vs_echoclip"]}
                                for n, m in out["models"].items() if m["group"] == g),
                               key=lambda r: (r["params"] is None, r["params"] or 0))
                     for g in groups}
    return out


def run_echoclip(data: str | os.PathLike, predictions: Sequence[str | os.PathLike], model: Any,
                 cache_dir: str | os.PathLike | None, settings: Settings | None = None,
                 batch_size: int = 32, fps_override: float | None = None) -> tuple[dict, dict]:
    """Evaluate predictions with an open_clip model; returns (JSON-ready results, figure data)."""
    from echodfkd.data import open_dataset
    st = settings or Settings()
    ds = open_dataset(data, fps_override=fps_override)
    preds = discover_predictions(predictions)
    names = ds.names(st.split)
    if st.max_clips is not None:
        names = names[: max(0, int(st.max_clips))]
    if not names:
        raise DatasetError(f"{data}: no clips in split {st.split or 'all'}")
    if preds and not any(p.path(c).is_file() for p in preds for c in names):
        raise DatasetError(f"{preds[0].path(names[0]).parent}: no prediction for any clip of {data} "
                           f"(split {st.split or 'all'}): predictions of another dataset?")
    missing_keys = {"wall", "lv", "nothing", "closed", "open"} - set(st.prompts)
    if missing_keys:
        raise DatasetError(f"prompts lack {sorted(missing_keys)}")
    clips_io = _Clips(ds, st)
    embedder = FrameEmbedder(model, cache_dir, batch_size)
    jobs = {c: _jobs(ds, c, preds, st, clips_io) for c in names}
    computed = embedder.ensure([j for js in jobs.values() for j in js.values()])
    keys = list(st.prompts)
    text = model.encode_texts([st.prompts[k] for k in keys])
    thresholds = {p.name: (p.area_threshold if p.area_threshold is not None else st.threshold) for p in preds}
    clips: dict = {}
    figures: dict = {}
    for c in names:
        emb = {k: embedder.get(j) for k, j in jobs[c].items()}
        areas = {p.name: binarize(p.soft(c), thresholds[p.name]).sum(axis=(1, 2)).astype(np.float64)
                 for p in preds if (p.name, "wall") in jobs[c]}
        rec, curve = score_clip(c, emb, text, keys, human_frames(ds, c), areas, st)
        rec["fps"] = float(ds.fps(c))
        clips[c] = rec
        if len(figures) < st.figure_clips:
            figures[c] = {"curve": curve, "areas": areas, "fps": rec["fps"], "echoclip": rec["echoclip"],
                          "human": rec["human"]}
    results = {
        "model": {"spec": model.spec, "arch": model.arch, "weights_sha256": model.weights_hash,
                  "weights_file": model.weights_file, "key": model.key, "device": model.device,
                  "precision": model.precision},
        "settings": {"threshold": st.threshold, "dilation_px": st.dilation, "prompts": st.prompts,
                     "phase_sign": st.phase_sign, "split": st.split, "max_clips": st.max_clips,
                     "similarity": "dot product of L2-normalised embeddings, no logit scale"},
        "data": str(data),
        "embeddings": {"computed_frames": computed, "cache": str(cache_dir) if cache_dir else None},
        "summary": summarize(clips, preds, thresholds),
        "per_clip": clips,
    }
    return results, figures
