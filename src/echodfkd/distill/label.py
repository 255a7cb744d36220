"""Teacher labelling: every frame of every clip -> `targets/<FileName>.npz` soft masks (resumable, sharded).

Each clip's key (`masks`, or `rv` for a second teacher) holds uint8 (T,H,W) = round(255*sigmoid(logit)).
Frames are batched across clip boundaries; decoding and compressed writing run in background threads
so the network stays busy. Files are written atomically and existing ones are skipped, so a rerun
resumes; `shard=(i, n)` gives process i every n-th clip of the sorted list, so n processes never overlap.
"""

from __future__ import annotations

import collections
import os
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from echodfkd.errors import DatasetError, EchoDFKDError
from echodfkd.io.atomic import save_npz
from echodfkd.launch import check_shard, launcher_rank_world, local_rank, parse_shard
from echodfkd.io.records import RecordError, TargetsMeta
from echodfkd.teacher.model import Teacher, load_teacher, weights_hash

META_NAME = "meta.json"
CHANNELS = ("masks", "rv")
TARGETS_FORMAT = TargetsMeta.FORMAT


@dataclass
class LabelSummary:
    """What one labelling run did."""

    out: Path
    shard: tuple[int, int]
    clips: int = 0                       # clips in this shard
    labelled: int = 0                    # clips written by this run
    skipped: int = 0                     # clips already labelled (resume)
    frames: int = 0                      # frames labelled by this run
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (FileName, reason)

    @property
    def clips_per_s(self) -> float:
        """Labelled clips per second of this run."""
        return self.labelled / self.seconds if self.seconds > 0 else 0.0

    @property
    def frames_per_s(self) -> float:
        """Labelled frames per second of this run."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-type view for JSON output."""
        return {"out": str(self.out), "shard": list(self.shard), "clips": self.clips, "labelled": self.labelled,
                "skipped": self.skipped, "failed": [list(f) for f in self.failed], "frames": self.frames,
                "seconds": round(self.seconds, 3), "clips_per_s": round(self.clips_per_s, 3),
                "frames_per_s": round(self.frames_per_s, 2)}


# ---------------------------------------------------------------------- sharding
def resolve_shard(shard: tuple[int, int] | str | None) -> tuple[int, int]:
    """The shard to label: the given one, else the launcher's rank/world (torchrun, srun), else all (0/1)."""
    if isinstance(shard, str):
        return parse_shard(shard)
    if shard is not None:
        return check_shard(shard)
    return launcher_rank_world()


def shard_names(names: Iterable[str], shard: tuple[int, int]) -> list[str]:
    """Every N-th clip of the sorted, de-duplicated names, from position i (a partition over i)."""
    i, n = shard
    return sorted(set(names))[i::n]


# ---------------------------------------------------------------------- meta.json
def teacher_record(teacher: Teacher, source: str | os.PathLike | None = None) -> dict[str, Any]:
    """Identity of a teacher as stored in meta.json."""
    record = {"arch": teacher.arch, "weights_hash": weights_hash(teacher), **teacher.normalisation}
    if source is not None:
        record["source"] = str(source)
    return record


def _same_teacher(a: dict, b: dict) -> bool:
    keys = ("arch", "weights_hash", "mean", "std")
    return all(np.allclose(a.get(k), b.get(k)) if k in ("mean", "std") else a.get(k) == b.get(k) for k in keys)


def read_meta(out: str | os.PathLike) -> dict[str, Any] | None:
    """The targets folder's meta.json, or None when absent."""
    path = Path(out) / META_NAME
    if not path.is_file():
        return None
    try:
        return TargetsMeta.read(path).to_dict()
    except RecordError as exc:
        raise DatasetError(f"{exc}; delete it or use --overwrite") from None


def _update_meta(out: Path, channel: str, record: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Check that `out` holds targets of this teacher for `channel` (or none yet) and record it."""
    try:
        meta = read_meta(out)
    except DatasetError:
        if not overwrite:
            raise
        meta = None
    meta = meta or {}
    channels = meta.get("channels") if isinstance(meta.get("channels"), dict) else {}
    previous = channels.get(channel)
    if previous and not overwrite and not _same_teacher(previous, record):
        raise DatasetError(
            f"{out / META_NAME}: the '{channel}' targets there come from another teacher "
            f"({previous.get('arch')} {str(previous.get('weights_hash'))[:12]} vs {record['arch']} "
            f"{record['weights_hash'][:12]}); use another --out, or --overwrite to relabel")
    channels[channel] = record
    meta.update({"channels": channels,
                 "encoding": "uint8 = round(255 * sigmoid(teacher logit)); foreground where >= 128"})
    if "masks" in channels:
        meta["teacher"] = channels["masks"]
    TargetsMeta.parse(meta, out / META_NAME).write(out / META_NAME)
    return meta


# ---------------------------------------------------------------------- per-clip files
def _stored_keys(path: Path) -> set[str] | None:
    """Array names in an existing npz, or None when the file does not exist."""
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path}: unreadable targets file ({exc}); delete it and rerun") from None


def _write_target(path: Path, channel: str, soft: np.ndarray) -> None:
    """Write one channel of a clip's targets, keeping the file's other channels (e.g. `rv` beside `masks`)."""
    arrays: dict[str, np.ndarray] = {}
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files if k != channel}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(f"{path}: unreadable targets file ({exc}); delete it and rerun") from None
        for key, other in arrays.items():
            if other.shape != soft.shape:
                raise DatasetError(f"{path}: existing '{key}' has shape {other.shape}, the new '{channel}' "
                                   f"{soft.shape}; the two teachers must label the same clips")
    arrays[channel] = soft
    save_npz(path, **arrays)


class _Clip:
    """A clip being labelled: its frames and the soft masks filled in batch by batch."""

    def __init__(self, name: str, frames: np.ndarray):
        self.name, self.frames = name, frames
        self.soft = np.empty(frames.shape, dtype=np.uint8)
        self.fed = 0      # frames handed to a batch
        self.done = 0     # frames whose output is stored


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip", dynamic_ncols=True,
                disable=os.environ.get("ECHODFKD_QUIET") == "1")


# ---------------------------------------------------------------------- main entry
def label_dataset(data_root: str | os.PathLike, teacher: Teacher | str | os.PathLike, out: str | os.PathLike,
                  splits: Sequence[str] | str = ("TRAIN", "VAL"), shard: tuple[int, int] | str | None = None,
                  batch_size: int = 64, channel: str = "masks", device: str | torch.device = "cpu",
                  overwrite: bool = False, arch: str | None = None, names: Sequence[str] | None = None,
                  max_clips: int | None = None, prefetch: int = 4) -> LabelSummary:
    """Label every frame of the chosen clips with the teacher into `out/<FileName>.npz` and `out/meta.json`.

    `teacher` is a Teacher or a checkpoint path (loaded with `arch`). Clips already holding `channel`
    are skipped unless `overwrite`. `names` restricts the clips (default: the splits' clips);
    `max_clips` stops after that many newly labelled clips (incremental runs).
    """
    from echodfkd.data import open_dataset

    if channel not in CHANNELS:
        raise DatasetError(f"unknown target channel {channel!r} (choose from {', '.join(CHANNELS)})")
    if batch_size < 1:
        raise DatasetError(f"batch size must be >= 1, got {batch_size}")
    device = _device(device)
    shard = resolve_shard(shard)
    source = None
    if not isinstance(teacher, Teacher):
        source = Path(teacher)
        teacher = load_teacher(source, arch=arch, device=device)
    teacher = teacher.to(device).eval()

    ds = open_dataset(data_root)
    split_text = splits if isinstance(splits, str) else ",".join(splits)
    pool = list(names) if names is not None else ds.names(split_text)
    unknown = [n for n in pool if n not in ds]
    if unknown:
        raise DatasetError(f"{ds.filelist_path}: no clip named {unknown[0]!r}")
    mine = shard_names(pool, shard)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if channel != "masks":  # a second teacher's channel sits beside the LV targets that distill trains on
        present = (read_meta(out) or {}).get("channels") or {}
        if "masks" not in present:
            raise DatasetError(f"{out}: no LV targets ('masks') here yet; label with the LV teacher first, "
                               f"then add --channel {channel}")
    out.mkdir(parents=True, exist_ok=True)
    _update_meta(out, channel, teacher_record(teacher, source), overwrite)

    summary = LabelSummary(out=out, shard=shard, clips=len(mine))
    todo = []
    for name in mine:
        keys = _stored_keys(out / f"{name}.npz")
        if keys is not None and channel in keys and not overwrite:
            summary.skipped += 1
        else:
            todo.append(name)
    if max_clips is not None:
        todo = todo[:max(0, int(max_clips))]

    start = time.perf_counter()
    with torch.inference_mode():
        _run(ds, teacher, todo, out, channel, batch_size, summary, prefetch, start,
             desc=f"label {channel}" + (f" {shard[0]}/{shard[1]}" if shard[1] > 1 else ""))
    summary.seconds = time.perf_counter() - start
    return summary


def _device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    # Under torchrun or srun each process takes the GPU of its local rank.
    if device.type == "cuda" and device.index is None and local_rank() is not None:
        device = torch.device("cuda", local_rank())
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EchoDFKDError(f"device {device} requested but CUDA is not available (use --device cpu)")
    return device


def _run(ds, teacher: Teacher, todo: list[str], out: Path, channel: str, batch_size: int,
         summary: LabelSummary, prefetch: int, start: float, desc: str) -> None:
    """Decode (thread) -> batched teacher forward (main thread) -> compressed atomic writes (thread)."""
    reader, writer = ThreadPoolExecutor(1, "label-read"), ThreadPoolExecutor(1, "label-write")
    reads: collections.deque[tuple[str, Future]] = collections.deque()
    writes: collections.deque[Future] = collections.deque()
    queue = iter(todo)
    active: collections.deque[_Clip] = collections.deque()   # clips with frames not yet labelled
    bar = _bar(len(todo), desc)

    def refill() -> None:
        while len(reads) < max(1, prefetch):
            name = next(queue, None)
            if name is None:
                return
            reads.append((name, reader.submit(ds.video, name)))

    def next_clip() -> _Clip | None:
        while True:
            refill()
            if not reads:
                return None
            name, fut = reads.popleft()
            try:
                frames, _ = fut.result()
            except EchoDFKDError as exc:
                summary.failed.append((name, str(exc)))
                bar.update(1)
                continue
            return _Clip(name, frames)

    def finish(clip: _Clip) -> None:
        writes.append(writer.submit(_write_target, out / f"{clip.name}.npz", channel, clip.soft))
        while len(writes) > 2 or (writes and writes[0].done()):
            writes.popleft().result()   # surfaces write errors; bounds memory held by pending writes
        summary.labelled += 1
        summary.frames += len(clip.frames)
        elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"{summary.frames / max(elapsed, 1e-9):.1f} frames/s", refresh=False)
        bar.update(1)

    def run_batch(pieces: list[tuple[_Clip, int, int]]) -> None:
        x = torch.from_numpy(np.concatenate([c.frames[a:b] for c, a, b in pieces]))
        logits = teacher(x, chunk=len(x))
        soft = torch.sigmoid(logits).mul_(255.0).round_().to(torch.uint8).cpu().numpy()
        k = 0
        for c, a, b in pieces:
            c.soft[a:b] = soft[k:k + b - a]
            c.done += b - a
            k += b - a
        while active and active[0].done == len(active[0].frames):
            finish(active.popleft())

    try:
        exhausted = False
        while True:
            # Gather up to batch_size frames of one frame size, across clip boundaries.
            pieces, count, shape = [], 0, None
            for c in active:
                if c.fed < len(c.frames):
                    shape = c.frames.shape[1:]
                    break
            while count < batch_size:
                clip = next((c for c in active if c.fed < len(c.frames)), None)
                if clip is None:
                    if exhausted:
                        break
                    clip = next_clip()
                    if clip is None:
                        exhausted = True
                        break
                    active.append(clip)
                if shape is not None and clip.frames.shape[1:] != shape:
                    break   # a new frame size starts the next batch
                shape = clip.frames.shape[1:]
                take = min(batch_size - count, len(clip.frames) - clip.fed)
                pieces.append((clip, clip.fed, clip.fed + take))
                clip.fed += take
                count += take
            if not pieces:
                break
            run_batch(pieces)
        while writes:
            writes.popleft().result()
    finally:
        bar.close()
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True)
