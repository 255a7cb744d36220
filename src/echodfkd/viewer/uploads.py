"""Receive a video upload into a private temporary folder, with a size limit and a content check.

The body is parsed as a stream (multipart/form-data, or a raw body with the name in `X-Filename`) and
written chunk by chunk into a per-request folder inside the viewer's own private folder, so no copy of
the upload is ever spooled anywhere else (Starlette's UploadFile would spool to the system temp dir).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator

import numpy as np

from echodfkd.errors import EchoDFKDError, VideoError

try:  # python-multipart >= 0.0.13 ships `python_multipart`; older ones only `multipart`.
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - old python-multipart
    from multipart.multipart import MultipartParser, parse_options_header

MB = 1024 * 1024
MAX_PIXELS = 600_000_000  # decoded frames kept in memory (uint8), plus masks of the same size
VIDEO_KINDS = {"avi": ".avi", "mp4": ".mp4"}


class UploadRejected(EchoDFKDError):
    """An upload the viewer refuses; `status` is the HTTP status code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def sniff_container(head: bytes) -> str | None:
    """'avi' or 'mp4' from a file's first bytes (RIFF....AVI / ISO-BMFF ftyp box), else None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:11] == b"AVI":
        return "avi"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    return None


def safe_name(name: str | None) -> str:
    """A display-safe base name for an uploaded file (never used as a path by itself)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")
    return base[:120] or "upload"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateFolder:
    """A 0700 temporary folder owned by the viewer: one sub-folder per request, removed afterwards.

    Its name carries the server's PID, so a later start removes what a killed server left behind.
    """

    PREFIX = "echodfkd-viewer-"

    def __init__(self, parent: str | os.PathLike | None = None) -> None:
        self.parent = Path(parent or tempfile.gettempdir())
        self.sweep_stale()
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}-", dir=self.parent))  # 0700

    def sweep_stale(self) -> list[Path]:
        """Remove this user's viewer folders whose server process is gone; return them."""
        removed = []
        for path in self.parent.glob(self.PREFIX + "*"):
            m = re.fullmatch(re.escape(self.PREFIX) + r"(\d+)-\w+", path.name)
            try:
                mine = path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.getuid()
            except OSError:
                continue
            if m and mine and not _pid_alive(int(m.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def request_dir(self) -> Path:
        """A fresh private folder for one request."""
        if not self.root.exists():  # re-created if something removed it while serving
            self.root.mkdir(mode=0o700, parents=True)
        return Path(tempfile.mkdtemp(prefix="req-", dir=self.root))

    @staticmethod
    def discard(path: Path) -> None:
        """Remove one request's folder and everything in it."""
        shutil.rmtree(path, ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the whole private folder (at shutdown)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def leftovers(self) -> list[Path]:
        """Whatever is still inside the private folder (should be empty between requests)."""
        return sorted(self.root.iterdir()) if self.root.exists() else []


def too_large(size: int, limit_bytes: int) -> UploadRejected:
    """The 413 error for an upload over the limit, in plain words."""
    return UploadRejected(
        f"The file is too large: {size / MB:.1f} MB received, the limit is {limit_bytes / MB:.3g} MB "
        "(the server's --max-upload-mb).", status=413)


class _Sink:
    """Writes the first file part of a multipart body to disk, counting bytes against the limit."""

    def __init__(self, folder: Path, limit_bytes: int) -> None:
        self.folder, self.limit = folder, limit_bytes
        self.header_field, self.header_value = bytearray(), bytearray()
        self.headers: dict[str, bytes] = {}
        self.filename: str | None = None
        self.path: Path | None = None
        self.size = 0
        self._fh = None
        self._done = False

    def callbacks(self) -> dict:
        """Callbacks for python-multipart's streaming parser."""
        return dict(on_part_begin=self._part_begin, on_header_field=self._field, on_header_value=self._value,
                    on_header_end=self._header_end, on_headers_finished=self._headers_done,
                    on_part_data=self._data, on_part_end=self._part_end)

    def _part_begin(self) -> None:
        self.headers = {}

    def _field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def _header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field, self.header_value = bytearray(), bytearray()

    def _headers_done(self) -> None:
        _, params = parse_options_header(self.headers.get("content-disposition", b""))
        if self._done or self._fh is not None or b"filename" not in params:
            return  # plain form fields and any second file are ignored
        self.filename = params[b"filename"].decode("utf-8", "replace")
        self.path = self.folder / "upload.bin"
        self._fh = open(self.path, "wb")

    def write(self, chunk: bytes) -> None:
        """Write file bytes, refusing once the limit is passed."""
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.size, self.limit)
        self._fh.write(chunk)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._fh is not None:
            self.write(data[start:end])

    def _part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._done = True

    def close(self) -> None:
        """Close a half-written file (after an error)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def receive_upload(stream: AsyncIterator[bytes], content_type: str | None, filename_header: str | None,
                         content_length: str | None, folder: Path, limit_bytes: int) -> tuple[Path, str]:
    """Stream a request body into `folder`; return (file path, original file name) or raise UploadRejected."""
    if content_length and content_length.isdigit() and int(content_length) > limit_bytes + 64 * 1024:
        raise too_large(int(content_length), limit_bytes)  # refuse before reading the body
    ctype, params = parse_options_header(content_type or "")
    sink = _Sink(folder, limit_bytes)
    try:
        if ctype == b"multipart/form-data":
            boundary = params.get(b"boundary")
            if not boundary:
                raise UploadRejected("Malformed upload: multipart body without a boundary.")
            parser = MultipartParser(boundary, sink.callbacks())
            async for chunk in stream:
                parser.write(chunk)
            parser.finalize()
        else:  # raw body (e.g. `curl --data-binary @clip.avi -H 'X-Filename: clip.avi'`)
            sink.filename = filename_header or "upload"
            sink.path = folder / "upload.bin"
            sink._fh = open(sink.path, "wb")
            async for chunk in stream:
                sink.write(chunk)
            sink._part_end()
    except UploadRejected:
        raise
    except Exception as exc:  # the multipart parser's errors name the problem
        raise UploadRejected(f"Malformed upload ({type(exc).__name__}: {exc}).") from None
    finally:
        sink.close()
    if sink.path is None:
        raise UploadRejected("No file received: choose an AVI or MP4 video to upload.")
    if sink.size == 0:  # the same words as the CLI's (echodfkd.io.video)
        raise UploadRejected(f"{safe_name(sink.filename)}: empty file (0 bytes)")
    return sink.path, safe_name(sink.filename)


def decode_upload(path: Path, name: str, max_frames: int) -> tuple[np.ndarray, float, dict | None]:
    """Check the file is an AVI/MP4 video or a DICOM cine and decode it to grayscale frames (T, H, W).

    DICOM cines and scanner videos are framed like EchoNet (`echodfkd.data.convert`); the third value then
    describes the sector found and the crop (else None)."""
    from echodfkd.io.video import read_video, video_info

    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        return _convert_upload(path, name, max_frames, "dicom")
    kind = sniff_container(head[:16])
    if kind is None:
        raise UploadRejected(f"'{name}' is not a video: only AVI and MP4 videos and DICOM cines are accepted.", status=415)
    video = path.with_name("video" + VIDEO_KINDS[kind])
    os.replace(path, video)  # OpenCV picks its demuxer partly from the extension
    try:
        info = video_info(video)
        if info.frames > max_frames:
            raise UploadRejected(f"'{name}' has {info.frames} frames; the viewer handles at most {max_frames}. "
                                 "Cut the clip shorter.")
        if info.frames * info.height * info.width > MAX_PIXELS:
            raise UploadRejected(f"'{name}' is too big to analyse here ({info.frames} frames of "
                                 f"{info.width}x{info.height}); shorten or downscale it.")
        frames, fps = read_video(video)  # strict, as the CLI: a truncated file is refused, not half-analysed
    except VideoError as exc:
        detail = str(exc).split(": ", 1)[-1]  # drop the private temp path, keep the problem
        raise UploadRejected(f"{name}: {detail}", status=415) from None  # the CLI's line, with the file's name
    if frames.shape[0] > max_frames:
        raise UploadRejected(f"'{name}' has {frames.shape[0]} frames; the viewer handles at most {max_frames}.")
    if min(frames.shape[1:]) < 16:
        raise UploadRejected(f"'{name}' is only {frames.shape[2]}x{frames.shape[1]} pixels; too small to segment.")
    if frames.shape[1:] != (112, 112):
        return _convert_upload(video, name, max_frames, kind)
    return frames, fps, None


def _convert_upload(path: Path, name: str, max_frames: int, kind: str) -> tuple[np.ndarray, float, dict | None]:
    """Frame a DICOM cine or scanner video like EchoNet; the conversion record carries a sector preview."""
    import base64

    import cv2

    from echodfkd.data.convert import prepare_clip
    from echodfkd.data.sector import overlay

    if kind == "dicom":
        from echodfkd.data.dicom import cine_pixels

        path = path.rename(path.with_name("upload.dcm"))
        if cine_pixels(path) > MAX_PIXELS:
            raise UploadRejected(f"'{name}' is too big to analyse here ({cine_pixels(path)} pixels in all); "
                                 "shorten or downscale it.")
    try:
        clip = prepare_clip(path, mode="auto", keep_source=True)
    except VideoError as exc:
        detail = str(exc).split(": ", 1)[-1]  # drop the private temp path, keep the problem
        raise UploadRejected(f"'{name}' could not be used: {detail}.", status=415) from None
    if len(clip.frames) > max_frames:
        raise UploadRejected(f"'{name}' has {len(clip.frames)} frames; the viewer handles at most {max_frames}.")
    if not clip.converted:
        return clip.frames, clip.fps, ({"notes": clip.notes} if clip.notes else None)
    frame = clip.source.max(axis=0) * clip.sector.astype(np.uint8)  # outside blanked: no burnt-in text shown
    ok, png = cv2.imencode(".png", cv2.cvtColor(overlay(frame, clip.sector, clip.geometry), cv2.COLOR_RGB2BGR))
    record = {"kind": clip.kind, "source_size": list(clip.source_shape), "fps_source": clip.fps_source,
              "geometry": clip.geometry.to_dict(), "notes": clip.notes,
              "preview_png": base64.b64encode(png.tobytes()).decode("ascii") if ok else None}
    return clip.frames, clip.fps, record


def add_conversion(result: dict, conversion: dict) -> None:
    """Put the conversion record into the page's JSON, with the areas (and EF's inputs) at source size."""
    result["warnings"] = list(result.get("warnings", [])) + list(conversion.get("notes", []))
    geometry = conversion.get("geometry")
    if geometry:
        scale = geometry["crop_side"] / geometry["output_size"]
        # Areas scale with the crop's square; EF (a ratio of area-length volumes) does not change.
        conversion = dict(conversion, areas_source=[round(a * scale * scale, 1) for a in result.get("areas", [])],
                          pixel_scale=round(scale, 4))
    result["conversion"] = conversion
