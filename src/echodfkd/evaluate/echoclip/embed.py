"""Frame embeddings in batches, cached per clip and mask variant as .npz (prompt-independent).

A cache file is `CACHE/<model key>/<clip>/<variant>-<digest>.npz` with key `emb` (T,D) float32. The
digest covers the model key, the variant and the exact inputs (file hashes of the video and the mask
file, threshold, dilation), so a changed input never reuses a stale embedding, while repeated
evaluations, new prompts and several predictions folders on the same clips cost nothing extra.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from echodfkd.io.atomic import save_npz
from echodfkd.io.cache import cache_folder
from echodfkd.io.records import file_sha256
from echodfkd.progress import progress

CACHE_VERSION = 1  # bump when the way inputs are built changes


def default_cache_dir() -> Path:
    """The embedding cache: the echodfkd cache's echoclip/ subfolder (io/cache.py)."""
    return cache_folder("echoclip")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a (small) input file such as a video or a mask .npz."""
    return file_sha256(path)


@dataclass
class EmbedJob:
    """One clip under one variant: `make_frames()` builds its uint8 (T,H,W) input frames on demand."""

    clip: str
    variant: str
    inputs: str  # everything the frames depend on (file digests, threshold, ...)
    frames: int  # frame count, for the progress bar
    make_frames: Callable[[], np.ndarray]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class FrameEmbedder:
    """Embed frames with a ClipModel in batches, reading and writing the per-clip cache."""

    def __init__(self, model, cache_dir: str | os.PathLike | None, batch_size: int = 32):
        self.model = model
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = max(1, int(batch_size))
        self.computed_frames = 0  # frames run through the image tower by this embedder
        self._memory: dict[str, np.ndarray] = {}  # used when there is no cache folder

    def path(self, job: EmbedJob) -> Path | None:
        """Cache file of a job (None without a cache folder)."""
        if self.cache_dir is None:
            return None
        text = f"v{CACHE_VERSION}|{self.model.key}|{job.clip}|{job.variant}|{job.inputs}"
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        return self.cache_dir / self.model.key / _safe(job.clip) / f"{_safe(job.variant)}-{digest}.npz"

    def _memo_key(self, job: EmbedJob) -> str:
        return f"{job.clip}|{job.variant}|{job.inputs}"

    def cached(self, job: EmbedJob) -> np.ndarray | None:
        """The cached embeddings of a job, or None (a damaged cache file counts as missing)."""
        p = self.path(job)
        if p is None:
            return self._memory.get(self._memo_key(job))
        if not p.is_file():
            return None
        try:
            with np.load(p) as z:
                return z["emb"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            return None

    def _batches(self, frames: np.ndarray, ticks: Iterator[int]) -> Iterator[np.ndarray]:
        # Pull one progress tick per frame so the bar shows frames/s across all jobs.
        buf: list[np.ndarray] = []
        for f in frames:
            next(ticks, None)
            buf.append(f)
            if len(buf) == self.batch_size:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)

    def _compute(self, frames: np.ndarray, ticks: Iterator[int]) -> np.ndarray:
        out = []
        for batch in self._batches(frames, ticks):
            out.append(self.model.encode_images(self.model.preprocess_frames(batch)))
            self.computed_frames += len(batch)
        return np.concatenate(out, axis=0).astype(np.float32)

    def _has(self, job: EmbedJob) -> bool:
        p = self.path(job)
        return self._memo_key(job) in self._memory if p is None else p.is_file()

    def _store(self, job: EmbedJob, emb: np.ndarray) -> None:
        p = self.path(job)
        if p is None:
            self._memory[self._memo_key(job)] = emb
        else:
            save_npz(p, emb=emb)  # atomic: an interrupted run leaves no half-written file

    def ensure(self, jobs: Sequence[EmbedJob], desc: str = "EchoCLIP embeddings") -> int:
        """Compute and cache every job not cached yet (one progress bar in frames/s); frames computed."""
        todo = [j for j in jobs if not self._has(j)]
        before = self.computed_frames
        if todo:
            total = sum(j.frames for j in todo)
            ticks = progress(range(total), desc=desc, total=total, unit="frame")
            for job in todo:
                self._store(job, self._compute(job.make_frames(), ticks))
            for _ in ticks:  # finish the bar if a job had fewer frames than its header said
                pass
        return self.computed_frames - before

    def get(self, job: EmbedJob) -> np.ndarray:
        """Embeddings of one job: from the cache, or computed now (a damaged cache file is redone)."""
        emb = self.cached(job)
        if emb is None:
            emb = self._compute(job.make_frames(), iter(()))
            self._store(job, emb)
        return emb

    def missing_frames(self, jobs: Iterable[EmbedJob]) -> int:
        """Frames still to compute for these jobs."""
        return sum(j.frames for j in jobs if not self._has(j))
