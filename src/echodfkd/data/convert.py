"""Scanner exports (DICOM cines, MP4/AVI/MOV of any size) -> 112x112 EchoNet-framed clips.

`prepare_clip` is the one in-memory conversion, used by `convert` (which writes an EchoNet-layout folder,
see `echodfkd.data.convert_folder`), by `predict` and by the viewer: decode, find the sector, blank
what lies outside it, crop EchoNet's square and resize to 112 with area interpolation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from echodfkd.data.dicom import is_dicom, read_dicom
from echodfkd.data.sector import OUTPUT_SIZE, SectorGeometry, already_framed, find_sector, frame_clip
from echodfkd.errors import VideoError

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".m4v", ".mkv")
#: A sector pixel counts as colour when its channels differ by more than this (grey levels).
CHROMA_LEVEL = 40
#: More than this fraction of colour pixels inside the sector means colour Doppler.
DOPPLER_FRACTION = 0.01
MODES = ("auto", "on", "off")


@dataclass
class PreparedClip:
    """A clip ready for the student: frames (T, n, n) uint8, fps and how the source was framed."""

    frames: np.ndarray
    fps: float
    fps_source: str
    kind: str  # "dicom" or "video"
    source_shape: tuple[int, int]
    geometry: SectorGeometry | None  # None: the frames were used as they are (no conversion)
    sector: np.ndarray | None = None  # bool (H, W) source-frame mask of the sector
    source: np.ndarray | None = None  # grey source frames (T, H, W), when asked for
    notes: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # transfer syntax, photometric (no patient data)

    @property
    def converted(self) -> bool:
        """Whether the frames were cropped and resized from the source's sector."""
        return self.geometry is not None


def is_convertible(path: str | os.PathLike) -> bool:
    """Whether `prepare_clip` takes this file: a DICOM or a video container by its suffix."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_SUFFIXES or is_dicom(path)


def _grey(frames: np.ndarray) -> np.ndarray:
    """Luma of RGB frames (T, H, W, 3); grey frames pass through."""
    if frames.ndim == 3:
        return frames
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def colour_fraction(frames: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of sector pixels that are coloured in any of up to 16 sampled RGB frames."""
    if frames.ndim != 4:
        return 0.0
    idx = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), 16)).round().astype(int))
    coloured = np.zeros(mask.shape, bool)
    for f in frames[idx].astype(np.int16):
        coloured |= (f.max(axis=2) - f.min(axis=2)) > CHROMA_LEVEL
    return float((coloured & mask).sum() / max(1, mask.sum()))


def _decode(path: Path) -> tuple[np.ndarray, float, str, str, dict]:
    """(frames grey or RGB, fps, fps source, kind, facts) of a DICOM or a video file."""
    if is_dicom(path):
        cine = read_dicom(path)
        facts = {"transfer_syntax": cine.transfer_syntax, "photometric": cine.photometric}
        return cine.frames, cine.fps, cine.fps_source, "dicom", facts
    from echodfkd.io.video import read_video

    frames, fps = read_video(path, color=True)
    if len(frames) and not np.any(frames[..., 0] != frames[..., 1]) and not np.any(frames[..., 1] != frames[..., 2]):
        frames = frames[..., 0]  # grey stored as 3 equal channels: keep one
    return frames, fps, ("video header" if fps > 0 else "none"), "video", {}


def prepare_clip(path: str | os.PathLike, mode: str = "on", fps: float | None = None,
                 keep_source: bool = False, size: int = OUTPUT_SIZE, keep_framed: bool = False) -> PreparedClip:
    """Decode `path` and frame it like EchoNet at `size` px.

    `mode` "on" always converts (a sector that cannot be found is an error); "off" never does (the frames
    are used whole); "auto" converts DICOM always and videos unless they are `size` px square already or
    already framed like EchoNet, and falls back to the whole frame (with a note) when a video shows no
    sector. With `keep_framed`, "on" keeps a clip already framed like EchoNet whole (only resized to
    `size`, nothing blanked), so EchoNet's own clips convert to themselves. `fps` is used when the file
    gives no frame rate.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    path = Path(path)
    raw, rate, rate_source, kind, facts = _decode(path)
    grey = _grey(raw)
    if grey.ndim != 3 or len(grey) == 0:
        raise VideoError(f"{path}: no frames decoded")
    if rate <= 0 and fps:
        rate, rate_source = float(fps), "--fps"
    shape = (int(grey.shape[1]), int(grey.shape[2]))
    clip = PreparedClip(grey, rate, rate_source, kind, shape, None, facts=facts,
                        source=grey if keep_source else None)
    if mode == "off" or (mode == "auto" and kind == "video" and shape == (size, size)):
        return clip
    try:
        mask, geometry = find_sector(grey, output_size=size)
    except VideoError as exc:
        if mode == "auto" and kind == "video":
            clip.notes.append(f"no imaging sector found ({exc}); the whole frame was used")
            return clip
        raise VideoError(f"{path}: {exc}") from None
    share = colour_fraction(raw, mask)
    if share > DOPPLER_FRACTION:
        raise VideoError(f"{path}: colour Doppler ({share:.0%} of the sector is in colour); only greyscale "
                         "B-mode loops can be segmented")
    if mode == "auto" and kind == "video" and already_framed(geometry):
        clip.notes.append("already framed like EchoNet (the sector fills the frame); used as it is")
        clip.sector = mask
        return clip
    if keep_framed and already_framed(geometry):
        side = max(shape)
        geometry = replace(geometry, crop_x=(shape[1] - side) // 2, crop_y=(shape[0] - side) // 2, crop_side=side)
        clip.frames = frame_clip(grey, np.ones(shape, bool), geometry)
        clip.geometry, clip.sector = geometry, mask
        clip.notes.append(f"already framed like EchoNet; kept whole, resized to {size}x{size}")
        return clip
    clip.frames = frame_clip(grey, mask, geometry)
    clip.geometry, clip.sector = geometry, mask
    clip.notes.append(f"sector found; {shape[1]}x{shape[0]} cropped to a {geometry.crop_side}-px square at "
                      f"({geometry.crop_x}, {geometry.crop_y}), outside blanked, resized to {size}x{size}")
    return clip
