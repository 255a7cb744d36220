"""Overlay clips as in the paper's Fig. 2: student mask contour in green, teacher in red, both in yellow."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.ndimage import binary_erosion

from echodfkd.errors import VideoError
from echodfkd.io.atomic import atomic_path
from echodfkd.io.video import write_color_video

STUDENT_RGB = (0, 230, 0)
TEACHER_RGB = (230, 0, 0)
BOTH_RGB = (240, 220, 0)


def _contour(masks: np.ndarray) -> np.ndarray:
    """One-pixel inner boundary of each (T, H, W) mask."""
    inner = binary_erosion(masks, structure=np.ones((1, 3, 3), bool), border_value=0)
    return masks & ~inner


def _upscale(frames: np.ndarray, scale: int, nearest: bool) -> np.ndarray:
    if scale == 1:
        return frames
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = frames.astype(np.uint8)
    return np.stack([cv2.resize(f, None, fx=scale, fy=scale, interpolation=interp) for f in src])


def overlay_frames(frames: np.ndarray, student: np.ndarray, teacher: np.ndarray | None = None,
                   scale: int = 3) -> np.ndarray:
    """RGB uint8 (T, H·scale, W·scale, 3): frames with student (green) / teacher (red) contours, shared yellow."""
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise VideoError(f"overlay needs grayscale frames (T, H, W), got {frames.shape}")
    t = min(len(frames), len(student), len(teacher) if teacher is not None else len(student))
    big = _upscale(frames[:t], scale, nearest=False)
    rgb = np.repeat(big[..., None], 3, axis=-1)
    edges = []
    for masks in (student, teacher):
        if masks is None:
            edges.append(None)
            continue
        masks = np.asarray(masks[:t], dtype=bool)
        if masks.shape[1:] != frames.shape[1:]:
            masks = np.stack([cv2.resize(m.astype(np.uint8), frames.shape[:0:-1],
                                         interpolation=cv2.INTER_NEAREST) for m in masks]).astype(bool)
        edges.append(_contour(_upscale(masks, scale, nearest=True).astype(bool)))
    student_edge, teacher_edge = edges
    if teacher_edge is not None:
        rgb[teacher_edge] = TEACHER_RGB
    rgb[student_edge] = STUDENT_RGB
    if teacher_edge is not None:
        rgb[student_edge & teacher_edge] = BOTH_RGB  # the contours agree here
    return rgb


def _palette_frames(rgb: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Map overlay frames to a fixed palette: 128 grey levels, then the student, teacher and shared colours."""
    grey = (rgb[..., 0].astype(np.uint16) + rgb[..., 1] + rgb[..., 2]) // 6   # mean / 2 -> 0..127
    idx = grey.astype(np.uint8)
    idx[np.all(rgb == STUDENT_RGB, axis=-1)] = 128
    idx[np.all(rgb == TEACHER_RGB, axis=-1)] = 129
    idx[np.all(rgb == BOTH_RGB, axis=-1)] = 130
    palette = [v for g in range(128) for v in (2 * g + 1,) * 3] + list(STUDENT_RGB) + list(TEACHER_RGB) \
        + list(BOTH_RGB)
    return idx, palette + [0] * (768 - len(palette))


def save_gif(rgb: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Write overlay frames (T, H, W, 3) as a looping GIF at `fps` (GIF timing caps it at 50 frames/s)."""
    path = Path(path)
    duration = int(round(1000.0 / max(min(fps, 50.0), 1.0)))
    idx, palette = _palette_frames(np.asarray(rgb, dtype=np.uint8))
    images = []
    for frame in idx:  # a fixed palette: no per-frame quantisation (fast, small, stable colours)
        im = Image.fromarray(frame, mode="P")
        im.putpalette(palette)
        images.append(im)
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                       optimize=False)
    return path


def save_overlay(frames: np.ndarray, student: np.ndarray, path: str | os.PathLike, fps: float,
                 teacher: np.ndarray | None = None, scale: int = 2, max_seconds: float | None = 3.0) -> Path:
    """Overlay video of one clip (the first `max_seconds`), as .gif or .avi depending on the suffix of `path`."""
    if max_seconds is not None and fps > 0:
        keep = max(1, int(round(max_seconds * fps)))
        frames, student = frames[:keep], student[:keep]
        teacher = None if teacher is None else teacher[:keep]
    rgb = overlay_frames(frames, student, teacher, scale)
    path = Path(path)
    if path.suffix.lower() == ".avi":
        return write_color_video(path, rgb, fps if fps > 0 else 25.0)
    return save_gif(rgb, path, fps if fps > 0 else 25.0)
