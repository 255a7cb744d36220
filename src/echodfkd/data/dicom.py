"""Read an ultrasound DICOM cine loop: frames as uint8, the frame rate and which tag gave it.

Pixel data is decoded by pydicom's plugins (pylibjpeg + pylibjpeg-libjpeg or pillow for JPEG Baseline,
JPEG-LS; pydicom itself for RLE and uncompressed), and YBR colour is converted to RGB. Only pixel data and
the few acquisition tags named here are read into the result: no patient-identifying field leaves this
module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from echodfkd.errors import VideoError

#: Frame-rate tags, in the order they are trusted: (keyword, tag, how to turn the value into frames/s).
FPS_TAGS = (
    ("FrameTime", "(0018,1063)", lambda v: 1000.0 / v),  # milliseconds per frame
    ("CineRate", "(0018,0040)", lambda v: v),
    ("RecommendedDisplayFrameRate", "(0008,2144)", lambda v: v),
)
#: pip packages that decode a transfer syntax, when pydicom has no working plugin for it.
DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",  # RLE Lossless
}


@dataclass
class DicomCine:
    """A decoded cine: frames (T, H, W) grey or (T, H, W, 3) RGB uint8, fps and the facts of how."""

    frames: np.ndarray
    fps: float
    fps_source: str  # e.g. "FrameTime (0018,1063)", or "none"
    transfer_syntax: str
    photometric: str


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether a file is DICOM: the 'DICM' preamble marker, or a .dcm name."""
    path = Path(path)
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def frame_rate(ds) -> tuple[float, str]:
    """Frames per second from Frame Time, Cine Rate, then Recommended Display Frame Rate; (0.0, 'none')."""
    for keyword, tag, to_fps in FPS_TAGS:
        value = ds.get(keyword)
        try:
            fps = float(to_fps(float(value))) if value not in (None, "") else 0.0
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if np.isfinite(fps) and fps > 0:
            return fps, f"{keyword} {tag}"
    return 0.0, "none"


def missing_decoder(transfer_syntax) -> str | None:
    """A one-line reason when no installed plugin decodes this transfer syntax (naming what to install)."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        return f"pixel data in transfer syntax {transfer_syntax} ({transfer_syntax.name}), which pydicom cannot decode"
    if decoder.is_available:
        return None
    package = DECODER_PACKAGES.get(str(transfer_syntax), "pylibjpeg pylibjpeg-libjpeg")
    return (f"{transfer_syntax.name} pixel data but no decoder for it is installed: "
            f"pip install {package}")


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """Rescale deeper-than-8-bit data to 0..255 (min-max over the clip)."""
    if frames.dtype == np.uint8:
        return frames
    f = frames.astype(np.float32)
    lo, hi = float(f.min()), float(f.max())
    return np.zeros(f.shape, np.uint8) if hi <= lo else np.round((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def cine_pixels(path: str | os.PathLike) -> int:
    """Frames x rows x columns a DICOM's header announces (0 when unreadable), read without pixel data."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.get("NumberOfFrames", 1) or 1) * int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
    except Exception:  # unreadable headers are refused, with a reason, by read_dicom
        return 0


def read_dicom(path: str | os.PathLike) -> DicomCine:
    """Decode a multi-frame ultrasound DICOM; every refusal is a one-line VideoError naming the file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: file not found")
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as exc:
        raise VideoError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from None
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality != "US":
        raise VideoError(f"{path}: modality {modality}, not ultrasound (US); only echo cine loops are converted")
    if "PixelData" not in ds:
        raise VideoError(f"{path}: DICOM without pixel data (no (7FE0,0010) element; e.g. a report or a "
                         "presentation state)")
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        n = 1
    if n < 2:
        raise VideoError(f"{path}: a single-frame DICOM image, not a cine loop (the sector is found from motion)")
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is None:
        raise VideoError(f"{path}: DICOM without a Transfer Syntax UID in its file meta")
    reason = missing_decoder(ts)
    if reason:
        raise VideoError(f"{path}: {reason}")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    try:
        from pydicom.pixels import pixel_array

        frames = pixel_array(ds)  # YBR -> RGB by default
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            frames = apply_color_lut(frames, ds)
    except Exception as exc:  # the plugins raise many kinds; the message names the problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VideoError(f"{path}: pixel data could not be decoded ({first[:200]})") from None
    frames = _to_uint8(np.asarray(frames))
    if photometric == "MONOCHROME1":  # 0 is white
        frames = 255 - frames
    if frames.ndim == 2:  # the header said several frames, the pixel data held one
        raise VideoError(f"{path}: a single-frame DICOM image, not a cine loop")
    fps, source = frame_rate(ds)
    return DicomCine(frames=frames, fps=fps, fps_source=source, transfer_syntax=str(ts.name),
                     photometric=photometric)
