"""Deliberately corrupted phantom clips, of the kinds found in EchoNet-Dynamic.

Video kinds change the pixels (the ground-truth masks still describe the heart underneath); annotation
kinds change the tracings. The kind names are the reasons `echodfkd check` reports.
"""

from __future__ import annotations

import numpy as np

VIDEO_KINDS = ("blank_frames", "noisy_video")
TRACE_KINDS = ("ed_es_too_close", "multi_annotator")
KINDS = VIDEO_KINDS + TRACE_KINDS
MIN_BLANK = 8


def plan_corruption(rng: np.random.Generator, n_clips: int, fraction: float,
                    kinds: tuple[str, ...] = KINDS) -> list[str | None]:
    """Kind of corruption for each clip index (None = clean); kinds are dealt in turn so all appear."""
    n_bad = int(round(fraction * n_clips))
    if fraction > 0 and n_bad == 0 and n_clips > 0:
        n_bad = 1
    plan: list[str | None] = [None] * n_clips
    first = int(rng.integers(len(kinds)))
    for j, idx in enumerate(rng.permutation(n_clips)[:n_bad]):
        plan[int(idx)] = kinds[(first + j) % len(kinds)]
    return plan


def blank_frames(frames: np.ndarray, rng: np.random.Generator, keep: tuple[int, ...] = ()) -> np.ndarray:
    """Black out a stretch of at least MIN_BLANK consecutive frames, avoiding the frames in `keep`."""
    t = frames.shape[0]
    length = int(min(t - 2, max(MIN_BLANK, rng.integers(MIN_BLANK, max(MIN_BLANK + 1, t // 3)))))
    starts = [s for s in range(1, t - length) if not any(s <= k < s + length for k in keep)]
    start = int(rng.choice(starts)) if starts else 1
    out = frames.copy()
    out[start:start + length] = 0
    return out


def noisy_video(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace the whole clip by strong noise with no anatomy (a probe off the chest, a broken channel)."""
    return rng.integers(0, 256, size=frames.shape, dtype=np.uint8)
