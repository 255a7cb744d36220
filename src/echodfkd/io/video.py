"""Read and write echo videos as grayscale uint8 arrays (T, H, W), with clear errors."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

# FFmpeg prints decoder chatter ("overread", "invalid len") on stderr for damaged files; our own
# VideoError already names the file and problem. Users can still set the variable to debug.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402  (must follow the log-level default)
import numpy as np  # noqa: E402

from echodfkd.errors import VideoError  # noqa: E402
from echodfkd.io.atomic import atomic_path  # noqa: E402


@dataclass(frozen=True)
class VideoInfo:
    """Header facts of a video file."""

    frames: int
    height: int
    width: int
    fps: float


_QUIET_LOCK = threading.Lock()
_quiet = {"depth": 0, "saved": -1}  # how many blocks are open, and the real fd 2 while they are


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (C libraries' prints; VideoError names the problem).

    fd 2 is process-wide and videos are opened from several threads at once, so the first block to open
    saves the real fd 2 and the last to close restores it (per-block saving could restore /dev/null)."""
    if os.environ.get("ECHODFKD_VIDEO_DEBUG"):
        yield
        return
    with _QUIET_LOCK:
        if _quiet["depth"] == 0:
            sys.stderr.flush()
            _quiet["saved"] = os.dup(2)
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
        _quiet["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet["depth"] -= 1
            if _quiet["depth"] == 0:
                os.dup2(_quiet["saved"], 2)
                os.close(_quiet["saved"])


def _open(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise VideoError(f"{path}: file not found")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    with _quiet_stderr():  # OpenCV's AVI parser prints "Unexpected element..." on fd 2 for damaged files
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: not a readable video (unknown container or codec)")
    return cap


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Return the header's frame count, size and FPS without decoding frames."""
    path = Path(path)
    cap = _open(path)
    try:
        info = VideoInfo(
            frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            fps=float(cap.get(cv2.CAP_PROP_FPS)),
        )
    finally:
        cap.release()
    if info.frames <= 0 or info.height <= 0 or info.width <= 0:
        raise VideoError(f"{path}: video header reports no frames")
    return info


def read_video(path: str | os.PathLike, strict: bool = True, color: bool = False) -> tuple[np.ndarray, float]:
    """Decode a video to grayscale uint8 frames (T, H, W) and return them with the header FPS.

    With `strict`, a file that decodes fewer frames than its header announces is refused as truncated.
    With `color`, frames are RGB (T, H, W, 3) instead (used to spot colour Doppler).
    """
    path = Path(path)
    cap = _open(path)
    try:
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if color:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB if frame.ndim == 3 else cv2.COLOR_GRAY2RGB)
            elif frame.ndim == 3:
                # EchoNet stores gray as 3 equal channels; take the luma of whatever is there.
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (0-frame or corrupt video)")
    if strict and expected > 0 and len(frames) < expected:
        raise VideoError(f"{path}: truncated video: header says {expected} frames, only {len(frames)} decode")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise VideoError(f"{path}: frames change size inside the video {sorted(shapes)}")
    video = np.stack(frames).astype(np.uint8, copy=False)
    if not np.isfinite(fps) or fps <= 0:
        fps = 0.0
    return video, fps


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, quality: int = 95,
                codec: str = "MJPG") -> Path:
    """Write grayscale uint8 frames (T, H, W) as an MJPEG AVI with 3 equal channels, atomically.

    `codec` "FFV1" writes a lossless AVI instead (frames read back bit-exact)."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise VideoError(f"{path}: expected frames of shape (T, H, W) with T > 0, got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    return _write_frames(path, frames, fps, codec, cv2.COLOR_GRAY2BGR, quality)


def write_color_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Write RGB uint8 frames (T, H, W, 3) as an MJPEG AVI, atomically (used for overlays)."""
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise VideoError(f"{path}: expected RGB frames of shape (T, H, W, 3), got {frames.shape}")
    return _write_frames(path, frames, fps, "MJPG", cv2.COLOR_RGB2BGR)


def _write_frames(path: Path, frames: np.ndarray, fps: float, codec: str, to_bgr: int,
                  quality: int | None = None) -> Path:
    """The one AVI writer: frames converted to BGR with `to_bgr`, written atomically and checked."""
    h, w = frames.shape[1:3]
    with atomic_path(path, suffix=path.suffix or ".avi") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), float(fps), (w, h), True)
        if not writer.isOpened():
            raise VideoError(f"{path}: cannot open an {codec} writer")
        if quality is not None:
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, to_bgr))
        finally:
            writer.release()
        _check_written(tmp, path)
    return path


def _check_written(tmp: Path, path: Path) -> None:
    """OpenCV's writer ignores failed writes: the file must not be empty, an AVI as long as its RIFF header says."""
    with open(tmp, "rb") as fh:
        head = fh.read(8)
    size = tmp.stat().st_size
    riff = len(head) == 8 and head[:4] == b"RIFF"
    if size > 0 and (not riff or int.from_bytes(head[4:], "little") + 8 <= size):
        return
    free = shutil.disk_usage(tmp.parent).free
    if free < 1 << 20:  # the writer hit a full disk (atomic_path turns this into one line)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    raise VideoError(f"{path}: the video writer stopped short ({size} bytes written)")


def resize_frames(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize (T, H, W) frames to `size` (square int or (H, W)) with area/linear interpolation."""
    h, w = (size, size) if isinstance(size, int) else size
    if frames.shape[1:3] == (h, w):
        return frames
    shrink = h < frames.shape[1] or w < frames.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def resize_masks(masks: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize (T, H, W) masks (bool or uint8 soft) to `size`, keeping the dtype."""
    h, w = (size, size) if isinstance(size, int) else size
    if masks.shape[1:3] == (h, w):
        return masks
    src = masks.astype(np.uint8) * (255 if masks.dtype == bool else 1)
    out = np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in src])
    return out >= 128 if masks.dtype == bool else out
