"""Synthetic echo cines for the conversion tests: a speckled fan with burnt-in text, an ECG trace, depth
markers and a colour bar outside it, written as DICOM with pydicom (uncompressed or JPEG Baseline)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

TEXT = "DOE^JOHN 19700101"  # burnt-in "patient" text: it must not survive the conversion
PATIENT = {"PatientName": "DOE^JOHN", "PatientID": "PID-12345", "PatientBirthDate": "19700101",
           "InstitutionName": "ST MARY HOSPITAL", "ReferringPhysicianName": "DR^WHO"}


@dataclass
class Cine:
    """RGB frames (T, H, W, 3) and where each element was drawn (bool H x W)."""

    frames: np.ndarray
    fan: np.ndarray
    text: np.ndarray
    ecg: np.ndarray
    bar: np.ndarray


def draw_cine(frames: int = 12, height: int = 180, width: int = 240, seed: int = 0, doppler: bool = False,
              colour: bool = True, quiet_near: int = 0) -> Cine:
    """A fan of fresh speckle every frame (apex top centre), static text/markers/colour bar, a moving ECG;
    the fan's first `quiet_near` rows are dim and still (a quiet near field)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    ax, ay, radius = width / 2, 14.0, 150.0
    dx, dy = xx - ax, yy - ay
    fan = (np.hypot(dx, dy) <= radius) & (np.abs(np.arctan2(dx, dy)) <= np.radians(40)) & (dy >= 0)
    text = np.zeros((height, width), np.uint8)
    cv2.putText(text, TEXT[:8], (2, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
    cv2.putText(text, "HR 72", (width - 46, 12), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
    cv2.putText(text, "12cm", (2, 60), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
    for y in range(40, 160, 20):  # depth markers, outside the fan's right edge
        cv2.circle(text, (width - 20, y), 1, 255, -1)
    text = (text > 0) & ~fan
    bar = np.zeros((height, width), bool)
    bar[70:150, width - 10:width - 4] = True
    out = np.zeros((frames, height, width, 3), np.uint8)
    ecg = np.zeros((height, width), bool)
    base = 174
    still = rng.integers(10, 40, size=(height, width), dtype=np.uint8)
    for t in range(frames):
        speckle = rng.integers(25, 230, size=(height, width), dtype=np.uint8)
        speckle[: int(ay) + quiet_near] = still[: int(ay) + quiet_near]
        img = np.zeros((height, width, 3), np.uint8)
        img[fan] = speckle[fan][:, None]
        trace = np.zeros((height, width), np.uint8)
        xs = np.arange(4, width - 4)
        ys = base - (3 * np.exp(-0.5 * ((xs - (20 + 15 * t) % (width - 8)) / 2.0) ** 2)).round().astype(int)
        cv2.polylines(trace, [np.stack([xs, ys], 1).astype(np.int32)], False, 255, 1)
        line = (trace > 0) & ~fan
        ecg |= line
        img[line] = (40, 230, 40) if colour else (200, 200, 200)
        img[text] = 255
        grad = np.linspace(0, 255, bar.sum() // 6 + 1)[: bar.sum() // 6].astype(np.uint8)
        col = np.repeat(grad[::-1], 6)
        img[bar] = np.stack([col, 60 + 0 * col, 255 - col], 1) if colour else col[:, None]
        if doppler:  # a moving red/blue jet over a fifth of the fan
            jet = fan & (np.abs(xx - ax - 10 * np.sin(t)) < 25) & (yy > 60) & (yy < 130)
            img[jet] = (220, 30, 30) if t % 2 else (30, 30, 220)
        out[t] = img
    return Cine(out, fan, text, ecg & ~fan, bar)


def grey(cine: Cine) -> np.ndarray:
    """Luma of the cine's frames (T, H, W)."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in cine.frames])


def write_dicom(path: Path, frames: np.ndarray, photometric: str = "MONOCHROME2", jpeg: bool = False,
                fps_tags: dict | None = None, modality: str = "US", pixel_data: bool = True,
                patient: bool = True, bits: int = 8, planar: int = 0, rle: bool = False) -> Path:
    """Write frames (T, H, W) grey or (T, H, W, 3) RGB as an ultrasound DICOM cine (multi-frame).

    `bits` 16 stores grey frames as uint16 (values x 16); `planar` 1 stores colour plane by plane; `rle`
    compresses with RLE Lossless; photometric "YBR_FULL" without JPEG stores the RGB frames converted."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    if patient:
        for key, value in PATIENT.items():
            setattr(ds, key, value)
    for key, value in (fps_tags if fps_tags is not None else {"FrameTime": "33.333"}).items():
        setattr(ds, key, value)
    frames = np.asarray(frames, np.uint8)
    t, h, w = frames.shape[:3]
    if bits == 16:
        frames = frames.astype(np.uint16) * 16
    ds.NumberOfFrames = t
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8, 8, 7, 0) if bits == 8 else (16, 12, 11, 0)
    ds.SamplesPerPixel = 3 if frames.ndim == 4 else 1
    ds.PhotometricInterpretation = photometric
    if frames.ndim == 4:
        ds.PlanarConfiguration = planar
    if pixel_data:
        if photometric == "YBR_FULL" and not jpeg:
            from pydicom.pixels import convert_color_space

            frames = convert_color_space(frames, "RGB", "YBR_FULL")
        if jpeg:
            from PIL import Image

            chunks = []
            for f in frames:
                buf = io.BytesIO()
                # Pillow writes JFIF YCbCr; subsampling=1 is 4:2:2, as YBR_FULL_422 says.
                Image.fromarray(f).save(buf, "JPEG", quality=95, subsampling=1)
                chunks.append(buf.getvalue())
            ds.PixelData = encapsulate(chunks)
            ds["PixelData"].is_undefined_length = True
            ds.LossyImageCompression = "01"
        else:
            ds.PixelData = (frames.transpose(0, 3, 1, 2) if planar and frames.ndim == 4 else frames).tobytes()
    if rle:
        from pydicom.uid import RLELossless

        ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(path, enforce_file_format=True)
    return path


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    return float((a & b).sum() / max(1, (a | b).sum()))
