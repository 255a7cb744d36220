"""Per-clip video checks for `echodfkd check`: decode once, then look for blank and noise-only frames.

Noise statistic. Echo frames are spatially smooth at 112 px (neighbouring pixels correlate at ~0.85-0.9)
and consecutive frames share most of their content (frame-to-frame correlation ~0.93-0.99 at 50 fps,
still > 0.5 when subsampled to ~8 fps). A frame replaced by noise loses one or both: white noise has
~0 spatial correlation; smooth (blurred) speckle keeps its spatial correlation but is redrawn every
frame, so it no longer correlates with either neighbour. A frame is "noise-like" when its spatial
correlation is below `noise_spatial_corr`, or its best correlation with the previous/next frame is below
`noise_temporal_corr`; a clip is flagged like blank frames are (a long run, or a large fraction).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echodfkd.errors import VideoError
from echodfkd.io.video import read_video, resize_frames

#: Frames larger than this (either side) are reduced before computing statistics (memory, speed).
STATS_MAX_SIDE = 128


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of the dataset checker (defaults suit EchoNet-like 112x112 A4C clips)."""

    min_frames: int = 16            # fewer decoded frames -> too_short
    blank_std: float = 2.0          # a frame whose pixel standard deviation is below this is blank/constant
    blank_run: int = 5              # this many consecutive blank frames -> blank_frames
    blank_fraction: float = 0.2     # or this fraction of all frames
    noise_spatial_corr: float = 0.5   # neighbouring-pixel correlation below this -> noise-like frame
    noise_temporal_corr: float = 0.3  # best correlation with an adjacent frame below this -> noise-like
    noise_run: int = 5              # this many consecutive noise-like frames -> noisy_video
    noise_fraction: float = 0.2     # or this fraction of all frames


@dataclass
class VideoFindings:
    """What checking one clip found: decoded size (None if unreadable) and (reason, detail) pairs."""

    name: str
    shape: tuple[int, int, int] | None
    problems: list[tuple[str, str]]


def longest_run(flags: np.ndarray) -> tuple[int, int]:
    """(length, start) of the longest run of True values (0, -1 when none)."""
    flags = np.asarray(flags, dtype=bool)
    if not flags.any():
        return 0, -1
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best = int(np.argmax(ends - starts))
    return int(ends[best] - starts[best]), int(starts[best])


def _ratio(num: np.ndarray, den_sq: np.ndarray) -> np.ndarray:
    """num / sqrt(den_sq), NaN where the denominator vanishes (flat frames)."""
    out = np.full(len(num), np.nan)
    np.divide(num, np.sqrt(np.maximum(den_sq, 0)), out=out, where=den_sq > 0)
    return out


def frame_statistics(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame std, spatial lag-1 correlation and correlation with the previous frame (NaN for frame 0)."""
    if max(frames.shape[1:]) > STATS_MAX_SIDE:
        h, w = frames.shape[1:]
        scale = STATS_MAX_SIDE / max(h, w)
        frames = resize_frames(frames, (max(2, round(h * scale)), max(2, round(w * scale))))
    x = frames.astype(np.float32)
    x -= x.mean(axis=(1, 2), keepdims=True)
    # Sums of squares of the shifted views follow from the whole-frame sum minus one edge row/column.
    sq = np.einsum("nij,nij->n", x, x, dtype=np.float64)
    first_col, last_col = (np.einsum("ni,ni->n", x[:, :, k], x[:, :, k], dtype=np.float64) for k in (0, -1))
    first_row, last_row = (np.einsum("ni,ni->n", x[:, k], x[:, k], dtype=np.float64) for k in (0, -1))
    across = _ratio(np.einsum("nij,nij->n", x[:, :, 1:], x[:, :, :-1]), (sq - first_col) * (sq - last_col))
    down = _ratio(np.einsum("nij,nij->n", x[:, 1:], x[:, :-1]), (sq - first_row) * (sq - last_row))
    spatial = np.where(np.isnan(across), down, np.where(np.isnan(down), across, (across + down) / 2))
    temporal = np.full(len(x), np.nan)
    if len(x) > 1:
        temporal[1:] = _ratio(np.einsum("nij,nij->n", x[1:], x[:-1]), sq[1:] * sq[:-1])
    std = np.sqrt(sq / (x.shape[1] * x.shape[2]))
    return {"std": std.astype(np.float32), "spatial": spatial, "temporal": temporal}


def _flag_summary(flags: np.ndarray, run: int, fraction: float) -> tuple[bool, int, int]:
    length, start = longest_run(flags)
    return (length >= run or flags.mean() >= fraction) and flags.any(), length, start


def frame_problems(frames: np.ndarray, config: CheckConfig = CheckConfig()) -> list[tuple[str, str]]:
    """Content problems of decoded frames: too_short, blank_frames, noisy_video."""
    problems: list[tuple[str, str]] = []
    total = len(frames)
    if total < config.min_frames:
        problems.append(("too_short", f"{total} frames, fewer than {config.min_frames}"))
    stats = frame_statistics(frames)
    blank = stats["std"] < config.blank_std
    flagged, length, start = _flag_summary(blank, config.blank_run, config.blank_fraction)
    if flagged:
        problems.append(("blank_frames", f"{int(blank.sum())}/{total} frames blank or constant; "
                                         f"longest run {length} from frame {start}"))
    with np.errstate(invalid="ignore"):
        temporal = stats["temporal"]
        following = np.append(temporal[1:], np.nan)
        best_neighbour = np.fmax(temporal, following)  # NaN only when no comparable neighbour
        noise = ~blank & ((stats["spatial"] < config.noise_spatial_corr) |
                          (best_neighbour < config.noise_temporal_corr))
    flagged, length, start = _flag_summary(noise, config.noise_run, config.noise_fraction)
    if flagged:
        spatial = float(np.nanmedian(stats["spatial"][noise])) if noise.any() else float("nan")
        neighbour = float(np.nanmedian(best_neighbour[noise])) if np.isfinite(best_neighbour[noise]).any() \
            else float("nan")
        problems.append(("noisy_video", f"{int(noise.sum())}/{total} frames look like noise (median pixel "
                                        f"corr {spatial:.2f}, frame-to-frame corr {neighbour:.2f}); "
                                        f"longest run {length} from frame {start}"))
    return problems


def inspect_video(name: str, path: str | Path, expected: tuple[int, int, int] | None = None,
                  config: CheckConfig = CheckConfig()) -> VideoFindings:
    """Decode one clip once and report missing_video/unreadable/size_mismatch plus frame problems."""
    path = Path(path)
    if not path.is_file():
        return VideoFindings(name, None, [("missing_video", "file not found")])
    try:
        frames, _ = read_video(path, strict=True)
    except VideoError as exc:
        detail = str(exc)
        detail = detail[len(str(path)) + 2:] if detail.startswith(f"{path}: ") else detail
        return VideoFindings(name, None, [("unreadable", detail)])
    except (MemoryError, OSError) as exc:  # a huge or vanishing file must not stop the whole check
        return VideoFindings(name, None, [("unreadable", f"{type(exc).__name__}: {exc}")])
    shape = tuple(int(s) for s in frames.shape)
    problems: list[tuple[str, str]] = []
    if expected is not None and shape != tuple(expected):
        problems.append(("size_mismatch", f"video is {'x'.join(map(str, shape))} (frames x H x W), "
                                          f"FileList says {'x'.join(map(str, expected))}"))
    problems += frame_problems(frames, config)
    return VideoFindings(name, shape, problems)
