"""Predict a folder of clips into a predictions folder (resumable), and pick clean clips for the alert.

`PRED/<FileName>.npz` holds `masks` (uint8 soft, T,H,W), `areas` (pixels at the aFD threshold), `rv` for
a 2-channel student, and `info` (a JSON string: fps, phases, alert features, notes). A DICOM or scanner
video framed through `echodfkd.data.convert` keeps `masks`/`areas` at the source size and adds
`masks_converted`/`areas_converted` (the 112-px frames the student saw) and `info["conversion"]` (the
crop box and sector geometry; docs/formats.md). Tables are rebuilt
from the npz files at the end, so an interrupted run resumes where it stopped and the alert is re-scored
with the current calibration.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from echodfkd.errors import DatasetError, EchoDFKDError, VideoError
from echodfkd.io.atomic import save_json, save_npz, save_text
from echodfkd.io.records import PredictionsMeta, RecordError
from echodfkd.io.video import read_video, video_info, write_color_video
from echodfkd.measures.masks import binarize
from echodfkd.progress import progress
from echodfkd.stream.alert import FEATURES, score_features
from echodfkd.stream.postprocess import overlay_frames
from echodfkd.stream.predictor import Predictor

VIDEO_SUFFIXES = (".avi", ".mp4")
CONVERT_MODES = ("auto", "on", "off")
#: Settings that must match for a rerun into the same folder to resume it.
IDENTITY = ("model", "backend", "onnx", "precision", "threshold_dice", "threshold_afd", "warmup",
            "largest_component", "model_size")


@dataclass
class ClipSource:
    """One clip to predict: its name, file and a loader returning (frames, fps)."""

    name: str
    path: Path
    load: Callable[[], tuple[np.ndarray, float]]
    #: For DICOM / scanner exports: `echodfkd.data.convert.prepare_clip`'s mode ("auto", "on"); None: `load`.
    convert: str | None = None

    def frames_hint(self) -> int:
        """Frame count from the header (0 when unknown)."""
        try:
            return video_info(self.path).frames
        except VideoError:
            return 0


def _file_source(path: Path, convert: str) -> ClipSource:
    """A video or DICOM file: DICOM is always decoded by the conversion (framed unless "off"); videos are
    framed per `convert` ("auto" leaves 112x112 ones as they are, like EchoNet's own)."""
    from echodfkd.data.dicom import is_dicom

    mode: str | None = convert
    if not is_dicom(path):
        if convert == "off":
            mode = None
        elif convert == "auto":
            try:
                info = video_info(path)
                mode = None if (info.height, info.width) == (112, 112) else "auto"
            except VideoError:
                mode = None  # the plain reader names the problem when the clip is loaded
    return ClipSource(path.stem, path, lambda: read_video(path), convert=mode)


def find_clips(path: str | os.PathLike, split: str | None = None, convert: str = "auto") -> list[ClipSource]:
    """Clips of a video/DICOM file, a dataset folder (FileList.csv + Videos/) or a folder of videos/DICOM.

    `convert` applies to files outside dataset folders: "auto" frames DICOM and scanner videos like
    EchoNet (`echodfkd.data.convert.prepare_clip`), "on" always, "off" never (DICOM is then only decoded).
    """
    if convert not in CONVERT_MODES:
        raise EchoDFKDError(f"convert must be one of {', '.join(CONVERT_MODES)}, got {convert!r}")
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: not found")
    if path.is_file():
        if split:
            raise DatasetError(f"{path}: --split applies to a dataset folder (FileList.csv), not a video file")
        return [_file_source(path, convert)]
    if (path / "FileList.csv").is_file():
        from echodfkd.data import open_dataset

        ds = open_dataset(path)
        names = ds.names(split)
        if not names:
            raise DatasetError(f"{path}: no clips in split {split or 'all'}")
        return [ClipSource(n, ds.video_path(n), (lambda n=n: ds.video(n))) for n in names]
    if split:
        raise DatasetError(f"{path}: --split needs a dataset folder with FileList.csv")
    from echodfkd.data.convert import is_convertible

    suffixes = VIDEO_SUFFIXES if convert == "off" else None
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and (p.suffix.lower() in suffixes if suffixes else is_convertible(p)))
    if not files:
        raise DatasetError(f"{path}: no .avi/.mp4 videos, no DICOM files and no FileList.csv in this folder")
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        raise DatasetError(f"{path}: two videos share a name (e.g. .avi and .mp4); outputs are named by it")
    return [_file_source(p, convert) for p in files]


@dataclass
class _Loaded:
    """A clip's frames for the student, and (when converted) how to map its masks back to the source."""

    frames: np.ndarray
    fps: float
    geometry: Any = None
    conversion: dict[str, Any] | None = None
    source: np.ndarray | None = None  # source frames, for overlays


def _load(src: ClipSource, keep_source: bool = False) -> _Loaded:
    """Decode a clip, through the conversion when the source asks for it."""
    if src.convert is None:
        frames, fps = src.load()
        return _Loaded(frames, fps)
    from echodfkd.data.convert import prepare_clip

    clip = prepare_clip(src.path, mode=src.convert, keep_source=keep_source)
    record = {"kind": clip.kind, "source_size": list(clip.source_shape), "fps_source": clip.fps_source,
              "converted": clip.converted, "notes": clip.notes,
              "geometry": clip.geometry.to_dict() if clip.geometry is not None else None}
    return _Loaded(clip.frames, clip.fps, clip.geometry, record, clip.source if clip.converted else None)


def _load_done(npz: Path) -> dict[str, Any] | None:
    """A finished clip's arrays and info, or None when absent/unreadable (then it is predicted again)."""
    if not npz.is_file():
        return None
    try:
        with np.load(npz, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
        out["info"] = json.loads(str(out["info"]))
        return out
    except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError):
        return None


def _check_identity(out: Path, settings: dict[str, Any]) -> None:
    try:
        record = PredictionsMeta.read_or_none(out)
    except RecordError:  # unreadable, or another kind of folder's meta: the new predictions replace it
        return
    if record is None:
        return
    old = record.to_dict()
    diff = [k for k in IDENTITY if k in old and old[k] != settings.get(k)]
    if diff:
        k = diff[0]
        raise EchoDFKDError(f"{out}: holds predictions made with other settings ({k} {old[k]!r}, now "
                            f"{settings.get(k)!r}); use another --out or delete the folder")


def predict_to_folder(predictor: Predictor, sources: list[ClipSource], out: str | os.PathLike,
                      overlay: bool = False, echo: Callable[[str], None] = print,
                      skip_unreadable: bool = True, streams: int = 1) -> dict[str, Any]:
    """Predict every clip into `out` (skipping finished ones) and write the tables; returns meta.json.

    An unreadable clip is reported and skipped (listed under `failed`), or raised without `skip_unreadable`.
    `streams` > 1 streams that many clips at once through one batched engine (`stream.multistream`).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EchoDFKDError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    settings = predictor.settings()
    _check_identity(out, settings)
    PredictionsMeta.parse(dict(settings, status="running"), out / PredictionsMeta.FILE).write(out)
    todo = [s for s in sources if _load_done(out / f"{s.name}.npz") is None]
    failed: dict[str, str] = {}
    timing = {"frames": 0, "seconds": 0.0}

    def one(src: ClipSource, predictor: Predictor) -> Iterator[int]:
        """Predict and save one clip through `predictor` (perhaps one stream of many); yields 1 per frame."""
        try:
            loaded = _load(src, keep_source=overlay)
            frames, fps = loaded.frames, loaded.fps
        except EchoDFKDError as exc:
            if not skip_unreadable:
                raise
            failed[src.name] = str(exc)
            echo(f"skipped {src.name}: {exc}")
            return
        start, results = time.perf_counter(), []
        for r in predictor.stream_clip(frames):
            results.append(r)
            yield 1
        clip = predictor.finish_clip(results, fps)
        timing["frames"] += len(results)
        timing["seconds"] += time.perf_counter() - start
        info = {"fps": clip.fps, "phases": clip.phases, "features": clip.alert.features,
                "notes": clip.notes, "frames": int(len(results)), "size": list(clip.masks.shape[1:])}
        arrays = {"masks": clip.masks, "areas": clip.areas}
        if clip.rv is not None:
            arrays["rv"] = clip.rv
        if loaded.conversion is not None:
            info["conversion"] = loaded.conversion
            if loaded.geometry is not None:
                arrays.update(_to_source(arrays, loaded.geometry, predictor.thresholds["afd"]))
                info["size"] = list(arrays["masks"].shape[1:])
        arrays["info"] = np.array(json.dumps(info))
        save_npz(out / f"{src.name}.npz", **arrays)
        if overlay:
            shown = loaded.source if loaded.source is not None else frames
            _write_overlay(out, src.name, shown, arrays["masks"], clip.fps, predictor)

    def run() -> Iterator[int]:
        if streams > 1:
            from echodfkd.stream.folder_streams import run_streams

            runner = run_streams(predictor, todo, one, streams)  # builds the batched engine, untimed
            start, frames = time.perf_counter(), 0
            for tick in runner:
                frames += tick
                yield tick
            timing.update(frames=frames, seconds=time.perf_counter() - start)  # clips overlap: aggregate fps
            return
        for src in todo:
            yield from one(src, predictor)

    total = sum(s.frames_hint() for s in todo)
    for _ in progress(run(), desc="predict", total=total or None, unit="frame"):
        pass
    if overlay:  # clips finished by an earlier run without --overlay
        for src in sources:
            if src.name not in failed and not (out / "overlays" / f"{src.name}.avi").is_file():
                done = _load_done(out / f"{src.name}.npz")
                if done is not None:
                    loaded = _load(src, keep_source=True)
                    shown = loaded.source if loaded.source is not None else loaded.frames
                    _write_overlay(out, src.name, shown, done["masks"], loaded.fps, predictor)
    return _write_tables(out, predictor, [s.name for s in sources if s.name not in failed], settings,
                         failed, timing, echo)


def _to_source(arrays: dict[str, np.ndarray], geometry: Any, afd: float) -> dict[str, np.ndarray]:
    """Masks mapped back to the source frame (`masks`, `areas`, `rv`), the converted ones kept aside."""
    from echodfkd.data.sector import to_source

    masks = to_source(arrays["masks"], geometry)
    out = {"masks": masks, "areas": binarize(masks, afd).reshape(len(masks), -1).sum(1).astype(np.int64),
           "masks_converted": arrays["masks"], "areas_converted": arrays["areas"]}
    if "rv" in arrays:
        out["rv"], out["rv_converted"] = to_source(arrays["rv"], geometry), arrays["rv"]
    return out


def _write_overlay(out: Path, name: str, frames: np.ndarray, masks: np.ndarray, fps: float,
                   predictor: Predictor) -> None:
    binary = binarize(masks, predictor.thresholds["dice"])
    write_color_video(out / "overlays" / f"{name}.avi", overlay_frames(frames, binary), fps or 50.0)


def _write_tables(out: Path, predictor: Predictor, names: list[str], settings: dict[str, Any],
                  failed: dict[str, str], timing: dict[str, float], echo: Callable[[str], None]) -> dict[str, Any]:
    area_buf = io.StringIO()
    area_buf.write("FileName,Frame,Area\n")
    alert_buf = io.StringIO()
    columns = ["FileName", "Score", "Flagged", "Threshold", "Calibrated", "Reasons", *FEATURES]
    writer = csv.writer(alert_buf, lineterminator="\n")
    writer.writerow(columns)
    phases, flagged = {}, []
    for name in names:
        done = _load_done(out / f"{name}.npz")
        if done is None:
            continue
        info = done["info"]
        area_buf.writelines(f"{name},{i},{int(a)}\n" for i, a in enumerate(done["areas"]))
        phases[name] = dict(fps=info["fps"], **info["phases"])
        verdict = score_features(info["features"], predictor.alert_config)
        writer.writerow([name, f"{verdict.score:.4g}", int(verdict.flagged), f"{verdict.threshold:.4g}",
                         int(verdict.calibrated), "; ".join(verdict.reasons),
                         *[f"{info['features'].get(k, float('nan')):.4g}" for k in FEATURES]])
        if verdict.flagged:
            flagged.append(name)
            nd = next((d for d in range(1, 6) if round(verdict.score, d) != round(verdict.threshold, d)), 6)
            echo(f"ALERT {name}: score {verdict.score:.{nd}f} > {verdict.threshold:.{nd}f}: "  # never "3.0 > 3.0"
                 f"{'; '.join(verdict.reasons)}")
    save_text(out / "areas.csv", area_buf.getvalue())
    save_text(out / "alerts.csv", alert_buf.getvalue())
    save_json(out / "phases.json", phases)
    meta = dict(settings, status="done", clips=len(phases), flagged=flagged, failed=failed,
                streamed_frames=int(timing["frames"]),
                stream_fps=round(timing["frames"] / timing["seconds"], 1) if timing["seconds"] else None)
    PredictionsMeta.parse(meta, out / PredictionsMeta.FILE).write(out)
    return meta


def clean_clips(root: str | os.PathLike, split: str = "VAL") -> Iterator[tuple[np.ndarray, float]]:
    """(frames, fps) of a dataset split's clips that are not listed as corrupted and pass the video checks."""
    from echodfkd.data import open_dataset
    from echodfkd.data.check import phantom_corrupted_path, read_corrupted
    from echodfkd.data.video_checks import frame_problems

    ds = open_dataset(root)
    listed = set(read_corrupted(phantom_corrupted_path(root), missing_ok=True))
    for name in ds.names(split):
        if name in listed:
            continue
        try:
            frames, fps = ds.video(name)
        except VideoError:
            continue
        if any(reason in ("blank_frames", "noisy_video") for reason, _ in frame_problems(frames)):
            continue
        yield frames, fps
